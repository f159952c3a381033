"""The memory-only queue: the spool's interface without a disk, for tests and benchmarks.

Nothing survives a restart. Bounds: at most ``max_records`` readings (the oldest are
dropped and counted, ``sink_dropped{reason="overflow"}``) and ``max_priority`` priority
records (likewise, ``kind="priority"``). "Committing" only makes records visible to the
sink, on the same schedule as the disk spool, so batching behaves the same.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Sequence
from typing import Any

from gateway.core.metrics import Metrics
from gateway.core.ratelog import RateLimitedLog
from gateway.spool.base import Batch, GroupCommit, Kind

log = logging.getLogger(__name__)


class MemorySpool(GroupCommit):
    durable = False

    def __init__(
        self,
        *,
        name: str,
        metrics: Metrics,
        block_records: int = 5000,
        commit_interval: float = 1.0,
        max_records: int = 200_000,
        max_priority: int = 100_000,
    ) -> None:
        super().__init__(block_records, commit_interval)
        self.name = name
        self.max_records = max_records
        self.max_priority = max_priority
        self._p: deque[str] = deque()
        self._r: deque[str] = deque()
        self._ready_p = 0  # records at the front of each deque that are committed (visible)
        self._ready_r = 0
        self._inflight = 0
        self._dropped = metrics.sink_dropped
        self._rlog = RateLimitedLog(log, 30.0)

    async def open(self) -> None:
        self._reopened()
        self._start_committer(f"queue-commit-{self.name}")

    async def close(self) -> int:
        """Stop; returns the records that were never sent (lost: nothing is on disk)."""
        await self._stop_committer()
        lost = self.records
        self._p.clear()
        self._r.clear()
        self._ready_p = self._ready_r = self._inflight = 0
        self._closed_for_good()
        return lost

    def append(self, kind: Kind, records: Sequence[str]) -> None:
        if not records:
            return
        if kind == "priority":
            self._p.extend(records)
            over = len(self._p) - self.max_priority
            if over > 0:
                for _ in range(over):
                    self._p.popleft()
                self._ready_p = max(0, self._ready_p - over)
                self._dropped.labels(self.name, "priority", "overflow").inc(over)
        else:
            self._r.extend(records)
            self._appended += len(records)
            over = len(self._r) - self.max_records
            if over > 0:
                for _ in range(over):
                    self._r.popleft()
                self._ready_r = max(0, self._ready_r - over)
                self._dropped.labels(self.name, "reading", "overflow").inc(over)
                self._rlog.warning("overflow", "%s buffer full (%d lines): oldest readings dropped", self.name,
                                   self.max_records)
        self._note_append(kind)

    def _pending_readings(self) -> int:
        return len(self._r) - self._ready_r

    def _has_pending(self) -> bool:
        return len(self._p) > self._ready_p or len(self._r) > self._ready_r

    async def _commit(self, full_only: bool) -> bool:
        if full_only:
            self._ready_r += self._pending_readings() // self.block_records * self.block_records
        else:
            self._ready_p = len(self._p)
            self._ready_r = len(self._r)
        if self._ready_p or self._ready_r:
            self.readable.set()
        return True

    async def next_batch(self, max_records: int) -> Batch | None:
        if not self._ready_p and not self._ready_r:
            self.readable.clear()
            return None
        p, r = self._p, self._r
        k = min(self._ready_p, max_records)
        lines = [p.popleft() for _ in range(k)]
        self._ready_p -= k
        k2 = min(self._ready_r, max_records - k)
        lines.extend(r.popleft() for _ in range(k2))
        self._ready_r -= k2
        self._inflight += len(lines)  # several batches may be in flight (the sink's senders)
        return Batch("\n".join(lines).encode("utf-8", "replace"), len(lines), k, (lines, k))

    async def ack(self, batch: Batch) -> None:
        self._inflight -= batch.count

    async def release(self, batch: Batch) -> None:
        lines, k = batch.token
        self._p.extendleft(reversed(lines[:k]))
        self._r.extendleft(reversed(lines[k:]))
        self._ready_p += k
        self._ready_r += len(lines) - k
        self._inflight -= batch.count
        self.readable.set()

    @property
    def records(self) -> int:
        return len(self._p) + len(self._r) + self._inflight

    def health(self) -> dict[str, Any]:
        return {"ok": True, "durable": False, "records": self.records}
