"""Disk full under ``store.path`` (ENOSPC on a real, small tmpfs) and private store files (issue 20).

(a) Every store on a 8 MiB tmpfs (alarm journal, push outbox, online rate, InfluxDB spool,
    uplink spool) with a whole in-process gateway, real influxd, the reference tcp-aes
    platform and a local webhook receiver for the pushes. The disk is filled (and kept
    full, like a runaway log would) while an alarm is raised: health is ``degraded`` with
    each store saying why, the push still goes out; space returns: health is ``ok`` again
    on its own (measured), every alarm is in the journal, in InfluxDB and at the platform,
    every reading emitted while full reached InfluxDB, each push arrived once, also after
    a restart.
(b) ``hazardgw run`` as a real process (MQTT in from a real mosquitto): a push accepted by
    the phone while the disk is full (its "sent" mark cannot be written) is marked sent
    once space returns, and a restart then does not send it again; the process killed
    while the disk is still full and restarted while still full sends that push once more
    (the stated at-least-once case) and recovers when space returns.
(c) File modes: a gateway with every store enabled, under umask 022, creates only 0600
    files and 0700 directories (SQLite -wal/-shm, spool segments, acked.json, lock,
    online.json, ack key); files left 0644/0755 are tightened at the next start, logged once.
(d) Store by store: a spool commit that fails half way (real ENOSPC, two pages free) leaves
    no duplicate; an acked.json that cannot be saved is kept and retried; an outbox that
    could not be opened at start opens later with what was sent on record; the private file
    helpers (gateway/core/files.py).

The tmpfs needs root (CI runs as root): without it these tests FAIL, they never skip.
Measured numbers are printed (``-s``) and attached to the report as user properties.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import sqlite3
import stat
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as paho
import pytest
import yaml
from aiohttp import web
from helpers import async_wait_for

from devkit.receivers.tcp_aes import AesTcpPlatform
from devkit.services import Influxd, Mosquitto
from gateway.config import Config
from gateway.core.models import Reading
from gateway.supervisor import Gateway
from gateway.validate import validate_text

ROOT = Path(__file__).resolve().parents[1]
KEY = bytes(range(32))
DISK_SIZE = "8m"

Report = Callable[[str, object], None]


@pytest.fixture
def report(record_property: Callable[[str, object], None]) -> Report:
    def rep(name: str, value: object) -> None:
        print(f"\n[measured] {name}: {value}")
        record_property(name, value)

    return rep


# ----------------------------------------------------------------------------- the small disk


class SmallDisk:
    """A tmpfs of ``DISK_SIZE`` mounted for one test. :meth:`full` fills it and keeps it
    full (a thread tops the filler up every 20 ms, eating whatever the gateway frees, like
    a runaway log); :meth:`release` deletes the filler: space is back."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.filler = path / "filler"
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def free(self) -> int:
        st = os.statvfs(self.path)
        return st.f_bavail * st.f_frsize

    def _fill_once(self) -> None:
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 1 << 12, 1):
                buf = b"\xff" * size
                while True:
                    try:
                        if os.write(fd, buf) < size:
                            break
                    except OSError as e:
                        if e.errno != errno.ENOSPC:
                            raise
                        break
        finally:
            os.close(fd)

    def full(self) -> None:
        self._fill_once()
        assert self.free() == 0
        self._stop.clear()

        def top_up() -> None:
            while not self._stop.wait(0.02):
                self._fill_once()

        self._thread = threading.Thread(target=top_up, name="disk-filler", daemon=True)
        self._thread.start()

    def release(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self.filler.unlink(missing_ok=True)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    mnt = tmp_path / "disk"
    mnt.mkdir()
    if os.geteuid() != 0:
        pytest.fail(
            "the disk-full tests mount a tmpfs and need root (CI runs as root); run them as root",
            pytrace=False,
        )
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={DISK_SIZE},mode=0700", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if res.returncode != 0:
        pytest.fail(f"cannot mount a tmpfs on {mnt} (root without CAP_SYS_ADMIN?): {res.stderr.strip()}",
                    pytrace=False)
    disk = SmallDisk(mnt)
    try:
        yield disk
    finally:
        disk.release()
        subprocess.run(["umount", "-l", str(mnt)], check=False)


# ----------------------------------------------------------------------------- the duty phone


@dataclass
class Push:
    path: str
    text: str  # title + message
    at: float


@dataclass
class Phones:
    """A local webhook receiver (apprise ``json://``) recording every push when it arrives.
    ``hold(path)`` makes requests on that path wait for their answer until ``open(path)``:
    the test decides when the channel accepts a push."""

    pushes: list[Push] = field(default_factory=list)
    gates: dict[str, asyncio.Event] = field(default_factory=dict)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> Phones:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0).start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def stop(self) -> None:
        for g in self.gates.values():
            g.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            doc = json.loads(await request.text())
        except ValueError:
            doc = {}
        self.pushes.append(Push(request.path, f"{doc.get('title', '')}\n{doc.get('message', '')}", time.monotonic()))
        gate = self.gates.get(request.path)
        if gate is not None:
            await gate.wait()
        return web.json_response({"ok": True})

    def url(self, person: str) -> str:
        return f"json://127.0.0.1:{self.port}/{person}"

    def hold(self, path: str) -> None:
        self.gates[path] = asyncio.Event()

    def open(self, path: str) -> None:
        gate = self.gates.pop(path, None)
        if gate is not None:
            gate.set()

    def count(self, tag: str) -> int:
        return sum(1 for p in self.pushes if f"位号：{tag}" in p.text)


@pytest.fixture
async def phones() -> AsyncIterator[Phones]:
    p = await Phones().start()
    yield p
    await p.stop()


# ----------------------------------------------------------------------------- config


# MQTT tags of a hazard source need a stale limit so a lost broker raises an alarm (check)
STALE = {"stale_after": "1h"}


def site(store: Path, phones: Phones, **extra: Any) -> dict[str, Any]:
    """Chlorine detector GT-101 (priority 1) and three pressures (priority 2); zhao on duty day
    and night; one escalation step (an immediate push), so a test never waits for a later one."""
    return {
        "site": {"code": "91430900DISKFULLX", "name": "磁盘满测试", "timezone": "Asia/Shanghai"},
        "hazard_sources": [
            {"code": "HS-001", "name": "液氯储罐区", "grade": 1,
             "responsible": {"principal": "zhao", "technical": "zhao", "operational": "zhao"}},
        ],
        "people": [{"id": "zhao", "name": "赵磊", "notify": [phones.url("zhao")]}],
        "duty": {
            "shifts": [{"name": "day", "start": "08:00", "end": "20:00", "people": ["zhao"]},
                       {"name": "night", "start": "20:00", "end": "08:00", "people": ["zhao"]}],
            "escalation": [{"after": "0s", "notify": ["on_duty"]}],
            "escalation_p1": [{"after": "0s", "notify": ["on_duty"]}],
        },
        "tags": [
            {"id": "GT-101", "name": "液氯泄漏检测", "hazard_source": "HS-001", "kind": "toxic_gas", "gas": "Cl2",
             "unit": "mg/m3", "range": [0, 10], "alarms": {"hh": {"limit": 2.0, "priority": 1}}, **STALE},
            *({"id": f"PT-20{i}", "hazard_source": "HS-001", "kind": "pressure", "unit": "MPa", "range": [0, 2.5],
               "alarms": {"h": {"limit": 1.6, "priority": 2}}, **STALE} for i in (1, 2, 3)),
            {"id": "TT-202", "hazard_source": "HS-001", "kind": "temperature", "unit": "°C", "range": [-40, 80],
             **STALE},
        ],
        "api": {"enabled": False},
        "store": {"path": str(store), "max_bytes": "2MiB"},
        **extra,
    }


def validated(doc: dict[str, Any]) -> Config:
    res = validate_text(json.dumps(doc, ensure_ascii=False), env={**os.environ, "UPLINK_KEY": KEY.hex()})
    assert res.config is not None, [p.format("cfg") for p in res.errors]
    return res.config


def every_store(store: Path, phones: Phones, influxd: Influxd, db: str, platform_port: int) -> Config:
    return validated(site(
        store, phones,
        influx={"url": influxd.url, "api": "v1", "bucket": db, "flush_interval": "100ms", "timeout": "2s"},
        uplink={"profile": "tcp-aes", "url": f"tcp://127.0.0.1:{platform_port}", "period": "1s", "heartbeat": "1s",
                "username": "gw", "password": "pw", "reconnect_max": "1s",
                "options": {"key": "${UPLINK_KEY}", "key_id": "k1"}},
    ))


def component_problems(h: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in h["components"].items() if not v.get("ok")}


# ----------------------------------------------------------------------------- (a) every store, in process


class Feeder:
    """TT-202 every 50 ms (its timestamps kept: InfluxDB must end up with every one)."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw
        self.sent: list[int] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        i = 0
        while True:
            ts = time.time_ns() // 1_000_000 * 1_000_000
            if self.sent and ts <= self.sent[-1]:
                ts = self.sent[-1] + 1_000_000
            await self.gw.pipeline.emit([Reading("TT-202", 20.0 + (i % 50) / 10, ts, "good")])
            self.sent.append(ts)
            i += 1
            await asyncio.sleep(0.05)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


async def emit(gw: Gateway, tag: str, value: float) -> None:
    await gw.pipeline.emit([Reading(tag, value, time.time_ns(), "good")])


async def test_disk_full_every_store_degrades_and_recovers_without_restart(
    small_disk: SmallDisk, phones: Phones, influxd: Influxd, influx_db: str, report: Report
) -> None:
    platform = AesTcpPlatform(KEY, key_id="k1", username="gw", password="pw")
    port = await platform.start()
    store = small_disk.path / "store"
    cfg = every_store(store, phones, influxd, influx_db, port)
    gw = Gateway(cfg)
    feeder = Feeder(gw)
    await gw.start()
    try:
        await async_wait_for(lambda: gw.health()["status"] == "ok", timeout=20,
                             desc="a healthy gateway", retry_on=(AssertionError,))
        feeder.start()
        await emit(gw, "GT-101", 2.5)  # priority 1: pushed, and marked sent, before the disk fills
        await async_wait_for(lambda: phones.count("GT-101") == 1, timeout=10)
        await async_wait_for(lambda: push_status(store, "GT-101/hh") == ["sent"], timeout=10)

        small_disk.full()
        t_full = time.monotonic()
        await emit(gw, "PT-201", 2.0)  # raised while the disk is full: the push goes out from memory
        await async_wait_for(lambda: phones.count("PT-201") == 1, timeout=10)
        pushed_after = next(p.at for p in phones.pushes if "位号：PT-201" in p.text) - t_full
        gw.online.save()  # the once-a-minute save, now (its failure starts the retries)
        want = {"alarms", "notifier", "influx", "uplink", "online"}
        await async_wait_for(lambda: want <= set(component_problems(gw.health())), timeout=15,
                             desc=f"{sorted(want)} degraded while the disk is full")
        bad = component_problems(gw.health())
        assert "full" in str(bad["alarms"]["journal"]["error"])  # SQLITE_FULL: database or disk is full
        assert bad["notifier"]["db_error"] and bad["notifier"]["db_backlog"] >= 1
        assert bad["influx"]["spool"]["last_error"] and bad["uplink"]["spool"]["last_error"]
        assert "No space left" in bad["online"]["error"]
        assert gw.health()["status"] == "degraded"
        await asyncio.sleep(0)
        full_for = time.monotonic() - t_full

        small_disk.release()
        t_back = time.monotonic()
        await async_wait_for(lambda: gw.health()["status"] == "ok", timeout=30, interval=0.05,
                             desc="health ok again without a restart")
        recovery = time.monotonic() - t_back
        report("push_while_full_s", round(pushed_after, 3))
        report("disk_full_for_s", round(full_for, 2))
        report("recovery_after_space_returns_s", round(recovery, 2))
        assert recovery < 15  # journal and outbox retry at most every 5 s, the spool every 1 s

        # nothing lost: the journal, InfluxDB and the platform have every alarm; the readings
        # emitted while the disk was full reached InfluxDB; each push went out once
        await emit(gw, "GT-101", 0.1)
        await feeder.stop()
        raised = {(e["alarm"], e["event"]) for e in await asyncio.to_thread(gw.journal.events, limit=100)}
        assert {("GT-101/hh", "raised"), ("PT-201/h", "raised")} <= raised
        await async_wait_for(
            lambda: {r["tag"] for r in influxd.select(influx_db, "SELECT * FROM alarm WHERE event = 'raised' "
                                                      "GROUP BY \"tag\"")} == {"GT-101", "PT-201"}, timeout=15)
        sent = set(feeder.sent)
        await async_wait_for(
            lambda: {int(r["time"]) for r in influxd.select(influx_db, "SELECT value FROM reading "
                                                            "WHERE \"tag\" = 'TT-202'")} >= sent, timeout=20,
            desc=f"all {len(sent)} TT-202 readings in InfluxDB")
        await async_wait_for(
            lambda: {(r.payload.get("tagCode"), r.payload.get("event")) for r in platform.received
                     if r.type == "alarm"} >= {("GT-101", "raised"), ("PT-201", "raised")}, timeout=15)
        assert push_status(store, "GT-101/hh") == ["sent"]
        assert push_status(store, "PT-201/h") == ["sent"]  # written from memory once space returned
        assert (phones.count("GT-101"), phones.count("PT-201")) == (1, 1)
    finally:
        await feeder.stop()
        await gw.stop()

    # a restart after the recovery sends nothing again
    gw2 = Gateway(cfg)
    await gw2.start()
    try:
        await async_wait_for(lambda: _idle(gw2.health()), timeout=15, desc="notifier restored and idle")
        assert (phones.count("GT-101"), phones.count("PT-201")) == (1, 1)
    finally:
        await gw2.stop()
        await platform.stop()


def _idle(h: dict[str, Any]) -> bool:
    n = h["components"]["notifier"]
    return bool(n["running"] and n["outbox"]["pending"] == 0 and n["outbox"]["in_flight"] == 0)


# ----------------------------------------------------------------------------- (b) real process, restarts


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class GatewayProcess:
    """``python -m gateway.cli run -c FILE`` with its health on the API."""

    def __init__(self, cfg: Path, api_port: int, log: Path) -> None:
        self.cfg = cfg
        self.url = f"http://127.0.0.1:{api_port}/api/health"
        self.log_path = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as out:
            self.proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(self.cfg)], cwd=ROOT,
                                         stdout=out, stderr=subprocess.STDOUT)

    async def health(self) -> dict[str, Any]:
        assert self.proc is not None and self.proc.poll() is None, f"gateway exited: {self.log()[-3000:]}"
        async with httpx.AsyncClient(timeout=2.0) as c:
            r = await c.get(self.url)
        r.raise_for_status()
        doc: dict[str, Any] = r.json()
        return doc

    async def wait(self, pred: Callable[[dict[str, Any]], bool], desc: str, within: float = 30.0) -> dict[str, Any]:
        async def check() -> dict[str, Any]:
            h = await self.health()
            return h if pred(h) else {}

        return await async_wait_for(check, timeout=within, interval=0.05, desc=desc,
                                    retry_on=(httpx.HTTPError, OSError))

    def stop(self, sig: int = signal.SIGTERM) -> int:
        assert self.proc is not None
        self.proc.send_signal(sig)
        rc = self.proc.wait(timeout=30)
        self.proc = None
        return rc

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def publish(client: paho.Client, tag: str, value: float) -> None:
    doc = [{"tag": tag, "v": value, "ts": time.time_ns() // 1_000_000, "q": "good"}]
    client.publish("plant/bulk", json.dumps(doc), qos=1).wait_for_publish(5)


def store_rows(db: Path, sql: str) -> list[tuple[Any, ...]]:
    con = sqlite3.connect(f"{db.resolve().as_uri()}?mode=ro", uri=True, timeout=5)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def push_status(store: Path, alarm: str) -> list[str]:
    return [r[0] for r in store_rows(store / "notify-outbox.sqlite3",
                                     f"SELECT status FROM pushes WHERE alarm = '{alarm}' ORDER BY id")]


async def test_a_push_sent_while_the_disk_is_full_is_not_sent_again_after_a_restart(
    small_disk: SmallDisk, phones: Phones, mosquitto: Mosquitto, tmp_path: Path, report: Report
) -> None:
    store = small_disk.path / "store"
    api_port = free_port()
    doc = site(store, phones,
               sources=[{"id": "plant", "type": "mqtt", "url": mosquitto.url, "client_id": "diskfull-gw",
                         "subscriptions": [{"topic": "plant/bulk", "qos": 1, "format": "native"}]}],
               api={"listen": f"127.0.0.1:{api_port}"})
    cfg = tmp_path / "site.yaml"
    cfg.write_text(yaml.safe_dump(doc, allow_unicode=True))
    gw = GatewayProcess(cfg, api_port, tmp_path / "gw.log")
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="diskfull-plant")
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()

    def ok(h: dict[str, Any]) -> bool:
        return h["status"] == "ok"

    def idle_and_ok(h: dict[str, Any]) -> bool:
        return ok(h) and _idle(h)

    def outbox_waiting(h: dict[str, Any]) -> bool:
        return bool(h["components"]["notifier"]["db_error"])

    gw.start()
    try:
        await gw.wait(ok, "a healthy gateway process")
        # 1. the phone takes its time with the chlorine push; meanwhile the disk fills up
        phones.hold("/zhao")
        publish(pub, "GT-101", 2.5)
        await async_wait_for(lambda: phones.count("GT-101") == 1, timeout=10)
        assert push_status(store, "GT-101/hh") == ["pending"]  # committed before it was sent
        small_disk.full()
        phones.open("/zhao")  # accepted now: its "sent" mark cannot be written
        await gw.wait(outbox_waiting, "the outbox reporting writes waiting")
        publish(pub, "PT-201", 2.0)  # raised while full: delivered from memory
        await async_wait_for(lambda: phones.count("PT-201") == 1, timeout=10)
        assert push_status(store, "GT-101/hh") == ["pending"]  # the mark is only in memory so far
        h = await gw.health()
        assert h["status"] == "degraded" and h["components"]["notifier"]["db_backlog"] >= 2

        # 2. space returns: healthy again on its own, the marks written
        small_disk.release()
        t_back = time.monotonic()
        await gw.wait(ok, "health ok again after space returned (no restart)")
        recovery = time.monotonic() - t_back
        report("process_recovery_after_space_returns_s", round(recovery, 2))
        assert push_status(store, "GT-101/hh") == ["sent"] and push_status(store, "PT-201/h") == ["sent"]

        # 3. a restart sends neither again
        assert gw.stop() == 0
        gw.start()
        await gw.wait(idle_and_ok, "restarted, notifier idle")
        assert (phones.count("GT-101"), phones.count("PT-201")) == (1, 1)

        # 4. killed while the disk is still full: the mark is lost with the process. Restarted
        #    while still full, the push goes out once more (at-least-once, never lost), and the
        #    gateway recovers when space returns; a restart after that sends nothing again.
        phones.hold("/zhao")
        publish(pub, "PT-202", 2.0)
        await async_wait_for(lambda: phones.count("PT-202") == 1, timeout=10)
        await async_wait_for(lambda: store_rows(store / "alarm-journal.sqlite3",
                                                "SELECT 1 FROM events WHERE alarm = 'PT-202/h' AND event = 'raised'"),
                             timeout=10, desc="the raise of PT-202 in the journal")
        small_disk.full()
        phones.open("/zhao")
        await gw.wait(outbox_waiting, "the PT-202 mark waiting in memory")
        assert gw.stop(signal.SIGKILL) == -signal.SIGKILL
        gw.start()
        await async_wait_for(lambda: phones.count("PT-202") == 2, timeout=30,
                             desc="PT-202 sent once more after the kill")
        h = await gw.wait(lambda h: h["status"] == "degraded", "restarted on a full disk: degraded")
        assert h["components"]["alarms"]["running"] and h["components"]["notifier"]["running"]
        small_disk.release()
        t_back = time.monotonic()
        await gw.wait(idle_and_ok, "health ok after space returned (restarted while full)")
        report("process_recovery_after_restart_on_full_disk_s", round(time.monotonic() - t_back, 2))
        assert push_status(store, "PT-202/h") == ["sent"]
        assert gw.stop() == 0
        gw.start()
        await gw.wait(idle_and_ok, "restarted again, notifier idle")
        assert (phones.count("GT-101"), phones.count("PT-201"), phones.count("PT-202")) == (1, 1, 2)
        text = gw.log()
        assert "delayed write(s) stored" in text  # the recovery is logged
        assert "Traceback" not in text
        assert_private(store)
    finally:
        if gw.proc is not None:
            gw.stop(signal.SIGKILL)
        pub.loop_stop()
        pub.disconnect()


# ----------------------------------------------------------------------------- (c) file modes


def modes(root: Path) -> dict[str, int]:
    """path -> mode (with the directory bit) of everything under ``root`` now; a file the
    gateway deletes meanwhile (an acknowledged spool segment) is simply not listed."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in [*dirnames, *filenames]:
            p = Path(dirpath) / name
            with contextlib.suppress(FileNotFoundError):
                out[str(p.relative_to(root))] = os.lstat(p).st_mode
    out["."] = os.lstat(root).st_mode
    return out


def not_private(found: dict[str, int]) -> dict[str, str]:
    return {p: oct(stat.S_IMODE(m)) for p, m in found.items()
            if stat.S_IMODE(m) != (0o700 if stat.S_ISDIR(m) else 0o600)}


def assert_private(root: Path) -> dict[str, int]:
    found = modes(root)
    wrong = not_private(found)
    assert not wrong, f"not private under {root}: {wrong}"
    return found


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


async def test_every_file_under_store_path_is_private_and_old_ones_are_tightened(
    phones: Phones, influxd: Influxd, influx_db: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    platform = AesTcpPlatform(KEY, key_id="k1", username="gw", password="pw")
    port = await platform.start()
    store = tmp_path / "store"
    cfg = every_store(store, phones, influxd, influx_db, port)
    expected = {"alarm-journal.sqlite3", "alarm-journal.sqlite3-wal", "alarm-journal.sqlite3-shm",
                "notify-outbox.sqlite3", "notify-outbox.sqlite3-wal", "notify-outbox.sqlite3-shm", "notify-ack.key",
                "online.json", "spool", "spool/influx", "spool/influx/lock", "spool/influx/reading",
                "spool/influx/priority", "spool/influx/reading/acked.json", "spool/uplink", "spool/uplink/lock",
                "spool/uplink/reading/acked.json", "spool/uplink/priority"}
    try:
        with umask(0o022):  # what a gateway started by hand gets: only the helpers keep the files private
            gw = Gateway(cfg)
            await gw.start()
            try:
                await emit(gw, "GT-101", 2.5)
                for i in range(20):
                    await emit(gw, "TT-202", 20.0 + i)
                await async_wait_for(lambda: phones.count("GT-101") == 1, timeout=10)
                # every file as it was seen while the gateway ran: each kind must have shown up,
                # and each time it was private
                seen: dict[str, int] = {}

                def missing_kinds() -> list[str]:
                    seen.update(modes(store))
                    return sorted(expected - set(seen))

                try:
                    await async_wait_for(lambda: not missing_kinds(), timeout=20, desc="every kind of store file")
                except AssertionError as e:
                    raise AssertionError(f"{e}; never seen: {missing_kinds()}; seen: {sorted(seen)}") from None
                # A spool segment lives only until InfluxDB acknowledges it (milliseconds): hold
                # influxd (SIGSTOP) so that the next readings' segment stays on disk to be checked.
                pid = influxd.pid
                assert pid is not None
                os.kill(pid, signal.SIGSTOP)
                try:
                    for i in range(5):
                        await emit(gw, "TT-202", 40.0 + i)

                    def a_segment() -> bool:
                        seen.update(modes(store))
                        return any(p.startswith("spool/influx/") and p.endswith(".seg") for p in seen)

                    await async_wait_for(a_segment, timeout=20, desc="a spool segment while influxd is held")
                finally:
                    os.kill(pid, signal.SIGCONT)
                assert not not_private(seen), f"not private under {store}: {not_private(seen)}"
                found = seen
            finally:
                await gw.stop()
        assert any(p.startswith("spool/") and p.endswith(".seg") for p in found)  # a segment was checked too

        # files left readable by others (an older version, a copy by hand) are tightened at start
        for p in [store, *store.rglob("*")]:
            os.chmod(p, 0o755 if p.is_dir() else 0o644)
        caplog.set_level(logging.WARNING, logger="gateway.supervisor")
        with umask(0o022):
            gw = Gateway(cfg)
            await gw.start()
            try:
                assert_private(store)
            finally:
                await gw.stop()
        lines = [r.getMessage() for r in caplog.records if "tightened" in r.getMessage()]
        assert len(lines) == 1 and "0600/0700" in lines[0] and "(644)" in lines[0]
        assert_private(store)
    finally:
        await platform.stop()


# ----------------------------------------------------------------------------- store by store


def leave_free(disk: SmallDisk, pages: int) -> None:
    """Fill the disk so that exactly ``pages`` pages stay free (a gap file freed after the fill)."""
    gap = disk.path / "gap"
    gap.write_bytes(b"\xff" * (pages * 4096))
    disk._fill_once()
    gap.unlink()
    assert disk.free() == pages * 4096


async def test_a_spool_commit_failing_half_way_is_rolled_back_whole(small_disk: SmallDisk) -> None:
    """The priority block fits, the readings after it do not: nothing of that commit may stay
    on disk, or the retry writes the priority record a second time."""
    from gateway.core.metrics import Metrics
    from gateway.spool import Spool

    s = Spool(small_disk.path / "spool", name="t", metrics=Metrics(), max_bytes=10**8, block_records=1000,
              commit_interval=0.05)
    await s.open()
    try:
        s.append("priority", ["p0"])
        s.append("reading", ["r0"])
        await s.flush()  # both segment files exist, each with one block
        leave_free(small_disk, 2)
        s.append("priority", ["p1"])
        s.append("reading", [f"r{i}-" + "x" * 100 for i in range(1, 1001)])  # ~100 KiB: cannot fit
        await s.flush()
        assert s.health()["ok"] is False and "No space left" in str(s.last_error)
        assert s.pending == 1001
        small_disk.release()
        await async_wait_for(lambda: s.pending == 0 and s.health()["ok"], timeout=10)
        out: list[str] = []
        while (b := await s.next_batch(5000)) is not None:
            out.extend(b.records())
            await s.ack(b)
        assert out.count("p1") == 1 and [r for r in out if r.startswith("p")] == ["p0", "p1"]
        assert len(out) == 1003 and len(set(out)) == 1003
    finally:
        await s.close()


async def test_an_acknowledgement_state_that_cannot_be_saved_is_kept_and_retried(small_disk: SmallDisk) -> None:
    from gateway.core.metrics import Metrics
    from gateway.spool import Spool

    s = Spool(small_disk.path / "spool", name="t", metrics=Metrics(), max_bytes=10**8, block_records=10,
              commit_interval=0.05)
    await s.open()
    try:
        s.append("reading", [f"r{i}" for i in range(100)])
        await s.flush()
        b = await s.next_batch(10)
        assert b is not None
        small_disk.full()
        await s.ack(b)  # used to raise (and end the sink's task for good)
        h = s.health()
        assert h["ok"] is False and "acked.json" in str(h["acks_error"])
        small_disk.release()
        t0 = time.monotonic()
        await async_wait_for(lambda: s.health()["ok"], timeout=10, desc="acked.json saved by the retry")
        assert time.monotonic() - t0 < 6  # backoff capped at 5 s
        acked = json.loads((small_disk.path / "spool" / "reading" / "acked.json").read_text())["acked"]
        assert acked  # the block acknowledged while the disk was full
    finally:
        await s.close()


async def test_an_outbox_that_could_not_be_opened_at_start_is_opened_later(tmp_path: Path) -> None:
    """The store path is unusable at start: pushes go out from memory and their writes wait;
    once the path is usable the outbox opens on its own and the push is on record as sent."""
    from test_notify_support import Clock, Harness, Receiver, site_config

    rx = await Receiver().start()
    blocker = tmp_path / "store"
    blocker.write_text("not a directory")
    h = await Harness(site_config(rx, blocker), Clock("2026-03-02 10:00")).start()
    try:
        h.feed("GT-101", 2.6)
        await rx.wait("/zhao", 2)  # 2.6 ppm raises HH (priority 1) and H (priority 2): a push each
        health = h.notifier.health()
        assert health["durable"] is False and health["ok"] is False and health["db_backlog"] >= 1
        blocker.unlink()
        await async_wait_for(lambda: h.notifier.health()["durable"] and h.notifier.health()["db_error"] is None,
                             timeout=15, desc="the outbox opened and the kept writes stored")
        rows = await h.notifier.db.run(h.notifier.store.pushes)
        assert [r["status"] for r in rows if r["person"] == "zhao"] == ["sent", "sent"]
        esc = await h.notifier.db.run(h.notifier.store.escalations)
        assert sorted(e["alarm"] for e in esc) == ["GT-101/h", "GT-101/hh"]
        assert (blocker / "notify-outbox.sqlite3").stat().st_mode & 0o777 == 0o600
    finally:
        await h.stop()
        await rx.stop()


def test_private_file_helpers(small_disk: SmallDisk, tmp_path: Path) -> None:
    from gateway.core.files import private_dir, tighten, write_private

    with umask(0o022):
        d = private_dir(tmp_path / "a" / "b" / "c")
        assert [stat.S_IMODE((tmp_path / p).stat().st_mode) for p in ("a", "a/b", "a/b/c")] == [0o700] * 3
        wide = tmp_path / "wide"
        wide.mkdir(mode=0o755)
        private_dir(wide)
        assert stat.S_IMODE(wide.stat().st_mode) == 0o700
        write_private(d / "f.json", b"{}")
        assert stat.S_IMODE((d / "f.json").stat().st_mode) == 0o600

    # a failed write (disk full) leaves the old file and no temporary debris
    target = small_disk.path / "online.json"
    write_private(target, b"old")
    small_disk.full()
    with pytest.raises(OSError):
        write_private(target, b"x" * 100_000)
    small_disk.release()
    assert target.read_bytes() == b"old" and sorted(p.name for p in small_disk.path.iterdir()) == ["online.json"]

    # tighten: files and directories lose group/other bits; a symlink (and what it points to) is left alone
    outside = tmp_path / "outside.txt"
    outside.write_text("x")
    os.chmod(outside, 0o644)
    root = tmp_path / "store"
    (root / "sub").mkdir(parents=True)
    (root / "sub" / "f").write_text("x")
    os.chmod(root / "sub" / "f", 0o644)
    os.chmod(root / "sub", 0o755)
    os.chmod(root, 0o750)
    (root / "link").symlink_to(outside)
    t = tighten(root)
    assert sorted((Path(p).name, oct(m)) for p, m in t.changed) == [
        ("f", "0o644"), ("store", "0o750"), ("sub", "0o755")]
    assert stat.S_IMODE((root / "sub" / "f").stat().st_mode) == 0o600
    assert stat.S_IMODE((root / "sub").stat().st_mode) == 0o700
    assert stat.S_IMODE(outside.stat().st_mode) == 0o644 and not t.failed
