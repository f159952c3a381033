"""MQTT payload decoders: bytes -> (readings, problems). Pure: no I/O, no metrics, no logging.

Formats (a subscription's ``format``; ``sparkplug_b`` is in :mod:`adapters.mqtt.sparkplug`):

* ``json``: one JSON document per message; each configured point picks its value (and
  optionally timestamp and quality) with a JSON path (:mod:`adapters.mqtt.jsonpath`),
  possibly by name (``$.metrics[?(@.name=='CO')].value``). ``value = raw * scale + offset``.
  With named topic levels (``plant/{device}/telemetry``) only the points whose ``match``
  equals the message's levels are read.
* ``native``: a JSON array of ``{"tag": "PT-201", "v": 1.2, "ts": 1732300000123, "q": "good"}``
  entries (``ts`` and ``q`` optional). Tags must exist in the site's tag table.
* ``records``: every record that ``each`` selects (``$.data[*]``) is one reading: its tag from
  ``tag_path`` (a tag id, or a point's ``key``), value from ``value_path``; or, with
  ``values_path``, every member of that object is ``tag: value`` (ThingsBoard). Unknown
  tags are counted (``unknown_tag``), the other records still count.

A decoder never raises on input: it returns the readings it could make and one
:class:`Problem` per rejected message or point, with a stable ``reason`` label (the
``reason`` of ``hazardgw_decode_errors``). A bad point never costs the other points of
the same message.

Value rules: JSON numbers; ``true``/``false`` -> 1.0/0.0; strings that are plain decimal
numbers (``"12.5"``, ``" -3e2 "``) are accepted, because many PLC gateways send numbers
as strings; with ``decimal_comma: true`` also ``"12,5"``; a number followed by a unit
(``"12.5 ppm"``, ``"0.6MPa"``) when the unit equals the tag's unit after
:func:`gateway.core.units.normalize_unit` (else the reading is ``bad``, value-less, and
counted ``unit_mismatch``); a word of the subscription's ``states`` (case-insensitive).
Anything else (other strings, null, objects, arrays) is ``not_numeric``. NaN, ±Infinity
(as JSON literals, strings, or numbers too large for a float, like ``1e400``) are
``not_finite``.

Quality: ``good``; ``uncertain`` when the value is outside the tag's ``range``
(inclusive); if the payload gives a quality (``quality_path`` / ``"q"``) that the
subscription's ``quality_map`` names (``{192: good, 0: bad, OK: good}``) or that is one
of ``good``, ``uncertain``, ``stale``, ``comm``, ``bad`` (any case), the *worse* of the two
is used. An unrecognised quality keeps the reading as ``uncertain`` and is counted as
``bad_quality``; a missing quality field is simply good.

Timestamps: see :mod:`adapters.mqtt.timestamps` (local times need the source's
``timezone``). Without a timestamp (no ``ts_path`` / no ``"ts"``) the reading gets the
time the message was received. A *retained* message without a source timestamp is
rejected (``retained_no_ts``): the broker may have held it for hours, and stamping it
with the receive time would present an old value as fresh.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Final, NamedTuple, Protocol

import orjson

from adapters.mqtt.config import MqttSubscription, quality_key
from adapters.mqtt.jsonpath import (
    Path,
    PathAmbiguous,
    PathMissing,
    compile_path,
    expand,
    format_path,
    has_filter,
    resolve,
)
from adapters.mqtt.timestamps import BadTimestamp, LocalTime, fast_epoch_range, to_ns
from gateway.core.config import Tag
from gateway.core.models import Quality, Reading
from gateway.core.units import normalize_unit


class Reason:
    """Stable ``reason`` label values of ``hazardgw_decode_errors`` (documented in README.md)."""

    # the whole message is rejected
    OVERSIZED: Final = "oversized"
    EMPTY: Final = "empty"
    NOT_UTF8: Final = "not_utf8"
    NOT_JSON: Final = "not_json"
    TOO_DEEP: Final = "too_deep"
    NOT_ARRAY: Final = "not_array"
    NOT_PROTOBUF: Final = "not_protobuf"
    UNMATCHED_TOPIC: Final = "unmatched_topic"
    NO_RECORDS: Final = "no_records"
    # one point / entry is rejected
    BAD_ENTRY: Final = "bad_entry"
    UNKNOWN_TAG: Final = "unknown_tag"
    MISSING_PATH: Final = "missing_path"
    AMBIGUOUS_PATH: Final = "ambiguous_path"
    NOT_NUMERIC: Final = "not_numeric"
    NOT_FINITE: Final = "not_finite"
    MISSING_TS: Final = "missing_ts"
    BAD_TS: Final = "bad_ts"
    NAIVE_TS: Final = "naive_ts"
    RETAINED_NO_TS: Final = "retained_no_ts"
    UNKNOWN_ALIAS: Final = "unknown_alias"
    UNSUPPORTED_TYPE: Final = "unsupported_type"
    # the reading is kept as bad (value-less)
    UNIT_MISMATCH: Final = "unit_mismatch"
    # counted, but the reading is kept (as uncertain)
    BAD_QUALITY: Final = "bad_quality"
    SEQ_GAP: Final = "seq_gap"
    # sparkplug_b bookkeeping
    BAD_TOPIC: Final = "bad_topic"
    STALE_DEATH: Final = "stale_death"

    ALL: Final = frozenset({
        OVERSIZED, EMPTY, NOT_UTF8, NOT_JSON, TOO_DEEP, NOT_ARRAY, NOT_PROTOBUF, UNMATCHED_TOPIC, NO_RECORDS,
        BAD_ENTRY, UNKNOWN_TAG, MISSING_PATH, AMBIGUOUS_PATH, NOT_NUMERIC, NOT_FINITE, MISSING_TS, BAD_TS,
        NAIVE_TS, RETAINED_NO_TS, UNKNOWN_ALIAS, UNSUPPORTED_TYPE, UNIT_MISMATCH, BAD_QUALITY, SEQ_GAP,
        BAD_TOPIC, STALE_DEATH,
    })


class Problem(NamedTuple):
    reason: str
    detail: str  # for the (rate-limited) log line; never a metric label


class Decoder(Protocol):
    def decode(self, payload: bytes, recv_ns: int, retained: bool = False,
               topic: str = "") -> tuple[list[Reading], Sequence[Problem]]:
        """Readings made from one message, and what was rejected."""


class _Reject(Exception):  # internal control flow; never escapes this module
    __slots__ = ("detail", "reason")

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail


class _Bad(_Reject):
    """The point is read, but its value cannot be trusted: a ``bad`` reading without a value."""


_fast_loads: Final = orjson.loads
_FastError: Final = orjson.JSONDecodeError

# tuple.__new__(Reading, (...)) makes the same Reading as Reading(...) at half the cost (the
# NamedTuple's __new__ is a Python function): used where a decoder makes one per reading
_new_tuple: Final = tuple.__new__

_QUALITY_RANK: Final = {Quality.GOOD: 0, Quality.UNCERTAIN: 1, Quality.STALE: 2, Quality.COMM: 3, Quality.BAD: 4}
_NOT_FINITE_WORDS: Final = frozenset({"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity",
                                      "-infinity"})
# a plain decimal number: no "1_000", no non-ASCII digits, no hex (float() would take the first two)
_NUM_STR: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_NUM_COMMA: Final = re.compile(r"[+-]?(?:\d+,?\d*|,\d+)(?:[eE][+-]?\d+)?", re.ASCII)
# a number and a unit: "12.5 ppm", "0.6MPa", "20 %LEL", "3 mg/m³" (the unit starts with a non-digit)
_NUM_UNIT: Final = re.compile(
    r"([+-]?(?:\d+[.,]?\d*|[.,]\d+)(?:[eE][+-]?\d+)?)\s*"
    r"((?:[A-Za-z%\u00b0\u00b5\u03bc\u2030]|[^\x00-\x7f])[A-Za-z0-9%/.\-_^ \u00b0\u00b2\u00b3\u00b5\u03bc\u00b7\u2030"
    r"\u0080-\uffff]{0,31})",
    re.ASCII,
)
_NONE: Final[tuple[Problem, ...]] = ()


# --------------------------------------------------------------------------- building blocks


def load(payload: bytes, max_payload: int) -> tuple[Any, Problem | None]:
    """Parse a message: size check first, then strict UTF-8, then JSON.

    orjson first (issue 23: ~2.5x the stdlib's speed, a tenth of the per-reading cost of a
    bulk message); whatever it refuses (invalid UTF-8, NaN/Infinity literals, numbers beyond
    a float, lone surrogates, nesting deeper than 1,024, malformed JSON) goes to the stdlib
    as before, which decides and names the problem. Where both accept a document they give
    the same values, except that integers beyond 64 bits come out as floats rounded the same
    way ``float()`` rounds them (a value or timestamp ends up the same either way)."""
    n = len(payload)
    if n > max_payload:
        return None, Problem(Reason.OVERSIZED, f"{n} bytes > max_payload {max_payload}")
    if n == 0:
        return None, Problem(Reason.EMPTY, "empty payload")
    try:
        return _fast_loads(payload), None
    except _FastError:
        pass
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError as e:
        return None, Problem(Reason.NOT_UTF8, f"not UTF-8 (binary?) at byte {e.start}")
    try:
        return json.loads(text), None
    except RecursionError:
        return None, Problem(Reason.TOO_DEEP, "JSON nested too deeply")
    except ValueError as e:  # JSONDecodeError, and int-digit-limit errors
        return None, Problem(Reason.NOT_JSON, f"not JSON: {str(e)[:120]}")


def to_value(x: Any) -> float:
    """A JSON value -> float, or raise ``_Reject`` (``not_numeric`` / ``not_finite``): the rules
    without states, decimal comma or units (see :class:`ValueRules`)."""
    return _PLAIN.value(x, None)


_JSON_TYPES: Final[dict[type, str]] = {dict: "object", list: "array", str: "string"}


def _json_type(x: Any) -> str:
    return _JSON_TYPES.get(type(x), type(x).__name__)


class ValueRules:
    """A subscription's value rules: plain numbers always; ``states``, ``decimal_comma`` and
    numbers with units when configured / when the tag has a unit."""

    __slots__ = ("decimal_comma", "states")

    def __init__(self, states: Mapping[str, float] | None = None, decimal_comma: bool = False) -> None:
        self.states = dict(states or {})
        self.decimal_comma = decimal_comma

    def value(self, x: Any, unit: str | None) -> float:
        """``unit``: the tag's normalised unit (``""``: none), or None when unknown (native tags
        not in the table never get here)."""
        t = type(x)
        if t is float:
            if math.isfinite(x):
                return x
            raise _Reject(Reason.NOT_FINITE, f"value {x!r} is not finite")
        if t is int:
            try:
                return float(x)
            except OverflowError:
                raise _Reject(Reason.NOT_FINITE, "integer value too large for a float") from None
        if t is bool:
            return 1.0 if x else 0.0
        if t is str:
            s = x.strip()
            if _NUM_STR.fullmatch(s):
                return _finite(float(s), x)
            return self._string(s, x, unit)
        if x is None:
            raise _Reject(Reason.NOT_NUMERIC, "value is null")
        raise _Reject(Reason.NOT_NUMERIC, f"value is a JSON {_json_type(x)}, not a number")

    def _string(self, s: str, x: str, unit: str | None) -> float:
        if self.states:
            v = self.states.get(s.casefold())
            if v is not None:
                return v
        if self.decimal_comma and _NUM_COMMA.fullmatch(s):
            return _finite(float(s.replace(",", ".")), x)
        if s.lower() in _NOT_FINITE_WORDS:
            raise _Reject(Reason.NOT_FINITE, f"value {x[:40]!r} is not finite")
        m = _NUM_UNIT.fullmatch(s) if s[:2] not in ("0x", "0X") else None
        if m is not None:
            num, u = m.group(1), m.group(2)
            if "," in num:
                if not self.decimal_comma:
                    raise _Reject(Reason.NOT_NUMERIC, f"string value {x[:40]!r}: decimal comma (set "
                                                      "decimal_comma: true)")
                num = num.replace(",", ".")
            if unit is None or normalize_unit(u) != unit:
                raise _Bad(Reason.UNIT_MISMATCH, f"value {x[:40]!r}: unit {u.strip()!r} is not the tag's unit "
                                                 f"{unit or '(none)'!r}")
            return _finite(float(num), x)
        raise _Reject(Reason.NOT_NUMERIC, f"string value {x[:40]!r} is not a number"
                      + (" or a state word" if self.states else ""))


def _finite(f: float, raw: str) -> float:
    if math.isfinite(f):
        return f
    raise _Reject(Reason.NOT_FINITE, f"value {raw[:40]!r} is too large for a float")


_PLAIN: Final = ValueRules()


class QualityRules:
    """The payload's quality -> a quality word: ``quality_map`` first, then the standard words."""

    __slots__ = ("map",)

    def __init__(self, qmap: Mapping[str, str] | None = None) -> None:
        self.map = dict(qmap or {})

    def quality(self, raw: Any) -> str | None:
        if type(raw) is str:
            q = raw.lower()
            if q in _QUALITY_RANK and not self.map:
                return q
        if self.map:
            hit = self.map.get(quality_key(raw))
            if hit is not None:
                return hit
            if type(raw) is str and raw.lower() in _QUALITY_RANK:
                return raw.lower()
        return None


def _timestamp(x: Any, unit: str, local: LocalTime | None) -> int:
    try:
        return to_ns(x, unit, local)
    except BadTimestamp as e:
        raise _Reject(e.reason, str(e)) from None


def _range_of(tag: Tag | None) -> tuple[float, float] | None:
    return None if tag is None or tag.range is None else (float(tag.range[0]), float(tag.range[1]))


def _unit_of(tag: Tag | None) -> str | None:
    return None if tag is None else normalize_unit(tag.unit)


def _quality(raw: Any) -> str | None:
    """The payload's quality word, lower-cased, or None if it is not one we know."""
    return _QRULES.quality(raw)


_QRULES: Final = QualityRules()


def _bad_quality(raw: Any, tag: str) -> Problem:
    return Problem(Reason.BAD_QUALITY, f"{tag}: unknown quality {str(raw)[:40]!r}, kept as uncertain")


def _worse(a: str, b: str) -> str:
    return a if _QUALITY_RANK[a] >= _QUALITY_RANK[b] else b


def _local(tz: str | None) -> LocalTime | None:
    if tz is None:
        return None
    from zoneinfo import ZoneInfo

    return LocalTime(ZoneInfo(tz))


def _resolve(doc: Any, path: Path, memo: dict[Any, Any] | None) -> Any:
    try:
        return resolve(doc, path, memo)
    except PathAmbiguous:
        raise _Reject(Reason.AMBIGUOUS_PATH, f"{format_path(path)} matches several elements") from None


# --------------------------------------------------------------------------- json format


class _Point(NamedTuple):
    tag: str
    path: Path
    ts_path: Path | None
    q_path: Path | None
    scale: float
    offset: float
    identity: bool  # scale 1, offset 0
    rng: tuple[float, float] | None
    unit: str | None
    match: tuple[tuple[int, str], ...]  # (index into the topic's named levels, value)


class _Selection(NamedTuple):
    points: tuple[_Point, ...]
    ts_paths: tuple[Path, ...]
    ts_index: tuple[int, ...]  # per point: index into ts_paths, or -1 for receive time


class JsonDecoder:
    """``format: json``: each point picks its value/ts/quality from the document by JSON path."""

    def __init__(self, sub: MqttSubscription, tags: Mapping[str, Tag], max_payload: int,
                 timezone: str | None = None) -> None:
        self.max_payload = max_payload
        self.ts_unit = sub.ts_unit
        self.local = _local(timezone)
        self.values = ValueRules(sub.states, sub.decimal_comma)
        self.qualities = QualityRules(sub.quality_map)
        pattern = sub.pattern
        self._pattern = pattern
        index = {name: i for i, (_, name) in enumerate(pattern.names)}
        points: list[_Point] = []
        memo = False
        for p in sub.points:
            assert p.path is not None  # the config model requires it for json
            path = compile_path(p.path)
            tp = compile_path(p.ts_path) if p.ts_path is not None else None
            qp = compile_path(p.quality_path) if p.quality_path is not None else None
            memo = memo or any(x is not None and has_filter(x) for x in (path, tp, qp))
            tag = tags.get(p.tag)
            points.append(_Point(
                tag=p.tag, path=path, ts_path=tp, q_path=qp, scale=float(p.scale), offset=float(p.offset),
                identity=p.scale == 1.0 and p.offset == 0.0, rng=_range_of(tag), unit=_unit_of(tag),
                match=tuple(sorted((index[k], v) for k, v in p.match.items())),
            ))
        self._points = tuple(points)
        self._memo = memo
        self._all = self._select(self._points)
        self._cache: dict[tuple[str, ...], _Selection | None] = {}

    @staticmethod
    def _select(points: Sequence[_Point]) -> _Selection:
        ts_paths: list[Path] = []
        idx: list[int] = []
        for p in points:
            if p.ts_path is None:
                idx.append(-1)
                continue
            if p.ts_path not in ts_paths:
                ts_paths.append(p.ts_path)
            idx.append(ts_paths.index(p.ts_path))
        return _Selection(tuple(points), tuple(ts_paths), tuple(idx))

    def _points_for(self, topic: str) -> _Selection | None:
        if not self._pattern.names:
            return self._all
        values = self._pattern.values(topic) if topic else ()
        sel = self._cache.get(values, False)
        if sel is False:
            chosen = [p for p in self._points if all(i < len(values) and values[i] == v for i, v in p.match)]
            sel = self._select(chosen) if chosen else None
            if len(self._cache) >= 4096:
                self._cache.clear()
            self._cache[values] = sel
        return sel  # type: ignore[return-value]

    def decode(self, payload: bytes, recv_ns: int, retained: bool = False,
               topic: str = "") -> tuple[list[Reading], Sequence[Problem]]:
        sel = self._points_for(topic)
        if sel is None:
            return [], (Problem(Reason.UNMATCHED_TOPIC, f"no point has a match for topic {topic[:120]!r}"),)
        doc, problem = load(payload, self.max_payload)
        if problem is not None:
            return [], (problem,)
        memo: dict[Any, Any] | None = {} if self._memo else None
        problems: list[Problem] | None = None
        # each distinct timestamp path is parsed once per message: an int or a _Reject
        stamps: list[int | _Reject] = []
        for tp in sel.ts_paths:
            try:
                stamps.append(_timestamp(_resolve(doc, tp, memo), self.ts_unit, self.local))
            except PathMissing:
                stamps.append(_Reject(Reason.MISSING_TS, f"timestamp {format_path(tp)} not in payload"))
            except _Reject as r:
                stamps.append(r)
        out: list[Reading] = []
        values = self.values
        for p, ts_index in zip(sel.points, sel.ts_index, strict=True):
            ts: int | _Reject = recv_ns
            try:
                if ts_index >= 0:
                    ts = stamps[ts_index]
                    if type(ts) is not int:
                        raise ts  # type: ignore[misc]
                elif retained:
                    raise _Reject(Reason.RETAINED_NO_TS, "retained message without a source timestamp")
                try:
                    raw = _resolve(doc, p.path, memo)
                except PathMissing:
                    raise _Reject(Reason.MISSING_PATH, f"{format_path(p.path)} not in payload") from None
                v = values.value(raw, p.unit)
                if not p.identity:
                    v = v * p.scale + p.offset
                    if not math.isfinite(v):
                        raise _Reject(Reason.NOT_FINITE, "value not finite after scale/offset")
                q = Quality.GOOD
                if p.rng is not None and not (p.rng[0] <= v <= p.rng[1]):
                    q = Quality.UNCERTAIN
                if p.q_path is not None:
                    try:
                        raw_q = _resolve(doc, p.q_path, memo)
                    except PathMissing:
                        pass
                    else:
                        pq = self.qualities.quality(raw_q)
                        if pq is None:
                            pq = Quality.UNCERTAIN
                            if problems is None:
                                problems = []
                            problems.append(_bad_quality(raw_q, p.tag))
                        q = _worse(q, pq)
                out.append(Reading(p.tag, v, ts, q))  # type: ignore[arg-type]
            except _Reject as r:
                if problems is None:
                    problems = []
                problems.append(Problem(r.reason, f"{p.tag}: {r.detail}"))
                if type(r) is _Bad and type(ts) is int:
                    out.append(Reading(p.tag, None, ts, Quality.BAD))
        return out, problems or _NONE


# --------------------------------------------------------------------------- native format


class NativeDecoder:
    """``format: native``: ``[{"tag": ..., "v": ..., "ts": epoch ms, "q": ...}, ...]``."""

    def __init__(self, sub: MqttSubscription, tags: Mapping[str, Tag], max_payload: int,
                 timezone: str | None = None) -> None:
        self.max_payload = max_payload
        self.ts_unit = sub.ts_unit
        self.local = _local(timezone)
        self.values = ValueRules(sub.states, sub.decimal_comma)
        self.qualities = QualityRules(sub.quality_map)
        self._meta: dict[str, tuple[tuple[float, float] | None, str | None]] = {
            t: (_range_of(tag), _unit_of(tag)) for t, tag in tags.items()
        }
        self._ts_fast = fast_epoch_range(self.ts_unit)

    def decode(self, payload: bytes, recv_ns: int, retained: bool = False,
               topic: str = "") -> tuple[list[Reading], Sequence[Problem]]:
        doc, problem = load(payload, self.max_payload)
        if problem is not None:
            return [], (problem,)
        if type(doc) is not list:
            return [], (Problem(Reason.NOT_ARRAY, f"native payload must be a JSON array, got {_json_type(doc)}"),)
        meta = self._meta
        unit_ = self.ts_unit
        local = self.local
        value = self.values.value
        ts_lo, ts_hi, ts_mul = self._ts_fast
        problems: list[Problem] | None = None
        out: list[Reading] = []
        add = out.append
        good = Quality.GOOD
        for i, e in enumerate(doc):
            tag: Any = None
            ts = recv_ns
            try:
                if type(e) is not dict:
                    raise _Reject(Reason.BAD_ENTRY, f"a JSON {_json_type(e)}, not an object")
                tag = e.get("tag")
                if type(tag) is not str:
                    raise _Reject(Reason.BAD_ENTRY, "no string 'tag'")
                try:
                    rng, unit = meta[tag]
                except KeyError:
                    raise _Reject(Reason.UNKNOWN_TAG, f"tag {tag[:64]!r} is not in the tag table") from None
                raw_ts = e.get("ts")
                if raw_ts is not None:
                    # fast path (issue 23): an integer epoch of the unit most payloads use, in
                    # the range where to_ns would take the same unit and accept the result
                    if type(raw_ts) is int and ts_lo <= raw_ts <= ts_hi:
                        ts = raw_ts * ts_mul
                    else:
                        ts = _timestamp(raw_ts, unit_, local)
                elif retained:
                    raise _Reject(Reason.RETAINED_NO_TS, "retained message without 'ts'")
                try:
                    raw = e["v"]
                except KeyError:
                    raise _Reject(Reason.MISSING_PATH, "no 'v'") from None
                # fast path: a finite JSON float is its own value (ValueRules.value's first case)
                v = raw if type(raw) is float and raw - raw == 0.0 else value(raw, unit)
                q = good
                if rng is not None and not (rng[0] <= v <= rng[1]):
                    q = Quality.UNCERTAIN
                raw_q = e.get("q")
                if raw_q is not None:
                    pq = self.qualities.quality(raw_q)
                    if pq is None:
                        pq = Quality.UNCERTAIN
                        if problems is None:
                            problems = []
                        problems.append(_bad_quality(raw_q, tag))
                    q = _worse(q, pq)
                add(_new_tuple(Reading, (tag, v, ts, q)))  # = Reading(...) without the Python-level __new__
            except _Reject as r:
                if problems is None:
                    problems = []
                where = f"entry {i} ({tag[:64]})" if type(tag) is str else f"entry {i}"
                problems.append(Problem(r.reason, f"{where}: {r.detail}"))
                if type(r) is _Bad:
                    out.append(Reading(tag, None, ts, Quality.BAD))
        return out, problems or _NONE


# --------------------------------------------------------------------------- records format


class _Target(NamedTuple):
    tag: str
    scale: float
    offset: float
    identity: bool
    rng: tuple[float, float] | None
    unit: str | None


def record_key(v: Any) -> str | None:
    """A record's tag field as a lookup key: strings as they are, integers as digits."""
    t = type(v)
    if t is str:
        return v.strip()
    if t is int:
        return str(v)
    if t is float and v.is_integer():
        return str(int(v))
    return None


class RecordsDecoder:
    """``format: records``: each record that ``each`` selects becomes a reading."""

    def __init__(self, sub: MqttSubscription, tags: Mapping[str, Tag], max_payload: int,
                 timezone: str | None = None) -> None:
        assert sub.each is not None
        self.max_payload = max_payload
        self.ts_unit = sub.ts_unit
        self.local = _local(timezone)
        self.values = ValueRules(sub.states, sub.decimal_comma)
        self.qualities = QualityRules(sub.quality_map)
        self.each = compile_path(sub.each, multi=True)
        self.tag_path = compile_path(sub.tag_path) if sub.tag_path else None
        self.value_path = compile_path(sub.value_path) if sub.value_path else None
        self.values_path = compile_path(sub.values_path) if sub.values_path else None
        self.ts_path = compile_path(sub.ts_path) if sub.ts_path else None
        self.q_path = compile_path(sub.quality_path) if sub.quality_path else None
        self._pattern = sub.pattern
        index = {name: i for i, (_, name) in enumerate(sub.pattern.names)}
        self._points: list[tuple[str, tuple[tuple[int, str], ...], _Target]] = []
        for p in sub.points:
            tag = tags.get(p.tag)
            key = record_key(p.key)
            assert key is not None
            self._points.append((key, tuple(sorted((index[k], v) for k, v in p.match.items())), _Target(
                p.tag, float(p.scale), float(p.offset), p.scale == 1.0 and p.offset == 0.0, _range_of(tag),
                _unit_of(tag))))
        # without points the record names a tag of the table
        self._table: dict[str, _Target] | None = None
        if not self._points:
            self._table = {t: _Target(t, 1.0, 0.0, True, _range_of(tag), _unit_of(tag)) for t, tag in tags.items()}
        self._cache: dict[tuple[str, ...], dict[str, list[_Target]]] = {}

    def _targets(self, topic: str) -> dict[str, list[_Target]] | None:
        if self._table is not None:
            return None
        values = self._pattern.values(topic) if topic and self._pattern.names else ()
        hit = self._cache.get(values)
        if hit is None:
            hit = {}
            for key, match, target in self._points:
                if all(i < len(values) and values[i] == v for i, v in match):
                    hit.setdefault(key, []).append(target)
            if len(self._cache) >= 4096:
                self._cache.clear()
            self._cache[values] = hit
        return hit

    def _records(self, doc: Any) -> Iterator[tuple[Any, Any, Any]]:
        """(record, tag key, raw value) for every record."""
        for rec in expand(doc, self.each):
            if self.values_path is not None:
                try:
                    obj = resolve(rec, self.values_path)
                except LookupError:
                    yield rec, None, _Reject(Reason.MISSING_PATH, f"{format_path(self.values_path)} not in record")
                    continue
                if type(obj) is not dict:
                    yield rec, None, _Reject(Reason.BAD_ENTRY, f"{format_path(self.values_path)} is a JSON "
                                                               f"{_json_type(obj)}, not an object")
                    continue
                for k, v in obj.items():
                    yield rec, k, v
                continue
            assert self.tag_path is not None and self.value_path is not None
            try:
                key = resolve(rec, self.tag_path)
            except LookupError:
                yield rec, None, _Reject(Reason.BAD_ENTRY, f"record without {format_path(self.tag_path)}")
                continue
            try:
                raw = resolve(rec, self.value_path)
            except LookupError:
                yield rec, key, _Reject(Reason.MISSING_PATH, f"{format_path(self.value_path)} not in record")
                continue
            yield rec, key, raw

    def decode(self, payload: bytes, recv_ns: int, retained: bool = False,
               topic: str = "") -> tuple[list[Reading], Sequence[Problem]]:
        targets = self._targets(topic)
        if targets is not None and not targets:
            return [], (Problem(Reason.UNMATCHED_TOPIC, f"no point has a match for topic {topic[:120]!r}"),)
        doc, problem = load(payload, self.max_payload)
        if problem is not None:
            return [], (problem,)
        problems: list[Problem] = []
        out: list[Reading] = []
        table = self._table
        value = self.values.value
        stamps: dict[Any, int] = {}
        n = 0
        for i, (rec, key, raw) in enumerate(self._records(doc)):
            n += 1
            where = f"record {i}"
            ts: int = recv_ns
            try:
                if type(raw) is _Reject:
                    raise raw
                k = record_key(key)
                if k is None:
                    raise _Reject(Reason.BAD_ENTRY, f"tag field is a JSON {_json_type(key)}")
                where = f"record {i} ({k[:64]})"
                if table is not None:
                    t = table.get(k)
                    found = [t] if t is not None else None
                else:
                    assert targets is not None
                    found = targets.get(k)
                if not found:
                    raise _Reject(Reason.UNKNOWN_TAG, f"{k[:64]!r} is not " + (
                        "in the tag table" if table is not None else "the key of a point"))
                if self.ts_path is not None:
                    try:
                        raw_ts = resolve(rec, self.ts_path)
                    except PathMissing:
                        raise _Reject(Reason.MISSING_TS, f"{format_path(self.ts_path)} not in record") from None
                    # records of one message mostly share their time: parse each distinct one once
                    hit = stamps.get(raw_ts) if type(raw_ts) is str or type(raw_ts) is int else None
                    if hit is None:
                        hit = _timestamp(raw_ts, self.ts_unit, self.local)
                        if type(raw_ts) is str or type(raw_ts) is int:
                            stamps[raw_ts] = hit
                    ts = hit
                elif retained:
                    raise _Reject(Reason.RETAINED_NO_TS, "retained message without a source timestamp")
                pq: str | None = None
                if self.q_path is not None:
                    try:
                        raw_q = resolve(rec, self.q_path)
                    except LookupError:
                        pass
                    else:
                        pq = self.qualities.quality(raw_q)
                        if pq is None:
                            pq = Quality.UNCERTAIN
                            problems.append(_bad_quality(raw_q, k[:64]))
                for tgt in found:
                    try:
                        v = value(raw, tgt.unit)
                        if not tgt.identity:
                            v = v * tgt.scale + tgt.offset
                            if not math.isfinite(v):
                                raise _Reject(Reason.NOT_FINITE, "value not finite after scale/offset")
                    except _Bad as r:
                        problems.append(Problem(r.reason, f"{where}: {r.detail}"))
                        out.append(Reading(tgt.tag, None, ts, Quality.BAD))
                        continue
                    q = Quality.GOOD
                    if tgt.rng is not None and not (tgt.rng[0] <= v <= tgt.rng[1]):
                        q = Quality.UNCERTAIN
                    if pq is not None:
                        q = _worse(q, pq)
                    out.append(Reading(tgt.tag, v, ts, q))
            except _Reject as r:
                problems.append(Problem(r.reason, f"{where}: {r.detail}"))
        if n == 0:
            problems.append(Problem(Reason.NO_RECORDS, f"{format_path(self.each)} selects no record"))
        return out, problems or _NONE


def make_decoder(sub: MqttSubscription, tags: Mapping[str, Tag], max_payload: int,
                 timezone: str | None = None) -> Decoder:
    """The decoder for one subscription; JSON paths are compiled here, once."""
    if sub.format == "native":
        return NativeDecoder(sub, tags, max_payload, timezone)
    if sub.format == "records":
        return RecordsDecoder(sub, tags, max_payload, timezone)
    if sub.format == "sparkplug_b":
        from adapters.mqtt.sparkplug import SparkplugDecoder

        return SparkplugDecoder(sub, tags, max_payload, timezone)
    return JsonDecoder(sub, tags, max_payload, timezone)


def count_reasons(problems: Sequence[Problem]) -> dict[str, int]:
    """``{reason: count}`` of a problem list (the adapter increments counters from this)."""
    out: dict[str, int] = {}
    for p in problems:
        out[p.reason] = out.get(p.reason, 0) + 1
    return out
