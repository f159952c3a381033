"""Alarm conditions: the per-reading decision, with no I/O and no clock of their own.

Every condition keeps its debounced state in ``active``. The engine feeds it values with
its monotonic time ``now`` (seconds) and the reading's source timestamp ``ts`` (ns);
``feed`` returns :data:`NO_CHANGE`, :data:`CHANGED` (``active`` flipped) or
:data:`PENDING` (a delay started: ``due`` holds the monotonic time at which the engine's
timer must call ``expire``). The common case, a reading that changes nothing, costs one or
two comparisons.

Semantics (also in alerting/README.md):

* high limit: raised at ``value >= limit`` (exactly at the limit counts), returns when
  ``value < limit - deadband``; low limit mirrors it (``<= limit`` / ``> limit + deadband``).
* on/off delay: the raw condition must hold for the whole delay; a single reading on the
  other side cancels the pending delay ("delay cancelled by a dip").
* ROC: least-squares slope over a sliding window of source timestamps, in unit per ``per``;
  held (no decision) until the window has at least 3 points spanning half the window.
* FROZEN: value within ``tolerance`` of a reference value for ``after`` seconds.
* BAD: the reading's quality is in a configured set, optionally for ``on_delay``.
* STALE: no reading within ``stale_after`` (set by the engine's scan) or a ``stale``
  reading.
* DISCRETE: a boolean point equals the alarm ``state``.
* VOTE: at least ``k`` of ``n`` member detectors tripped; bad or stale members count as
  tripped. It raises as soon as ``k`` members are tripped, but clears only once every
  member has reported (or gone stale) since the start: after a restart an active vote is
  not cleared by the first detector that reads clean.

Conditions never see bad data as a reason to return: the engine only feeds values of
``good`` and ``uncertain`` readings (an over-range gas reading is ``uncertain`` and must
still alarm), so a detector that fails while in alarm keeps its limit alarms active and
raises BAD on top.
"""

from __future__ import annotations

from collections import deque
from typing import Final

NO_CHANGE: Final = 0
CHANGED: Final = 1
PENDING: Final = 2


class Delayed:
    """Debounce of a raw boolean into ``active`` with on/off delays (seconds)."""

    __slots__ = ("active", "due", "off_delay", "on_delay")

    def __init__(self, on_delay: float = 0.0, off_delay: float = 0.0) -> None:
        self.active = False
        self.due: float | None = None
        self.on_delay = on_delay
        self.off_delay = off_delay

    def _differs(self, now: float) -> int:
        """The raw condition differs from ``active``: flip now, or start / finish the delay."""
        delay = self.off_delay if self.active else self.on_delay
        if delay <= 0.0:
            self.active = not self.active
            self.due = None
            return CHANGED
        due = self.due
        if due is None:
            self.due = now + delay
            return PENDING
        if now >= due:
            self.active = not self.active
            self.due = None
            return CHANGED
        return NO_CHANGE

    def expire(self, now: float) -> bool:
        """Timer: complete a pending delay whose time has come. True if ``active`` flipped.

        A pending delay exists only while the raw condition differs from ``active``: any
        reading that agrees with ``active`` cancels it, so flipping here is correct.
        """
        if self.due is not None and now >= self.due:
            self.active = not self.active
            self.due = None
            return True
        return False

    def restore(self, active: bool) -> None:
        self.active = active
        self.due = None


class HighLimit(Delayed):
    """H / HH: raised at ``value >= limit``, returns at ``value < limit - deadband``."""

    __slots__ = ("clear_below", "limit")

    def __init__(self, limit: float, deadband: float = 0.0, on_delay: float = 0.0, off_delay: float = 0.0) -> None:
        super().__init__(on_delay, off_delay)
        self.limit = limit
        self.clear_below = limit - deadband

    def feed(self, v: float, now: float, ts: int = 0) -> int:
        if self.active:
            if v >= self.clear_below:
                if self.due is not None:
                    self.due = None
                return NO_CHANGE
        elif v < self.limit:
            if self.due is not None:
                self.due = None
            return NO_CHANGE
        return self._differs(now)


class LowLimit(Delayed):
    """L / LL: raised at ``value <= limit``, returns at ``value > limit + deadband``."""

    __slots__ = ("clear_above", "limit")

    def __init__(self, limit: float, deadband: float = 0.0, on_delay: float = 0.0, off_delay: float = 0.0) -> None:
        super().__init__(on_delay, off_delay)
        self.limit = limit
        self.clear_above = limit + deadband

    def feed(self, v: float, now: float, ts: int = 0) -> int:
        if self.active:
            if v <= self.clear_above:
                if self.due is not None:
                    self.due = None
                return NO_CHANGE
        elif v > self.limit:
            if self.due is not None:
                self.due = None
            return NO_CHANGE
        return self._differs(now)


class Discrete(Delayed):
    """A boolean point (0.0 / 1.0) in the alarm ``state``, e.g. ESD valve closed."""

    __slots__ = ("state",)

    def __init__(self, state: bool = True, on_delay: float = 0.0) -> None:
        super().__init__(on_delay, 0.0)
        self.state = state

    def feed(self, v: float, now: float, ts: int = 0) -> int:
        if ((v != 0.0) == self.state) == self.active:
            if self.due is not None:
                self.due = None
            return NO_CHANGE
        return self._differs(now)


class BadQuality(Delayed):
    """The reading's quality is one of ``qualities`` (default bad, comm)."""

    __slots__ = ("qualities",)

    def __init__(self, qualities: frozenset[str], on_delay: float = 0.0) -> None:
        super().__init__(on_delay, 0.0)
        self.qualities = qualities

    def feed_quality(self, quality: str, now: float) -> int:
        if (quality in self.qualities) == self.active:
            if self.due is not None:
                self.due = None
            return NO_CHANGE
        return self._differs(now)


class Stale:
    """No reading within ``after`` seconds, or a reading whose quality is ``stale``."""

    __slots__ = ("active", "after", "due")

    def __init__(self, after: float) -> None:
        self.active = False
        self.due: float | None = None
        self.after = after

    def set(self, stale: bool) -> int:
        if stale == self.active:
            return NO_CHANGE
        self.active = stale
        return CHANGED

    def expire(self, now: float) -> bool:
        return False

    def restore(self, active: bool) -> None:
        self.active = active


class Frozen:
    """Value unchanged (within ``tolerance`` of a reference) for ``after`` seconds."""

    __slots__ = ("active", "after", "due", "ref", "since", "tolerance")

    def __init__(self, after: float, tolerance: float = 0.0) -> None:
        self.active = False
        self.due: float | None = None
        self.after = after
        self.tolerance = tolerance
        self.ref: float | None = None
        self.since = 0.0

    def feed(self, v: float, now: float, ts: int = 0) -> int:
        ref = self.ref
        if ref is None:  # first value (after a restart: keep a restored state until the value moves)
            self.ref = v
            self.since = now
            return NO_CHANGE
        if abs(v - ref) > self.tolerance:
            self.ref = v
            self.since = now
            if self.active:
                self.active = False
                return CHANGED
            return NO_CHANGE
        if not self.active and now - self.since >= self.after:
            self.active = True
            return CHANGED
        return NO_CHANGE

    def expire(self, now: float) -> bool:
        return False

    def restore(self, active: bool) -> None:
        self.active = active
        self.ref = None


class RateOfChange:
    """Least-squares slope of (source time, value) over a sliding window.

    Running sums make each reading O(1). Times are kept relative to a base that is moved
    forward (and the sums recomputed) every few windows, so the sums never lose precision
    on a long run. At most ``max_points`` points are kept; beyond that the oldest drop out,
    which only shortens the effective window of a very fast source.
    """

    __slots__ = (
        "_base",
        "_n_since_rebase",
        "_sx",
        "_sxx",
        "_sxy",
        "_sy",
        "_vs",
        "_xs",
        "active",
        "direction",
        "due",
        "limit",
        "max_points",
        "min_span",
        "per",
        "rate",
        "window",
    )

    def __init__(
        self,
        limit: float,
        per: float = 60.0,
        window: float | None = None,
        direction: str = "both",
        max_points: int = 1024,
    ) -> None:
        if limit <= 0 or per <= 0:
            raise ValueError("ROC limit and per must be > 0")
        if direction not in ("rise", "fall", "both"):
            raise ValueError(f"ROC direction must be rise, fall or both, got {direction!r}")
        self.active = False
        self.due: float | None = None
        self.limit = limit
        self.per = per
        self.window = window if window and window > 0 else per
        self.min_span = self.window / 2.0
        self.direction = direction
        self.max_points = max(3, max_points)
        self.rate: float | None = None  # last computed rate, unit per ``per``
        self._xs: deque[float] = deque()
        self._vs: deque[float] = deque()
        self._base = 0  # ns
        self._sx = self._sy = self._sxx = self._sxy = 0.0
        self._n_since_rebase = 0

    def _add(self, x: float, v: float) -> None:
        self._xs.append(x)
        self._vs.append(v)
        self._sx += x
        self._sy += v
        self._sxx += x * x
        self._sxy += x * v

    def _drop(self) -> None:
        x = self._xs.popleft()
        v = self._vs.popleft()
        self._sx -= x
        self._sy -= v
        self._sxx -= x * x
        self._sxy -= x * v

    def _rebase(self) -> None:
        """Move the time base to the oldest point and recompute the sums exactly."""
        shift = self._xs[0]
        self._base += int(shift * 1e9)
        shift_s = int(shift * 1e9) * 1e-9
        xs = [x - shift_s for x in self._xs]
        vs = list(self._vs)
        self._xs = deque(xs)
        self._sx = sum(xs)
        self._sy = sum(vs)
        self._sxx = sum(x * x for x in xs)
        self._sxy = sum(x * v for x, v in zip(xs, vs, strict=True))
        self._n_since_rebase = 0

    def feed(self, v: float, now: float, ts: int = 0) -> int:
        xs = self._xs
        if not xs:
            self._base = ts
            self._sx = self._sy = self._sxx = self._sxy = 0.0
            self._n_since_rebase = 0
        x = (ts - self._base) * 1e-9
        if xs and x <= xs[-1]:
            return NO_CHANGE  # duplicate or out-of-order source timestamp: no information on the slope
        self._add(x, v)
        self._n_since_rebase += 1
        cutoff = x - self.window
        while xs[0] < cutoff or len(xs) > self.max_points:
            self._drop()
        if x > 4.0 * self.window or self._n_since_rebase > 100_000:
            self._rebase()
        n = len(xs)
        if n < 3 or xs[-1] - xs[0] < self.min_span:
            return NO_CHANGE  # not enough data to decide: hold
        den = n * self._sxx - self._sx * self._sx
        if den <= 0.0:
            return NO_CHANGE
        rate = (n * self._sxy - self._sx * self._sy) / den * self.per
        self.rate = rate
        d = self.direction
        if d == "rise":
            raw = rate >= self.limit
        elif d == "fall":
            raw = rate <= -self.limit
        else:
            raw = abs(rate) >= self.limit
        if raw == self.active:
            return NO_CHANGE
        self.active = raw
        return CHANGED

    def expire(self, now: float) -> bool:
        return False

    def restore(self, active: bool) -> None:
        self.active = active


class KofN:
    """VOTE: ``k`` of ``n`` members tripped. ``count`` is the severity (members tripped)."""

    __slots__ = ("_known", "_tripped", "active", "count", "due", "k", "known", "n")

    def __init__(self, k: int, n: int) -> None:
        if not 1 <= k <= n:
            raise ValueError(f"vote needs 1 <= k <= n, got k={k}, n={n}")
        self.active = False
        self.due: float | None = None
        self.k = k
        self.n = n
        self.count = 0
        self.known = 0
        self._tripped = [False] * n
        self._known = [False] * n

    def update(self, i: int, tripped: bool) -> int:
        if not self._known[i]:
            self._known[i] = True
            self.known += 1
        if self._tripped[i] != tripped:
            self._tripped[i] = tripped
            self.count += 1 if tripped else -1
        raw = self.count >= self.k
        if raw == self.active:
            return NO_CHANGE
        if not raw and self.known < self.n:
            return NO_CHANGE  # a member not heard from yet may be tripped: do not clear
        self.active = raw
        return CHANGED

    def expire(self, now: float) -> bool:
        return False

    def restore(self, active: bool) -> None:
        self.active = active
