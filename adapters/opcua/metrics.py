"""OPC UA self-metrics, registered once per gateway registry (see adapters/modbus/metrics.py)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from gateway.core.metrics import Metrics


class OpcuaMetrics:
    def __init__(self, r: CollectorRegistry) -> None:
        self.connects = Counter(
            "hazardgw_opcua_connects",
            "Session attempts by result (ok, refused, unreachable, error)",
            ["source", "result"],
            registry=r,
        )
        self.losses = Counter(
            "hazardgw_opcua_session_losses", "Established sessions lost (every point read comm)", ["source"],
            registry=r,
        )
        self.notifications = Counter(
            "hazardgw_opcua_notifications", "Monitored item values received in publish responses", ["source"],
            registry=r,
        )
        self.publishes = Counter(
            "hazardgw_opcua_publish_responses", "Publish responses by kind (data, keepalive)", ["source", "kind"],
            registry=r,
        )
        self.reads = Counter(
            "hazardgw_opcua_read_requests", "Poll-mode Read requests", ["source"], registry=r
        )
        self.reasserted = Counter(
            "hazardgw_opcua_reasserted",
            "Readings re-asserting an unchanged subscribed value (one per point and interval)",
            ["source"],
            registry=r,
        )
        self.bad_points = Gauge(
            "hazardgw_opcua_unresolved_points",
            "Points without a node on the server (browse path or node id not found, item refused)",
            ["source"],
            registry=r,
        )
        self.batch_size = Gauge(
            "hazardgw_opcua_batch_size", "Operations per request in use (learned)", ["source", "service"],
            registry=r,
        )
        self.subscriptions = Gauge(
            "hazardgw_opcua_subscriptions", "Subscriptions of the current session", ["source"], registry=r
        )


def opcua_metrics(metrics: Metrics) -> OpcuaMetrics:
    return metrics.group(OpcuaMetrics)
