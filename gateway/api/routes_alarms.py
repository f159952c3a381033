"""Alarm routes: the current list (with the console's filters), the journal, and the
operator actions, one alarm at a time or a group (``POST /api/alarms/ack``).

Operator actions need the ``operator`` role; the token's *name* is the ``user`` recorded
in the alarm journal. Alarm ids contain a slash (``GT-101/hh``): send it as is
(``/api/alarms/GT-101/hh/ack``) or URL-encoded (``/api/alarms/GT-101%2Fhh/ack``); an open
occurrence number works too (``/api/alarms/17/ack``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sqlite3
import zoneinfo
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query

from alerting import AlarmEvent, AlarmNotFound, AlarmView
from gateway.api import views
from gateway.api.auth import Operator, Viewer
from gateway.api.context import ApiContext, Ctx
from gateway.api.errors import ApiError, engine_error, responses
from gateway.api.jsonout import json_response
from gateway.api.schemas import (
    AckIn,
    ActionOut,
    AlarmFilterIn,
    AlarmOut,
    DisposeIn,
    EventName,
    GroupAckIn,
    GroupAckOut,
    HistoryOut,
    ShelveIn,
    UnshelveIn,
)
from gateway.core.config import Tag
from gateway.core.units import parse_duration

_INT64 = 2**63 - 1
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
AlarmId = Annotated[
    str,
    Path(
        description="alarm id 'TAG/condition' (slash as is or %2F) or an open occurrence number",
        examples=["GT-101/hh"],
        max_length=300,
    ),
]
StateFilter = Literal["active", "suppressed", "all", "NORM", "UNACK", "ACKED", "RTNUN", "SHLVD", "DSUPR", "OOSRV"]


def _ns(ctx: ApiContext, t: dt.datetime | None) -> int | None:
    if t is None:
        return None
    if t.tzinfo is None:  # a local time at the site
        t = t.replace(tzinfo=zoneinfo.ZoneInfo(ctx.gw.config.site.timezone))
    ns = (t - _EPOCH) // dt.timedelta(microseconds=1) * 1000
    return max(-_INT64, min(_INT64, ns))


def matches(v: AlarmView, f: AlarmFilterIn, tags: dict[str, Tag]) -> bool:
    """The console's filter, on the server: hazard source (any the alarm concerns), source,
    condition, priority, and text in the id, tag name, message or COMM source name."""
    if f.hs is not None and f.hs != v.hs and f.hs not in v.hazard_sources:
        return False
    if f.source is not None and (v.source is None or f.source not in v.source.split(",")):
        return False
    if f.condition is not None and f.condition != v.condition:
        return False
    if f.priority is not None and f.priority != v.priority:
        return False
    if f.q:
        t = tags.get(v.tag)
        text = " ".join(x for x in (v.id, t.name if t else "", v.message or "", (v.comm or {}).get("name") or "",
                                     v.source or "") if x)
        if f.q.casefold() not in text.casefold():
            return False
    return True


def _result(ctx: ApiContext, ev: AlarmEvent) -> dict[str, Any]:
    try:
        view = ctx.gw.alarms.get(ev.alarm)
    except AlarmNotFound:  # pragma: no cover - the alarm just acted on exists
        raise ApiError(404, "not_found", ev.alarm) from None
    return {"event": views.event(ev), "alarm": views.alarm(view)}


def _act(ctx: ApiContext, fn: Any, *args: Any, **kw: Any) -> dict[str, Any]:
    try:
        ev = fn(*args, **kw)
    except Exception as e:
        raise engine_error(e) from None
    return _result(ctx, ev)


async def _occurrence_of(ctx: ApiContext, ref: str) -> int:
    """The occurrence a disposition is for: a number as is; for an alarm id, its open or latest one."""
    if ref.isascii() and ref.isdigit():
        return int(ref)
    engine = ctx.gw.alarms
    try:
        view = engine.get(ref)
    except (AlarmNotFound, ValueError) as e:  # ValueError: e.g. '¹' passes isdigit() but not int()
        raise engine_error(e) from None
    if view.occurrence is not None:
        return view.occurrence
    for ev in engine.history(limit=1000, alarm=ref):
        if ev.occurrence is not None:
            return ev.occurrence
    journal = engine.journal
    if journal is not None:
        try:
            rows = await asyncio.to_thread(journal.occurrences, alarm=ref, limit=1)
        except sqlite3.Error as e:
            raise ApiError(503, "journal_unavailable", f"alarm journal: {e}") from None
        if rows:
            return int(rows[0]["id"])
    raise ApiError(409, "no_occurrence", f"{ref} has no occurrence to dispose")


def router() -> APIRouter:
    r = APIRouter(prefix="/api/alarms", tags=["alarms"], responses=responses(401, 403))

    @r.get("", response_model=list[AlarmOut], summary="Current alarms")
    async def list_alarms(
        ctx: Ctx,
        _: Viewer,
        state: Annotated[
            StateFilter,
            Query(description="active: open alarms (UNACK, ACKED, RTNUN) by priority then raise time; "
                  "suppressed: shelved/suppressed/out of service; all: every alarm point; or one state"),
        ] = "active",
        hs: Annotated[str | None, Query(max_length=128, description="hazard source (any the alarm concerns)")] = None,
        priority: Annotated[int | None, Query(ge=1, le=3)] = None,
        source: Annotated[str | None, Query(max_length=128, description="source id")] = None,
        condition: Annotated[str | None, Query(max_length=32, description="hh, h, ..., bad, stale, comm")] = None,
        parent: Annotated[
            str | None, Query(max_length=300, description="alarms suppressed under this COMM alarm")
        ] = None,
        q: Annotated[str | None, Query(max_length=200, description="text in id, tag name, message")] = None,
    ) -> list[dict[str, Any]]:
        engine = ctx.gw.alarms
        f = AlarmFilterIn(hs=hs, source=source, condition=condition, priority=priority, q=q)
        tags = ctx.gw.config.tag_map()
        if state == "active":
            vs = engine.active()
        elif state == "suppressed":
            vs = engine.suppressed()
        elif state == "all":
            vs = engine.alarms()
        else:
            vs = [v for v in engine.alarms() if v.state == state]
        return [views.alarm(v) for v in vs if matches(v, f, tags) and (parent is None or v.parent == parent)]

    @r.get(
        "/history",
        response_model=HistoryOut,
        summary="Alarm journal: events or occurrences, newest first",
        responses=responses(503),
    )
    async def history(
        ctx: Ctx,
        _: Viewer,
        view: Annotated[Literal["events", "occurrences"], Query()] = "events",
        since: Annotated[dt.datetime | None, Query(description="ISO 8601; without offset: site time")] = None,
        until: Annotated[dt.datetime | None, Query(description="ISO 8601; without offset: site time")] = None,
        tag: Annotated[str | None, Query(max_length=300)] = None,
        alarm: Annotated[str | None, Query(max_length=300)] = None,
        occurrence: Annotated[int | None, Query(ge=1, le=_INT64)] = None,
        event: Annotated[list[EventName] | None, Query(description="event types (repeat the parameter)")] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
    ) -> Any:
        # up to 10,000 rows: encoded on a worker thread (gateway/api/jsonout.py), not on the
        # gateway's loop that evaluates alarms; the response model documents the shape
        engine = ctx.gw.alarms
        limit = min(limit, ctx.settings.history_max)
        since_ns, until_ns = _ns(ctx, since), _ns(ctx, until)
        journal = engine.journal
        if journal is None:  # no journal (not configured or failed to open): the engine's memory
            evs = [
                views.event(e) for e in engine.history(limit=ctx.settings.history_max, alarm=alarm, tag=tag)
                if (since_ns is None or e.wall >= since_ns) and (until_ns is None or e.wall < until_ns)
                and (occurrence is None or e.occurrence == occurrence) and (not event or e.event in event)
            ]
            return await json_response({"source": "memory", "events": evs[:limit] if view == "events" else []})
        try:
            if view == "occurrences":
                rows = await asyncio.to_thread(
                    journal.occurrences, since_ns=since_ns, alarm=alarm, occurrence=occurrence, limit=limit
                )
                occs = [views.occurrence(o) for o in rows
                        if (tag is None or o["tag"] == tag) and (until_ns is None or o["raised_wall"] < until_ns)]
                return await json_response({"source": "journal", "occurrences": occs})
            rows = await asyncio.to_thread(
                journal.events, since_ns=since_ns, until_ns=until_ns, tag=tag, alarm=alarm,
                occurrence=occurrence, kinds=event or None, limit=limit,
            )
        except (sqlite3.Error, OverflowError) as e:
            raise ApiError(503, "journal_unavailable", f"alarm journal: {e}") from None
        return await json_response({"source": "journal", "events": [views.journal_event(row) for row in rows]})

    actions = responses(400, 404, 409)

    @r.post(
        "/ack",
        response_model=GroupAckOut,
        summary="Acknowledge a group (operator): one journal event per alarm, same user",
        description="`ids`: the alarms the operator saw (the console sends the ids of the group's rows); or "
        "`filter`: every open alarm matching it. Alarms that cannot be acknowledged are listed in `skipped`.",
        responses=responses(400),
    )
    async def ack_group(ctx: Ctx, who: Operator, body: GroupAckIn) -> dict[str, Any]:
        engine = ctx.gw.alarms
        if body.ids is not None:
            refs: list[int | str] = list(body.ids)
        else:
            assert body.filter is not None
            tags = ctx.gw.config.tag_map()
            refs = [v.id for v in engine.active() if matches(v, body.filter, tags)]
        try:
            done, skipped = ctx.gw.actions.ack_many(refs, who.name, comment=body.comment)
        except Exception as e:
            raise engine_error(e) from None
        out = []
        for ev in done:
            try:
                out.append(views.alarm(engine.get(ev.alarm)))
            except AlarmNotFound:  # pragma: no cover - just acknowledged
                continue
        return {
            "acked": [views.event(ev) for ev in done],
            "skipped": [{"id": i, "reason": why} for i, why in skipped],
            "alarms": out,
        }

    @r.post("/{id:path}/ack", response_model=ActionOut, summary="Acknowledge (operator)", responses=actions)
    async def ack(ctx: Ctx, who: Operator, id: AlarmId, body: Annotated[AckIn | None, Body()] = None) -> dict[str, Any]:
        return _act(ctx, ctx.gw.actions.ack, id, who.name, comment=body.comment if body else None)

    @r.post("/{id:path}/shelve", response_model=ActionOut, summary="Shelve (operator)", responses=actions)
    async def shelve(ctx: Ctx, who: Operator, id: AlarmId, body: ShelveIn) -> dict[str, Any]:
        duration: float | None = None
        if body.duration is not None:
            try:
                duration = parse_duration(body.duration)
            except (ValueError, TypeError) as e:
                raise ApiError(400, "bad_request", f"duration: {e}") from None
        return _act(ctx, ctx.gw.actions.shelve, id, who.name, duration, one_shot=body.one_shot,
                    comment=body.comment)

    @r.post("/{id:path}/unshelve", response_model=ActionOut, summary="Unshelve (operator)", responses=actions)
    async def unshelve(
        ctx: Ctx, who: Operator, id: AlarmId, body: Annotated[UnshelveIn | None, Body()] = None
    ) -> dict[str, Any]:
        return _act(ctx, ctx.gw.actions.unshelve, id, who.name, comment=body.comment if body else None)

    @r.post(
        "/{id:path}/dispose",
        response_model=ActionOut,
        summary="Record the disposition (处置) of an occurrence (operator)",
        description="`id` is an occurrence number, or an alarm id for its open (else latest) occurrence.",
        responses=responses(400, 404, 409, 503),
    )
    async def dispose(ctx: Ctx, who: Operator, id: AlarmId, body: DisposeIn) -> dict[str, Any]:
        occ = await _occurrence_of(ctx, id)
        return _act(ctx, ctx.gw.actions.dispose, occ, body.cause, body.action, body.handler or who.name,
                    body.result, user=who.name, comment=body.comment)

    return r

