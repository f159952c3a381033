"""The commit signal (issue 20): Pipeline.ticket/wait over a spool's mark/committed.

A source acknowledges its input once ``wait`` says the readings are committed (or, without a
commit point, dispatched to the alarm engine); a failing or closing store answers False at
once, a slow one after the limit, so nothing upstream stalls on a broken disk.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence
from pathlib import Path

from gateway.core.metrics import Metrics
from gateway.core.models import Reading
from gateway.pipeline import Pipeline
from gateway.spool import MemorySpool, Spool


class Sink:
    """A pipeline subscriber appending one line per reading to a spool, like InfluxSink."""

    name = "sink"

    def __init__(self, queue: MemorySpool | Spool) -> None:
        self.queue = queue

    def on_readings(self, batch: Sequence[Reading]) -> None:
        self.queue.append("reading", [f"r {r.tag} {r.ts}" for r in batch])


def batch(n: int, base: int = 0) -> list[Reading]:
    return [Reading("T", float(i), base + i + 1, "good") for i in range(n)]


async def test_without_a_commit_point_the_wait_ends_at_dispatch() -> None:
    pipe = Pipeline(Metrics())
    await pipe.start()
    try:
        async with pipe.hold():  # nothing is dispatched while held
            await pipe.emit(batch(3))
            t = pipe.ticket()
            waiter = asyncio.create_task(pipe.wait(t, 5.0))
            await asyncio.sleep(0.05)
            assert not waiter.done()
        assert await asyncio.wait_for(waiter, 5) is True
        assert pipe.dispatched == 3
    finally:
        await pipe.stop()


async def test_a_waiter_gets_a_commit_at_once_not_after_the_interval(tmp_path: Path) -> None:
    metrics = Metrics()
    for queue in (MemorySpool(name="m", metrics=metrics, commit_interval=60.0),
                  Spool(tmp_path / "s", name="s", metrics=metrics, max_bytes=1 << 24, commit_interval=60.0)):
        pipe = Pipeline(metrics)
        pipe.subscribe(Sink(queue))
        pipe.commit_point = queue
        await queue.open()
        await pipe.start()
        try:
            await pipe.emit(batch(10))
            t = pipe.ticket()
            t0 = time.monotonic()
            assert await pipe.wait(t, 5.0) is True
            assert time.monotonic() - t0 < 1.0  # not the 60 s commit interval
            assert queue.mark() == 10 and await queue.committed(10)
            # many batches, one wait each: all pass, in order, with few commits
            tickets = []
            for k in range(50):
                await pipe.emit(batch(100, base=1000 * (k + 1)))
                tickets.append(pipe.ticket())
            results = await asyncio.gather(*(pipe.wait(t, 5.0) for t in tickets))
            assert results == [True] * 50
        finally:
            await pipe.stop()
            await queue.close()


async def test_failing_closed_or_slow_stores_answer_false(tmp_path: Path) -> None:
    metrics = Metrics()
    spool = Spool(tmp_path / "s", name="s", metrics=metrics, max_bytes=1 << 24, commit_interval=60.0)
    await spool.open()
    pipe = Pipeline(metrics)
    pipe.subscribe(Sink(spool))
    pipe.commit_point = spool
    await pipe.start()
    try:
        # failing: the last commit failed -> False at once (the caller acknowledges anyway)
        spool.last_error = "commit: OSError: [Errno 28] No space left on device"
        await pipe.emit(batch(5))
        t0 = time.monotonic()
        assert await pipe.wait(pipe.ticket(), 5.0) is False
        assert time.monotonic() - t0 < 0.5
        spool.last_error = None
        assert await pipe.wait(pipe.ticket(), 5.0) is True  # healthy again: commits
        # slow: a commit that does not come within the limit -> False after the limit

        async def never(full_only: bool) -> bool:
            await asyncio.sleep(3600)
            return True

        real = spool._commit
        spool._commit = never  # type: ignore[method-assign]
        await pipe.emit(batch(5, base=100))
        t0 = time.monotonic()
        assert await pipe.wait(pipe.ticket(), 0.3) is False
        assert 0.25 < time.monotonic() - t0 < 2.0
        assert spool._committer is not None
        spool._committer.cancel()  # the stuck commit
        spool._commit = real  # type: ignore[method-assign]
    finally:
        await pipe.stop()
        await spool.close()  # commits what is pending with the real commit
    # closed: a waiter for readings no commit passed gets False
    assert await spool.committed(spool.mark() + 1) is False
