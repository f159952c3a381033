"""Live state: the latest reading of every tag, and the stale watcher.

``LiveState`` is a pipeline subscriber keeping, per tag, the last reading and the
monotonic time it arrived. ``StaleWatcher`` checks it once a second and, for a tag that
has had no update within its ``stale_after``, emits one ``stale`` reading (value None)
into the pipeline, so InfluxDB, the alarm engine and the console all see that the value
is no longer fresh. It emits again only after a fresh reading arrived in between.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gateway.core.models import Quality, Reading, now_ns
from gateway.core.tasks import TaskComponent
from gateway.pipeline import Pipeline


class LiveState:
    name = "live"

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.latest: dict[str, Reading] = {}
        self.received: dict[str, float] = {}  # monotonic arrival time of the last non-stale reading

    def on_readings(self, batch: Sequence[Reading]) -> None:
        now = self.clock()
        latest = self.latest
        received = self.received
        stale = Quality.STALE
        for r in batch:
            tag = r[0]  # (index, not .tag: a NamedTuple field is a descriptor call per access)
            latest[tag] = r
            if r[3] != stale:
                received[tag] = now

    def get(self, tag: str) -> Reading | None:
        return self.latest.get(tag)


class StaleWatcher(TaskComponent):
    name = "stale-watcher"

    def __init__(
        self,
        live: LiveState,
        pipeline: Pipeline,
        limits: Mapping[str, float],
        *,
        interval: float = 0.5,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.live = live
        self.pipeline = pipeline
        self.limits = dict(limits)
        self.interval = interval
        self.clock = clock
        self._started = 0.0
        self.emitted = 0

    def check(self) -> list[Reading]:
        """Stale readings due now (also usable directly with an explicit clock)."""
        now = self.clock()
        ts = now_ns()
        out: list[Reading] = []
        latest = self.live.latest
        received = self.live.received
        for tag, limit in self.limits.items():
            last = received.get(tag, self._started)
            if now - last > limit:
                cur = latest.get(tag)
                if cur is None or cur.quality != Quality.STALE:
                    out.append(Reading(tag, None, ts, Quality.STALE))
        return out

    async def start(self) -> None:
        self._started = self.clock()
        await super().start()

    def health(self) -> dict[str, Any]:
        return {"ok": self.running, "stale_emitted": self.emitted}

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            batch = self.check()
            if batch:
                # mark them in live state right away so the next check does not repeat them
                self.live.on_readings(batch)
                self.emitted += len(batch)
                await self.pipeline.emit(batch)
