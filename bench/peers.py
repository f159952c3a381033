"""hazardgw next to Node-RED on the same work (``python -m bench --peers``): MQTT -> InfluxDB, and Modbus polling.

    .venv/bin/python bench/peers.py [--messages 2000] [--per-message 100] [--rounds 5]
                                    [--modbus-rounds 5] [--modbus-seconds 15] [--only mqtt|modbus]
                                    [--cache ~/.cache/hazardgw-bench/peers]

Installs, once, into ``--cache`` (npm, from the npm registry): Node.js 22 (the ``node``
package: Node-RED 5 needs Node >= 22.9, the machine may have an older one) and Node-RED
5.0.7 with node-red-contrib-influxdb 0.7.0 and node-red-contrib-modbus 5.60.2. (That
version of node-red-contrib-modbus names its serial library by a URL outside the npm
registry; an npm ``overrides`` entry takes ``modbus-serial`` 8.0.25 from the registry
instead.)

**MQTT -> InfluxDB** (target 1). Starts mosquitto and influxd 1.6.7 on loopback, and
Node-RED with one flow: ``mqtt in`` (QoS 1, parsed JSON) -> a function node that turns each
reading into the point hazardgw writes (measurement ``reading``, tags kind/site/tag/unit,
fields ``value`` and ``quality="good"``, the reading's timestamp) and hands them on in
batches of 5,000 (or after 200 ms without a new message, hazardgw's ``flush_interval``
here) -> ``influxdb batch``. Each round, in a shuffled order (fixed seed), into a fresh
database each:

* **influxd alone**: the lines hazardgw writes for these readings, POSTed in batches of
  5,000 (pre-encoded, one connection; ``--ref-inflight`` connections): the sink's own limit;
* **hazardgw**: a real ``Gateway`` in this process (as bench/mqtt_to_influx.py: MQTT QoS 1
  acknowledged after the spool commit, durable spool, 5,000 tags, the process set up as
  ``hazardgw run`` sets it up), the time from the first publish until its sink has written
  every reading;
* **Node-RED**: the same payloads on its own topic, until influxd counts every point
  (polled every 50 ms: up to 50 ms more than Node-RED took).

Reports medians over the rounds, and per round the ratios hazardgw / influxd alone and
hazardgw / Node-RED (same-round ratios, then their median), plus each one's CPU seconds
(hazardgw: this process; Node-RED: its process; influxd: its process in that run), and the
CPU bound: the four processes' CPU seconds over two cores, the shortest the hazardgw run
could take on this machine, as a ratio to influxd alone.

**Modbus** (target 3). 50 simulated devices (pymodbus, ``devkit/simulator/modbus.py``, in a
child process, each on its own TCP port) with 50 float32 each (holding registers 0-99, big
endian), polled every second by, in turn (shuffled order per round):

* **hazardgw**: ``hazardgw run`` (a child process) with 50 ``modbus_tcp`` sources of 50
  float32 points and their 2,500 tags (no InfluxDB, no API: the poll path, the pipeline,
  live state and the alarm engine);
* **Node-RED**: 50 ``modbus-client`` + ``modbus-read`` nodes (FC 3, 100 registers, 1 s) and a
  function node turning each answer into 50 ``{tag, value}`` floats.

After ``--modbus-warmup`` s, each one's CPU (``/proc/PID/stat``) over ``--modbus-seconds``
s, as % of one core, and the polls the simulator answered meanwhile (50/s expected).
Target: hazardgw's CPU <= Node-RED's, same-round ratio (median over the rounds).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
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

from bench.common import BulkPublisher, line_bodies, loadavg, metric, post_bodies, proc_cpu_s  # noqa: E402
from bench.mqtt_to_influx import make_payloads  # noqa: E402
from devkit.services import Influxd, Mosquitto, free_port  # noqa: E402

NODE_VERSION = "22.23.3"
PACKAGES = {"node-red": "5.0.7", "node-red-contrib-influxdb": "0.7.0", "node-red-contrib-modbus": "5.60.2"}
OVERRIDES = {"@openp4nr/modbus-serial": "npm:modbus-serial@8.0.25"}
DEFAULT_CACHE = Path(os.environ.get("HAZARDGW_BENCH_CACHE", Path.home() / ".cache" / "hazardgw-bench")) / "peers"


# ----------------------------------------------------------------------------- install
def ensure_node_red(cache: Path) -> tuple[Path, Path]:
    """(node binary, node-red's red.js), installed into ``cache`` with npm if missing."""
    npm = shutil.which("npm")
    if npm is None:
        raise SystemExit("npm is needed to install the peers (Debian: apt-get install npm)")
    node_dir = cache / f"node-{NODE_VERSION}"
    node = node_dir / "node_modules" / "node" / "bin" / "node"
    if not node.exists():
        node_dir.mkdir(parents=True, exist_ok=True)
        subprocess.run([npm, "install", "--no-audit", "--no-fund", "--prefix", str(node_dir), f"node@{NODE_VERSION}"],
                       check=True)
    nr_dir = cache / f"node-red-{PACKAGES['node-red']}"
    red = nr_dir / "node_modules" / "node-red" / "red.js"
    if not red.exists():
        nr_dir.mkdir(parents=True, exist_ok=True)
        (nr_dir / "package.json").write_text(json.dumps(
            {"name": "hazardgw-bench-peers", "private": True, "dependencies": PACKAGES, "overrides": OVERRIDES},
            indent=1))
        env = {**os.environ, "PATH": f"{node.parent}{os.pathsep}{os.environ.get('PATH', '')}"}
        subprocess.run([npm, "install", "--no-audit", "--no-fund"], cwd=nr_dir, env=env, check=True)
    return node, red


# ----------------------------------------------------------------------------- Node-RED
FUNCTION = r"""
const BATCH = 5000;
let buf = context.get('buf') || [];
for (const r of msg.payload) {
  buf.push({measurement: 'reading',
            tags: {kind: 'temperature', site: 'BENCH', tag: r.tag, unit: '°C'},
            fields: {value: r.v, quality: 'good'},
            timestamp: r.ts * 1000000});
  if (buf.length >= BATCH) { node.send({payload: buf}); buf = []; }
}
context.set('buf', buf);
const t = context.get('timer'); if (t) clearTimeout(t);
context.set('timer', setTimeout(() => {
  const b = context.get('buf') || []; if (b.length) { context.set('buf', []); node.send({payload: b}); }
}, 200));
return null;
"""


def flows(broker_port: int, influx_port: int, db: str) -> list[dict[str, Any]]:
    return [
        {"id": "tab", "type": "tab", "label": "bench"},
        {"id": "broker", "type": "mqtt-broker", "name": "mq", "broker": "127.0.0.1", "port": str(broker_port),
         "clientid": "bench-node-red", "autoConnect": True, "usetls": False, "protocolVersion": "4",
         "keepalive": "60", "cleansession": True},
        {"id": "influx", "type": "influxdb", "hostname": "127.0.0.1", "port": str(influx_port), "protocol": "http",
         "database": db, "name": "influxd", "usetls": False, "influxdbVersion": "1.x"},
        {"id": "in", "type": "mqtt in", "z": "tab", "name": "", "topic": "bench/nr", "qos": "1",
         "datatype": "json", "broker": "broker", "nl": False, "rap": True, "rh": 0, "inputs": 0,
         "wires": [["fn"]]},
        {"id": "fn", "type": "function", "z": "tab", "name": "batch", "func": FUNCTION, "outputs": 1,
         "wires": [["out"]]},
        {"id": "out", "type": "influxdb batch", "z": "tab", "influxdb": "influx", "precision": "ns",
         "retentionPolicy": "", "name": "", "database": db, "precisionV18FluxV20": "ns", "wires": []},
    ]


class NodeRed:
    def __init__(self, node: Path, red: Path, work: Path, broker_port: int, influx_port: int, db: str,
                 flow: list[dict[str, Any]] | None = None) -> None:
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        (work / "flows.json").write_text(json.dumps(flow if flow is not None else flows(broker_port, influx_port, db)))
        self.port = free_port()
        (work / "settings.js").write_text(
            f"module.exports = {{uiPort: {self.port}, uiHost: '127.0.0.1', flowFile: 'flows.json', "
            "httpAdminRoot: false, httpNodeRoot: false, credentialSecret: false, "
            "logging: {console: {level: 'info'}}};\n")
        self.log = (work / "node-red.log").open("wb")
        self.proc = subprocess.Popen([str(node), str(red), "--userDir", str(work), "--settings",
                                      str(work / "settings.js")], cwd=work, stdout=self.log, stderr=subprocess.STDOUT)

    def wait_connected(self, timeout: float = 60) -> None:
        self.wait_log("Connected to broker", timeout)

    def wait_log(self, text: str, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if text in (self.work / "node-red.log").read_text(errors="replace"):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.2)
        raise SystemExit(f"Node-RED: no {text!r} in its log:\n{(self.work / 'node-red.log').read_text()[-3000:]}")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)
        self.log.close()


# ----------------------------------------------------------------------------- runs
def count(influxd: Influxd, db: str) -> int:
    rows = influxd.select(db, "SELECT count(value) FROM reading")
    return int(rows[0]["count"]) if rows else 0


def node_red_run(nr: NodeRed, broker: Mosquitto, influxd: Influxd, payload_file: Path, db: str, total: int
                 ) -> tuple[float, float]:
    pub = BulkPublisher(broker.host, broker.port, "bench/nr", qos=1)  # connected before the clock
    pub.wait_ready()
    c0 = proc_cpu_s(nr.proc.pid)
    t0 = time.perf_counter()
    pub.feed(payload_file)
    deadline = t0 + 300
    while count(influxd, db) < total:
        if time.perf_counter() > deadline:
            raise SystemExit("Node-RED run did not finish within 300 s")
        time.sleep(0.05)
    elapsed = time.perf_counter() - t0
    pub.wait()
    return elapsed, proc_cpu_s(nr.proc.pid) - c0


def gateway_run(broker: Mosquitto, influxd: Influxd, payload_file: Path, db: str, total: int, store: str,
                cpu: dict[str, float]) -> tuple[float, float]:
    """(seconds, hazardgw CPU seconds) of the timed part; ``cpu`` also gets mosquitto's and the publisher's."""
    from bench.mqtt_to_influx import gateway_run as run_gw

    _ingest, elapsed = asyncio.run(run_gw(broker, payload_file, {"url": influxd.url, "api": "v1", "bucket": db},
                                          total, store, cpu=cpu))
    return elapsed, cpu["hazardgw"]


def gateway_lines(payloads: Sequence[str]) -> list[str]:
    """The lines hazardgw writes for these payloads (its own serializer and series prefixes)."""
    from bench.mqtt_to_influx import N_TAGS, config
    from gateway.core.lineprotocol import reading_line
    from gateway.sinks.influx import reading_prefixes

    prefixes = reading_prefixes(config("mqtt://127.0.0.1:1", {"url": "http://127.0.0.1:1", "api": "v1",
                                                              "bucket": "x"}, "/nonexistent"))
    assert len(prefixes) == N_TAGS
    out = []
    for p in payloads:
        for item in json.loads(p):
            out.append(reading_line(prefixes[item["tag"]], float(item["v"]), "good", int(item["ts"]) * 1_000_000))
    return out


# ----------------------------------------------------------------------------- Modbus (target 3)
MB_DEVICES, MB_FLOATS = 50, 50

MB_FUNCTION = r"""
const regs = msg.payload;
const b = Buffer.alloc(regs.length * 2);
for (let i = 0; i < regs.length; i++) b.writeUInt16BE(regs[i] & 0xffff, 2 * i);
const dev = msg.topic;
const out = [];
for (let i = 0; i < regs.length / 2; i++) out.push({tag: dev + '.F' + i, value: b.readFloatBE(4 * i)});
msg.payload = out;
return msg;
"""


def mb_source(d: int, port: int) -> dict[str, Any]:
    return {"id": f"dev{d}", "type": "modbus_tcp", "host": "127.0.0.1", "port": port, "device_id": 1,
            "poll_interval": "1s", "timeout": "1s",
            "points": [{"tag": f"D{d}.F{i}", "address": 2 * i, "type": "float32"} for i in range(MB_FLOATS)]}


def mb_site(ports: Sequence[int], store: Path) -> dict[str, Any]:
    return {
        "site": {"code": "BENCH", "name": "bench"},
        "sources": [mb_source(d, p) for d, p in enumerate(ports)],
        "tags": [{"id": f"D{d}.F{i}", "kind": "temperature", "unit": "°C"}
                 for d in range(len(ports)) for i in range(MB_FLOATS)],
        "api": {"enabled": False},
        "store": {"path": str(store)},
    }


def mb_flows(ports: Sequence[int]) -> list[dict[str, Any]]:
    nodes: list[dict[str, Any]] = [{"id": "tab", "type": "tab", "label": "modbus"},
                                   {"id": "fn", "type": "function", "z": "tab", "name": "floats",
                                    "func": MB_FUNCTION, "outputs": 1, "wires": [[]]}]
    for d, port in enumerate(ports):
        nodes.append({"id": f"c{d}", "type": "modbus-client", "name": f"dev{d}", "clienttype": "tcp",
                      "bufferCommands": True, "stateLogEnabled": False, "queueLogEnabled": False,
                      "failureLogEnabled": True, "tcpHost": "127.0.0.1", "tcpPort": str(port), "tcpType": "DEFAULT",
                      "serialPort": "/dev/null", "serialType": "RTU-BUFFERD", "serialBaudrate": "9600",
                      "serialDatabits": "8", "serialStopbits": "1", "serialParity": "none",
                      "serialConnectionDelay": "100", "serialAsciiResponseStartDelimiter": "0x3A",
                      "unit_id": "1", "commandDelay": "1", "clientTimeout": "1000", "reconnectOnTimeout": True,
                      "reconnectTimeout": "2000", "parallelUnitIdsAllowed": True, "showErrors": False,
                      "showWarnings": True, "showLogs": False})
        nodes.append({"id": f"r{d}", "type": "modbus-read", "z": "tab", "name": "", "topic": f"D{d}",
                      "showStatusActivities": False, "logIOActivities": False, "showErrors": False,
                      "showWarnings": True, "unitid": "", "dataType": "HoldingRegister", "adr": "0",
                      "quantity": str(2 * MB_FLOATS), "rate": "1", "rateUnit": "s", "delayOnStart": False,
                      "enableDeformedMessages": False, "startDelayTime": "", "server": f"c{d}", "useIOFile": False,
                      "ioFile": "", "useIOForPayload": False, "emptyMsgOnFail": False, "wires": [["fn"], []]})
    return nodes


async def mb_serve(ports: Sequence[int]) -> None:
    """The simulator child: answers ``count`` on stdin with the requests served so far."""
    from adapters.modbus.config import ModbusTcpSource
    from devkit.simulator.modbus import ModbusPlantServer

    sources = [ModbusTcpSource.model_validate(mb_source(d, p)) for d, p in enumerate(ports)]
    server = ModbusPlantServer(sources)
    for src in sources:
        for i, pt in enumerate(src.points):
            server.set_value(pt.tag, 20.0 + i * 0.25)
    await server.start()
    print("READY", flush=True)
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.readline)
        if not line:
            break
        print(server.requests_served(), flush=True)
    await server.stop()


class ModbusSimulator:
    def __init__(self, ports: Sequence[int]) -> None:
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), "--modbus-serve",
                                      ",".join(map(str, ports))], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     cwd=ROOT)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != b"READY":
            raise SystemExit("the Modbus simulator did not start")

    def served(self) -> int:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(b"count\n")
        self.proc.stdin.flush()
        return int(self.proc.stdout.readline())

    def stop(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def mb_window(pid: int, sim: ModbusSimulator, warmup: float, seconds: float) -> tuple[float, float]:
    """(CPU % of one core, polls/s answered) of process ``pid`` over ``seconds`` after ``warmup``."""
    time.sleep(warmup)
    c0, n0, t0 = proc_cpu_s(pid), sim.served(), time.monotonic()
    time.sleep(seconds)
    c1, n1, t1 = proc_cpu_s(pid), sim.served(), time.monotonic()
    return 100 * (c1 - c0) / (t1 - t0), (n1 - n0) / (t1 - t0)


def mb_hazardgw(ports: Sequence[int], work: Path, sim: ModbusSimulator, args: argparse.Namespace
                ) -> tuple[float, float]:
    from bench.memory import GatewayProcess

    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "site.yaml"
    cfg.write_text(yaml.safe_dump(mb_site(ports, work / "store"), allow_unicode=True))
    gw = GatewayProcess(cfg, work)
    try:
        gw.wait_ready()
        return mb_window(gw.proc.pid, sim, args.modbus_warmup, args.modbus_seconds)
    finally:
        gw.stop()


def mb_node_red(node: Path, red: Path, ports: Sequence[int], work: Path, sim: ModbusSimulator,
                args: argparse.Namespace) -> tuple[float, float]:
    nr = NodeRed(node, red, work, 0, 0, "", flow=mb_flows(ports))
    try:
        nr.wait_log("Started flows")
        return mb_window(nr.proc.pid, sim, args.modbus_warmup, args.modbus_seconds)
    finally:
        nr.stop()


def run_modbus(args: argparse.Namespace, node: Path, red: Path) -> dict[str, Any]:
    from bench.modbus_capacity import free_ports

    ports = free_ports(MB_DEVICES)
    cpu: dict[str, list[float]] = {"hazardgw": [], "node-red": []}
    polls: dict[str, list[float]] = {"hazardgw": [], "node-red": []}
    loads: list[str] = []
    rng = random.Random(args.seed + 1)
    sim = ModbusSimulator(ports)
    try:
        with tempfile.TemporaryDirectory(prefix="hazardgw-bench-") as d:
            for rnd in range(args.modbus_rounds):
                order = list(cpu)
                rng.shuffle(order)
                loads.append(loadavg())
                for who in order:
                    w = Path(d) / f"{who}-{rnd}"
                    if who == "hazardgw":
                        c, p = mb_hazardgw(ports, w, sim, args)
                    else:
                        c, p = mb_node_red(node, red, ports, w, sim, args)
                    cpu[who].append(c)
                    polls[who].append(p)
                    print(f"  modbus round {rnd} {who}: CPU {c:.1f} % of a core, {p:.1f} polls/s", flush=True)
    finally:
        sim.stop()
    ratios = [h / n for h, n in zip(cpu["hazardgw"], cpu["node-red"], strict=True)]
    med = {k: statistics.median(v) for k, v in cpu.items()}
    return {"cpu_pct": cpu, "polls_per_s": polls, "ratio": ratios, "loadavg": loads, "metrics": [metric(
        f"Modbus {MB_DEVICES} devices x {MB_FLOATS} float32 at 1 s: hazardgw CPU / Node-RED CPU, same-round ratio",
        statistics.median(ratios), "x", 1.0, "<=",
        f"hazardgw {med['hazardgw']:.2f} %, Node-RED (node-red-contrib-modbus) {med['node-red']:.2f} % of a core "
        f"(medians of {args.modbus_rounds} interleaved rounds of {args.modbus_seconds:g} s; ratios "
        f"{', '.join(f'{x:.2f}' for x in ratios)}; polls/s {statistics.median(polls['hazardgw']):.1f} / "
        f"{statistics.median(polls['node-red']):.1f}; load {'/'.join(loads)})")]}


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--messages", type=int, default=2000)
    ap.add_argument("--per-message", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--ref-inflight", type=int, default=1, help="connections of the influxd-alone reference")
    ap.add_argument("--modbus-rounds", type=int, default=5)
    ap.add_argument("--modbus-seconds", type=float, default=15.0, help="measured seconds per Modbus run")
    ap.add_argument("--modbus-warmup", type=float, default=3.0, help="seconds before measuring a Modbus run")
    ap.add_argument("--only", choices=["mqtt", "modbus"], default=None, help="one workload only")
    ap.add_argument("--cache", type=Path, default=DEFAULT_CACHE)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--modbus-serve", default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    node, red = ensure_node_red(args.cache)
    r: dict[str, Any] = {"metrics": []}
    if args.only != "modbus":
        m = run_mqtt(args, node, red)
        r.update(m)
        r["metrics"] = m["metrics"]
    if args.only != "mqtt":
        mb = run_modbus(args, node, red)
        r["modbus"] = mb
        r["metrics"] = [*r["metrics"], *mb["metrics"]]
    return r


def run_mqtt(args: argparse.Namespace, node: Path, red: Path) -> dict[str, Any]:
    total = args.messages * args.per_message
    payloads = make_payloads(args.messages, args.per_message)
    bodies = line_bodies(gateway_lines(payloads))
    secs: dict[str, list[float]] = {"influxd": [], "hazardgw": [], "node-red": []}
    cpu: dict[str, list[float]] = {"influxd": [], "hazardgw": [], "node-red": []}
    loads: list[str] = []
    bound_s: list[float] = []
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory(prefix="hazardgw-bench-") as d:
        work = Path(d)
        payload_file = work / "payloads.txt"
        payload_file.write_text("\n".join(payloads) + "\n")
        with Mosquitto(work / "mq") as broker, Influxd(work / "influxd") as influxd:
            influxd.create_database("nr")
            nr = NodeRed(node, red, work / "node-red", broker.port, influxd.port, "nr")
            try:
                nr.wait_connected()
                for rnd in range(args.rounds + 1):  # round 0: warm-up, not counted
                    order = list(secs)
                    rng.shuffle(order)
                    loads.append(loadavg())
                    for who in order:
                        ix0 = proc_cpu_s(influxd.pid)
                        if who == "influxd":
                            db = f"ref{rnd}"
                            influxd.create_database(db)
                            s, c = post_bodies(influxd.url, db, bodies, args.ref_inflight), 0.0
                        elif who == "hazardgw":
                            db = f"gw{rnd}"
                            influxd.create_database(db)
                            others: dict[str, float] = {}
                            s, c = gateway_run(broker, influxd, payload_file, db, total, str(work / f"s{rnd}"),
                                               others)
                        else:
                            influxd.drop_database("nr")  # the flow's database, fresh each round
                            influxd.create_database("nr")
                            s, c = node_red_run(nr, broker, influxd, payload_file, "nr", total)
                        ixc = proc_cpu_s(influxd.pid) - ix0
                        if rnd > 0:
                            secs[who].append(s)
                            cpu[who].append(c)
                            cpu.setdefault(f"influxd during {who}", []).append(ixc)
                            if who == "hazardgw":
                                # every process of the run on 2 cores: the shortest it could take here
                                busy = c + ixc + others["mosquitto"] + others["mosquitto_pub"]
                                bound_s.append(busy / (os.cpu_count() or 2))
                        print(f"  round {rnd} {who}: {s:.2f} s, {total / s:,.0f} readings/s", flush=True)
            finally:
                nr.stop()
    med = {k: statistics.median(v) for k, v in secs.items()}
    vs_ref = [secs["influxd"][i] / secs["hazardgw"][i] for i in range(args.rounds)]
    vs_nr = [secs["node-red"][i] / secs["hazardgw"][i] for i in range(args.rounds)]
    bound = [secs["influxd"][i] / bound_s[i] for i in range(args.rounds)]
    rate = {k: total / v for k, v in med.items()}
    r: dict[str, Any] = {"readings": total, "rounds": args.rounds, "round_seconds": secs, "cpu_s": cpu,
                         "median_rate": rate, "ratio_vs_influxd": vs_ref, "ratio_vs_node_red": vs_nr,
                         "cpu_bound_ratio": bound, "loadavg": loads}
    cpu_med = {k: statistics.median(v) for k, v in cpu.items()}
    r["metrics"] = [
        metric("MQTT bulk -> influxd: hazardgw / influxd alone (same lines, batches of 5,000), same-round ratio",
               statistics.median(vs_ref), "x", 0.8, ">=",
               f"hazardgw {rate['hazardgw']:,.0f}/s, influxd alone {rate['influxd']:,.0f}/s (medians of "
               f"{args.rounds} interleaved rounds; ratios {', '.join(f'{x:.2f}' for x in vs_ref)}; CPU bound on this "
               f"machine (hazardgw + influxd + mosquitto + publisher CPU s over {os.cpu_count()} cores) "
               f"{statistics.median(bound):.2f} x; load {'/'.join(loads)})"),
        metric("MQTT bulk -> influxd: hazardgw / Node-RED 5 batching flow, same-round ratio",
               statistics.median(vs_nr), "x", 1.0, ">=",
               f"Node-RED {rate['node-red']:,.0f}/s; ratios {', '.join(f'{x:.2f}' for x in vs_nr)}; CPU s "
               f"hazardgw {cpu_med['hazardgw']:.2f}, Node-RED {cpu_med['node-red']:.2f}"),
    ]
    return r


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.modbus_serve is not None:
        asyncio.run(mb_serve([int(p) for p in args.modbus_serve.split(",")]))
        return 0
    r = run(args)
    if "readings" in r:
        print(f"\n{r['readings']:,} readings, {args.rounds} interleaved rounds (medians); load per round: "
              f"{', '.join(r['loadavg'])}")
        for k, v in r["median_rate"].items():
            print(f"  {k:10} {v:12,.0f} readings/s   CPU s {statistics.median(r['cpu_s'][k]):.2f}   influxd CPU s "
                  f"{statistics.median(r['cpu_s'][f'influxd during {k}']):.2f}")
    for m in r["metrics"]:
        print(f"{m['metric']}: {m['value']:.2f} (target {m['op']} {m['target']}) - {m['reference']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
