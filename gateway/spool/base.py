"""What every spool gives a sink: ``append`` records, take a ``Batch``, ``ack`` or ``release`` it.

A record is an opaque line of text without a newline (an InfluxDB line, later an uplink
message) with a kind: ``priority`` (alarm events, self-metrics: always taken first, never
dropped to make room for readings) or ``reading``.

Producers call :meth:`SinkQueue.append` on the event loop; it never does I/O. Records
become visible to the sink at a *group commit*: when a full block of readings is waiting,
when a priority record arrives, and at the latest ``commit_interval`` after the oldest
waiting record arrived. The sink takes a batch (several may be in flight), sends it, then acknowledges
it (gone for good) or releases it (taken again next time).

Commit signal (for sources that acknowledge their input only once it is durable, MQTT
QoS 1/2): :meth:`GroupCommit.mark` is the count of readings appended so far, and
:meth:`GroupCommit.committed` waits until a commit has taken everything up to a mark. A
waiter asks for a commit *now* (like a priority record), so a source waiting for its
acknowledgements is not held for ``commit_interval``: while one commit runs, everything
that arrives meanwhile goes into the next one (group commit; one fsync per round, not per
reading). Readings dropped by the pending-overflow policy count as passed (they are
counted as dropped). A failing store (the last commit failed) or a closing one answers
False at once: the caller must not stall on a broken disk.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

Kind = Literal["priority", "reading"]
KINDS: tuple[Kind, Kind] = ("priority", "reading")


@dataclass(eq=False)
class Batch:
    """Records for one send: priority ones first, each kind in order."""

    body: bytes  # the records as UTF-8, joined by b"\n"
    count: int
    n_priority: int
    token: Any = field(repr=False, default=None)  # the queue's own bookkeeping

    def records(self) -> list[str]:
        return self.body.decode("utf-8").split("\n") if self.count else []


class SinkQueue(Protocol):
    """The interface InfluxSink (and later the uplink) uses; see the module docstring."""

    durable: bool
    readable: asyncio.Event  # set when a batch may be available (also set by a stopping sink)

    async def open(self) -> None: ...
    def append(self, kind: Kind, records: Sequence[str]) -> None: ...
    async def next_batch(self, max_records: int) -> Batch | None: ...
    async def ack(self, batch: Batch) -> None: ...
    async def release(self, batch: Batch) -> None: ...
    async def flush(self) -> bool: ...
    async def close(self) -> int: ...
    @property
    def records(self) -> int: ...
    def health(self) -> dict[str, Any]: ...
    # the commit signal (gateway.pipeline.CommitPoint; GroupCommit implements it)
    def mark(self) -> int: ...
    async def committed(self, mark: int) -> bool: ...


class GroupCommit(ABC):
    """The commit schedule shared by the disk and memory spools.

    Subclasses keep their pending records and implement :meth:`_commit`; this class
    decides *when*: a full block of readings commits at once (full blocks only), a
    priority record commits everything at once, and nothing waits longer than
    ``commit_interval`` after it was appended.
    """

    def __init__(self, block_records: int, commit_interval: float) -> None:
        self.block_records = block_records
        self.commit_interval = commit_interval
        self.readable = asyncio.Event()
        self._wake = asyncio.Event()
        self._urgent = False
        self._pending_since: float | None = None  # monotonic time of the oldest uncommitted record
        self._committer: asyncio.Task[None] | None = None
        self._closing = False
        self._lock = asyncio.Lock()
        # commit signal: readings appended (subclasses count them in append) / passed by a commit
        self._appended = 0
        self._durable = 0
        self._commit_done = asyncio.Event()
        self._closed = False

    # subclasses
    @abstractmethod
    def _pending_readings(self) -> int:
        """Implemented by each subclass."""

    @abstractmethod
    def _has_pending(self) -> bool:
        """Implemented by each subclass."""

    @abstractmethod
    async def _commit(self, full_only: bool) -> bool:
        """Commit pending records (all, or full blocks of readings only); False on failure."""

    def _failing(self) -> bool:
        """True while commits fail (the commit signal then answers False at once)."""
        return False

    # commit signal
    def mark(self) -> int:
        """A position covering every reading appended so far."""
        return self._appended

    async def committed(self, mark: int) -> bool:
        """Wait until a commit has passed ``mark``; asks for one now. False if failing or closing."""
        while self._durable < mark:
            if self._closed or self._failing():
                return False
            self._urgent = True
            self._wake.set()
            done = self._commit_done
            await done.wait()
        return True

    def _closed_for_good(self) -> None:
        """End of ``close``: waiters whose readings the final flush did not pass get False."""
        self._closed = True
        self._signal_commit()

    def _reopened(self) -> None:
        self._closed = False

    def _signal_commit(self) -> None:
        done, self._commit_done = self._commit_done, asyncio.Event()
        done.set()

    # schedule
    def _note_append(self, kind: Kind) -> None:
        if self._pending_since is None:
            self._pending_since = time.monotonic()
            self._wake.set()
        if kind == "priority":
            self._urgent = True
            self._wake.set()
        elif self._pending_readings() >= self.block_records:
            self._wake.set()

    def _start_committer(self, name: str) -> None:
        self._closing = False
        self._committer = asyncio.create_task(self._run_committer(), name=name)

    async def _stop_committer(self) -> None:
        self._closing = True
        self._wake.set()
        if self._committer is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._committer
            self._committer = None

    async def _run_committer(self) -> None:
        while not self._closing:
            timeout = None
            if self._pending_since is not None:
                timeout = max(0.0, self._pending_since + self.commit_interval - time.monotonic())
            if timeout is None or timeout > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), timeout)
            self._wake.clear()
            if self._closing:
                return
            await self.commit_due()

    async def commit_due(self) -> None:
        """Commit what the schedule says is due now."""
        due = self._pending_since is not None and time.monotonic() - self._pending_since >= self.commit_interval
        if due or self._urgent:
            await self._commit_locked(full_only=False)
        elif self._pending_readings() >= self.block_records:
            await self._commit_locked(full_only=True)

    async def flush(self) -> bool:
        """Commit everything pending now; True if anything was committed."""
        if not self._has_pending():
            return False
        await self._commit_locked(full_only=False)
        return True

    async def _commit_locked(self, full_only: bool) -> None:
        async with self._lock:
            started = time.monotonic()
            if not full_only:
                self._urgent = False
            if not await self._commit(full_only):
                self._pending_since = time.monotonic()  # try again one interval later
                self._signal_commit()  # waiters see the failure
                return
            self._durable = self._appended - self._pending_readings()
            self._signal_commit()
            if not self._has_pending():
                self._pending_since = None
            elif not full_only:
                # what arrived while committing: at most the commit's duration old
                self._pending_since = started
