"""The supervisor: builds one gateway from a config and starts/stops its components.

Data flows one way: adapters -> pipeline -> {live state, alarm engine, sinks}. Start order
is downstream first (sinks, pipeline, watchers) so nothing produced is refused; stop order
is upstream first (adapters, then the pipeline drains, then sinks flush). Nothing here is
global: two ``Gateway`` objects in one process are independent (tests rely on it).

Components do not subscribe themselves to each other: :meth:`Gateway._wiring` is the one
place that says who gets readings, alarm events and push records, and in which order, and
:meth:`Gateway._wire` connects exactly that, once per generation of downstream components.
The API gets a :class:`~gateway.api.facade.GatewayFacade` (what it reads and the actions it
may take), never the gateway.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from adapters.registry import build_sources, spec_of
from alerting import AlarmEngine, AlarmEvent, Journal, alarm_line
from alerting.notify import Notifier, NotifyRecord, notify_line
from gateway.alarmkpi import AlarmKpiGauges
from gateway.config import Config
from gateway.core.files import private_dir, tighten
from gateway.core.intervals import stale_limits
from gateway.core.metrics import Metrics
from gateway.core.sources import RawPoints, RawValue, SourceAdapter, SourceContext
from gateway.livestate import LiveState, StaleWatcher
from gateway.online import OnlineRate, default_interval_of
from gateway.pipeline import Pipeline, Subscriber
from gateway.selfmetrics import SelfMetricsWriter
from gateway.sinks.influx import InfluxSink
from gateway.upkeep.calibration import Calibrations
from gateway.upkeep.inuse import InUseRate
from gateway.upkeep.store import UpkeepStore
from gateway.upkeep.testmode import TestMode
from gateway.uplink import UplinkService

if TYPE_CHECKING:  # imported when the API is enabled (FastAPI, uvicorn: ~30 MB a site without it never loads)
    from gateway.api.context import ApiSettings
    from gateway.api.facade import GatewayFacade
    from gateway.api.server import ApiServer  # API and duty console (issue 6)

log = logging.getLogger(__name__)


class Component(Protocol):
    name: str

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def health(self) -> dict[str, Any]: ...


# Config sections whose change rebuilds the downstream components (engine, sinks, API).
# A change of ``sources`` alone restarts only the affected sources.
DOWNSTREAM_SECTIONS = tuple(f for f in Config.model_fields if f != "sources")

AlarmCallback = Callable[[AlarmEvent], None]
RecordCallback = Callable[[NotifyRecord], None]
TestsCallback = Callable[[frozenset[str]], None]


@dataclass(frozen=True)
class Wiring:
    """Who gets what, in order (made by :meth:`Gateway._wiring`; read its comments)."""

    readings: tuple[Subscriber, ...] = ()  # pipeline subscribers, each batch in this order
    alarm_events: tuple[tuple[str, AlarmCallback], ...] = ()  # alarm engine subscribers
    notify_records: tuple[tuple[str, RecordCallback], ...] = ()  # notifier subscribers
    test_changes: tuple[tuple[str, TestsCallback], ...] = ()  # told the set of tags in test mode

    def names(self) -> dict[str, list[str]]:
        return {
            "readings": [s.name for s in self.readings],
            "alarm_events": [n for n, _ in self.alarm_events],
            "notify_records": [n for n, _ in self.notify_records],
            "test_changes": [n for n, _ in self.test_changes],
        }


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        pipeline_max: int = 100_000,
        self_metrics_interval: float = 10.0,
        api_settings: ApiSettings | None = None,
    ) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.self_metrics_interval = self_metrics_interval
        self.api_settings = api_settings
        # kept across reloads: the pipeline and the live state
        self.pipeline = Pipeline(self.metrics, max_readings=pipeline_max)
        self.live = LiveState(clock)
        # data online rate (数据在线率): kept across reloads like the live state
        self.online = OnlineRate(
            config, self.metrics, path=Path(config.store.path) / "online.json",
            default_interval=default_interval_of(config),
        )
        # detector upkeep (issue 17): test mode, calibrations, in-use rate; kept across reloads
        self.upkeep_store = UpkeepStore(Path(config.store.path))
        self.testmode = TestMode(config, self.upkeep_store, clock=clock)
        self.calibrations = Calibrations(config, self.upkeep_store)
        self.inuse = InUseRate(
            config, self.metrics, path=Path(config.store.path) / "inuse.json", latest=self.live.latest,
            testing=lambda: self.testmode.testing, out_of_service=lambda: self.alarms.out_of_service_tags(),
            overdue=self.calibrations.overdue,
        )
        self._points: tuple[Config, dict[str, dict[str, str | None]]] | None = None
        self.wiring = Wiring()  # what _wire connected last (nothing yet)
        self._unwire: list[Callable[[], None]] = []
        self.extra_health: dict[str, Callable[[], dict[str, Any]]] = {
            "online": self.online.health, "test-mode": self.testmode.health, "in-use": self.inuse.health,
        }
        self._build_downstream(config)
        self.sources: list[SourceAdapter] = build_sources(config.sources, self._source_context(config))
        self._running = False

    # ------------------------------------------------------------------ building
    def _build_downstream(self, config: Config) -> None:
        """Alarm engine, notifier, InfluxDB sink, watchers, uplink and API for ``config``
        (``self.config`` is ``config`` already), then :meth:`_wire` connects them."""
        self.store_path = Path(config.store.path)
        self.journal = Journal.from_config(config, self.metrics)
        self.alarms = AlarmEngine(config, self.metrics, self.journal, clock=self.clock)
        # pushes to duty officers (issue 5): alarm events in, durable outbox
        self.notifier = Notifier(config, self.alarms, self.metrics, clock=self.clock)
        self.influx: InfluxSink | None = None
        self.self_metrics: SelfMetricsWriter | None = None
        influx_bytes, uplink_bytes = split_store_bytes(config)
        if config.influx is not None:
            # durable spool (issue 7): {store.path}/spool/influx
            self.influx = InfluxSink(
                config.influx, config, self.metrics,
                spool_dir=Path(config.store.path) / "spool" / "influx", spool_max_bytes=influx_bytes,
            )
            self.self_metrics = SelfMetricsWriter(
                config.site.code, self.metrics, self.influx, interval=self.self_metrics_interval
            )
        self.stale = StaleWatcher(self.live, self.pipeline, stale_limits(config), clock=self.clock)
        # alarm KPIs (issue 19): 24 h / 30 d gauges from the journal, for /metrics and Grafana
        self.alarm_kpi = AlarmKpiGauges(config, lambda: self.alarms.journal, self.metrics)
        # --- uplink to the regulator's platform (issue 9): own durable spool {store.path}/spool/uplink
        self.uplink: UplinkService | None = None
        if config.uplink is not None and config.uplink.enabled:
            self.uplink = UplinkService(
                config, self.alarms, self.live, self.metrics,
                spool_dir=Path(config.store.path) / "spool" / "uplink", spool_max_bytes=uplink_bytes,
                online=getattr(self, "online", None), in_use=self.inuse.rates, health=self.health,
            )
        # --- API and duty console (issue 6): HTTP API, SSE, console, /metrics on api.listen
        self.api: ApiServer | None = None
        if config.api.enabled:
            from gateway.api.ack import AckLinks, ack_router
            from gateway.api.server import ApiServer

            self.api = ApiServer(
                self.api_facade(), extra_routers=[ack_router(AckLinks.of(self.notifier))], settings=self.api_settings
            )
        self._wire()

    def _wiring(self) -> Wiring:
        """THE place that decides who gets readings, alarm events and push records, and in
        which order. Components never subscribe themselves; they expose ``on_readings`` /
        ``on_alarm_event`` and :meth:`_wire` connects what this returns."""
        # Readings: the pipeline hands every batch to these, in this order, synchronously
        # (each only updates memory or appends to its own bounded buffer).
        readings: list[Subscriber] = [
            # 1. live state first: whatever reacts to this batch (an alarm event on the
            #    console or the uplink, a scrape) reads the value that caused it
            self.live,
            # 2. data online rate (counts arrivals; survives reloads like the live state)
            self.online,
            # 3. the alarm engine decides on the readings; its events go out synchronously
            #    to the alarm subscribers below before the next subscriber gets the batch
            self.alarms,
            # 4. test records: peak and low of the tags in test (returns at once when none is)
            self.testmode,
        ]
        if self.influx is not None:
            # 5. the readings queued for InfluxDB (alarm lines of step 3 are already in the
            #    sink's priority buffer, which is written ahead of any reading backlog)
            readings.append(self.influx)
        if self.api is not None:
            # 6. the console's trends: marks changed tags; the SSE hub sends them once a second
            readings.append(self.api.trends)

        # Alarm events. Before any of these runs, the engine has put the event in its
        # history and in the alarm journal's queue (the durable record, alerting/journal.py).
        # Each callback is synchronous and cheap (an append to its own bounded buffer, no
        # I/O) and isolated (an exception is counted in hazardgw_alarm_callback_errors and
        # the next one still runs), so the order only decides who is first by microseconds;
        # the longest road to a person goes first. This is the order the components had when
        # they subscribed themselves (notifier at construction, then InfluxDB, then uplink
        # and console at their start).
        alarm_events: list[tuple[str, AlarmCallback]] = [
            # 1. pushes to the duty officers' phones (the slowest path to a human: the
            #    notifier's task commits the escalation to its outbox, then a messenger
            #    round trip)
            ("notifier", self.notifier.on_alarm_event),
        ]
        if self.influx is not None:
            # 2. the alarm record in InfluxDB (priority buffer, spooled to disk)
            alarm_events.append(("influx", self._alarm_to_influx))
        if self.uplink is not None:
            # 3. the regulator's platform (its own durable spool)
            alarm_events.append(("uplink", self.uplink.on_alarm_event))
        if self.api is not None:
            # 4. the duty console (SSE; nothing to do without connected clients)
            alarm_events.append(("api-events", self.api.hub.on_alarm_event))
        # 5. test records: a test alarm raised on a tag in test is a level reached (no I/O)
        alarm_events.append(("test-records", self.testmode.on_alarm_event))

        # Push records (notified / escalated) of the notifier.
        notify_records: list[tuple[str, RecordCallback]] = []
        if self.influx is not None:
            notify_records.append(("influx", self._notify_to_influx))  # the push record in InfluxDB

        # Test mode: every change of the set of tags in test (and every rewiring) goes to these,
        # in this order. The ones that only keep state first (series prefixes, maintenance
        # flags), the alarm engine last: at the end of a test it closes test occurrences and
        # raises the alarms still present as real ones, which then reach an uplink that already
        # reports the tag back in service.
        test_changes: list[tuple[str, TestsCallback]] = []
        if self.influx is not None:
            test_changes.append(("influx", self.influx.set_tests))  # readings tagged test=true
        if self.uplink is not None:
            test_changes.append(("uplink", self.uplink.set_tests))  # maintenance flags, meta again
        test_changes.append(("alarms", self.alarms.set_tests))
        return Wiring(tuple(readings), tuple(alarm_events), tuple(notify_records), tuple(test_changes))

    def _wire(self) -> None:
        """Connect :meth:`_wiring` for the current components, replacing what the previous
        call connected (so N reloads leave exactly one subscription each). Called while
        nothing is dispatched: at construction, or inside ``pipeline.hold()`` on reload."""
        for undo in self._unwire:
            undo()
        for sub in self.wiring.readings:
            self.pipeline.unsubscribe(sub)
        new = self._wiring()
        for sub in new.readings:
            self.pipeline.subscribe(sub)
        # the commit signal (README "Durable spool"): MQTT QoS 1/2 messages are acknowledged once
        # their readings are committed to the InfluxDB spool; without one, once dispatched (the
        # alarm engine has seen them)
        self.pipeline.commit_point = self.influx.queue if self.influx is not None else None
        unwire: list[Callable[[], None]] = []
        for _, on_event in new.alarm_events:
            unwire.append(self.alarms.subscribe(on_event))
        for _, on_record in new.notify_records:
            unwire.append(self.notifier.subscribe(on_record))
        self._unwire = unwire
        self.wiring = new
        self.testmode.listeners = list(new.test_changes)
        self.testmode.notify()  # new components learn which tags are in test

    def api_facade(self) -> GatewayFacade:
        """What the API reads and the actions it may take, for the current components."""
        from gateway.api.facade import GatewayFacade

        return GatewayFacade(
            config=self.config,
            latest=self.live.latest,
            alarms=self.alarms,
            actions=self.alarms,
            health=self.health,
            online_rates=self.online.rates,
            sources=lambda: self.sources,
            registry=self.metrics.registry,
            register_points=self.uplink.register_points if self.uplink is not None else None,
            tests=self.testmode,
            calibrations=self.calibrations,
            in_use=self.inuse.rates,
            points=self.point_info,
            raw_points=self.raw_points,
        )

    def point_info(self) -> dict[str, dict[str, str | None]]:
        """tag -> {source, source_type, where} for the point table (from the current config;
        the source type's own text, :meth:`SourceConfig.point_addresses`)."""
        cached = self._points
        if cached is not None and cached[0] is self.config:
            return cached[1]
        out: dict[str, dict[str, str | None]] = {}
        for s in self.config.sources:
            where = s.point_addresses()
            for tag in s.point_tags():
                out.setdefault(tag, {"source": s.id, "source_type": s.type, "where": where.get(tag)})
        self._points = (self.config, out)
        return out

    def raw_points(self) -> dict[str, RawValue]:
        """The raw value of every point whose adapter keeps one (on request: the point table)."""
        out: dict[str, RawValue] = {}
        for s in self.sources:
            if isinstance(s, RawPoints):
                try:
                    out.update(s.raw_points())
                except Exception:
                    log.exception("source %s: raw values unavailable", s.id)
        return out

    def _source_context(self, config: Config) -> SourceContext:
        return SourceContext(
            emit=self.pipeline.emit, metrics=self.metrics, tags=config.tag_map(), store_path=str(self.store_path),
            durable=self.pipeline,
        )

    def _alarm_to_influx(self, event: AlarmEvent) -> None:
        if self.influx is not None:
            self.influx.enqueue_priority([alarm_line(event, self.config.site.code)])

    def _notify_to_influx(self, record: NotifyRecord) -> None:
        if self.influx is not None:
            self.influx.enqueue_priority([notify_line(record, self.config.site.code)])

    def _downstream(self) -> list[Any]:
        """Downstream components in start order (the pipeline is started with them)."""
        comps: list[Any] = []
        if self.influx is not None:
            comps.append(self.influx)
        comps.append(self.alarms)  # restores journal state before any reading is dispatched
        comps.append(self.notifier)  # after the engine restored its state, stops before it
        if self.uplink is not None:
            comps.append(self.uplink)  # after the engine (active alarms), stops after the pipeline drained
        comps.append(self.pipeline)
        comps.append(self.stale)
        comps.append(self.alarm_kpi)  # after the engine opened its journal; before the self-metrics writer
        if self.self_metrics is not None:
            comps.append(self.self_metrics)
        # --- API (issue 6): after the pipeline and the engine, so it starts last and stops
        # first (no operator action reaches an engine that is stopping; sinks flush after it)
        if self.api is not None:
            comps.append(self.api)
        return comps

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._running:
            return
        await asyncio.to_thread(secure_store, self.store_path)
        self._running = True
        try:
            await self.online.start()  # before the downstream components; not in _downstream (survives reloads)
            # the tests still running, before the alarm engine restores its journal (their test
            # occurrences stay test occurrences) ...
            await self.testmode.load()
            await self.calibrations.load()
            for c in self._downstream():
                await c.start()
            # ... and tests that expired while the gateway was down end once everything runs
            # (the alarms still present are raised as real alarms to every subscriber)
            await self.testmode.start()
            await self.inuse.start()
            for s in self.sources:
                await s.start()
        except BaseException:
            await self.stop()
            raise
        log.info(
            "gateway for site %s started: %d sources, %d tags%s",
            self.config.site.code,
            len(self.sources),
            len(self.config.tags),
            "" if self.influx else " (no influx: live only)",
        )

    async def stop(self) -> None:
        """Upstream first: sources stop, the pipeline drains, sinks flush. Idempotent."""
        if not self._running:
            return
        self._running = False
        await asyncio.gather(*(s.stop() for s in self.sources), return_exceptions=True)
        await self._stop_components([self.inuse, self.testmode, *reversed(self._downstream()), self.online])

    async def _stop_components(self, comps: Iterable[Any]) -> None:
        for c in comps:
            try:
                await c.stop()
            except Exception:
                log.exception("error stopping %s", getattr(c, "name", c))

    # ------------------------------------------------------------------ hot reload
    async def reload(self, new: Config) -> str:
        """Apply a validated config without a gap for unaffected sources.

        Sources whose settings, or whose tags' settings, are unchanged keep running (for
        Modbus: unless another source on the same bus changed, since a bus is one
        connection). When anything outside ``sources`` changed, the downstream components
        are rebuilt while the pipeline holds its dispatch: readings queue up (and, when the
        queue is full, producers wait), so every reading still reaches the new alarm engine
        and sink, and alarm state carries over through the journal as on a restart.
        """
        old = self.config
        if new == old:
            return "no changes"
        changed = [f for f in DOWNSTREAM_SECTIONS if getattr(old, f) != getattr(new, f)]
        if not changed and _alarm_view_of_sources(old) != _alarm_view_of_sources(new):
            changed.append("alarm units")  # the engine's COMM units and stale limits come from sources
        restart = _sources_to_restart(old, new)
        done: list[str] = []
        self.testmode.configure(new)  # tests of tags no longer configured end here
        self.calibrations.configure(new)
        self.inuse.configure(new)
        if changed:
            async with self.pipeline.hold():
                downstream = [c for c in self._downstream() if c is not self.pipeline]
                await self._stop_components(reversed(downstream))
                self.config = new
                self._build_downstream(new)  # and _wire: the new components replace the old
                for c in self._downstream():
                    if c is not self.pipeline:
                        await c.start()
                self.testmode.notify()  # the new engine closes test occurrences no test covers
            done.append("rebuilt " + ", ".join(changed))
        self.config = new
        self.online.configure(new, default_interval=default_interval_of(new))
        if restart:
            stopping = [s for s in self.sources if s.id in restart]
            await asyncio.gather(*(s.stop() for s in stopping), return_exceptions=True)
            fresh = build_sources([c for c in new.sources if c.id in restart], self._source_context(new))
            kept = {s.id: s for s in self.sources if s.id not in restart}
            by_id = {**kept, **{s.id: s for s in fresh}}
            self.sources = [by_id[c.id] for c in new.sources if c.id in by_id]
            for s in fresh:
                await s.start()
            done.append("restarted sources " + ", ".join(sorted(restart)))
            if not changed and self.uplink is not None:
                self.uplink.sources_changed(new)  # meta lists the sources: send it again
        kept_ids = sorted(s.id for s in self.sources if s.id not in restart)
        if kept_ids:
            done.append("kept running " + ", ".join(kept_ids))
        return "; ".join(done)

    def health(self) -> dict[str, Any]:
        comps: dict[str, Any] = {}
        for c in self._downstream():
            comps[c.__class__.__name__ if not hasattr(c, "name") else c.name] = c.health()
        for s in self.sources:
            comps[f"source:{s.id}"] = s.health()
        for name, fn in self.extra_health.items():
            comps[name] = fn()
        ok = all(bool(v.get("ok")) for v in comps.values())
        return {"status": "ok" if ok else "degraded", "components": comps}

    async def run_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()


def secure_store(path: Path) -> None:
    """Create ``store.path`` (0700) and tighten whatever in it is readable by others (files
    0600, directories 0700; gateway/core/files.py), logged once. Blocking."""
    private_dir(path)
    t = tighten(path)
    if t.changed:
        log.warning("store.path %s: %d file(s)/directories were readable by other users; tightened to 0600/0700: %s",
                    path, len(t.changed), t.summary())
    if t.failed:
        log.error("store.path %s: cannot make %d file(s) private (%s)", path, len(t.failed),
                  "; ".join(f"{p}: {e}" for p, e in t.failed[:5]))


def split_store_bytes(config: Config) -> tuple[int, int]:
    """store.max_bytes between the InfluxDB spool and the uplink spool: all to InfluxDB
    without an uplink, else 3/4 and 1/4 (realtime uplink messages are one per period, so a
    quarter holds a long outage; see README "Bounds")."""
    total = config.store.max_bytes
    if config.uplink is None or not config.uplink.enabled:
        return total, 0
    if config.influx is None:
        return 0, total
    return total - total // 4, total // 4


def _alarm_view_of_sources(config: Config) -> tuple[object, ...]:
    """What the alarm engine and the stale watcher take from ``sources``: the units of loss of
    monitoring (COMM alarms) and each tag's stale limit. A sources-only reload that changes
    them rebuilds the downstream components like any other alarm change."""
    return tuple(config.comm_units()), tuple(sorted(stale_limits(config).items()))


def _sources_to_restart(old: Config, new: Config) -> set[str]:
    """Ids of sources (old or new) that must be (re)started for ``new``."""
    old_src = {s.id: s for s in old.sources}
    new_src = {s.id: s for s in new.sources}
    old_tags, new_tags = old.tag_map(), new.tag_map()
    changed_tags = {t for t in old_tags.keys() | new_tags.keys() if old_tags.get(t) != new_tags.get(t)}
    bound_old, bound_new = old.source_of_tag(), new.source_of_tag()
    restart = {i for i in old_src.keys() | new_src.keys() if old_src.get(i) != new_src.get(i)}
    restart |= {bound_old[t] for t in changed_tags if t in bound_old}
    restart |= {bound_new[t] for t in changed_tags if t in bound_new}
    # sources sharing a connection (a Modbus bus) restart together
    groups: dict[str, set[str]] = {}
    for cfg in (*old.sources, *new.sources):
        groups.setdefault(spec_of(cfg).restart_key(cfg), set()).add(cfg.id)
    for members in groups.values():
        if members & restart:
            restart |= members
    return restart
