"""Per-app state: the gateway facade, auth, the event hub and trends. Nothing module-global.

``build_app`` puts one :class:`ApiContext` on ``app.state.hazardgw``; routes reach it
through the request (``Ctx`` dependency), so two gateways (two apps) in one process are
independent.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated

from fastapi import Depends, Request

from gateway.api.auth import TokenAuth
from gateway.api.facade import GatewayFacade
from gateway.api.metrics import ApiMetrics
from gateway.api.sse import EventHub
from gateway.api.trends import RecentValues
from gateway.core.ratelog import RateLimitedLog

if TYPE_CHECKING:
    import logging


@dataclass(frozen=True)
class ApiSettings:
    """Tunables of the API (defaults suit a site; tests shrink them)."""

    sse_interval: float = 1.0  # readings to a client at most once per tag per interval
    sse_heartbeat: float = 5.0
    sse_max_clients: int = 64
    sse_max_queue: int = 1024  # messages a client may fall behind before it is dropped
    trend_points: int = 120  # recent values kept per tag (at most one per interval)
    history_max: int = 10_000  # most rows /api/alarms/history returns


class ApiContext:
    def __init__(self, gw: GatewayFacade, settings: ApiSettings, log: logging.Logger) -> None:
        self.gw = gw
        self.settings = settings
        self.auth = TokenAuth(gw.config.api.tokens)
        self.metrics = ApiMetrics(gw)
        self.ratelog = RateLimitedLog(log, 60.0)
        self.trends = RecentValues(gw.latest, (t.id for t in gw.config.tags), settings.trend_points)
        self.hub = EventHub(
            gw,
            self.trends,
            self.metrics,
            interval=settings.sse_interval,
            heartbeat=settings.sse_heartbeat,
            max_clients=settings.sse_max_clients,
            max_queue=settings.sse_max_queue,
        )

    async def start(self) -> None:
        await self.hub.start()

    async def stop(self) -> None:
        await self.hub.stop()


def get_ctx(request: Request) -> ApiContext:
    ctx: ApiContext = request.app.state.hazardgw
    return ctx


Ctx = Annotated[ApiContext, Depends(get_ctx)]

