"""OPC UA subscribe mode at scale: 5,000 items at 1 s, server in a child process.

    .venv/bin/python bench/opcua.py [--items 5000] [--interval 1] [--duration 20] [--warmup 5]

1. A site config with ``--items`` points (node ids, ``max_items_per_subscription`` 1000,
   so five subscriptions) is written to a temp dir and served by
   ``python -m devkit.simulator.opcua`` (asyncua) in a child process, which changes
   every value once per ``--interval`` with SourceTimestamp = the time of the change.
2. The ``OpcuaAdapter`` (subscribe mode, ``interval`` = ``--interval``) feeds a real
   ``gateway.pipeline.Pipeline``; a subscriber notes, for each reading whose value
   changed, the delay from the server's change (the reading's timestamp, its
   SourceTimestamp) to its dispatch in the pipeline.
3. After ``--warmup`` s, ``--duration`` s are measured: gateway CPU % (this process:
   asyncua decoding, the adapter, the pipeline), the child server's CPU %, readings/s,
   changes/s and the delay p50/p99/max. The delay is bounded below by the publishing
   cycle: a change waits for the next publish (on average half an interval).
4. Then the server is killed and restarted on the same port: the time from the new
   server's "ready" to a good value on every item ("recovery").

Prints a table; ``python -m bench`` includes it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from adapters.opcua.adapter import OpcuaAdapter  # noqa: E402
from adapters.opcua.config import OpcuaSource  # noqa: E402
from devkit.services import free_port  # noqa: E402
from gateway.core.metrics import Metrics  # noqa: E402
from gateway.core.models import Quality, Reading  # noqa: E402
from gateway.core.sources import SourceContext  # noqa: E402
from gateway.pipeline import Pipeline  # noqa: E402
from gateway.validate import load_config  # noqa: E402


def child_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Probe:
    """Pipeline subscriber: delay of each changed value, counts."""

    name = "bench"

    def __init__(self, n: int) -> None:
        self.measuring = False
        self.last: dict[str, float | None] = {}
        self.delays: list[float] = []
        self.readings = 0
        self.changes = 0
        self.good: set[str] = set()
        self.n = n

    def on_readings(self, batch: Sequence[Reading]) -> None:
        now = time.time_ns()
        last = self.last
        for r in batch:
            if r.quality == Quality.GOOD:
                self.good.add(r.tag)
            changed = last.get(r.tag, r.value) != r.value
            last[r.tag] = r.value
            if self.measuring:
                self.readings += 1
                if changed and r.quality == Quality.GOOD:
                    self.changes += 1
                    self.delays.append((now - r.ts) / 1e6)


def write_config(path: Path, items: int, port: int, interval: float) -> Path:
    points = [{"tag": f"P{k:05d}", "node": f"ns=2;s=Plant.P{k:05d}"} for k in range(items)]
    doc = {"site": {"code": "91320000BENCH001X", "name": "bench"},
           "sources": [{"id": "dcs", "type": "opcua", "url": f"opc.tcp://127.0.0.1:{port}",
                        "security": {"policy": "None"}, "interval": f"{interval}s", "timeout": "5s",
                        "max_items_per_subscription": 1000, "points": points}],
           "tags": [{"id": p["tag"], "kind": "level"} for p in points]}
    path.write_text(yaml.safe_dump(doc))
    return path


def start_child(config: Path, every: float) -> subprocess.Popen[str]:
    p = subprocess.Popen([sys.executable, "-m", "devkit.simulator.opcua", "-c", str(config), "--every", str(every)],
                         cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert p.stdout is not None
    line = p.stdout.readline()
    if line.strip() != "ready":
        p.kill()
        raise SystemExit(f"OPC UA child server did not start: {line!r}")
    return p


def pct(xs: list[float], p: float) -> float:
    return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")


async def measure(args: argparse.Namespace) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="hazardgw-bench-opcua-") as tmp:
        config = write_config(Path(tmp) / "site.yaml", args.items, free_port(), args.interval)
        cfg = load_config(config).sources[0]
        assert isinstance(cfg, OpcuaSource)
        child = start_child(config, args.interval)
        metrics = Metrics()
        pipe = Pipeline(metrics)
        probe = Probe(args.items)
        pipe.subscribe(probe)
        await pipe.start()
        adapter = OpcuaAdapter(cfg, SourceContext(pipe.emit, metrics, {}))
        try:
            t0 = time.monotonic()
            await adapter.start()
            while len(probe.good) < args.items:
                if time.monotonic() - t0 > 60:
                    raise SystemExit(f"only {len(probe.good)} of {args.items} items good after 60 s")
                await asyncio.sleep(0.05)
            first_all = time.monotonic() - t0
            await asyncio.sleep(args.warmup)
            cpu0, wall0, ch0 = time.process_time(), time.monotonic(), child_cpu_seconds(child.pid)
            probe.measuring = True
            await asyncio.sleep(args.duration)
            probe.measuring = False
            cpu1, wall1, ch1 = time.process_time(), time.monotonic(), child_cpu_seconds(child.pid)
            subs = len(adapter.health().get("subscriptions", []))
            # restart: kill the server, wait for comm, start it again, time to every value good
            child.kill()
            child.wait(10)
            for _ in range(600):  # up to 30 s for the adapter to notice
                if not adapter.health()["connected"]:
                    break
                await asyncio.sleep(0.05)
            probe.good.clear()
            child = start_child(config, args.interval)
            t_ready = time.monotonic()
            while len(probe.good) < args.items:
                if time.monotonic() - t_ready > 60:
                    raise SystemExit("values did not come back within 60 s of the restart")
                await asyncio.sleep(0.05)
            recovery = time.monotonic() - t_ready
        finally:
            await adapter.stop()
            await pipe.stop()
            child.terminate()
            try:
                child.wait(10)
            except subprocess.TimeoutExpired:
                child.kill()
    wall = wall1 - wall0
    d = sorted(probe.delays)
    return {
        "items": args.items,
        "subscriptions": subs,
        "interval s": args.interval,
        "first values s": first_all,
        "gw CPU %": 100 * (cpu1 - cpu0) / wall,
        "server CPU %": 100 * (ch1 - ch0) / wall,
        "readings/s": probe.readings / wall,
        "changes/s": probe.changes / wall,
        "delay p50 ms": pct(d, 0.50),
        "delay p99 ms": pct(d, 0.99),
        "delay max ms": d[-1] if d else float("nan"),
        "recovery s": recovery,
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    from bench.common import metric

    row = asyncio.run(measure(args))
    name = f"OPC UA subscribe, {row['items']:,} items at {row['interval s']:g} s ({row['subscriptions']} subscriptions)"
    ref = (f"gateway CPU {row['gw CPU %']:.1f} % (server child {row['server CPU %']:.0f} %), "
           f"{row['readings/s']:,.0f} readings/s, {row['changes/s']:,.0f} changes/s; "
           f"delay p50 {row['delay p50 ms']:.0f} ms, max {row['delay max ms']:.0f} ms; "
           f"values back {row['recovery s']:.1f} s after a server restart")
    return {"rows": [row], "metrics": [
        metric(f"{name}: change -> pipeline delay p99", row["delay p99 ms"], "ms",
               1000 * row["interval s"] + 500, "<=", ref),
        metric(f"{name}: gateway CPU", row["gw CPU %"], "%", 25.0, "<="),
        metric(f"{name}: values after a server restart", row["recovery s"], "s", 10.0, "<="),
    ]}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", type=int, default=5000)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=5.0)
    return p.parse_args(argv)


def main() -> None:
    args = parse_args()
    row = asyncio.run(measure(args))
    width = max(len(k) for k in row)
    for k, v in row.items():
        print(f"{k:{width}}  {v:,.1f}" if isinstance(v, float) else f"{k:{width}}  {v}")


if __name__ == "__main__":
    main()
