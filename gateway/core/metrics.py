"""Self-metrics of one gateway instance.

Each gateway owns a private ``CollectorRegistry`` (no global state, so tests can run
several gateways in one process). Components register their own collectors on
``metrics.registry``; the ones shared across components are created here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

G = TypeVar("G")


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        self._groups: dict[Any, Any] = {}
        r = self.registry
        self.readings_in = Counter(
            "hazardgw_readings_in", "Readings produced by a source", ["source"], registry=r
        )
        self.decode_errors = Counter(
            "hazardgw_decode_errors",
            "Malformed input rejected by a source, by subscription/request and reason",
            ["source", "where", "reason"],
            registry=r,
        )
        self.pipeline_depth = Gauge("hazardgw_pipeline_depth", "Readings queued in the pipeline", registry=r)
        self.pipeline_out = Counter(
            "hazardgw_pipeline_readings_out", "Readings dispatched to subscribers", registry=r
        )
        self.subscriber_errors = Counter(
            "hazardgw_subscriber_errors", "Exceptions raised by a pipeline subscriber", ["subscriber"], registry=r
        )
        self.sink_lines = Counter(
            "hazardgw_sink_lines", "Lines written by a sink", ["sink", "kind"], registry=r
        )
        self.sink_batches = Counter(
            "hazardgw_sink_batches", "Write attempts by result", ["sink", "result"], registry=r
        )
        self.sink_dropped = Counter(
            "hazardgw_sink_dropped",
            "Lines a sink dropped, by reason (overflow drops oldest readings; rejected = 4xx)",
            ["sink", "kind", "reason"],
            registry=r,
        )
        self.sink_buffer = Gauge("hazardgw_sink_buffer_lines", "Lines waiting in a sink", ["sink"], registry=r)
        self.sink_latency = Histogram(
            "hazardgw_sink_write_seconds",
            "Write request latency",
            ["sink"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.source_connected = Gauge(
            "hazardgw_source_connected", "1 while a source's connection is up", ["source"], registry=r
        )

    def group(self, factory: Callable[[CollectorRegistry], G]) -> G:
        """The collectors a component registers, created once per registry.

        A component rebuilt by a hot reload (or a second instance) gets the same
        collectors instead of failing on a duplicate registration.
        """
        g = self._groups.get(factory)
        if g is None:
            g = self._groups[factory] = factory(self.registry)
        return g
