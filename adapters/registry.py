"""The source-type registry: one line per source type.

Adding a source type is one folder under ``adapters/`` (config models, a
:class:`~gateway.core.sources.SourceSpec`, the adapter, README and sample config) plus
one line in ``SOURCE_SPECS`` below; nothing in ``gateway/`` names a source type.
"""

from __future__ import annotations

from collections.abc import Sequence

from adapters.modbus.spec import MODBUS
from adapters.mqtt.spec import MQTT
from adapters.opcua.spec import OPCUA
from gateway.core.config import SourceConfig
from gateway.core.sources import SourceAdapter, SourceContext, SourceSpec

SOURCE_SPECS: tuple[SourceSpec, ...] = (
    MODBUS,
    MQTT,
    OPCUA,
)


def _by_type() -> dict[str, SourceSpec]:
    out: dict[str, SourceSpec] = {}
    for spec in SOURCE_SPECS:
        for t in spec.types:
            if t in out:
                raise RuntimeError(f"source type {t!r} registered twice")
            out[t] = spec
    return out


SPEC_BY_TYPE: dict[str, SourceSpec] = _by_type()


def source_models() -> tuple[type[SourceConfig], ...]:
    return tuple(m for spec in SOURCE_SPECS for m in spec.models)


def spec_of(config: SourceConfig) -> SourceSpec:
    return SPEC_BY_TYPE[config.type]


def build_sources(configs: Sequence[SourceConfig], ctx: SourceContext) -> list[SourceAdapter]:
    """Adapters for the enabled ``sources[]`` entries, in config order. Each spec builds all
    of its sources at once (Modbus sources sharing a connection share one bus)."""
    enabled = [c for c in configs if c.enabled]
    built: dict[str, SourceAdapter] = {}
    for spec in SOURCE_SPECS:
        mine = [c for c in enabled if c.type in spec.types]
        if mine:
            for cfg, adapter in zip(mine, spec.build(mine, ctx), strict=True):
                built[cfg.id] = adapter
    return [built[c.id] for c in enabled]
