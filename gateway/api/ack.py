"""One-tap acknowledge page for a phone: ``GET /ack/{token}`` and ``POST /ack/{token}``.

``ack_router(links)`` returns an ``APIRouter``; the app includes it (no API token: the
signed link is the credential, bound to one person and one occurrence, expiring, single
use; see alerting/notify/acklinks.py). ``links`` is an :class:`AckLinks`: only what the
page needs of the notifier (the supervisor makes it with ``AckLinks.of(notifier)``).

* ``GET`` shows the alarm (site, hazard source, 位号 and name, value, limit, priority, time,
  state) and a confirm button. It never acknowledges: messengers (WeCom, DingTalk, Feishu)
  open links to build previews, and a preview must not acknowledge a gas alarm.
* ``POST`` acknowledges the occurrence in the alarm engine as the token's person (the
  journal records who and when) and uses the token up.

Status codes: 200 shown / acknowledged; 403 invalid or tampered link (or unknown person);
410 expired; 409 already used, already acknowledged, or the alarm is no longer open. A 403
counts towards the address's lockout (guard.py): links cannot be guessed at speed. Every
``POST`` is in the audit log with the link's person and occurrence (never the link).
Pages are plain HTML with inline CSS (no script, no CDN), in the person's language,
``Cache-Control: no-store``, no referrer (the token is in the URL).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse

from gateway.api.audit import audit_target

if TYPE_CHECKING:
    from alerting.notify import AckView, Notifier

_STATUS = {"ok": 200, "acked": 200, "invalid": 403, "expired": 410, "used": 409, "closed": 409, "already_acked": 409}

_TEXT = {
    "zh": {
        "title": "报警确认",
        "confirm": "确认报警",
        "as": "确认人",
        "ok": "请核实现场情况后确认。确认不会消除报警，只记录您已知悉。",
        "acked": "已确认。确认人 {by}，时间 {at}。",
        "invalid": "链接无效或已被篡改。请使用推送消息中的原始链接，或在值班台确认。",
        "expired": "链接已过期。请在值班台确认报警。",
        "used": "此链接已使用过（{by}，{at}）。",
        "closed": "此报警已结束，无需确认。",
        "already_acked": "此报警已由 {by} 于 {at} 确认。",
        "hs": "危险源",
        "tag": "位号",
        "alarm": "报警",
        "value": "数值",
        "limit": "报警值",
        "priority": "优先级",
        "time": "时间",
        "state": "状态",
        "site": "企业",
    },
    "en": {
        "title": "Acknowledge alarm",
        "confirm": "Acknowledge",
        "as": "Acknowledging as",
        "ok": "Check the situation, then acknowledge. Acknowledging does not clear the alarm; it records "
        "that you know.",
        "acked": "Acknowledged by {by} at {at}.",
        "invalid": "This link is invalid or was altered. Use the original link from the push, or the duty console.",
        "expired": "This link has expired. Acknowledge the alarm on the duty console.",
        "used": "This link was already used ({by}, {at}).",
        "closed": "This alarm is over; there is nothing to acknowledge.",
        "already_acked": "This alarm was already acknowledged by {by} at {at}.",
        "hs": "Hazard source",
        "tag": "Tag",
        "alarm": "Alarm",
        "value": "Value",
        "limit": "Limit",
        "priority": "Priority",
        "time": "Time",
        "state": "State",
        "site": "Site",
    },
}

_CSS = """
body{font-family:system-ui,-apple-system,"PingFang SC","Microsoft YaHei",sans-serif;margin:0;background:#f4f4f4;
color:#111}
main{max-width:30rem;margin:0 auto;padding:1rem}
h1{font-size:1.3rem;margin:.2rem 0 .8rem}
.p1{border-left:.5rem solid #c00}.p2{border-left:.5rem solid #e67e00}.p3{border-left:.5rem solid #d4b000}
.card{background:#fff;border-radius:.5rem;padding:.8rem 1rem;box-shadow:0 1px 3px #0002}
dl{display:grid;grid-template-columns:auto 1fr;gap:.3rem .8rem;margin:0}dt{color:#555}dd{margin:0;font-weight:600}
p.msg{font-size:1.05rem}p.err{color:#a00;font-weight:600}p.okmsg{color:#070;font-weight:600}
button{width:100%;font-size:1.3rem;padding:1rem;margin-top:1rem;border:0;border-radius:.5rem;background:#c00;
color:#fff}
"""

_HEADERS = {
    "Cache-Control": "no-store",
    "Referrer-Policy": "no-referrer",
    "X-Robots-Tag": "noindex, nofollow",
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
}


@dataclass(frozen=True, kw_only=True)
class AckLinks:
    """What the one-tap page may do with a link (check it, acknowledge with it) and reads
    (the site's time zone, people's names)."""

    inspect: Callable[[str], Awaitable[AckView]]  # never changes anything
    acknowledge: Callable[[str], Awaitable[AckView]]  # acknowledges as the token's person, once
    tz: dt.tzinfo
    names: Mapping[str, str]  # person id -> name

    @classmethod
    def of(cls, notifier: Notifier) -> AckLinks:
        return cls(
            inspect=notifier.inspect,
            acknowledge=notifier.acknowledge,
            tz=notifier.templates.tz,
            names={pid: p.name for pid, p in notifier.people.items()},
        )


def _time(ns: int | None, links: AckLinks) -> str:
    if not ns:
        return "?"
    return dt.datetime.fromtimestamp(ns / 1e9, links.tz).strftime("%Y-%m-%d %H:%M:%S")


def _who(by: str | None, links: AckLinks) -> str:
    if not by:
        return "?"
    name = links.names.get(by)
    return f"{name} ({by})" if name is not None and name != by else by


def render(view: AckView, links: AckLinks, *, form: bool) -> str:
    t = _TEXT.get(view.lang, _TEXT["zh"])
    f = view.fields or {}
    e = escape
    by, at = _who(view.by, links), _time(view.at, links)
    msg_class = {"ok": "msg", "acked": "okmsg"}.get(view.status, "err")
    msg = t[view.status].format(by=by, at=at) if view.status in t else e(view.status)
    prio = f.get("priority", "")
    parts = [
        "<!doctype html>",
        f'<html lang="{"zh-CN" if view.lang == "zh" else "en"}"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width,initial-scale=1">',
        '<meta name="robots" content="noindex,nofollow">',
        f"<title>{e(t['title'])}</title><style>{_CSS}</style></head><body><main>",
    ]
    if f:
        parts.append(f'<div class="card p{e(prio)}">')
        parts.append(f"<h1>{e(f['priority_text'])} · {e(f['condition_text'])}</h1><dl>")
        rows = [
            ("site", f["site"]),
            ("hs", f"{f['hs_name']} ({f['hs']})"),
            ("tag", f"{f['tag']} {f['tag_name']}".strip()),
            ("alarm", f["condition_text"] + f["message"]),
            ("value", f["value"]),
            ("limit", f["limit"]),
            ("priority", f["priority_text"]),
            ("time", f["time"]),
            ("state", f["state_text"]),
        ]
        parts.extend(f"<dt>{e(t[k])}</dt><dd>{e(v)}</dd>" for k, v in rows)
        parts.append("</dl></div>")
    else:
        parts.append(f"<h1>{e(t['title'])}</h1>")
    parts.append(f'<p class="{msg_class}">{e(msg)}</p>')
    if form and view.status == "ok" and view.person is not None:
        parts.append(f"<p>{e(t['as'])}: <b>{e(_who(view.person.id, links))}</b></p>")
        parts.append(f'<form method="post"><button type="submit">{e(t["confirm"])}</button></form>')
    parts.append("</main></body></html>")
    return "".join(parts)


def _response(view: AckView, links: AckLinks, *, form: bool) -> HTMLResponse:
    return HTMLResponse(render(view, links, form=form), status_code=_STATUS.get(view.status, 400), headers=_HEADERS)


def _alarm_id(view: AckView) -> str | None:
    f = view.fields or {}
    tag, cond = f.get("tag"), f.get("condition")
    return f"{tag}/{cond}" if tag and cond else None


def ack_router(links: AckLinks) -> APIRouter:
    router = APIRouter(tags=["ack"])

    @router.get("/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def ack_page(token: str) -> HTMLResponse:
        return _response(await links.inspect(token), links, form=True)

    @router.post("/ack/{token}", response_class=HTMLResponse, include_in_schema=False)
    async def ack_confirm(token: str, request: Request) -> HTMLResponse:
        view = await links.acknowledge(token)
        if view.claims is not None:  # the audit log names the link's person and occurrence, never the token
            audit_target(request, {"occurrence": view.claims.occurrence, "alarm": _alarm_id(view)},
                         user=view.claims.person)
        return _response(view, links, form=False)

    return router
