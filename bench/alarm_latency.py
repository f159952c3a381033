"""End-to-end alarm latency: MQTT publish of the crossing reading -> webhook receives the push.

    .venv/bin/python bench/alarm_latency.py [--alarms 100] [--warmup 5] [--rate 10000] [--seed 3]

Starts mosquitto on loopback, a loopback aiohttp webhook (the on-duty person's apprise
``json://127.0.0.1:PORT/duty`` URL) and a real ``Gateway`` in this process (API disabled,
no influx section: live state, alarm engine and Notifier only) with one MQTT source
(``native`` format) and 5,000 background tags plus one alarm tag per measured alarm
(HH at 80, priority 1, no on/off delays; one 24 h shift; escalation ``after: 0s ->
on_duty``). A ``mosquitto_pub -l`` child publishes ``--rate`` readings/s of background load
(bulk messages of 100 readings, values that never alarm). Each alarm: a paho client
publishes one reading above HH for a fresh tag (t0 = just before ``publish``), the
receiver stamps the request's arrival, then the tag returns to normal. ``--warmup`` alarms
are not counted. Prints p50, p99 and max (target p99 <= 50 ms).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import paho.mqtt.client as paho  # noqa: E402

from bench.common import PacedPublisher, Receiver, metric, pct  # noqa: E402
from devkit.services import Mosquitto  # noqa: E402
from gateway.config import Config  # noqa: E402
from gateway.supervisor import Gateway  # noqa: E402

N_BG = 5000
PER = 100
TARGET_P99_MS = 50.0


def config(mqtt_url: str, store: str, hook: str, n_alarm_tags: int) -> Config:
    bg = [{"id": f"TT-{i:04d}", "kind": "temperature", "unit": "°C", "range": [0, 100],
           "alarms": {"h": {"limit": 90.0, "priority": 2}, "hh": {"limit": 95.0, "priority": 1}}}
          for i in range(N_BG)]
    at = [{"id": f"AT-{i:03d}", "kind": "pressure", "unit": "bar", "range": [0, 100],
           "alarms": {"hh": {"limit": 80.0, "priority": 1, "deadband": 0.0}}} for i in range(n_alarm_tags)]
    return Config.model_validate({
        "site": {"code": "BENCH", "name": "bench", "timezone": "UTC"},
        "people": [{"id": "duty", "name": "On duty", "notify": [hook]}],
        "duty": {"shifts": [{"name": "all", "start": "00:00", "end": "00:00", "people": ["duty"]}],
                 "escalation": [{"after": "0s", "notify": ["on_duty"]}]},
        "alarming": {"flood_count": 100_000},
        "sources": [{"id": "m", "type": "mqtt", "url": mqtt_url, "client_id": "bench-lat-gw",
                     "persistent_session": False,
                     "subscriptions": [{"topic": "bench/bulk", "qos": 0, "format": "native"},
                                       {"topic": "bench/alarm", "qos": 0, "format": "native"}]}],
        "tags": bg + at,
        "api": {"enabled": False},
        "store": {"path": store},
    })


async def _wait(cond: Any, within: float, step: float = 0.001) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if cond():
            return True
        await asyncio.sleep(step)
    return bool(cond())


async def measure(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    n_total = args.warmup + args.alarms
    broker = Mosquitto(work / "mq", persistence=False)
    broker.start()
    rx = await Receiver().start()
    gw = Gateway(config(broker.url, str(work / "store"), rx.json_url("duty"), n_total))
    load: PacedPublisher | None = None
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="bench-lat-pub")
    try:
        await gw.start()
        if not await _wait(lambda: gw.health()["components"]["source:m"].get("connected"), 20, 0.05):
            raise SystemExit("gateway did not connect to mosquitto")
        client.connect(broker.host, broker.port)
        client.loop_start()
        tags = [f"TT-{i:04d}" for i in range(N_BG)]
        pub_bin = shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
        budget = 60 + n_total * (args.gap + 6)
        load = PacedPublisher(pub_bin, broker.host, broker.port, "bench/bulk", PER, tags,
                              rate=args.rate / PER, max_seconds=budget, seed=args.seed).start()
        d0 = gw.pipeline.dispatched
        await asyncio.sleep(2.0)  # load reaches steady state
        t_load0, d_load0 = time.monotonic(), gw.pipeline.dispatched
        lat: list[float] = []
        missing = 0
        for i in range(n_total):
            tag = f"AT-{i:03d}"
            n_before = len(rx.hits)
            body = json.dumps([{"tag": tag, "v": 95.0, "ts": int(time.time() * 1000)}])
            t0 = time.monotonic()
            client.publish("bench/alarm", body, qos=0)
            got = await _wait(lambda t=tag, n=n_before: any(t in h.body for h in rx.hits[n:]), 5.0)
            if got:
                hit = next(h for h in rx.hits[n_before:] if tag in h.body)
                if i >= args.warmup:
                    lat.append((hit.at - t0) * 1000)
            elif i >= args.warmup:
                missing += 1
            client.publish("bench/alarm", json.dumps([{"tag": tag, "v": 10.0, "ts": int(time.time() * 1000)}]))
            await asyncio.sleep(args.gap)
        t_load1, d_load1 = time.monotonic(), gw.pipeline.dispatched
        bg_rate = (d_load1 - d_load0) / (t_load1 - t_load0)
        assert d0 >= 0
    finally:
        if load is not None:
            load.stop()
        client.loop_stop()
        client.disconnect()
        await gw.stop()
        await rx.stop()
        broker.stop()
    if not lat:
        raise SystemExit(f"no alarm push received ({missing} missing)")
    return {"samples_ms": lat, "missing": missing, "background_readings_per_s": bg_rate,
            "p50_ms": pct(lat, 50), "p99_ms": pct(lat, 99), "max_ms": max(lat), "mean_ms": statistics.fmean(lat)}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--alarms", type=int, default=100, help="measured alarms (max 900)")
    ap.add_argument("--warmup", type=int, default=5, help="alarms before measuring")
    ap.add_argument("--rate", type=float, default=10_000, help="background readings/s")
    ap.add_argument("--gap", type=float, default=0.1, help="seconds between one alarm's return and the next")
    ap.add_argument("--seed", type=int, default=3)
    a = ap.parse_args(argv)
    if a.alarms + a.warmup > 1000:
        ap.error("at most 1000 alarms in all")
    return a


def run(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hazardgw-bench-") as d:
        r = asyncio.run(measure(args, Path(d)))
    ref = f"background {r['background_readings_per_s']:,.0f} readings/s dispatched; {r['missing']} missing"
    r["metrics"] = [
        metric("alarm latency p50 (MQTT publish -> webhook)", r["p50_ms"], "ms", None, "<=", ref),
        metric("alarm latency p99 (MQTT publish -> webhook)", r["p99_ms"], "ms", TARGET_P99_MS, "<=", ref,
               n=len(r["samples_ms"])),
        metric("alarm latency max (MQTT publish -> webhook)", r["max_ms"], "ms", None, "<=", ref),
    ]
    return r


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    r = run(args)
    print(f"alarm latency, {len(r['samples_ms'])} alarms after {args.warmup} warm-up, background "
          f"{r['background_readings_per_s']:,.0f} readings/s (asked {args.rate:,.0f}), {r['missing']} missing")
    print(f"  p50 {r['p50_ms']:.1f} ms   p99 {r['p99_ms']:.1f} ms   max {r['max_ms']:.1f} ms   "
          f"mean {r['mean_ms']:.1f} ms   (target p99 <= {TARGET_P99_MS:.0f} ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
