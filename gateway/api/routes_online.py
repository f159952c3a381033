"""``GET /api/online``: data online rate (数据在线率) per source and per hazard source."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from gateway.api.auth import Viewer
from gateway.api.context import Ctx
from gateway.api.errors import responses
from gateway.api.schemas import OnlineOut

DESCRIPTION = """\
Share of the expected readings that arrived, over the last hour and the last day (the
current minute included), per source and per hazard source.

A tag is expected every `e` seconds: its Modbus source's `poll_interval`, else its
`stale_after / 3`, else the uplink period (10 s without an uplink). A reading counts when
data arrived (quality `good`, `uncertain` or `bad`; not `comm` or `stale`), at most
`ceil(60 / e)` per tag and minute. Time the gateway was down counts as offline. A rate is
null until something was expected.
"""


def router() -> APIRouter:
    r = APIRouter(prefix="/api", tags=["online"], responses=responses(401, 403))

    @r.get(
        "/online",
        response_model=OnlineOut,
        summary="Data online rate (数据在线率) per source and hazard source, last hour and day",
        description=DESCRIPTION,
    )
    async def online(ctx: Ctx, _: Viewer) -> dict[str, Any]:
        return ctx.gw.online_rates()

    return r
