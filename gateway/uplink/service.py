"""The uplink (联网监控) component: builds messages with a profile, spools them, sends them.

Flow::

    alarm engine --event--> profile.alarm ----\\
    (start)       --------> profile.meta  -----+--> durable spool --> sender --> transport --> platform
    every period: live state -> profile.realtime/   (priority first)      \\
    every heartbeat: health + online rates -> profile.heartbeat ---------> (not spooled)

* **Realtime**: at every multiple of ``uplink.period`` on the wall clock (10 s: :00, :10,
  ...) the latest reading of every tag (value, quality, source timestamp, the tag's alarm
  status HH/H/L/LL/normal) goes into the spool as ``reading`` records.
* **Alarm events** go in as ``priority`` records from inside the engine's callback (no
  I/O there: the spool commits them at once in its I/O thread), so they are sent within
  milliseconds and, after an outage, before the realtime backlog. Meta likewise, on every
  start (a config change rebuilds the uplink, so "on change" is covered).
* **Sender**: one task; connects with capped backoff, then takes batches from the spool
  (priority records first, each kind in order), hands them to ``transport.send`` and
  acknowledges them in the spool only when the platform acknowledged them. A failed send
  releases the batch and reconnects: the same messages, same order, same msgIds, again.
* **Heartbeat**: only the latest one waits (in memory); it is sent when connected, else
  skipped and counted (a heartbeat says "alive now"). It carries the data online rate and
  the in-use rate of gas detectors (投用率).
* **Test mode** (:meth:`UplinkService.set_tests`, wired by the supervisor): events of test
  occurrences are not sent (the platform never hears of a bump test as an alarm); the tags in
  test are reported as under maintenance (realtime items, and meta again at once when the
  profile's meta says so).

Bounds and overflow: the spool holds at most ``spool_max_bytes`` on disk; beyond that the
oldest *realtime* messages are dropped and counted (``hazardgw_sink_dropped{sink="uplink"}``),
never alarm or meta messages. In memory: at most ``batch_messages`` messages and 1 MiB in
flight (so an alarm made while a backlog drains waits for at most one such batch), plus
the spool's pending bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.core.backoff import Backoff
from gateway.core.metrics import Metrics
from gateway.core.ratelog import RateLimitedLog
from gateway.spool import Spool
from gateway.uplink.profile import (
    LIMIT_STATUS,
    Heartbeat,
    Message,
    Profile,
    TagValue,
    Transport,
    TransportError,
    alarm_status,
    check_messages,
    decode_record,
    encode_record,
    resolve_profile,
)

if TYPE_CHECKING:
    from alerting.engine import AlarmEngine
    from alerting.events import AlarmEvent
    from gateway.config import Config
    from gateway.livestate import LiveState
    from gateway.online import OnlineRate

log = logging.getLogger(__name__)

MAX_BATCH_BYTES = 1024 * 1024
REQUEST_INTERVAL = 60.0  # s: platform requests for meta closer together than this are ignored


class UplinkMetrics:
    """Collectors of the uplink, once per registry (``Metrics.group``)."""

    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.messages = Counter(
            "hazardgw_uplink_messages", "Uplink messages by channel and result (sent, skipped, error)",
            ["channel", "result"], registry=r,
        )
        self.connected = Gauge("hazardgw_uplink_connected", "1 while the platform connection is up", registry=r)
        self.backlog = Gauge("hazardgw_uplink_backlog", "Uplink messages waiting to be sent (spooled)", registry=r)
        self.send_seconds = Histogram(
            "hazardgw_uplink_send_seconds", "Time for the platform to acknowledge one batch",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10), registry=r,
        )
        self.alarm_delay = Histogram(
            "hazardgw_uplink_alarm_delay_seconds", "Alarm event made -> acknowledged by the platform",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60, 300), registry=r,
        )
        self.reconnects = Counter("hazardgw_uplink_reconnects", "Platform connections (re)established", registry=r)


def _version() -> str:
    try:
        return metadata.version("hazardgw")
    except metadata.PackageNotFoundError:
        return "dev"


def _channel(topic: str) -> str:
    return topic.rsplit("/", 1)[-1]


class UplinkService:
    name = "uplink"

    def __init__(
        self,
        config: Config,
        engine: AlarmEngine,
        live: LiveState,
        metrics: Metrics,
        *,
        spool_dir: str | Path,
        spool_max_bytes: int,
        online: OnlineRate | None = None,
        in_use: Callable[[], Mapping[str, Any]] | None = None,
        health: Callable[[], Mapping[str, Any]] | None = None,
        profile: Profile | None = None,
        batch_messages: int = 50,
        shutdown_timeout: float = 5.0,
        fsync: bool = True,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        assert config.uplink is not None
        self.config = config
        self.cfg = config.uplink
        self.engine = engine
        self.live = live
        self.online = online
        self._in_use = in_use
        self._health_fn = health
        self._testing: frozenset[str] = frozenset()
        self.profile = profile or resolve_profile(self.cfg.profile)(config, self.cfg)
        self.transport: Transport = self.profile.transport()
        self.transport.request_handler = self._platform_request
        self.batch_messages = batch_messages
        self.reconnect = Backoff(self.cfg.reconnect_min, self.cfg.reconnect_max)
        self.shutdown_timeout = shutdown_timeout
        self.clock = clock
        self.wall = wall
        self.m = metrics.group(UplinkMetrics)
        self.queue = Spool(
            Path(spool_dir), name=self.name, metrics=metrics, max_bytes=spool_max_bytes,
            block_records=batch_messages, commit_interval=0.5, max_pending=10_000,
            max_pending_priority=100_000, fsync=fsync, interleave=False,
            # small batches: an alarm made while a backlog drains waits for one batch at most
            max_batch_bytes=MAX_BATCH_BYTES,
        )
        # per tag: static fields of its realtime item, and the active limit conditions
        self._tags = [(t.id, t.name or t.id, t.hazard_source, t.kind, t.unit) for t in config.tags]
        self._active: dict[str, set[str]] = {}
        self._heartbeat: Message | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self._ticker: asyncio.Task[None] | None = None
        self._rlog = RateLimitedLog(log, 60.0)
        self._started = 0.0
        self._version = _version()
        self.last_error: str | None = None
        self.last_sent: float | None = None
        self.sent: dict[str, int] = {}
        self.skipped_heartbeats = 0
        self.build_errors = 0
        self._alarm_walls: dict[str, int] = {}  # alarm payload -> event wall ns (for the latency metric)
        self._last_request: float | None = None  # when a platform request last queued meta
        self.requests_ignored = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.queue.open()
        self._started = self.clock()
        self._stopping.clear()
        for a in self.engine.active():
            if a.active and a.condition in LIMIT_STATUS and not a.test:
                self._active.setdefault(a.tag, set()).add(a.condition)
        self._queue_meta()
        self._sender = asyncio.create_task(self._run_sender(), name="uplink-sender")
        self._ticker = asyncio.create_task(self._run_ticks(), name="uplink-ticks")
        log.info("uplink (%s) to %s: realtime every %g s, heartbeat every %g s", self.cfg.profile,
                 self.transport.describe(), self.cfg.period, self.cfg.heartbeat)

    async def stop(self) -> None:
        """Send what is queued (bounded by ``shutdown_timeout``); the rest stays in the spool."""
        self._stopping.set()
        self._wake.set()
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None
        if self._sender is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._sender), self.shutdown_timeout)
            except TimeoutError:
                self._sender.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._sender
            self._sender = None
        await self.transport.close()
        self.m.connected.set(0)
        await self.queue.close()
        if self.queue.records:
            log.info("uplink stopped: %d messages kept in the spool for the next start", self.queue.records)
        self.m.backlog.set(self.queue.records)

    def sources_changed(self, config: Config) -> None:
        """A reload changed only ``sources`` (the uplink is not rebuilt): send meta again,
        since it lists the sources and each tag's source."""
        self.config = config
        self.profile.config = config
        self._queue_meta()

    def register_points(self, why: str = "on request") -> None:
        """Send the site metadata (point registration) again now: on a platform request, and
        for whoever wires a command to it."""
        log.info("uplink: sending the point registration (meta) again: %s", why)
        self._queue_meta()

    def _platform_request(self, kind: str) -> None:
        """The transport read a request from the platform; at most one per REQUEST_INTERVAL s is
        honoured (meta messages are never dropped from the spool, so a chatty platform must
        not fill it)."""
        now = self.clock()
        if kind != "meta" or (self._last_request is not None and now - self._last_request < REQUEST_INTERVAL):
            self.requests_ignored += 1
            return
        self._last_request = now
        self.register_points("the platform asked for it")

    def health(self) -> dict[str, Any]:
        running = self._sender is not None and not self._sender.done()
        q = self.queue.health()
        return {
            "ok": running and self.transport.connected and bool(q["ok"]),
            "connected": self.transport.connected,
            "platform": self.transport.describe(),
            "profile": self.cfg.profile,
            "backlog": self.queue.records,
            "sent": dict(self.sent),
            "heartbeats_skipped": self.skipped_heartbeats,
            "build_errors": self.build_errors,
            "last_sent_age_s": None if self.last_sent is None else round(self.clock() - self.last_sent, 3),
            "last_error": self.last_error,
            "spool": q,
        }

    # ------------------------------------------------------------------ producers
    def _build(self, fn: Callable[[], list[Message]], what: str) -> list[Message]:
        """Run a profile builder; a failure is counted and logged, never raised into the caller."""
        try:
            return check_messages(fn())
        except Exception as e:
            self.build_errors += 1
            self.m.messages.labels(what, "error").inc()
            self._rlog.log(logging.ERROR, f"build-{what}", "uplink profile %s failed to build a %s message: %s",
                           self.cfg.profile, what, e)
            return []

    def _queue_meta(self) -> None:
        self._append(self._build(lambda: self.profile.meta(time.time_ns()), "meta"))

    def _append(self, messages: Sequence[Message]) -> None:
        prio = [encode_record(m) for m in messages if m.priority]
        reads = [encode_record(m) for m in messages if not m.priority]
        if prio:
            self.queue.append("priority", prio)
        if reads:
            self.queue.append("reading", reads)
        self.m.backlog.set(self.queue.records)

    def set_tests(self, tags: frozenset[str]) -> None:
        """Test mode (wired by the supervisor): the tags in test are under maintenance. The
        profile's meta is queued again when it reports maintenance (and the uplink runs)."""
        if tags == self._testing and tags == self.profile.maintenance:
            return
        self._testing = tags
        resend = self.profile.set_maintenance(tags)
        if resend and self._sender is not None and not self._stopping.is_set():
            self._queue_meta()

    def on_alarm_event(self, event: AlarmEvent) -> None:
        """Engine callback (the supervisor subscribes it): cheap, no I/O (the spool commits in
        its own thread). Taken from ``start()`` (after the active alarms were read) until
        ``stop()``; ignored outside that, when the spool is not open. Events of test
        occurrences (test mode) are not sent and do not change the tag's alarm status."""
        if self._sender is None or self._stopping.is_set() or event.test:
            return
        if event.condition in LIMIT_STATUS:
            s = self._active.setdefault(event.tag, set())
            if event.active:
                s.add(event.condition)
            else:
                s.discard(event.condition)
        status = alarm_status(self._active.get(event.tag))
        msgs = self._build(lambda: self.profile.alarm(event, status), "alarm")
        for m in msgs:
            if len(self._alarm_walls) < 1000:  # latency bookkeeping only: bounded, best effort
                self._alarm_walls[m.payload] = event.wall
        self._append(msgs)

    def snapshot(self) -> list[TagValue]:
        """The latest value of every tag that has one (realtime message content)."""
        latest = self.live.latest
        active = self._active
        testing = self._testing
        out: list[TagValue] = []
        for tag, name, hs, kind, unit in self._tags:
            r = latest.get(tag)
            if r is None:
                continue
            out.append(TagValue(tag, name, hs, kind, unit, r.value, r.quality, r.ts, alarm_status(active.get(tag)),
                                tag in testing))
        return out

    def realtime_now(self, at: float | None = None) -> None:
        """Queue one realtime message set for the period boundary ``at`` (wall seconds; the
        ticker calls this every period; the latest values as of now)."""
        values = self.snapshot()
        now = round((self.wall() if at is None else at) * 1e9)
        self._append(self._build(lambda: self.profile.realtime(values, now), "realtime"))

    def heartbeat_info(self) -> Heartbeat:
        h: dict[str, Any] = (
            dict(self._health_fn()) if self._health_fn is not None else {"status": "ok", "components": {}}
        )
        comps: Mapping[str, Any] = h.get("components", {})
        rates = self.online.rates() if self.online is not None else {"sources": {}, "hazard_sources": {}}
        sources: dict[str, dict[str, Any]] = {}
        for s in self.config.sources:
            sh = comps.get(f"source:{s.id}", {})
            r = rates["sources"].get(s.id, {})
            sources[s.id] = {"type": s.type, "online": bool(sh.get("connected", sh.get("ok", False))),
                             "hour": r.get("hour"), "day": r.get("day")}
        statuses = self.engine.statuses()
        in_use: Mapping[str, Any] = self._in_use() if self._in_use is not None else {}
        used = in_use.get("hazard_sources", {})
        hazard: dict[str, dict[str, Any]] = {}
        for hs in self.config.hazard_sources:
            r = rates["hazard_sources"].get(hs.code, {})
            st = statuses.get(hs.code)
            u = used.get(hs.code, {})
            hazard[hs.code] = {"status": st.status if st else None, "hour": r.get("hour"), "day": r.get("day"),
                               "in_use_hour": u.get("hour"), "in_use_day": u.get("day")}
        return Heartbeat(
            ts=int(self.wall() * 1e9),
            status=str(h.get("status", "ok")),
            uptime_s=self.clock() - self._started,
            components={k: bool(v.get("ok")) for k, v in comps.items() if not k.startswith("source:")},
            sources=sources,
            hazard_sources=hazard,
            backlog=self.queue.records,
            active_alarms=sum(1 for a in self.engine.active() if a.active and not a.test),
            version=self._version,
            in_use=dict(in_use.get("site") or {}) if in_use else None,
        )

    def heartbeat_now(self) -> None:
        msgs = self._build(lambda: self.profile.heartbeat(self.heartbeat_info()), "heartbeat")
        if msgs:
            if self._heartbeat is not None:
                self._skip_heartbeat()
            self._heartbeat = msgs[-1]
            self._wake.set()

    def _skip_heartbeat(self) -> None:
        self.skipped_heartbeats += 1
        self.m.messages.labels("heartbeat", "skipped").inc()

    async def _run_ticks(self) -> None:
        """Realtime at multiples of the period on the wall clock; heartbeat every ``heartbeat``."""
        period, hb = self.cfg.period, self.cfg.heartbeat
        next_rt = (self.wall() // period + 1) * period
        next_hb = self.wall()  # one heartbeat right away
        while True:
            now = self.wall()
            if now >= next_hb:
                self.heartbeat_now()
                next_hb += hb
                if next_hb <= now:  # the wall clock jumped forward: no burst of heartbeats
                    next_hb = now + hb
            if now >= next_rt:
                self.realtime_now(next_rt)
                # a jump of the wall clock (NTP) never produces a burst: next multiple after now
                next_rt = (now // period + 1) * period
            await asyncio.sleep(max(0.0, min(next_rt, next_hb) - self.wall()))

    # ------------------------------------------------------------------ sender
    async def _run_sender(self) -> None:
        q = self.queue
        self.reconnect.reset()
        while True:
            if self._stopping.is_set() and not q.records and self._heartbeat is None:
                return
            if not self.transport.connected:
                if not await self._connect():
                    if self._stopping.is_set():
                        return
                    continue
            if self._heartbeat is not None:
                hb, self._heartbeat = self._heartbeat, None
                if not await self._send([hb]):
                    self._skip_heartbeat()
                    await self._backoff()
                    continue
                self.reconnect.reset()
            batch = await q.next_batch(self.batch_messages)
            if batch is None:
                if self._stopping.is_set():
                    if await q.flush():
                        continue
                    return
                await self._idle()
                continue
            records = batch.records()
            msgs = [decode_record(r, i < batch.n_priority) for i, r in enumerate(records)]
            if not await self._send(msgs):
                await q.release(batch)
                if self._stopping.is_set():
                    return
                await self._backoff()
                continue
            self.reconnect.reset()
            await q.ack(batch)
            self.m.backlog.set(q.records)

    async def _idle(self) -> None:
        """Wait until the spool has a batch, a heartbeat is due, or we stop."""
        self._wake.clear()
        if self._heartbeat is not None or self._stopping.is_set():
            return
        waits = [asyncio.ensure_future(self.queue.readable.wait()), asyncio.ensure_future(self._wake.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for w in waits:
                w.cancel()

    async def _backoff(self) -> None:
        """Wait out the next backoff delay (or until stopping): after a failed connect, and after
        a failed send (a platform that accepts the connection but rejects every message must not
        be hammered). A successful send resets it."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self.reconnect.next_delay())

    async def _connect(self) -> bool:
        """One connection attempt; after a failure, wait out the backoff (or until stopping)."""
        try:
            await self.transport.connect()
        except (TransportError, OSError) as e:
            self.last_error = str(e)
            self.m.connected.set(0)
            if self.reconnect.attempts == 0:
                log.warning("uplink: cannot reach the platform at %s: %s; retrying every %g..%g s",
                            self.transport.describe(), e, self.reconnect.initial, self.reconnect.maximum)
            await self._backoff()
            return False
        self.m.connected.set(1)
        self.m.reconnects.inc()
        if self.last_error is not None:
            log.warning("uplink: connected to %s again (backlog %d messages)", self.transport.describe(),
                        self.queue.records)
        else:
            log.info("uplink: connected to %s", self.transport.describe())
        self.last_error = None
        return True

    async def _send(self, msgs: Sequence[Message]) -> bool:
        t0 = time.perf_counter()
        try:
            await self.transport.send(msgs)
        except (TransportError, OSError) as e:
            self.last_error = str(e)
            self.m.connected.set(0)
            self._rlog.warning("send", "uplink: sending to %s failed (%s); messages kept, reconnecting",
                               self.transport.describe(), e)
            with contextlib.suppress(Exception):
                await self.transport.close()
            return False
        self.m.send_seconds.observe(time.perf_counter() - t0)
        self.last_sent = self.clock()
        now_ns = time.time_ns()
        for m in msgs:
            ch = _channel(m.topic)
            self.sent[ch] = self.sent.get(ch, 0) + 1
            self.m.messages.labels(ch, "sent").inc()
            wall = self._alarm_walls.pop(m.payload, None)
            if wall is not None:
                self.m.alarm_delay.observe(max(0.0, (now_ns - wall) / 1e9))
        return True
