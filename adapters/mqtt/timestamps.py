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
* **Naive ISO strings (no offset) are rejected** (reason ``naive_ts``): the adapter
  cannot know the device's time zone, and guessing UTC would shift a Beijing-time
  device by 8 hours without anyone noticing. Configure the device to send an offset
  or epoch time.

The result must lie in ``(0, 2**63)`` ns (after 1970, before 2262: InfluxDB's range);
anything else, booleans, null, objects and unparseable strings are ``bad_ts``.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, timedelta
from typing import Any

MAX_NS = 2**63 - 1
UNIT_NS: dict[str, int] = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}

_EPOCH_ORD = date(1970, 1, 1).toordinal()
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ISO = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:[.,](\d+))?"
    r"\s*(?:([Zz])|([+-])(\d{2})(?::?(\d{2}))?)?",
    re.ASCII,
)
_INT_STR = re.compile(r"[+-]?\d+", re.ASCII)
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


def iso_to_ns(s: str) -> int:
    """An ISO 8601 string with an offset -> ns; naive strings raise ``naive_ts``."""
    m = _ISO.fullmatch(s)
    if m is None:
        return _iso_fallback(s)
    y, mo, d, hh, mi, ss, frac, z, sign, oh, om = m.groups()
    if z is None and sign is None:
        raise BadTimestamp("naive_ts", f"timestamp {s!r} has no UTC offset (add Z or +08:00)")
    try:
        days = date(int(y), int(mo), int(d)).toordinal() - _EPOCH_ORD
    except ValueError as e:
        raise BadTimestamp("bad_ts", f"timestamp {s!r}: {e}") from None
    h, mn, sec = int(hh), int(mi), int(ss)
    if h > 23 or mn > 59 or sec > 59:
        raise BadTimestamp("bad_ts", f"timestamp {s!r}: time of day out of range")
    offset = 0
    if sign is not None:
        oh_i, om_i = int(oh), int(om or 0)
        if oh_i > 23 or om_i > 59:
            raise BadTimestamp("bad_ts", f"timestamp {s!r}: bad UTC offset")
        offset = (oh_i * 3600 + om_i * 60) * (1 if sign == "+" else -1)
    seconds = days * 86400 + h * 3600 + mn * 60 + sec - offset
    ns = seconds * 1_000_000_000
    if frac:
        ns += int(frac[:9].ljust(9, "0"))
    return _checked(ns, s)


def _iso_fallback(s: str) -> int:
    try:
        dt = datetime.fromisoformat(s)
    except ValueError:
        raise BadTimestamp("bad_ts", f"timestamp {s[:64]!r} is neither epoch nor ISO 8601") from None
    if dt.tzinfo is None or dt.utcoffset() is None:
        raise BadTimestamp("naive_ts", f"timestamp {s!r} has no UTC offset (add Z or +08:00)")
    us = (dt - _EPOCH) // timedelta(microseconds=1)
    return _checked(us * 1000, s)


def to_ns(x: Any, unit: str = "auto") -> int:
    """Any accepted timestamp form -> ns; raises :class:`BadTimestamp`."""
    t = type(x)
    if t is int or t is float:
        return epoch_to_ns(x, unit)
    if t is str:
        s = x.strip()
        if len(s) > 64:
            raise BadTimestamp("bad_ts", f"timestamp string too long ({len(s)} chars)")
        if _INT_STR.fullmatch(s):
            return epoch_to_ns(int(s), unit)
        if _FLOAT_STR.fullmatch(s):
            return epoch_to_ns(float(s), unit)
        return iso_to_ns(s)
    if x is None:
        raise BadTimestamp("bad_ts", "timestamp is null")
    raise BadTimestamp("bad_ts", f"timestamp must be a number or a string, got {t.__name__}")
