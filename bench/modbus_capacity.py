"""Modbus poll capacity: N simulated devices x M points polled at a fixed interval.

    .venv/bin/python bench/modbus_capacity.py [--devices 50] [--points 100] [--interval 1]
                                              [--duration 20] [--scenarios endpoints,shared]

The devices are real pymodbus servers (``ModbusPlantServer``) in a *child process*, so the
figures for the gateway process are its own: CPU % (of one core, from ``process_time``),
poll lateness (start delay against the schedule, every poll), poll duration, and the
registers/s and points/s actually decoded. The child's CPU is shown for reference.

Scenarios:
  endpoints  every device on its own TCP endpoint (N connections, polled concurrently)
  shared     all devices behind one endpoint with N unit ids (one connection, serialized,
             like a Modbus TCP gateway in front of an RS-485 line)
  rtu        like shared, with RTU framing over TCP (a serial device server)

Per device: 60 float32 (holding, CDAB), 20 uint16 (input, scaled), 10 int32 (input),
10 discrete inputs = 100 points, 160 registers + 10 bits, planned into 3 reads.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import socket
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from adapters.modbus.adapter import ModbusSourceAdapter
from adapters.modbus.build import build_modbus_sources
from adapters.modbus.config import ModbusRtuSource, ModbusTcpSource
from gateway.core.metrics import Metrics
from gateway.core.models import Quality, Reading
from gateway.core.sources import SourceContext

ModbusSource = ModbusTcpSource | ModbusRtuSource


def device_points(d: int, n: int) -> list[dict[str, Any]]:
    """``n`` points of device ``d`` (the 60/20/10/10 mix, scaled to n)."""
    n_f = n * 60 // 100
    n_u = n * 20 // 100
    n_i = n * 10 // 100
    n_b = n - n_f - n_u - n_i
    pts: list[dict[str, Any]] = []
    pts += [{"tag": f"D{d}.F{i}", "address": 2 * i, "type": "float32", "byte_order": "CDAB"} for i in range(n_f)]
    pts += [{"tag": f"D{d}.U{i}", "table": "input", "address": i, "type": "uint16", "scale": 0.1} for i in range(n_u)]
    pts += [{"tag": f"D{d}.I{i}", "table": "input", "address": n_u + 2 * i, "type": "int32"} for i in range(n_i)]
    pts += [{"tag": f"D{d}.B{i}", "table": "discrete", "address": i, "type": "bool"} for i in range(n_b)]
    return pts


def make_sources(scenario: str, ports: Sequence[int], devices: int, points: int, interval: float) -> list[ModbusSource]:
    out: list[ModbusSource] = []
    for d in range(devices):
        common = {"id": f"dev{d}", "poll_interval": interval, "timeout": 1.0, "points": device_points(d, points)}
        if scenario == "endpoints":
            out.append(
                ModbusTcpSource.model_validate(
                    {**common, "type": "modbus_tcp", "host": "127.0.0.1", "port": ports[d], "device_id": 1}
                )
            )
        elif scenario == "shared":
            out.append(
                ModbusTcpSource.model_validate(
                    {**common, "type": "modbus_tcp", "host": "127.0.0.1", "port": ports[0], "device_id": d + 1}
                )
            )
        elif scenario == "rtu":
            out.append(
                ModbusRtuSource.model_validate(
                    {**common, "type": "modbus_rtu", "port": f"socket://127.0.0.1:{ports[0]}", "device_id": d + 1}
                )
            )
        else:
            raise SystemExit(f"unknown scenario {scenario!r}")
    return out


def free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [int(s.getsockname()[1]) for s in socks]
    finally:
        for s in socks:
            s.close()


# ------------------------------------------------------------------------- device side


async def serve(args: argparse.Namespace) -> None:
    from devkit.simulator.modbus import ModbusPlantServer

    ports = [int(p) for p in args.ports.split(",")]
    sources = make_sources(args.scenario, ports, args.devices, args.points, args.interval)
    server = ModbusPlantServer(sources)
    for s in sources:
        for i, p in enumerate(s.points):
            server.set_value(p.tag, bool(i % 2) if p.type == "bool" else float(i % 50) + 0.5 * (p.type == "float32"))
    await server.start()
    print("READY", flush=True)
    with contextlib.suppress(asyncio.CancelledError):
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)  # until the parent closes stdin
    await server.stop()


def child_cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# ------------------------------------------------------------------------- gateway side


def received(metrics: Metrics, sources: Sequence[ModbusSource]) -> tuple[float, float]:
    """(registers, bits) received so far, from the adapter's own counters."""
    ids = {s.id for s in sources}
    totals = {"registers": 0.0, "bits": 0.0}
    for family in metrics.registry.collect():  # one pass: get_sample_value() would collect per call
        if family.name == "hazardgw_modbus_registers_read":
            for sample in family.samples:
                if sample.name.endswith("_total") and sample.labels["source"] in ids:
                    totals[sample.labels["unit"]] += sample.value
    return totals["registers"], totals["bits"]


async def measure(scenario: str, args: argparse.Namespace) -> dict[str, Any]:
    n_ports = args.devices if scenario == "endpoints" else 1
    ports = free_ports(n_ports)
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        __file__,
        "--serve",
        "--scenario",
        scenario,
        "--ports",
        ",".join(map(str, ports)),
        "--devices",
        str(args.devices),
        "--points",
        str(args.points),
        "--interval",
        str(args.interval),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    assert child.stdout is not None and child.stdin is not None
    line = await asyncio.wait_for(child.stdout.readline(), 60)
    if line.strip() != b"READY":
        raise SystemExit(f"device simulator failed to start: {line!r}")

    sources = make_sources(scenario, ports, args.devices, args.points, args.interval)
    adapters: list[ModbusSourceAdapter] = []
    by_first_tag: dict[str, ModbusSourceAdapter] = {}
    state = {"measuring": False, "readings": 0, "good": 0, "polls": 0}
    lateness: list[float] = []
    durations: list[float] = []

    async def emit(batch: Sequence[Reading]) -> None:
        if not state["measuring"]:
            return
        now = time.time_ns()
        a = by_first_tag[batch[0].tag]
        lateness.append(a.poller.last_lateness)
        durations.append((now - batch[0].ts) / 1e9)
        state["polls"] += 1
        state["readings"] += len(batch)
        state["good"] += sum(1 for r in batch if r.quality == Quality.GOOD)

    metrics = Metrics()
    adapters = build_modbus_sources(sources, SourceContext(emit=emit, metrics=metrics, tags={}))  # type: ignore[assignment]
    for a, s in zip(adapters, sources, strict=True):
        by_first_tag[s.points[0].tag] = a
    for a in adapters:
        await a.start()
    try:
        await asyncio.sleep(args.warmup)
        regs0, bits0 = received(metrics, sources)
        cpu0, wall0, child0 = time.process_time(), time.monotonic(), child_cpu_seconds(child.pid)
        state["measuring"] = True
        await asyncio.sleep(args.duration)
        state["measuring"] = False
        cpu1, wall1, child1 = time.process_time(), time.monotonic(), child_cpu_seconds(child.pid)
        regs1, bits1 = received(metrics, sources)
        late = sum(a.poller.late_polls for a in adapters)
        skipped = sum(a.poller.skipped_polls for a in adapters)
        requests = sum(len(a.poller.requests) for a in adapters)
    finally:
        for a in adapters:
            await a.stop()
        child.stdin.close()
        try:
            await asyncio.wait_for(child.wait(), 10)
        except TimeoutError:
            child.kill()
            await child.wait()
    wall = wall1 - wall0
    lateness.sort()
    durations.sort()

    def pct(xs: list[float], p: float) -> float:
        return xs[min(len(xs) - 1, int(p * len(xs)))] if xs else float("nan")

    expected_polls = args.devices * wall / args.interval
    return {
        "scenario": scenario,
        "connections": n_ports,
        "reads per round": requests,
        "gw CPU %": 100 * (cpu1 - cpu0) / wall,
        "sim CPU %": 100 * (child1 - child0) / wall,
        "polls/s": state["polls"] / wall,
        "polls % of sched": 100 * state["polls"] / expected_polls,
        "late p50 ms": 1000 * pct(lateness, 0.50),
        "late p99 ms": 1000 * pct(lateness, 0.99),
        "late max ms": 1000 * (lateness[-1] if lateness else float("nan")),
        "poll p99 ms": 1000 * pct(durations, 0.99),
        "late polls": late,
        "skipped": skipped,
        "registers/s": (regs1 - regs0) / wall,
        "bits/s": (bits1 - bits0) / wall,
        "points/s": state["readings"] / wall,
        "good %": 100 * state["good"] / max(1, state["readings"]),
        "mean poll ms": 1000 * statistics.fmean(durations) if durations else float("nan"),
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    keys = list(rows[0])
    width = max(len(k) for k in keys)
    print()
    print(f"{'':{width}}  " + "  ".join(f"{r['scenario']:>12}" for r in rows))
    for k in keys[1:]:
        cells = []
        for r in rows:
            v = r[k]
            cells.append(f"{v:>12.1f}" if isinstance(v, float) else f"{v:>12}")
        print(f"{k:{width}}  " + "  ".join(cells))


def run(args: argparse.Namespace) -> dict[str, Any]:
    """Measures every scenario (no printing); rows and summary metrics."""
    from bench.common import metric

    async def all_rows() -> list[dict[str, Any]]:
        return [await measure(s, args) for s in args.scenarios.split(",")]

    rows = asyncio.run(all_rows())
    ms = []
    for r in rows:
        ref = (f"gw CPU {r['gw CPU %']:.1f} % (sim child {r['sim CPU %']:.1f} %), {r['registers/s']:,.0f} registers/s, "
               f"{r['polls % of sched']:.0f} % of polls")
        ms.append(metric(f"Modbus {args.devices}x{args.points} at {args.interval:g} s, {r['scenario']}: lateness p99",
                         r["late p99 ms"], "ms", 50.0, "<=", ref))
    return {"rows": rows, "metrics": ms}


async def main(args: argparse.Namespace) -> None:
    if args.serve:
        await serve(args)
        return
    print(
        f"{args.devices} devices x {args.points} points, poll every {args.interval:g} s, "
        f"{args.duration:g} s measured after {args.warmup:g} s warm-up; {os.cpu_count()} CPUs"
    )
    rows = []
    for scenario in args.scenarios.split(","):
        rows.append(await measure(scenario, args))
        print(f"  {scenario}: done", flush=True)
    print_table(rows)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--devices", type=int, default=50)
    p.add_argument("--points", type=int, default=100)
    p.add_argument("--interval", type=float, default=1.0)
    p.add_argument("--duration", type=float, default=20.0)
    p.add_argument("--warmup", type=float, default=3.5, help="half an interval off the poll grid")
    p.add_argument("--scenarios", default="endpoints,shared,rtu")
    p.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--scenario", default="endpoints", help=argparse.SUPPRESS)
    p.add_argument("--ports", default="", help=argparse.SUPPRESS)
    return p.parse_args(argv)


if __name__ == "__main__":
    asyncio.run(main(parse_args()))
