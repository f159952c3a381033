"""Pipeline order, backpressure and fault isolation; live state and the stale watcher."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from helpers import async_wait_for

from gateway.config import Config
from gateway.core.intervals import stale_limits
from gateway.core.metrics import Metrics
from gateway.core.models import Quality, Reading
from gateway.livestate import LiveState, StaleWatcher
from gateway.pipeline import Pipeline


class Collect:
    def __init__(self, name: str = "collect") -> None:
        self.name = name
        self.got: list[Reading] = []

    def on_readings(self, batch: Sequence[Reading]) -> None:
        self.got.extend(batch)


class Broken:
    name = "broken"

    def on_readings(self, batch: Sequence[Reading]) -> None:
        raise RuntimeError("boom")


def r(i: int, tag: str = "T") -> Reading:
    return Reading(tag, float(i), i, Quality.GOOD)


async def test_order_kept_and_every_subscriber_sees_everything() -> None:
    m = Metrics()
    p = Pipeline(m, max_readings=1000)
    a, b = Collect("a"), Collect("b")
    p.subscribe(a)
    p.subscribe(Broken())  # a failing subscriber is counted and isolated
    p.subscribe(b)
    await p.start()
    for i in range(0, 500, 5):
        await p.emit([r(j) for j in range(i, i + 5)])
    await async_wait_for(lambda: len(b.got) == 500)
    await p.stop()
    assert [x.value for x in a.got] == [float(i) for i in range(500)]
    assert a.got == b.got
    assert m.subscriber_errors.labels("broken")._value.get() == 100
    assert p.dispatched == 500


async def test_backpressure_blocks_producers_instead_of_dropping() -> None:
    m = Metrics()
    p = Pipeline(m, max_readings=10)
    c = Collect()
    p.subscribe(c)
    # not started: nothing drains, so the 3rd batch of 5 must wait
    await p.emit([r(i) for i in range(5)])
    await p.emit([r(i) for i in range(5, 10)])
    blocked = asyncio.create_task(p.emit([r(i) for i in range(10, 15)]))
    await asyncio.sleep(0.05)  # give the producer a chance to (wrongly) get through
    assert not blocked.done()
    assert p.depth == 10
    await p.start()
    await asyncio.wait_for(blocked, 5)
    await async_wait_for(lambda: len(c.got) == 15)
    await p.stop()
    assert [x.value for x in c.got] == [float(i) for i in range(15)]


async def test_stop_dispatches_what_is_queued() -> None:
    p = Pipeline(Metrics())
    c = Collect()
    p.subscribe(c)
    await p.start()
    await p.emit([r(i) for i in range(100)])
    await p.stop()
    assert len(c.got) == 100


async def test_a_backlog_is_dispatched_in_slices_that_let_other_tasks_run() -> None:
    """Issue 23: 50 queued batches of 100 readings with slices of 1,000: the dispatcher yields
    between slices, so a task that only counts loop turns runs while the backlog is evaluated
    (it used to run only after the whole queue), and order is kept."""
    p = Pipeline(Metrics(), max_readings=100_000, slice_readings=1000)
    seen: list[tuple[int, int]] = []  # (readings dispatched so far, ticks of the other task)
    ticks = 0

    class Watch:
        name = "watch"

        def on_readings(self, batch: Sequence[Reading]) -> None:
            seen.append((p.dispatched + len(batch), ticks))

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0)

    c = Collect()
    p.subscribe(c)
    p.subscribe(Watch())
    for i in range(50):  # queued before the dispatcher starts: one backlog
        p._queue.append([r(i * 100 + j) for j in range(100)])
        p._count += 100
        p._batches_in += 1
    p._has_data.set()
    t = asyncio.create_task(ticker())
    await p.start()
    await async_wait_for(lambda: len(c.got) == 5000)
    await p.stop()
    t.cancel()
    assert [x.value for x in c.got] == [float(i) for i in range(5000)]
    ticks_during = {tk for _, tk in seen}
    assert len(ticks_during) >= 5, f"the other task ran between only {len(ticks_during)} slices"
    # each slice is whole batches, 1,000 readings here
    by_tick: dict[int, int] = {}
    for _n, tk in seen:
        by_tick[tk] = by_tick.get(tk, 0) + 100
    assert max(by_tick.values()) <= 1000


async def test_emit_yields_when_more_than_a_slice_waits() -> None:
    """A producer emitting without ever suspending (MQTT decoding a full incoming queue) lets
    the dispatcher run between its batches once more than a slice is queued."""
    p = Pipeline(Metrics(), max_readings=100_000, slice_readings=500)
    c = Collect()
    p.subscribe(c)
    await p.start()
    depth = []
    for i in range(40):
        await p.emit([r(i * 100 + j) for j in range(100)])
        depth.append(p.depth)
    await p.stop()
    assert len(c.got) == 4000
    assert max(depth) <= 1000, f"the producer ran ahead of the dispatcher: depth {max(depth)}"


def test_live_state_keeps_latest_and_arrival_time() -> None:
    now = [100.0]
    live = LiveState(clock=lambda: now[0])
    live.on_readings([r(1, "A"), r(2, "A"), r(3, "B")])
    assert live.get("A") == r(2, "A")
    assert live.received == {"A": 100.0, "B": 100.0}
    now[0] = 105.0
    live.on_readings([Reading("A", None, 9, Quality.STALE)])
    assert live.received["A"] == 100.0  # a stale marker is not a fresh reading


def _config() -> Config:
    return Config.model_validate(
        {
            "site": {"code": "S", "name": "S"},
            "sources": [
                {"id": "m1", "type": "modbus_tcp", "host": "127.0.0.1", "poll_interval": "2s",
                 "points": [{"tag": "P1", "address": 0}, {"tag": "P2", "address": 1}]},
            ],
            "tags": [{"id": "P1"}, {"id": "P2", "stale_after": "30s"}, {"id": "M1", "stale_after": "5s"},
                     {"id": "NEVER"}],
        }
    )


def test_stale_limits_default_to_three_poll_intervals() -> None:
    assert stale_limits(_config()) == {"P1": 6.0, "P2": 30.0, "M1": 5.0}


async def test_stale_watcher_marks_silent_tags_once_and_never_repeats_a_value() -> None:
    now = [0.0]
    clock = lambda: now[0]  # noqa: E731
    live = LiveState(clock)
    p = Pipeline(Metrics())
    w = StaleWatcher(live, p, stale_limits(_config()), clock=clock)
    w._started = 0.0
    live.on_readings([Reading("P1", 1.5, 1, "good"), Reading("M1", 7.0, 1, "good")])
    now[0] = 4.9
    assert w.check() == []
    now[0] = 5.5
    assert [(x.tag, x.value, x.quality) for x in w.check()] == [("M1", None, "stale")]
    now[0] = 6.1
    due = w.check()
    assert sorted((x.tag, x.value, x.quality) for x in due) == [("M1", None, "stale"), ("P1", None, "stale")]
    live.on_readings(due)
    assert w.check() == []  # once, not every second
    live.on_readings([Reading("P1", 2.0, 2, "good")])  # fresh again
    now[0] = 12.2
    again = w.check()
    assert ("P1", "stale") in [(x.tag, x.quality) for x in again]
    now[0] = 31.0
    assert "P2" in [x.tag for x in w.check()]  # never reported at all -> stale too
