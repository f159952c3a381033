"""Alarm evaluation cost per reading (µs): 5,000 tags with 2-4 conditions each.

    .venv/bin/python bench/alarm_eval.py [--tags 5000] [--rounds 40] [--reps 7] [--seed 42]

A site of ``--tags`` tags (pressure, temperature, level, flow, toxic and combustible gas)
with 2-4 conditions each (hh/h/l/ll limits with deadbands, ROC, frozen, discrete; gas tags
also get their implicit BAD and STALE alarms) is fed ``--rounds`` polls of every tag, in
pipeline batches of 500 readings, on a fake clock advanced 1 s per poll. Values are random
walks that cross limits now and then, so some readings cause transitions (counted). No
journal (its writes are off the hot path by design), one cheap subscriber.

One warm-up pass, then ``--reps`` timed passes over the same readings; prints the median
and the spread of µs per reading, and a baseline of the same loop with a subscriber that
only looks the tag up.
"""

from __future__ import annotations

import argparse
import platform
import random
import statistics
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from alerting import AlarmEngine, AlarmEvent
from gateway.config import Config
from gateway.core.metrics import Metrics
from gateway.core.models import Reading

BATCH = 500
WALL0 = 1_700_000_000_000_000_000


def build_config(n: int, rnd: random.Random) -> tuple[Config, dict[str, tuple[float, float]], int]:
    """Config, per-tag (mean, step) of the random walk, and the number of conditions."""
    tags: list[dict[str, Any]] = []
    walk: dict[str, tuple[float, float]] = {}
    conditions = 0
    for i in range(n):
        kind = rnd.choice(["pressure", "temperature", "level", "flow", "toxic_gas", "combustible_gas", "discrete"])
        tid = f"T{i:05d}"
        alarms: dict[str, Any] = {}
        t: dict[str, Any] = {"id": tid, "kind": kind, "hazard_source": f"HS-{i % 4 + 1}"}
        if kind == "discrete":
            alarms["discrete"] = {"state": True, "priority": 2}
            alarms["bad"] = {}
            walk[tid] = (0.0, 0.0)
            conditions += 2
        else:
            t["range"] = [0, 100]
            t["unit"] = {"toxic_gas": "mg/m3", "combustible_gas": "%LEL"}.get(kind, "u")
            if kind == "toxic_gas":
                t["gas"] = "H2S"
            if kind == "combustible_gas":
                t["gas"] = "CH4"
            alarms["h"] = {"limit": 60.0, "priority": 2, "deadband": 1.0}
            alarms["hh"] = {"limit": 80.0, "priority": 1}
            extra = rnd.randint(0, 2)
            options = ["l", "roc", "frozen"]
            rnd.shuffle(options)
            for name in options[:extra]:
                if name == "l":
                    alarms["l"] = {"limit": 10.0, "priority": 3, "deadband": 1.0}
                elif name == "roc":
                    alarms["roc"] = {"limit": 30.0, "per": "1m", "window": "10s"}
                else:
                    alarms["frozen"] = {"after": "10m", "tolerance": 0.0}
            conditions += 2 + extra
            walk[tid] = (rnd.uniform(20, 70), rnd.uniform(0.5, 3.0))
        t["alarms"] = alarms
        tags.append(t)
    sources = [
        {
            "id": f"plc{k}",
            "type": "modbus_tcp",
            "host": "127.0.0.1",
            "port": 5020,
            "poll_interval": "1s",
            "points": [
                {"tag": tags[j]["id"], "table": "holding", "address": 2 * (j - k * 1000), "type": "float32"}
                for j in range(k * 1000, min(n, (k + 1) * 1000))
            ],
        }
        for k in range((n + 999) // 1000)
    ]
    cfg = Config.model_validate(
        {
            "site": {"code": "BENCH", "name": "bench"},
            "hazard_sources": [{"code": f"HS-{g}", "name": f"hs {g}", "grade": g} for g in (1, 2, 3, 4)],
            "tags": tags,
            "sources": sources,
        }
    )
    return cfg, walk, conditions


def make_rounds(walk: dict[str, tuple[float, float]], rounds: int, rnd: random.Random) -> list[list[Reading]]:
    state = {t: m for t, (m, _) in walk.items()}
    out: list[list[Reading]] = []
    for k in range(rounds):
        ts = WALL0 + k * 1_000_000_000
        batch: list[Reading] = []
        for tag, (mean, step) in walk.items():
            if step == 0.0:  # discrete
                batch.append(Reading(tag, 1.0 if rnd.random() < 0.02 else 0.0, ts, "good"))
                continue
            v = state[tag] + rnd.gauss(0, step) + 0.05 * (mean - state[tag])
            state[tag] = v
            q = "bad" if rnd.random() < 0.001 else "good"
            batch.append(Reading(tag, v, ts, q))
        out.append(batch)
    return out


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def wall(self) -> int:
        return WALL0 + int(self.now * 1e9)


def run_pass(engine: Any, clock: Clock, rounds: list[list[Reading]]) -> float:
    """Seconds spent in on_readings (and the 1 s timer tick per poll) for all rounds."""
    spent = 0
    for batch in rounds:
        clock.now += 1.0
        t0 = time.perf_counter_ns()
        for i in range(0, len(batch), BATCH):
            engine.on_readings(batch[i : i + BATCH])
        spent += time.perf_counter_ns() - t0
        engine.tick()  # timers (stale scan of 5,000 tags) once per poll, not counted per reading
    return spent / 1e9


class LookupOnly:
    name = "lookup"

    def __init__(self, tags: Sequence[str]) -> None:
        self._t = dict.fromkeys(tags)
        self.hits = 0

    def on_readings(self, batch: Sequence[Reading]) -> None:
        t = self._t
        for r in batch:
            if r[0] in t:
                self.hits += 1

    def tick(self) -> None:
        pass


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tags", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=40)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--seed", type=int, default=42)
    return ap.parse_args(argv)


def run(a: argparse.Namespace) -> dict[str, Any]:
    """One warm-up and ``a.reps`` timed passes; µs per reading (median, spread) and summary metrics."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from bench.common import metric

    rnd = random.Random(a.seed)
    t0 = time.perf_counter()
    cfg, walk, conditions = build_config(a.tags, rnd)
    rounds = make_rounds(walk, a.rounds, rnd)
    n = sum(len(b) for b in rounds)
    clock = Clock()
    engine = AlarmEngine(cfg, Metrics(), None, clock=clock, wall=clock.wall)
    events: list[AlarmEvent] = []
    engine.subscribe(events.append)
    setup = time.perf_counter() - t0
    per_tag = sum(len(p.alarms) for p in engine._plans.values()) / len(engine._plans)

    run_pass(engine, clock, rounds)  # warm-up
    events.clear()
    samples = []
    for _ in range(a.reps):
        samples.append(run_pass(engine, clock, rounds) / n * 1e6)
    transitions = len(events) / a.reps

    base = LookupOnly([t["id"] for t in cfg.model_dump()["tags"]])
    bclock = Clock()
    run_pass(base, bclock, rounds)
    bsamples = [run_pass(base, bclock, rounds) / n * 1e6 for _ in range(a.reps)]

    med = statistics.median(samples)
    q = statistics.quantiles(samples, n=4) if len(samples) >= 2 else [med, med, med]
    bmed = statistics.median(bsamples)
    return {
        "tags": a.tags, "conditions": conditions, "per_tag": per_tag, "readings_per_pass": n, "setup_s": setup,
        "transitions_per_pass": transitions, "us_per_reading": samples, "median_us": med, "iqr": [q[0], q[2]],
        "baseline_us": bmed,
        "metrics": [metric(
            f"alarm evaluation, {a.tags} tags x {conditions / a.tags:.1f} conditions, readings/s (1 core)",
            1e6 / med, "readings/s", 200_000, ">=",
            f"{med:.2f} µs/reading (min {min(samples):.2f}, max {max(samples):.2f}, n={len(samples)}); "
            f"lookup-only loop {bmed:.2f} µs")],
    }


def main(argv: list[str] | None = None) -> int:
    a = parse_args(argv)
    r = run(a)
    samples, med, q, n = r["us_per_reading"], r["median_us"], r["iqr"], r["readings_per_pass"]
    conditions, per_tag, setup, transitions = r["conditions"], r["per_tag"], r["setup_s"], r["transitions_per_pass"]
    bsamples = [r["baseline_us"]]
    print(f"alarm evaluation bench: python {platform.python_version()} on {platform.machine()}, seed {a.seed}")
    print(
        f"  {a.tags} tags, {conditions} configured conditions ({conditions / a.tags:.2f}/tag; "
        f"{per_tag:.2f} alarms/tag incl. implicit gas BAD/STALE), setup {setup:.1f} s"
    )
    print(f"  {n} readings per pass ({a.rounds} polls x {a.tags}), batches of {BATCH}, 1 warm-up + {a.reps} passes")
    print(f"  {transitions:.0f} alarm events per pass ({transitions / n * 100:.2f} % of readings)")
    print(
        f"  evaluation: median {med:.3f} µs/reading  (min {min(samples):.3f}, max {max(samples):.3f}, "
        f"IQR {q[0]:.3f}-{q[1]:.3f})"
    )
    print(f"  baseline (tag lookup only): median {statistics.median(bsamples):.3f} µs/reading")
    print(f"  => {1e6 / med:,.0f} readings/s on one core")
    return 0


if __name__ == "__main__":
    sys.exit(main())
