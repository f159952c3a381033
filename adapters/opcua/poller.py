"""Poll mode: every ``interval``, one batched Read of all the points' Value attributes.

Reads run on a fixed grid like the Modbus poller: a cycle that overruns skips the grid
ticks it missed (reads never stack up). Results map through
:meth:`adapters.opcua.values.PointTable.update` with ``confirm=True`` (a value whose
SourceTimestamp did not move is stamped with the time of this read). A failed Read (no
answer within ``timeout``, connection closed) ends the session: the adapter reconnects.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence

from asyncua import Client, ua

from adapters.opcua.batching import BatchLimit, in_batches
from adapters.opcua.values import PointTable
from gateway.core.models import Reading

Emit = Callable[[list[Reading]], Awaitable[None]]


class Poller:
    def __init__(
        self, client: Client, table: PointTable, items: Sequence[tuple[int, ua.NodeId]], *, interval: float,
        limit: BatchLimit, emit: Emit, extra: Callable[[int], list[Reading]],
    ) -> None:
        self.client = client
        self.table = table
        self.indexes = [i for i, _ in items]
        self.ids = [ua.ReadValueId(NodeId=nid, AttributeId=ua.AttributeIds.Value) for _, nid in items]
        self.interval = interval
        self.limit = limit
        self.emit = emit
        self.extra = extra  # readings of points without a node (bad), once per cycle
        self.polls = 0
        self.skipped = 0
        self.requests = 0
        self.last_duration = 0.0

    async def _read(self, batch: Sequence[ua.ReadValueId]) -> list[ua.DataValue]:
        p = ua.ReadParameters()
        p.MaxAge = 0
        p.TimestampsToReturn = ua.TimestampsToReturn.Both
        p.NodesToRead = list(batch)
        self.requests += 1
        return list(await self.client.uaclient.read(p))

    async def poll_once(self) -> list[Reading]:
        t0 = time.monotonic()
        values = await in_batches(self.ids, self.limit, self._read)
        recv = time.time_ns()
        update = self.table.update
        out = [update(i, dv, recv, confirm=True) for i, dv in zip(self.indexes, values, strict=True)]
        out.extend(self.extra(recv))
        self.polls += 1
        self.last_duration = time.monotonic() - t0
        return out

    async def run(self) -> None:
        """Poll until cancelled or a read fails (the exception ends the session)."""
        start = time.monotonic()
        k = 0
        while True:
            batch = await self.poll_once()
            if batch:
                await self.emit(batch)
            k += 1
            now = time.monotonic()
            due = start + k * self.interval
            if now > due:  # overran: drop the missed grid ticks
                missed = int((now - due) // self.interval) + 1
                self.skipped += missed
                k += missed
                due = start + k * self.interval
            await asyncio.sleep(due - now)
