"""Helpers shared by the benchmarks: percentiles, RSS, a loopback webhook receiver, a paced
``mosquitto_pub -l`` load generator, and the metric rows ``python -m bench`` summarises."""

from __future__ import annotations

import json
import math
import os
import random
import shutil
import statistics
import subprocess
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from devkit.webapp import serve

BASE_MS = 1_732_300_000_000


def pct(xs: Sequence[float], p: float) -> float:
    """Nearest-rank percentile (p in 0..100); nan for no samples."""
    if not xs:
        return float("nan")
    s = sorted(xs)
    k = max(0, min(len(s) - 1, math.ceil(p / 100 * len(s)) - 1))
    return s[k]


def spread(xs: Sequence[float]) -> dict[str, float]:
    """Median, min, max of repeated samples."""
    return {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "n": len(xs)}


def rss_mb() -> float:
    """VmRSS of this process, MB (from /proc/self/status)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def metric(name: str, value: float, unit: str, target: float | None = None, op: str = ">=",
           reference: str = "", **extra: Any) -> dict[str, Any]:
    """One row of the summary: ``op`` is '>=' (higher is better) or '<='."""
    ok = None
    if target is not None and not math.isnan(value):
        ok = value >= target if op == ">=" else value <= target
    return {"metric": name, "value": value, "unit": unit, "target": target, "op": op, "pass": ok,
            "reference": reference, **extra}


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 100:
            return f"{v:,.0f}"
        return f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.2f}"  # ratios near a target (0.77 x) keep two digits
    return f"{v:,}" if isinstance(v, int) else str(v)


def native_lines(messages: int, per: int, tags: Sequence[str], seed: int = 7, lo: float = 0.0,
                 hi: float = 100.0) -> list[str]:
    rng = random.Random(seed)
    out, k = [], 0
    for _ in range(messages):
        items = []
        for _ in range(per):
            items.append({"tag": tags[k % len(tags)], "v": round(rng.uniform(lo, hi), 3), "ts": BASE_MS + k})
            k += 1
        out.append(json.dumps(items, separators=(",", ":")))
    return out


class PacedPublisher:
    """``mosquitto_pub -l`` fed ``lines`` (cycled) at ``rate`` lines/s from a thread, with fresh
    timestamps; bounded by ``max_seconds``."""

    def __init__(self, pub_binary: str, host: str, port: int, topic: str, per: int, tags: Sequence[str],
                 rate: float, max_seconds: float, seed: int = 11, lo: float = 20.0, hi: float = 60.0,
                 qos: int = 0) -> None:
        self.args = [pub_binary, "-h", host, "-p", str(port), "-q", str(qos), "-t", topic, "-l"]
        self.per, self.tags, self.rate, self.max_seconds = per, list(tags), rate, max_seconds
        self.rng = random.Random(seed)
        self.lo, self.hi = lo, hi
        self.sent = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    def _line(self, k0: int) -> bytes:
        now = int(time.time() * 1000)
        r, tags, n = self.rng, self.tags, len(self.tags)
        items = [{"tag": tags[(k0 + i) % n], "v": round(r.uniform(self.lo, self.hi), 2), "ts": now}
                 for i in range(self.per)]
        return json.dumps(items, separators=(",", ":")).encode() + b"\n"

    def _run(self) -> None:
        assert self._proc is not None and self._proc.stdin is not None
        t0 = time.monotonic()
        k = 0
        while not self._stop.is_set() and time.monotonic() - t0 < self.max_seconds:
            due = t0 + self.sent / self.rate
            delay = due - time.monotonic()
            if delay > 0:
                self._stop.wait(min(delay, 0.05))
                continue
            try:
                self._proc.stdin.write(self._line(k))
                self._proc.stdin.flush()
            except (BrokenPipeError, OSError):
                return
            k += self.per
            self.sent += 1

    def start(self) -> PacedPublisher:
        self._proc = subprocess.Popen(self.args, stdin=subprocess.PIPE)
        self._thread = threading.Thread(target=self._run, name="paced-pub", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        if self._proc is not None:
            if self._proc.stdin is not None:
                self._proc.stdin.close()
            try:
                self._proc.wait(10)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait(5)


class BulkPublisher:
    """``mosquitto_pub -l`` that is connected and waiting for its first line before the clock
    starts, then fed a payload file.

    ``mosquitto_pub -l`` connects on its network thread while its main thread sleeps in 100 ms
    steps until it sees the CONNACK; only then does it read stdin. Spawned inside the timed part
    it idles ~100 ms before the first PUBLISH (measured here: first message at a subscriber
    103 ms after the spawn, 0.8 ms after the first write into the pipe of one already waiting),
    10 % of a 1 s bulk run charged to the system under test. So ``BulkPublisher(...)`` spawns it
    on a pipe, ``ready()`` is true once its main thread is blocked reading that pipe (its
    ``/proc`` syscall or wait channel), ``feed(path)`` starts a ``cat`` of the file into the
    pipe (start the clock there; this process writes nothing, so a system under test in it is
    not slowed), and
    ``wait()`` returns when every line is published and acknowledged."""

    def __init__(self, host: str, port: int, topic: str, qos: int = 1, binary: str | None = None) -> None:
        exe = binary or shutil.which("mosquitto_pub") or "/usr/bin/mosquitto_pub"
        r, self._w = os.pipe()
        try:
            self.proc = subprocess.Popen([exe, "-h", host, "-p", str(port), "-q", str(qos), "-t", topic, "-l"],
                                         stdin=r)
        finally:
            os.close(r)
        self._feeder: subprocess.Popen[bytes] | None = None

    def ready(self) -> bool:
        """True once mosquitto_pub is connected and blocked reading its first line (raises if it
        ended: it could not connect)."""
        if self.proc.poll() is not None:
            raise RuntimeError(f"mosquitto_pub exited ({self.proc.returncode}) before reading a line")
        pid = self.proc.pid
        try:
            with open(f"/proc/{pid}/syscall") as f:  # "0 0x0 ...": read(0, ...) on x86_64
                if f.read().startswith("0 0x0 "):
                    return True
        except OSError:
            pass
        try:
            with open(f"/proc/{pid}/wchan") as f:  # any architecture: the kernel's wait channel
                return "pipe_read" in f.read()  # pipe_read, or anon_pipe_read on newer kernels
        except OSError:
            return False

    def wait_ready(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not self.ready():
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError(f"mosquitto_pub not connected and reading within {timeout} s")
            time.sleep(0.002)

    def feed(self, payload_file: Any) -> None:
        """Starts writing the file's lines into mosquitto_pub (the moment to start the clock)."""
        self._feeder = subprocess.Popen(["cat", str(payload_file)], stdout=self._w)
        os.close(self._w)
        self._w = -1

    def wait(self, timeout: float | None = None) -> int:
        if self._feeder is not None:
            self._feeder.wait(timeout)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        for p in (self._feeder, self.proc):
            if p is not None and p.poll() is None:
                p.kill()
                p.wait(5)
        if self._w >= 0:
            os.close(self._w)
            self._w = -1


@dataclass
class Hit:
    path: str
    body: str
    at: float  # time.monotonic() on arrival


@dataclass
class Receiver:
    """Loopback aiohttp webhook that records every request (as tests/test_notify_support.py)."""

    hits: list[Hit] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> Receiver:
        self._runner, self.port = await serve(self._handle)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        at = time.monotonic()
        raw = await request.text()
        self.hits.append(Hit(request.path, raw, at))
        return web.json_response({"ok": True})

    def json_url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}/{path.lstrip('/')}"


def proc_cpu_s(pid: int | None) -> float:
    """CPU seconds (user + system) of process ``pid`` so far (its own, not its children's)."""
    if pid is None:
        return float("nan")
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def line_bodies(lines: Sequence[str], batch: int = 5000) -> list[bytes]:
    """Line protocol bodies of ``batch`` lines each, encoded once (a client that costs nothing)."""
    return ["\n".join(lines[i : i + batch]).encode() for i in range(0, len(lines), batch)]


def post_bodies(url: str, db: str, bodies: Sequence[bytes], inflight: int = 1) -> float:
    """POST every body to influxd 1.x ``/write`` over ``inflight`` keep-alive connections
    (threads); returns the wall seconds from the first request to the last answer. Raises on
    any status but 204: a reference that lost points would flatter the sink."""
    import http.client
    from concurrent.futures import ThreadPoolExecutor
    from urllib.parse import urlsplit

    u = urlsplit(url)
    path = f"/write?db={db}&precision=ns"
    work = list(enumerate(bodies))
    lock = threading.Lock()

    def worker() -> None:
        conn = http.client.HTTPConnection(u.hostname or "127.0.0.1", u.port or 8086, timeout=60)
        try:
            while True:
                with lock:
                    if not work:
                        return
                    _, body = work.pop(0)
                conn.request("POST", path, body=body, headers={"Content-Type": "text/plain"})
                resp = conn.getresponse()
                text = resp.read()
                if resp.status != 204:
                    raise RuntimeError(f"influxd /write -> HTTP {resp.status}: {text[:300]!r}")
        finally:
            conn.close()

    t0 = time.perf_counter()
    with ThreadPoolExecutor(inflight) as ex:
        for f in [ex.submit(worker) for _ in range(inflight)]:
            f.result()
    return time.perf_counter() - t0


def loadavg() -> str:
    """The 1-minute load average now (other work on the 2-core machine moves every figure)."""
    try:
        with open("/proc/loadavg") as f:
            return f.read().split(" ", 1)[0]
    except OSError:
        return "?"
