"""Alarm KPIs as gauges: the last 24 hours and the last 30 days, recomputed from the journal.

``AlarmKpiGauges`` computes the alarm system KPIs (alerting/kpi.py, the same function as
``GET /api/kpi`` and the monthly report) every ``interval`` (5 min) in a worker thread, over
the windows ``24h`` and ``30d`` ending now, and sets ``hazardgw_alarm_kpi{kpi, window}``.
They show on ``/metrics``, and the self-metrics writer puts them into InfluxDB's ``gateway``
measurement (``component=alarm``, field ``alarm_kpi_<kpi>_<window>``), which the Grafana
alarm-history dashboard plots. A KPI with no data (no acknowledgement yet: no ack time) is
NaN on ``/metrics`` and left out of InfluxDB. Nothing here touches the alarm engine's hot path.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable
from typing import Any, Final

from prometheus_client import CollectorRegistry, Gauge

from alerting.kpi import KpiSettings, compute
from gateway.core.config import SiteConfig
from gateway.core.metrics import Metrics
from gateway.core.ratelog import RateLimitedLog
from gateway.core.tasks import TaskComponent

log = logging.getLogger(__name__)

WINDOWS: Final = {"24h": 86_400, "30d": 30 * 86_400}
KPIS: Final = (
    "annunciations", "per_10min", "peak_10min", "flood_pct", "top10_pct", "chattering", "fleeting", "standing",
    "p1_pct", "stale_acks", "ack_p50_s", "ack_p90_s", "disposition_pct",
)


class KpiMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.kpi = Gauge(
            "hazardgw_alarm_kpi",
            "Alarm system KPI over a window ending now (alerting/kpi.py; NaN: no data)",
            ["kpi", "window"],
            registry=registry,
        )


class AlarmKpiGauges(TaskComponent):
    name = "alarm-kpi"

    def __init__(
        self,
        config: SiteConfig,
        journal: Callable[[], Any],
        metrics: Metrics,
        *,
        interval: float = 300.0,
        wall: Callable[[], int] = time.time_ns,
    ) -> None:
        super().__init__()
        self.settings = KpiSettings.from_config(config)
        self._journal = journal  # the engine's journal now (None without one)
        self._m = metrics.group(KpiMetrics)
        self.interval = interval
        self._wall = wall
        self._rlog = RateLimitedLog(log, 600.0)
        self.last: dict[str, dict[str, float | None]] = {}
        self.last_wall: int | None = None
        self.error: str | None = None

    def refresh(self) -> dict[str, dict[str, float | None]]:
        """Compute every window now and set the gauges (blocking: the journal is read)."""
        j = self._journal()
        if j is None:
            raise RuntimeError("no alarm journal")
        now = self._wall()
        out: dict[str, dict[str, float | None]] = {}
        for window, seconds in WINDOWS.items():
            start = now - seconds * 1_000_000_000
            ann, occ = j.kpi_rows(start, now)
            values = compute(ann, occ, start, now, self.settings, now=now).values()
            out[window] = {k: values.get(k) for k in KPIS}
            for k in KPIS:
                v = values.get(k)
                self._m.kpi.labels(k, window).set(math.nan if v is None else float(v))
        self.last, self.last_wall = out, now
        return out

    async def _run(self) -> None:
        while True:
            try:
                await asyncio.to_thread(self.refresh)
                self.error = None
            except Exception as e:
                self.error = f"{type(e).__name__}: {e}"
                self._rlog.warning("kpi", "alarm KPIs not computed: %s", self.error)
            await asyncio.sleep(self.interval)

    def health(self) -> dict[str, Any]:
        # a missing journal is reported by the engine; the KPIs are a view, never a reason to degrade
        return {"ok": self.running, "computed_wall": self.last_wall, "error": self.error}
