"""The spool's own collectors, registered on the gateway's registry.

Labelled by ``sink`` so the ``gateway`` measurement files them under the sink's component
(``component=sink:influx``: ``spool_bytes``, ``spool_records_reading``, ...). Spools get
them through ``Metrics.group(SpoolMetrics)``: one set per registry, shared by every spool
(InfluxDB, uplink) and by a sink rebuilt by a hot reload. Drops go to the shared
``hazardgw_sink_dropped``.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class SpoolMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = r = registry
        self.bytes = Gauge("hazardgw_spool_bytes", "Bytes of spool segments on disk", ["sink"], registry=r)
        self.records = Gauge(
            "hazardgw_spool_records", "Committed records not yet acknowledged by the sink", ["sink", "kind"],
            registry=r,
        )
        self.pending = Gauge(
            "hazardgw_spool_pending", "Records in memory waiting for the next group commit", ["sink"], registry=r
        )
        self.backlog_seconds = Gauge(
            "hazardgw_spool_backlog_seconds", "Age of the oldest unacknowledged committed reading (whole s)",
            ["sink"],
            registry=r,
        )
        self.commits = Counter("hazardgw_spool_commits", "Group commits written", ["sink"], registry=r)
        self.commit_seconds = Histogram(
            "hazardgw_spool_commit_seconds",
            "Time of a group commit (write + fdatasync)",
            ["sink"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
            registry=r,
        )
        self.errors = Counter("hazardgw_spool_errors", "Spool I/O errors by operation", ["sink", "op"], registry=r)
        self.recovered = Counter(
            "hazardgw_spool_recovered", "Unacknowledged records found on disk at start (replayed)", ["sink", "kind"],
            registry=r,
        )
        self.truncated_bytes = Counter(
            "hazardgw_spool_truncated_bytes", "Torn or corrupt bytes cut off at recovery", ["sink"], registry=r
        )
