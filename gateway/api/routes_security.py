"""``GET /api/me`` (the caller's token: name, role, expiry) and ``GET /api/audit`` (admin)."""

from __future__ import annotations

import asyncio
import datetime as dt
import zoneinfo
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from gateway.api.auth import Admin, Viewer
from gateway.api.context import Ctx
from gateway.api.errors import ApiError, responses

EXPIRY_WARNING_DAYS = 7


class MeOut(BaseModel):
    name: str
    role: str
    expires: int | None  # ns since the epoch; null: never
    expires_in_s: float | None
    expires_soon: bool  # within 7 days: the console warns


class AuditOut(BaseModel):
    records: list[dict[str, Any]]
    truncated: bool


def _ns(t: dt.datetime | None, tz: str) -> int | None:
    if t is None:
        return None
    if t.tzinfo is None:
        t = t.replace(tzinfo=zoneinfo.ZoneInfo(tz))
    return int(t.timestamp() * 1e9)


def router() -> APIRouter:
    r = APIRouter(prefix="/api", tags=["security"], responses=responses(401, 403))

    @r.get("/me", response_model=MeOut, summary="The calling token: name, role and expiry")
    async def me(ctx: Ctx, who: Viewer) -> MeOut:
        left = None if who.expires_ns is None else (who.expires_ns - ctx.settings.wall()) / 1e9
        return MeOut(name=who.name, role=who.role, expires=who.expires_ns, expires_in_s=left,
                     expires_soon=left is not None and left <= EXPIRY_WARNING_DAYS * 86400)

    @r.get(
        "/audit",
        response_model=AuditOut,
        summary="Security audit log (admin): state-changing calls, authentication failures, lockouts",
        description="Records with `from` <= time < `to`, oldest first. `from`/`to`: ISO 8601; without an "
        "offset in the site's time zone. Default: the last 24 hours.",
        responses=responses(400, 503),
    )
    async def audit(
        ctx: Ctx,
        _: Admin,
        from_: Annotated[dt.datetime | None, Query(alias="from")] = None,
        to: Annotated[dt.datetime | None, Query()] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
    ) -> AuditOut:
        tz = ctx.gw.config.site.timezone
        until = _ns(to, tz)
        since = _ns(from_, tz)
        if since is None:
            since = (until if until is not None else ctx.settings.wall()) - 86_400 * 10**9
        if until is not None and until <= since:
            raise ApiError(400, "bad_request", "'to' must be after 'from'")
        await asyncio.to_thread(ctx.audit.flush)
        try:
            rows = await asyncio.to_thread(ctx.audit.read, since, until, limit + 1)
        except RuntimeError as e:
            raise ApiError(503, "audit_unavailable", str(e)) from None
        return AuditOut(records=rows[:limit], truncated=len(rows) > limit)

    return r
