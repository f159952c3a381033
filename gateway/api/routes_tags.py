"""``GET /api/tags`` and ``GET /api/tags/{tag}``: live value, quality, timestamp and alarm state,
and what the console's point table shows: source, where the point is read (address / node /
topic), the raw value on request (``?raw=true``: Modbus register words), test mode,
calibration due date, in service (gas detectors, 投用率)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from fastapi.responses import Response

from gateway.api import views
from gateway.api.auth import Viewer
from gateway.api.context import ApiContext, Ctx
from gateway.api.errors import ApiError, responses
from gateway.api.jsonout import json_response
from gateway.api.schemas import AlarmOut, TagDetailOut, TagOut
from gateway.core.config import GAS_KINDS, Tag
from gateway.core.sources import RawValue


class _Extras:
    """What every tag row adds to the live value, gathered once per request."""

    def __init__(self, ctx: ApiContext, raw: bool) -> None:
        gw = ctx.gw
        self.points = gw.points()
        self.tests = {r.tag: r for r in gw.tests.running()}
        self.calibrations = gw.calibrations.states()
        self.not_in_service: dict[str, list[str]] = gw.in_use().get("not_in_service", {})
        self.raw: dict[str, RawValue] = dict(gw.raw_points()) if raw else {}

    def add(self, d: dict[str, Any], t: Tag) -> None:
        pt = self.points.get(t.id) or {}
        test = self.tests.get(t.id)
        cal = self.calibrations.get(t.id)
        raw = self.raw.get(t.id)
        gas = t.kind in GAS_KINDS
        why = self.not_in_service.get(t.id) if gas else None
        d.update(
            source=pt.get("source"),
            source_type=pt.get("source_type"),
            where=pt.get("where"),
            raw={"text": raw.text, "words": list(raw.words), "ts": raw.ts} if raw is not None else None,
            test=test.to_dict() if test is not None else None,
            calibration=cal.to_dict() if cal is not None else None,
            in_service=(not why) if gas else None,
            not_in_service=why or None,
        )


def _tag(ctx: ApiContext, t: Tag, summary: dict[str, dict[str, Any]], recent: int, extras: _Extras) -> dict[str, Any]:
    d = views.tag_info(t)
    r = ctx.gw.latest.get(t.id)
    d.update(
        value=views.num(r.value) if r else None,
        ts=r.ts if r else None,
        quality=r.quality if r else None,
        alarm=summary.get(t.id),
        recent=ctx.trends.recent(t.id, recent) if recent else None,
    )
    extras.add(d, t)
    return d


def router() -> APIRouter:
    r = APIRouter(prefix="/api", tags=["tags"], responses=responses(401, 403))

    @r.get("/tags", response_model=list[TagOut], summary="All tags with their latest reading")
    async def list_tags(
        ctx: Ctx,
        _: Viewer,
        hs: Annotated[str | None, Query(max_length=128, description="only tags of this hazard source")] = None,
        recent: Annotated[int, Query(ge=0, le=1000, description="include up to N recent values per tag")] = 0,
        raw: Annotated[bool, Query(description="include what the device last sent (Modbus register words); "
                                   "the console's point table asks for it")] = False,
    ) -> Response:
        summary = views.tag_alarm_summary(ctx.gw.alarms.alarms())
        extras = _Extras(ctx, raw)
        tags = [_tag(ctx, t, summary, recent, extras) for t in ctx.gw.config.tags
                if hs is None or t.hazard_source == hs]
        return await json_response(tags)  # megabytes with recent=120 on a big site: encoded off the loop

    @r.get(
        "/tags/{tag:path}",
        response_model=TagDetailOut,
        summary="One tag: latest reading, recent values (trend) and its alarms",
        responses=responses(404),
    )
    async def get_tag(
        ctx: Ctx,
        _: Viewer,
        tag: Annotated[str, Path(description="tag id, e.g. GT-101", examples=["GT-101"])],
    ) -> dict[str, Any]:
        t = ctx.gw.config.tag_map().get(tag)
        if t is None:
            raise ApiError(404, "not_found", f"unknown tag {tag!r}")
        alarms = [v for v in ctx.gw.alarms.alarms() if v.tag == tag]
        d = _tag(ctx, t, views.tag_alarm_summary(alarms), ctx.settings.trend_points, _Extras(ctx, True))
        d["alarms"] = [AlarmOut(**views.alarm(v)) for v in alarms]
        return d

    return r
