"""The supervisor: builds one gateway from a config and starts/stops its components.

Data flows one way: adapters -> pipeline -> {live state, alarm engine, sinks}. Start order
is downstream first (sinks, pipeline, watchers) so nothing produced is refused; stop order
is upstream first (adapters, then the pipeline drains, then sinks flush). Nothing here is
global: two ``Gateway`` objects in one process are independent (tests rely on it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from adapters import SourceAdapter, SourceContext, build_sources
from alerting import AlarmEngine, AlarmEvent, Journal, alarm_line
from gateway.config import Config
from gateway.livestate import LiveState, StaleWatcher, stale_limits
from gateway.metrics import Metrics
from gateway.pipeline import Pipeline
from gateway.selfmetrics import SelfMetricsWriter
from gateway.sinks.influx import InfluxSink

log = logging.getLogger(__name__)


class Component(Protocol):
    name: str

    async def start(self) -> None: ...
    async def stop(self) -> None: ...
    def health(self) -> dict[str, Any]: ...


class Gateway:
    def __init__(
        self,
        config: Config,
        *,
        metrics: Metrics | None = None,
        clock: Callable[[], float] = time.monotonic,
        pipeline_max: int = 100_000,
        self_metrics_interval: float = 10.0,
    ) -> None:
        self.config = config
        self.metrics = metrics or Metrics()
        self.clock = clock
        self.pipeline = Pipeline(self.metrics, max_readings=pipeline_max)
        self.live = LiveState(clock)
        self.journal = Journal.from_config(config, self.metrics)
        self.alarms = AlarmEngine(config, self.metrics, self.journal, clock=clock)
        self.influx: InfluxSink | None = None
        self.self_metrics: SelfMetricsWriter | None = None
        if config.influx is not None:
            self.influx = InfluxSink(config.influx, config, self.metrics)
            self.self_metrics = SelfMetricsWriter(
                config.site.code, self.metrics, self.influx, interval=self_metrics_interval
            )
            # alarm events take the sink's priority buffer, ahead of any reading backlog
            self.alarms.subscribe(self._alarm_to_influx)
        # Subscriber order: live state, then the alarm engine decides on the reading, then
        # the reading is queued for InfluxDB.
        self.pipeline.subscribe(self.live)
        self.pipeline.subscribe(self.alarms)
        if self.influx is not None:
            self.pipeline.subscribe(self.influx)
        self.store_path = Path(config.store.path)
        ctx = SourceContext(
            emit=self.pipeline.emit,
            metrics=self.metrics,
            tags=config.tag_map(),
            store_path=str(self.store_path),
        )
        self.sources: list[SourceAdapter] = build_sources(config.sources, ctx)
        self.stale = StaleWatcher(self.live, self.pipeline, stale_limits(config), clock=clock)
        self._started: list[Any] = []
        self._running = False

    def _alarm_to_influx(self, event: AlarmEvent) -> None:
        assert self.influx is not None
        self.influx.enqueue_priority([alarm_line(event, self.config.site.code)])

    # downstream first
    def _components(self) -> list[Any]:
        comps: list[Any] = []
        if self.influx is not None:
            comps.append(self.influx)
        comps.append(self.alarms)  # restores journal state before any reading is dispatched
        comps.append(self.pipeline)
        comps.append(self.stale)
        if self.self_metrics is not None:
            comps.append(self.self_metrics)
        return comps

    async def start(self) -> None:
        if self._running:
            return
        self.store_path.mkdir(parents=True, exist_ok=True)
        try:
            for c in self._components():
                await c.start()
                self._started.append(c)
            for s in self.sources:
                await s.start()
                self._started.append(s)
        except BaseException:
            await self.stop()
            raise
        self._running = True
        log.info(
            "gateway for site %s started: %d sources, %d tags%s",
            self.config.site.code,
            len(self.sources),
            len(self.config.tags),
            "" if self.influx else " (no influx: live only)",
        )

    async def stop(self) -> None:
        """Upstream first: sources stop, the pipeline drains, sinks flush."""
        started = self._started
        self._started = []
        sources = [c for c in started if c in self.sources]
        await asyncio.gather(*(s.stop() for s in sources), return_exceptions=True)
        for c in reversed([c for c in started if c not in self.sources]):
            try:
                await c.stop()
            except Exception:
                log.exception("error stopping %s", getattr(c, "name", c))
        self._running = False

    def health(self) -> dict[str, Any]:
        comps: dict[str, Any] = {}
        for c in self._components():
            comps[c.__class__.__name__ if not hasattr(c, "name") else c.name] = c.health()
        for s in self.sources:
            comps[f"source:{s.id}"] = s.health()
        ok = all(bool(v.get("ok")) for v in comps.values())
        return {"status": "ok" if ok else "degraded", "components": comps}

    async def run_until(self, stop: asyncio.Event) -> None:
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()
