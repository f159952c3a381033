"""Fan-out of readings and alarm events to Server-Sent-Events clients (``GET /api/events``).

Every client has its own bounded queue of pre-serialised messages. Producers never wait:

* **alarm events** are queued to every client immediately, from the alarm engine's
  callback (:meth:`EventHub.on_alarm_event`, which the supervisor subscribes; ``alarm``),
  followed, one loop iteration later, by the hazard-source colours when they changed
  (``status``);
* **readings** are throttled: once per ``interval`` (1 s) the hub takes the tags that got a
  reading since the last tick and queues one ``readings`` message with the *latest*
  reading of each, so a client sees every tag at most once a second however fast the
  plant reports;
* a ``heartbeat`` goes out when nothing else was sent for ``heartbeat`` seconds, so a
  console can tell a quiet plant from a dead connection.

A client whose queue is full (``max_queue`` messages: it stopped reading, or reads slower
than the plant produces) is **dropped**: its queue is emptied, it is counted in
``hazardgw_api_sse_dropped_total{reason="slow"}``, and :class:`SseGuard` closes its
connection even if the server is blocked writing to it. The pipeline and the alarm engine
are never blocked by a client; the console reconnects and gets a fresh ``snapshot``.
At most ``max_clients`` clients at once; more get 503. One token holds at most
``max_per_user`` of them (``api.limits.sse_per_token``, 8); its next gets 429, so one
viewer token (a screen left open many times, or a stolen one) cannot take every slot.

Message data is JSON (see README.md in this folder for the shapes).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import TYPE_CHECKING, Any

import anyio
from starlette.types import ASGIApp, Receive, Scope, Send

from alerting import AlarmEvent
from gateway.api import views
from gateway.api.facade import GatewayFacade
from gateway.api.trends import RecentValues
from gateway.core.ratelog import RateLimitedLog

if TYPE_CHECKING:
    from gateway.api.metrics import ApiMetrics

log = logging.getLogger(__name__)

KILL_KEY = "hazardgw.sse_kill"
EVENTS_PATH = "/api/events"


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


class TooManyClients(Exception):
    pass


class TooManyStreams(TooManyClients):
    """The token already holds its share of the streams (``api.limits.sse_per_token``)."""


class SseClient:
    __slots__ = ("connected", "dropped", "kill", "peer", "queue", "user")

    def __init__(self, peer: str, user: str, max_queue: int, kill: asyncio.Event | None) -> None:
        self.peer = peer
        self.user = user
        self.queue: asyncio.Queue[tuple[str, str | dict[str, Any]] | None] = asyncio.Queue(max_queue)
        self.kill = kill
        self.dropped = False
        self.connected = time.monotonic()


class EventHub:
    name = "api-events"

    def __init__(
        self,
        gw: GatewayFacade,
        trends: RecentValues,
        metrics: ApiMetrics,
        *,
        interval: float = 1.0,
        heartbeat: float = 5.0,
        max_clients: int = 64,
        max_queue: int = 1024,
        max_per_user: int = 8,
    ) -> None:
        self.gw = gw
        self.trends = trends
        self.metrics = metrics
        self.interval = interval
        self.heartbeat = heartbeat
        self.max_clients = max_clients
        self.max_queue = max_queue
        self.max_per_user = max_per_user
        self._clients: set[SseClient] = set()
        self._task: asyncio.Task[None] | None = None
        self._status_pending = False
        self._last_status: str | None = None
        self._last_sent = 0.0
        self._ratelog = RateLimitedLog(log, 60.0)
        self._msg_counters = {e: metrics.sse_messages.labels(e) for e in
                              ("snapshot", "readings", "alarm", "status", "heartbeat")}
        self.dropped = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._task is not None:
            return
        self._task = asyncio.create_task(self._run(), name="api-events")

    async def stop(self) -> None:
        self.close_clients()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
            self._task = None

    def close_clients(self) -> None:
        """End every stream (graceful when the client is reading, forced when it is not)."""
        for c in list(self._clients):
            self._clients.discard(c)
            try:
                c.queue.put_nowait(None)
            except asyncio.QueueFull:
                self._empty(c)
                if c.kill is not None:
                    c.kill.set()
        self.metrics.sse_clients.set(0)

    def health(self) -> dict[str, Any]:
        return {
            "ok": self._task is not None and not self._task.done(),
            "clients": len(self._clients),
            "dropped": self.dropped,
        }

    @property
    def clients(self) -> int:
        return len(self._clients)

    # ------------------------------------------------------------------ clients
    def connect(self, peer: str, user: str, kill: asyncio.Event | None = None) -> SseClient:
        """Register a client; its first message is a ``snapshot`` of the current state."""
        if sum(1 for c in self._clients if c.user == user) >= self.max_per_user:
            self.metrics.sse_dropped.labels("per_token").inc()
            raise TooManyStreams(f"token {user!r} already holds {self.max_per_user} event streams "
                                 "(api.limits.sse_per_token); close one")
        if len(self._clients) >= self.max_clients:
            self.metrics.sse_dropped.labels("limit").inc()
            raise TooManyClients(f"at most {self.max_clients} event-stream clients")
        c = SseClient(peer, user, self.max_queue, kill)
        # built and queued before the client is registered, with no await in between: no
        # alarm event can fall between the snapshot and the stream. Queued as a dict: the
        # stream encodes it off the loop (jsonout.py; it is large on a big site)
        c.queue.put_nowait(("snapshot", self.snapshot()))
        self._msg_counters["snapshot"].inc()
        self._clients.add(c)
        self.metrics.sse_clients.set(len(self._clients))
        return c

    def disconnect(self, c: SseClient) -> None:
        self._clients.discard(c)
        self.metrics.sse_clients.set(len(self._clients))

    def snapshot(self) -> dict[str, Any]:
        gw = self.gw
        engine = gw.alarms
        cfg = gw.config
        latest = gw.latest
        tags = []
        for t in cfg.tags:
            d = views.tag_info(t)
            r = latest.get(t.id)
            d.update(value=views.num(r.value) if r else None, ts=r.ts if r else None,
                     quality=r.quality if r else None)
            tags.append(d)
        return {
            "site": {"code": cfg.site.code, "name": cfg.site.name, "timezone": cfg.site.timezone},
            "server_time": time.time_ns(),
            "hazard_sources": self._statuses(),
            "tags": tags,
            "alarms": [views.alarm(v) for v in engine.active()],
            "suppressed": [views.alarm(v) for v in engine.suppressed()],
            "points": [
                {"id": v.id, "tag": v.tag, "condition": v.condition, "priority": v.priority, "hs": v.hs,
                 "latch": v.latch, "suppressible": v.suppressible, "limit": views.num(v.limit),
                 "message": v.message}
                for v in engine.alarms()
            ],
            "flood": engine.flood,
        }

    def _statuses(self) -> list[dict[str, Any]]:
        hs = self.gw.config.hazard_source_map()
        return [views.hazard_status(s, hs.get(code)) for code, s in self.gw.alarms.statuses().items()]

    # ------------------------------------------------------------------ fan-out
    def _broadcast(self, event: str, data: str) -> None:
        sent = 0
        for c in list(self._clients):
            try:
                c.queue.put_nowait((event, data))
                sent += 1
            except asyncio.QueueFull:
                self._drop(c)
        if sent:
            self._msg_counters[event].inc(sent)
        self._last_sent = time.monotonic()

    def _empty(self, c: SseClient) -> None:
        q = c.queue
        while not q.empty():
            q.get_nowait()

    def _drop(self, c: SseClient) -> None:
        self._clients.discard(c)
        c.dropped = True
        self.dropped += 1
        self.metrics.sse_dropped.labels("slow").inc()
        self.metrics.sse_clients.set(len(self._clients))
        self._empty(c)  # release the memory now
        c.queue.put_nowait(None)
        if c.kill is not None:
            c.kill.set()  # SseGuard closes the connection even if a write to it is blocked
        self._ratelog.warning(
            "slow", "dropped event-stream client %s (token %s): it fell %d messages behind",
            c.peer, c.user, self.max_queue,
        )

    def on_alarm_event(self, ev: AlarmEvent) -> None:
        """Alarm engine callback (subscribed by the supervisor): synchronous and cheap; never
        calls back into the engine. Nothing to do without clients (before start, after stop)."""
        if not self._clients:
            return
        self._broadcast("alarm", dumps(views.event(ev)))
        if not self._status_pending:
            self._status_pending = True
            asyncio.get_running_loop().call_soon(self._send_status)

    def _send_status(self) -> None:
        self._status_pending = False
        if not self._clients:
            return
        data = dumps({"hazard_sources": self._statuses(), "flood": self.gw.alarms.flood})
        if data != self._last_status:
            self._last_status = data
            self._broadcast("status", data)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                changed = self.trends.tick()
                if not self._clients:
                    continue
                if changed:
                    self._broadcast("readings", dumps({"readings": [views.reading(r) for r in changed]}))
                elif time.monotonic() - self._last_sent >= self.heartbeat:
                    self._broadcast("heartbeat", dumps({"server_time": time.time_ns()}))
            except Exception as e:  # keep ticking: the next second may work
                self._ratelog.log(logging.ERROR, "tick", "event hub tick failed: %r", e)


class SseGuard:
    """Runs ``GET /api/events`` inside a cancel scope that :class:`EventHub` can trigger.

    A client that stops reading blocks the server's write to it (flow control), and with it
    the stream's generator, so the generator cannot end the response itself. When the hub
    drops such a client it sets the kill event this middleware put in the request scope;
    the request is cancelled and uvicorn closes the connection.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != EVENTS_PATH:
            await self.app(scope, receive, send)
            return
        kill = asyncio.Event()
        scope[KILL_KEY] = kill
        async with anyio.create_task_group() as tg:

            async def watch() -> None:
                await kill.wait()
                tg.cancel_scope.cancel()

            tg.start_soon(watch)
            await self.app(scope, receive, send)
            tg.cancel_scope.cancel()
