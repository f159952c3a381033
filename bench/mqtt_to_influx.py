"""MQTT -> gateway -> InfluxDB throughput, with mosquitto_sub as the physical reference.

    .venv/bin/python bench/mqtt_to_influx.py [--messages 2000] [--per-message 100] [--json-messages 30000]
                                             [--reps 5]

Starts mosquitto, influxd 1.6.7 and VictoriaMetrics on loopback, a gateway with one MQTT
source (``native`` bulk format, 5,000 tags) writing to InfluxDB, then pipes N bulk
messages into ``mosquitto_pub -l`` (QoS 1) and measures the time from the first line fed to
it to the last reading being written by the sink (and counted in the database).
``mosquitto_pub`` is started, connected and waiting for its first line before the clock
starts (``bench.common.BulkPublisher``: started inside the timed part it idled ~100 ms, 10 %
of a bulk run, before its first PUBLISH). The reference run times ``mosquitto_sub -C N``
receiving the same stream. Prints a table.

The same is done with ``--json-messages`` single-reading ``json`` messages
(``{"temp": v, "ts": ms}`` on ``bench/json/dev1``, one mapped point) into influxd. The
influxd runs (bulk and json) are repeated ``--reps`` times after one untimed warm-up run
(median, min, max); the VictoriaMetrics run once. Payloads come from a fixed seed.

QoS 1 messages are acknowledged after the spool commit (``ack: commit``, the default).
``--compare-ack`` repeats the influxd runs with ``ack: receipt`` (acknowledged on receipt,
the behaviour before issue 20) and prints the cost of waiting for the commit. mosquitto
runs with its defaults (20 QoS 1 messages in flight per client), the worst case for
waiting; ``--inflight N`` sets ``max_inflight_messages``.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import BulkPublisher, fmt, proc_cpu_s  # noqa: E402
from devkit.services import Influxd, Mosquitto, VictoriaMetrics  # noqa: E402
from gateway.config import Config  # noqa: E402
from gateway.supervisor import Gateway  # noqa: E402

N_TAGS = 5000
_GC_DEFAULT = gc.get_threshold()


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


def make_json_payloads(messages: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    base = 1_732_300_000_000
    return [json.dumps({"temp": round(rng.uniform(0, 100), 3), "ts": base + k}, separators=(",", ":"))
            for k in range(messages)]


SUBS = {
    "native": {"topic": "bench/bulk", "qos": 1, "format": "native"},
    "json": {"topic": "bench/json/+", "qos": 1, "format": "json",
             "points": [{"tag": "TT-0001", "path": "$.temp", "ts_path": "$.ts"}]},
}
TOPICS = {"native": "bench/bulk", "json": "bench/json/dev1"}


def config(mqtt_url: str, influx: dict[str, Any], store: str, shape: str = "native", ack: str = "commit") -> Config:
    return Config.model_validate(
        {
            "site": {"code": "BENCH", "name": "bench"},
            "sources": [{"id": "m", "type": "mqtt", "url": mqtt_url, "client_id": "bench-gw",
                         "persistent_session": False,
                         "subscriptions": [{**SUBS[shape], "ack": ack}]}],
            "tags": [{"id": f"TT-{i:04d}", "kind": "temperature", "unit": "°C"} for i in range(N_TAGS)],
            "influx": {"flush_interval": "200ms", **influx},
            "api": {"enabled": False},
            "store": {"path": store},
        }
    )


def reference(broker: Mosquitto, payload_file: Path, messages: int, topic: str = "bench/bulk") -> float:
    sub = subprocess.Popen(
        [shutil.which("mosquitto_sub") or "mosquitto_sub", "-h", broker.host, "-p", str(broker.port),
         "-q", "1", "-t", topic, "-C", str(messages)],
        stdout=subprocess.DEVNULL,
    )
    time.sleep(0.5)  # mosquitto_sub has no readiness signal; it only needs to be subscribed
    pub = BulkPublisher(broker.host, broker.port, topic, qos=1)
    pub.wait_ready()  # connected and reading: the clock starts with the first line (bench/common.py)
    t0 = time.perf_counter()
    pub.feed(payload_file)
    pub.wait()
    sub.wait(timeout=300)
    return time.perf_counter() - t0


def n_priority(gw: Gateway) -> int:
    """Self-metric lines the sink wrote besides the readings."""
    v = gw.metrics.sink_lines.labels("influx", "priority")._value.get()
    return int(v)


async def gateway_run(broker: Mosquitto, payload_file: Path, influx: dict[str, Any], total: int,
                      store: str, shape: str = "native", ack: str = "commit",
                      cpu: dict[str, float] | None = None) -> tuple[float, float]:
    """(seconds until ingested, seconds until written). ``cpu``, if given, gets the CPU seconds
    of the timed part: ``hazardgw`` (this process), ``mosquitto``, ``mosquitto_pub``."""
    gw = Gateway(config(broker.url, influx, store, shape, ack))
    await gw.start()
    as_hazardgw_run()
    while not gw.health()["components"]["source:m"].get("connected"):  # noqa: ASYNC110 - polling a flag
        await asyncio.sleep(0.05)
    assert gw.influx is not None
    pub = BulkPublisher(broker.host, broker.port, TOPICS[shape], qos=1)
    try:
        await asyncio.to_thread(pub.wait_ready)  # the clock starts with the first line (bench/common.py)
    except RuntimeError:
        await gw.stop()
        raise
    c0, mq0, ch0 = time.process_time(), proc_cpu_s(broker.pid), _children_cpu_s()
    t0, t0_mono = time.perf_counter(), time.monotonic()
    pub.feed(payload_file)
    t_in = None
    deadline = t0 + 300
    last_log = time.perf_counter()
    while gw.influx.written < total + n_priority(gw):
        if time.perf_counter() > deadline:
            pub.kill()
            await gw.stop()
            raise SystemExit(f"gateway run ({shape}) did not finish within 300 s")
        if time.perf_counter() - last_log > 5:
            last_log = time.perf_counter()
            print(f"  ... dispatched {gw.pipeline.dispatched}, written {gw.influx.written}, "
                  f"buffered {gw.influx.buffered}, source {gw.health()['components']['source:m']}", flush=True)
        if t_in is None and gw.pipeline.dispatched >= total:
            t_in = time.perf_counter() - t0
        await asyncio.sleep(0.01)
    # the end is the last write's answer (the sink stamps it), not this loop's next 10 ms poll
    last = gw.influx.last_success
    elapsed = last - t0_mono if last is not None else time.perf_counter() - t0
    c1 = time.process_time()
    pub.wait()
    if cpu is not None:
        cpu.update(hazardgw=c1 - c0, mosquitto=proc_cpu_s(broker.pid) - mq0, mosquitto_pub=_children_cpu_s() - ch0)
    await gw.stop()
    after_hazardgw_run()
    return (t_in or elapsed), elapsed


def _children_cpu_s() -> float:
    """CPU seconds of the reaped child processes (the publishers)."""
    t = os.times()
    return t.children_user + t.children_system


def as_hazardgw_run() -> None:
    """What ``hazardgw run`` does to its process (gateway/runner.py): the 1 ms switch interval,
    and once the gateway started, everything that exists then frozen out of the collector's way
    and the collector's thresholds (:func:`after_hazardgw_run` undoes both after the run, so
    runs in one process do not pile up and the other benchmarks keep Python's defaults)."""
    from gateway.runner import SWITCH_INTERVAL, settle_collector

    sys.setswitchinterval(SWITCH_INTERVAL)
    settle_collector()


def after_hazardgw_run() -> None:
    gc.unfreeze()
    gc.set_threshold(*_GC_DEFAULT)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=2000, help="native bulk messages")
    ap.add_argument("--per-message", type=int, default=100)
    ap.add_argument("--json-messages", type=int, default=30_000, help="single-reading json messages (0: skip)")
    ap.add_argument("--reps", type=int, default=5, help="timed influxd runs per shape after one warm-up")
    ap.add_argument("--no-vm", action="store_true", help="skip the VictoriaMetrics run")
    ap.add_argument("--compare-ack", action="store_true", help="also run the influxd runs with ack: receipt")
    ap.add_argument("--inflight", type=int, default=None, help="mosquitto max_inflight_messages (default: 20)")
    return ap.parse_args(argv)


def _med(xs: list[float]) -> dict[str, float]:
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Runs everything; returns seconds per path (lists for repeated runs) and summary metrics."""
    from bench.common import loadavg, metric

    total = args.messages * args.per_message
    r: dict[str, Any] = {"messages": args.messages, "per_message": args.per_message, "readings": total,
                         "json_messages": args.json_messages, "reps": args.reps}
    with tempfile.TemporaryDirectory(prefix="hazardgw-bench-") as d:
        work = Path(d)
        payload_file = work / "payloads.txt"
        payload_file.write_text("\n".join(make_payloads(args.messages, args.per_message)) + "\n")
        json_file = work / "json.txt"
        if args.json_messages:
            json_file.write_text("\n".join(make_json_payloads(args.json_messages)) + "\n")
        extra = f"max_inflight_messages {args.inflight}" if args.inflight is not None else ""
        with Mosquitto(work / "mq", extra_config=extra) as broker, Influxd(work / "influxd") as influxd, \
                VictoriaMetrics(work / "vm") as vm:
            influxd.create_database("bench")
            influxd.create_database("benchj")
            v1 = {"url": influxd.url, "api": "v1", "bucket": "bench"}
            r["ref_bulk_s"] = reference(broker, payload_file, args.messages)
            # issue 23: the sink's own limit, interleaved with the gateway runs: the lines the
            # gateway writes, POSTed straight to influxd in batches of 5,000 (fresh database each)
            from bench.common import line_bodies, post_bodies
            from bench.peers import gateway_lines

            bodies = line_bodies(gateway_lines(make_payloads(args.messages, args.per_message)))
            runs, direct = [], []
            for k in range(args.reps + 1):
                influxd.create_database(f"direct{k}")
                direct.append(post_bodies(influxd.url, f"direct{k}", bodies))
                runs.append(asyncio.run(gateway_run(broker, payload_file, v1, total, str(work / f"s1-{k}"))))
            runs, r["influxd_alone_s"] = runs[1:], direct[1:]
            r["v1_ingest_s"] = [a for a, _ in runs]
            r["v1_s"] = [b for _, b in runs]
            r["v1_stored"] = influxd.select("bench", "SELECT count(value) FROM reading")[0]["count"]
            if not args.no_vm:
                r["v2_ingest_s"], r["v2_s"] = asyncio.run(gateway_run(
                    broker, payload_file, {"url": vm.url, "api": "v2", "bucket": "b", "org": "o"}, total,
                    str(work / "s2")))
            if args.json_messages:
                n = args.json_messages
                vj = {"url": influxd.url, "api": "v1", "bucket": "benchj"}
                r["ref_json_s"] = reference(broker, json_file, n, TOPICS["json"])
                runs = [asyncio.run(gateway_run(broker, json_file, vj, n, str(work / f"sj-{k}"), "json"))
                        for k in range(args.reps + 1)][1:]
                r["json_ingest_s"] = [a for a, _ in runs]
                r["json_s"] = [b for _, b in runs]
                r["json_stored"] = influxd.select("benchj", "SELECT count(value) FROM reading")[0]["count"]
            if args.compare_ack:
                runs = [asyncio.run(gateway_run(broker, payload_file, v1, total, str(work / f"r1-{k}"),
                                                ack="receipt")) for k in range(args.reps + 1)][1:]
                r["v1_receipt_s"] = [b for _, b in runs]
                if args.json_messages:
                    runs = [asyncio.run(gateway_run(broker, json_file, vj, args.json_messages, str(work / f"rj-{k}"),
                                                    "json", ack="receipt")) for k in range(args.reps + 1)][1:]
                    r["json_receipt_s"] = [b for _, b in runs]
    bulk = [total / s for s in r["v1_s"]]
    r["bulk_readings_per_s"] = _med(bulk)
    ref_bulk = total / r["ref_bulk_s"]
    r["metrics"] = [metric(
        "MQTT bulk -> gateway -> influxd, readings/s", statistics.median(bulk), "readings/s", 50_000, ">=",
        f"mosquitto_sub {ref_bulk:,.0f}/s; ratio {statistics.median(bulk) / ref_bulk:.2f}; "
        f"spread {min(bulk):,.0f}-{max(bulk):,.0f} (n={len(bulk)})")]
    alone = [total / s for s in r["influxd_alone_s"]]
    ratios = [a / b for a, b in zip(r["influxd_alone_s"], r["v1_s"], strict=True)]
    r["metrics"].append(metric(
        "MQTT bulk -> gateway -> influxd / influxd alone (same lines, batches of 5,000), same-rep ratio",
        statistics.median(ratios), "x", 0.8, ">=",
        f"influxd alone {statistics.median(alone):,.0f}/s (interleaved with the gateway runs); ratios "
        f"{', '.join(f'{x:.2f}' for x in ratios)}; load {loadavg()}"))
    if "v2_s" in r:
        r["metrics"].append(metric("MQTT bulk -> gateway -> VictoriaMetrics (v2), readings/s", total / r["v2_s"],
                                   "readings/s", 50_000, ">=",
                                   f"ratio to mosquitto_sub {r['ref_bulk_s'] / r['v2_s']:.2f}"))
    if args.json_messages:
        n = args.json_messages
        js = [n / s for s in r["json_s"]]
        r["json_msgs_per_s"] = _med(js)
        ref_j = n / r["ref_json_s"]
        r["metrics"].append(metric(
            "MQTT single json -> gateway -> influxd, msgs/s", statistics.median(js), "msgs/s", 10_000, ">=",
            f"mosquitto_sub {ref_j:,.0f}/s; ratio {statistics.median(js) / ref_j:.2f}; "
            f"spread {min(js):,.0f}-{max(js):,.0f} (n={len(js)})"))
    return r


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    r = run(args)
    total = r["readings"]
    print(f"\n{args.messages} MQTT messages x {args.per_message} readings = {total} readings, QoS 1, "
          f"{N_TAGS} tags; influxd runs: median of {args.reps} after a warm-up")
    print(f"{'path':48} {'seconds':>8} {'readings/s':>12} {'msgs/s':>9}")
    med = statistics.median
    rows = [
        ("reference: mosquitto_pub -> mosquitto_sub", r["ref_bulk_s"], total, args.messages),
        ("gateway ingest (decoded + dispatched), v1 run", med(r["v1_ingest_s"]), total, args.messages),
        ("gateway -> influxd 1.6.7 (v1 /write) written", med(r["v1_s"]), total, args.messages),
    ]
    if "v2_s" in r:
        rows += [("gateway ingest (decoded + dispatched), v2 run", r["v2_ingest_s"], total, args.messages),
                 ("gateway -> VictoriaMetrics (v2 client) written", r["v2_s"], total, args.messages)]
    if args.json_messages:
        n = args.json_messages
        rows += [("json reference: mosquitto_pub -> mosquitto_sub", r["ref_json_s"], n, n),
                 ("json gateway ingest (decoded + dispatched)", med(r["json_ingest_s"]), n, n),
                 ("json gateway -> influxd 1.6.7 written", med(r["json_s"]), n, n)]
    if "v1_receipt_s" in r:
        rows.append(("  same, ack: receipt (no wait for the commit)", med(r["v1_receipt_s"]), total, args.messages))
    if "json_receipt_s" in r:
        n = args.json_messages
        rows.append(("  json same, ack: receipt", med(r["json_receipt_s"]), n, n))
    for name, secs, readings, msgs in rows:
        print(f"{name:48} {secs:8.2f} {readings / secs:12,.0f} {msgs / secs:9,.0f}")
    if "v1_receipt_s" in r:
        print(f"ack after commit costs: bulk x{med(r['v1_s']) / med(r['v1_receipt_s']):.2f} time"
              + (f", json x{med(r['json_s']) / med(r['json_receipt_s']):.2f} time" if "json_receipt_s" in r else ""))
    print(f"readings counted in influxd: {r['v1_stored']} of {total}"
          + (f"; json: {r['json_stored']} of {args.json_messages}" if args.json_messages else ""))
    for m in r["metrics"]:
        print(f"{m['metric']}: {fmt(m['value'])} (target {m['op']} {fmt(m['target'])}) - {m['reference']}")


if __name__ == "__main__":
    main()
