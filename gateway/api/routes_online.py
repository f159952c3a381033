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

`in_use`: the in-use rate of gas detectors (投用率) per hazard source and for the site, over
the last hour and day: the share of detector time in service (latest reading good, not in test
mode, no alarm out of service, calibration not overdue), sampled every 10 s; gateway downtime
counts as not in service. `not_in_service` lists the detectors out of service now, and why.
"""


def router() -> APIRouter:
    r = APIRouter(prefix="/api", tags=["online"], responses=responses(401, 403))

    @r.get(
        "/online",
        response_model=OnlineOut,
        summary="Data online rate (数据在线率) and gas detector in-use rate (投用率), last hour and day",
        description=DESCRIPTION,
    )
    async def online(ctx: Ctx, _: Viewer) -> dict[str, Any]:
        return {**ctx.gw.online_rates(), "in_use": ctx.gw.in_use()}

    return r
