"""JSON Schemas of the generic uplink profile's payloads (the platform's view of the contract).

gateway/uplink/README.md documents the same fields; a change to either must change both.
Validated with jsonschema_rs (draft 2020-12).
"""

from __future__ import annotations

from typing import Any

NUM_OR_NULL: dict[str, Any] = {"type": ["number", "null"]}
STR_OR_NULL: dict[str, Any] = {"type": ["string", "null"]}
TIME = {"type": "string", "pattern": r"^\d{14}$"}  # yyyyMMddHHmmss
TS = {"type": "integer", "minimum": 1_500_000_000_000}  # epoch ms
RATE = {"type": ["number", "null"], "minimum": 0, "maximum": 1}
QUALITY = {"enum": ["good", "bad", "uncertain", "stale", "comm"]}
STATUS = {"enum": ["HH", "H", "L", "LL", "normal"]}


def _envelope(msg_type: str, props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "type": "object",
        "additionalProperties": False,
        "required": ["msgId", "msgType", "version", "enterpriseCode", *required],
        "properties": {
            "msgId": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "msgType": {"const": msg_type},
            "version": {"const": 1},
            "enterpriseCode": {"type": "string", "minLength": 1},
            **props,
        },
    }


PERSON = {
    "type": ["object", "null"],
    "additionalProperties": False,
    "required": ["id", "name", "phone"],
    "properties": {"id": {"type": "string"}, "name": {"type": "string"}, "phone": STR_OR_NULL},
}

META = _envelope(
    "meta",
    {
        "sendTime": TIME,
        "sendTs": TS,
        "enterpriseName": {"type": "string"},
        "timezone": {"type": "string"},
        "hazardSources": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["hazardCode", "hazardName", "grade", "gradeName", "responsible"],
                "properties": {
                    "hazardCode": {"type": "string"},
                    "hazardName": {"type": "string"},
                    "grade": {"enum": [1, 2, 3, 4]},
                    "gradeName": {"enum": ["一级", "二级", "三级", "四级"]},
                    "responsible": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["principal", "technical", "operational"],
                        "properties": {"principal": PERSON, "technical": PERSON, "operational": PERSON},
                    },
                },
            },
        },
        "tags": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["tagCode", "tagName", "hazardCode", "kind", "gas", "unit", "rangeLow", "rangeHigh",
                             "LL", "L", "H", "HH", "sourceId", "maintenance"],
                "properties": {
                    "tagCode": {"type": "string"},
                    "tagName": {"type": "string"},
                    "hazardCode": STR_OR_NULL,
                    "kind": {"type": "string"},
                    "gas": STR_OR_NULL,
                    "unit": {"type": "string"},
                    "rangeLow": NUM_OR_NULL,
                    "rangeHigh": NUM_OR_NULL,
                    "LL": NUM_OR_NULL,
                    "L": NUM_OR_NULL,
                    "H": NUM_OR_NULL,
                    "HH": NUM_OR_NULL,
                    "sourceId": STR_OR_NULL,
                    "maintenance": {"type": "boolean"},
                },
            },
        },
        "sources": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["sourceId", "type"],
                "properties": {"sourceId": {"type": "string"}, "type": {"type": "string"}},
            },
        },
    },
    ["sendTime", "sendTs", "enterpriseName", "timezone", "hazardSources", "tags", "sources"],
)

REALTIME = _envelope(
    "realtime",
    {
        "collectTime": TIME,
        "collectTs": TS,
        "part": {"type": "integer", "minimum": 1},
        "parts": {"type": "integer", "minimum": 1},
        "count": {"type": "integer", "minimum": 0},
        "data": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["hazardCode", "tagCode", "value", "unit", "quality", "alarmStatus", "maintenance",
                             "collectTime", "collectTs"],
                "properties": {
                    "hazardCode": STR_OR_NULL,
                    "tagCode": {"type": "string"},
                    "value": {"type": ["number", "boolean", "null"]},
                    "unit": {"type": "string"},
                    "quality": QUALITY,
                    "alarmStatus": STATUS,
                    "maintenance": {"type": "boolean"},
                    "collectTime": TIME,
                    "collectTs": TS,
                },
            },
        },
    },
    ["collectTime", "collectTs", "part", "parts", "count", "data"],
)

ALARM = _envelope(
    "alarm",
    {
        "hazardCode": STR_OR_NULL,
        "tagCode": {"type": "string"},
        "tagName": {"type": "string"},
        "alarmId": {"type": "string"},
        "occurrence": {"type": ["integer", "null"]},
        "seq": {"type": "integer", "minimum": 1},
        "event": {"type": "string"},
        "alarmType": {"enum": ["HH", "H", "L", "LL", "ROC", "STALE", "BAD", "FROZEN", "DISCRETE", "VOTE", "COMM"]},
        "alarmStatus": STATUS,
        "priority": {"enum": [1, 2, 3]},
        "state": {"enum": ["NORM", "UNACK", "ACKED", "RTNUN", "SHLVD", "DSUPR", "OOSRV"]},
        "active": {"type": "boolean"},
        "value": NUM_OR_NULL,
        "limit": NUM_OR_NULL,
        "unit": {"type": "string"},
        "user": STR_OR_NULL,
        "message": STR_OR_NULL,
        "collectTime": TIME,
        "collectTs": TS,
    },
    ["hazardCode", "tagCode", "tagName", "alarmId", "occurrence", "seq", "event", "alarmType", "alarmStatus",
     "priority", "state", "active", "value", "limit", "unit", "collectTime", "collectTs"],
)

HEARTBEAT = _envelope(
    "heartbeat",
    {
        "sendTime": TIME,
        "sendTs": TS,
        "status": {"enum": ["ok", "degraded"]},
        "uptime": {"type": "number", "minimum": 0},
        "gatewayVersion": {"type": "string"},
        "backlog": {"type": "integer", "minimum": 0},
        "activeAlarms": {"type": "integer", "minimum": 0},
        "components": {"type": "object", "additionalProperties": {"type": "boolean"}},
        "sources": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["sourceId", "type", "online", "onlineRateHour", "onlineRateDay"],
                "properties": {
                    "sourceId": {"type": "string"},
                    "type": {"type": "string"},
                    "online": {"type": "boolean"},
                    "onlineRateHour": RATE,
                    "onlineRateDay": RATE,
                },
            },
        },
        "hazardSources": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["hazardCode", "status", "onlineRateHour", "onlineRateDay", "inUseRateHour",
                             "inUseRateDay"],
                "properties": {
                    "hazardCode": {"type": "string"},
                    "status": {"enum": ["red", "orange", "yellow", "blue", None]},
                    "onlineRateHour": RATE,
                    "onlineRateDay": RATE,
                    "inUseRateHour": RATE,
                    "inUseRateDay": RATE,
                },
            },
        },
        "inUseRateHour": RATE,
        "inUseRateDay": RATE,
        "gasDetectors": {"type": ["integer", "null"], "minimum": 0},
        "gasDetectorsInService": {"type": ["integer", "null"], "minimum": 0},
    },
    ["sendTime", "sendTs", "status", "uptime", "gatewayVersion", "backlog", "activeAlarms", "components", "sources",
     "hazardSources", "inUseRateHour", "inUseRateDay", "gasDetectors", "gasDetectorsInService"],
)

SCHEMAS: dict[str, dict[str, Any]] = {"meta": META, "realtime": REALTIME, "alarm": ALARM, "heartbeat": HEARTBEAT}
