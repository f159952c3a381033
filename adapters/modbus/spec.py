"""The Modbus entry of the source-type registry (``modbus_tcp`` and ``modbus_rtu``).

Importing this module costs only the config models; pymodbus is imported when a Modbus
source is built.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

from adapters.modbus.config import ModbusRtuSource, ModbusTcpSource
from gateway.core.config import SourceConfig, Tag
from gateway.core.sources import SourceAdapter, SourceContext, SourceProblem, SourceSpec
from gateway.core.yamlsrc import Path_

ModbusConfig = ModbusTcpSource | ModbusRtuSource


class ModbusSpec(SourceSpec):
    models = (ModbusTcpSource, ModbusRtuSource)
    simulator = "devkit.simulator.modbus"

    def build(self, configs: Sequence[SourceConfig], ctx: SourceContext) -> list[SourceAdapter]:
        from adapters.modbus.build import build_modbus_sources

        return build_modbus_sources(cast(Sequence[ModbusConfig], configs), ctx)

    def raw_points(self, source: Mapping[str, Any]) -> Iterator[tuple[Path_, Mapping[str, Any]]]:
        points = source.get("points")
        if isinstance(points, list):
            for k, p in enumerate(points):
                if isinstance(p, dict):
                    yield ("points", k), p

    def check_raw(self, source: Mapping[str, Any]) -> Iterator[tuple[Path_, str]]:
        """A ``fault`` status point is a point of the same source, and not the point itself."""
        points = list(self.raw_points(source))
        local = {p.get("tag") for _, p in points}
        for path, p in points:
            fault = p.get("fault")
            if fault is None:
                continue
            if fault not in local:
                yield (*path, "fault"), f"fault point {fault!r} must be a point of the same source"
            if isinstance(p.get("tag"), str) and fault == p.get("tag"):
                yield (*path, "fault"), "a point cannot be its own fault point"

    def check(self, configs: Sequence[SourceConfig], tags: Mapping[str, Tag]) -> list[SourceProblem]:
        from adapters.modbus.build import check_modbus_sources

        ids = {c.id for c in configs}
        out = []
        for msg in check_modbus_sources(cast(Sequence[ModbusConfig], configs), tags):
            sid = msg.removeprefix("source ").split(":", 1)[0]
            out.append(SourceProblem(sid if sid in ids else None, msg))
        return out

    def restart_key(self, config: SourceConfig) -> str:
        from adapters.modbus.transport import transport_spec

        return transport_spec(cast(ModbusConfig, config)).key


MODBUS = ModbusSpec()
