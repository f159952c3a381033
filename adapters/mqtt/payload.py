"""MQTT payload decoders: bytes -> (readings, problems). Pure: no I/O, no metrics, no logging.

Two formats (a subscription's ``format``):

* ``json``: one JSON document per message; each configured point picks its value (and
  optionally timestamp and quality) with a JSON path (:mod:`adapters.mqtt.jsonpath`).
  ``value = raw * scale + offset``.
* ``native``: a JSON array of ``{"tag": "PT-201", "v": 1.2, "ts": 1732300000123, "q": "good"}``
  entries (``ts`` and ``q`` optional). Tags must exist in the site's tag table.

A decoder never raises on input: it returns the readings it could make and one
:class:`Problem` per rejected message or point, with a stable ``reason`` label (the
``reason`` of ``hazardgw_decode_errors``). A bad point never costs the other points of
the same message.

Value rules: JSON numbers; ``true``/``false`` -> 1.0/0.0; strings that are plain decimal
numbers (``"12.5"``, ``" -3e2 "``) are accepted, because many PLC gateways send numbers
as strings; anything else (other strings, null, objects, arrays) is ``not_numeric``.
NaN, ±Infinity (as JSON literals, strings, or numbers too large for a float, like
``1e400``) are ``not_finite``.

Quality: ``good``; ``uncertain`` when the value is outside the tag's ``range``
(inclusive); if the payload gives a quality (``quality_path`` / ``"q"``) that is one of
``good``, ``uncertain``, ``stale``, ``comm``, ``bad`` (any case), the *worse* of the two
is used. An unrecognised quality keeps the reading as ``uncertain`` and is counted as
``bad_quality``; a missing quality field is simply good.

Timestamps: see :mod:`adapters.mqtt.timestamps`. Without a timestamp (no ``ts_path`` /
no ``"ts"``) the reading gets the time the message was received. A *retained* message
without a source timestamp is rejected (``retained_no_ts``): the broker may have held it
for hours, and stamping it with the receive time would present an old value as fresh.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Final, NamedTuple, Protocol

from adapters.mqtt.config import MqttSubscription
from adapters.mqtt.jsonpath import Path, PathMissing, compile_path, format_path, resolve
from adapters.mqtt.timestamps import BadTimestamp, to_ns
from gateway.core.config import Tag
from gateway.core.models import Quality, Reading


class Reason:
    """Stable ``reason`` label values of ``hazardgw_decode_errors`` (documented in README.md)."""

    # the whole message is rejected
    OVERSIZED: Final = "oversized"
    EMPTY: Final = "empty"
    NOT_UTF8: Final = "not_utf8"
    NOT_JSON: Final = "not_json"
    TOO_DEEP: Final = "too_deep"
    NOT_ARRAY: Final = "not_array"
    # one point / entry is rejected
    BAD_ENTRY: Final = "bad_entry"
    UNKNOWN_TAG: Final = "unknown_tag"
    MISSING_PATH: Final = "missing_path"
    NOT_NUMERIC: Final = "not_numeric"
    NOT_FINITE: Final = "not_finite"
    MISSING_TS: Final = "missing_ts"
    BAD_TS: Final = "bad_ts"
    NAIVE_TS: Final = "naive_ts"
    RETAINED_NO_TS: Final = "retained_no_ts"
    # counted, but the reading is kept (as uncertain)
    BAD_QUALITY: Final = "bad_quality"

    ALL: Final = frozenset({
        OVERSIZED, EMPTY, NOT_UTF8, NOT_JSON, TOO_DEEP, NOT_ARRAY, BAD_ENTRY, UNKNOWN_TAG, MISSING_PATH,
        NOT_NUMERIC, NOT_FINITE, MISSING_TS, BAD_TS, NAIVE_TS, RETAINED_NO_TS, BAD_QUALITY,
    })


class Problem(NamedTuple):
    reason: str
    detail: str  # for the (rate-limited) log line; never a metric label


class Decoder(Protocol):
    def decode(self, payload: bytes, recv_ns: int, retained: bool = False) -> tuple[list[Reading], Sequence[Problem]]:
        """Readings made from one message, and what was rejected."""


class _Reject(Exception):  # internal control flow; never escapes this module
    __slots__ = ("detail", "reason")

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail


_QUALITY_RANK: Final = {Quality.GOOD: 0, Quality.UNCERTAIN: 1, Quality.STALE: 2, Quality.COMM: 3, Quality.BAD: 4}
_NOT_FINITE_WORDS: Final = frozenset({"nan", "+nan", "-nan", "inf", "+inf", "-inf", "infinity", "+infinity",
                                      "-infinity"})
# a plain decimal number: no "1_000", no non-ASCII digits, no hex (float() would take the first two)
_NUM_STR: Final = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_NONE: Final[tuple[Problem, ...]] = ()


# --------------------------------------------------------------------------- building blocks


def load(payload: bytes, max_payload: int) -> tuple[Any, Problem | None]:
    """Parse a message: size check first, then strict UTF-8, then stdlib JSON."""
    n = len(payload)
    if n > max_payload:
        return None, Problem(Reason.OVERSIZED, f"{n} bytes > max_payload {max_payload}")
    if n == 0:
        return None, Problem(Reason.EMPTY, "empty payload")
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
    """A JSON value -> float, or raise ``_Reject`` (``not_numeric`` / ``not_finite``)."""
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
            f = float(s)
            if math.isfinite(f):
                return f
            raise _Reject(Reason.NOT_FINITE, f"value {x[:40]!r} is too large for a float")
        if s.lower() in _NOT_FINITE_WORDS:
            raise _Reject(Reason.NOT_FINITE, f"value {x[:40]!r} is not finite")
        raise _Reject(Reason.NOT_NUMERIC, f"string value {x[:40]!r} is not a number")
    if x is None:
        raise _Reject(Reason.NOT_NUMERIC, "value is null")
    raise _Reject(Reason.NOT_NUMERIC, f"value is a JSON {_json_type(x)}, not a number")


def _json_type(x: Any) -> str:
    names: dict[type, str] = {dict: "object", list: "array", str: "string"}
    return names.get(type(x), type(x).__name__)


def _timestamp(x: Any, unit: str) -> int:
    try:
        return to_ns(x, unit)
    except BadTimestamp as e:
        raise _Reject(e.reason, str(e)) from None


def _range_of(tag: Tag | None) -> tuple[float, float] | None:
    return None if tag is None or tag.range is None else (float(tag.range[0]), float(tag.range[1]))


def _quality(raw: Any) -> str | None:
    """The payload's quality word, lower-cased, or None if it is not one we know."""
    if type(raw) is str:
        q = raw.lower()
        if q in _QUALITY_RANK:
            return q
    return None


def _bad_quality(raw: Any, tag: str) -> Problem:
    return Problem(Reason.BAD_QUALITY, f"{tag}: unknown quality {str(raw)[:40]!r}, kept as uncertain")


def _worse(a: str, b: str) -> str:
    return a if _QUALITY_RANK[a] >= _QUALITY_RANK[b] else b


# --------------------------------------------------------------------------- json format


class _Point(NamedTuple):
    tag: str
    path: Path
    ts_index: int  # index into JsonDecoder._ts_paths, or -1 for receive time
    q_path: Path | None
    scale: float
    offset: float
    identity: bool  # scale 1, offset 0
    rng: tuple[float, float] | None


class JsonDecoder:
    """``format: json``: each point picks its value/ts/quality from the document by JSON path."""

    def __init__(self, sub: MqttSubscription, tags: Mapping[str, Tag], max_payload: int) -> None:
        self.max_payload = max_payload
        self.ts_unit = sub.ts_unit
        ts_paths: list[Path] = []
        points: list[_Point] = []
        for p in sub.points:
            ts_index = -1
            if p.ts_path is not None:
                tp = compile_path(p.ts_path)
                if tp not in ts_paths:
                    ts_paths.append(tp)
                ts_index = ts_paths.index(tp)
            points.append(_Point(
                tag=p.tag,
                path=compile_path(p.path),
                ts_index=ts_index,
                q_path=compile_path(p.quality_path) if p.quality_path is not None else None,
                scale=float(p.scale),
                offset=float(p.offset),
                identity=p.scale == 1.0 and p.offset == 0.0,
                rng=_range_of(tags.get(p.tag)),
            ))
        self._points = tuple(points)
        self._ts_paths = tuple(ts_paths)

    def decode(self, payload: bytes, recv_ns: int, retained: bool = False) -> tuple[list[Reading], Sequence[Problem]]:
        doc, problem = load(payload, self.max_payload)
        if problem is not None:
            return [], (problem,)
        problems: list[Problem] | None = None
        # each distinct timestamp path is parsed once per message: an int or a _Reject
        stamps: list[int | _Reject] = []
        for tp in self._ts_paths:
            try:
                stamps.append(_timestamp(resolve(doc, tp), self.ts_unit))
            except PathMissing:
                stamps.append(_Reject(Reason.MISSING_TS, f"timestamp {format_path(tp)} not in payload"))
            except _Reject as r:
                stamps.append(r)
        out: list[Reading] = []
        for p in self._points:
            try:
                try:
                    raw = resolve(doc, p.path)
                except PathMissing:
                    raise _Reject(Reason.MISSING_PATH, f"{format_path(p.path)} not in payload") from None
                v = to_value(raw)
                if not p.identity:
                    v = v * p.scale + p.offset
                    if not math.isfinite(v):
                        raise _Reject(Reason.NOT_FINITE, "value not finite after scale/offset")
                if p.ts_index >= 0:
                    ts = stamps[p.ts_index]
                    if type(ts) is not int:
                        raise ts  # type: ignore[misc]
                elif retained:
                    raise _Reject(Reason.RETAINED_NO_TS, "retained message without a source timestamp")
                else:
                    ts = recv_ns
                q = Quality.GOOD
                if p.rng is not None and not (p.rng[0] <= v <= p.rng[1]):
                    q = Quality.UNCERTAIN
                if p.q_path is not None:
                    try:
                        raw_q = resolve(doc, p.q_path)
                    except PathMissing:
                        pass
                    else:
                        pq = _quality(raw_q)
                        if pq is None:
                            pq = Quality.UNCERTAIN
                            if problems is None:
                                problems = []
                            problems.append(_bad_quality(raw_q, p.tag))
                        q = _worse(q, pq)
                out.append(Reading(p.tag, v, ts, q))
            except _Reject as r:
                if problems is None:
                    problems = []
                problems.append(Problem(r.reason, f"{p.tag}: {r.detail}"))
        return out, problems or _NONE


# --------------------------------------------------------------------------- native format


class NativeDecoder:
    """``format: native``: ``[{"tag": ..., "v": ..., "ts": epoch ms, "q": ...}, ...]``."""

    def __init__(self, sub: MqttSubscription, tags: Mapping[str, Tag], max_payload: int) -> None:
        self.max_payload = max_payload
        self.ts_unit = sub.ts_unit
        self._ranges: dict[str, tuple[float, float] | None] = {t: _range_of(tag) for t, tag in tags.items()}

    def decode(self, payload: bytes, recv_ns: int, retained: bool = False) -> tuple[list[Reading], Sequence[Problem]]:
        doc, problem = load(payload, self.max_payload)
        if problem is not None:
            return [], (problem,)
        if type(doc) is not list:
            return [], (Problem(Reason.NOT_ARRAY, f"native payload must be a JSON array, got {_json_type(doc)}"),)
        ranges = self._ranges
        unit = self.ts_unit
        problems: list[Problem] | None = None
        out: list[Reading] = []
        good = Quality.GOOD
        for i, e in enumerate(doc):
            tag: Any = None
            try:
                if type(e) is not dict:
                    raise _Reject(Reason.BAD_ENTRY, f"a JSON {_json_type(e)}, not an object")
                tag = e.get("tag")
                if type(tag) is not str:
                    raise _Reject(Reason.BAD_ENTRY, "no string 'tag'")
                try:
                    rng = ranges[tag]
                except KeyError:
                    raise _Reject(Reason.UNKNOWN_TAG, f"tag {tag[:64]!r} is not in the tag table") from None
                try:
                    raw = e["v"]
                except KeyError:
                    raise _Reject(Reason.MISSING_PATH, "no 'v'") from None
                v = to_value(raw)
                raw_ts = e.get("ts")
                if raw_ts is not None:
                    ts = _timestamp(raw_ts, unit)
                elif retained:
                    raise _Reject(Reason.RETAINED_NO_TS, "retained message without 'ts'")
                else:
                    ts = recv_ns
                q = good
                if rng is not None and not (rng[0] <= v <= rng[1]):
                    q = Quality.UNCERTAIN
                raw_q = e.get("q")
                if raw_q is not None:
                    pq = _quality(raw_q)
                    if pq is None:
                        pq = Quality.UNCERTAIN
                        if problems is None:
                            problems = []
                        problems.append(_bad_quality(raw_q, tag))
                    q = _worse(q, pq)
                out.append(Reading(tag, v, ts, q))
            except _Reject as r:
                if problems is None:
                    problems = []
                where = f"entry {i} ({tag[:64]})" if type(tag) is str else f"entry {i}"
                problems.append(Problem(r.reason, f"{where}: {r.detail}"))
        return out, problems or _NONE


def make_decoder(sub: MqttSubscription, tags: Mapping[str, Tag], max_payload: int) -> Decoder:
    """The decoder for one subscription; JSON paths are compiled here, once."""
    if sub.format == "native":
        return NativeDecoder(sub, tags, max_payload)
    return JsonDecoder(sub, tags, max_payload)


def count_reasons(problems: Sequence[Problem]) -> dict[str, int]:
    """``{reason: count}`` of a problem list (the adapter increments counters from this)."""
    out: dict[str, int] = {}
    for p in problems:
        out[p.reason] = out.get(p.reason, 0) + 1
    return out
