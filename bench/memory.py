"""Gateway memory: RSS of ``hazardgw run`` with 5,000 tags at steady state, and through an InfluxDB outage.

    .venv/bin/python bench/memory.py [--rate 5000] [--steady 30] [--outage 60] [--seed 5]

The gateway is a real ``hazardgw run`` (``python -m gateway.cli run -c site.yaml``) in its own
process, as on a site: its RSS (VmRSS of ``/proc/PID/status``) holds only what the product
loads, not this script's imports or its load generator. mosquitto and influxd 1.6.7 run on
loopback; the site has one MQTT source (``native`` bulk format, QoS 0), 5,000 tags with H/HH
limits, InfluxDB (durable spool on under ``store.path``), no API and no ``people`` (pushes
need none here: apprise is then never loaded, issue 23). A paced ``mosquitto_pub -l`` child
of this script sends ``--rate`` readings/s (messages of 100 readings).

The gateway says when it has started with systemd's protocol (``NOTIFY_SOCKET``: ``READY=1``,
gateway/sdnotify.py): "idle" is its RSS then, before any load. Phases: ``--steady`` s of
load once the first readings are in influxd (RSS sampled every second; "steady" is the median
of the second half; readings/s are what influxd stored for that window), then influxd is
stopped for ``--outage`` s under the same load (the spool grows on disk; RSS at the end and
peak), then influxd restarts and the backlog drains (until influxd holds every published
reading; RSS after the drain). The issue asks for a 10-minute outage: ``--outage 600``; the
default is 60 s and the result says which one ran. Target: steady RSS <= 100 MB (issue 23).
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import PacedPublisher, loadavg, metric  # noqa: E402
from devkit.services import Influxd, Mosquitto  # noqa: E402

N_TAGS = 5000
PER = 100
TARGET_MB = 100.0  # issue 23 (was 150)


def site(mqtt_url: str, influx_url: str, store: str, people: bool = False) -> dict[str, Any]:
    tags = [{"id": f"TT-{i:04d}", "kind": "temperature", "unit": "°C", "range": [0, 100],
             "alarms": {"h": {"limit": 90.0, "priority": 2}, "hh": {"limit": 95.0, "priority": 1}}}
            for i in range(N_TAGS)]
    duty: dict[str, Any] = {}
    if people:  # a site that pushes: apprise and its plugins are loaded (the first URL check)
        duty = {"people": [{"id": "duty", "name": "On duty", "notify": ["json://127.0.0.1:9/duty"]}],
                "duty": {"shifts": [{"name": "all", "start": "00:00", "end": "00:00", "people": ["duty"]}],
                         "escalation": [{"after": "0s", "notify": ["on_duty"]}]}}
    return {
        **duty,
        "site": {"code": "BENCH", "name": "bench"},
        "sources": [{"id": "m", "type": "mqtt", "url": mqtt_url, "client_id": "bench-mem-gw",
                     "persistent_session": False,
                     "subscriptions": [{"topic": "bench/bulk", "qos": 0, "format": "native"}]}],
        "tags": tags,
        "influx": {"url": influx_url, "api": "v1", "bucket": "bench", "flush_interval": "1s", "backoff_max": "2s"},
        "api": {"enabled": False},
        "store": {"path": store},
    }


def rss_of(pid: int) -> float:
    """VmRSS of process ``pid``, MB."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def dir_mb(p: Path) -> float:
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file()) / 1e6 if p.exists() else 0.0


class GatewayProcess:
    """``hazardgw run`` in a child process, told to report readiness on a datagram socket."""

    def __init__(self, cfg_file: Path, work: Path) -> None:
        self.sock_path = work / "notify.sock"
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(self.sock_path))
        self.log = (work / "gateway.log").open("wb")
        env = {**os.environ, "NOTIFY_SOCKET": str(self.sock_path), "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg_file)], cwd=ROOT,
                                     stdout=self.log, stderr=subprocess.STDOUT, env=env)
        self.work = work

    def wait_ready(self, timeout: float = 120) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                break
            self.sock.settimeout(0.5)
            try:
                msg = self.sock.recv(4096).decode(errors="replace")
            except TimeoutError:
                continue
            if "READY=1" in msg.split("\n"):
                return
        raise SystemExit("hazardgw run did not become ready:\n"
                         + (self.work / "gateway.log").read_text(errors="replace")[-3000:])

    @property
    def rss(self) -> float:
        return rss_of(self.proc.pid)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self.log.close()
        self.sock.close()


def stored(influxd: Influxd, where: str = "") -> int:
    rows = influxd.select("bench", f"SELECT count(value) FROM reading {where}")
    return int(rows[0]["count"]) if rows else 0


def sample(gw: GatewayProcess, seconds: float) -> list[float]:
    out: list[float] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        out.append(gw.rss)
        time.sleep(min(1.0, max(0.0, end - time.monotonic())))
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    r: dict[str, Any] = {"outage_s": args.outage, "rate": args.rate, "people": args.people, "load": [loadavg()]}
    with tempfile.TemporaryDirectory(prefix="hazardgw-bench-") as d:
        work = Path(d)
        with Mosquitto(work / "mq", persistence=False) as broker, Influxd(work / "influxd") as influxd:
            influxd.create_database("bench")
            cfg_file = work / "site.yaml"
            cfg_file.write_text(yaml.safe_dump(site(broker.url, influxd.url, str(work / "store"), args.people),
                                               allow_unicode=True))
            gw = GatewayProcess(cfg_file, work)
            load: PacedPublisher | None = None
            try:
                gw.wait_ready()
                r["rss_idle_mb"] = gw.rss
                budget = args.steady + args.outage + 120
                load = PacedPublisher(shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub", broker.host,
                                      broker.port, "bench/bulk", PER, [f"TT-{i:04d}" for i in range(N_TAGS)],
                                      rate=args.rate / PER, max_seconds=budget, seed=args.seed).start()
                end = time.monotonic() + 60  # the source subscribes after READY: wait for readings in influxd
                while stored(influxd) == 0 and time.monotonic() < end:
                    time.sleep(0.2)
                t0_ms = time.time_ns() // 1_000_000
                steady = sample(gw, args.steady)
                t1_ms = time.time_ns() // 1_000_000
                r["rss_steady_mb"] = statistics.median(steady[len(steady) // 2:])
                r["rss_steady_peak_mb"] = max(steady)
                sent0 = load.sent
                influxd.stop()
                outage = sample(gw, args.outage)
                r["rss_outage_end_mb"] = outage[-1]
                r["rss_outage_peak_mb"] = max(outage)
                r["backlog_lines"] = (load.sent - sent0) * PER  # every reading of the outage went to the spool
                r["spool_mb"] = dir_mb(work / "store" / "spool")
                load.stop()
                published = load.sent * PER
                load = None
                influxd.restart()
                t1 = time.monotonic()
                n = 0
                while time.monotonic() - t1 < 300:
                    n = stored(influxd)
                    if n >= published:
                        break
                    time.sleep(0.2)
                r["drain_s"] = time.monotonic() - t1
                r["published"] = published
                r["stored"] = n
                r["drained"] = n == published
                r["rss_after_drain_mb"] = gw.rss
                r["readings_per_s"] = stored(influxd, f"WHERE time >= {t0_ms}ms AND time < {t1_ms}ms") / (
                    (t1_ms - t0_ms) / 1000)
                r["load"].append(loadavg())
            finally:
                if load is not None:
                    load.stop()
                gw.stop()
    ref = (f"idle (hazardgw run started, no load) {r['rss_idle_mb']:.0f} MB; load {'/'.join(r['load'])}")
    r["metrics"] = [
        metric(f"RSS steady (hazardgw run), {N_TAGS} tags, {r['readings_per_s']:,.0f} readings/s"
               + (", with people (apprise loaded)" if args.people else ""), r["rss_steady_mb"],
               "MB", TARGET_MB, "<=", ref),
        metric(f"RSS peak during {r['outage_s']:g} s InfluxDB outage (spool {r['spool_mb']:.0f} MB)",
               r["rss_outage_peak_mb"], "MB", TARGET_MB, "<=",
               f"{r['backlog_lines']:,} lines backlog; drained in {r['drain_s']:.1f} s"),
        metric("RSS after the backlog drained", r["rss_after_drain_mb"], "MB", None, "<=",
               f"drained: {r['drained']} ({r['stored']:,} of {r['published']:,} readings stored)"),
    ]
    return r


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rate", type=float, default=5000, help="readings/s (5,000 tags each once a second)")
    ap.add_argument("--steady", type=float, default=30, help="seconds of steady state")
    ap.add_argument("--outage", type=float, default=60, help="InfluxDB outage seconds (the issue: 600)")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--people", action="store_true",
                    help="the site has an on-duty person with a json:// URL (apprise is loaded)")
    return ap.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    r = run(args)
    print(f"hazardgw run memory, {N_TAGS} tags, {r['readings_per_s']:,.0f} readings/s over MQTT (VmRSS)")
    for k in ("rss_idle_mb", "rss_steady_mb", "rss_steady_peak_mb", "rss_outage_end_mb", "rss_outage_peak_mb",
              "rss_after_drain_mb"):
        print(f"  {k:22} {r[k]:8.1f} MB")
    print(f"  outage {r['outage_s']:g} s: backlog {r['backlog_lines']:,} lines, spool {r['spool_mb']:.1f} MB, "
          f"drained in {r['drain_s']:.1f} s ({'all' if r['drained'] else 'NOT all'}: {r['stored']:,} of "
          f"{r['published']:,}); target steady <= {TARGET_MB:.0f} MB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
