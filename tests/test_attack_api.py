"""Attack suite against a real gateway process (``python -m gateway.cli run``), loopback only
(issue 20 items 1, 4, 7; README "Security").

One gateway process for the module, with a Mosquitto broker (the MQTT source) and a
webhook receiver (stdlib ``http.server``) for the duty officer's pushes. The gateway runs
with ``RLIMIT_NOFILE`` 1024 (soft and hard) and ``api.limits.connections`` 4096 on
purpose: without the descriptor budget, the attack's connections would take every
descriptor and the push would fail, as in the original finding (21,000 connections, a P1
push 78 s late). Each test attacks from its own loopback addresses (127.0.x.y), so the
per-client limit of one test does not touch another.

Measured (printed with ``-s``): loop lag of the gateway's event loop
(``hazardgw_loop_lag_seconds``, sampled every 50 ms) during the attack, push latency
from the MQTT publish to the receiver, RSS growth under oversized bodies.
"""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import resource
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt_client
import pytest
import yaml
from helpers import wait_for

from devkit.services import Mosquitto
from gateway.api import hash_token

pytestmark = pytest.mark.timeout(120)

ROOT = Path(__file__).resolve().parents[1]
VIEWER, VIEWER2, OPERATOR, ADMIN = "atk-viewer-0a1b2c", "atk-viewer2-3d4e5f", "atk-operator-6a7b8c", "atk-admin-9d0e1f"
NOFILE = 1024
HEADER_TIMEOUT = 2.0
BODY_TIMEOUT = 2.0
BULK_TOPIC = "plant/bulk"


# ----------------------------------------------------------------------------- webhook receiver


@dataclass
class Pushes:
    hits: list[tuple[float, str, Any]] = field(default_factory=list)  # (monotonic, path, json)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def since(self, t0: float) -> list[tuple[float, str, Any]]:
        with self.lock:
            return [h for h in self.hits if h[0] >= t0]


def start_receiver() -> tuple[http.server.ThreadingHTTPServer, Pushes]:
    pushes = Pushes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            n = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(n)
            try:
                data = json.loads(raw)
            except ValueError:
                data = None
            with pushes.lock:
                pushes.hits.append((time.monotonic(), self.path, data))
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, pushes


# ----------------------------------------------------------------------------- the gateway process


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def site_yaml(store: Path, broker_port: int, api_port: int, rx_port: int) -> str:
    return yaml.safe_dump({
        "site": {"code": "91430900ATTACK01XX", "name": "attack test site", "timezone": "Asia/Shanghai"},
        "hazard_sources": [{"code": "HS-001", "name": "Chlorine tanks", "grade": 2,
                            "responsible": {"principal": "wang"}}],
        "people": [{"id": "zhao", "name": "Zhao", "notify": [f"json://127.0.0.1:{rx_port}/zhao"]},
                   {"id": "wang", "name": "Wang", "notify": [f"json://127.0.0.1:{rx_port}/wang"]}],
        "duty": {"shifts": [{"name": "day", "start": "08:00", "end": "20:00", "people": ["zhao"]},
                            {"name": "night", "start": "20:00", "end": "08:00", "people": ["zhao"]}],
                 "escalation_p1": [{"after": "0s", "notify": ["on_duty"]}],
                 "escalation": [{"after": "0s", "notify": ["on_duty"]}]},
        "sources": [{"id": "plant", "type": "mqtt", "url": f"mqtt://127.0.0.1:{broker_port}",
                     "subscriptions": [{"topic": BULK_TOPIC, "qos": 1, "format": "native"}]}],
        "tags": [{"id": f"GT-{i}", "name": f"Cl2 detector {i}", "hazard_source": "HS-001", "kind": "toxic_gas",
                  "gas": "Cl2", "unit": "mg/m3", "range": [0, 20],
                  "alarms": {"hh": {"limit": 2.0, "priority": 1}, "h": {"limit": 1.0, "priority": 2}},
                  "stale_after": "1h"}  # an MQTT tag of a hazard source needs a stale limit (check)
                 for i in range(101, 111)],
        "api": {
            "listen": f"127.0.0.1:{api_port}",
            "public_url": f"http://127.0.0.1:{api_port}",
            "tokens": [{"name": "screen-1", "role": "viewer", "token_sha256": hash_token(VIEWER)},
                       {"name": "screen-2", "role": "viewer", "token_sha256": hash_token(VIEWER2)},
                       {"name": "zhao", "role": "operator", "token_sha256": hash_token(OPERATOR)},
                       {"name": "admin", "role": "admin", "token_sha256": hash_token(ADMIN)}],
            # deliberately more than RLIMIT_NOFILE allows: the descriptor share must cap it
            "limits": {"connections": 4096, "per_client": 24, "header_timeout": f"{HEADER_TIMEOUT}s",
                       "body_timeout": f"{BODY_TIMEOUT}s", "idle_timeout": "5s"},
        },
        "store": {"path": str(store)},
    })


@dataclass
class Gw:
    proc: subprocess.Popen[bytes]
    port: int
    log: Path
    pushes: Pushes
    broker: Mosquitto
    mqtt: mqtt_client.Client  # connected before the attack: paho's select() needs a descriptor below 1024

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, source: str, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, transport=httpx.HTTPTransport(local_address=source), **kw)

    def rss_mb(self) -> float:
        text = Path(f"/proc/{self.proc.pid}/status").read_text()
        m = re.search(r"VmRSS:\s+(\d+) kB", text)
        assert m
        return int(m.group(1)) / 1024

    def fds(self) -> int:
        return len(os.listdir(f"/proc/{self.proc.pid}/fd"))

    def metrics(self, source: str) -> dict[str, float]:
        with self.client(source, timeout=10) as c:
            text = c.get("/metrics").text
        out: dict[str, float] = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def publish(self, entries: list[dict[str, Any]]) -> None:
        self.mqtt.publish(BULK_TOPIC, json.dumps(entries), qos=1).wait_for_publish(5)

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


def _limit_nofile() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (NOFILE, NOFILE))


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gw]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)  # the attacker needs thousands of sockets
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    tmp = tmp_path_factory.mktemp("attack")
    broker = Mosquitto(tmp / "mosquitto")
    broker.start()
    rx, pushes = start_receiver()
    port = free_port()
    cfg = tmp / "site.yaml"
    cfg.write_text(site_yaml(tmp / "store", broker.port, port, rx.server_address[1]))
    log = tmp / "gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg)], cwd=ROOT,
                                stdout=out, stderr=subprocess.STDOUT, preexec_fn=_limit_nofile)
    publisher = mqtt_client.Client(mqtt_client.CallbackAPIVersion.VERSION2, client_id="attack-test-publisher")
    publisher.connect("127.0.0.1", broker.port)
    publisher.loop_start()
    g = Gw(proc, port, log, pushes, broker, publisher)
    try:
        def ready() -> bool:
            with g.client("127.0.0.1", timeout=2) as c:
                h = c.get("/api/health").json()
            return bool(h["components"]["source:plant"]["ok"] and h["components"]["api"]["ok"])

        wait_for(ready, timeout=30, desc="gateway up with its MQTT source connected")
        yield g
    finally:
        proc.terminate()
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        publisher.loop_stop()
        publisher.disconnect()
        rx.shutdown()
        broker.stop()
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
        print("\n---- gateway log (tail) ----\n" + "\n".join(log.read_text(errors="replace").splitlines()[-25:]))


# ----------------------------------------------------------------------------- attack tools


def open_raw(source: str, port: int, n: int, payload: bytes = b"") -> list[socket.socket]:
    """``n`` TCP connections from ``source`` (sending ``payload`` if any), non-blocking."""
    socks = []
    for _ in range(n):
        s = socket.socket()
        s.bind((source, 0))
        s.setblocking(False)
        s.connect_ex(("127.0.0.1", port))
        socks.append(s)
    if payload:
        time.sleep(0.05)
        for s in socks:
            with contextlib.suppress(OSError):
                s.send(payload)
    return socks


def close_all(socks: list[socket.socket]) -> None:
    for s in socks:
        s.close()


def alive(s: socket.socket) -> bool:
    """Still open from the server's side (no EOF, no reset)."""
    try:
        s.recv(1, socket.MSG_PEEK)
    except BlockingIOError:
        return True  # nothing to read and not closed
    except OSError:
        return False  # reset
    return False  # end of file (or an answer: it was not left hanging)


def lag_samples(m: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in m.items() if k.startswith("hazardgw_loop_lag_seconds_bucket")}


def lag_summary(before: dict[str, float], after: dict[str, float]) -> tuple[int, int, float]:
    """(samples, samples over 50 ms, the smallest bucket bound holding every sample) between two scrapes."""
    b, a = lag_samples(before), lag_samples(after)
    total = a['hazardgw_loop_lag_seconds_bucket{le="+Inf"}'] - b['hazardgw_loop_lag_seconds_bucket{le="+Inf"}']
    within50 = a['hazardgw_loop_lag_seconds_bucket{le="0.05"}'] - b['hazardgw_loop_lag_seconds_bucket{le="0.05"}']
    bound = float("inf")
    for k in sorted(a, key=lambda k: float(k.split('"')[1]) if "Inf" not in k else float("inf")):
        le = k.split('"')[1]
        if a[k] - b.get(k, 0) >= total:
            bound = float(le) if le != "+Inf" else float("inf")
            break
    return int(total), int(total - within50), bound


def raise_p1(g: Gw, tag: str, value: float = 5.0) -> float:
    t0 = time.monotonic()
    g.publish([{"tag": tag, "v": value}])
    return t0


def wait_push(g: Gw, t0: float, tag: str, within: float = 10.0) -> float:
    hit = wait_for(lambda: [h for h in g.pushes.since(t0) if tag in json.dumps(h[2], ensure_ascii=False)],
                   timeout=within, interval=0.005, desc=f"a push about {tag}")
    return hit[0][0] - t0


# ----------------------------------------------------------------------------- tests


def test_connection_exhaustion_does_not_delay_a_p1_push(gw: Gw) -> None:
    g = gw
    # baseline: a P1 push without any attack
    t0 = raise_p1(g, "GT-101")
    baseline = wait_push(g, t0, "GT-101")

    before = g.metrics("127.0.0.1")
    slow_head = b"GET /api/tags HTTP/1.1\r\nHost: x\r\nX-Slow: "
    attackers: list[socket.socket] = []
    t_attack = time.monotonic()
    try:
        # 2,000 half-open connections from one address (per_client refuses all but 24) and
        # 60 addresses x 20 slow-header connections (more than the descriptor share)
        attackers += open_raw("127.0.10.1", g.port, 2000)
        for i in range(60):
            attackers += open_raw(f"127.0.11.{i + 1}", g.port, 20, slow_head)
        fds_under_attack = g.fds()
        # a P1 alarm while the API is saturated: the push must still leave at once
        t1 = raise_p1(g, "GT-102")
        latency = wait_push(g, t1, "GT-102", within=10)
        # keep trickling the slow heads for longer than header_timeout: they are cut anyway
        # a slow head's header timer starts when the API accepts it, and the API accepts at most
        # api.limits.accept_rate (500/s) connections a second: the last of the attack's ~3,200
        # can sit in the listen backlog for ~6 s on a loaded machine before its timer starts
        # Connections the kernel completed while the listen queue was full (SYN cookies: 1,200
        # connects in a burst) can sit on the attacker's side as established although the API
        # never saw them: a silent one stays so until it sends something. Once every accepted
        # head must have been cut, each socket still open gets a byte: the kernel then either
        # hands the connection to the API (which cuts it header_timeout later) or resets it.
        # (Added after 10-25 of 1,200 were still "open" after 13-23 s in 3 suite runs on 2026-12-03,
        # all with a since-reverted change to 429 replies; this cause is likely, not proven.)
        poke_after = time.monotonic() + HEADER_TIMEOUT + 1.5 + len(attackers) / 500
        deadline = poke_after + HEADER_TIMEOUT + 10
        poked = 0  # sockets still open when every accepted head should have been cut (printed)
        while True:
            for s in attackers[2000::50]:
                with contextlib.suppress(OSError):
                    s.send(b"a")
            time.sleep(0.3)
            open_now = [s for s in attackers[2000:] if alive(s)]
            still_open = len(open_now)
            if still_open == 0 or time.monotonic() > deadline:
                break
            if time.monotonic() > poke_after:
                poked = max(poked, still_open)
                for s in open_now:
                    with contextlib.suppress(OSError):
                        s.send(b"a")
    finally:
        close_all(attackers)
    attack_s = time.monotonic() - t_attack
    after = wait_for(lambda: g.metrics("127.0.0.1"), timeout=10, desc="metrics after the attack")
    samples, over_50ms, bound = lag_summary(before, after)
    refused = {k: after.get(k, 0) - before.get(k, 0) for k in after if k.startswith("hazardgw_api_connections_refused")}
    timeouts = after['hazardgw_api_request_timeouts_total{phase="header"}'] - \
        before['hazardgw_api_request_timeouts_total{phase="header"}']
    print(f"\nconnection exhaustion: push latency {latency * 1000:.0f} ms (baseline {baseline * 1000:.0f} ms); "
          f"gateway fds under attack {fds_under_attack} (limit {NOFILE}); loop lag during {attack_s:.1f} s: "
          f"{samples} samples, {over_50ms} over 50 ms, all <= {bound * 1000:g} ms; refused {refused}; "
          f"header timeouts {timeouts:.0f}; open when the pokes began: {poked}; slow heads still open at the end: "
          f"{still_open}")
    assert latency < 2.0
    assert fds_under_attack < NOFILE - 200  # the reserve stayed free for sinks, notifier, uplink
    # (accepted at api.limits.accept_rate: how many of the 2,000 were refused by then depends on timing)
    assert refused['hazardgw_api_connections_refused_total{reason="per_client"}'] >= 500
    assert timeouts >= 100  # slow heads were cut after header_timeout ...
    assert still_open == 0  # ... every one of them
    assert samples >= 0.5 * attack_s / 0.05  # the loop kept sampling
    assert over_50ms <= max(2, samples // 100)  # no API traffic moves the alarm path's loop lag above 50 ms
    # refused connections are counted, not logged one by one (the finding: 370 MB of tracebacks)
    text = g.log_text()
    assert "Traceback" not in text
    assert len(text.splitlines()) < 200
    # and the API serves again at once
    with g.client("127.0.0.1", timeout=5) as c:
        assert c.get("/api/health").status_code == 200


def test_oversized_and_slow_bodies_are_refused_before_parsing(gw: Gw) -> None:
    g = gw
    rss0 = g.rss_mb()
    big = 300 * 1024 * 1024
    path = "/api/alarms/GT-103%2Fhh/ack"

    def post(source: str, headers: str, body_chunks: int, chunk: bytes = b"x" * 65536,
             chunked: bool = False) -> tuple[float, bytes]:
        """Send a request head and up to ``body_chunks`` chunks of body; return (seconds to the response, head)."""
        s = socket.create_connection(("127.0.0.1", g.port), source_address=(source, 0), timeout=10)
        t0 = time.monotonic()
        with s:
            s.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
            s.setblocking(False)
            got = b""
            for _ in range(body_chunks):
                try:
                    got += s.recv(4096)
                except BlockingIOError:
                    pass
                if got:
                    break
                try:
                    data = (f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n") if chunked else chunk
                    s.send(data)
                except BlockingIOError:
                    time.sleep(0.001)
                except OSError:
                    break
            s.setblocking(True)
            s.settimeout(10)
            with contextlib.suppress(OSError):
                while b"\r\n\r\n" not in got:
                    more = s.recv(4096)
                    if not more:
                        break
                    got += more
        return time.monotonic() - t0, got

    auth = f"Authorization: Bearer {OPERATOR}\r\n"
    # 300 MB announced, no token: 401 from the headers, the body never read
    t, head = post("127.0.20.1", f"Content-Length: {big}\r\nContent-Type: application/json\r\n", 2000)
    assert head.startswith(b"HTTP/1.1 401"), head[:200]
    t_401 = t
    # 300 MB announced with a token: 413 from Content-Length
    t, head = post("127.0.20.2", f"{auth}Content-Length: {big}\r\nContent-Type: application/json\r\n", 2000)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    t_413 = t
    # chunked without a length, with a token: 413 as soon as it passes 64 KiB
    t, head = post("127.0.20.3", f"{auth}Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n", 5000,
                   chunked=True)
    assert head.startswith(b"HTTP/1.1 413"), head[:200]
    t_chunked = t
    # slow body with a token: 408 after body_timeout
    t, head = post("127.0.20.4", f"{auth}Content-Length: 1000\r\nContent-Type: application/json\r\n", 1,
                   chunk=b"{")
    assert head.startswith(b"HTTP/1.1 408"), head[:200]
    assert BODY_TIMEOUT - 0.2 <= t < BODY_TIMEOUT + 2
    t_408 = t

    # twenty 300 MB uploads at once, half without a token, half with: RSS stays flat
    results: list[bytes] = []

    def one(i: int) -> None:
        h = f"Content-Length: {big}\r\n" + (auth if i % 2 else "")
        results.append(post(f"127.0.21.{i + 1}", h, 3000)[1][:12])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(20)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(30)
    growth = g.rss_mb() - rss0
    print(f"\nbodies: 401 in {t_401 * 1000:.0f} ms, 413 (length) in {t_413 * 1000:.0f} ms, 413 (chunked) in "
          f"{t_chunked * 1000:.0f} ms, 408 in {t_408:.2f} s; RSS growth after 20 x 300 MB: {growth:.1f} MB")
    assert sorted(r[:12] for r in results) == [b"HTTP/1.1 401"] * 10 + [b"HTTP/1.1 413"] * 10
    assert max(t_401, t_413, t_chunked) < 1.0
    assert growth < 50
    # the alarm was never acknowledged by any of it (nothing reached the handler)
    with g.client("127.0.0.1", timeout=5, headers={"Authorization": f"Bearer {VIEWER}"}) as c:
        assert c.get("/api/alarms?state=all").status_code == 200


def test_one_token_cannot_take_every_event_stream_slot(gw: Gw) -> None:
    g = gw
    h1 = {"Authorization": f"Bearer {VIEWER}"}
    h2 = {"Authorization": f"Bearer {VIEWER2}"}
    with contextlib.ExitStack() as stack:
        streams = []
        for i in range(8):
            c = stack.enter_context(g.client(f"127.0.30.{i + 1}", timeout=10))
            r = stack.enter_context(c.stream("GET", "/api/events", headers=h1))
            assert r.status_code == 200
            streams.append(r)
        c = stack.enter_context(g.client("127.0.30.50", timeout=10))
        r9 = c.get("/api/events", headers=h1)
        assert r9.status_code == 429 and r9.json()["error"] == "too_many_streams"
        c2 = stack.enter_context(g.client("127.0.30.51", timeout=10))
        other = stack.enter_context(c2.stream("GET", "/api/events", headers=h2))
        assert other.status_code == 200  # another token still gets a stream
        first = next(other.iter_lines())
        assert first.startswith(("retry:", "event:"))


def test_log_lines_cannot_be_forged(gw: Gw) -> None:
    g = gw
    forged = "2026-01-01 00:00:00,000 CRITICAL x: FORGED-BY-TAG"  # tags are logged up to 64 characters
    g.publish([{"tag": f"NOPE\n{forged}", "v": 1}])
    with g.client("127.0.40.1", timeout=5) as c:
        c.get("/api/nothing%0a2026-01-01%2000:00:00,000%20CRITICAL%20x:%20FORGED-BY-PATH",
              headers={"Authorization": f"Bearer {VIEWER}"})
    wait_for(lambda: "FORGED-BY-TAG" in g.log_text() and "FORGED-BY-PATH" in g.log_text(), timeout=10,
             desc="both attempts logged")
    lines = g.log_text().splitlines()
    assert not [ln for ln in lines if ln.startswith("2026-01-01")]
    tag_line = next(ln for ln in lines if "FORGED-BY-TAG" in ln)
    assert "NOPE\\n2026-01-01" in tag_line and "unknown_tag" in tag_line
    path_line = next(ln for ln in lines if "FORGED-BY-PATH" in ln)
    assert "\\n2026-01-01" in path_line
