"""What each part of a ``reading`` line costs influxd 1.6.7 (issue 23, target 2).

    .venv/bin/python bench/record_shape.py [--points 200000] [--rounds 5] [--tags 5000]

Starts influxd on loopback and POSTs the same readings (``--tags`` tags, fixed seed, one
timestamp per reading) as line protocol in batches of 5,000 over one keep-alive connection,
in several record shapes, each into a fresh database:

* ``full``: the five tags (site, hs, tag, kind, unit) + ``value`` + ``quality="good"``
  (the schema before issue 23: every reading carried its quality)
* ``value``: the five tags + ``value`` (a good reading since issue 23: no quality field)
* ``quality_int``: the five tags + ``value`` + ``quality_code=0i`` (a second field that is
  not a string: is it the string or the second field that costs?)
* ``tag_only`` / ``tag_only_quality``: only the ``tag`` tag, with and without the quality
  string (what the other four tags cost)

Rounds are interleaved (every shape once per round, in a shuffled order, fixed seed); the
figures are medians over the rounds: points/s (wall, first request to last answer) and
influxd's own CPU per point (utime+stime from /proc). The machine's load at the time is
printed (``/proc/loadavg``): other work on a 2-core machine moves the absolute figures, the
ratios between shapes measured in the same rounds much less.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import BASE_MS, line_bodies, loadavg, metric, post_bodies, proc_cpu_s  # noqa: E402
from devkit.services import Influxd  # noqa: E402

SHAPES = ("full", "value", "quality_int", "tag_only", "tag_only_quality")


def lines(shape: str, points: int, n_tags: int, seed: int = 7) -> list[str]:
    rng = random.Random(seed)
    out = []
    for k in range(points):
        i = k % n_tags
        v = round(rng.uniform(0, 100), 3)
        ts = (BASE_MS + k) * 1_000_000
        if shape.startswith("tag_only"):
            prefix = f"reading,tag=TT-{i:04d} "
        else:
            prefix = f"reading,hs=HS-{i % 20:03d},kind=temperature,site=BENCH,tag=TT-{i:04d},unit=°C "
        field = {"full": ',quality="good"', "tag_only_quality": ',quality="good"', "quality_int": ",quality_code=0i"}
        out.append(f"{prefix}value={v!r}{field.get(shape, '')} {ts}")
    return out


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--tags", type=int, default=5000)
    ap.add_argument("--seed", type=int, default=3)
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    bodies = {s: line_bodies(lines(s, args.points, args.tags)) for s in SHAPES}
    rate: dict[str, list[float]] = {s: [] for s in SHAPES}
    cpu: dict[str, list[float]] = {s: [] for s in SHAPES}
    loads = []
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="hazardgw-bench-") as d, Influxd(Path(d) / "influxd") as influxd:
        # warm-up: one untimed pass of the first shape
        influxd.create_database("warm")
        post_bodies(influxd.url, "warm", bodies["full"])
        for rnd in range(args.rounds):
            order = list(SHAPES)
            rng.shuffle(order)
            loads.append(loadavg())
            for s in order:
                db = f"{s}_{rnd}"
                influxd.create_database(db)
                c0 = proc_cpu_s(influxd.pid)
                secs = post_bodies(influxd.url, db, bodies[s])
                c1 = proc_cpu_s(influxd.pid)
                rate[s].append(args.points / secs)
                cpu[s].append((c1 - c0) / args.points * 1e6)
    med = {s: statistics.median(rate[s]) for s in SHAPES}
    mcpu = {s: statistics.median(cpu[s]) for s in SHAPES}
    bytes_per_line = {s: sum(len(b) for b in bodies[s]) / args.points for s in SHAPES}
    r: dict[str, Any] = {"points": args.points, "rounds": args.rounds, "tags": args.tags, "rate": rate,
                         "cpu_us_per_point": cpu, "median_rate": med, "median_cpu_us": mcpu,
                         "bytes_per_line": bytes_per_line, "loadavg": loads}
    ratio = med["value"] / med["full"]
    r["metrics"] = [
        metric("influxd points/s, good reading without quality (value) vs with quality string (full)", ratio, "x",
               None, ">=", f"full {med['full']:,.0f}/s {mcpu['full']:.1f} µs CPU/pt; value {med['value']:,.0f}/s "
               f"{mcpu['value']:.1f} µs; quality_int {med['quality_int']:,.0f}/s {mcpu['quality_int']:.1f} µs; "
               f"tag only {med['tag_only']:,.0f}/s {mcpu['tag_only']:.1f} µs (medians of {args.rounds} "
               f"interleaved rounds, load {'/'.join(loads)})"),
    ]
    return r


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    r = run(args)
    print(f"influxd 1.6.7, {args.points:,} points over {args.tags:,} tags per shape, batches of 5,000, "
          f"{args.rounds} interleaved rounds (medians); load average per round: {', '.join(r['loadavg'])}")
    print(f"{'shape':18} {'points/s':>10} {'vs full':>8} {'influxd CPU µs/pt':>18} {'bytes/line':>10}")
    full = r["median_rate"]["full"]
    for s in SHAPES:
        print(f"{s:18} {r['median_rate'][s]:10,.0f} {r['median_rate'][s] / full:8.2f} "
              f"{r['median_cpu_us'][s]:18.2f} {r['bytes_per_line'][s]:10.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
