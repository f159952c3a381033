"""``build_app(gw)``: the FastAPI application of one gateway (docs/api.md).

Routes: ``/api/health`` (open), ``/api/tags``, ``/api/tags/{tag}``, ``/api/alarms``,
``/api/alarms/history``, ``POST /api/alarms/ack`` (a group), ``POST /api/alarms/{id}/ack|shelve|unshelve|dispose``,
``/api/online``, ``/api/kpi``, ``POST|DELETE /api/tags/{tag}/test``, ``POST|DELETE /api/sources/{source}/test``,
``/api/tests``, ``POST /api/tags/{tag}/calibration``, ``/api/events`` (SSE), ``/metrics`` (open), ``/`` and
``/static/`` (the duty console), ``/openapi.json``. Extra routers (e.g. the one-tap ``/ack/{token}`` page) are passed in
``extra_routers`` or added later with ``app.include_router``.

``gw`` is the gateway's :class:`~gateway.api.facade.GatewayFacade`: what the API reads and
the actions it may take. The app subscribes itself to nothing: whoever builds it
subscribes ``context_of(app).hub.on_alarm_event`` to the alarm engine and
``context_of(app).trends`` to the pipeline (gateway/supervisor.py does, for ``ApiServer``).

The app keeps everything it needs on ``app.state.hazardgw`` (an :class:`ApiContext`). Its
background part (the SSE event hub and the trend recorder) is started by the app's
lifespan, or by :class:`gateway.api.server.ApiServer`, which runs uvicorn without one.
Handlers that touch the gateway are ``async def`` so they run on the gateway's event loop
thread (the alarm engine is not thread-safe): when the server serves HTTP on a loop of its
own, the guard's hop (guard.py) runs routing and handlers on the gateway's loop.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.staticfiles import StaticFiles

from gateway.api import (
    errors,
    routes_alarms,
    routes_events,
    routes_kpi,
    routes_online,
    routes_security,
    routes_system,
    routes_tags,
    routes_upkeep,
    routes_uplink,
)
from gateway.api.context import ApiContext, ApiSettings
from gateway.api.facade import GatewayFacade
from gateway.api.guard import Guard, Hop
from gateway.api.middleware import AccessLog, SecurityHeaders
from gateway.api.routes_system import STATIC
from gateway.api.sse import SseGuard

log = logging.getLogger("gateway.api")

DESCRIPTION = """\
HTTP API and duty console of a hazardgw gateway (重大危险源监测网关).

Every `/api` route except `/api/health` needs `Authorization: Bearer <token>` with a token
from `api.tokens` (role viewer < operator < admin); operator actions need `operator`, the
audit log `admin`. Repeated authentication failures from one address get 429 for a while.
Timestamps are integers in ns since the Unix epoch (UTC). Errors are JSON
`{"error": code, "detail": ...}`.
"""


def build_app(
    gw: GatewayFacade,
    extra_routers: Iterable[APIRouter] = (),
    *,
    settings: ApiSettings | None = None,
) -> FastAPI:
    ctx = ApiContext(gw, settings or ApiSettings(), log)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await ctx.start()
        try:
            yield
        finally:
            await ctx.stop()

    app = FastAPI(
        title=f"hazardgw {gw.config.site.code}",
        version="1",
        description=DESCRIPTION,
        docs_url=None,  # the Swagger/ReDoc pages load scripts from a CDN; sites are offline
        redoc_url=None,
        openapi_url="/openapi.json",
        lifespan=lifespan,
    )
    app.state.hazardgw = ctx

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_31(FastAPI.openapi(app))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    errors.install(app)
    app.include_router(routes_system.router())
    app.include_router(routes_tags.router())
    app.include_router(routes_alarms.router())
    app.include_router(routes_events.router())
    app.include_router(routes_online.router())
    app.include_router(routes_kpi.router())
    app.include_router(routes_security.router())
    app.include_router(routes_uplink.router())
    app.include_router(routes_upkeep.router())
    for r in extra_routers:
        app.include_router(r)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")

    # Outermost last. On the API's loop (server.py runs it on a thread of its own): the
    # access log (sees everything), security headers, the guard (lockout, authentication
    # before any body, body limits, audit). Then the hop to the gateway's loop, and there
    # CORS, the SSE guard (wraps only /api/events), the routes.
    app.add_middleware(SseGuard)
    if gw.config.api.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(gw.config.api.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "Content-Type"],
            allow_credentials=False,
        )
    app.add_middleware(Hop, ctx=ctx)
    app.add_middleware(Guard, ctx=ctx)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(AccessLog, metrics=ctx.metrics)
    return app


def openapi_31(schema: dict[str, Any]) -> dict[str, Any]:
    """Make FastAPI's SSE documentation valid OpenAPI 3.1.

    FastAPI describes a streaming response with ``itemSchema``, an OpenAPI 3.2 keyword, in a
    document that says 3.1.0 (so validators reject it). Keep it as the extension
    ``x-itemSchema`` and give the media type a 3.1 ``schema`` (a string: the raw stream).
    """
    for item in schema.get("paths", {}).values():
        for op in item.values():
            if not isinstance(op, dict):
                continue
            for resp in op.get("responses", {}).values():
                for media, content in resp.get("content", {}).items():
                    if isinstance(content, dict) and "itemSchema" in content:
                        content["x-itemSchema"] = content.pop("itemSchema")
                        content.setdefault("schema", {
                            "type": "string",
                            "description": f"{media} stream; the events are described in x-itemSchema",
                        })
    return schema


def context_of(app: FastAPI) -> ApiContext:
    ctx: ApiContext = app.state.hazardgw
    return ctx
