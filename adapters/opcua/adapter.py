"""The SourceAdapter of one ``type: opcua`` source: session loop, resolution, subscribe/poll.

One task per source runs connect -> resolve -> subscribe (or poll) -> wait for a loss ->
close -> back off -> connect again. Each attempt uses a fresh asyncua client
(:mod:`adapters.opcua.session`); after every connect the ``nsu=`` namespaces and the
browse paths are resolved again and the subscriptions built anew, so a restarted server
whose node ids moved cannot put one variable's value on another tag.

Reconnect delays: 0.5 s doubling to 5 s (+-20 % jitter, :class:`gateway.core.backoff.Backoff`),
so values flow again within about 5 s plus the time to subscribe once the server is back.
A server that *refuses* us (wrong password, our certificate not trusted, no matching
endpoint) is retried every 10 s doubling to 2 min, so a locked DCS account is not hammered.

A second task, the ticker, runs once per ``interval``: while there is no session (after a
failed attempt or a loss) every point reads ``comm`` (value None), like a Modbus device that
does not answer; with a session it re-asserts unchanged subscribed values
(adapters/opcua/values.py) and repeats ``bad`` for points without a node. The first attempt
after a start or a reload, and a stop, report nothing (no false bad alarm on a reload; the
stale watcher covers a first attempt that hangs). Loss and recovery are logged once each.

The adapter is read-only: it uses Browse, Read, CreateSubscription, CreateMonitoredItems,
Publish, DeleteSubscriptions and the session services, never Write, Call or node management.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any

from asyncua import Client, ua

from adapters.opcua.batching import BatchLimit
from adapters.opcua.config import OpcuaSource
from adapters.opcua.metrics import opcua_metrics
from adapters.opcua.nodeids import PathElement, parse_browse_path, parse_node_id
from adapters.opcua.poller import Poller
from adapters.opcua.resolve import node_id, read_namespaces, resolve_paths, to_node_id
from adapters.opcua.session import close_quietly, describe, open_session
from adapters.opcua.subscriptions import SubscriptionSet
from adapters.opcua.values import PointTable
from gateway.core.backoff import Backoff
from gateway.core.models import Reading
from gateway.core.ratelog import RateLimitedLog
from gateway.core.sources import SourceContext

log = logging.getLogger("adapters.opcua")

RECONNECT_MIN = 0.5
RECONNECT_MAX = 5.0
REFUSED_MIN = 10.0
REFUSED_MAX = 120.0
CLOSE_TIMEOUT = 2.0
DEFAULT_BATCH = {"read": 1000, "browse": 200, "monitored_items": 1000}
_SERVER_LIMITS = {
    "read": ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerRead,
    "browse": ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxNodesPerBrowse,
    "monitored_items": ua.ObjectIds.Server_ServerCapabilities_OperationLimits_MaxMonitoredItemsPerCall,
}


class SessionLost(Exception):
    pass


class OpcuaAdapter:
    """A ``type: opcua`` source (see README.md in this folder)."""

    def __init__(self, cfg: OpcuaSource, ctx: SourceContext) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.id = cfg.id
        self.table = PointTable([p.tag for p in cfg.points], ctx.tags, self._problem)
        self.addresses: list[Any] = [
            parse_node_id(p.node) if p.node is not None else parse_browse_path(p.path or "") for p in cfg.points
        ]
        self.limits = {k: BatchLimit(cfg.id, k, v) for k, v in DEFAULT_BATCH.items()}
        self.capacity = cfg.max_items_per_subscription
        m = ctx.metrics
        self._m = opcua_metrics(m)
        self._m_connected = m.source_connected.labels(cfg.id)
        self._m_connected.set(0)
        self._m_readings = m.readings_in.labels(cfg.id)
        self._m_errors: dict[str, Any] = {}
        self._rlog = RateLimitedLog(log, interval=60.0)

        self._task: asyncio.Task[None] | None = None
        self._ticker_task: asyncio.Task[None] | None = None
        self._lost_evt: asyncio.Event | None = None
        self._lost_reason = ""
        self._client: Client | None = None
        self._subs: SubscriptionSet | None = None
        self._poller: Poller | None = None
        self.up = False
        self.up_at = 0.0  # monotonic time of the last session start
        # True once a connect attempt failed or a session was lost: until then (the first
        # attempt of a start or a reload) points without a value are not reported comm
        self.outage = False
        self.unresolved: dict[int, str] = {}  # point index -> why it has no node
        self._last_unresolved_log: dict[int, str] = {}
        # for health()
        self.connected_since: float | None = None
        self.last_error: str | None = None
        self.connects = 0
        self.losses = 0
        self.readings = 0
        self.problems: dict[str, int] = {}

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name=f"opcua:{self.id}")
        self._ticker_task = asyncio.create_task(self._ticker(), name=f"opcua-tick:{self.id}")

    async def stop(self) -> None:
        """Close the session (its subscriptions deleted on the server) and stop. Idempotent."""
        tasks = [t for t in (self._ticker_task, self._task) if t is not None]
        self._task = self._ticker_task = None
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        self._set_up(False)

    def health(self) -> dict[str, Any]:
        running = self._task is not None and not self._task.done()
        bad = {self.table.tags[i]: why for i, why in list(self.unresolved.items())[:20]}
        out: dict[str, Any] = {
            "ok": running and self.up and not self.unresolved,
            "connected": self.up,
            "running": running,
            "type": "opcua",
            "url": self.cfg.url,
            "security": f"{self.cfg.security.policy}/{self.cfg.security.message_mode}",
            "mode": self.cfg.mode,
            "interval_s": self.cfg.interval,
            "points": len(self.table),
            "connected_since": self.connected_since,
            "last_error": self.last_error,
            "connects": self.connects,
            "session_losses": self.losses,
            "readings": self.readings,
            "unresolved_points": len(self.unresolved),
            "unresolved": bad,
            "problems": dict(self.problems),
            "batch_sizes": {k: v.size for k, v in self.limits.items()},
        }
        if self._subs is not None:
            out.update(self._subs.health())
        if self._poller is not None:
            p = self._poller
            out.update(polls=p.polls, skipped_polls=p.skipped, read_requests=p.requests,
                       last_poll_duration_s=round(p.last_duration, 4))
        return out

    # ------------------------------------------------------------------ session loop

    async def _run(self) -> None:
        cfg = self.cfg
        backoff = Backoff(RECONNECT_MIN, RECONNECT_MAX)
        refused = Backoff(REFUSED_MIN, REFUSED_MAX)
        outage_since = time.monotonic()
        logged_outage = False
        was_up = False
        while True:
            self._lost_evt = asyncio.Event()
            self._lost_reason = ""
            try:
                client = await open_session(cfg, self._on_connection_lost)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                f = describe(e, cfg)
                self._m.connects.labels(self.id, f.kind).inc()
                changed = f.text != self.last_error
                self.last_error = f.text
                slow = f.kind == "refused"
                delay = (refused if slow else backoff).next_delay()
                self.outage = True
                if not logged_outage:
                    logged_outage = True
                    log.warning("opcua %s: cannot connect to %s: %s; retrying every %g..%g s", self.id, cfg.url,
                                f.text, *((REFUSED_MIN, REFUSED_MAX) if slow else (RECONNECT_MIN, RECONNECT_MAX)))
                elif changed and slow:
                    log.warning("opcua %s: %s", self.id, f.text)
                else:
                    log.debug("opcua %s: connect failed: %s", self.id, f.text)
                await asyncio.sleep(delay)
                continue
            self._m.connects.labels(self.id, "ok").inc()
            self.connects += 1
            refused.reset()
            up_at = time.monotonic()
            reason = ""
            stopping = False
            try:
                self._client = client
                await self._serve(client, reconnected=was_up or logged_outage, down_for=up_at - outage_since)
            except asyncio.CancelledError:
                stopping = True  # stop() or a reload: no comm readings for a deliberate stop
                raise
            except SessionLost as e:
                reason = str(e)
            except Exception as e:
                f = describe(e, cfg)
                reason = f.text
                if f.kind == "error" and not isinstance(e, (OSError, TimeoutError)):
                    log.debug("opcua %s: session error", self.id, exc_info=True)
            finally:
                was_session = self.up
                self._client = None
                self._subs = None
                self._poller = None
                self._set_up(False)
                if not stopping:
                    self.outage = True
                if was_session and not stopping:
                    await self._emit(self.table.comm(time.time_ns()))
                else:
                    self.table.forget()
                with contextlib.suppress(Exception):
                    await close_quietly(client, CLOSE_TIMEOUT)
            self.last_error = reason
            outage_since = time.monotonic()
            if was_session:
                was_up = True
                self.losses += 1
                self._m.losses.labels(self.id).inc()
                logged_outage = True
                log.warning("opcua %s: lost the session with %s (%s); %d points read comm; reconnecting",
                            self.id, cfg.url, reason, len(self.table))
            elif not logged_outage:
                logged_outage = True
                log.warning("opcua %s: session with %s failed while starting (%s); retrying", self.id, cfg.url,
                            reason)
            if time.monotonic() - up_at >= RECONNECT_MAX:
                backoff.reset()
            await asyncio.sleep(backoff.next_delay())

    async def _on_connection_lost(self, exc: Exception) -> None:
        f = describe(exc, self.cfg)
        self._lose(f"connection lost: {f.text}")

    def _lose(self, reason: str) -> None:
        evt = self._lost_evt
        if evt is not None and not evt.is_set():
            self._lost_reason = reason
            evt.set()

    async def _serve(self, client: Client, *, reconnected: bool, down_for: float) -> None:
        cfg = self.cfg
        evt = self._lost_evt
        assert evt is not None
        await self._apply_server_limits(client)
        items, unresolved = await self._resolve(client)
        self.unresolved = unresolved
        if cfg.mode == "subscribe":
            subs = SubscriptionSet(
                self.id, client, self.table, interval=cfg.interval, timeout=cfg.timeout, capacity=self.capacity,
                limit=self.limits["monitored_items"], emit=self._emit, lost=self._lose,
            )
            self._subs = subs
            await subs.build(items)
            self.capacity = subs.capacity
            self.unresolved.update(subs.refused)
            self._m.subscriptions.labels(self.id).set(len(subs.groups))
        now = time.time_ns()
        if self.unresolved:
            await self._emit([self.table.bad(i, now) for i in self.unresolved])
        self._report_unresolved()
        self._m.bad_points.labels(self.id).set(len(self.unresolved))
        for k, lim in self.limits.items():
            self._m.batch_size.labels(self.id, k).set(lim.size)
        self._set_up(True)
        sec = cfg.security
        how = (f"{len(self._subs.groups)} subscriptions at {cfg.interval:g} s" if self._subs is not None
               else f"polling every {cfg.interval:g} s")
        if reconnected:
            log.info("opcua %s: connected again to %s after %.1f s (%s)", self.id, cfg.url, down_for, how)
        else:
            log.info("opcua %s: connected to %s (security %s/%s%s): %d points, %s", self.id, cfg.url, sec.policy,
                     sec.message_mode, f", user {cfg.username}" if cfg.username else "", len(self.table), how)
        if cfg.mode == "poll":
            self._poller = poller = Poller(
                client, self.table, items, interval=cfg.interval, limit=self.limits["read"], emit=self._emit,
                extra=self._bad_readings,
            )
            poll_task = asyncio.create_task(poller.run(), name=f"opcua-poll:{self.id}")
            lost_task = asyncio.create_task(evt.wait())
            try:
                await asyncio.wait({poll_task, lost_task}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for t in (poll_task, lost_task):
                    t.cancel()
                await asyncio.gather(poll_task, lost_task, return_exceptions=True)
            if poll_task.done() and not poll_task.cancelled() and poll_task.exception() is not None:
                raise poll_task.exception()  # type: ignore[misc]
        else:
            await evt.wait()
        raise SessionLost(self._lost_reason or "session ended")

    async def _apply_server_limits(self, client: Client) -> None:
        """Start each batch size at the server's stated OperationLimits (when smaller)."""
        names = list(_SERVER_LIMITS)
        p = ua.ReadParameters()
        p.NodesToRead = [ua.ReadValueId(NodeId=node_id(_SERVER_LIMITS[k]), AttributeId=ua.AttributeIds.Value)
                         for k in names]
        try:
            values = await client.uaclient.read(p)
        except Exception:  # optional information; the session itself is judged elsewhere
            return
        for k, dv in zip(names, values, strict=False):
            v = dv.Value.Value if dv.Value is not None else None
            if isinstance(v, int) and not isinstance(v, bool):
                self.limits[k].apply_server_limit(v)

    async def _resolve(self, client: Client) -> tuple[list[tuple[int, ua.NodeId]], dict[int, str]]:
        """(point index, node id) for every point that has one; the reasons for the others."""
        namespaces: list[str] | None = None
        if any(getattr(a, "nsu", None) for a in self.addresses):
            namespaces = await read_namespaces(client)
        resolved: dict[int, ua.NodeId] = {}
        unresolved: dict[int, str] = {}
        path_idx: list[int] = []
        paths: list[tuple[PathElement, ...]] = []
        for i, a in enumerate(self.addresses):
            if isinstance(a, tuple):
                path_idx.append(i)
                paths.append(a)
                continue
            try:
                resolved[i] = to_node_id(a, namespaces)
            except KeyError as e:
                unresolved[i] = str(e.args[0])
        if paths:
            for i, r in zip(path_idx, await resolve_paths(client, paths, self.limits["browse"]), strict=True):
                if isinstance(r, str):
                    unresolved[i] = r
                else:
                    resolved[i] = r
        return sorted(resolved.items()), unresolved

    def _report_unresolved(self) -> None:
        if self.unresolved == self._last_unresolved_log:
            return
        self._last_unresolved_log = dict(self.unresolved)
        if not self.unresolved:
            log.info("opcua %s: every point has its node again", self.id)
            return
        sample = "; ".join(f"{self.table.tags[i]}: {why}" for i, why in list(self.unresolved.items())[:5])
        more = f" (and {len(self.unresolved) - 5} more)" if len(self.unresolved) > 5 else ""
        log.warning("opcua %s: %d points have no node on the server and read bad: %s%s", self.id,
                    len(self.unresolved), sample, more)

    def _bad_readings(self, now_ns: int) -> list[Reading]:
        return [self.table.bad(i, now_ns) for i in self.unresolved]

    # ------------------------------------------------------------------ ticker

    async def _ticker(self) -> None:
        interval = self.cfg.interval
        start = time.monotonic()
        k = 0
        while True:
            k += 1
            due = start + k * interval
            now = time.monotonic()
            if due < now:
                k += int((now - due) // interval) + 1
                due = start + k * interval
            await asyncio.sleep(due - now)
            try:
                await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception:  # a bug: keep ticking (comm must keep flowing while down)
                self._rlog.error("tick", "opcua %s: tick failed", self.id, exc_info=True)

    async def _tick(self) -> None:
        """Once per interval: without a session (after a failed attempt or a loss) every point
        reads comm; with one, unchanged subscribed values are re-asserted, points without a
        node repeat bad, and a point the server never reported reads comm after two
        intervals plus ``timeout``."""
        now_ns = time.time_ns()
        now = time.monotonic()
        cfg = self.cfg
        out: list[Reading] = []
        subs = self._subs
        if self.up:
            if subs is not None:
                out.extend(subs.tick(now))
                if self.unresolved:
                    out.extend(self.table.reassert(list(self.unresolved), now_ns))
                if now - self.up_at > 2 * cfg.interval + cfg.timeout:
                    out.extend(self.table.unknown_comm(now_ns))
        elif self.outage:
            out.extend(self.table.unknown_comm(now_ns))
        if out:
            await self._emit(out)

    # ------------------------------------------------------------------ helpers

    def _set_up(self, up: bool) -> None:
        if up != self.up:
            self.up = up
            if up:
                self.up_at = time.monotonic()
                self.outage = False
            self.connected_since = time.time() if up else None
            self._m_connected.set(1 if up else 0)
            if not up:
                self._m.subscriptions.labels(self.id).set(0)

    async def _emit(self, batch: list[Reading]) -> None:
        if not batch:
            return
        await self.ctx.emit(batch)
        self.readings += len(batch)
        self._m_readings.inc(len(batch))

    def _problem(self, i: int, reason: str, detail: str) -> None:
        self.problems[reason] = self.problems.get(reason, 0) + 1
        c = self._m_errors.get(reason)
        if c is None:
            c = self._m_errors[reason] = self.ctx.metrics.decode_errors.labels(self.id, self.cfg.mode, reason)
        c.inc()
        self._rlog.warning(reason, "opcua %s: %s: %s (point reads bad)", self.id, self.table.tags[i], detail)

