"""Writes the gateway's own health to InfluxDB's ``gateway`` measurement (docs/influxdb.md).

Every ``interval`` seconds: pipeline depth and throughput, sink buffer, retries and drops
by reason, and per-source readings and decode errors, read from the gateway's Prometheus
registry so the numbers match ``/metrics``. The lines go through the sink's priority
buffer, so an outage does not lose them behind a backlog of readings.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Callable
from typing import Any

from gateway.core.lineprotocol import line
from gateway.core.metrics import Metrics
from gateway.core.tasks import TaskComponent
from gateway.sinks.influx import InfluxSink


class SelfMetricsWriter(TaskComponent):
    name = "self-metrics"

    def __init__(
        self,
        site: str,
        metrics: Metrics,
        sink: InfluxSink,
        *,
        interval: float = 10.0,
        wall: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__()
        self.site = site
        self.metrics = metrics
        self.sink = sink
        self.interval = interval
        self.wall = wall

    def snapshot(self) -> list[str]:
        """The ``gateway`` lines for now."""
        fields: dict[str, dict[str, Any]] = defaultdict(dict)
        for family in self.metrics.registry.collect():
            for s in family.samples:
                if s.name.endswith("_created") or s.name.endswith("_bucket"):
                    continue
                labels = s.labels
                name = s.name.removeprefix("hazardgw_")
                if "source" in labels:
                    comp = f"source:{labels['source']}"
                    extra = "_".join(labels[k] for k in sorted(labels) if k != "source")
                elif "sink" in labels:
                    comp = f"sink:{labels['sink']}"
                    extra = "_".join(labels[k] for k in sorted(labels) if k != "sink")
                else:
                    comp = name.split("_")[0]
                    extra = "_".join(labels[k] for k in sorted(labels))
                key = f"{name}_{extra}" if extra else name
                v = s.value
                # counters and counts as integers, everything else as float: a field must
                # never change type, or InfluxDB rejects the whole line
                is_count = s.name.endswith(("_total", "_count"))
                fields[comp][key] = int(v) if is_count and abs(v) < 2**62 else float(v)
        ts = self.wall()
        out = []
        for comp, fs in sorted(fields.items()):
            lp = line("gateway", {"site": self.site, "component": comp}, fs, ts)
            if lp:
                out.append(lp)
        return out

    async def stop(self) -> None:
        await super().stop()
        self.sink.enqueue_priority(self.snapshot())  # a last sample, flushed by the sink's stop

    def health(self) -> dict[str, Any]:
        return {"ok": self.running}

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            self.sink.enqueue_priority(self.snapshot())
