"""One validation path: `check`, `run` and a SIGHUP reload decide the same on GB/T 50493
set points, and a tag's `standards_waiver` (with a reason) is the only way to run with a
violation."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from helpers import wait_for

from gateway.validate import validate_text

ROOT = Path(__file__).resolve().parents[1]
OVER_OEL = 1.2  # Cl2 in ppm: 200 % OEL is 2 mg/m3 = 0.68 ppm (GB/T 50493-2019 5.5.2 item 3)


def site(store: Path, hh: float, waiver: str | None = None) -> str:
    tag: dict[str, Any] = {"id": "GT-101", "kind": "toxic_gas", "gas": "Cl2", "unit": "ppm", "range": [0, 10],
                           "alarms": {"h": {"limit": 0.3, "priority": 2}, "hh": {"limit": hh, "priority": 1}}}
    if waiver is not None:
        tag["standards_waiver"] = {"reason": waiver}
    return yaml.safe_dump({"site": {"code": "S", "name": "S"}, "tags": [tag], "api": {"enabled": False},
                           "store": {"path": str(store)}}, allow_unicode=True)


def hazardgw(*args: str, **kw: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway.cli", *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=60, **kw)


def test_a_set_point_violation_is_an_error_and_a_waiver_makes_it_a_warning_with_its_reason(tmp_path: Path) -> None:
    bad = validate_text(site(tmp_path, OVER_OEL), "site.yaml", {})
    assert bad.config is None
    assert [p.path for p in bad.errors] == [("tags", 0, "alarms", "hh", "limit")]
    assert "exceeds 200 % OEL" in bad.errors[0].message

    waived = validate_text(site(tmp_path, OVER_OEL, "detector reads high, see MOC-2026-17"), "site.yaml", {})
    assert waived.config is not None and waived.errors == []
    assert [p.path for p in waived.waivers] == [("tags", 0, "alarms", "hh", "limit")]
    assert waived.waivers[0].message.startswith("waived (detector reads high, see MOC-2026-17): tag GT-101")

    short = validate_text(site(tmp_path, OVER_OEL, "x"), "site.yaml", {})
    assert short.config is None  # a waiver needs a real reason


def test_check_and_run_refuse_the_same_config(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(site(tmp_path / "store", OVER_OEL), encoding="utf-8")
    check = hazardgw("check", "-c", str(cfg))
    run = hazardgw("run", "-c", str(cfg))
    assert check.returncode == 2 and run.returncode == 2
    where = f"{cfg}:"
    assert "tags[0].alarms.hh.limit: tag GT-101" in check.stderr and where in check.stderr
    assert "tags[0].alarms.hh.limit: tag GT-101" in run.stderr and "not starting" in run.stderr
    assert not (tmp_path / "store").exists()  # nothing started


def test_check_shows_a_waiver_and_run_logs_it_at_start(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    cfg.write_text(site(tmp_path / "store", OVER_OEL, "临时豁免: 仪表标定中"), encoding="utf-8")
    check = hazardgw("check", "-c", str(cfg))
    assert check.returncode == 0, check.stderr
    assert "warning:" in check.stderr and "waived (临时豁免: 仪表标定中)" in check.stderr

    log = (tmp_path / "gw.log").open("w+", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())
    try:
        wait_for(lambda: "started" in Path(log.name).read_text(encoding="utf-8"), timeout=30, desc="gateway start")
        text = Path(log.name).read_text(encoding="utf-8")
        assert "standards waiver:" in text and "waived (临时豁免: 仪表标定中)" in text
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()


def test_sighup_refuses_a_set_point_violation_and_applies_it_with_a_waiver(tmp_path: Path) -> None:
    cfg = tmp_path / "site.yaml"
    store = tmp_path / "store"
    cfg.write_text(site(store, 0.6), encoding="utf-8")
    log = (tmp_path / "gw.log").open("w+", encoding="utf-8")
    proc = subprocess.Popen([sys.executable, "-m", "gateway.cli", "run", "-c", str(cfg)], cwd=ROOT,
                            stdout=log, stderr=subprocess.STDOUT, env=os.environ.copy())

    def text() -> str:
        return Path(log.name).read_text(encoding="utf-8")

    try:
        wait_for(lambda: "started" in text(), timeout=30, desc="gateway start")
        cfg.write_text(site(store, OVER_OEL), encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "reload rejected" in text(), timeout=15, desc="reload rejected")
        assert "tags[0].alarms.hh.limit: tag GT-101" in text()
        assert "config reloaded" not in text() and proc.poll() is None

        cfg.write_text(site(store, OVER_OEL, "reviewed by the safety manager"), encoding="utf-8")
        proc.send_signal(signal.SIGHUP)
        wait_for(lambda: "config reloaded" in text(), timeout=15, desc="reload applied")
        assert "waived (reviewed by the safety manager)" in text()
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        log.close()
