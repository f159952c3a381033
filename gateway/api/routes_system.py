"""``GET /api/health`` (open), ``GET /metrics`` (open) and the console at ``GET /``."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from gateway.api.context import Ctx
from gateway.api.schemas import HealthOut

STATIC = Path(__file__).parent / "static"


def router() -> APIRouter:
    r = APIRouter()

    @r.get(
        "/api/health",
        response_model=HealthOut,
        tags=["system"],
        summary="Gateway health (no token needed)",
        description="`ok` when every component is healthy, else `degraded`, with per-component detail. "
        "Open on purpose so a load balancer or systemd watchdog can call it; it shows no values.",
    )
    async def health(ctx: Ctx) -> HealthOut:
        h = ctx.gw.health()
        return HealthOut(status=h["status"], site=ctx.gw.config.site.code, components=h["components"])

    @r.get(
        "/metrics",
        tags=["system"],
        summary="Prometheus metrics (no token needed)",
        response_class=Response,
        responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}},
                         "description": "Prometheus text exposition format"}},
    )
    async def metrics(ctx: Ctx) -> Response:
        body = generate_latest(ctx.gw.registry) + generate_latest(ctx.metrics.registry)
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    @r.get(
        "/",
        tags=["console"],
        summary="Duty console (HTML)",
        response_class=FileResponse,
        responses={200: {"content": {"text/html": {"schema": {"type": "string"}}}, "description": "the console"}},
    )
    async def console() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html; charset=utf-8",
                            headers={"Cache-Control": "no-cache"})

    return r
