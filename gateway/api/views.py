"""JSON shapes shared by the REST routes and the SSE stream.

Timestamps are integers, nanoseconds since the Unix epoch (UTC), like InfluxDB; values
that are not finite numbers (NaN, inf) become ``null`` so the JSON stays valid.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from alerting import AlarmEvent, AlarmView, HazardStatus
from alerting import states as S
from gateway.core.config import HazardSource, Tag
from gateway.core.models import Reading

LIMIT_CONDITIONS = ("hh", "h", "l", "ll")


def num(v: object) -> float | None:
    if v is None or isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def reading(r: Reading) -> dict[str, Any]:
    return {"tag": r.tag, "value": num(r.value), "ts": r.ts, "quality": r.quality}


def tag_info(t: Tag) -> dict[str, Any]:
    limits = {c: a.limit for c in LIMIT_CONDITIONS if (a := getattr(t.alarms, c)) is not None and a.enabled}
    return {
        "id": t.id,
        "name": t.name,
        "hs": t.hazard_source,
        "kind": t.kind,
        "gas": t.gas,
        "unit": t.unit,
        "range": list(t.range) if t.range is not None else None,
        "limits": limits,
    }


def alarm(v: AlarmView) -> dict[str, Any]:
    return {
        "id": v.id,
        "tag": v.tag,
        "condition": v.condition,
        "priority": v.priority,
        "state": v.state,
        "active": v.active,
        "occurrence": v.occurrence,
        "hs": v.hs,
        "value": num(v.value),
        "limit": num(v.limit),
        "raised_ts": v.raised_ts,
        "acked_by": v.acked_by,
        "acked_wall": v.acked_wall,
        "shelved": v.shelved,
        "shelved_until": v.shelved_until,
        "one_shot": v.one_shot,
        "suppressed": v.suppressed,
        "out_of_service": v.out_of_service,
        "latch": v.latch,
        "chattering": v.chattering,
        "suppressible": v.suppressible,
        "message": v.message,
        "source": v.source,
        "parent": v.parent,
        "hazard_sources": list(v.hazard_sources),
        "comm": v.comm,
        "test": v.test,
    }


def event(ev: AlarmEvent) -> dict[str, Any]:
    d = ev.to_dict()
    d["value"] = num(ev.value)
    d["limit"] = num(ev.limit)
    return d


def journal_event(row: Mapping[str, Any]) -> dict[str, Any]:
    """A journal ``events`` row in the same shape as :func:`event`."""
    return {
        "seq": row["seq"],
        "event": row["event"],
        "alarm": row["alarm"],
        "tag": row["tag"],
        "condition": row["condition"],
        "priority": row["priority"],
        "state": row["state"],
        "prev_state": row["prev_state"],
        "active": bool(row["active"]),
        "occurrence": row["occurrence"],
        "value": num(row["value"]),
        "limit": num(row["limit_value"]),
        "ts": row["ts_ns"],
        "wall": row["wall_ns"],
        "hs": row["hs"],
        "user": row["user"],
        "comment": row["comment"],
        "chattering": bool(row["chattering"]),
        "flood": bool(row["flood"]),
        "message": row["message"],
        "data": row["data"] if isinstance(row["data"], dict) else None,
        "source": None,  # not journaled: the config knows it
        "test": bool(row.get("test", False)),
    }


def occurrence(row: Mapping[str, Any]) -> dict[str, Any]:
    d = dict(row)
    d["limit"] = num(d.pop("limit_value", None))
    d["value"] = num(d.get("value"))
    return d


def hazard_status(h: HazardStatus, source: HazardSource | None) -> dict[str, Any]:
    return {
        "code": h.code,
        "name": source.name if source else h.code,
        "grade": h.grade,
        "status": h.status,
        "zh": h.zh,
        "counts": list(h.counts),
    }


def tag_alarm_summary(views: Iterable[AlarmView]) -> dict[str, dict[str, Any]]:
    """tag -> {priority, state, alarms} of its open alarms (worst priority; UNACK before ACKED)."""
    rank = {S.UNACK: 0, S.RTNUN: 1, S.ACKED: 2}
    out: dict[str, dict[str, Any]] = {}
    for v in views:
        if v.state not in S.OPEN:
            continue
        cur = out.get(v.tag)
        if cur is None:
            out[v.tag] = {"priority": v.priority, "state": v.state, "alarms": [v.id]}
            continue
        cur["alarms"].append(v.id)
        if (v.priority, rank[v.state]) < (cur["priority"], rank[cur["state"]]):
            cur["priority"], cur["state"] = v.priority, v.state
    return out
