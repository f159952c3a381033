"""OPC UA DataValues -> readings, and the per-point state behind re-assertion.

Mapping (README.md, "Values and quality"):

* status Good -> ``good`` (``uncertain`` when the value is outside the tag's range),
  Uncertain -> ``uncertain`` with the value, Bad -> ``bad`` without a value;
* Boolean -> 1.0 / 0.0, for discrete tags only; numbers (SByte .. Double) -> float; a discrete
  tag also takes a number that is exactly 0 or 1;
* anything else (String, DateTime, arrays, structures, an empty value with a Good status),
  a Boolean for an analog tag, NaN/Inf: the point reads ``bad`` and the problem is counted
  (``hazardgw_decode_errors_total{reason}``) and logged rate-limited;
* timestamp: SourceTimestamp, else ServerTimestamp, else the time of receipt. A value the
  server confirms again unchanged (the same SourceTimestamp in a poll; a publishing cycle
  without a change for a subscribed item) is re-asserted with the time of that
  confirmation (never earlier than the last timestamp of the point), so a steady value is a
  fresh reading every interval, as from a polled register.

Everything is kept in flat lists indexed by point number (the monitored item's client
handle): no per-reading objects beyond the :class:`Reading` tuple.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gateway.core.config import Tag
from gateway.core.models import Quality, Reading

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_US = dt.timedelta(microseconds=1)
_MIN_TS = 86_400 * 10**9  # timestamps before 1970-01-02 mean "no timestamp" (OPC UA's 1601 zero)

# Variant type numbers (OPC UA Part 6): 1 Boolean, 2..11 SByte..Double
_BOOLEAN = 1
_NUMERIC = frozenset(range(2, 12))

GOOD: str = Quality.GOOD
BAD: str = Quality.BAD
UNCERTAIN: str = Quality.UNCERTAIN
COMM: str = Quality.COMM

Report = Callable[[int, str, str], None]  # (point index, reason, detail)


def ts_ns(t: dt.datetime | None) -> int:
    """A DataValue timestamp in ns since the epoch; 0 when absent (None or OPC UA's zero)."""
    if t is None:
        return 0
    ns = ((t - _EPOCH) if t.tzinfo is not None else (t - _EPOCH_NAIVE)) // _US * 1000
    return ns if ns >= _MIN_TS else 0


def severity(code: int) -> str:
    """good / uncertain / bad from a status code's two top bits."""
    top = code >> 30
    return GOOD if top == 0 else (UNCERTAIN if top == 1 else BAD)


class PointTable:
    """The points of one source (index = client handle), their tags' kinds and ranges, and
    the last state of each for re-assertion."""

    def __init__(self, tags: Sequence[str], tag_table: Mapping[str, Tag], report: Report) -> None:
        n = len(tags)
        self.tags = list(tags)
        self.discrete = [tag_table[t].kind == "discrete" if t in tag_table else False for t in tags]
        self.lo: list[float] = []
        self.hi: list[float] = []
        for t in tags:
            rng = tag_table[t].range if t in tag_table else None
            self.lo.append(float(rng[0]) if rng else -math.inf)
            self.hi.append(float(rng[1]) if rng else math.inf)
        self._report = report
        # state: None quality = nothing known since the last (re)connect
        self.value: list[float | None] = [None] * n
        self.quality: list[str | None] = [None] * n
        self.src_ts = [0] * n  # the server's timestamp of the current value (0: none given)
        self.last_ts = [0] * n  # timestamp of the last reading emitted
        self.fresh = bytearray(n)  # 1: a reading went out since the last re-assertion tick

    def __len__(self) -> int:
        return len(self.tags)

    def forget(self) -> None:
        """After a connection loss: nothing is known until the server reports again."""
        n = len(self.tags)
        self.value = [None] * n
        self.quality = [None] * n
        self.src_ts = [0] * n
        self.fresh = bytearray(n)

    # ------------------------------------------------------------------ hot path
    def update(self, i: int, dv: Any, recv_ns: int, *, confirm: bool = False) -> Reading:
        """The reading for a DataValue of point ``i``; records it as the point's state.

        ``confirm``: a poll, where an unchanged SourceTimestamp means "no new sample"."""
        status = dv.StatusCode
        code = status.value if status is not None else 0
        q = severity(code)
        src = ts_ns(dv.SourceTimestamp) or ts_ns(dv.ServerTimestamp)
        value: float | None = None
        if q is not BAD:
            var = dv.Value
            raw = var.Value if var is not None else None
            vt = var.VariantType if var is not None else None
            vt_n = int(vt) if vt is not None else 0
            if raw is None or isinstance(raw, list) or getattr(var, "Dimensions", None):
                value = None
                if raw is None:
                    if q is GOOD:
                        self._report(i, "empty_value", "Good status without a value")
                        q = BAD
                else:
                    self._report(i, "type_mismatch", f"an array of {getattr(vt, 'name', vt)}")
                    q = BAD
            elif vt_n == _BOOLEAN:
                if self.discrete[i]:
                    value = 1.0 if raw else 0.0
                else:
                    self._report(i, "type_mismatch", "Boolean for a non-discrete tag (use kind: discrete)")
                    q = BAD
            elif vt_n in _NUMERIC:
                value = float(raw)
                if not math.isfinite(value):
                    self._report(i, "not_finite", f"value {value!r}")
                    value, q = None, BAD
                elif self.discrete[i]:
                    if value not in (0.0, 1.0):
                        self._report(i, "not_discrete", f"{value!r} for a discrete tag (0 or 1 expected)")
                        value, q = None, BAD
                elif q is GOOD and not self.lo[i] <= value <= self.hi[i]:
                    q = UNCERTAIN
            else:
                self._report(i, "type_mismatch", f"{getattr(vt, 'name', vt)} where a number is expected")
                q = BAD
        last = self.last_ts[i]
        if src == 0:
            ts = recv_ns
        elif confirm and src == self.src_ts[i] and q == self.quality[i] and value == self.value[i]:
            ts = recv_ns  # the same sample again: confirmed now
        else:
            ts = src
        if ts < last and (confirm or src == 0):
            ts = last
        self.src_ts[i] = src
        self.value[i] = value
        self.quality[i] = q
        self.last_ts[i] = ts
        self.fresh[i] = 1
        return Reading(self.tags[i], value, ts, q)

    def bad(self, i: int, now_ns: int) -> Reading:
        """Point ``i`` cannot be read (no such node, monitored item refused...)."""
        self.value[i] = None
        self.quality[i] = BAD
        ts = max(now_ns, self.last_ts[i])
        self.last_ts[i] = ts
        self.fresh[i] = 1
        return Reading(self.tags[i], None, ts, BAD)

    def reassert(self, indexes: Sequence[int] | range, now_ns: int) -> list[Reading]:
        """Readings for the points among ``indexes`` that sent nothing since the last call and
        whose state is known, confirmed at ``now_ns``; clears the fresh marks."""
        out: list[Reading] = []
        fresh, quality, value, last, tags = self.fresh, self.quality, self.value, self.last_ts, self.tags
        for i in indexes:
            if fresh[i]:
                fresh[i] = 0
                continue
            q = quality[i]
            if q is None:
                continue
            ts = now_ns if now_ns > last[i] else last[i]
            last[i] = ts
            out.append(Reading(tags[i], value[i], ts, q))
        return out

    def comm(self, now_ns: int) -> list[Reading]:
        """Connection lost: every point reads ``comm`` without a value; state forgotten."""
        self.forget()
        out = []
        for i, tag in enumerate(self.tags):
            ts = now_ns if now_ns > self.last_ts[i] else self.last_ts[i]
            self.last_ts[i] = ts
            out.append(Reading(tag, None, ts, COMM))
        return out

    def unknown_comm(self, now_ns: int) -> list[Reading]:
        """``comm`` for the points nothing is known of (no session, or no value yet since it
        started); called once per interval."""
        out = []
        last, tags = self.last_ts, self.tags
        for i, q in enumerate(self.quality):
            if q is None:
                ts = now_ns if now_ns > last[i] else last[i]
                last[i] = ts
                out.append(Reading(tags[i], None, ts, COMM))
        return out
