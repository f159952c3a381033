"""Modbus self-metrics, registered once per gateway registry.

Collectors live on the gateway's private registry and are created through
``Metrics.group``, so several gateways (tests) in one process each get their own, and
building the Modbus sources twice on one registry (a config reload) reuses them instead
of failing with "duplicated timeseries".
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from gateway.core.metrics import Metrics

_LATENESS_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)


class ModbusMetrics:
    def __init__(self, r: CollectorRegistry) -> None:
        self.poll_lateness = Histogram(
            "hazardgw_modbus_poll_lateness_seconds",
            "How late a poll started against its schedule",
            ["source"],
            buckets=_LATENESS_BUCKETS,
            registry=r,
        )
        self.poll_lateness_last = Gauge(
            "hazardgw_modbus_poll_lateness_last_seconds", "Lateness of the latest poll", ["source"], registry=r
        )
        self.poll_duration = Histogram(
            "hazardgw_modbus_poll_duration_seconds",
            "Time one poll cycle took (all requests of a source)",
            ["source"],
            buckets=_LATENESS_BUCKETS,
            registry=r,
        )
        self.polls = Counter("hazardgw_modbus_polls", "Poll cycles run", ["source"], registry=r)
        self.polls_late = Counter(
            "hazardgw_modbus_polls_late",
            "Polls that started more than 10 % of the poll interval late (overrun or backpressure)",
            ["source"],
            registry=r,
        )
        self.polls_skipped = Counter(
            "hazardgw_modbus_polls_skipped",
            "Scheduled polls dropped because the previous one overran (polls never stack up)",
            ["source"],
            registry=r,
        )
        self.requests = Counter(
            "hazardgw_modbus_requests",
            "Read requests by result (ok, exception, timeout, not_connected, bad_response, dropped)",
            ["source", "result"],
            registry=r,
        )
        self.bad_responses = Counter(
            "hazardgw_modbus_bad_responses",
            "Answers that do not fit the request, by reason (garbage, transaction_id, length, device_id, crc, "
            "function_code, register_count, pymodbus)",
            ["source", "reason"],
            registry=r,
        )
        self.exceptions = Counter(
            "hazardgw_modbus_exceptions",
            "Exception responses by Modbus exception code",
            ["source", "code"],
            registry=r,
        )
        self.registers = Counter(
            "hazardgw_modbus_registers_read", "Registers (or bits) received", ["source", "unit"], registry=r
        )
        self.splits = Counter(
            "hazardgw_modbus_request_splits",
            "Merged requests split after an illegal-address answer",
            ["source"],
            registry=r,
        )
        self.connects = Counter(
            "hazardgw_modbus_connects", "Connection attempts by result", ["bus", "result"], registry=r
        )
        self.bus_connected = Gauge("hazardgw_modbus_bus_connected", "1 while a bus is connected", ["bus"], registry=r)
        self.device_up = Gauge(
            "hazardgw_modbus_device_up",
            "1 while a source's device answers (0 in comm failure/backoff)",
            ["source"],
            registry=r,
        )


def modbus_metrics(metrics: Metrics) -> ModbusMetrics:
    """The Modbus collectors of ``metrics.registry``, created on first use."""
    return metrics.group(ModbusMetrics)
