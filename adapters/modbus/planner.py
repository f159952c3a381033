"""Request planning: the points of one device merged into the fewest read requests.

Planned once when a source starts, never per poll. Points of the same table are sorted by
address and merged greedily while the merged read stays within ``max_registers`` (125)
or ``max_bits`` (2000) and no hole between neighbouring points exceeds ``max_gap``. For
runs of points in address order this greedy merge gives the minimum number of requests.

When a device rejects a merged read with "illegal data address" (some devices refuse to
read across unmapped registers), the poller replaces the request by the two halves of
:func:`split_request` and keeps the halves for every later poll.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

TABLES: Final = ("holding", "input", "coil", "discrete")
BIT_TABLES: Final = frozenset({"coil", "discrete"})
FUNCTION_CODES: Final = {"coil": 1, "discrete": 2, "holding": 3, "input": 4}  # read codes only


@dataclass(frozen=True, slots=True)
class Span:
    """What one point needs: ``count`` registers (or bits) of ``table`` from ``start``."""

    key: int  # the caller's handle for the point (its index in the source)
    table: str
    start: int
    count: int

    @property
    def end(self) -> int:
        return self.start + self.count


@dataclass(frozen=True, slots=True)
class Request:
    """One read: ``count`` registers/bits of ``table`` from ``start``, covering ``spans``."""

    table: str
    start: int
    count: int
    spans: tuple[Span, ...]

    @property
    def end(self) -> int:
        return self.start + self.count

    @property
    def function_code(self) -> int:
        return FUNCTION_CODES[self.table]

    @property
    def label(self) -> str:
        """``holding@100+12``: used in logs, metrics and health."""
        return f"{self.table}@{self.start}+{self.count}"


def request_for(spans: Sequence[Span]) -> Request:
    """The smallest request that covers ``spans`` (all of one table)."""
    if not spans:
        raise ValueError("a request needs at least one span")
    tables = {s.table for s in spans}
    if len(tables) != 1:
        raise ValueError(f"spans of one request must share a table, got {sorted(tables)}")
    ordered = tuple(sorted(spans, key=lambda s: (s.start, s.end, s.key)))
    start = ordered[0].start
    end = max(s.end for s in ordered)
    return Request(ordered[0].table, start, end - start, ordered)


def plan_requests(
    spans: Iterable[Span],
    *,
    max_registers: int = 125,
    max_bits: int = 2000,
    max_gap: int = 16,
) -> list[Request]:
    """Merge ``spans`` into the fewest requests; ordered by table, then address.

    A single span larger than the limit gets a request of its own (the device will
    answer with an exception if it really cannot serve it).
    """
    if max_registers < 1 or max_bits < 1 or max_gap < 0:
        raise ValueError("max_registers and max_bits must be >= 1, max_gap >= 0")
    by_table: dict[str, list[Span]] = {}
    for s in spans:
        if s.table not in FUNCTION_CODES:
            raise ValueError(f"unknown table {s.table!r}")
        if s.count < 1 or s.start < 0 or s.end > 65536:
            raise ValueError(f"span out of the Modbus address space: {s}")
        by_table.setdefault(s.table, []).append(s)

    out: list[Request] = []
    for table in TABLES:
        group = sorted(by_table.get(table, ()), key=lambda s: (s.start, s.end, s.key))
        if not group:
            continue
        limit = max_bits if table in BIT_TABLES else max_registers
        current: list[Span] = [group[0]]
        start, end = group[0].start, group[0].end
        for s in group[1:]:
            if s.start - end <= max_gap and max(end, s.end) - start <= limit:
                current.append(s)
                end = max(end, s.end)
            else:
                out.append(Request(table, start, end - start, tuple(current)))
                current, start, end = [s], s.start, s.end
        out.append(Request(table, start, end - start, tuple(current)))
    return out


def split_request(req: Request) -> tuple[Request, Request]:
    """Two requests covering the spans of ``req``, cut at its widest hole.

    The widest hole is the likeliest place for unmapped registers; with no hole (all
    points adjacent) the cut goes through the middle. Ties go to the cut nearest the
    middle, so repeated splitting isolates a bad address in O(log n) steps.
    """
    spans = req.spans
    if len(spans) < 2:
        raise ValueError(f"cannot split {req.label}: it covers a single point")
    best_i, best_key = 1, (float("-inf"), float("-inf"))
    covered_end = spans[0].end
    mid = len(spans) / 2
    for i in range(1, len(spans)):
        gap = spans[i].start - covered_end
        key = (max(gap, 0), -abs(i - mid))
        if key > best_key:
            best_i, best_key = i, key
        covered_end = max(covered_end, spans[i].end)
    return request_for(spans[:best_i]), request_for(spans[best_i:])


def count_requests(spans: Iterable[Span], **limits: int) -> int:
    """Number of requests :func:`plan_requests` makes (for tests and capacity planning)."""
    return len(plan_requests(spans, **limits))
