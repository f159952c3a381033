"""InfluxSink with its durable spool against a real influxd 1.6.7."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from helpers import async_wait_for
from test_influx_sink import count, readings, site_config

from devkit.services import Influxd
from gateway.core.metrics import Metrics
from gateway.selfmetrics import SelfMetricsWriter
from gateway.sinks.influx import InfluxSink


def segments(d: Path) -> list[Path]:
    return list(d.rglob("*.seg"))


def spooled_sink(url: str, db: str, spool: Path, m: Metrics, **influx: object) -> InfluxSink:
    cfg = site_config(url=url, api="v1", bucket=db, **{"flush_interval": "100ms", "timeout": "1s", **influx})
    assert cfg.influx is not None
    return InfluxSink(cfg.influx, cfg, m, spool_dir=spool, spool_max_bytes=64 * 1024 * 1024, shutdown_timeout=1.0)


async def test_stop_while_influx_is_down_keeps_the_lines_for_the_next_start(
    influxd: Influxd, influx_db: str, tmp_path: Path
) -> None:
    m = Metrics()
    sink = spooled_sink(influxd.url, influx_db, tmp_path, m, backoff_max="200ms")
    await asyncio.to_thread(influxd.kill)
    try:
        await sink.start()
        sink.on_readings(readings(3000))
        sink.enqueue_priority([f'alarm,site=S,tag=GT-101 event="raised",seq={i}i {1_732_300_000_000_000_000 + i}'
                               for i in range(3)])
        await async_wait_for(lambda: m.sink_batches.labels("influx", "retry")._value.get() >= 1, timeout=10)
        await sink.stop()
    finally:
        await asyncio.to_thread(influxd.restart)
    assert m.sink_dropped.labels("influx", "reading", "shutdown")._value.get() == 0
    assert sink.buffered == 3003  # on disk
    # a new sink on the same registry and directory (a restart, or a hot reload rebuilding the sink)
    again = spooled_sink(influxd.url, influx_db, tmp_path, m)
    await again.start()
    assert m.registry.get_sample_value("hazardgw_spool_recovered_total", {"sink": "influx", "kind": "reading"}) == 3000
    await async_wait_for(lambda: count(influxd, influx_db) == 3000, timeout=15)
    await async_wait_for(lambda: again.buffered == 0, timeout=5)
    await again.stop()
    assert influxd.select(influx_db, "SELECT count(event) FROM alarm")[0]["count"] == 3
    assert not segments(tmp_path)  # all acknowledged: nothing left on disk


async def test_spool_state_is_in_health_and_in_the_gateway_measurement(
    influxd: Influxd, influx_db: str, tmp_path: Path
) -> None:
    m = Metrics()
    sink = spooled_sink(influxd.url, influx_db, tmp_path, m)
    await sink.start()
    sink.on_readings(readings(100))
    await async_wait_for(lambda: count(influxd, influx_db) == 100, timeout=10)
    h = sink.health()
    assert h["ok"] and h["spool"]["durable"] and h["spool"]["path"] == str(tmp_path)
    lines = SelfMetricsWriter("S", m, sink).snapshot()
    mine = next(x for x in lines if "component=sink:influx" in x)
    for field in ("spool_bytes=", "spool_records_reading=", "spool_pending=", "spool_commits_total="):
        assert field in mine, (field, mine)
    await sink.stop()


async def test_recovery_is_noticed_quickly_whatever_backoff_max_says(
    influxd: Influxd, influx_db: str, tmp_path: Path
) -> None:
    m = Metrics()
    sink = spooled_sink(influxd.url, influx_db, tmp_path, m, backoff_max="60s")
    await sink.start()
    await asyncio.to_thread(influxd.kill)
    try:
        sink.on_readings(readings(500))
        # after ~8 s of failures the exponential backoff is at 6-13 s per attempt
        await asyncio.sleep(8)
        assert m.sink_batches.labels("influx", "retry")._value.get() >= 4
    finally:
        await asyncio.to_thread(influxd.restart)
    t0 = time.monotonic()
    await async_wait_for(lambda: count(influxd, influx_db) == 500, timeout=10)
    assert time.monotonic() - t0 < 3.0  # a /ping every second ends the wait
    await sink.stop()
