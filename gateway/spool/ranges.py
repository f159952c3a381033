"""A set of integers kept as sorted, disjoint, non-adjacent inclusive ranges.

The spool acknowledges blocks by id. Acks arrive mostly in runs (a batch is a run of
consecutive unacknowledged blocks), so the set stays a handful of ranges even while the
sink interleaves the newest blocks with the oldest ones.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable, Iterator


class RangeSet:
    __slots__ = ("_hi", "_lo")

    def __init__(self, ranges: Iterable[tuple[int, int]] = ()) -> None:
        self._lo: list[int] = []
        self._hi: list[int] = []
        for lo, hi in ranges:
            self.add(lo, hi)

    def __contains__(self, x: int) -> bool:
        i = bisect.bisect_right(self._lo, x) - 1
        return i >= 0 and x <= self._hi[i]

    def __len__(self) -> int:
        """Number of ranges (not of integers)."""
        return len(self._lo)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter(zip(self._lo, self._hi, strict=True))

    def __repr__(self) -> str:
        return f"RangeSet({list(self)})"

    def add(self, lo: int, hi: int | None = None) -> None:
        """Add ``lo..hi`` (inclusive; ``hi`` defaults to ``lo``), merging touching ranges."""
        if hi is None:
            hi = lo
        if hi < lo:
            return
        los, his = self._lo, self._hi
        # first range that could touch: its hi >= lo - 1
        i = bisect.bisect_left(his, lo - 1)
        j = i
        while j < len(los) and los[j] <= hi + 1:
            lo = min(lo, los[j])
            hi = max(hi, his[j])
            j += 1
        los[i:j] = [lo]
        his[i:j] = [hi]

    def covers(self, lo: int, hi: int) -> bool:
        """True when every integer of ``lo..hi`` is in the set."""
        i = bisect.bisect_right(self._lo, lo) - 1
        return i >= 0 and self._hi[i] >= hi

    def prune_below(self, x: int) -> None:
        """Forget everything below ``x``."""
        los, his = self._lo, self._hi
        i = bisect.bisect_left(his, x)
        del los[:i], his[:i]
        if los and los[0] < x:
            los[0] = x

    def max(self) -> int | None:
        return self._hi[-1] if self._hi else None

    def to_list(self) -> list[list[int]]:
        return [[lo, hi] for lo, hi in self]
