"""Source types as plugins: what an adapter gets, what it provides, how a type declares itself.

An adapter reads a device or broker and turns what it gets into :class:`Reading` tuples,
which it hands to ``ctx.emit`` in batches. It never knows about sinks or alarms.

A source type is one package under ``adapters/`` with a config model (a
:class:`~gateway.core.config.SourceConfig`) and one :class:`SourceSpec`, listed in
``adapters/registry.py``. The core validates, builds, checks, restarts and simulates
sources only through the spec, so it never names a source type.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol

from gateway.core.config import SourceConfig, Tag
from gateway.core.metrics import Metrics
from gateway.core.models import Reading
from gateway.core.yamlsrc import Path_

Emit = Callable[[Sequence[Reading]], Awaitable[None]]


@dataclass(frozen=True)
class SourceContext:
    emit: Emit  # waits when the pipeline is full (backpressure); never drops
    metrics: Metrics  # shared collectors; register own ones on metrics.registry
    tags: Mapping[str, Tag]  # the site's tag table (id -> Tag), for ranges and kinds
    store_path: str | None = None  # for adapters that need persistent state


class SourceAdapter(Protocol):
    id: str

    async def start(self) -> None:
        """Start background tasks and return; connection failures are retried, not raised."""

    async def stop(self) -> None:
        """Stop tasks and close connections; idempotent."""

    def health(self) -> dict[str, Any]:
        """``{"ok": bool, "connected": bool, ...}`` for /api/health."""


@dataclass(frozen=True)
class SourceProblem:
    """A problem only the source type can judge; ``source`` is the id it concerns (None:
    the ``sources`` section as a whole), ``path`` is relative to that source's entry.
    ``severity`` "warning" lets the config run (e.g. an OPC UA source without security)."""

    source: str | None
    message: str
    path: Path_ = ()
    severity: Literal["error", "warning"] = "error"


class SourceSpec(ABC):
    """One source type (or a family sharing an adapter, like Modbus TCP and RTU)."""

    #: the config models, one per ``type:`` name (each declares ``type: Literal["..."]``)
    models: ClassVar[tuple[type[SourceConfig], ...]]
    #: dotted name of the dev-only module that simulates this type's devices for
    #: ``hazardgw simulate`` (in ``devkit``; the runtime never imports it), or None
    simulator: ClassVar[str | None] = None
    #: dotted name of a module of this source type's command-line tools (commissioning: probe,
    #: browse...), or None. It provides ``add_commands(sub, probe)``: ``sub`` is ``hazardgw``'s
    #: subcommand group (for a group of its own, e.g. ``hazardgw opcua ...``), ``probe`` the
    #: ``hazardgw probe`` group (``hazardgw probe <type> URL ...``). Keep it cheap to import:
    #: the parser is built on every ``hazardgw`` call, so load protocol libraries in the handlers.
    commands: ClassVar[str | None] = None

    @property
    def types(self) -> tuple[str, ...]:
        return tuple(m.model_fields["type"].annotation.__args__[0] for m in self.models)  # type: ignore[union-attr]

    @abstractmethod
    def build(self, configs: Sequence[SourceConfig], ctx: SourceContext) -> list[SourceAdapter]:
        """Adapters for ``configs`` (enabled sources of this spec's types), one per config in
        config order. Called again for the sources a reload restarts."""

    @abstractmethod
    def raw_points(self, source: Mapping[str, Any]) -> Iterator[tuple[Path_, Mapping[str, Any]]]:
        """The points of one raw (not yet validated) source entry, each with its path below
        the entry: the binding checks run on raw data, so they report even when the schema
        failed."""

    def check_raw(self, source: Mapping[str, Any]) -> Iterator[tuple[Path_, str]]:
        """Problems within one raw source entry the schema cannot see (path below the entry)."""
        return iter(())

    def check(self, configs: Sequence[SourceConfig], tags: Mapping[str, Tag]) -> list[SourceProblem]:
        """Problems across this type's validated sources, or against the tag table."""
        return []

    def carries_unbound_tags(self, source: Mapping[str, Any]) -> bool:
        """True when a raw source entry's payloads name tags themselves (MQTT ``native``),
        so a tag bound by no point is not a configuration mistake."""
        return False

    def restart_key(self, config: SourceConfig) -> str:
        """Sources with equal keys share a connection and restart together on a reload."""
        return f"source:{config.id}"
