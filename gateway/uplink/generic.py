"""The ``generic`` profile: JSON over MQTT in the platform data spec's vocabulary.

Topics (``uplink.prefix`` / ``site.code``)::

    {prefix}/{site}/realtime    latest value of every tag, every uplink.period (QoS uplink.qos)
    {prefix}/{site}/alarm       each alarm event, immediately
    {prefix}/{site}/heartbeat   gateway health, per-source online state, online rates, in-use rates (投用率)
    {prefix}/{site}/meta        tags (range, LL/L/H/HH, maintenance), hazard sources (grade, 包保责任人): on
                                start, and again when a tag enters or leaves test mode

Every payload is one JSON object with ``msgId`` (unique; the same when a message is re-sent
after an outage, so the platform can deduplicate), ``msgType`` and ``enterpriseCode``.
Times are given twice: ``...Time`` as ``yyyyMMddHHmmss`` in ``site.timezone`` and ``...Ts``
as epoch milliseconds. Field names and meanings are listed in gateway/uplink/README.md; the
JSON Schemas in tests/uplink_schemas.py pin them.

Options (``uplink.options``): ``max_items`` (tags per realtime message, default 1000; a
larger site sends several parts with the same ``collectTs``), ``alarm_events`` (which alarm
events to send, default all), ``ack_timeout`` (seconds to wait for the broker's PUBACKs,
default 10), ``keepalive`` (seconds, default 30).
"""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from alerting.states import EVENTS
from gateway.uplink.profile import (
    LIMIT_STATUS,
    Heartbeat,
    Message,
    Profile,
    TagValue,
    Transport,
    collect_time,
    epoch_ms,
)

if TYPE_CHECKING:
    from alerting.events import AlarmEvent
    from gateway.config import Config
    from gateway.core.config import Uplink

GRADE_NAMES = {1: "一级", 2: "二级", 3: "三级", 4: "四级"}
ALARM_TYPES = {**LIMIT_STATUS, "roc": "ROC", "stale": "STALE", "bad": "BAD", "frozen": "FROZEN",
               "discrete": "DISCRETE", "vote": "VOTE", "comm": "COMM"}
DEFAULT_MAX_ITEMS = 1000
SCHEMA_VERSION = 1


def dumps(doc: dict[str, Any] | list[Any]) -> str:
    """Compact one-line JSON, UTF-8 text kept as is (Chinese names stay readable)."""
    return json.dumps(doc, ensure_ascii=False, separators=(",", ":"), allow_nan=False)


def finite(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


class GenericProfile(Profile):
    name = "generic"

    def __init__(self, config: Config, uplink: Uplink) -> None:
        super().__init__(config, uplink)
        opts = uplink.options
        self.max_items = int(opts.get("max_items", DEFAULT_MAX_ITEMS))
        events = opts.get("alarm_events")
        self.alarm_events: frozenset[str] | None = frozenset(events) if events is not None else None
        self.ack_timeout = float(opts.get("ack_timeout", 10.0))
        self.keepalive = float(opts.get("keepalive", 30.0))
        self.base = f"{uplink.prefix.rstrip('/')}/{config.site.code}" if uplink.prefix else config.site.code
        self.tags = config.tag_map()
        self.people = {p.id: p for p in config.people}

    def set_maintenance(self, tags: frozenset[str]) -> bool:
        self.maintenance = tags
        return True  # meta lists each tag's maintenance flag: send it again
    # ------------------------------------------------------------------ config check
    @classmethod
    def check(cls, uplink: Uplink) -> list[str]:
        problems: list[str] = []
        if not uplink.url.startswith(("mqtt://", "mqtts://")):
            problems.append(f"profile {uplink.profile} sends over MQTT: url must be mqtt:// or mqtts://")
        if any(c in uplink.prefix for c in "+#\t\n"):
            problems.append("prefix must not contain MQTT wildcards (+ #) or whitespace")
        opts = dict(uplink.options)
        problems += cls.check_options(opts)
        problems += [f"unknown option {k!r} for profile {uplink.profile}" for k in opts]
        return problems

    @classmethod
    def check_options(cls, opts: dict[str, Any]) -> list[str]:
        """Check and remove (pop) the options this class knows; a subclass adds its own and
        calls this, whatever is left in ``opts`` is unknown."""
        problems: list[str] = []
        mi = opts.pop("max_items", DEFAULT_MAX_ITEMS)
        if not isinstance(mi, int) or isinstance(mi, bool) or mi < 1:
            problems.append(f"options.max_items must be a positive integer, got {mi!r}")
        ev = opts.pop("alarm_events", None)
        if ev is not None and (not isinstance(ev, list) or any(e not in EVENTS for e in ev)):
            problems.append(f"options.alarm_events must be a list of {', '.join(sorted(EVENTS))}, got {ev!r}")
        for key in ("ack_timeout", "keepalive"):
            v = opts.pop(key, 1.0)
            if not isinstance(v, int | float) or isinstance(v, bool) or v <= 0:
                problems.append(f"options.{key} must be a positive number of seconds, got {v!r}")
        return problems

    # ------------------------------------------------------------------ transport
    def transport(self) -> Transport:
        from gateway.uplink.mqtt import MqttTransport  # only MQTT profiles need aiomqtt

        return MqttTransport(self.config, self.uplink, ack_timeout=self.ack_timeout, keepalive=self.keepalive)

    # ------------------------------------------------------------------ builders
    def topic(self, channel: str) -> str:
        return f"{self.base}/{channel}"

    def _head(self, msg_type: str) -> dict[str, Any]:
        return {"msgId": uuid.uuid4().hex, "msgType": msg_type, "version": SCHEMA_VERSION,
                "enterpriseCode": self.site.code}

    def _message(self, channel: str, doc: dict[str, Any], priority: bool) -> Message:
        return Message(self.topic(channel), dumps(doc), priority)

    def _times(self, prefix: str, ts_ns: int) -> dict[str, Any]:
        return {f"{prefix}Time": collect_time(ts_ns, self.tz), f"{prefix}Ts": epoch_ms(ts_ns)}

    def meta(self, now_ns: int) -> list[Message]:
        return [self._message("meta", self.meta_doc(now_ns), True)]

    def meta_doc(self, now_ns: int) -> dict[str, Any]:
        cfg = self.config
        bound = cfg.source_of_tag()
        doc = self._head("meta")
        doc.update(self._times("send", now_ns))
        doc["enterpriseName"] = cfg.site.name
        doc["timezone"] = cfg.site.timezone
        doc["hazardSources"] = [
            {
                "hazardCode": h.code,
                "hazardName": h.name,
                "grade": h.grade,
                "gradeName": GRADE_NAMES[h.grade],
                "responsible": {role: self._person(getattr(h.responsible, role))
                                for role in ("principal", "technical", "operational")},
            }
            for h in cfg.hazard_sources
        ]
        tags = []
        for t in cfg.tags:
            a = t.alarms
            item: dict[str, Any] = {
                "tagCode": t.id,
                "tagName": t.name or t.id,
                "hazardCode": t.hazard_source,
                "kind": t.kind,
                "gas": t.gas,
                "unit": t.unit,
                "rangeLow": t.range[0] if t.range else None,
                "rangeHigh": t.range[1] if t.range else None,
                "sourceId": bound.get(t.id),
                "maintenance": t.id in self.maintenance,
            }
            for cond, key in (("ll", "LL"), ("l", "L"), ("h", "H"), ("hh", "HH")):
                lim = getattr(a, cond)
                item[key] = lim.limit if lim is not None else None
            tags.append(item)
        doc["tags"] = tags
        doc["sources"] = [{"sourceId": s.id, "type": s.type} for s in cfg.sources]
        return doc

    def _person(self, pid: str | None) -> dict[str, Any] | None:
        if pid is None:
            return None
        p = self.people.get(pid)
        return {"id": pid, "name": p.name if p else pid, "phone": p.phone if p else None}

    def realtime(self, values: Sequence[TagValue], now_ns: int) -> list[Message]:
        return [self._message("realtime", d, False) for d in self.realtime_docs(values, now_ns)]

    def realtime_docs(self, values: Sequence[TagValue], now_ns: int) -> list[dict[str, Any]]:
        tz = self.tz
        items = [
            {
                "hazardCode": v.hs,
                "tagCode": v.tag,
                "value": finite(v.value),
                "unit": v.unit,
                "quality": v.quality,
                "alarmStatus": v.alarm_status,
                "maintenance": v.maintenance,
                "collectTime": collect_time(v.ts, tz),
                "collectTs": epoch_ms(v.ts),
            }
            for v in values
        ]
        n = self.max_items
        chunks = [items[i : i + n] for i in range(0, len(items), n)] or [[]]
        docs = []
        for i, chunk in enumerate(chunks):
            doc = self._head("realtime")
            doc.update(self._times("collect", now_ns))
            doc.update(part=i + 1, parts=len(chunks), count=len(chunk), data=chunk)
            docs.append(doc)
        return docs

    def alarm(self, event: AlarmEvent, status: str) -> list[Message]:
        doc = self.alarm_doc(event, status)
        return [] if doc is None else [self._message("alarm", doc, True)]

    def alarm_doc(self, event: AlarmEvent, status: str) -> dict[str, Any] | None:
        if self.alarm_events is not None and event.event not in self.alarm_events:
            return None
        t = self.tags.get(event.tag)
        doc = self._head("alarm")
        doc.update(
            hazardCode=event.hs,
            tagCode=event.tag,
            tagName=(t.name or t.id) if t else event.tag,
            alarmId=event.alarm,
            occurrence=event.occurrence,
            seq=event.seq,
            event=event.event,
            alarmType=ALARM_TYPES.get(event.condition, event.condition.upper()),
            alarmStatus=status,
            priority=event.priority,
            state=event.state,
            active=event.active,
            value=finite(event.value),
            limit=finite(event.limit),
            unit=t.unit if t else "",
            user=event.user,
            message=event.message,
        )
        doc.update(self._times("collect", event.ts))
        return doc

    def heartbeat(self, hb: Heartbeat) -> list[Message]:
        return [self._message("heartbeat", self.heartbeat_doc(hb), False)]

    def heartbeat_doc(self, hb: Heartbeat) -> dict[str, Any]:
        doc = self._head("heartbeat")
        doc.update(self._times("send", hb.ts))
        doc.update(
            status=hb.status,
            uptime=round(hb.uptime_s, 1),
            gatewayVersion=hb.version,
            backlog=hb.backlog,
            activeAlarms=hb.active_alarms,
            components=dict(hb.components),
            sources=[
                {"sourceId": sid, "type": s.get("type"), "online": bool(s.get("online")),
                 "onlineRateHour": s.get("hour"), "onlineRateDay": s.get("day")}
                for sid, s in hb.sources.items()
            ],
            hazardSources=[
                {"hazardCode": code, "status": h.get("status"),
                 "onlineRateHour": h.get("hour"), "onlineRateDay": h.get("day"),
                 "inUseRateHour": h.get("in_use_hour"), "inUseRateDay": h.get("in_use_day")}
                for code, h in hb.hazard_sources.items()
            ],
            inUseRateHour=(hb.in_use or {}).get("hour"),
            inUseRateDay=(hb.in_use or {}).get("day"),
            gasDetectors=(hb.in_use or {}).get("tags"),
            gasDetectorsInService=(hb.in_use or {}).get("in_service"),
        )
        return doc
