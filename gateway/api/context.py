"""Per-app state: the gateway facade, auth, lockout, audit, the event hub and trends. Nothing module-global.

``build_app`` puts one :class:`ApiContext` on ``app.state.hazardgw``; routes reach it
through the request (``Ctx`` dependency), so two gateways (two apps) in one process are
independent.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from gateway.api.audit import AuditLog
from gateway.api.auth import TokenAuth
from gateway.api.facade import GatewayFacade
from gateway.api.lockout import Lockout
from gateway.api.metrics import ApiMetrics
from gateway.api.sse import EventHub
from gateway.api.trends import RecentValues
from gateway.core.ratelog import RateLimitedLog

if TYPE_CHECKING:
    import logging

    from gateway.api.guard import LoopHop


@dataclass(frozen=True)
class ApiSettings:
    """Tunables of the API (defaults suit a site; tests shrink them). Site-facing limits are
    in the config (``api.limits``, ``api.lockout``)."""

    sse_interval: float = 1.0  # readings to a client at most once per tag per interval
    sse_heartbeat: float = 5.0
    sse_max_clients: int = 64
    sse_max_queue: int = 1024  # messages a client may fall behind before it is dropped
    trend_points: int = 120  # recent values kept per tag (at most one per interval)
    history_max: int = 10_000  # most rows /api/alarms/history returns
    own_thread: bool = True  # serve HTTP on a thread with its own event loop (server.py)
    # requests handed to the gateway's loop at once (guard.LoopHop): handlers that become ready
    # together run back to back before the loop's timers; 2 keeps a burst of big reads
    # (/api/tags?recent=120, 500 tags) at p99 14-18 ms of loop lag, 4 let it reach 48-50 ms
    # (bench/api_isolation.py), with the same number of requests answered
    gateway_concurrency: int = 2
    # a locked-out address gets its 429 after this many seconds (on the API's loop, costing
    # nothing meanwhile): a client that keeps guessing on kept-alive connections asked ~6,000
    # times a second otherwise, and that API work delayed the gateway's loop by 30-57 ms at
    # p99 through the interpreter lock (bench/api_isolation.py "badtoken")
    locked_delay: float = 0.25
    audit_max_queue: int = 10_000  # audit records waiting for the disk
    clock: Callable[[], float] = field(default=time.monotonic)  # lockout windows
    wall: Callable[[], int] = field(default=time.time_ns)  # token expiry, audit time stamps


class ApiContext:
    def __init__(self, gw: GatewayFacade, settings: ApiSettings, log: logging.Logger) -> None:
        self.gw = gw
        self.settings = settings
        api = gw.config.api
        self.limits = api.limits
        self.auth = TokenAuth(api.tokens, gw.config.site.timezone, wall=settings.wall)
        self.metrics = ApiMetrics(gw)
        self.ratelog = RateLimitedLog(log, 60.0)
        self.lockout = Lockout(api.lockout.failures, api.lockout.window, api.lockout.cooldown, clock=settings.clock)
        self.metrics.watch_lockout(self.lockout)
        self.audit = AuditLog(Path(gw.config.store.path) / "audit", api.audit_retention, wall=settings.wall,
                              max_queue=settings.audit_max_queue, metrics=self.metrics)
        self.body_limits: dict[str, int] = {}  # path prefix -> bytes (guard.allow_body)
        self.hop: LoopHop | None = None  # set by ApiServer while it serves on its own loop
        self.trends = RecentValues(gw.latest, (t.id for t in gw.config.tags), settings.trend_points)
        self.hub = EventHub(
            gw,
            self.trends,
            self.metrics,
            interval=settings.sse_interval,
            heartbeat=settings.sse_heartbeat,
            max_clients=settings.sse_max_clients,
            max_queue=settings.sse_max_queue,
            max_per_user=api.limits.sse_per_token,
        )

    def body_limit(self, path: str) -> int:
        best, limit = -1, self.limits.max_body
        for prefix, n in self.body_limits.items():
            if path.startswith(prefix) and len(prefix) > best:
                best, limit = len(prefix), n
        return limit

    async def start(self) -> None:
        self.audit.start()
        await self.hub.start()

    async def stop(self) -> None:
        await self.hub.stop()
        await asyncio.to_thread(self.audit.stop)


def get_ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.hazardgw
    return ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]
