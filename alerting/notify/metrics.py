"""Prometheus collectors of the notifier, on the gateway's private registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class NotifyMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.pushes = Counter("hazardgw_notify_pushes", "Pushes queued in the outbox, by kind", ["kind"], registry=r)
        self.attempts = Counter(
            "hazardgw_notify_attempts", "Delivery attempts by outcome (sent, failed)", ["outcome"], registry=r
        )
        self.failovers = Counter(
            "hazardgw_notify_failovers", "Failed attempts followed at once by the person's next channel", registry=r
        )
        self.gave_up = Counter(
            "hazardgw_notify_gave_up", "Pushes abandoned after ack_link_ttl without a successful delivery", registry=r
        )
        self.cancelled = Counter(
            "hazardgw_notify_cancelled", "Pushes not sent because the occurrence was acknowledged or closed", registry=r
        )
        self.no_channel = Counter("hazardgw_notify_no_channel", "Pushes to a person without any channel", registry=r)
        self.escalations = Counter("hazardgw_notify_escalations", "Escalation steps > 0 fired", registry=r)
        self.fallbacks = Counter(
            "hazardgw_notify_fallbacks", "Steps whose targets named nobody (sent to the fallback)", registry=r
        )
        self.summaries = Counter("hazardgw_notify_summaries", "Flood summaries queued", registry=r)
        self.batched = Counter("hazardgw_notify_batched", "Priority 2-3 pushes batched into a summary", registry=r)
        self.acks = Counter(
            "hazardgw_notify_link_acks", "One-tap acknowledge attempts by result", ["result"], registry=r
        )
        self.intake = Gauge("hazardgw_notify_intake", "Alarm events waiting for the notifier", registry=r)
        self.intake_dropped = Counter(
            "hazardgw_notify_intake_dropped",
            "Non-annunciating events not queued because the intake was full (state is re-read before a push)",
            registry=r,
        )
        self.intake_coalesced = Counter(
            "hazardgw_notify_intake_coalesced",
            "Annunciations kept in the per-alarm overflow map because the intake was full",
            registry=r,
        )
        self.pending = Gauge("hazardgw_notify_pending", "Pushes waiting for (re)delivery", registry=r)
        self.open_escalations = Gauge("hazardgw_notify_escalations_open", "Occurrences being escalated", registry=r)
        self.flood = Gauge("hazardgw_notify_flood", "1 while pushes are in flood summary mode", registry=r)
        self.provider = Counter(
            "hazardgw_notify_provider_results",
            "Answers of SMS/voice providers by scheme and result (ok, auth, balance, quota, template, number, "
            "provider, http, other)",
            ["scheme", "result"],
            registry=r,
        )
        self.db_errors = Counter("hazardgw_notify_db_errors", "Outbox database operations that failed", registry=r)
        self.db_backlog = Gauge(
            "hazardgw_notify_db_backlog",
            "Outbox writes that failed (disk full) and wait in memory to be retried, in order",
            registry=r,
        )
        self.db_backlog_dropped = Counter(
            "hazardgw_notify_db_backlog_dropped",
            "Delayed outbox writes dropped because the backlog bound was reached (the push went out; "
            "a restart may send it again)",
            registry=r,
        )
        self.latency = Histogram(
            "hazardgw_notify_latency_seconds",
            "From the alarm event to the channel accepting the push (first successful delivery)",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 300),
            registry=r,
        )
