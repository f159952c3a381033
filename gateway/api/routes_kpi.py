"""``GET /api/kpi``: alarm system KPIs (ISA-18.2 / EEMUA 191) from the alarm journal."""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import time
from typing import Annotated, Any

from fastapi import APIRouter, Query

from alerting.kpi import KpiSettings, compute
from gateway.api.auth import Viewer
from gateway.api.context import ApiContext, Ctx
from gateway.api.errors import ApiError, responses
from gateway.api.routes_alarms import _INT64, _ns
from gateway.api.schemas import KpiOut

DAY_NS = 86_400 * 1_000_000_000
MAX_RANGE_NS = 400 * DAY_NS

DESCRIPTION = """\
Annunciated alarms per 10 minutes, % of 10-minute periods in flood (more than
`alarming.flood_count`), the peak 10-minute rate, the top 10 alarms, chattering and fleeting
alarms, standing alarms (active > 24 h), stale acknowledgements (unacknowledged > 30 min),
time to acknowledge (p50/p90) and the disposition completion rate (处置闭环率), with the
EEMUA 191 / ISA-18.2 benchmarks. `from`/`to`: ISO 8601 (no offset: the site's time zone);
default: the last 24 hours; at most 400 days. Computed from the alarm journal (503 without one).
"""


def _range(ctx: ApiContext, start: dt.datetime | None, end: dt.datetime | None) -> tuple[int, int]:
    e0, s0 = _ns(ctx, end), _ns(ctx, start)
    e = e0 if e0 is not None else time.time_ns()
    s = s0 if s0 is not None else e - DAY_NS
    if s < 0 or e > _INT64:
        raise ApiError(400, "bad_request", "'from' and 'to' must be between 1970 and 2262")
    if e <= s:
        raise ApiError(400, "bad_request", "'to' must be after 'from'")
    if e - s > MAX_RANGE_NS:
        raise ApiError(400, "bad_request", "at most 400 days at once")
    return s, e


def router() -> APIRouter:
    r = APIRouter(prefix="/api", tags=["alarms"], responses=responses(401, 403))

    @r.get("/kpi", response_model=KpiOut, summary="Alarm KPIs (ISA-18.2 / EEMUA 191)",
           description=DESCRIPTION, responses=responses(400, 503))
    async def kpi(
        ctx: Ctx,
        _: Viewer,
        start: Annotated[dt.datetime | None, Query(alias="from", description="ISO 8601; default: to - 24 h")] = None,
        end: Annotated[dt.datetime | None, Query(alias="to", description="ISO 8601; default: now")] = None,
    ) -> dict[str, Any]:
        s, e = _range(ctx, start, end)
        journal = ctx.gw.alarms.journal
        if journal is None:
            raise ApiError(503, "journal_unavailable", "the KPIs come from the alarm journal, which is not open")
        try:
            ann, occ = await asyncio.to_thread(journal.kpi_rows, s, e)
        except (sqlite3.Error, OverflowError) as err:
            raise ApiError(503, "journal_unavailable", f"alarm journal: {err}") from None
        k = compute(ann, occ, s, e, KpiSettings.from_config(ctx.gw.config), now=time.time_ns())
        return k.to_dict() | {"source": "journal"}

    return r
