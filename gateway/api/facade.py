"""What the API may see of its gateway and what it may do: the narrow, typed facade.

The API never holds the gateway. The supervisor builds one :class:`GatewayFacade` for
each generation of its downstream components (at start and again on every reload that
rebuilds them, since the API is rebuilt with them) and hands it to ``build_app`` /
``ApiServer``. Everything the API reads or does goes through these fields:

* ``config``: the gateway's config (site, tags, hazard sources, ``api``). A reload that
  changes anything but ``sources`` rebuilds the API with a new facade; the API never
  reads ``sources``.
* ``latest``: the live state's latest reading per tag (the live dict, updated in place).
* ``alarms``: the alarm engine's read side (:class:`AlarmReads`, journal included: its
  queries, and the KPI rows of ``GET /api/kpi``); ``actions``: the operator actions the
  routes offer (:class:`AlarmActions`, group acknowledge included).
* ``health``, ``online_rates``, ``sources``: callables, so they always answer for the
  current state (``sources`` changes on a sources-only reload without an API rebuild).
* ``registry``: the gateway's Prometheus registry (served by ``GET /metrics``).
* ``register_points``: send the uplink's point registration again (``POST /api/uplink/register``).
* ``tests``: test mode (:class:`TestModeActions`: the tags in test, start and end tests, the
  test records); ``calibrations`` (:class:`CalibrationActions`: due dates, record one);
  ``in_use``: the in-use rate of gas detectors (投用率); ``points``: per tag its source and
  where it is read (the source type's text); ``raw_points``: the raw value of each point
  whose adapter keeps one (Modbus register words), computed on request.

Events reach the API the other way round: the supervisor subscribes the event hub's
``on_alarm_event`` to the alarm engine and the trend recorder to the pipeline, in its one
declared order (gateway/supervisor.py). The API subscribes itself to nothing.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from prometheus_client import CollectorRegistry

from alerting import AlarmEvent, AlarmView, HazardStatus
from gateway.core.config import SiteConfig
from gateway.core.models import Reading
from gateway.core.sources import RawValue
from gateway.upkeep.calibration import CalibrationState
from gateway.upkeep.store import TestRecord


class JournalReads(Protocol):
    """The alarm journal's queries (blocking: call them with ``asyncio.to_thread``)."""

    def events(
        self,
        *,
        since_ns: int | None = None,
        until_ns: int | None = None,
        tag: str | None = None,
        alarm: str | None = None,
        occurrence: int | None = None,
        kinds: Iterable[str] | None = None,
        limit: int = 1000,
        newest_first: bool = True,
    ) -> list[dict[str, Any]]: ...

    def occurrences(
        self,
        *,
        since_ns: int | None = None,
        alarm: str | None = None,
        occurrence: int | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]: ...

    def kpi_rows(self, since_ns: int, until_ns: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Annunciations made in [since, until) and the occurrences overlapping it (alerting/kpi.py)."""
        ...


class AlarmReads(Protocol):
    """The alarm engine's read side (event-loop thread only: the engine is not thread-safe)."""

    @property
    def flood(self) -> bool: ...

    @property
    def journal(self) -> JournalReads | None:
        """None without a journal (not configured, or it failed to open at start)."""

    def alarms(self) -> list[AlarmView]: ...
    def active(self) -> list[AlarmView]: ...
    def suppressed(self) -> list[AlarmView]: ...
    def get(self, ref: int | str) -> AlarmView: ...
    def history(self, limit: int = 100, *, alarm: str | None = None, tag: str | None = None) -> list[AlarmEvent]: ...
    def statuses(self) -> Mapping[str, HazardStatus]: ...


class AlarmActions(Protocol):
    """The operator actions of ``POST /api/alarms/{id}/...`` (each returns the event it made)."""

    def ack(self, ref: int | str, user: str, comment: str | None = None) -> AlarmEvent: ...

    def shelve(
        self,
        ref: int | str,
        user: str,
        duration: float | None = None,
        *,
        one_shot: bool = False,
        comment: str | None = None,
    ) -> AlarmEvent: ...

    def ack_many(
        self, refs: Sequence[int | str], user: str, comment: str | None = None
    ) -> tuple[list[AlarmEvent], list[tuple[str, str]]]:
        """Acknowledge a group as one operator action: one event per alarm (same user and
        comment); the ones that cannot be acknowledged come back as (id, reason)."""
        ...

    def unshelve(self, ref: int | str, user: str, comment: str | None = None) -> AlarmEvent: ...

    def dispose(
        self,
        occurrence: int,
        cause: str,
        action: str,
        handler: str,
        result: str,
        *,
        user: str | None = None,
        comment: str | None = None,
    ) -> AlarmEvent: ...


class SourceHealth(Protocol):
    """A source as the scrape-time gauges see it (``hazardgw_source_queue_depth``)."""

    @property
    def id(self) -> str: ...

    def health(self) -> dict[str, Any]: ...


class TestModeActions(Protocol):
    """Test mode (gateway/upkeep/testmode.py). ``begin``/``end`` raise TestModeError (400,
    404, 409) and StoreUnavailable (503)."""

    @property
    def testing(self) -> frozenset[str]: ...

    def running(self) -> list[TestRecord]: ...

    async def begin(
        self,
        tags: Sequence[str] | None,
        duration: float,
        by: str,
        *,
        source: str | None = None,
        comment: str | None = None,
        levels: Sequence[str] | None = None,
    ) -> tuple[list[TestRecord], list[tuple[str, str]]]: ...

    async def end(self, tags: Sequence[str] | None, by: str, *, source: str | None = None) -> list[TestRecord]: ...

    async def records(self, since_ns: int | None, until_ns: int | None, tag: str | None = None) -> list[TestRecord]:
        ...


class CalibrationActions(Protocol):
    """Calibration due dates (gateway/upkeep/calibration.py)."""

    def states(self) -> Mapping[str, CalibrationState]: ...

    async def record(self, tag: str, by: str, *, date: dt.date | None = None, interval_s: float | None = None,
                     comment: str | None = None) -> CalibrationState: ...


@dataclass(frozen=True, kw_only=True)
class GatewayFacade:
    config: SiteConfig
    latest: Mapping[str, Reading]
    alarms: AlarmReads
    actions: AlarmActions
    health: Callable[[], dict[str, Any]]
    online_rates: Callable[[], dict[str, Any]]
    sources: Callable[[], Sequence[SourceHealth]]
    registry: CollectorRegistry
    tests: TestModeActions
    calibrations: CalibrationActions
    in_use: Callable[[], dict[str, Any]]
    points: Callable[[], Mapping[str, Mapping[str, str | None]]]
    raw_points: Callable[[], Mapping[str, RawValue]]
    #: queue the uplink's point registration (meta) again now; None without an uplink
    register_points: Callable[[str], None] | None = None
