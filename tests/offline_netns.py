"""Runs INSIDE an empty network namespace (``unshare --net``, started by
tests/test_bundle_offline.py): installs hazardgw from the artifacts and runs it with no
network at all. Not a test module; it prints one JSON line of results and exits non-zero on
the first failure, with the reason on stderr.

In the namespace: only ``lo`` (brought up here; checked: no other interface, no route).
Mosquitto (1883) and influxd (8086) start on its loopback, the plant simulator of the dev venv
(``hazardgw simulate``) serves the demo config's Modbus TCP/RTU devices and publishes its MQTT
readings, an ntfy-compatible HTTP endpoint (8090) stands in for the duty phones. Then, for each
artifact (the bundle, the wheelhouse with the distribution's Python):

1. its installer into a fresh root (``--root``, with a minimal /etc/passwd so that the user
   hazardgw is created) -> /opt/hazardgw/<version>, current, /etc/hazardgw, /var/lib/hazardgw;
2. ``hazardgw check`` of the installed site.yaml (the demo config) from the installed version;
3. ``hazardgw run`` as the user hazardgw, with NOTIFY_SOCKET: time to READY=1 and to the first
   reading in InfluxDB; readings of every source type (Modbus TCP, Modbus RTU over a serial
   device server, MQTT) and of an MQTT reading published here; an alarm pushed through apprise's
   ntfy plugin (dynamically loaded plugins); SIGTERM -> exit 0.

Arguments: one JSON object {"work", "repo", "bundle", "wheels", "python"}.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any, TypeVar

import paho.mqtt.client as paho

T = TypeVar("T")

MQTT_PORT = 1883
INFLUX_PORT = 8086
NTFY_PORT = 8090
DB = "hazard"
# Tags the run must deliver, one per source type of config/demo-site.yaml.
SOURCE_TAGS = {"modbus_tcp": "GT-101", "modbus_rtu": "GT-201", "mqtt": "GT-207"}


class Failure(Exception):
    pass


def services() -> ModuleType:
    """The child-process server managers (devkit/services.py)."""
    return importlib.import_module("devkit.services")


def wait_for(what: str, predicate: Callable[[], T | None], timeout: float, interval: float = 0.1) -> T:
    deadline = time.monotonic() + timeout
    last: BaseException | None = None
    while time.monotonic() < deadline:
        try:
            value = predicate()
        except Exception as exc:  # a server not answering yet
            last = exc
            value = None
        if value:
            return value
        time.sleep(interval)
    raise Failure(f"timed out after {timeout}s waiting for {what}" + (f" (last error: {last!r})" if last else ""))


def run(argv: list[str], *, env: dict[str, str], cwd: Path, timeout: float = 300) -> str:
    """stdout of a command that must succeed (stderr only in the failure)."""
    r = subprocess.run(argv, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, check=False)
    if r.returncode != 0:
        raise Failure(f"{' '.join(argv)} exited {r.returncode}:\n{(r.stdout + r.stderr)[-4000:]}")
    return r.stdout


# --------------------------------------------------------------------------- the namespace


def network_is_isolated() -> dict[str, Any]:
    """Bring up lo; prove there is nothing else (this process's /proc/net, not /sys: sysfs shows
    the namespace of whoever mounted it)."""
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
    interfaces = [line.split(":")[0].strip() for line in Path("/proc/self/net/dev").read_text().splitlines()[2:]]
    routes = Path("/proc/self/net/route").read_text().splitlines()[1:]
    routes6 = [r for r in Path("/proc/self/net/ipv6_route").read_text().splitlines() if not r.rstrip().endswith("lo")]
    if interfaces != ["lo"] or routes or routes6:
        raise Failure(f"not an empty network namespace: interfaces {interfaces}, routes {routes} {routes6}")
    return {"interfaces": interfaces, "ipv4_routes": len(routes)}


class Phones:
    """An ntfy-compatible endpoint: records every push (apprise's ntfy plugin POSTs JSON)."""

    def __init__(self, port: int) -> None:
        self.pushes: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers.get("Content-Length") or 0)).decode(errors="replace")
                try:
                    data = json.loads(raw)
                except ValueError:
                    data = {"message": raw}
                outer.pushes.append({"path": self.path, "body": data if isinstance(data, dict) else {"message": raw}})
                body = json.dumps({"id": str(len(outer.pushes))}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_PUT = do_POST

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def about(self, text: str, since: int) -> list[dict[str, Any]]:
        """Pushes mentioning ``text`` among those received after the first ``since``."""
        return [p for p in self.pushes[since:] if text in json.dumps(p["body"], ensure_ascii=False)]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def publish(messages: list[tuple[str, dict[str, Any] | list[dict[str, Any]]]]) -> None:
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"offline-test-{os.getpid()}")
    client.connect("127.0.0.1", MQTT_PORT)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, json.dumps(payload), qos=1).wait_for_publish(10)
    finally:
        client.loop_stop()
        client.disconnect()


# --------------------------------------------------------------------------- one artifact


def make_root(path: Path) -> Path:
    """An empty root with just enough of /etc for useradd --prefix."""
    (path / "etc").mkdir(parents=True)
    (path / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/bash\n")
    (path / "etc/group").write_text("root:x:0:\ndialout:x:20:\n")
    (path / "etc/shadow").write_text("root:*:19000:0:99999:7:::\n")
    (path / "etc/gshadow").write_text("root:*::\n")
    for p in (path / "etc/shadow", path / "etc/gshadow"):
        p.chmod(0o600)
    path.chmod(0o755)
    return path


def passwd_entry(root: Path, user: str) -> tuple[int, int]:
    for line in (root / "etc/passwd").read_text().splitlines():
        f = line.split(":")
        if f[0] == user:
            return int(f[2]), int(f[3])
    raise Failure(f"no user {user} in {root}/etc/passwd")


def mode(path: Path) -> str:
    return oct(path.stat().st_mode & 0o7777)


def installed_layout(root: Path, version: str) -> dict[str, Any]:
    uid, gid = passwd_entry(root, "hazardgw")
    opt, etc, store = root / "opt/hazardgw", root / "etc/hazardgw", root / "var/lib/hazardgw"
    layout = {
        "current": os.readlink(opt / "current"),
        "etc_mode": mode(etc), "etc_group": etc.stat().st_gid == gid,
        "site_mode": mode(etc / "site.yaml"), "env_mode": mode(etc / "hazardgw.env"),
        "store_mode": mode(store), "store_owner": (store.stat().st_uid, store.stat().st_gid) == (uid, gid),
        "unit": (root / "etc/systemd/system/hazardgw.service").is_file(),
        "exe": os.access(opt / version / "hazardgw", os.X_OK),
    }
    expected = {"current": version, "etc_mode": "0o750", "etc_group": True, "site_mode": "0o640",
                "env_mode": "0o600", "store_mode": "0o700", "store_owner": True, "unit": True, "exe": True}
    if layout != expected:
        raise Failure(f"installed layout {layout} != {expected}")
    return layout


class NotifySocket:
    """The service manager's end of sd_notify: records when READY=1 arrives."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        path.chmod(0o777)  # the gateway runs as the user hazardgw
        self.sock.settimeout(0.2)

    def ready(self) -> bool:
        with contextlib.suppress(TimeoutError):
            while True:
                if b"READY=1" in self.sock.recv(4096).split(b"\n"):
                    return True
        return False

    def close(self) -> None:
        self.sock.close()
        self.path.unlink(missing_ok=True)


def count_since(influxd: Any, tag: str, since_ns: int) -> int:
    rows = influxd.select(DB, f"SELECT count(value) FROM reading WHERE \"tag\" = '{tag}' AND time >= {since_ns}")
    return int(rows[0]["count"]) if rows else 0


def run_gateway(kind: str, root: Path, version: str, influxd: Any, phones: Phones, work: Path,
                marker: float) -> dict[str, Any]:
    uid, gid = passwd_entry(root, "hazardgw")
    exe = root / "opt/hazardgw/current/hazardgw"
    site = root / "etc/hazardgw/site.yaml"
    store = root / "var/lib/hazardgw"
    notify = NotifySocket(work / f"notify-{kind}.sock")
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": str(store),
           "HAZARDGW_STORE": str(store), "NOTIFY_SOCKET": str(notify.path)}
    log_path = work / f"gateway-{kind}.log"
    since_ns = time.time_ns()
    since_push = len(phones.pushes)
    t0 = time.monotonic()
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            ["setpriv", f"--reuid={uid}", f"--regid={gid}", "--clear-groups", str(exe), "run", "-c", str(site)],
            env=env, cwd=store, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )
    try:
        def alive() -> None:
            if proc.poll() is not None:
                raise Failure(f"{kind}: hazardgw run exited {proc.returncode}:\n{log_path.read_text()[-4000:]}")

        def ready() -> bool:
            alive()
            return notify.ready()

        wait_for(f"{kind}: READY=1", ready, timeout=90, interval=0.01)
        t_ready = time.monotonic() - t0

        def first() -> bool:
            alive()
            return count_since(influxd, SOURCE_TAGS["modbus_tcp"], since_ns) > 0

        wait_for(f"{kind}: a first reading in InfluxDB", first, timeout=60, interval=0.05)
        t_first = time.monotonic() - t0

        # An MQTT reading published here (native format), and a chlorine/H2S alarm through apprise.
        ts_ms = int(time.time() * 1000)
        publish([("plant/bulk", [{"tag": "TT-202", "v": marker, "ts": ts_ms}]),
                 ("plant/gds9/telemetry", {"h2s": 30.0, "o2": 20.9, "ts": ts_ms})])

        def delivered() -> dict[str, int]:
            alive()
            counts = {src: count_since(influxd, tag, since_ns) for src, tag in SOURCE_TAGS.items()}
            mine = influxd.select(DB, f"SELECT value FROM reading WHERE \"tag\" = 'TT-202' AND value = {marker}")
            return counts if all(counts.values()) and mine else {}

        counts = wait_for(f"{kind}: readings of every source type and the published TT-202={marker}", delivered,
                          timeout=60, interval=0.2)
        pushes = wait_for(f"{kind}: an ntfy push about GT-209 (apprise)", lambda: phones.about("GT-209", since_push),
                          timeout=60, interval=0.2)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(60)
        if code != 0:
            raise Failure(f"{kind}: exit code {code} after SIGTERM:\n{log_path.read_text()[-4000:]}")
        return {"ready_s": round(t_ready, 2), "first_reading_s": round(t_first, 2), "counts": counts,
                "pushes": [{"path": p["path"], "title": p["body"].get("title", "")} for p in pushes], "exit": code}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        notify.close()


# --------------------------------------------------------------------------- main


def main(args: dict[str, Any]) -> dict[str, Any]:
    work, repo = Path(args["work"]), Path(args["repo"])
    results: dict[str, Any] = {"network": network_is_isolated()}
    svc = services()
    mosquitto = svc.Mosquitto(work / "servers/mosquitto", port=MQTT_PORT)
    influxd = svc.Influxd(work / "servers/influxd", port=INFLUX_PORT, rpc_port=8088)
    phones = Phones(NTFY_PORT)
    simulator: subprocess.Popen[bytes] | None = None
    clean = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": str(work)}
    try:
        mosquitto.start()
        influxd.start()
        influxd.create_database(DB)
        sim_log = (work / "simulator.log").open("wb")
        simulator = subprocess.Popen(
            [str(Path(sys.executable).parent / "hazardgw"), "simulate", "-c", str(repo / "config/demo-site.yaml"),
             "--scenario", "normal"],
            cwd=repo, stdout=sim_log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        )

        # ---- the bundle
        b_root = make_root(work / "root-bundle")
        bundle = Path(args["bundle"])
        version = next(v.split("=", 1)[1] for v in (bundle / "BUILDINFO").read_text().splitlines()
                       if v.startswith("version="))
        out = run([str(bundle / "install.sh"), "--root", str(b_root)], env=clean, cwd=work)
        layout = installed_layout(b_root, version)
        check = run([str(b_root / "opt/hazardgw/current/hazardgw"), "check", "-c",
                     str(b_root / "etc/hazardgw/site.yaml")], env=clean, cwd=work)
        if simulator.poll() is not None:
            raise Failure(f"the simulator exited:\n{(work / 'simulator.log').read_text()[-3000:]}")
        results["bundle"] = {"install": out.splitlines()[-3:], "layout": layout,
                             "check": check.strip().splitlines()[-1],
                             **run_gateway("bundle", b_root, version, influxd, phones, work, marker=12.125)}

        # ---- the wheelhouse, with the distribution's Python, venv made inside the namespace
        w_root = make_root(work / "root-wheels")
        wheels = Path(args["wheels"])
        out = run([str(wheels / "install-wheels.sh"), "--python", args["python"], "--root", str(w_root)],
                  env=clean, cwd=work)
        layout = installed_layout(w_root, version)
        venv_python = w_root / f"opt/hazardgw/{version}/bin/python"
        where = run([str(venv_python), "-c", "import gateway, sys; print(gateway.__file__, sys.version.split()[0])"],
                    env=clean, cwd=work).split()
        if not where[0].startswith(str(w_root)):
            raise Failure(f"the wheelhouse venv imports gateway from {where[0]}, not from its own site-packages")
        check = run([str(w_root / "opt/hazardgw/current/hazardgw"), "check", "-c",
                     str(w_root / "etc/hazardgw/site.yaml")], env=clean, cwd=work)
        results["wheels"] = {"install": out.splitlines()[-3:], "layout": layout, "python": where[1],
                             "gateway_module": where[0], "check": check.strip().splitlines()[-1],
                             **run_gateway("wheels", w_root, version, influxd, phones, work, marker=13.375)}
        return results
    finally:
        if simulator is not None:
            simulator.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                simulator.wait(15)
            if simulator.poll() is None:
                simulator.kill()
                simulator.wait()
        phones.close()
        influxd.stop()
        mosquitto.stop()


def _tails(work: Path) -> Iterator[str]:
    for log in sorted(work.glob("*.log")):
        yield f"--- {log.name}:\n{log.read_text(errors='replace')[-2500:]}"


if __name__ == "__main__":
    arguments = json.loads(sys.argv[1])
    try:
        print(json.dumps(main(arguments)), flush=True)
    except Failure as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        for tail in _tails(Path(arguments["work"])):
            print(tail, file=sys.stderr)
        sys.exit(1)
