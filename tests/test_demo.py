"""`hazardgw demo` end to end: real mosquitto and influxd as children, the simulator, the gateway."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_demo_runs_unattended_and_raises_the_chlorine_alarm(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "demo", "--duration", "25", "--speed", "4",
         "--scenario", "chlorine-leak", "--workdir", str(tmp_path / "demo")],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    assert "hazardgw demo is running" in out
    # the leak ramps through H and HH of the first Cl2 detector, and the 2oo4 vote trips
    assert re.search(r"ALARM raised\s+P2 GT-101/h ", out), out[-3000:]
    assert re.search(r"ALARM raised\s+P1 GT-101/hh ", out), out[-3000:]
    m = re.search(r"demo finished: (\d+) readings through the pipeline, (\d+) stored in InfluxDB", out)
    assert m, out[-3000:]
    through, stored = int(m.group(1)), int(m.group(2))
    # 40 tags at ~1 Hz for ~25 s, every one of them stored
    assert through >= 40 * 20
    assert stored >= through - 40  # quality-only readings (stale/comm) have no value to count
    # the regulator's platform (second mosquitto) got the alarms, realtime data and metadata
    assert re.search(r"PLATFORM raised\s+HH\s+HS-001 GT-101 ", out), out[-3000:]
    m = re.search(r"platform received (.*)", out)
    assert m and re.search(r"\b1 meta\b", m.group(1)) and re.search(r"\b[1-9]\d* realtime\b", m.group(1)), out[-3000:]
    # every Modbus source and MQTT connected without errors worth a traceback
    assert "Traceback" not in out
    # mosquitto, influxd and the simulator are gone afterwards
    left = subprocess.run(["pgrep", "-af", str(tmp_path)], capture_output=True, text=True).stdout
    assert left.strip() == "", left
