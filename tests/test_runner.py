"""`hazardgw run` as a real process: sd_notify READY/WATCHDOG/STOPPING, SIGHUP reload, SIGTERM."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import yaml
from helpers import async_wait_for, wait_for

from gateway.sdnotify import LoopWatchdog, SdNotify

ROOT = Path(__file__).resolve().parents[1]


def config_text(store: Path, limit: float) -> str:
    return yaml.safe_dump(
        {
            "site": {"code": "S", "name": "S"},
            "tags": [{"id": "T-1", "kind": "temperature", "unit": "°C",
                      "alarms": {"h": {"limit": limit, "priority": 2}}}],
            "api": {"enabled": False},
            "store": {"path": str(store)},
        }
    )


class Notifications:
    def __init__(self, path: Path) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.got: list[str] = []

    def poll(self) -> list[str]:
        while True:
            try:
                self.got.extend(self.sock.recv(4096).decode().split("\n"))
            except BlockingIOError:
                return self.got


def test_run_notifies_systemd_reloads_on_sighup_and_stops_on_sigterm(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(config_text(tmp_path / "store", 50))
    notes = Notifications(tmp_path / "notify.sock")
    env = {**os.environ, "NOTIFY_SOCKET": str(tmp_path / "notify.sock"), "WATCHDOG_USEC": "200000"}
    log = (tmp_path / "gw.log").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "READY=1" in notes.poll(), timeout=20, desc="READY=1")
        wait_for(lambda: notes.poll().count("WATCHDOG=1") >= 3, timeout=10, desc="3 watchdog pings")

        # an invalid config is rejected with its errors; the gateway keeps running
        cfg.write_text(config_text(tmp_path / "store", 50).replace("kind: temperature", "kind: tempreature"))
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload rejected" in Path(log.name).read_text(), timeout=10)
        text = Path(log.name).read_text()
        assert "tags[0].kind" in text
        assert proc.poll() is None

        # a valid one is applied
        cfg.write_text(config_text(tmp_path / "store", 60))
        n_ready = notes.poll().count("READY=1")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in Path(log.name).read_text(), timeout=10)
        wait_for(lambda: notes.poll().count("READY=1") > n_ready, timeout=5, desc="READY=1 after reload")
        assert "RELOADING=1" in notes.poll()

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
        assert "STOPPING=1" in notes.poll()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        log.close()


async def test_watchdog_pings_stop_while_the_loop_is_stalled(tmp_path: Path) -> None:
    notes = Notifications(tmp_path / "n.sock")
    sd = SdNotify({"NOTIFY_SOCKET": str(tmp_path / "n.sock"), "WATCHDOG_USEC": "100000"})
    assert sd.watchdog_interval == 0.05
    wd = LoopWatchdog(sd)
    await wd.start()
    try:
        await async_wait_for(lambda: wd.pings >= 3, timeout=5)
        before = wd.pings
        time.sleep(0.5)  # noqa: ASYNC251 - a blocking call stalls the event loop: no ping meanwhile
        assert wd.pings == before
        await async_wait_for(lambda: wd.pings > before, timeout=5)  # pings resume with the loop
        assert wd.max_seen_lag >= 0.4  # the stall shows up as loop lag in /api/health
        assert wd.health()["max_loop_lag_s"] >= 0.4
    finally:
        await wd.stop()
        sd.close()
    assert notes.poll().count("WATCHDOG=1") >= 4


def test_sdnotify_is_a_noop_outside_systemd() -> None:
    sd = SdNotify({})
    assert not sd.enabled and sd.watchdog_interval is None
    assert sd.notify("READY=1") is False
