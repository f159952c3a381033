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
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from gateway.core.config import SourceConfig, Tag
from gateway.core.metrics import Metrics
from gateway.core.models import Reading
from gateway.core.yamlsrc import Path_

Emit = Callable[[Sequence[Reading]], Awaitable[None]]


class Durability(Protocol):
    """When are emitted readings safe? For sources that can have their input sent again
    (MQTT QoS 1/2: the broker keeps a message until it is acknowledged).

    Cost: one integer per emitted batch; waiters wait per batch, never per reading."""

    def ticket(self) -> int:
        """A ticket covering every batch emitted so far (call it right after ``emit``)."""

    async def wait(self, ticket: int, limit: float) -> bool:
        """Return once the alarm engine has seen every reading the ticket covers and, when the
        gateway has a durable store for readings, they are committed to it: True. False when
        the commit did not happen within ``limit`` s (slow or failing disk) or the store is
        failing or closing: the alarm engine has seen them, but a crash now would lose them."""


@dataclass(frozen=True)
class SourceContext:
    emit: Emit  # waits when the pipeline is full (backpressure); never drops
    metrics: Metrics  # shared collectors; register own ones on metrics.registry
    tags: Mapping[str, Tag]  # the site's tag table (id -> Tag), for ranges and kinds
    store_path: str | None = None  # for adapters that need persistent state
    durable: Durability | None = None  # None: no commit signal (tests, tools): treat emit as done


class SourceAdapter(Protocol):
    id: str

    async def start(self) -> None:
        """Start background tasks and return; connection failures are retried, not raised."""

    async def stop(self) -> None:
        """Stop tasks and close connections; idempotent."""

    def health(self) -> dict[str, Any]:
        """``{"ok": bool, "connected": bool, ...}`` for /api/health."""


@dataclass(frozen=True)
class RawValue:
    """What a device last sent for one point, before decoding: for the console's point table
    (commissioning: is the register right, the byte order, the scale?). ``text`` is what a
    technician reads (Modbus: the register words in hex, ``0x41A0 0x0000``); ``words`` the
    numbers; ``ts`` when it was read (ns)."""

    text: str
    words: tuple[int, ...] = ()
    ts: int | None = None


@runtime_checkable
class RawPoints(Protocol):
    """Optional adapter hook: the raw value of each of its points, read on request (the API's
    ``GET /api/tags?raw=true``), never per reading. An adapter keeps what it needs as a side
    effect of work it does anyway (Modbus: a reference to the last answer of each request,
    one assignment per request and poll) and decodes it here."""

    def raw_points(self) -> dict[str, RawValue]:
        """``{tag: RawValue}`` of the points read in the adapter's last successful cycle."""


@dataclass(frozen=True)
class SourceProblem:
    """A problem only the source type can judge; ``source`` is the id it concerns (None:
    the ``sources`` section as a whole), ``path`` is relative to that source's entry.
    ``severity`` "warning" lets the config run (e.g. an OPC UA source without security)."""

    source: str | None
    message: str
    path: Path_ = ()
    severity: Literal["error", "warning"] = "error"


#: The tag-list columns that describe a point (``hazardgw tags``, gateway/taglist): each source
#: type uses the ones its points need (:attr:`SourceSpec.point_columns`).
POINT_COLUMNS: tuple[str, ...] = ("address", "type", "byte_order", "scale", "offset", "node", "topic", "path")


@dataclass(frozen=True)
class ColumnProblem:
    """What is wrong with one cell of a tag-list row (``column`` is a tag-list column name)."""

    column: str
    message: str


@dataclass(frozen=True)
class PointPlacement:
    """Where an imported point goes: ``where`` is the path (below the source entry) of the list
    it belongs in, e.g. ``("points",)`` or ``("subscriptions", 2, "points")``; ``point`` is the
    complete raw point entry (``tag`` included)."""

    where: Path_
    point: dict[str, Any]


class SourceSpec(ABC):
    """One source type (or a family sharing an adapter, like Modbus TCP and RTU).

    **Tag lists** (``hazardgw tags export|import|template``, gateway/taglist). A tag-list row
    describes one tag and, in the columns of :data:`POINT_COLUMNS`, the point that binds it in
    the source named by its ``source`` column. The application never interprets those columns;
    it goes through three hooks, all on *raw* (not yet validated, not ``${ENV}``-interpolated)
    source entries, as the YAML holds them:

    * :attr:`point_columns`: the columns this type's points use; a row that fills another
      point column for a source of this type is refused by the application.
    * :meth:`export_rows`: ``(tag, {column: text})`` per point of a source entry, written as
      the config says it (a Modbus address in the source's addressing, ``holding:0`` or
      ``40001``). Only :attr:`point_columns`; empty cells may be left out.
    * :meth:`import_point`: a row's cells -> the complete raw point entry and the list it
      goes in (:class:`PointPlacement`), or the problems of the row's cells
      (:class:`ColumnProblem`, one per wrong cell, all at once). ``row`` holds the stripped
      cell texts of the point columns ("" = empty; a column the file lacks carries the
      existing point's cell) and ``id``. ``existing`` is the raw entry of the tag's point in
      this source before the import (None if it has none): keys no column governs (a Modbus
      ``fault``, ``current_loop``, an MQTT ``ts_path``) must be carried over, so an export
      followed by an import changes nothing. When (and only when) it returns a placement, the
      hook may extend ``source`` with a container the point needs (e.g. a new MQTT
      subscription for a topic no subscription has yet); it never touches other points. The
      application removes or replaces ``existing`` itself (in place when ``where`` is its list).
    * :meth:`example_point`: cells for ``hazardgw tags template`` (one example row per kind).

    Export then import must give an equivalent config; the tests check it for every spec on
    the demo site.
    """

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

    # ------------------------------------------------------------------ tag lists
    #: the :data:`POINT_COLUMNS` this type's points use (empty: no tag-list support)
    point_columns: ClassVar[tuple[str, ...]] = ()
    #: allowed values of some of those columns (offered as drop-down lists in an exported XLSX)
    column_choices: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    def export_rows(self, source: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, str]]]:
        """``(tag, {column: text})`` for each point of a raw source entry (see the class doc)."""
        return iter(())

    def import_point(
        self, source: MutableMapping[str, Any], row: Mapping[str, str], existing: Mapping[str, Any] | None
    ) -> PointPlacement | list[ColumnProblem]:
        """The point a tag-list row describes, or its problems (see the class doc)."""
        return [ColumnProblem("source", f"source type {source.get('type')!r} does not take points from a tag list")]

    def example_point(self, kind: str, n: int) -> dict[str, str] | None:
        """Point cells of the ``n``-th example row (a tag of ``kind``) of a template, or None."""
        return None


def merged_point(existing: Mapping[str, Any] | None, values: Mapping[str, Any]) -> dict[str, Any]:
    """A point entry from ``existing`` with ``values`` applied (a value None removes the key),
    keeping the existing key order and every key ``values`` does not name (for
    :meth:`SourceSpec.import_point`)."""
    out = dict(existing or {})
    for k, v in values.items():
        if v is None:
            out.pop(k, None)
        else:
            out[k] = v
    return out


def number_cell(text: str) -> int | float:
    """A tag-list number: an int when written as one ("40"), else a float ("0.1", "1e-3").
    Raises ValueError for anything else (NaN and infinities included)."""
    t = text.strip()
    if t.lstrip("+-").isdigit():
        return int(t)
    v = float(t)
    if v != v or v in (float("inf"), float("-inf")):
        raise ValueError(f"{text!r} is not a finite number")
    return v


def listed_points(source: Mapping[str, Any], key: str = "points") -> Iterator[tuple[Path_, Mapping[str, Any]]]:
    """The point entries of a raw source entry that keeps them in one list (``points:``), with
    their paths (for :meth:`SourceSpec.raw_points`)."""
    points = source.get(key)
    if isinstance(points, list):
        for k, p in enumerate(points):
            if isinstance(p, dict):
                yield (key, k), p


def point_cells(point: Mapping[str, Any], columns: Iterable[str]) -> dict[str, str]:
    """The cells of ``columns`` a raw point entry sets, as text (for :meth:`SourceSpec.export_rows`)."""
    return {k: str(point[k]) for k in columns if point.get(k) is not None}


def number_cells(
    row: Mapping[str, str], columns: Iterable[str]
) -> tuple[dict[str, int | float | None], list[ColumnProblem]]:
    """The number cells of a tag-list row (``scale``, ``offset`` ...): {column: number, or None
    for an empty cell (the key is removed)}, and a problem per cell that is not a number (for
    :meth:`SourceSpec.import_point`)."""
    values: dict[str, int | float | None] = {}
    problems: list[ColumnProblem] = []
    for key in columns:
        text = row.get(key, "")
        try:
            values[key] = number_cell(text) if text else None
        except ValueError:
            problems.append(ColumnProblem(key, f"{text!r} is not a number"))
    return values, problems
