"""Planner: request counts for given layouts, limits, gaps, splitting."""

from __future__ import annotations

import functools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.modbus.planner import Request, Span, count_requests, plan_requests, request_for, split_request


def spans(table: str, layout: list[tuple[int, int]]) -> list[Span]:
    return [Span(i, table, start, count) for i, (start, count) in enumerate(layout)]


def floats_at(starts: list[int], table: str = "holding") -> list[Span]:
    return spans(table, [(s, 2) for s in starts])


@pytest.mark.parametrize(
    ("layout", "limits", "expected"),
    [
        # 100 contiguous float32 = 200 registers -> 125 + 75
        (floats_at(list(range(0, 200, 2))), {}, 2),
        # one register each, every 10 registers: gaps of 9 <= max_gap 16 -> one read of 991
        # registers is too long: 125-register windows -> ceil(991/125) = 8 reads
        (spans("holding", [(a, 1) for a in range(0, 1000, 10)]), {}, 8),
        # the same with max_gap 8: no merging at all
        (spans("holding", [(a, 1) for a in range(0, 1000, 10)]), {"max_gap": 8}, 100),
        # gap exactly max_gap merges, one more does not
        (spans("holding", [(0, 1), (17, 1)]), {"max_gap": 16}, 1),
        (spans("holding", [(0, 1), (18, 1)]), {"max_gap": 16}, 2),
        # max_gap 0: only adjacent points merge
        (spans("holding", [(0, 2), (2, 2), (5, 1)]), {"max_gap": 0}, 2),
        # overlapping points (a float and a status bit inside it) share a read
        (spans("holding", [(10, 2), (10, 1), (11, 1)]), {}, 1),
        # a device that serves at most 4 registers per read
        (spans("holding", [(a, 1) for a in range(10)]), {"max_registers": 4}, 3),
        # tables never merge
        ([Span(0, "holding", 0, 1), Span(1, "input", 0, 1), Span(2, "coil", 0, 1), Span(3, "discrete", 0, 1)], {}, 4),
        # 2000 coils in one read, 2001 in two; max_bits 100 -> 20
        (spans("coil", [(a, 1) for a in range(2000)]), {}, 1),
        (spans("coil", [(a, 1) for a in range(2001)]), {}, 2),
        (spans("discrete", [(a, 1) for a in range(2000)]), {"max_bits": 100}, 20),
        # a string longer than the limit still gets one (own) request
        (spans("holding", [(0, 1), (1, 10), (11, 1)]), {"max_registers": 5}, 3),
        # 50 devices x 100 points bench layout: 100 uint16 + float32 alternating
        (spans("holding", [(i * 3, 1) for i in range(50)] + [(i * 3 + 1, 2) for i in range(50)]), {}, 2),
    ],
)
def test_request_count(layout: list[Span], limits: dict[str, int], expected: int) -> None:
    reqs = plan_requests(layout, **limits)
    assert len(reqs) == expected
    assert count_requests(layout, **limits) == expected
    _check_plan(layout, reqs, limits)


def _check_plan(layout: list[Span], reqs: list[Request], limits: dict[str, int]) -> None:
    keys = sorted(s.key for r in reqs for s in r.spans)
    assert keys == sorted(s.key for s in layout), "every point in exactly one request"
    for r in reqs:
        for s in r.spans:
            assert s.table == r.table and r.start <= s.start and s.end <= r.end
        limit = limits.get("max_bits", 2000) if r.table in ("coil", "discrete") else limits.get("max_registers", 125)
        assert r.count <= limit or len(r.spans) == 1
        assert r.start == min(s.start for s in r.spans) and r.end == max(s.end for s in r.spans)


def test_plan_is_ordered_by_table_then_address() -> None:
    layout = [Span(0, "coil", 5, 1), Span(1, "holding", 300, 2), Span(2, "input", 0, 1), Span(3, "holding", 0, 2)]
    assert [r.label for r in plan_requests(layout)] == ["holding@0+2", "holding@300+2", "input@0+1", "coil@5+1"]


def test_invalid_input() -> None:
    with pytest.raises(ValueError, match="unknown table"):
        plan_requests([Span(0, "register", 0, 1)])
    with pytest.raises(ValueError, match="address space"):
        plan_requests([Span(0, "holding", 65535, 2)])
    with pytest.raises(ValueError, match="share a table"):
        request_for([Span(0, "holding", 0, 1), Span(1, "input", 0, 1)])


def _optimal(layout: list[Span], limit: int, gap: int) -> int:
    """Fewest requests by dynamic programming over address-ordered groups (reference)."""
    ordered = sorted(layout, key=lambda s: (s.start, s.end))

    @functools.cache
    def best(i: int) -> int:
        if i == len(ordered):
            return 0
        result = 10**9
        end = ordered[i].end
        for j in range(i, len(ordered)):
            if j > i:
                if ordered[j].start - end > gap:
                    break
                end = max(end, ordered[j].end)
            if end - ordered[i].start > limit and j > i:
                break
            result = min(result, 1 + best(j + 1))
        return result

    return best(0)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 400), st.sampled_from([1, 2, 4])), min_size=1, max_size=30),
    st.integers(4, 125),
    st.integers(0, 20),
)
def test_greedy_plan_is_minimal_and_valid(layout: list[tuple[int, int]], limit: int, gap: int) -> None:
    ss = spans("holding", layout)
    reqs = plan_requests(ss, max_registers=limit, max_gap=gap)
    _check_plan(ss, reqs, {"max_registers": limit})
    assert len(reqs) == _optimal(ss, limit, gap)


def test_split_cuts_at_the_widest_hole() -> None:
    req = plan_requests(spans("holding", [(0, 2), (2, 2), (10, 2), (12, 2), (14, 1)]))[0]
    assert req.label == "holding@0+15"
    a, b = split_request(req)
    assert (a.label, b.label) == ("holding@0+4", "holding@10+5")
    assert {s.key for s in a.spans} | {s.key for s in b.spans} == {0, 1, 2, 3, 4}


def test_split_without_holes_halves_and_isolates_in_log_steps() -> None:
    layout = spans("holding", [(a, 1) for a in range(16)])
    req = plan_requests(layout)[0]
    a, b = split_request(req)
    assert (a.count, b.count) == (8, 8)
    # isolate point 5 by repeated splitting: log2(16) = 4 splits
    current, steps = req, 0
    while len(current.spans) > 1:
        x, y = split_request(current)
        current = x if any(s.key == 5 for s in x.spans) else y
        steps += 1
    assert steps == 4 and current.spans[0].key == 5
    with pytest.raises(ValueError, match="single point"):
        split_request(current)
