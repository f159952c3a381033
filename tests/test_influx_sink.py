"""InfluxDB sink against real servers: influxd 1.6.7 (v1 /write) and VictoriaMetrics (/api/v2/write)."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import INFLUX_PASSWORD, INFLUX_USER, async_wait_for

from devkit.services import Influxd, VictoriaMetrics
from gateway.config import Config
from gateway.core.config import Influx
from gateway.core.metrics import Metrics
from gateway.core.models import Reading
from gateway.sinks.influx import InfluxSink

T0 = 1_732_300_000_123_456_789  # ns


def site_config(**influx: Any) -> Config:
    return Config.model_validate(
        {
            "site": {"code": "SITE 1,x", "name": "Test"},
            "hazard_sources": [{"code": "HS-001", "name": "Cl2", "grade": 2}],
            "tags": [
                {"id": "GT-101", "hazard_source": "HS-001", "kind": "toxic_gas", "gas": "Cl2", "unit": "mg/m3"},
                {"id": "PT-101", "hazard_source": "HS-001", "kind": "pressure", "unit": "MPa"},
                {"id": "TT-1", "kind": "temperature", "unit": "°C"},
            ],
            "influx": influx,
        }
    )


def sink_for(cfg: Config, metrics: Metrics | None = None) -> InfluxSink:
    assert cfg.influx is not None
    return InfluxSink(cfg.influx, cfg, metrics or Metrics())


def readings(n: int, tag: str = "GT-101", start: int = T0) -> list[Reading]:
    return [Reading(tag, i * 0.25, start + i * 1_000_001, "good") for i in range(n)]


def count(influxd: Influxd, db: str, where: str = "") -> int:
    rows = influxd.select(db, f"SELECT count(quality) FROM reading {where}")
    return int(rows[0]["count"]) if rows else 0


async def test_v1_values_timestamps_quality_and_tags(influxd: Influxd, influx_db: str) -> None:
    cfg = site_config(url=influxd.url, api="v1", bucket=influx_db, batch_size=100, flush_interval="100ms")
    sink = sink_for(cfg)
    await sink.start()
    batch = [
        Reading("GT-101", 0.35, T0, "good"),
        Reading("PT-101", 1.2345678901234, T0 + 1, "uncertain"),
        Reading("GT-101", None, T0 + 2, "comm"),
        Reading("TT-1", float("nan"), T0 + 3, "bad"),
        Reading("UNKNOWN-9", 5.0, T0 + 4, "good"),
    ]
    sink.on_readings(batch)
    await async_wait_for(lambda: count(influxd, influx_db) == 5, timeout=10)
    await sink.stop()
    rows = influxd.select(influx_db, "SELECT * FROM reading ORDER BY time")
    assert [r["time"] for r in rows] == [T0, T0 + 1, T0 + 2, T0 + 3, T0 + 4]
    r0 = rows[0]
    assert (r0["value"], r0["quality"], r0["tag"], r0["hs"], r0["kind"], r0["unit"], r0["site"]) == (
        0.35, "good", "GT-101", "HS-001", "toxic_gas", "mg/m3", "SITE 1,x"
    )
    assert rows[1]["value"] == 1.2345678901234 and rows[1]["quality"] == "uncertain"
    # no value for comm / NaN: quality only, never a made-up number
    assert rows[2]["value"] is None and rows[2]["quality"] == "comm"
    assert rows[3]["value"] is None and rows[3]["quality"] == "bad"
    assert rows[4]["tag"] == "UNKNOWN-9" and rows[4]["hs"] is None


async def test_v1_batches_by_size(influxd: Influxd, influx_db: str) -> None:
    cfg = site_config(url=influxd.url, api="v1", bucket=influx_db, batch_size=1000, flush_interval="1h")
    m = Metrics()
    sink = sink_for(cfg, m)
    await sink.start()
    sink.on_readings(readings(2500))
    # two full batches go out without waiting for the (1 h) interval; the rest on stop
    await async_wait_for(lambda: count(influxd, influx_db) == 2000, timeout=10)
    await sink.stop()
    assert count(influxd, influx_db) == 2500
    assert m.sink_batches.labels("influx", "ok")._value.get() == 3


async def test_v1_with_username_password(influxd_auth: Influxd, influx_auth_db: str) -> None:
    cfg = site_config(
        url=influxd_auth.url, api="v1", bucket=influx_auth_db, username=INFLUX_USER, password=INFLUX_PASSWORD,
        flush_interval="50ms",
    )
    sink = sink_for(cfg)
    await sink.start()
    sink.on_readings(readings(10))
    await async_wait_for(lambda: count(influxd_auth, influx_auth_db) == 10, timeout=10)
    await sink.stop()


async def test_v1_wrong_password_is_retried_not_dropped(influxd_auth: Influxd, influx_auth_db: str) -> None:
    cfg = site_config(
        url=influxd_auth.url, api="v1", bucket=influx_auth_db, username=INFLUX_USER, password="wrong",
        flush_interval="50ms", backoff_max="200ms",
    )
    m = Metrics()
    sink = sink_for(cfg, m)
    await sink.start()
    sink.on_readings(readings(10))
    await async_wait_for(lambda: m.sink_batches.labels("influx", "retry")._value.get() >= 2, timeout=10)
    assert sink.buffered == 10
    assert "401" in (sink.health()["last_error"] or "")
    assert sink.health()["ok"] is False
    await sink.stop()


async def test_v1_outage_is_retried_and_nothing_lost(influxd: Influxd, influx_db: str) -> None:
    cfg = site_config(url=influxd.url, api="v1", bucket=influx_db, batch_size=500, flush_interval="50ms",
                      backoff_max="300ms", timeout="2s")
    m = Metrics()
    sink = sink_for(cfg, m)
    await sink.start()
    sink.on_readings(readings(300))
    await async_wait_for(lambda: count(influxd, influx_db) == 300, timeout=10)
    await asyncio.to_thread(influxd.kill)
    sink.on_readings(readings(700, start=T0 + 10**12))
    await async_wait_for(lambda: m.sink_batches.labels("influx", "retry")._value.get() >= 2, timeout=15)
    await asyncio.to_thread(influxd.restart)
    await async_wait_for(lambda: count(influxd, influx_db) == 1000, timeout=20)
    await sink.stop()
    assert m.sink_dropped.labels("influx", "reading", "overflow")._value.get() == 0


async def test_v1_rejected_batch_is_reported_and_not_retried(influxd: Influxd, influx_db: str) -> None:
    # a string 'value' makes later float values a field type conflict: HTTP 400 partial write
    influxd.write(influx_db, f'reading,site=SITE\\ 1\\,x,tag=PT-101 value="oops" {T0 - 1}')
    cfg = site_config(url=influxd.url, api="v1", bucket=influx_db, flush_interval="50ms")
    m = Metrics()
    sink = sink_for(cfg, m)
    await sink.start()
    sink.on_readings(readings(5, tag="PT-101"))
    await async_wait_for(lambda: m.sink_batches.labels("influx", "rejected")._value.get() == 1, timeout=10)
    assert "field type conflict" in (sink.last_error or "")
    # later batches are not blocked by the rejected one (written a shard group later, where
    # 'value' has no string type yet)
    sink.on_readings(readings(3, tag="GT-101", start=T0 + 30 * 86400 * 10**9))
    await async_wait_for(lambda: count(influxd, influx_db, 'WHERE "tag" = \'GT-101\'') == 3, timeout=10)
    await sink.stop()
    assert m.sink_batches.labels("influx", "retry")._value.get() == 0


async def test_overflow_drops_oldest_readings_and_keeps_priority_lines(influxd: Influxd, influx_db: str) -> None:
    cfg = site_config(url=influxd.url, api="v1", bucket=influx_db, max_buffer=100, batch_size=1000,
                      flush_interval="50ms", backoff_max="200ms", timeout="1s")
    m = Metrics()
    sink = sink_for(cfg, m)
    await asyncio.to_thread(influxd.kill)
    try:
        await sink.start()
        sink.enqueue_priority([f'alarm,site=S,tag=GT-101 event="raised",seq={i}i {T0 + i}' for i in range(5)])
        sink.on_readings(readings(250))
        assert m.sink_dropped.labels("influx", "reading", "overflow")._value.get() == 150
        await async_wait_for(lambda: m.sink_batches.labels("influx", "retry")._value.get() >= 1, timeout=10)
    finally:
        await asyncio.to_thread(influxd.restart)
    await async_wait_for(lambda: count(influxd, influx_db) == 100, timeout=20)
    await sink.stop()
    rows = influxd.select(influx_db, "SELECT value FROM reading ORDER BY time LIMIT 1")
    assert rows[0]["value"] == 150 * 0.25  # the oldest 150 went, the newest 100 stayed
    alarms = influxd.select(influx_db, "SELECT count(event) FROM alarm")
    assert alarms[0]["count"] == 5


async def test_v1_several_batches_in_flight_and_nothing_lost(influxd: Influxd, influx_db: str) -> None:
    """Issue 23: the sink writes up to ``inflight`` batches at once (the real writer, timed
    around), every line arrives, and the buffer is empty afterwards."""
    cfg = site_config(url=influxd.url, api="v1", bucket=influx_db, batch_size=500, flush_interval="50ms")
    sink = sink_for(cfg)
    assert sink.inflight == 3
    write = sink.writer.write
    now = 0
    peak = 0

    async def counted(body: bytes) -> None:
        nonlocal now, peak
        now += 1
        peak = max(peak, now)
        try:
            await asyncio.sleep(0.02)  # hold the request open so that the others overlap it
            await write(body)
        finally:
            now -= 1

    sink.writer.write = counted  # type: ignore[method-assign]
    await sink.start()
    sink.on_readings(readings(6000, "GT-101"))
    sink.on_readings(readings(6000, "PT-101"))
    await async_wait_for(lambda: sink.written == 12_000, timeout=30)
    await sink.stop()
    assert peak == 3
    assert sink.buffered == 0
    assert count(influxd, influx_db) == 12_000


async def test_stop_flushes_buffered_lines(influxd: Influxd, influx_db: str) -> None:
    cfg = site_config(url=influxd.url, api="v1", bucket=influx_db, batch_size=10_000, flush_interval="1h")
    sink = sink_for(cfg)
    await sink.start()
    sink.on_readings(readings(1234))
    await sink.stop()
    assert count(influxd, influx_db) == 1234


async def test_v2_write_path_into_victoria_metrics(victoria: VictoriaMetrics) -> None:
    cfg = site_config(url=victoria.url, api="v2", bucket="hazard", org="demo", token="not-checked",
                      flush_interval="50ms")
    m = Metrics()
    sink = sink_for(cfg, m)
    await sink.start()
    start = T0 + 7 * 10**15
    sink.on_readings([Reading("GT-101", 0.5 + i, start + i * 1_000_000_000, "good") for i in range(20)])
    await async_wait_for(lambda: sink.written == 20, timeout=10)
    await sink.stop()

    def exported() -> list[dict[str, Any]]:
        victoria.flush()
        return victoria.export('reading_value{tag="GT-101",site="SITE 1,x"}')

    series = await async_wait_for(exported, timeout=15)
    assert len(series) == 1
    s = series[0]
    assert s["metric"]["hs"] == "HS-001" and s["metric"]["unit"] == "mg/m3" and s["metric"]["kind"] == "toxic_gas"
    assert s["values"] == [0.5 + i for i in range(20)]
    # VictoriaMetrics keeps ms: the ns timestamps arrive truncated to the ms
    assert s["timestamps"] == [(start + i * 1_000_000_000) // 1_000_000 for i in range(20)]
    assert m.sink_batches.labels("influx", "ok")._value.get() >= 1


async def test_v2_connection_refused_is_retryable(victoria: VictoriaMetrics) -> None:
    from devkit.services import free_port

    cfg = site_config(url=f"http://127.0.0.1:{free_port()}", api="v2", bucket="b", org="o", token="t",
                      flush_interval="50ms", backoff_max="100ms", timeout="1s")
    m = Metrics()
    sink = sink_for(cfg, m)
    await sink.start()
    sink.on_readings(readings(3))
    await async_wait_for(lambda: m.sink_batches.labels("influx", "retry")._value.get() >= 2, timeout=10)
    assert sink.buffered == 3
    await sink.stop()
    assert m.sink_dropped.labels("influx", "reading", "shutdown")._value.get() == 3


def test_influx_config_defaults() -> None:
    cfg = Influx.model_validate({"url": "http://x:8086", "bucket": "b"})
    assert (cfg.api, cfg.batch_size, cfg.flush_interval) == ("v2", 5000, 1.0)


def test_inline_reading_lines_match_reading_line() -> None:
    """on_readings formats the usual reading inline (issue 23); every reading gets exactly the
    line gateway.core.lineprotocol.reading_line makes (ints, bools, NaN, inf, None, odd qualities)."""
    from gateway.core.lineprotocol import reading_line
    from gateway.sinks.influx import reading_prefixes

    cfg = site_config(url="http://127.0.0.1:1", api="v1", bucket="b")
    sink = sink_for(cfg)
    values: list[Any] = [0.35, -0.0, 1e300, 5e-324, 3, True, float("nan"), float("inf"), -float("inf"), None]
    batch = [Reading(tag, v, T0 + i, q) for i, (tag, v, q) in enumerate(
        (tag, v, q) for tag in ("GT-101", "NEW-1") for v in values
        for q in ("good", "uncertain", "bad", "stale", "comm", 'we"ird\n'))]
    sink.on_readings(batch)
    prefixes = reading_prefixes(cfg)
    want = [reading_line(prefixes.get(r.tag) or sink._prefix[r.tag], r.value, r.quality, r.ts) for r in batch]
    assert list(sink.queue._r) == want  # type: ignore[attr-defined]
    assert "value=3.0," in want[4 * 6] and "value=1.0," in want[5 * 6]


def test_batch_lines_are_the_lines_reading_line_makes() -> None:
    """The batch path (issue 23: orjson writes the values of a batch in one call) makes exactly
    the text of gateway.core.lineprotocol.reading_line; a batch it cannot write the same way
    (repr's exponent notation, NaN, non-floats, an unknown tag or quality) takes the loop."""
    import math
    import random
    import struct

    from gateway.core.lineprotocol import reading_line
    from gateway.sinks.influx import FAST_BATCH

    cfg = site_config(url="http://127.0.0.1:1", api="v1", bucket="b")
    sink = sink_for(cfg)
    sink.set_tests(frozenset({"PT-101"}))  # a test-mode prefix too
    rng = random.Random(23)
    tags = ("GT-101", "PT-101", "TT-1")
    quals = ("good", "uncertain", "bad")

    def want(batch: list[Reading]) -> list[str]:
        return [reading_line(sink._prefix[r.tag], r.value, r.quality, r.ts) for r in batch]

    fast = 0
    for k in range(400):
        scale = 10.0 ** rng.randint(-7, 18)
        values = [round(rng.uniform(-100, 100), rng.randint(0, 9)) * scale for _ in range(FAST_BATCH + k % 7)]
        if k % 5 == 0:  # any bit pattern
            values = [v for v in (struct.unpack("d", struct.pack("Q", rng.getrandbits(64)))[0]
                                  for _ in range(200)) if math.isfinite(v)]
        batch = [Reading(rng.choice(tags), v, T0 + i * 1_000_000, rng.choice(quals)) for i, v in enumerate(values)]
        got = sink._batch_lines(batch)
        if got is not None:
            fast += 1
            assert got == want(batch)
        assert sink._lines(batch) == want(batch)
    assert fast > 150  # the usual magnitudes do take the batch path

    usual = [Reading("TT-1", 20.0 + i / 8, T0 + i, "good") for i in range(FAST_BATCH)]
    assert sink._batch_lines(usual) == want(usual)
    assert "PT-101,test=true" in sink._batch_lines([r._replace(tag="PT-101") for r in usual])[0]  # type: ignore[index]
    for odd in (1e-5, 6.5e-05, 1e16, float("nan"), float("inf"), 3, True, None):
        assert sink._batch_lines([*usual, usual[0]._replace(value=odd)]) is None
    assert sink._batch_lines([*usual, usual[0]._replace(tag="NEW-1")]) is None
    assert sink._batch_lines([*usual, usual[0]._replace(quality='we"ird')]) is None
    # and on_readings queues the same lines either way (the unknown tag gets its prefix)
    batch = [*usual, usual[0]._replace(tag="NEW-1", value=1e-5)]
    sink.on_readings(batch)
    sink.on_readings(usual)
    assert list(sink.queue._r) == want(batch) + want(usual)  # type: ignore[attr-defined]
