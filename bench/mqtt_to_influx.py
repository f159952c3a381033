"""MQTT -> gateway -> InfluxDB throughput, with mosquitto_sub as the physical reference.

    .venv/bin/python bench/mqtt_to_influx.py [--messages 2000] [--per-message 100]

Starts mosquitto, influxd 1.6.7 and VictoriaMetrics on loopback, a gateway with one MQTT
source (``native`` bulk format, 5,000 tags) writing to InfluxDB, then pipes N bulk
messages into ``mosquitto_pub -l`` (QoS 1) and measures the time from the first publish to
the last reading being written by the sink (and counted in the database). The reference
run times ``mosquitto_sub -C N`` receiving the same stream. Prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from gateway.config import Config  # noqa: E402
from gateway.services import Influxd, Mosquitto, VictoriaMetrics  # noqa: E402
from gateway.supervisor import Gateway  # noqa: E402

N_TAGS = 5000


def make_payloads(messages: int, per: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    base = 1_732_300_000_000
    out = []
    k = 0
    for _ in range(messages):
        items = []
        for _ in range(per):
            items.append({"tag": f"TT-{k % N_TAGS:04d}", "v": round(rng.uniform(0, 100), 3), "ts": base + k})
            k += 1
        out.append(json.dumps(items, separators=(",", ":")))
    return out


def config(mqtt_url: str, influx: dict[str, Any], store: str) -> Config:
    return Config.model_validate(
        {
            "site": {"code": "BENCH", "name": "bench"},
            "sources": [{"id": "m", "type": "mqtt", "url": mqtt_url, "client_id": "bench-gw",
                         "persistent_session": False,
                         "subscriptions": [{"topic": "bench/bulk", "qos": 1, "format": "native"}]}],
            "tags": [{"id": f"TT-{i:04d}", "kind": "temperature", "unit": "°C"} for i in range(N_TAGS)],
            "influx": {"flush_interval": "200ms", **influx},
            "api": {"enabled": False},
            "store": {"path": store},
        }
    )


def publish_all(broker: Mosquitto, payload_file: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [shutil.which("mosquitto_pub") or "mosquitto_pub", "-h", broker.host, "-p", str(broker.port),
         "-q", "1", "-t", "bench/bulk", "-l"],
        stdin=payload_file.open("rb"),
    )


def reference(broker: Mosquitto, payload_file: Path, messages: int) -> float:
    sub = subprocess.Popen(
        [shutil.which("mosquitto_sub") or "mosquitto_sub", "-h", broker.host, "-p", str(broker.port),
         "-q", "1", "-t", "bench/bulk", "-C", str(messages)],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # mosquitto_sub has no readiness signal; it only needs to be subscribed
    t0 = time.perf_counter()
    pub = publish_all(broker, payload_file)
    pub.wait()
    sub.wait(timeout=300)
    return time.perf_counter() - t0


def n_priority(gw: Gateway) -> int:
    """Self-metric lines the sink wrote besides the readings."""
    v = gw.metrics.sink_lines.labels("influx", "priority")._value.get()
    return int(v)


async def gateway_run(broker: Mosquitto, payload_file: Path, influx: dict[str, Any], total: int,
                      store: str) -> tuple[float, float]:
    gw = Gateway(config(broker.url, influx, store))
    await gw.start()
    while not gw.health()["components"]["source:m"].get("connected"):  # noqa: ASYNC110 - polling a flag
        await asyncio.sleep(0.05)
    assert gw.influx is not None
    t0 = time.perf_counter()
    pub = publish_all(broker, payload_file)
    t_in = None
    last_log = time.perf_counter()
    while gw.influx.written < total + n_priority(gw):
        if time.perf_counter() - last_log > 5:
            last_log = time.perf_counter()
            print(f"  ... dispatched {gw.pipeline.dispatched}, written {gw.influx.written}, "
                  f"buffered {gw.influx.buffered}, source {gw.health()['components']['source:m']}", flush=True)
        if t_in is None and gw.pipeline.dispatched >= total:
            t_in = time.perf_counter() - t0
        await asyncio.sleep(0.01)
    elapsed = time.perf_counter() - t0
    pub.wait()
    await gw.stop()
    return (t_in or elapsed), elapsed


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--per-message", type=int, default=100)
    args = ap.parse_args()
    total = args.messages * args.per_message
    with tempfile.TemporaryDirectory(prefix="hazardgw-bench-") as d:
        work = Path(d)
        payload_file = work / "payloads.txt"
        payload_file.write_text("\n".join(make_payloads(args.messages, args.per_message)) + "\n")
        with Mosquitto(work / "mq") as broker, Influxd(work / "influxd") as influxd, \
                VictoriaMetrics(work / "vm") as vm:
            influxd.create_database("bench")
            ref = reference(broker, payload_file, args.messages)
            v1_in, v1 = asyncio.run(gateway_run(broker, payload_file,
                                                {"url": influxd.url, "api": "v1", "bucket": "bench"}, total,
                                                str(work / "s1")))
            stored = influxd.select("bench", "SELECT count(value) FROM reading")[0]["count"]
            v2_in, v2 = asyncio.run(gateway_run(broker, payload_file,
                                                {"url": vm.url, "api": "v2", "bucket": "b", "org": "o"}, total,
                                                str(work / "s2")))
    print(f"\n{args.messages} MQTT messages x {args.per_message} readings = {total} readings, QoS 1, "
          f"{N_TAGS} tags")
    print(f"{'path':44} {'seconds':>8} {'readings/s':>12} {'msgs/s':>9}")
    rows = [
        ("reference: mosquitto_pub -> mosquitto_sub", ref),
        ("gateway ingest (decoded + dispatched), v1 run", v1_in),
        ("gateway -> influxd 1.6.7 (v1 /write) written", v1),
        ("gateway ingest (decoded + dispatched), v2 run", v2_in),
        ("gateway -> VictoriaMetrics (v2 client) written", v2),
    ]
    for name, secs in rows:
        print(f"{name:44} {secs:8.2f} {total / secs:12,.0f} {args.messages / secs:9,.0f}")
    print(f"readings counted in influxd: {stored} of {total}")
    print(f"ratio gateway->influxd / reference: {ref / v1:.2f}")


if __name__ == "__main__":
    main()
