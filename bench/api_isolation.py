"""Does API traffic delay the alarm path? Gateway event-loop lag under API load, with the API
on a thread of its own (the default) and on the gateway's loop (``ApiSettings(own_thread=False)``).

    .venv/bin/python bench/api_isolation.py [--tags 500] [--seconds 5] [--modes thread,loop]
                                            [--workloads flood,badtoken,reads,tls]

A real ``Gateway`` (``--tags`` analog tags with a reading each, API on ``127.0.0.1:0``,
``api.tls`` with an openssl-made certificate for the ``tls`` workload) and a lag sampler
on the gateway's loop: a 10 ms timer, how late it fires = how long anything ready on that
loop (an alarm evaluation, a push) may have waited. The load comes from a child process
(so its own CPU use does not hold this interpreter's lock), 16 threads from 16 loopback
addresses, for ``--seconds`` per workload:

* ``flood``: connections opened and left silent or with half a request head (~3,000 at a
  time), churned: the accept loop, the limits, the header timeout;
* ``badtoken``: keep-alive requests with a wrong token as fast as they are answered
  (401, then 429 once each address is locked out);
* ``reads``: ``GET /api/tags?recent=120`` with a viewer token (real handler work on the
  gateway's loop: the part that cannot move off it);
* ``tls``: a new TLS connection (handshake) and ``GET /api/health`` per request.

Prints max / p99 / p99.9 lag and the samples over 50 ms per mode and workload, and the
requests the load generator got answered. One run each (no repetitions: the figures are
for the decision in gateway/api/server.py and README "Security", not a CI gate).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

SELF = str(Path(__file__).resolve())
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.common import metric, pct  # noqa: E402

VIEWER = "bench-viewer-token"
WORKLOADS = ("flood", "badtoken", "reads", "tls")
THREADS = 16


# ----------------------------------------------------------------------------- load generator (child)


def _attack(workload: str, port: int, seconds: float, ca: str | None) -> dict[str, Any]:
    stop = time.monotonic() + seconds
    done = [0] * THREADS
    errors = [0] * THREADS
    tls_ctx = ssl.create_default_context(cafile=ca) if ca else None

    def request(s: socket.socket, head: bytes) -> bool:
        s.sendall(head)
        buf = b""
        while b"\r\n\r\n" not in buf:
            chunk = s.recv(65536)
            if not chunk:
                return False
            buf += chunk
        head_part, _, body = buf.partition(b"\r\n\r\n")
        length = 0
        for line in head_part.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        while len(body) < length:
            chunk = s.recv(65536)
            if not chunk:
                return False
            body += chunk
        return True

    def worker(i: int) -> None:
        src = f"127.0.{60 + i}.1"
        if workload == "flood":
            held: list[socket.socket] = []
            while time.monotonic() < stop:
                try:
                    c = socket.socket()
                    c.bind((src, 0))
                    c.setblocking(False)
                    c.connect_ex(("127.0.0.1", port))
                    if len(held) % 2:
                        try:
                            c.send(b"GET /api/tags HTTP/1.1\r\nHost: x\r\n")
                        except OSError:
                            pass
                    held.append(c)
                    done[i] += 1
                except OSError:
                    errors[i] += 1
                if len(held) > 190:
                    held.pop(0).close()
                time.sleep(0.0005)
            for c in held:
                c.close()
            return
        head = {
            "badtoken": b"GET /api/tags HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer wrong-token\r\n\r\n",
            "reads": b"GET /api/tags?recent=120 HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     + VIEWER.encode() + b"\r\n\r\n",
            "tls": b"GET /api/health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        }[workload]
        s: socket.socket | None = None
        while time.monotonic() < stop:
            try:
                if s is None:
                    raw = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(src, 0))
                    s = tls_ctx.wrap_socket(raw, server_hostname="127.0.0.1") if tls_ctx and workload == "tls" else raw
                if request(s, head):
                    done[i] += 1
                else:
                    s.close()
                    s = None
                if workload == "tls" and s is not None:
                    s.close()
                    s = None
            except OSError:
                errors[i] += 1
                if s is not None:
                    s.close()
                s = None
                time.sleep(0.01)
        if s is not None:
            s.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return {"workload": workload, "answered": sum(done), "errors": sum(errors)}


# ----------------------------------------------------------------------------- the gateway (parent)


def _site(store: Path, tags: int, tls: dict[str, str] | None) -> Any:
    from gateway.api.auth import hash_token
    from gateway.config import Config

    api: dict[str, Any] = {"listen": "127.0.0.1:0",
                           "tokens": [{"name": "screen", "role": "viewer", "token_sha256": hash_token(VIEWER)}],
                           "limits": {"connections": 4096, "per_client": 256, "header_timeout": "3s"}}
    if tls:
        api.update(tls=tls, public_url="https://127.0.0.1:8443")
    return Config.model_validate({
        "site": {"code": "BENCH", "name": "bench"},
        "tags": [{"id": f"T{i:04d}", "kind": "analog", "unit": "%", "range": [0, 100], "stale_after": "1h",
                  "alarms": {"h": {"limit": 90, "priority": 2}}} for i in range(tags)],
        "api": api,
        "store": {"path": str(store)},
    })


async def _measure(mode: str, workload: str, args: argparse.Namespace, tmp: Path, pki: Any) -> dict[str, Any]:
    from gateway.api import ApiSettings
    from gateway.core.models import Reading
    from gateway.supervisor import Gateway

    tls = {"cert": str(pki.server_cert), "key": str(pki.server_key)} if workload == "tls" else None
    gw = Gateway(_site(tmp / f"{mode}-{workload}", args.tags, tls),
                 api_settings=ApiSettings(own_thread=mode == "thread"))
    await gw.start()
    try:
        assert gw.api is not None and gw.api.port is not None
        now = time.time_ns()
        for k in range(120):  # a trend for /api/tags?recent=120
            await gw.pipeline.emit([Reading(f"T{i:04d}", float((i + k) % 80), now - (120 - k) * 10**9, "good")
                                    for i in range(args.tags)])
            gw.api.trends.tick()
        if args.freeze:
            gc.collect()
            gc.freeze()  # what hazardgw run does after start (gateway/runner.py)
        lags: list[float] = []
        stop = asyncio.Event()

        async def sampler() -> None:
            while not stop.is_set():
                t0 = time.monotonic()
                await asyncio.sleep(0.01)
                lags.append(max(0.0, time.monotonic() - t0 - 0.01))

        task = asyncio.create_task(sampler())
        await asyncio.sleep(0.5)
        idle = list(lags)
        lags.clear()
        cmd = [sys.executable, SELF, "--attack", workload, "--port", str(gw.api.port),
               "--seconds", str(args.seconds)]
        if tls:
            cmd += ["--ca", str(pki.ca)]
        proc = await asyncio.create_subprocess_exec(*cmd, stdout=asyncio.subprocess.PIPE)
        out, _ = await proc.communicate()
        stop.set()
        await task
        result = json.loads(out)
    finally:
        await gw.stop()
    over = sum(1 for x in lags if x > 0.05)
    return {"mode": mode, "workload": workload, "samples": len(lags), "max_ms": max(lags, default=0) * 1000,
            "p99_ms": pct(lags, 99) * 1000, "p999_ms": pct(lags, 99.9) * 1000, "over_50ms": over,
            "idle_max_ms": max(idle, default=0) * 1000, **result}


async def _control(workload: str, args: argparse.Namespace) -> dict[str, Any]:
    """The same load against a listener in another process: the machine's own noise floor."""
    code = ("import socket\ns = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)\n"
            "s.bind(('127.0.0.1', 0)); s.listen(4096); print(s.getsockname()[1], flush=True)\nheld = []\n"
            "while True:\n    c, _ = s.accept(); held.append(c)\n    if len(held) > 3000: held.pop(0).close()\n")
    srv = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)  # noqa: ASYNC220
    assert srv.stdout is not None
    port = int(srv.stdout.readline())
    lags: list[float] = []
    stop = asyncio.Event()

    async def sampler() -> None:
        while not stop.is_set():
            t0 = time.monotonic()
            await asyncio.sleep(0.01)
            lags.append(max(0.0, time.monotonic() - t0 - 0.01))

    task = asyncio.create_task(sampler())
    proc = await asyncio.create_subprocess_exec(sys.executable, SELF, "--attack", workload,
                                                "--port", str(port), "--seconds", str(args.seconds),
                                                stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    stop.set()
    await task
    srv.kill()
    srv.wait()
    return {"mode": "control", "workload": workload, "samples": len(lags), "max_ms": max(lags, default=0) * 1000,
            "p99_ms": pct(lags, 99) * 1000, "p999_ms": pct(lags, 99.9) * 1000,
            "over_50ms": sum(1 for x in lags if x > 0.05), "idle_max_ms": 0.0, **json.loads(out)}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tags", type=int, default=500)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--modes", default="control,thread,loop",
                    help="control: the flood against a listener in another process (the machine's noise floor)")
    ap.add_argument("--workloads", default=",".join(WORKLOADS))
    ap.add_argument("--no-freeze", dest="freeze", action="store_false",
                    help="without what hazardgw run does for the loop: gc.freeze() after start, a 1 ms switch interval")
    ap.add_argument("--attack", choices=WORKLOADS, help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--ca", help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def run(args: argparse.Namespace) -> dict[str, Any]:
    import resource

    from devkit.services import make_test_pki
    from gateway.runner import SWITCH_INTERVAL

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    switch = sys.getswitchinterval()
    sys.setswitchinterval(SWITCH_INTERVAL if args.freeze else switch)  # as hazardgw run (with --no-freeze: neither)
    rows = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        pki = make_test_pki(tmp / "pki")
        for workload in args.workloads.split(","):
            for mode in args.modes.split(","):
                if mode == "control":
                    if workload == "flood":
                        rows.append(asyncio.run(_control(workload, args)))
                    continue
                rows.append(asyncio.run(_measure(mode, workload, args, tmp, pki)))
    sys.setswitchinterval(switch)
    metrics = [
        metric(f"loop lag p99, API on {r['mode']}, {r['workload']}", r["p99_ms"], "ms",
               50.0 if r["mode"] == "thread" else None, "<=", reference=f"max {r['max_ms']:.1f} ms")
        for r in rows
    ]
    return {"rows": rows, "metrics": metrics}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.attack:
        print(json.dumps(_attack(args.attack, args.port, args.seconds, args.ca)))
        return 0
    res = run(args)
    print(f"{'workload':10} {'API on':7} {'max ms':>8} {'p99.9':>7} {'p99':>6} {'>50ms':>6} {'samples':>8} "
          f"{'answered':>9} {'errors':>7}")
    for r in res["rows"]:
        print(f"{r['workload']:10} {r['mode']:7} {r['max_ms']:8.1f} {r['p999_ms']:7.1f} {r['p99_ms']:6.1f} "
              f"{r['over_50ms']:6d} {r['samples']:8d} {r['answered']:9d} {r['errors']:7d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
