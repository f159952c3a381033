"""The one bounded pipeline between adapters and everything downstream.

Adapters ``await pipeline.emit(batch)``; a single dispatcher task hands each batch, in
order, to the subscribers (live state, alarm engine, sinks). Subscribers are synchronous
and must not do I/O: they update memory or append to their own bounded buffer.

Bound and overflow policy: the queue holds at most ``max_readings`` readings. When it is
full, ``emit`` waits (backpressure): MQTT then stops reading from the socket and the
broker holds QoS 1 messages; a Modbus poll is delayed and counted as late. Nothing is
dropped here, so no alarm can be lost in the pipeline. Drops can only happen at a remote
sink's buffer, which drops the oldest *readings* first and counts them.

Fairness: the dispatcher hands over at most ``slice_readings`` readings (whole batches; at
least one) per event-loop turn and then yields, so a backlog of ``max_readings`` readings
never holds the loop for its whole evaluation, and ``emit`` yields once when more than a
slice waits, so a producer with a backlog (MQTT decoding a full incoming queue) does not
hold it either: the spool's committer, the sink's requests, the notifier and the MQTT
reader run between slices (issue 23: a 100,000-reading burst
used to stall the loop for ~0.3 s, delaying alarm pushes and every write behind it).

Commit signal (:class:`gateway.core.sources.Durability`): a source that can have its input
sent again (MQTT QoS 1/2) takes a :meth:`Pipeline.ticket` after ``emit`` and acknowledges
its input once :meth:`Pipeline.wait` returns. The pipeline counts batches in and out; after
each dispatch round it notes the ``commit_point``'s mark (the InfluxDB spool: readings
appended so far), and a waiter whose batch was dispatched waits for the spool's group
commit to pass that mark (which commits at once when someone waits). Without a commit
point (no ``influx`` section: nothing durable to wait for) the wait ends when the batch was
dispatched, i.e. when the alarm engine has evaluated it. Cost: two integers per batch and
one event per dispatch round; nothing per reading.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Sequence
from typing import Protocol

from gateway.core.metrics import Metrics
from gateway.core.models import Reading

log = logging.getLogger(__name__)


class CommitPoint(Protocol):
    """Where readings become durable (the InfluxDB sink's spool, :class:`gateway.spool.base.GroupCommit`)."""

    def mark(self) -> int:
        """A position covering every reading appended so far."""

    async def committed(self, mark: int) -> bool:
        """Wait until everything up to ``mark`` is committed (asks for a commit now); False when
        the store is failing or closing."""


class Subscriber(Protocol):
    name: str

    def on_readings(self, batch: Sequence[Reading]) -> None:
        """Called in order for every batch. Must not block or do I/O."""


class Pipeline:
    def __init__(self, metrics: Metrics, max_readings: int = 100_000, slice_readings: int = 5000) -> None:
        self.metrics = metrics
        self.max_readings = max_readings
        self.slice_readings = max(1, slice_readings)
        self._queue: deque[Sequence[Reading]] = deque()
        self._count = 0
        self._subscribers: list[Subscriber] = []
        self._has_data = asyncio.Event()
        self._has_space = asyncio.Event()
        self._has_space.set()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._last_error_log: dict[str, float] = {}
        self._released = asyncio.Event()
        self._released.set()
        self.dispatched = 0
        # commit signal: batches accepted / dispatched, and the commit point's mark after the last round
        self.commit_point: CommitPoint | None = None  # set by the supervisor's wiring
        self._batches_in = 0
        self._batches_out = 0
        self._round_mark: tuple[CommitPoint | None, int] = (None, 0)
        self._round = asyncio.Event()

    # -- wiring
    def subscribe(self, sub: Subscriber) -> None:
        self._subscribers.append(sub)

    def unsubscribe(self, sub: Subscriber) -> None:
        if sub in self._subscribers:
            self._subscribers.remove(sub)

    @property
    def subscribers(self) -> tuple[Subscriber, ...]:
        """The subscribers, in dispatch order."""
        return tuple(self._subscribers)

    @property
    def depth(self) -> int:
        return self._count

    # -- producer side
    async def emit(self, batch: Sequence[Reading]) -> None:
        """Queue a batch; waits while the pipeline is full (backpressure)."""
        if not batch:
            return
        while self._count >= self.max_readings and not self._closing:
            self._has_space.clear()
            await self._has_space.wait()
        self._queue.append(batch)
        self._count += len(batch)
        self._batches_in += 1
        self._has_data.set()
        if self._count > self.slice_readings:
            # more than a slice waits: the producer gives the loop a turn (a producer that
            # emits without ever suspending would otherwise decode its whole backlog first)
            await asyncio.sleep(0)

    def ticket(self) -> int:
        """Covers every batch emitted so far (see :class:`gateway.core.sources.Durability`)."""
        return self._batches_in

    async def wait(self, ticket: int, limit: float) -> bool:
        """True once the batches up to ``ticket`` are dispatched and committed (see the module
        docstring); False if the commit point failed or did not commit within ``limit`` s."""
        while self._batches_out < ticket:
            await self._round.wait()
        point, mark = self._round_mark
        if point is None:
            return True
        try:
            async with asyncio.timeout(limit):
                return await point.committed(mark)
        except TimeoutError:
            return False

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        """Pause dispatching (for swapping subscribers). Readings queue up meanwhile and
        producers wait when the queue is full; nothing is dropped or skipped."""
        self._released.clear()
        try:
            yield
        finally:
            self._released.set()
            self._has_data.set()

    # -- lifecycle
    async def start(self) -> None:
        self._closing = False
        self._task = asyncio.create_task(self._run(), name="pipeline")

    async def stop(self) -> None:
        """Dispatch everything still queued, then stop."""
        self._closing = True
        self._has_data.set()
        self._has_space.set()
        if self._task:
            await self._task
            self._task = None
        self._dispatch_all()

    def health(self) -> dict[str, object]:
        return {"ok": self._task is not None and not self._task.done(), "depth": self._count}

    async def _run(self) -> None:
        while True:
            await self._has_data.wait()
            await self._released.wait()
            self._has_data.clear()
            self._dispatch(self.slice_readings)
            if self._queue:
                self._has_data.set()  # more than a slice waits: go on after the others had their turn
            elif self._closing:
                return
            # let producers, sinks and timers run between slices
            await asyncio.sleep(0)

    def _dispatch_all(self) -> None:
        self._dispatch(None)

    def _dispatch(self, limit: int | None) -> None:
        """Dispatch queued batches in order: all of them, or whole batches until ``limit``
        readings were handed over (at least one batch)."""
        q = self._queue
        subs = self._subscribers
        n = 0
        while q and (limit is None or n < limit):
            batch = q.popleft()
            self._count -= len(batch)
            for sub in subs:
                try:
                    sub.on_readings(batch)
                except Exception:
                    self.metrics.subscriber_errors.labels(sub.name).inc()
                    self._log_error(sub.name)
            n += len(batch)
            self.dispatched += len(batch)
            self._batches_out += 1
            self.metrics.pipeline_out.inc(len(batch))
            if self._count < self.max_readings:
                self._has_space.set()
        self.metrics.pipeline_depth.set(self._count)
        # the commit signal: what this round handed to the commit point, then wake the waiters
        point = self.commit_point
        self._round_mark = (point, point.mark() if point is not None else 0)
        round_, self._round = self._round, asyncio.Event()
        round_.set()

    def _log_error(self, name: str) -> None:
        now = time.monotonic()
        if now - self._last_error_log.get(name, -1e9) >= 10.0:
            self._last_error_log[name] = now
            log.exception("subscriber %s failed on a batch (counted; further errors logged every 10 s)", name)
