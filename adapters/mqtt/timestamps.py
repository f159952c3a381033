"""Source timestamps in MQTT payloads -> integer ns since the Unix epoch.

Accepted forms:

* **Epoch numbers** (JSON integer or float, or a string of one). The unit is the
  subscription's ``ts_unit``; with ``auto`` (the default) it is chosen by magnitude:
  ``< 1e11`` seconds, ``< 1e14`` milliseconds, ``< 1e17`` microseconds, else
  nanoseconds. (Seconds are unambiguous up to year 5138, milliseconds from 1973.)
  Integers convert exactly. A float carries ~16 significant digits, so fractional
  float timestamps are rounded to the microsecond (``1732300000.123`` -> exactly
  ``...123000000`` ns); send integers when nanoseconds matter.
* **ISO 8601 / RFC 3339 with an offset**: ``2024-11-22T18:26:40.123456789+08:00``,
  ``...Z``, ``+0800``, ``+08``; ``T`` or a space between date and time; up to 9
  fractional digits are kept exactly (more are truncated). Other ISO 8601 forms that
  :meth:`datetime.fromisoformat` understands (basic format, week dates) are accepted
  too, at microsecond precision.
* **Local times without an offset** -- ``2024-11-23 10:26:40``, ``2024-11-23T10:26:40``,
  ``2024/11/23 10:26:40``, ``20241123102640`` (14 digits, string or integer; a 14-digit
  epoch in milliseconds would be after the year 2286) -- are interpreted in the source's
  ``timezone`` (IANA, e.g. ``Asia/Shanghai``) when it has one. Without one they are
  rejected (reason ``naive_ts``): guessing UTC would shift a Beijing-time device by 8
  hours without anyone noticing. In a zone with daylight saving time, a repeated hour is
  read as its first occurrence and a skipped hour with the offset before the change
  (:mod:`zoneinfo`'s ``fold=0``).

The result must lie in ``(0, 2**63)`` ns (after 1970, before 2262: InfluxDB's range);
anything else, booleans, null, objects and unparseable strings are ``bad_ts``.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta, tzinfo
from typing import Any

MAX_NS = 2**63 - 1
UNIT_NS: dict[str, int] = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}

_EPOCH_ORD = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ISO = re.compile(
    r"(\d{4})([-/])(\d{2})\2(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"\s*(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?",
    re.ASCII,
)
_INT_STR = re.compile(r"[+-]?\d+", re.ASCII)
_COMPACT = re.compile(r"(\d{4})(\d{2})(\d{2})(\d{2})(\d{2})(\d{2})", re.ASCII)
_COMPACT_MIN, _COMPACT_MAX = 10_000_000_000_000, 99_999_999_999_999  # 14 digits
_FLOAT_STR = re.compile(r"[+-]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][+-]?\d+)?", re.ASCII)


class BadTimestamp(ValueError):
    """``reason`` is ``bad_ts`` or ``naive_ts``."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


def _auto_unit(magnitude: float) -> int:
    if magnitude < 1e11:
        return 1_000_000_000
    if magnitude < 1e14:
        return 1_000_000
    if magnitude < 1e17:
        return 1_000
    return 1


def _checked(ns: int, raw: Any) -> int:
    if 0 < ns <= MAX_NS:
        return ns
    raise BadTimestamp("bad_ts", f"timestamp {raw!r} is outside 1970..2262")


def epoch_to_ns(x: int | float, unit: str = "auto") -> int:
    """An epoch number in ``unit`` (``auto``, ``s``, ``ms``, ``us``, ``ns``) -> ns."""
    if type(x) is int:
        f = _auto_unit(abs(x)) if unit == "auto" else UNIT_NS[unit]
        return _checked(x * f, x)
    if type(x) is float:
        if not math.isfinite(x):
            raise BadTimestamp("bad_ts", f"timestamp {x!r} is not finite")
        f = _auto_unit(abs(x)) if unit == "auto" else UNIT_NS[unit]
        if f >= 1000:
            # round to the microsecond: the most a float epoch can carry
            us = round(x * (f // 1000))
            return _checked(us * 1000, x)
        return _checked(round(x), x)
    raise BadTimestamp("bad_ts", f"timestamp must be a number or a string, got {type(x).__name__}")


def fast_epoch_range(unit: str) -> tuple[int, int, int]:
    """``(lo, hi, factor)``: an ``int`` timestamp ``x`` with ``lo <= x <= hi`` is ``x * factor``
    ns, exactly as :func:`to_ns` would make it (same unit choice, inside 1970..2262, not a
    14-digit local time). Decoders use it to skip the general path for the usual case:
    epoch milliseconds (or the subscription's fixed unit). ``(1, 0, 1)`` matches nothing."""
    if unit == "auto":
        # milliseconds by magnitude (1e11 <= x < 1e14), below the 14-digit local times
        return 100_000_000_000, min(_COMPACT_MIN - 1, MAX_NS // 1_000_000), 1_000_000
    f = UNIT_NS.get(unit)
    if f is None:
        return 1, 0, 1
    return 1, MAX_NS // f, f


class LocalTime:
    """Offsets of one IANA zone for local wall-clock times, cached per hour (DST changes on hour
    boundaries in every zone the gateway will meet; the cache is bounded)."""

    __slots__ = ("_cache", "tz")

    def __init__(self, tz: tzinfo) -> None:
        self.tz = tz
        self._cache: dict[tuple[int, int, int, int], int] = {}

    def offset(self, y: int, mo: int, d: int, h: int) -> int:
        """Seconds east of UTC at that local hour."""
        key = (y, mo, d, h)
        off = self._cache.get(key)
        if off is None:
            delta = datetime(y, mo, d, h, tzinfo=self.tz).utcoffset()
            off = int(delta.total_seconds()) if delta is not None else 0
            if len(self._cache) >= 4096:
                self._cache.clear()
            self._cache[key] = off
        return off


def _naive(s: str, local: LocalTime | None) -> LocalTime:
    if local is None:
        raise BadTimestamp("naive_ts", f"timestamp {s!r} has no UTC offset (add Z or +08:00, or set the "
                                       "source's timezone)")
    return local


def _wall_ns(raw: Any, y: int, mo: int, d: int, h: int, mn: int, sec: int, frac: str | None,
             offset: int) -> int:
    try:
        days = date(y, mo, d).toordinal() - _EPOCH_ORD
    except ValueError as e:
        raise BadTimestamp("bad_ts", f"timestamp {raw!r}: {e}") from None
    if h > 23 or mn > 59 or sec > 59:
        raise BadTimestamp("bad_ts", f"timestamp {raw!r}: time of day out of range")
    ns = (days * 86400 + h * 3600 + mn * 60 + sec - offset) * 1_000_000_000
    if frac:
        ns += int(frac[:9].ljust(9, "0"))
    return _checked(ns, raw)


def iso_to_ns(s: str, local: LocalTime | None = None) -> int:
    """An ISO 8601 string -> ns; without an offset it is local time in ``local`` (else ``naive_ts``)."""
    m = _ISO.fullmatch(s)
    if m is None:
        return _iso_fallback(s, local)
    y, _, mo, d, hh, mi, ss, frac, z, sign, oh, om = m.groups()
    if z is None and sign is None:
        lt = _naive(s, local)
        try:
            offset = lt.offset(int(y), int(mo), int(d), min(int(hh), 23))
        except ValueError as e:
            raise BadTimestamp("bad_ts", f"timestamp {s!r}: {e}") from None
    else:
        offset = 0
        if sign is not None:
            oh_i, om_i = int(oh), int(om or 0)
            if oh_i > 23 or om_i > 59:
                raise BadTimestamp("bad_ts", f"timestamp {s!r}: bad UTC offset")
            offset = (oh_i * 3600 + om_i * 60) * (1 if sign == "+" else -1)
    return _wall_ns(s, int(y), int(mo), int(d), int(hh), int(mi), int(ss), frac, offset)


def compact_to_ns(raw: Any, digits: str, local: LocalTime | None) -> int:
    """``yyyyMMddHHmmss`` (local time) -> ns."""
    lt = _naive(str(raw), local)
    m = _COMPACT.fullmatch(digits)
    if m is None:  # pragma: no cover - callers pass 14 digits
        raise BadTimestamp("bad_ts", f"timestamp {raw!r} is not yyyyMMddHHmmss")
    y, mo, d, hh, mi, ss = (int(g) for g in m.groups())
    try:
        offset = lt.offset(y, mo, d, min(hh, 23))
    except ValueError as e:
        raise BadTimestamp("bad_ts", f"timestamp {raw!r}: {e}") from None
    return _wall_ns(raw, y, mo, d, hh, mi, ss, None, offset)


def _iso_fallback(s: str, local: LocalTime | None) -> int:
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise BadTimestamp("bad_ts", f"timestamp {s[:64]!r} is neither epoch nor ISO 8601") from None
    if dt.tzinfo is None or dt.utcoffset() is None:
        lt = _naive(s, local)
        dt = dt.replace(tzinfo=lt.tz)
    us = (dt - _EPOCH) // timedelta(microseconds=1)
    return _checked(us * 1000, s)


def to_ns(x: Any, unit: str = "auto", local: LocalTime | None = None) -> int:
    """Any accepted timestamp form -> ns; raises :class:`BadTimestamp`. ``local``: the source's
    time zone for local times without an offset."""
    t = type(x)
    if t is int:
        if unit == "auto" and _COMPACT_MIN <= x <= _COMPACT_MAX:
            return compact_to_ns(x, str(x), local)
        return epoch_to_ns(x, unit)
    if t is float:
        return epoch_to_ns(x, unit)
    if t is str:
        s = x.strip()
        if len(s) > 64:
            raise BadTimestamp("bad_ts", f"timestamp string too long ({len(s)} chars)")
        if _INT_STR.fullmatch(s):
            if len(s) == 14 and unit == "auto":
                return compact_to_ns(x, s, local)
            return epoch_to_ns(int(s), unit)
        if _FLOAT_STR.fullmatch(s):
            return epoch_to_ns(float(s), unit)
        return iso_to_ns(s, local)
    if x is None:
        raise BadTimestamp("bad_ts", "timestamp is null")
    raise BadTimestamp("bad_ts", f"timestamp must be a number or a string, got {t.__name__}")
