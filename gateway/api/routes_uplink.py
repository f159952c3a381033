"""``POST /api/uplink/register``: send the point registration (传感器信息, the uplink's meta
message) to the platform again now, e.g. after the platform's operator cleared its tables."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.api.auth import Admin
from gateway.api.context import Ctx
from gateway.api.errors import ApiError, responses


def router() -> APIRouter:
    r = APIRouter(prefix="/api", tags=["uplink"], responses=responses(401, 403))

    @r.post(
        "/uplink/register",
        status_code=202,
        summary="Send the point registration (meta) to the platform again",
        description="Queued in the uplink's durable spool like every meta message (sent in order, "
        "kept through outages). 409 without an uplink. Admin role; audited.",
        responses=responses(409),
    )
    async def register(ctx: Ctx, who: Admin) -> dict[str, Any]:
        fn = ctx.gw.register_points
        if fn is None:
            raise ApiError(409, "no_uplink", "this gateway has no uplink configured")
        fn(f"requested by {who.name} through the API")
        return {"queued": True}

    return r
