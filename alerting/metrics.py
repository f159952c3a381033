"""Prometheus collectors of the alarm engine, registered on the gateway's private registry."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge

from alerting import states as S


class AlarmMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.active = Gauge(
            "hazardgw_alarms_active",
            "Alarms with an open occurrence (UNACK, ACKED, RTNUN) by priority",
            ["priority"],
            registry=r,
        )
        self.events = Counter("hazardgw_alarm_events", "Alarm events by type", ["event"], registry=r)
        self.floods = Counter(
            "hazardgw_alarm_floods", "Alarm floods started (> flood_count annunciations in flood_window)", registry=r
        )
        self.in_flood = Gauge("hazardgw_alarm_flood", "1 while the engine is in alarm flood", registry=r)
        self.chattering = Counter(
            "hazardgw_alarm_chattering",
            "Alarms that became chattering (>= chatter_cycles raises in chatter_window)",
            registry=r,
        )
        self.eval_errors = Counter(
            "hazardgw_alarm_evaluation_errors",
            "Readings or timers whose evaluation raised (counted, skipped)",
            ["where"],
            registry=r,
        )
        self.callback_errors = Counter(
            "hazardgw_alarm_callback_errors", "Alarm event subscriber callbacks that raised", registry=r
        )
        self.hs_status = Gauge(
            "hazardgw_hazard_source_status",
            "Hazard-source status: 0 blue, 1 yellow, 2 orange, 3 red",
            ["hs"],
            registry=r,
        )
        self.event_children = {e: self.events.labels(e) for e in S.EVENTS}
        self.active_children = {p: self.active.labels(str(p)) for p in (1, 2, 3)}
        for c in self.active_children.values():
            c.set(0)
