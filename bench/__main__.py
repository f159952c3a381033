"""Run every benchmark, print one summary table, write bench/results.json.

    .venv/bin/python -m bench [--quick] [--only NAME[,NAME...]] [--out bench/results.json]

Each benchmark module has ``parse_args(argv)`` and ``run(args) -> dict`` (with a
``metrics`` list: metric, value, unit, target, op, pass, reference measured in the same
run); its own ``main()`` CLI still prints its detailed table. Fixed seeds, warm-ups and
repetitions are the modules' own (see bench/README.md). The full run takes ~4 minutes on
the 2-core development VM, ``--quick`` ~95 s (smaller counts, one repetition, a 20 s
InfluxDB outage instead of 60 s).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from bench.common import fmt

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# name -> (argv for the full run, argv for --quick)
PLAN: dict[str, tuple[list[str], list[str]]] = {
    "alarm_eval": ([], ["--rounds", "10", "--reps", "3"]),
    "mqtt_to_influx": ([], ["--messages", "1000", "--json-messages", "10000", "--reps", "1", "--no-vm"]),
    "mqtt_ingest": ([], ["--bulk-messages", "2000", "--json-messages", "10000", "--shape-messages", "1000"]),
    "alarm_latency": ([], ["--alarms", "50", "--warmup", "3"]),
    "memory": ([], ["--steady", "15", "--outage", "20"]),
    "modbus_capacity": ([], ["--duration", "8", "--warmup", "2.5", "--scenarios", "endpoints"]),
    "uplink": ([], ["--alarms", "20", "--reps", "5"]),
    "opcua": ([], ["--duration", "8", "--warmup", "2"]),
    "api_isolation": ([], ["--seconds", "3", "--modes", "thread,loop", "--workloads", "flood,reads"]),
    "record_shape": ([], ["--rounds", "2", "--points", "100000"]),
}
# only with --peers (installs Node.js 22 and Node-RED from the npm registry into a cache directory)
PEERS: dict[str, tuple[list[str], list[str]]] = {
    "peers": ([], ["--rounds", "2", "--messages", "1000", "--modbus-rounds", "1", "--modbus-seconds", "8"]),
}


def machine() -> dict[str, Any]:
    cpu = ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "")
    except OSError:
        pass
    return {"python": platform.python_version(), "machine": platform.machine(), "cpus": os.cpu_count(),
            "cpu": cpu, "platform": platform.platform()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="~2 min run with smaller counts")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join([*PLAN, *PEERS])}")
    ap.add_argument("--out", default=str(ROOT / "bench" / "results.json"))
    ap.add_argument("--peers", action="store_true",
                    help="also run bench/peers.py: Node-RED 5 on the same MQTT workload, interleaved")
    a = ap.parse_args(argv)
    plan = {**PLAN, **PEERS}
    names = [n for n in a.only.split(",") if n] or list(PLAN) + (list(PEERS) if a.peers else [])
    unknown = set(names) - set(plan)
    if unknown:
        ap.error(f"unknown benchmark(s): {', '.join(sorted(unknown))}")
    if a.peers and "peers" not in names:
        names.append("peers")
    results: dict[str, Any] = {"mode": "quick" if a.quick else "full", "machine": machine(),
                               "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "benchmarks": {}}
    rows: list[dict[str, Any]] = []
    t_all = time.monotonic()
    for name in names:
        argv_b = plan[name][1 if a.quick else 0]
        print(f"== {name} {' '.join(argv_b)}", flush=True)
        t0 = time.monotonic()
        try:
            mod = importlib.import_module(f"bench.{name}")
            args = mod.parse_args(argv_b)
            r = mod.run(args)
            r["argv"] = argv_b
            r["seconds"] = time.monotonic() - t0
            results["benchmarks"][name] = r
            rows += [{"bench": name, **m} for m in r.get("metrics", [])]
            print(f"   done in {r['seconds']:.0f} s", flush=True)
        except Exception as e:  # one failing benchmark must not hide the others
            traceback.print_exc()
            results["benchmarks"][name] = {"error": f"{type(e).__name__}: {e}", "argv": argv_b}
            rows.append({"bench": name, "metric": f"{name} FAILED: {e}", "value": None, "unit": "", "target": None,
                         "op": "", "pass": False, "reference": ""})
    results["seconds"] = time.monotonic() - t_all
    results["summary"] = rows
    Path(a.out).write_text(json.dumps(results, indent=1, default=str))

    m = results["machine"]
    print(f"\nhazardgw benchmarks ({results['mode']}, {results['seconds']:.0f} s): python {m['python']}, "
          f"{m['cpus']} CPUs, {m['cpu']}")
    print("| metric | value | target | pass | reference (same run) |\n|---|---|---|---|---|")
    for r in rows:
        target = f"{r['op']} {fmt(r['target'])} {r['unit']}" if r["target"] is not None else "-"
        ok = {True: "pass", False: "MISS", None: "-"}[r["pass"]]
        print(f"| {r['metric']} | {fmt(r['value'])} {r['unit']} | {target} | {ok} | {r['reference']} |")
    print(f"\nwritten: {a.out}")
    return 0 if all(r["pass"] is not False for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
