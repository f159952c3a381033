"""Uplink mapping files: a platform's message format declared in YAML (profile ``mapped``).

A mapping says, per message kind (``realtime``, ``alarm``, ``meta``, ``heartbeat``), what the
platform's JSON looks like (templates with ``{placeholders}``), how the body is encrypted
and wrapped (``envelope``), and how it travels (``tcp``, ``http`` or ``mqtt`` sections).
The writing guide is gateway/uplink/PROFILES.md; the vocabulary (every placeholder and
formatter) is :data:`SCOPES` / :data:`FORMATTERS` below and is listed there too.

:func:`load_mapping` parses and compiles a file; every problem comes back at once as a
:class:`~gateway.core.problems.Problem` carrying the mapping file's name, the path inside it
and its line (:class:`MappingError`). A compiled :class:`Mapping` renders documents fast
(templates become closures once; no per-item parsing) and describes each message as a
JSON Schema for the reference receivers (:meth:`MessageSpec.body_schema`).

Templates
---------
Any YAML value. Strings may hold placeholders: ``"{tag.value}"`` alone keeps the value's
type (number, null...), ``"T{tag.code}"`` builds text (null -> empty). ``{{`` and ``}}``
are literal braces. A placeholder is ``{ref|formatter:arg|...}``. A mapping
``{each: <collection>, item: <template>}`` becomes a list with one item per element of the
collection (``values`` in realtime, ``tags`` / ``hazard_sources`` / ``sources`` in meta,
``sources`` / ``hazard_sources`` in heartbeat); inside it the element's scope (``tag``,
``hazard``, ``source``) is available.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alerting.states import EVENTS, STATES
from gateway.core.config import TAG_KINDS, Duration, Size
from gateway.core.models import Quality
from gateway.core.problems import Problem
from gateway.core.yamlsrc import Path_, SourceMap, YamlError, load_yaml
from gateway.uplink.ciphers import CIPHERS, KEY_BYTES, KEY_FORMATS

KINDS = ("realtime", "alarm", "meta", "heartbeat")
SHIPPED_DIR = "mappings"
_NAME = re.compile(r"[a-z0-9][a-z0-9-]*")
STATUS_WORDS = ("HH", "H", "L", "LL", "normal")
ALARM_TYPES = ("HH", "H", "L", "LL", "ROC", "STALE", "BAD", "FROZEN", "DISCRETE", "VOTE")
GRADE_NAMES = {1: "一级", 2: "二级", 3: "三级", 4: "四级"}
_K = TypeVar("_K", bound=str)


# =========================================================================== file schema


class _M(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class MatchRule(_M):
    """A field of a JSON document (dotted path) having one of the listed values."""

    field: str = Field(min_length=1)
    in_: list[Any] = Field(alias="in", min_length=1)


class TcpAck(_M):
    match: str | None = Field(description="response field equal to the same field of the sent envelope; null: no ack")
    ok: MatchRule | None = None
    timeout: Duration = 10.0


class TcpSpec(_M):
    delimiter: str = Field(min_length=1, max_length=16)
    ack: TcpAck
    max_inflight: int = Field(default=16, ge=1, le=1000)
    max_frame: Size = 1024 * 1024


class HttpSuccess(_M):
    status: list[int] = Field(default_factory=lambda: [200], min_length=1)
    body: MatchRule | None = None


class HttpSpec(_M):
    method: Literal["POST", "PUT"] = "POST"
    headers: dict[str, str] = Field(default_factory=dict)
    success: HttpSuccess = HttpSuccess()
    timeout: Duration = 10.0


class MqttPublishSpec(_M):
    topic: str = Field(min_length=1)


class EnvelopeSpec(_M):
    cipher: Literal["none", "aes-128-cbc", "aes-256-cbc", "sm4-cbc", "aes-256-gcm"]
    key: str | None = Field(default=None, description="the option holding the key")
    key_format: Literal["text", "hex", "base64"] = "text"
    iv: str | None = Field(default=None, description="'key' (IV = key) or the option holding the IV")
    iv_format: Literal["text", "hex", "base64"] = "text"
    template: Any = "{body}"


class OptionSpec(_M):
    required: bool = False
    secret: bool = False
    default: str | int | float | bool | None = None
    pattern: str | None = None
    description: str = ""


class ChecksSpec(_M):
    enterprise_code: str | None = Field(default=None, description="option holding the 11-character enterprise code")
    district_code: str | None = Field(default=None, description="option holding the 6-digit district code")
    hazard_codes: bool = False
    uscc: bool = False


class MessageFile(_M):
    service: str | None = None
    path: str = ""
    batch: int | None = Field(default=None, ge=1)
    events: list[str] | None = None
    conditions: list[str] | None = None
    body: Any


class MappingFile(_M):
    name: str = Field(min_length=1)
    description: str = ""
    tcp: TcpSpec | None = None
    http: HttpSpec | None = None
    mqtt: MqttPublishSpec | None = None
    requests: dict[Literal["meta"], MatchRule] = Field(default_factory=dict)
    envelope: EnvelopeSpec
    options: dict[str, OptionSpec] = Field(default_factory=dict)
    words: dict[str, dict[Any, Any]] = Field(default_factory=dict)
    checks: ChecksSpec = ChecksSpec()
    messages: dict[Literal["realtime", "alarm", "meta", "heartbeat"], MessageFile | list[MessageFile]]


# =========================================================================== vocabulary


@dataclass(frozen=True)
class FieldDef:
    get: Callable[[Any], Any]
    type: str  # string number integer boolean time any
    nullable: bool
    doc: str
    domain: tuple[Any, ...] | None = None
    only: frozenset[str] | None = None  # the message kinds where it has a value


@dataclass(frozen=True)
class TagInfo:
    """What the config says about a tag (meta, and the static part of realtime/alarm items)."""

    code: str
    name: str
    hazard_code: str | None
    kind: str | None
    gas: str | None
    unit: str
    range_low: float | None
    range_high: float | None
    ll: float | None
    l: float | None  # noqa: E741
    h: float | None
    hh: float | None
    source: str | None
    fields: dict[str, Any]
    maintenance: bool = False  # in test mode (meta, alarm; realtime reads the value's own flag)


@dataclass(frozen=True)
class HazardInfo:
    code: str
    name: str
    grade: int
    people: dict[str, tuple[str, str | None] | None]  # role -> (name, phone)


@dataclass(frozen=True)
class SourceInfo:
    id: str
    type: str


def _f(get: Callable[[Any], Any], type_: str, nullable: bool, doc: str, domain: tuple[Any, ...] | None = None,
       only: tuple[str, ...] | None = None) -> FieldDef:
    return FieldDef(get, type_, nullable, doc, domain, frozenset(only) if only else None)


def _num(v: float | None) -> float | None:
    return v if v is not None and math.isfinite(v) else None


def _person(role: str, i: int) -> Callable[[Any], Any]:
    def get(h: Any) -> Any:
        p = h[0].people.get(role)
        return p[i] if p else None

    return get


def _dyn(key: str) -> Callable[[Any], Any]:
    return lambda x: x[1].get(key) if x[1] is not None else None


_RT = ("realtime",)
_HB = ("heartbeat",)
# Each scope's fields. Items: tag = (TagValue | None, TagInfo); hazard = (HazardInfo, dict | None);
# source = (SourceInfo, dict | None); alarm = (AlarmEvent, status); heartbeat = Heartbeat;
# msg = dict; site = Site; options = dict (handled apart).
SCOPES: dict[str, dict[str, FieldDef]] = {
    "msg": {
        "id": _f(lambda m: m["id"], "string", False, "message id: 32 hex digits (UUID without dashes), the same "
                 "on every re-send"),
        "kind": _f(lambda m: m["kind"], "string", False, "realtime, alarm, meta or heartbeat", KINDS),
        "service": _f(lambda m: m["service"], "string", True, "the message's `service:`"),
        "time": _f(lambda m: m["time"], "time", False, "realtime: the period boundary; others: when built"),
        "part": _f(lambda m: m["part"], "integer", False, "1.. (realtime and meta are split by `batch:`)"),
        "parts": _f(lambda m: m["parts"], "integer", False, "number of parts"),
        "count": _f(lambda m: m["count"], "integer", False, "items in this part"),
    },
    "site": {
        "code": _f(lambda s: s.code, "string", False, "site.code (统一社会信用代码)"),
        "name": _f(lambda s: s.name, "string", False, "site.name"),
        "timezone": _f(lambda s: s.timezone, "string", False, "site.timezone"),
    },
    "tag": {
        "code": _f(lambda t: t[1].code, "string", False, "tag id (位号)"),
        "name": _f(lambda t: t[1].name, "string", False, "tag name (the id when unset)"),
        "hazard_code": _f(lambda t: t[1].hazard_code, "string", True, "hazard source code"),
        "kind": _f(lambda t: t[1].kind, "string", True, "tag kind", TAG_KINDS),
        "gas": _f(lambda t: t[1].gas, "string", True, "gas (Cl2, CH4...)"),
        "unit": _f(lambda t: t[1].unit, "string", False, "unit"),
        "range_low": _f(lambda t: t[1].range_low, "number", True, "range low (量程下限)"),
        "range_high": _f(lambda t: t[1].range_high, "number", True, "range high (量程上限)"),
        "ll": _f(lambda t: t[1].ll, "number", True, "LL limit (低低报)"),
        "l": _f(lambda t: t[1].l, "number", True, "L limit (低报)"),
        "h": _f(lambda t: t[1].h, "number", True, "H limit (高报)"),
        "hh": _f(lambda t: t[1].hh, "number", True, "HH limit (高高报)"),
        "source": _f(lambda t: t[1].source, "string", True, "id of the source that reads it"),
        "value": _f(lambda t: _num(t[0].value), "number", True, "latest value; null when stale/unreachable", None, _RT),
        "quality": _f(lambda t: t[0].quality, "string", False, "good bad uncertain stale comm",
                      tuple(sorted(Quality.ALL)), _RT),
        "time": _f(lambda t: t[0].ts, "time", False, "the value's source time (采集时间)", None, _RT),
        "status": _f(lambda t: t[0].alarm_status, "string", False, "worst active limit alarm", STATUS_WORDS, _RT),
        "valid": _f(lambda t: t[0].quality == Quality.GOOD and _num(t[0].value) is not None, "boolean", False,
                    "quality good and a value", (True, False), _RT),
        "maintenance": _f(lambda t: bool(t[0].maintenance if t[0] is not None else t[1].maintenance), "boolean",
                          False, "under maintenance: the tag is in test mode (bump test, calibration)",
                          (True, False)),
    },
    "alarm": {
        "id": _f(lambda a: a[0].alarm, "string", False, "alarm id <tag>/<condition>"),
        "tag": _f(lambda a: a[0].tag, "string", False, "tag id (vote id for votes)"),
        "hazard_code": _f(lambda a: a[0].hs, "string", True, "hazard source code"),
        "event": _f(lambda a: a[0].event, "string", False, "raised, cleared, acked ...", EVENTS),
        "type": _f(lambda a: _alarm_type(a[0].condition), "string", False, "HH H L LL ROC STALE ...", ALARM_TYPES),
        "condition": _f(lambda a: a[0].condition, "string", False, "hh h l ll roc stale bad frozen discrete vote"),
        "status": _f(lambda a: a[1], "string", False, "the tag's alarm status after the event", STATUS_WORDS),
        "priority": _f(lambda a: a[0].priority, "integer", False, "1 emergency .. 3", (1, 2, 3)),
        "state": _f(lambda a: a[0].state, "string", False, "ISA-18.2 state", STATES),
        "active": _f(lambda a: a[0].active, "boolean", False, "condition active", (True, False)),
        "occurrence": _f(lambda a: a[0].occurrence, "integer", True, "occurrence id"),
        "seq": _f(lambda a: a[0].seq, "integer", False, "gateway-wide event sequence"),
        "value": _f(lambda a: _num(a[0].value), "number", True, "value at the event"),
        "limit": _f(lambda a: _num(a[0].limit), "number", True, "the limit"),
        "user": _f(lambda a: a[0].user, "string", True, "who acted"),
        "message": _f(lambda a: a[0].message, "string", True, "configured message"),
        "time": _f(lambda a: a[0].ts, "time", False, "the reading's time (raised/cleared) or the action's"),
    },
    "heartbeat": {
        "time": _f(lambda h: h.ts, "time", False, "when sent"),
        "status": _f(lambda h: h.status, "string", False, "ok / degraded", ("ok", "degraded")),
        "uptime": _f(lambda h: round(h.uptime_s, 1), "number", False, "seconds"),
        "version": _f(lambda h: h.version, "string", False, "gateway version"),
        "backlog": _f(lambda h: h.backlog, "integer", False, "uplink messages waiting"),
        "active_alarms": _f(lambda h: h.active_alarms, "integer", False, "active alarms"),
        "in_use_hour": _f(lambda h: (h.in_use or {}).get("hour"), "number", True,
                          "in-use rate of the site's gas detectors (投用率), last hour"),
        "in_use_day": _f(lambda h: (h.in_use or {}).get("day"), "number", True,
                         "in-use rate of the site's gas detectors (投用率), last day"),
    },
    "hazard": {
        "code": _f(lambda h: h[0].code, "string", False, "hazard source code"),
        "name": _f(lambda h: h[0].name, "string", False, "name"),
        "grade": _f(lambda h: h[0].grade, "integer", False, "1..4", (1, 2, 3, 4)),
        "grade_name": _f(lambda h: GRADE_NAMES[h[0].grade], "string", False, "一级..四级",
                         tuple(GRADE_NAMES.values())),
        **{f"{role}{suffix}": _f(_person(role, i), "string", True, f"包保责任人 {role} {what}")
           for role in ("principal", "technical", "operational")
           for i, (suffix, what) in enumerate((("", "name"), ("_phone", "phone")))},
        "status": _f(_dyn("status"), "string", True, "red orange yellow blue",
                     ("red", "orange", "yellow", "blue"), _HB),
        "online_hour": _f(_dyn("hour"), "number", True, "online rate, last hour", None, _HB),
        "online_day": _f(_dyn("day"), "number", True, "online rate, last day", None, _HB),
        "in_use_hour": _f(_dyn("in_use_hour"), "number", True, "in-use rate of its gas detectors (投用率), last hour",
                          None, _HB),
        "in_use_day": _f(_dyn("in_use_day"), "number", True, "in-use rate of its gas detectors (投用率), last day",
                         None, _HB),
    },
    "source": {
        "id": _f(lambda s: s[0].id, "string", False, "source id"),
        "type": _f(lambda s: s[0].type, "string", False, "source type"),
        "online": _f(lambda s: bool(_dyn("online")(s)), "boolean", False, "connected", (True, False), _HB),
        "online_hour": _f(_dyn("hour"), "number", True, "online rate, last hour", None, _HB),
        "online_day": _f(_dyn("day"), "number", True, "online rate, last day", None, _HB),
    },
}
_ALARM_TYPE = {"hh": "HH", "h": "H", "l": "L", "ll": "LL"}


def _alarm_type(condition: str) -> str:
    return _ALARM_TYPE.get(condition) or condition.upper()


# per kind: scopes available everywhere in its templates, and its collections (name -> item scope)
ENV_SCOPES = {
    "realtime": ("msg", "site", "options"),
    "alarm": ("msg", "site", "options", "alarm", "tag"),
    "meta": ("msg", "site", "options"),
    "heartbeat": ("msg", "site", "options", "heartbeat"),
}
COLLECTIONS = {
    "realtime": {"values": "tag"},
    "alarm": {},
    "meta": {"tags": "tag", "hazard_sources": "hazard", "sources": "source"},
    "heartbeat": {"sources": "source", "hazard_sources": "hazard"},
}
BATCHED = {"realtime": "values", "meta": "tags"}


# =========================================================================== compiled templates


class Env:
    """What one message's templates read: scopes, collections, the body (for the envelope)."""

    __slots__ = ("body", "collections", "scopes", "tz")

    def __init__(self, tz: ZoneInfo, scopes: dict[str, Any], collections: dict[str, list[Any]]) -> None:
        self.tz = tz
        self.scopes = scopes
        self.collections = collections
        self.body: Any = None


Render = Callable[[Env, Any], Any]
Fmt = Callable[[Any, Env], Any]


@dataclass
class _Ctx:
    """Where a template is compiled: the message kind (or envelope/header/topic) and item scope."""

    kind: str
    mapping: MappingBuilder
    item_scope: str | None = None
    item_collection: str | None = None
    body_paths: list[Path_] = field(default_factory=list)
    eaches: list[tuple[Path_, str]] = field(default_factory=list)
    domains: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # narrowed by events:/conditions:


_TOKEN = re.compile(r"\{\{|\}\}|\{([^{}]*)\}|[{}]")
_REF = re.compile(r"[a-z_]+(\.[A-Za-z0-9_]+)+|body")
_JAVA_TIME = re.compile(r"yyyy|MM|dd|HH|mm|ss|SSS|[A-Za-z]+|[^A-Za-z]+")
_TIME_PARTS = {"yyyy": ("%Y", r"\d{4}"), "MM": ("%m", r"\d{2}"), "dd": ("%d", r"\d{2}"), "HH": ("%H", r"\d{2}"),
               "mm": ("%M", r"\d{2}"), "ss": ("%S", r"\d{2}"), "SSS": ("\ue000", r"\d{3}")}


def time_format(pattern: str) -> tuple[Callable[[int, ZoneInfo], str], str]:
    """A formatter of ns timestamps for a Java-style pattern (``yyyyMMddHHmmss``,
    ``yyyy-MM-dd HH:mm:ss.SSS``) and the regex of its output. ValueError for unknown letters."""
    strf, rx = "", ""
    for tok in _JAVA_TIME.findall(pattern):
        if tok in _TIME_PARTS:
            s, r = _TIME_PARTS[tok]
            strf, rx = strf + s, rx + r
        elif tok[0].isalpha():
            raise ValueError(f"unknown time pattern letters {tok!r} (use yyyy MM dd HH mm ss SSS)")
        else:
            strf, rx = strf + tok.replace("%", "%%"), rx + re.sub(r"([.^$*+?()\[\]{}|\\])", r"\\\1", tok)
    ms = "\ue000" in strf

    def fmt(ns: int, tz: ZoneInfo) -> str:
        text = datetime.fromtimestamp(ns // 1_000_000_000, tz).strftime(strf)
        return text.replace("\ue000", f"{ns // 1_000_000 % 1000:03d}") if ms else text

    return fmt, f"^{rx}$"


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


@dataclass
class _Value:
    """A compiled placeholder: the render function and what it can produce."""

    fn: Render
    type: str  # string number integer boolean time any
    nullable: bool
    domain: tuple[Any, ...] | None
    schema: dict[str, Any] | None = None  # set once formatted into something narrower than the type

    def json_schema(self) -> dict[str, Any]:
        if self.schema is not None:
            s = dict(self.schema)
        elif self.domain is not None:
            s = {"enum": list(self.domain)}
        elif self.type == "any":
            s = {}
        else:
            s = {"type": self.type}
        return _nullable(s) if self.nullable and s else s


class MappingBuilder:
    """Compiles a validated :class:`MappingFile`; collects problems with their paths."""

    def __init__(self, spec: MappingFile) -> None:
        self.spec = spec
        self.problems: list[tuple[Path_, str]] = []
        self.tag_fields_required: set[str] = set()
        self.tag_fields_optional: set[str] = set()
        self.options_used: set[str] = set()

    def err(self, path: Path_, msg: str) -> None:
        self.problems.append((path, msg))

    # ------------------------------------------------------------------ templates
    def compile(self, node: Any, path: Path_, ctx: _Ctx) -> tuple[Render, dict[str, Any]]:
        """(render, JSON Schema) of a template node."""
        if isinstance(node, dict):
            if "each" in node:
                return self._each(node, path, ctx)
            parts = [(k, *self.compile(v, (*path, k), ctx)) for k, v in node.items()]
            pairs = [(str(k), fn) for k, fn, _ in parts]

            def render_obj(env: Env, it: Any) -> dict[str, Any]:
                return {k: fn(env, it) for k, fn in pairs}

            schema = {"type": "object", "properties": {str(k): s for k, _, s in parts},
                      "required": [str(k) for k, _, _ in parts], "additionalProperties": False}
            return render_obj, schema
        if isinstance(node, list):
            items = [self.compile(v, (*path, i), ctx) for i, v in enumerate(node)]
            fns = [fn for fn, _ in items]
            return (lambda env, it: [fn(env, it) for fn in fns]), {
                "type": "array", "prefixItems": [s for _, s in items], "items": False}
        if isinstance(node, str):
            return self._string(node, path, ctx)
        return (lambda env, it, c=node: c), {"const": node}

    def _each(self, node: dict[Any, Any], path: Path_, ctx: _Ctx) -> tuple[Render, dict[str, Any]]:
        extra = set(node) - {"each", "item"}
        if extra or "item" not in node:
            self.err(path, "an each: block has exactly the keys each and item"
                     + (f" (unknown: {', '.join(map(str, sorted(extra, key=str)))})" if extra else ""))
            return (lambda env, it: []), {}
        name = node["each"]
        cols = COLLECTIONS.get(ctx.kind, {})
        if ctx.item_scope is not None:
            self.err((*path, "each"), "each: inside each: is not supported")
            return (lambda env, it: []), {}
        if name not in cols:
            avail = ", ".join(cols) or "none"
            self.err((*path, "each"), f"unknown collection {name!r} in a {ctx.kind} message (available: {avail})")
            return (lambda env, it: []), {}
        ctx.eaches.append((path, name))
        inner = _Ctx(ctx.kind, self, cols[name], name, ctx.body_paths, ctx.eaches, ctx.domains)
        item_fn, item_schema = self.compile(node["item"], (*path, "item"), inner)

        def render_each(env: Env, it: Any) -> list[Any]:
            return [item_fn(env, x) for x in env.collections[name]]

        return render_each, {"type": "array", "items": item_schema}

    def _string(self, text: str, path: Path_, ctx: _Ctx) -> tuple[Render, dict[str, Any]]:
        pieces: list[str | _Value] = []
        pos = 0
        for m in _TOKEN.finditer(text):
            if m.start() > pos:
                pieces.append(text[pos:m.start()])
            tok = m.group(0)
            pos = m.end()
            if tok in ("{{", "}}"):
                pieces.append(tok[0])
            elif tok in ("{", "}"):
                self.err(path, f"unbalanced {tok!r} in {text!r}: write {tok * 2} for a literal brace")
                return (lambda env, it: None), {}
            else:
                v = self._placeholder(m.group(1).strip(), path, ctx, whole=(m.start() == 0 and m.end() == len(text)))
                if v is None:
                    return (lambda env, it: None), {}
                pieces.append(v)
        if pos < len(text):
            pieces.append(text[pos:])
        merged: list[str | _Value] = []
        for p in pieces:
            if isinstance(p, str) and merged and isinstance(merged[-1], str):
                merged[-1] += p
            else:
                merged.append(p)
        if not merged:
            return (lambda env, it: ""), {"const": ""}
        if len(merged) == 1:
            only = merged[0]
            if isinstance(only, str):
                return (lambda env, it, c=only: c), {"const": only}
            return only.fn, only.json_schema()
        fns: list[Render] = [_const(p) if isinstance(p, str) else _text(p.fn) for p in merged]

        def render_text(env: Env, it: Any) -> str:
            return "".join([fn(env, it) for fn in fns])

        return render_text, {"type": "string"}

    def _placeholder(self, expr: str, path: Path_, ctx: _Ctx, whole: bool) -> _Value | None:
        ref, *fmts = [p.strip() for p in expr.split("|")]
        if ref == "body":
            if ctx.kind != "envelope":
                self.err(path, "{body} belongs in envelope.template only")
                return None
            if not whole or fmts:
                self.err(path, "{body} must be the whole value, without formatters")
                return None
            ctx.body_paths.append(path)
            return _Value(lambda env, it: env.body, "any", False, None, {})
        v = self._ref(ref, path, ctx)
        if v is None:
            return None
        if ref.startswith("tag.fields."):  # every tag needs it, unless a fallback is given
            fallback = any(f.partition(":")[0].strip() in ("or", "default") for f in fmts)
            (self.tag_fields_optional if fallback else self.tag_fields_required).add(ref[len("tag.fields."):])
        for f in fmts:
            name, _, arg = f.partition(":")
            maker = FORMATTERS.get(name.strip())
            if maker is None:
                self.err(path, f"unknown formatter {name!r} in {{{expr}}} (use {', '.join(FORMATTERS)})")
                return None
            try:
                v = maker(self, v, arg.strip(), path, ctx)
            except ValueError as e:
                self.err(path, f"{{{expr}}}: {e}")
                return None
        if v.type == "time":
            self.err(path, f"{{{expr}}} is a time: give its format, e.g. |time:yyyyMMddHHmmss or |epoch_ms")
            return None
        return v

    def _ref(self, ref: str, path: Path_, ctx: _Ctx) -> _Value | None:
        if not _REF.fullmatch(ref):
            self.err(path, f"bad placeholder {{{ref}}}: write scope.field, e.g. {{tag.code}}")
            return None
        scope, _, name = ref.partition(".")
        if scope == "options":
            return self._option(name, path, ctx)
        if ctx.kind in ("header", "topic", "envelope"):
            allowed: tuple[str, ...] = ("msg", "site") if ctx.kind != "header" else ("site",)
        else:
            allowed = ENV_SCOPES[ctx.kind]
        in_item = ctx.item_scope == scope
        if not in_item and scope not in allowed:
            where = ctx.kind if ctx.kind in KINDS else f"{ctx.kind} template"
            hint = ""
            for col, sc in COLLECTIONS.get(ctx.kind, {}).items():
                if sc == scope:
                    hint = f" (inside each: {col})"
                    break
            scopes = [*sorted({*allowed, *COLLECTIONS.get(ctx.kind, {}).values()} - {"options"}), "options"]
            self.err(path, f"unknown placeholder {{{ref}}}: no {scope}.* in a {where}{hint}; "
                           f"scopes here: {', '.join(scopes)}")
            return None
        if scope == "tag" and name.startswith("fields."):
            key = name[len("fields."):]
            if not key or "." in key:
                self.err(path, f"bad placeholder {{{ref}}}: tag.fields.<name>")
                return None
            get: Callable[[Any], Any] = lambda t: t[1].fields.get(key)  # noqa: E731
            return _Value(_item(get) if in_item else _env(scope, get), "any", True, None, {})
        fd = SCOPES.get(scope, {}).get(name)
        if fd is None:
            names = ", ".join(sorted(SCOPES.get(scope, {})) + (["fields.<name>"] if scope == "tag" else []))
            self.err(path, f"unknown placeholder {{{ref}}}: {scope}.* has {names}")
            return None
        if fd.only is not None and ctx.kind not in fd.only:
            self.err(path, f"{{{ref}}} has a value only in {', '.join(sorted(fd.only))} messages")
            return None
        fn = _item(fd.get) if in_item else _env(scope, fd.get)
        schema = {"type": "string", "pattern": "^[0-9a-f]{32}$"} if ref == "msg.id" else None
        return _Value(fn, fd.type, fd.nullable, ctx.domains.get(ref, fd.domain), schema)

    def _option(self, name: str, path: Path_, ctx: _Ctx) -> _Value | None:
        spec = self.spec.options.get(name)
        if spec is None:
            declared = ", ".join(sorted(self.spec.options)) or "none"
            self.err(path, f"unknown placeholder {{options.{name}}}: declare it under options: (declared: {declared})")
            return None
        if spec.secret and ctx.kind != "header":
            self.err(path, f"options.{name} is secret: only http.headers may use it (message templates are "
                           f"stored in the spool and the envelope travels unencrypted)")
            return None
        self.options_used.add(name)
        nullable = not spec.required and spec.default is None

        def get(env: Env, it: Any, n: str = name) -> Any:
            return env.scopes["options"].get(n)

        return _Value(get, "any", nullable, None, {})

    # ------------------------------------------------------------------ words
    def words(self, table: str, v: _Value, path: Path_) -> tuple[dict[Any, Any], Any]:
        words = self.spec.words.get(table)
        if words is None:
            raise ValueError(f"unknown words table {table!r} (tables: {', '.join(self.spec.words) or 'none'})")
        default = words.get("*", _MISSING)
        if v.domain is not None and default is _MISSING:
            missing = [d for d in v.domain if d not in words and str(d) not in words]
            if missing:
                raise ValueError(f"words.{table} has no entry for {', '.join(map(str, missing))} (add them or '*')")
        return words, default


_MISSING = object()


def _const(c: Any) -> Render:
    return lambda env, it: c


def _item(get: Callable[[Any], Any]) -> Render:
    return lambda env, it: get(it)


def _env(scope: str, get: Callable[[Any], Any]) -> Render:
    return lambda env, it: get(env.scopes[scope])


def _word(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _text(fn: Render) -> Render:
    return lambda env, it: _word(fn(env, it))


# --------------------------------------------------------------------------- formatters


def _fmt_time(b: MappingBuilder, v: _Value, arg: str, path: Path_, ctx: _Ctx) -> _Value:
    if v.type != "time":
        raise ValueError("time: formats a time (msg.time, tag.time, alarm.time, heartbeat.time)")
    fmt, rx = time_format(arg or "yyyyMMddHHmmss")
    src = v.fn

    def render(env: Env, it: Any) -> str:
        return fmt(src(env, it), env.tz)

    return _Value(render, "string", False, None, {"type": "string", "pattern": rx})


def _fmt_epoch(div: int) -> Callable[..., _Value]:
    def make(b: MappingBuilder, v: _Value, arg: str, path: Path_, ctx: _Ctx) -> _Value:
        if v.type != "time":
            raise ValueError("epoch_ms / epoch_s format a time")
        src = v.fn
        return _Value(lambda env, it: src(env, it) // div, "integer", False, None)

    return make


def _need_number(v: _Value, name: str) -> None:
    if v.type not in ("number", "integer", "any"):
        raise ValueError(f"{name} formats a number, not a {v.type}")


def _digits(arg: str, name: str) -> int:
    if not arg.isdigit() or int(arg) > 12:
        raise ValueError(f"{name} needs a number of decimals 0..12, e.g. {name}:2")
    return int(arg)


def _fmt_round(b: MappingBuilder, v: _Value, arg: str, path: Path_, ctx: _Ctx) -> _Value:
    _need_number(v, "round")
    n, src = _digits(arg, "round"), v.fn

    def render(env: Env, it: Any) -> Any:
        x = src(env, it)
        return None if x is None else round(float(x), n)

    return _Value(render, "number", v.nullable, None)


def _fmt_fixed(b: MappingBuilder, v: _Value, arg: str, path: Path_, ctx: _Ctx) -> _Value:
    _need_number(v, "fixed")
    n, src = _digits(arg, "fixed"), v.fn
    f = f"{{:.{n}f}}"

    def render(env: Env, it: Any) -> Any:
        x = src(env, it)
        return None if x is None else f.format(float(x))

    return _Value(render, "string", v.nullable, None, {"type": "string", "pattern": r"^-?\d+(\.\d+)?$"})


def _fmt_int(b: MappingBuilder, v: _Value, arg: str, path: Path_, ctx: _Ctx) -> _Value:
    if v.type not in ("number", "integer", "boolean", "any"):
        raise ValueError(f"int formats a number or boolean, not a {v.type}")
    src = v.fn

    def render(env: Env, it: Any) -> Any:
        x = src(env, it)
        return None if x is None else round(float(x))

    domain = tuple(int(d) for d in v.domain) if v.type == "boolean" and v.domain else None
    return _Value(render, "integer", v.nullable, domain)


def _fmt_str(b: MappingBuilder, v: _Value, arg: str, path: Path_, ctx: _Ctx) -> _Value:
    src, text = v.fn, _text(v.fn)

    def render(env: Env, it: Any) -> Any:
        return None if src(env, it) is None else text(env, it)

    domain = tuple(_word(d) for d in v.domain) if v.domain else None
    return _Value(render, "string", v.nullable, domain)


def _fmt_map(b: MappingBuilder, v: _Value, arg: str, path: Path_, ctx: _Ctx) -> _Value:
    words, default = b.words(arg, v, path)
    src = v.fn
    lookup = {**{str(k): w for k, w in words.items()}, **words}

    def render(env: Env, it: Any) -> Any:
        x = src(env, it)
        if x is None and None not in words:
            return None
        w = lookup.get(x, _MISSING)
        if w is _MISSING:
            w = lookup.get(str(x), default)
        if w is _MISSING:
            raise ValueError(f"words.{arg} has no entry for {x!r}")
        return w

    values = [w for k, w in words.items()]
    return _Value(render, "any", v.nullable and None not in words, tuple(dict.fromkeys(values)))


def _fmt_default(b: MappingBuilder, v: _Value, arg: str, path: Path_, ctx: _Ctx) -> _Value:
    lit = yaml.safe_load(arg) if arg else ""
    if isinstance(lit, dict | list):
        raise ValueError("default: takes a scalar")
    src = v.fn

    def render(env: Env, it: Any) -> Any:
        x = src(env, it)
        return lit if x is None else x

    return _Value(render, v.type, False, None, {"anyOf": [v.json_schema(), {"const": lit}]})


def _fmt_or(b: MappingBuilder, v: _Value, arg: str, path: Path_, ctx: _Ctx) -> _Value:
    other = b._ref(arg, path, ctx)
    if other is None:
        raise ValueError(f"or: needs a placeholder reference, got {arg!r}")
    src, alt = v.fn, other.fn

    def render(env: Env, it: Any) -> Any:
        x = src(env, it)
        return alt(env, it) if x is None else x

    out = _Value(render, "any", other.nullable, None, {"anyOf": [v.json_schema(), other.json_schema()]})
    if other.type == "time":
        raise ValueError("or: with a time is not supported")
    return out


FORMATTERS: dict[str, Callable[[MappingBuilder, _Value, str, Path_, _Ctx], _Value]] = {
    "time": _fmt_time,
    "epoch_ms": _fmt_epoch(1_000_000),
    "epoch_s": _fmt_epoch(1_000_000_000),
    "round": _fmt_round,
    "fixed": _fmt_fixed,
    "int": _fmt_int,
    "str": _fmt_str,
    "map": _fmt_map,
    "default": _fmt_default,
    "or": _fmt_or,
}


# =========================================================================== compiled mapping


@dataclass
class MessageSpec:
    """One message of a kind (``meta`` may have several: one per platform table)."""

    kind: str
    index: int
    service: str | None
    path: str
    batch: int | None
    events: frozenset[str] | None
    conditions: frozenset[str] | None
    body: Render
    schema: dict[str, Any]
    batched: str | None  # the collection split by ``batch`` (values / tags), if the body lists it

    def body_schema(self) -> dict[str, Any]:
        """JSON Schema of the plain body (what the reference receivers validate)."""
        return self.schema


@dataclass
class Mapping:
    """A compiled mapping file."""

    name: str
    file: str
    spec: MappingFile
    messages: dict[str, list[MessageSpec]]
    envelope: Render
    envelope_schema: dict[str, Any]
    body_path: Path_ | None  # where {body} is in the envelope; None: the body is the whole message
    headers: dict[str, Render]
    topic: Render | None
    tag_fields_required: frozenset[str]
    options_used: frozenset[str]

    @property
    def tcp(self) -> TcpSpec | None:
        return self.spec.tcp

    @property
    def http(self) -> HttpSpec | None:
        return self.spec.http

    @property
    def mqtt(self) -> MqttPublishSpec | None:
        return self.spec.mqtt

    def schemes(self) -> list[str]:
        out: list[str] = []
        for section, names in (("tcp", ("tcp", "tls")), ("http", ("http", "https")), ("mqtt", ("mqtt", "mqtts"))):
            if getattr(self.spec, section) is not None:
                out += names
        return out

    def identify(self, envelope: dict[str, Any], path: str = "") -> MessageSpec | None:
        """Which message an envelope from this mapping is (for receivers): by service and path."""
        service = self.service_of(envelope)
        for specs in self.messages.values():
            for m in specs:
                if m.path.rstrip("/") == path.rstrip("/") and (service is None or m.service == service):
                    return m
        return None

    def id_of(self, envelope: Any, body: Any, spec: MessageSpec) -> str | None:
        """The message id ({msg.id}) of a received ``spec`` message: a top-level field of the
        envelope, else of the body (for receivers deduplicating re-sent messages)."""
        tpl = self.spec.envelope.template
        if isinstance(tpl, dict) and isinstance(envelope, dict):
            for k, v in tpl.items():
                if v == "{msg.id}":
                    return envelope.get(k)
        raw = self.spec.messages[spec.kind]  # type: ignore[index]
        entry = raw[spec.index] if isinstance(raw, list) else raw
        if isinstance(entry.body, dict) and isinstance(body, dict):
            for k, v in entry.body.items():
                if v == "{msg.id}":
                    return body.get(k)
        return None

    def uses(self, kind: str, placeholder: str) -> bool:
        """Does a ``kind`` message template use ``placeholder`` (e.g. ``tag.maintenance``)?"""
        raw = self.spec.messages.get(kind)  # type: ignore[call-overload]
        entries = raw if isinstance(raw, list) else [raw] if raw is not None else []
        return any(p.split("|")[0].strip() == placeholder for e in entries for p in iter_placeholders(e.body))

    def service_of(self, envelope: dict[str, Any]) -> str | None:
        """The value of the envelope field whose template is ``{msg.service}``, if any."""
        tpl = self.spec.envelope.template
        if isinstance(tpl, dict):
            for k, v in tpl.items():
                if v == "{msg.service}":
                    got = envelope.get(k)
                    return got if isinstance(got, str) else None
        return None


def _read_path(doc: Any, path: Path_) -> Any:
    for p in path:
        doc = doc[p]
    return doc


def get_path(doc: Any, path: Path_) -> Any:
    return _read_path(doc, path)


def set_path(doc: Any, path: Path_, value: Any) -> Any:
    """``doc`` with the value at ``path`` replaced (in place; an empty path returns ``value``)."""
    if not path:
        return value
    _read_path(doc, path[:-1])[path[-1]] = value
    return doc


def dotted(doc: Any, path: str) -> Any:
    """``a.b.c`` of a JSON document; None when absent."""
    for p in path.split("."):
        if not isinstance(doc, dict):
            return None
        doc = doc.get(p)
    return doc


def _same(a: Any, b: Any) -> bool:
    """JSON equality: 200 == 200.0, but "0" != 0 and true != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


def matches(rule: MatchRule, doc: Any) -> bool:
    v = dotted(doc, rule.field)
    return any(_same(v, x) for x in rule.in_)


def request_kind(rules: dict[_K, MatchRule], doc: Any) -> _K | None:
    """Which of the mapping's ``requests:`` a document from the platform is (None: none)."""
    for kind, rule in rules.items():
        if matches(rule, doc):
            return kind
    return None


def compile_mapping(spec: MappingFile, file: str) -> tuple[Mapping | None, list[tuple[Path_, str]]]:
    b = MappingBuilder(spec)
    messages: dict[str, list[MessageSpec]] = {}
    seen_routes: dict[tuple[str | None, str], Path_] = {}
    for kind, entry in spec.messages.items():
        entries = entry if isinstance(entry, list) else [entry]
        for i, m in enumerate(entries):
            base: Path_ = ("messages", kind, i) if isinstance(entry, list) else ("messages", kind)
            ctx = _Ctx(kind, b)
            if m.events is not None:
                ctx.domains["alarm.event"] = tuple(e for e in EVENTS if e in m.events)
            if m.conditions is not None:
                ctx.domains["alarm.condition"] = tuple(m.conditions)
                ctx.domains["alarm.type"] = tuple(_alarm_type(c) for c in m.conditions)
            body, schema = b.compile(m.body, (*base, "body"), ctx)
            batched = BATCHED.get(kind)
            lists = [name for _, name in ctx.eaches if name == batched]
            if len(lists) > 1:
                b.err((*base, "body"), f"each: {batched} may appear once in a {kind} body")
            if kind == "realtime" and not lists:
                b.err((*base, "body"), "a realtime body must list the values: {each: values, item: {...}}")
            if m.batch is not None and not lists:
                b.err((*base, "batch"), f"batch: splits each: {batched}, which this body does not have"
                      if batched else f"batch: does not apply to {kind} messages")
            if kind != "alarm" and (m.events is not None or m.conditions is not None):
                b.err(base, "events: and conditions: apply to alarm messages only")
            for key, allowed in (("events", EVENTS), ("conditions", (*(c.lower() for c in ALARM_TYPES),))):
                vals = getattr(m, key)
                bad = [v for v in vals or () if v not in allowed]
                if bad:
                    b.err((*base, key), f"unknown {key} {', '.join(bad)} (use {', '.join(allowed)})")
            if any(c in m.path for c in "\t\n\r") or (m.path and not m.path.startswith("/")):
                b.err((*base, "path"), "path must start with / (it is appended to uplink.url)")
            route = (m.service, m.path.rstrip("/"))
            if route in seen_routes:
                b.err(base, "two messages with the same service and path: the platform cannot tell them apart")
            seen_routes[route] = base
            messages.setdefault(kind, []).append(MessageSpec(
                kind, i, m.service, m.path, m.batch,
                frozenset(m.events) if m.events is not None else None,
                frozenset(m.conditions) if m.conditions is not None else None,
                body, schema, batched if lists else None))
    env_ctx = _Ctx("envelope", b)
    envelope, env_schema = b.compile(spec.envelope.template, ("envelope", "template"), env_ctx)
    body_path: Path_ | None = None
    if len(env_ctx.body_paths) != 1:
        b.err(("envelope", "template"), "the envelope template must hold {body} exactly once"
              f" (found {len(env_ctx.body_paths)})")
    else:
        body_path = env_ctx.body_paths[0][2:]
    headers: dict[str, Render] = {}
    if spec.http is not None:
        for k, v in spec.http.headers.items():
            if not re.fullmatch(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+", k):
                b.err(("http", "headers", k), f"{k!r} is not a valid HTTP header name")
            headers[k] = _text(b.compile(v, ("http", "headers", k), _Ctx("header", b))[0])
    topic = None
    if spec.mqtt is not None:
        topic = _text(b.compile(spec.mqtt.topic, ("mqtt", "topic"), _Ctx("topic", b))[0])
    _check_envelope(b, spec)
    _check_transport(b, spec, body_path)
    for req, rule in spec.requests.items():
        if spec.tcp is None and spec.http is None:
            b.err(("requests", req), "requests: need a tcp: or http: section (frames or responses to read)")
        del rule
    if spec.checks.enterprise_code is not None and spec.checks.enterprise_code not in spec.options:
        b.err(("checks", "enterprise_code"), f"checks.enterprise_code names an undeclared option "
              f"{spec.checks.enterprise_code!r}")
    if spec.checks.district_code is not None and spec.checks.district_code not in spec.options:
        b.err(("checks", "district_code"), f"checks.district_code names an undeclared option "
              f"{spec.checks.district_code!r}")
    if spec.checks.hazard_codes and spec.checks.enterprise_code is None:
        b.err(("checks", "hazard_codes"), "checks.hazard_codes needs checks.enterprise_code")
    for name, o in spec.options.items():
        if o.pattern is not None:
            try:
                re.compile(o.pattern)
            except re.error as e:
                b.err(("options", name, "pattern"), f"bad regular expression: {e}")
    if b.problems:
        return None, b.problems
    return Mapping(spec.name, file, spec, messages, envelope, env_schema, body_path, headers, topic,
                   frozenset(b.tag_fields_required), frozenset(b.options_used)), []


def _check_envelope(b: MappingBuilder, spec: MappingFile) -> None:
    env = spec.envelope
    if env.cipher == "none":
        for key in ("key", "iv"):
            if getattr(env, key) is not None:
                b.err(("envelope", key), f"cipher none takes no {key}")
        return
    if env.key is None:
        b.err(("envelope", "key"), f"cipher {env.cipher} needs key: <the option holding the key>")
    elif env.key not in spec.options:
        b.err(("envelope", "key"), f"key: names the undeclared option {env.key!r} (declare it under options:)")
    elif not spec.options[env.key].secret:
        b.err(("options", env.key), f"option {env.key!r} holds the key: declare it secret: true")
    if env.cipher == "aes-256-gcm":
        if env.iv is not None:
            b.err(("envelope", "iv"), "aes-256-gcm takes no iv (a random nonce is sent with each body)")
    elif env.iv is None:
        b.err(("envelope", "iv"), f"{env.cipher} needs iv: key (IV = key) or the option holding the IV")
    elif env.iv == "key":
        if KEY_BYTES[env.cipher] != 16:
            b.err(("envelope", "iv"), f"iv: key needs a 16-byte key; {env.cipher} keys are {KEY_BYTES[env.cipher]}")
    elif env.iv not in spec.options:
        b.err(("envelope", "iv"), f"iv: names the undeclared option {env.iv!r} (declare it under options:)")
    elif not spec.options[env.iv].secret:
        b.err(("options", env.iv), f"option {env.iv!r} holds the IV: declare it secret: true")


# characters that appear in JSON text outside strings, and in Base64
_JSON_OUTSIDE = set('{}[]:," \t\r\n+-.0123456789eEtrufalsn\\')
_BASE64 = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/=")


def escape_char(delimiter: str) -> str | None:
    """A character of ``delimiter`` that can appear in a JSON frame only inside strings (so it
    can be written as ``\\uXXXX`` there) and never in Base64; None when there is none."""
    for c in delimiter:
        if c not in _JSON_OUTSIDE and c not in _BASE64 and c != '"' and ord(c) < 0x10000 and c.isprintable():
            return c
    if "\n" in delimiter:  # compact JSON has no newline outside strings, and json escapes it inside
        return "\n"
    return None


def _check_transport(b: MappingBuilder, spec: MappingFile, body_path: Path_ | None) -> None:
    if spec.tcp is None and spec.http is None and spec.mqtt is None:
        b.err((), "the mapping needs a transport section: tcp:, http: or mqtt:")
    tcp = spec.tcp
    if tcp is not None:
        if escape_char(tcp.delimiter) is None:
            b.err(("tcp", "delimiter"), "the delimiter needs a character that cannot occur in the JSON frame "
                  "outside strings nor in Base64 (e.g. @@, ##, a newline)")
        match = tcp.ack.match
        if match is not None:
            tpl = spec.envelope.template
            if not isinstance(tpl, dict) or tpl.get(match) != "{msg.id}":
                b.err(("tcp", "ack", "match"), f"ack.match {match!r} must be an envelope field whose template is "
                      "{msg.id} (the id the platform answers with)")
    if spec.http is not None:
        for s in spec.http.success.status:
            if not 100 <= s <= 599:
                b.err(("http", "success", "status"), f"{s} is not an HTTP status")


# =========================================================================== loading


class MappingError(Exception):
    """A mapping that cannot be used; ``problems`` carry the file, path and line."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        super().__init__("\n".join(p.format(p.file or "mapping") for p in problems))


def shipped() -> list[str]:
    """Names of the mappings shipped in gateway/uplink/mappings/."""
    folder = resources.files("gateway.uplink").joinpath(SHIPPED_DIR)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def mapping_file(ref: str) -> Path:
    """The file of ``uplink.mapping``: a shipped name, else a path. FileNotFoundError if neither."""
    if _NAME.fullmatch(ref) and ref in shipped():
        return Path(str(resources.files("gateway.uplink").joinpath(SHIPPED_DIR, f"{ref}.yaml")))
    p = Path(ref).expanduser()
    if not p.is_file():
        names = ", ".join(shipped())
        raise FileNotFoundError(f"uplink.mapping {ref!r} is neither a shipped mapping ({names}) nor a readable file")
    return p


def load_mapping(ref: str) -> Mapping:
    """Load and compile a mapping (a shipped name or a path). MappingError lists every problem
    (file, path, line); FileNotFoundError when there is no such mapping."""
    path = mapping_file(ref)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise FileNotFoundError(f"cannot read uplink mapping {str(path)!r}: {e}") from None
    return parse_mapping(text, str(path))


def parse_mapping(text: str, file: str = "<mapping>") -> Mapping:
    try:
        data, smap, issues = load_yaml(text, {})
    except YamlError as e:
        raise MappingError([Problem((), e.line, f"YAML syntax error: {e}", file=file)]) from None
    problems = [Problem(i.path, i.line, i.message, file=file) for i in issues]
    if not isinstance(data, dict):
        problems.append(Problem((), 1, "a mapping file is a YAML mapping (name:, envelope:, messages: ...)",
                                file=file))
        raise MappingError(problems)
    try:
        spec = MappingFile.model_validate(data)
    except ValidationError as e:
        problems += _pydantic(data, e, smap, file)
        raise MappingError(problems) from None
    mapping, found = compile_mapping(spec, file)
    problems += [Problem(p, smap.line_of(p), m, file=file) for p, m in found]
    if problems or mapping is None:
        raise MappingError(sorted(problems, key=lambda p: p.line or 0))
    return mapping


def _pydantic(data: Any, err: ValidationError, smap: SourceMap, file: str) -> list[Problem]:
    out = []
    for e in err.errors(include_url=False):
        path: list[str | int] = []
        cur = data
        loc = tuple(e["loc"])
        for i, part in enumerate(loc):
            if isinstance(cur, dict) and part in cur:
                path.append(part)
                cur = cur[part]
            elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
                path.append(part)
                cur = cur[part]
            elif isinstance(cur, dict | list) and i < len(loc) - 1:
                continue  # a union member name
            else:
                path.append(part)
                cur = None
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = f"unknown key {path[-1]!r}" if path else "unknown key"
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        out.append(Problem(tuple(path), smap.line_of(tuple(path)), msg, file=file))
    return out


def iter_placeholders(node: Any) -> Iterator[str]:
    """Every placeholder expression in a template (for docs and tools)."""
    if isinstance(node, dict):
        for v in node.values():
            yield from iter_placeholders(v)
    elif isinstance(node, list):
        for v in node:
            yield from iter_placeholders(v)
    elif isinstance(node, str):
        for m in _TOKEN.finditer(node):
            if m.group(1) is not None:
                yield m.group(1).strip()


__all__ = ["CIPHERS", "FORMATTERS", "KEY_FORMATS", "KINDS", "SCOPES", "Env", "HazardInfo", "Mapping",
           "MappingError", "MessageSpec", "SourceInfo", "TagInfo", "load_mapping", "parse_mapping", "shipped"]
