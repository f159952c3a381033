"""Detector upkeep routes: test mode, test records, calibrations (gateway/upkeep/).

* ``POST /api/tags/{tag}/test`` / ``DELETE /api/tags/{tag}/test``: put one tag in test mode for
  a duration (at most 8 h) / end it now (operator);
* ``POST /api/sources/{source}/test`` / ``DELETE /api/sources/{source}/test``: the same for
  every tag of a source (tags already in test are skipped / only those in test end);
* ``GET /api/tests?from=&to=&tag=``: the tests running and the test records (viewer);
* ``POST /api/tags/{tag}/calibration``: record a calibration (operator).

The token's name is the operator recorded. While a tag is in test its alarms are shown
marked TEST and journaled, never pushed or sent to the platform (docs/alarms.md "Test
mode"); at the end, an alarm still present is raised as a real one.
"""

from __future__ import annotations

import datetime as dt
import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Query

from gateway.api.auth import Operator, Viewer
from gateway.api.context import ApiContext, Ctx
from gateway.api.errors import ApiError, responses
from gateway.api.routes_alarms import _ns
from gateway.api.schemas import (
    CalibrationIn,
    CalibrationOut,
    TagTestEndOut,
    TagTestIn,
    TagTestsOut,
    TagTestStartOut,
)
from gateway.core.units import parse_duration
from gateway.upkeep.store import TestRecord
from gateway.upkeep.testmode import StoreUnavailable, TestModeError

TagId = Annotated[str, Path(description="tag id, e.g. GT-101", examples=["GT-101"], max_length=128)]
SourceId = Annotated[str, Path(description="source id, e.g. gds-1", examples=["gds-1"], max_length=128)]
DAY_NS = 86_400 * 1_000_000_000


def _duration(value: float | str | None, what: str) -> float | None:
    if value is None:
        return None
    try:
        return parse_duration(value)
    except (ValueError, TypeError) as e:
        raise ApiError(400, "bad_request", f"{what}: {e}") from None


def _upkeep_error(e: Exception) -> ApiError:
    if isinstance(e, TestModeError):
        return ApiError(e.status, e.code, str(e))
    if isinstance(e, StoreUnavailable):
        return ApiError(503, "store_unavailable", str(e))
    raise e


async def _begin(ctx: ApiContext, who: str, body: TagTestIn, *, tag: str | None = None,
                 source: str | None = None) -> dict[str, Any]:
    duration = _duration(body.duration, "duration")
    assert duration is not None
    try:
        started, skipped = await ctx.gw.tests.begin(
            [tag] if tag is not None else None, duration, who, source=source, comment=body.comment,
            levels=body.levels,
        )
    except (TestModeError, StoreUnavailable) as e:
        raise _upkeep_error(e) from None
    return {"started": [r.to_dict() for r in started], "skipped": [{"tag": t, "reason": why} for t, why in skipped]}


async def _end(ctx: ApiContext, who: str, *, tag: str | None = None, source: str | None = None) -> dict[str, Any]:
    try:
        done = await ctx.gw.tests.end([tag] if tag is not None else None, who, source=source)
    except (TestModeError, StoreUnavailable) as e:
        raise _upkeep_error(e) from None
    return {"ended": [r.to_dict() for r in done]}


def _dicts(records: list[TestRecord]) -> list[dict[str, Any]]:
    return [r.to_dict() for r in records]


def router() -> APIRouter:
    r = APIRouter(prefix="/api", tags=["upkeep"], responses=responses(401, 403))
    actions = responses(400, 404, 409, 503)

    @r.post(
        "/tags/{tag:path}/test",
        response_model=TagTestStartOut,
        summary="Put a tag in test mode (operator): its alarms are shown marked TEST, never pushed",
        description="For a bump test or maintenance, at most 8 h; it ends by itself (or with DELETE). While in "
        "test, the tag's alarms run as usual, are shown marked TEST and journaled with test=true, but are not "
        "pushed to phones nor sent to the platform as alarms; readings go on to InfluxDB tagged test=true; the "
        "platform is told the tag is under maintenance. At the end an alarm still present is raised as a real one. "
        "409 when the tag is already in test.",
        responses=actions,
    )
    async def test_tag(ctx: Ctx, who: Operator, tag: TagId, body: TagTestIn) -> dict[str, Any]:
        return await _begin(ctx, who.name, body, tag=tag)

    @r.delete(
        "/tags/{tag:path}/test",
        response_model=TagTestEndOut,
        summary="End a tag's test mode now (operator); returns the test record",
        responses=actions,
    )
    async def end_tag_test(ctx: Ctx, who: Operator, tag: TagId) -> dict[str, Any]:
        return await _end(ctx, who.name, tag=tag)

    @r.post(
        "/sources/{source}/test",
        response_model=TagTestStartOut,
        summary="Put every tag of a source in test mode (operator)",
        description="Tags already in test are skipped (listed in `skipped`).",
        responses=actions,
    )
    async def test_source(ctx: Ctx, who: Operator, source: SourceId, body: TagTestIn) -> dict[str, Any]:
        return await _begin(ctx, who.name, body, source=source)

    @r.delete(
        "/sources/{source}/test",
        response_model=TagTestEndOut,
        summary="End the test mode of every tag of a source that is in test (operator)",
        responses=actions,
    )
    async def end_source_test(ctx: Ctx, who: Operator, source: SourceId) -> dict[str, Any]:
        return await _end(ctx, who.name, source=source)

    @r.get(
        "/tests",
        response_model=TagTestsOut,
        summary="Tests running now and test records (bump tests: levels reached, time to alarm, by whom)",
        description="`from`/`to`: ISO 8601 (without offset: site time); default the last 24 h. A record lists "
        "every alarm condition raised during the test with the seconds since the start, the peak and low value, "
        "who started and ended it, and `result` (pass: every level of `levels` reached).",
        responses=responses(400),
    )
    async def tests(
        ctx: Ctx,
        _: Viewer,
        from_: Annotated[dt.datetime | None, Query(alias="from", description="ISO 8601; default now - 24 h")] = None,
        to: Annotated[dt.datetime | None, Query(description="ISO 8601; default now")] = None,
        tag: Annotated[str | None, Query(max_length=128)] = None,
    ) -> dict[str, Any]:
        since, until = _ns(ctx, from_), _ns(ctx, to)
        if since is None:
            since = (until if until is not None else time.time_ns()) - DAY_NS
        recs = await ctx.gw.tests.records(since, until, tag)
        running = [x for x in ctx.gw.tests.running() if tag is None or x.tag == tag]
        return {"running": _dicts(running), "tests": _dicts(recs)}

    @r.post(
        "/tags/{tag:path}/calibration",
        response_model=CalibrationOut,
        summary="Record a calibration of a tag (operator): the new due date counts from it",
        description="Persisted under store.path; it supersedes the config's calibration.last when later. Update "
        "the config too: `hazardgw check` reads the config only.",
        responses=actions,
    )
    async def calibrate(
        ctx: Ctx, who: Operator, tag: TagId, body: Annotated[CalibrationIn | None, Body()] = None
    ) -> dict[str, Any]:
        b = body or CalibrationIn()
        try:
            day = dt.date.fromisoformat(b.date) if b.date else None
        except ValueError as e:
            raise ApiError(400, "bad_request", f"date: {e}") from None
        interval = _duration(b.interval, "interval")
        try:
            state = await ctx.gw.calibrations.record(tag, who.name, date=day, interval_s=interval, comment=b.comment)
        except LookupError as e:
            raise ApiError(404, "not_found", str(e).strip("'\"")) from None
        except ValueError as e:
            raise ApiError(400, "bad_request", str(e)) from None
        except Exception as e:
            raise ApiError(503, "store_unavailable", f"the calibration could not be recorded: {e}") from None
        return state.to_dict()

    return r
