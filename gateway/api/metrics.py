"""The API's own Prometheus metrics, and scrape-time gauges read through the gateway facade.

They live in an app-private registry (so two apps, or two gateways, in one process never
collide); ``GET /metrics`` serves the gateway's registry followed by this one.

Added here (issue 6 item 4 asks for them and nothing registered them yet):

* ``hazardgw_api_requests_total{method,route,status}``, ``hazardgw_api_auth_failures_total{reason}``
* ``hazardgw_api_sse_clients``, ``hazardgw_api_sse_dropped_total{reason}`` (slow / limit),
  ``hazardgw_api_sse_messages_total{event}``
* ``hazardgw_alarms_unacknowledged{priority}``: open alarms waiting for an acknowledge
  (UNACK, RTNUN), next to the engine's ``hazardgw_alarms_active{priority}`` (test alarms, of
  tags in test mode, are in neither: ``hazardgw_alarms_test`` counts them)
* ``hazardgw_tags_in_test``: tags in test mode
* ``hazardgw_alarms_shelved``, ``hazardgw_alarms_suppressed``, ``hazardgw_alarms_out_of_service``
* ``hazardgw_tags{quality}``: configured tags by the quality of their latest reading
  (``none`` before the first one)
* ``hazardgw_source_queue_depth{source}``: a source's internal queue (e.g. MQTT messages
  waiting for the pipeline), where the source reports one
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from alerting import states as S
from gateway.api.facade import GatewayFacade


class ApiMetrics:
    def __init__(self, gw: GatewayFacade) -> None:
        self.registry = r = CollectorRegistry(auto_describe=False)
        self.requests = Counter(
            "hazardgw_api_requests", "HTTP requests by method, route template and status",
            ["method", "route", "status"], registry=r,
        )
        self.auth_failures = Counter(
            "hazardgw_api_auth_failures", "Rejected API requests: missing or invalid token, role too low",
            ["reason"], registry=r,
        )
        self.sse_clients = Gauge("hazardgw_api_sse_clients", "Connected /api/events clients", registry=r)
        self.sse_dropped = Counter(
            "hazardgw_api_sse_dropped",
            "SSE clients dropped because they did not keep up (slow) or refused (limit: all slots taken; "
            "per_token: the token holds api.limits.sse_per_token streams)",
            ["reason"], registry=r,
        )
        self.sse_messages = Counter(
            "hazardgw_api_sse_messages", "SSE messages queued to clients, by event type", ["event"], registry=r
        )
        self.connections = Gauge("hazardgw_api_connections", "Open API connections", registry=r)
        self.connections_refused = Counter(
            "hazardgw_api_connections_refused",
            "Connections closed at accept: over api.limits.connections or the descriptor share (limit), over "
            "api.limits.per_client (per_client), accept failed (accept_error, e.g. EMFILE)",
            ["reason"], registry=r,
        )
        self.tls_failures = Counter(
            "hazardgw_api_tls_failures", "TLS handshakes that failed (plain HTTP, no client certificate, timeout)",
            registry=r,
        )
        self.request_timeouts = Counter(
            "hazardgw_api_request_timeouts", "Connections closed because a request head or body was too slow",
            ["phase"], registry=r,
        )
        self.body_rejected = Counter(
            "hazardgw_api_body_rejected", "Request bodies refused before parsing (413)", ["reason"], registry=r
        )
        self.lockouts = Counter(
            "hazardgw_api_lockouts", "Client addresses locked out after repeated authentication failures", registry=r
        )
        self.audit_dropped = Counter(
            "hazardgw_api_audit_dropped", "Audit records lost (queue full or write failed)", registry=r
        )
        for reason in ("missing", "invalid", "expired", "role", "locked", "invalid_link"):
            self.auth_failures.labels(reason)
        for reason in ("slow", "limit", "per_token"):
            self.sse_dropped.labels(reason)
        for phase in ("header", "body"):
            self.request_timeouts.labels(phase)
        self.body_rejected.labels("too_large")
        r.register(_GatewayState(gw))

    def watch_lockout(self, lockout: Any) -> None:
        """``hazardgw_api_locked_clients``: addresses locked out now (computed at scrape time)."""
        g = Gauge("hazardgw_api_locked_clients", "Client addresses locked out now", registry=self.registry)
        g.set_function(lambda: float(lockout.locked_clients()))


class _GatewayState(Collector):
    """Gauges computed from the gateway's state at scrape time (nothing on the hot path)."""

    def __init__(self, gw: GatewayFacade) -> None:
        self.gw = gw

    def collect(self) -> Iterator[Metric]:
        gw = self.gw
        unacked = {1: 0, 2: 0, 3: 0}
        shelved = suppressed = oos = test = 0
        for v in gw.alarms.alarms():
            if v.test:
                test += 1
            elif v.state in (S.UNACK, S.RTNUN):
                unacked[v.priority] = unacked.get(v.priority, 0) + 1
            shelved += v.shelved
            suppressed += v.suppressed
            oos += v.out_of_service
        g = GaugeMetricFamily(
            "hazardgw_alarms_unacknowledged", "Open alarms waiting for an acknowledge (UNACK, RTNUN)",
            labels=["priority"],
        )
        for p, n in sorted(unacked.items()):
            g.add_metric([str(p)], n)
        yield g
        yield GaugeMetricFamily("hazardgw_alarms_shelved", "Alarms shelved by an operator", value=shelved)
        yield GaugeMetricFamily("hazardgw_alarms_suppressed", "Alarms suppressed by design", value=suppressed)
        yield GaugeMetricFamily("hazardgw_alarms_out_of_service", "Alarms out of service", value=oos)
        yield GaugeMetricFamily("hazardgw_alarms_test", "Open test alarms (tags in test mode)", value=test)
        yield GaugeMetricFamily("hazardgw_tags_in_test", "Tags in test mode", value=len(gw.tests.testing))

        counts = dict.fromkeys(("good", "bad", "uncertain", "stale", "comm", "none"), 0)
        latest = gw.latest
        for t in gw.config.tags:
            r = latest.get(t.id)
            q = r.quality if r is not None else "none"
            counts[q] = counts.get(q, 0) + 1
        g = GaugeMetricFamily(
            "hazardgw_tags", "Configured tags by the quality of their latest reading", labels=["quality"]
        )
        for q, n in counts.items():
            g.add_metric([q], n)
        yield g

        g = GaugeMetricFamily(
            "hazardgw_source_queue_depth", "Items waiting in a source's own queue", labels=["source"]
        )
        for s in gw.sources():
            try:
                h: dict[str, Any] = s.health()
            except Exception:  # a scrape must not fail because one source's health did
                continue
            depth = h.get("queue")
            if isinstance(depth, int | float) and not isinstance(depth, bool):
                g.add_metric([s.id], float(depth))
        yield g
