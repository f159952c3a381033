"""MQTT adapter ingest rate from a real mosquitto, with ``mosquitto_sub`` as the physical reference.

    .venv/bin/python bench/mqtt_ingest.py [--json-messages 100000] [--bulk-messages 10000] [--per 100]

For each payload shape (``native`` bulk arrays of ``--per`` readings; single-reading
``json`` messages) it measures how fast a backlog is drained:

1. mosquitto starts on loopback (``max_queued_messages 0``: a session may queue any
   number of messages; everything else at mosquitto's defaults, e.g. 20 QoS 1 messages
   in flight per client). mosquitto 2.0.11 still drops the publisher "due to out of
   memory" at about 34,000 queued small messages, hence the default of 30,000.
2. Two persistent sessions subscribe at QoS 1 and go away: the adapter's
   (``hazardgw-bench``) and a ``mosquitto_sub -c`` one.
3. ``mosquitto_pub -l -q 1`` publishes N messages; the broker queues them for both.
4. **adapter**: ``MqttAdapter`` feeding a real ``gateway.pipeline.Pipeline`` with a
   counting subscriber is started; the time from ``start()`` to the last reading
   dispatched gives messages/s and readings/s (decode included, per-message emit
   coalesced as in production). **adapter, emit per message** is the same with
   coalescing disabled (``MAX_BATCH = 1``), to show what coalescing buys.
5. **mosquitto_sub**: ``mosquitto_sub -c -C N`` drains its copy (output to /dev/null):
   what the broker and the loopback deliver to a C client; the ceiling.
6. **decode only**: the same payloads through the subscription's decoder in-process,
   no MQTT: the Python decode ceiling.

Then **decode only** rates of the shapes of issue 18, in-process (no broker): ``json``
picking 10 metrics by name out of a reordered list (``$.metrics[?(@.name=='M3')].value``),
``records`` (a vendor batch of ``--per`` records with local times, and ThingsBoard
entries with ``values_path``) and ``sparkplug_b`` (NDATA of ``--per`` metrics by alias
after an NBIRTH, encoded with the gateway's own proto).

Prints a table. Numbers are for this machine and one Python process (one core).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import adapters.mqtt.adapter as adapter_mod  # noqa: E402
from adapters.mqtt.adapter import MqttAdapter  # noqa: E402
from adapters.mqtt.config import MqttSource, MqttSubscription  # noqa: E402
from adapters.mqtt.payload import make_decoder  # noqa: E402
from devkit.services import Mosquitto, find_binary  # noqa: E402
from gateway.core.config import Tag  # noqa: E402
from gateway.core.metrics import Metrics  # noqa: E402
from gateway.core.sources import SourceContext  # noqa: E402
from gateway.pipeline import Pipeline  # noqa: E402

N_TAGS = 1000
BASE_MS = 1_732_300_000_000
TAGS = {f"TT-{i:04d}": Tag(id=f"TT-{i:04d}", kind="temperature", unit="°C", range=(-40.0, 150.0))
        for i in range(N_TAGS)}


def native_payloads(messages: int, per: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out, k = [], 0
    for _ in range(messages):
        items = []
        for _ in range(per):
            items.append({"tag": f"TT-{k % N_TAGS:04d}", "v": round(rng.uniform(0, 100), 3), "ts": BASE_MS + k})
            k += 1
        out.append(json.dumps(items, separators=(",", ":")))
    return out


def json_payloads(messages: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    return [json.dumps({"temp": round(rng.uniform(0, 100), 3), "ts": BASE_MS + k}, separators=(",", ":"))
            for k in range(messages)]


class Counter:
    name = "bench"

    def __init__(self, expected: int) -> None:
        self.n = 0
        self.expected = expected
        self.done = asyncio.Event()

    def on_readings(self, batch: Any) -> None:
        self.n += len(batch)
        if self.n >= self.expected:
            self.done.set()


def sub_cfg(shape: str) -> dict[str, Any]:
    if shape == "native":
        return {"topic": "bench/bulk", "qos": 1, "format": "native"}
    return {"topic": "bench/json/+", "qos": 1, "format": "json",
            "points": [{"tag": "TT-0001", "path": "$.temp", "ts_path": "$.ts"}]}


def topic_of(shape: str) -> str:
    return "bench/bulk" if shape == "native" else "bench/json/dev1"


def source(broker: Mosquitto, shape: str, client_id: str) -> MqttSource:
    return MqttSource.model_validate({
        "id": "bench", "type": "mqtt", "url": broker.url, "client_id": client_id,
        "persistent_session": True, "queue_size": 10000, "subscriptions": [sub_cfg(shape)],
    })


async def adapter_drain(broker: Mosquitto, shape: str, client_id: str, readings: int, per_message_emit: bool) -> float:
    """Start the adapter on a session holding the backlog; seconds until the last reading is dispatched."""
    metrics = Metrics()
    pipe = Pipeline(metrics)
    counter = Counter(readings)
    pipe.subscribe(counter)
    await pipe.start()
    saved = adapter_mod.MAX_BATCH
    if per_message_emit:
        adapter_mod.MAX_BATCH = 1
    a = MqttAdapter(source(broker, shape, client_id), SourceContext(pipe.emit, metrics, TAGS))
    try:
        t0 = time.perf_counter()
        await a.start()
        await asyncio.wait_for(counter.done.wait(), 300)
        dt = time.perf_counter() - t0
    finally:
        adapter_mod.MAX_BATCH = saved
        await a.stop()
        await pipe.stop()
    if counter.n != readings:
        raise SystemExit(f"adapter delivered {counter.n} readings, expected {readings}")
    return dt


async def prime_adapter_session(broker: Mosquitto, shape: str, client_id: str) -> None:
    a = MqttAdapter(source(broker, shape, client_id), SourceContext(_discard, Metrics(), TAGS))
    await a.start()
    for _ in range(200):
        if a.connected:
            break
        await asyncio.sleep(0.05)
    await a.stop()


async def _discard(batch: Any) -> None:
    return None


def mosquitto_sub(broker: Mosquitto, topic_filter: str, client_id: str, count: int | None) -> float:
    args = [find_binary("mosquitto_sub", "/usr/bin/mosquitto_sub"), "-h", broker.host, "-p", str(broker.port),
            "-t", topic_filter, "-q", "1", "-c", "-i", client_id, "-N"]
    args += ["-C", str(count)] if count else ["-E"]
    t0 = time.perf_counter()
    subprocess.run(args, stdout=subprocess.DEVNULL, check=True, timeout=600)
    return time.perf_counter() - t0


def preload(broker: Mosquitto, topic: str, payloads: list[str]) -> float:
    pub = find_binary("mosquitto_pub", "/usr/bin/mosquitto_pub")
    data = ("\n".join(payloads) + "\n").encode()
    t0 = time.perf_counter()
    subprocess.run([pub, "-h", broker.host, "-p", str(broker.port), "-t", topic, "-q", "1", "-l"],
                   input=data, check=True, timeout=600)
    return time.perf_counter() - t0


def decode_only(shape: str, payloads: list[str], max_payload: int = 1 << 20) -> float:
    d = make_decoder(MqttSubscription.model_validate(sub_cfg(shape)), TAGS, max_payload)
    raw = [p.encode() for p in payloads]
    t0 = time.perf_counter()
    n = 0
    for p in raw:
        out, problems = d.decode(p, 1, False)
        n += len(out)
        assert not problems
    return time.perf_counter() - t0


async def bench_shape(work: Path, shape: str, payloads: list[str], per: int) -> list[tuple[str, float]]:
    messages = len(payloads)
    readings = messages * per
    topic = topic_of(shape)
    filt = sub_cfg(shape)["topic"]
    rows: list[tuple[str, float]] = []
    broker = Mosquitto(work / f"mosq-{shape}", extra_config="max_queued_messages 0", persistence=False)
    broker.start()  # main thread: PR_SET_PDEATHSIG applies
    try:
        for emit_mode in ("coalesced", "per-message"):
            cid = f"hazardgw-bench-{shape}-{emit_mode}"
            await prime_adapter_session(broker, shape, cid)
            sid = f"sub-bench-{shape}-{emit_mode}"
            await asyncio.to_thread(mosquitto_sub, broker, filt, sid, None)  # subscribe, leave
            pub_s = await asyncio.to_thread(preload, broker, topic, payloads)
            if "out of memory" in broker.log_tail(50, since_start=True):
                raise SystemExit("mosquitto refused part of the backlog ('out of memory'): use fewer messages")
            dt = await adapter_drain(broker, shape, cid, readings, per_message_emit=emit_mode == "per-message")
            rows.append((f"adapter, emit {emit_mode}", dt))
            if emit_mode == "coalesced":
                ref = await asyncio.to_thread(mosquitto_sub, broker, filt, sid, messages)
                rows.append(("mosquitto_sub (reference)", ref))
                rows.append(("mosquitto_pub -l (preload)", pub_s))
            else:
                await asyncio.to_thread(mosquitto_sub, broker, filt, sid, messages)  # empty its queue
    finally:
        broker.stop()
    rows.append(("decode only (no MQTT)", decode_only(shape, payloads)))
    return rows


def _time_decode(sub: dict[str, Any], payloads: list[bytes], topic: str, tz: str | None = None) -> tuple[float, int]:
    d = make_decoder(MqttSubscription.model_validate(sub), TAGS, 1 << 20, tz)
    n = 0
    t0 = time.perf_counter()
    for p in payloads:
        out, problems = d.decode(p, 1, False, topic)
        n += len(out)
        assert not problems, problems[:3]
    return time.perf_counter() - t0, n


def shape_decode_rates(messages: int, per: int, seed: int = 7) -> list[tuple[str, int, float, int]]:
    """(shape, messages, seconds, readings) for the shapes of issue 18, decode only."""
    from adapters.mqtt import sparkplug_b_pb2

    rng = random.Random(seed)
    rows: list[tuple[str, int, float, int]] = []
    # json by name: 10 metrics in a random order, each point selects its metric by name
    names = [f"M{i}" for i in range(10)]
    docs = []
    for k in range(messages):
        ms = [{"name": n, "value": round(rng.uniform(0, 100), 3)} for n in names]
        rng.shuffle(ms)
        docs.append(json.dumps({"ts": BASE_MS + k, "metrics": ms}, separators=(",", ":")).encode())
    sub: dict[str, Any] = {"topic": "bench/named", "points": [
        {"tag": f"TT-{i:04d}", "path": f"$.metrics[?(@.name=='M{i}')].value", "ts_path": "$.ts"} for i in range(10)]}
    dt, n = _time_decode(sub, docs, "bench/named")
    rows.append(("json, 10 metrics by name", messages, dt, n))
    # records: a vendor batch with local times
    batches = [json.dumps({"data": [{"id": f"TT-{(k * per + j) % N_TAGS:04d}", "v": round(rng.uniform(0, 100), 3),
                                     "t": "2024-11-23 10:26:40"} for j in range(per)]},
                          separators=(",", ":")).encode() for k in range(messages)]
    sub = {"topic": "bench/rec", "format": "records", "each": "$.data[*]", "tag_path": "$.id", "value_path": "$.v",
           "ts_path": "$.t"}
    dt, n = _time_decode(sub, batches, "bench/rec", "Asia/Shanghai")
    rows.append((f"records, {per}/msg, local times", messages, dt, n))
    # records: ThingsBoard entries, keys mapped by points
    keys = [f"k{i}" for i in range(per)]
    tb = [json.dumps([{"ts": BASE_MS + k, "values": {key: round(rng.uniform(0, 100), 3) for key in keys}}],
                     separators=(",", ":")).encode() for k in range(messages)]
    sub = {"topic": "bench/tb", "format": "records", "each": "$[*]", "values_path": "$.values", "ts_path": "$.ts",
           "points": [{"tag": f"TT-{i:04d}", "key": f"k{i}"} for i in range(per)]}
    dt, n = _time_decode(sub, tb, "bench/tb")
    rows.append((f"records, ThingsBoard {per} keys/msg", messages, dt, n))
    # sparkplug_b: NBIRTH then NDATA by alias
    payload_t: Any = sparkplug_b_pb2.Payload  # type: ignore[attr-defined]
    birth = payload_t(timestamp=BASE_MS, seq=0)
    for i in range(per):
        m = birth.metrics.add()
        m.name, m.alias, m.datatype, m.double_value = f"M{i}", i, 10, 0.0
    datas = []
    for k in range(messages):
        p = payload_t(timestamp=BASE_MS + k, seq=(k + 1) % 256)
        for i in range(per):
            m = p.metrics.add()
            m.alias, m.double_value = i, round(rng.uniform(0, 100), 3)
        datas.append(p.SerializeToString())
    sub = {"topic": "spBv1.0/g/#", "format": "sparkplug_b", "qos": 0,
           "points": [{"tag": f"TT-{i:04d}", "edge_node": "e1", "metric": f"M{i}"} for i in range(per)]}
    d = make_decoder(MqttSubscription.model_validate(sub), TAGS, 1 << 20)
    d.decode(birth.SerializeToString(), 1, False, "spBv1.0/g/NBIRTH/e1")
    n = 0
    t0 = time.perf_counter()
    for p in datas:
        out, problems = d.decode(p, 1, False, "spBv1.0/g/NDATA/e1")
        n += len(out)
        assert not problems, problems[:3]
    rows.append((f"sparkplug_b, {per} metrics/msg by alias", messages, time.perf_counter() - t0, n))
    return rows


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--json-messages", type=int, default=30_000,
                    help="mosquitto 2.0.11 drops a publisher 'due to out of memory' at ~34k queued messages")
    ap.add_argument("--bulk-messages", type=int, default=10_000)
    ap.add_argument("--per", type=int, default=100, help="readings per native bulk message")
    ap.add_argument("--shape-messages", type=int, default=5000, help="messages per shape for the decode-only rates")
    ap.add_argument("--shapes-only", action="store_true", help="only the decode-only rates (no broker)")
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Rows per payload shape: (consumer, messages, seconds, readings per message), and summary metrics."""
    from bench.common import metric

    out: dict[str, Any] = {"shapes": {}, "metrics": [], "decode": []}
    for name, n, dt, readings in shape_decode_rates(args.shape_messages, args.per):
        out["decode"].append((name, n, dt, readings))
        out["metrics"].append(metric(f"MQTT decode only, {name}, readings/s", readings / dt, "readings/s", None,
                                     ">=", f"{n / dt:,.0f} msgs/s"))
    if args.shapes_only:
        return out
    with tempfile.TemporaryDirectory(prefix="hazardgw-bench-") as tmp:
        work = Path(tmp)
        shapes = [
            ("native", f"native bulk, {args.per} readings/msg", native_payloads(args.bulk_messages, args.per),
             args.per),
            ("json", "json, 1 reading/msg", json_payloads(args.json_messages), 1),
        ]
        for shape, label, payloads, per in shapes:
            rows = asyncio.run(bench_shape(work, shape, payloads, per))
            out["shapes"][shape] = {"label": label, "messages": len(payloads), "per": per,
                                    "avg_payload_bytes": sum(len(p) for p in payloads) / len(payloads),
                                    "rows": rows}
            d = dict(rows)
            n = len(payloads)
            unit = "readings/s" if shape == "native" else "msgs/s"
            scale = per if shape == "native" else 1
            out["metrics"].append(metric(
                f"MQTT adapter drain, {label} (coalesced), {unit}", n * scale / d["adapter, emit coalesced"], unit,
                None, ">=", f"mosquitto_sub {n * scale / d['mosquitto_sub (reference)']:,.0f} {unit}; "
                f"decode only {n * scale / d['decode only (no MQTT)']:,.0f}"))
    return out


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    r = run(args)
    print(f"{'payload':<28} {'consumer':<30} {'messages':>9} {'seconds':>8} {'msg/s':>10} {'readings/s':>11}")
    for sh in r["shapes"].values():
        n, per, label = sh["messages"], sh["per"], sh["label"]
        for name, dt in sh["rows"]:
            print(f"{label:<28} {name:<30} {n:>9} {dt:>8.2f} {n / dt:>10,.0f} {n * per / dt:>11,.0f}")
        print(f"{'':<28} (average payload {sh['avg_payload_bytes']:,.0f} bytes)")
    print(f"\n{'decode only (no MQTT)':<40} {'messages':>9} {'seconds':>8} {'msg/s':>10} {'readings/s':>11}")
    for name, n, dt, readings in r["decode"]:
        print(f"{name:<40} {n:>9} {dt:>8.2f} {n / dt:>10,.0f} {readings / dt:>11,.0f}")


if __name__ == "__main__":
    main()
