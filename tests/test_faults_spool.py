"""Fault injection for the spool and the InfluxDB sink, with real processes.

(a) influxd SIGKILLed for 60 s while MQTT (real mosquitto, QoS 1) feeds a steady 2,000
    readings/s into a whole in-process gateway: the count in influxd equals what was
    published, and the backlog drains at least 5x faster than real time while live data
    keeps arriving.
(b) the gateway, run as ``python -m gateway.cli run -c FILE``, SIGKILLed mid-stream (with
    influxd down for the 3 s before, so the spool holds a backlog) and restarted: every
    reading committed to the spool before the kill reaches influxd (the spool copied at
    the moment of the kill is the witness), and every reading published (QoS 1, persistent
    session) reaches influxd: messages are acknowledged after the spool commit, so nothing
    is lost (``tests/test_mqtt_kill9.py`` does it 5 times at 1,000 messages/s).
(c) the spool limit reached with influxd down: the oldest readings are dropped and counted
    (``/metrics`` and the ``gateway`` measurement), alarm events are all kept.

Measured numbers are printed (run with ``-s`` to see them) and attached to the test
report as user properties.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
import yaml
from helpers import async_wait_for

from devkit.services import Influxd, Mosquitto
from gateway.config import Config
from gateway.core.metrics import Metrics
from gateway.core.models import Reading
from gateway.spool.spool import _State
from gateway.supervisor import Gateway

ROOT = Path(__file__).resolve().parents[1]
BASE_MS = 1_732_500_000_000  # source timestamps of the stream: message k carries BASE_MS + k
N_TAGS = 100  # readings per message, one per tag
RATE = 2000  # readings/s

Report = Callable[[str, object], None]


def tag_ids() -> list[str]:
    return [f"TT-{i:03d}" for i in range(N_TAGS)]


def site(mqtt_url: str | None, influx: dict[str, Any], store: Path, *, client_id: str = "faults-gw",
         max_bytes: str | int = "1GiB", extra_tags: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    sources = []
    if mqtt_url is not None:
        sources.append({
            "id": "plant", "type": "mqtt", "url": mqtt_url, "client_id": client_id,
            "subscriptions": [{"topic": "plant/bulk", "qos": 1, "format": "native"}],
        })
    return {
        "site": {"code": "FAULTS", "name": "Fault injection"},
        "sources": sources,
        "tags": [{"id": t, "kind": "temperature", "unit": "°C"} for t in tag_ids()] + (extra_tags or []),
        "influx": {"batch_size": 5000, "flush_interval": "1s", "timeout": "2s", **influx},
        "store": {"path": str(store), "max_bytes": max_bytes},
        "api": {"enabled": False},
    }


class Publisher(threading.Thread):
    """``RATE`` readings/s as ``native`` messages of ``N_TAGS`` readings, QoS 1, paced:
    message k is published at ``t0 + k * N_TAGS / RATE`` and carries timestamp BASE_MS + k."""

    def __init__(self, broker: Mosquitto) -> None:
        super().__init__(daemon=True, name="publisher")
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"faults-pub-{os.getpid()}")
        self.client.max_inflight_messages_set(1000)
        self.client.on_publish = self._on_publish
        self.broker = broker
        self.acked = 0  # messages the broker acknowledged (PUBACK): in its hands for good
        self.sent = 0
        self.t0 = 0.0
        self._halt = threading.Event()
        self._lock = threading.Lock()
        self.tags = tag_ids()

    def _on_publish(self, client: Any, userdata: Any, mid: int, rc: Any, props: Any) -> None:
        with self._lock:
            self.acked += 1

    def message_time(self, k: int) -> float:
        return self.t0 + k * N_TAGS / RATE

    def run(self) -> None:
        self.client.connect(self.broker.host, self.broker.port)
        self.client.loop_start()
        self.t0 = time.monotonic()
        k = 0
        while not self._halt.is_set():
            delay = self.message_time(k) - time.monotonic()
            if delay > 0 and self._halt.wait(delay):
                break
            payload = json.dumps([{"tag": t, "v": (k % 1000) + i / 1000, "ts": BASE_MS + k}
                                  for i, t in enumerate(self.tags)], separators=(",", ":"))
            self.client.publish("plant/bulk", payload, qos=1)
            k += 1
            self.sent = k
        deadline = time.monotonic() + 30
        while self.acked < self.sent and time.monotonic() < deadline:
            time.sleep(0.05)
        self.client.loop_stop()
        self.client.disconnect()

    def stop(self) -> None:
        self._halt.set()
        self.join(60)


def stream_count(influxd: Influxd, db: str) -> int:
    rows = influxd.select(db, f"SELECT count(value) FROM reading WHERE time >= {BASE_MS * 10**6}")
    return int(rows[0]["count"]) if rows else 0


def stored_keys(influxd: Influxd, db: str) -> set[tuple[str, int]]:
    out: set[tuple[str, int]] = set()
    for tag in tag_ids():  # per tag: small answers
        rows = influxd.select(db, f"SELECT value FROM reading WHERE \"tag\" = '{tag}' AND time >= {BASE_MS * 10**6}")
        out.update((tag, int(r["time"])) for r in rows)
    return out


@pytest.fixture
def report(record_property: Callable[[str, object], None]) -> Iterator[Report]:
    lines: list[str] = []

    def add(name: str, value: object) -> None:
        record_property(name, value)
        lines.append(f"  {name}: {value}")

    yield add
    print("\n" + "\n".join(lines))


# ----------------------------------------------------------------------------- (a)


@pytest.mark.slow
async def test_influxd_down_60s_during_a_steady_2000_per_s_stream(
    mosquitto: Mosquitto, influxd: Influxd, influx_db: str, tmp_path: Path, report: Report
) -> None:
    outage_target = 60.0
    cfg = Config.model_validate(site(mosquitto.url, {"url": influxd.url, "api": "v1", "bucket": influx_db},
                                     tmp_path / "store"))
    gw = Gateway(cfg)
    await gw.start()
    sink = gw.influx
    assert sink is not None
    pub = Publisher(mosquitto)
    try:
        await async_wait_for(lambda: gw.health()["components"]["source:plant"].get("connected"), timeout=10)
        pub.start()
        await asyncio.sleep(5)  # steady state with InfluxDB up
        assert stream_count(influxd, influx_db) > 0
        await asyncio.to_thread(influxd.kill)
        t_down = time.monotonic()
        peak_bytes = peak_records = 0
        while time.monotonic() - t_down < outage_target:
            peak_bytes = max(peak_bytes, sink.queue.health()["bytes"])
            peak_records = max(peak_records, sink.buffered)
            await asyncio.sleep(0.5)
        await asyncio.to_thread(influxd.restart)
        t_up = time.monotonic()
        outage = t_up - t_down
        backlog = sink.buffered
        k_up = pub.sent  # messages published after this are "live" during the drain
        first_live: list[float] = []

        async def watch_live() -> None:
            since = (BASE_MS + k_up) * 10**6
            while True:
                rows = await asyncio.to_thread(
                    influxd.select, influx_db, f"SELECT count(value) FROM reading WHERE time >= {since}")
                if rows and rows[0]["count"]:
                    first_live.append(time.monotonic() - t_up)
                    return
                await asyncio.sleep(0.05)

        live_task = asyncio.create_task(watch_live())
        # drained: what is left is live data (under 2 s of it), within outage / 5
        await async_wait_for(lambda: sink.buffered < 2 * RATE, timeout=outage / 5, interval=0.02,
                             desc="the backlog drained within outage / 5")
        t_drained = time.monotonic()
        await asyncio.wait_for(live_task, 20)
        await asyncio.sleep(max(0.0, 10 - (time.monotonic() - t_up)))  # live data keeps flowing
    finally:
        await asyncio.to_thread(pub.stop)
        if not influxd.is_running:
            await asyncio.to_thread(influxd.restart)
    published = pub.acked * N_TAGS
    try:
        await async_wait_for(lambda: stream_count(influxd, influx_db) == published, timeout=30)
    finally:
        await gw.stop()
    stored = stream_count(influxd, influx_db)
    drain = t_drained - t_up
    dropped = sum(s.value for fam in gw.metrics.registry.collect() if fam.name == "hazardgw_sink_dropped"
                  for s in fam.samples if s.name.endswith("_total"))
    report("published", published)
    report("stored", stored)
    report("outage_s", round(outage, 1))
    report("backlog_at_restart", backlog)
    report("peak_spool_bytes", peak_bytes)
    report("peak_buffered", peak_records)
    report("drain_s", round(drain, 2))
    report("drain_rate_lines_per_s", round(backlog / drain))
    report("drain_speed_x_real_time", round(outage / drain, 1))
    report("first_live_reading_after_restart_s", round(first_live[0], 2))
    report("dropped", dropped)
    assert stored == published
    assert dropped == 0
    assert outage / drain >= 5
    assert sink.queue.health()["bytes"] == 0  # everything acknowledged: segments deleted


# ----------------------------------------------------------------------------- (b)


def start_gateway(cfg_file: Path, log_file: Path) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log_file.open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg_file)], cwd=ROOT,
                                stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)


_LINE = re.compile(r",tag=([^, ]+).* (\d+)$")


def committed_in_spool(spool_copy: Path) -> set[tuple[str, int]]:
    """(tag, ts) of every reading a copy of the spool holds (the restart's replay set)."""
    st = _State(spool_copy, max_bytes=1 << 40, segment_bytes=1 << 20, block_bytes=1 << 20, fsync=False,
                backlog_records=None)
    st.open()
    out: set[tuple[str, int]] = set()
    while (got := st.next_batch(100_000, 1 << 30)) is not None:
        body, _, _, token, _ = got
        for line in body.decode().split("\n"):
            m = _LINE.search(line)
            if m and line.startswith("reading,"):
                out.add((m.group(1), int(m.group(2))))
        st.ack(token)
    st.close()
    return out


@pytest.mark.slow
async def test_gateway_sigkill_mid_stream_and_restart(
    mosquitto: Mosquitto, influxd: Influxd, influx_db: str, tmp_path: Path, report: Report
) -> None:
    store = tmp_path / "store"
    cfg_file = tmp_path / "site.yaml"
    cfg_file.write_text(yaml.safe_dump(site(mosquitto.url, {"url": influxd.url, "api": "v1", "bucket": influx_db},
                                            store, client_id="faults-kill"), allow_unicode=True))
    gw = start_gateway(cfg_file, tmp_path / "gateway.log")
    gw2: subprocess.Popen[bytes] | None = None
    pub = Publisher(mosquitto)
    probe = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="faults-probe")
    try:
        # ready = subscribed (the persistent session exists): a probe reading reaches influxd
        probe.connect(mosquitto.host, mosquitto.port)
        probe.loop_start()
        n_probe = 0

        def probed() -> bool:
            nonlocal n_probe
            n_probe += 1
            probe.publish("plant/bulk", json.dumps([{"tag": "TT-000", "v": 0, "ts": BASE_MS - 10_000 + n_probe}]),
                          qos=1)
            rows = influxd.select(influx_db, f"SELECT count(value) FROM reading WHERE time < {BASE_MS * 10**6}")
            return bool(rows and rows[0]["count"])

        await async_wait_for(probed, timeout=20, interval=0.3)
        probe.loop_stop()
        probe.disconnect()
        pub.start()
        await asyncio.sleep(3)
        # influxd goes away first, so the spool holds a backlog of committed readings at the kill
        await asyncio.to_thread(influxd.kill)
        await asyncio.sleep(3)
        os.kill(gw.pid, signal.SIGKILL)
        t_kill = time.monotonic()
        gw.wait(10)
        k_kill = pub.sent
        # the witness: what the spool held at the kill (everything committed and not yet acknowledged)
        shutil.copytree(store / "spool" / "influx", tmp_path / "spool-at-kill")
        await asyncio.to_thread(influxd.restart)
        await asyncio.sleep(max(0.0, 2 - (time.monotonic() - t_kill)))  # the broker queues for the session
        gw2 = start_gateway(cfg_file, tmp_path / "gateway.log")
        t_restart = time.monotonic()
        await asyncio.sleep(3)
    finally:
        await asyncio.to_thread(pub.stop)
        if not influxd.is_running:
            await asyncio.to_thread(influxd.restart)
    published = pub.acked * N_TAGS
    try:
        # wait until everything arrived, or the count stopped moving (a shortfall is what we measure)
        last, still = -1, 0.0
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            now = stream_count(influxd, influx_db)
            if now >= published or (now == last and time.monotonic() - still > 3):
                break
            if now != last:
                last, still = now, time.monotonic()
            await asyncio.sleep(0.25)
    finally:
        if gw2 is not None:
            gw2.send_signal(signal.SIGTERM)
            gw2.wait(30)
    stored = await asyncio.to_thread(stored_keys, influxd, influx_db)
    committed = committed_in_spool(tmp_path / "spool-at-kill")
    sent_keys = {(t, (BASE_MS + k) * 10**6) for k in range(pub.acked) for t in tag_ids()}
    missing_committed = committed - stored
    missing = sent_keys - stored
    lost_msgs = sorted({ts // 10**6 - BASE_MS for _, ts in missing})
    report("published", published)
    report("stored", len(stored & sent_keys))
    report("gateway_down_s", round(t_restart - t_kill, 1))
    report("committed_unacked_in_spool_at_kill", len(committed))
    report("committed_but_missing", len(missing_committed))
    report("lost_end_to_end", len(missing))
    if lost_msgs:
        rel = [round(pub.message_time(k) - t_kill, 2) for k in (lost_msgs[0], lost_msgs[-1])]
        report("lost_messages", f"{len(lost_msgs)} (k={lost_msgs[0]}..{lost_msgs[-1]}, published {rel[0]}..{rel[1]} s "
                                f"relative to the kill; last message published before the kill: k={k_kill - 1})")
    assert len(committed) > 0, "the kill should land while readings wait in the spool"
    assert not missing_committed, f"{len(missing_committed)} committed readings never reached influxd"
    # QoS 1 messages are acknowledged only after the spool commit (issue 20): nothing is lost
    assert not missing, f"{len(missing)} readings lost end to end"


# ----------------------------------------------------------------------------- (c)


async def test_spool_limit_drops_oldest_readings_counts_them_and_keeps_alarms(
    influxd: Influxd, influx_db: str, tmp_path: Path, report: Report
) -> None:
    gas = {"id": "GT-1", "kind": "toxic_gas", "gas": "Cl2", "unit": "ppm", "range": [0, 10],
           "alarms": {"hh": {"limit": 2.0, "priority": 1}}}
    raw = site(None, {"url": influxd.url, "api": "v1", "bucket": influx_db, "flush_interval": "100ms",
                      "backoff_max": "1s"}, tmp_path / "store", max_bytes="1MiB", extra_tags=[gas])
    metrics = Metrics()
    gw = Gateway(Config.model_validate(raw), metrics=metrics, self_metrics_interval=0.5)
    events: list[Any] = []
    gw.alarms.subscribe(events.append)
    sink = gw.influx
    assert sink is not None
    base = BASE_MS * 10**6
    n = 0
    await asyncio.to_thread(influxd.kill)
    try:
        await gw.start()
        tags = tag_ids()
        for b in range(60):
            batch = [Reading(tags[(n + i) % N_TAGS], float(i), base + (n + i) * 1000, "good") for i in range(1000)]
            n += len(batch)
            if b % 3 == 0:  # a chlorine alarm raised, then cleared
                batch.append(Reading("GT-1", 5.0 if b % 6 == 0 else 0.5, base + n * 1000, "good"))
                n += 1
            await gw.pipeline.emit(batch)
            await asyncio.sleep(0.02)
        await async_wait_for(lambda: sink.queue.health()["pending"] == 0, timeout=10)
        spool_bytes = sink.queue.health()["bytes"]
        assert spool_bytes <= 1024 * 1024
        dropped = metrics.sink_dropped.labels("influx", "reading", "spool_overflow")._value.get()
        assert dropped > 0
        assert metrics.sink_dropped.labels("influx", "priority", "spool_overflow")._value.get() == 0
        await asyncio.sleep(1.2)  # two self-metric samples with the drops, spooled as priority records
    finally:
        await asyncio.to_thread(influxd.restart)
    await async_wait_for(lambda: sink.buffered == 0, timeout=30)
    await gw.stop()
    dropped = metrics.sink_dropped.labels("influx", "reading", "spool_overflow")._value.get()
    stored = int(influxd.select(influx_db, "SELECT count(value) FROM reading")[0]["count"])
    report("emitted", n)
    report("dropped_spool_overflow", int(dropped))
    report("stored", stored)
    report("spool_bytes_at_limit", spool_bytes)
    report("alarm_events", len(events))
    assert stored + dropped == n
    # The newest survived, as one contiguous run up to the last reading. The only older ones
    # are the batch the sink was holding in retry when InfluxDB went away: it was sent, not dropped.
    pos = sorted((int(r["time"]) - base) // 1000 for r in influxd.select(influx_db, "SELECT value FROM reading"))
    gap = next((i for i in range(1, len(pos)) if pos[i] != pos[i - 1] + 1), len(pos))
    in_flight, newest = pos[:gap], pos[gap:]
    assert newest and newest[-1] == n - 1 and newest == list(range(newest[0], n))
    assert in_flight == list(range(len(in_flight))) and len(in_flight) <= 5000 + 1
    report("kept_newest", len(newest))
    report("kept_in_flight_batch", len(in_flight))
    # every alarm event is there
    assert len(events) >= 10
    alarm_rows = influxd.select(influx_db, "SELECT count(event) FROM alarm")
    assert int(alarm_rows[0]["count"]) == len(events)
    # the drops are in the gateway measurement (self-metrics), as in /metrics
    rows = influxd.select(influx_db, "SELECT last(sink_dropped_total_reading_spool_overflow) FROM gateway "
                                     "WHERE component = 'sink:influx'")
    assert rows and rows[0]["last"] == dropped
