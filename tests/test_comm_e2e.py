"""Loss of monitoring end to end: a real simulated Modbus controller, a whole gateway, real pushes.

A gas detection controller GDS-B with 36 detectors (4-20 mA inputs, two hazard sources) is
killed: exactly one COMM alarm is raised and exactly one push reaches the duty officer's
phone (a real local webhook through the notifier), naming the source and what it cut off;
nothing is raised or pushed for the 36 detectors. The controller comes back with one
detector on a broken loop: the COMM alarm clears and that detector raises its own alarm.
Then two devices on one shared Modbus TCP line: one device going silent raises that
device's COMM alarm; the whole line going down raises one alarm for the line.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from helpers import async_wait_for
from test_notify_support import Receiver

from alerting import states as S
from devkit.services import free_port
from devkit.simulator.modbus import ModbusPlantServer
from gateway.config import Config
from gateway.supervisor import Gateway

POLL = 0.5
GDS = [f"GT-{i:02d}" for i in range(1, 37)]
ALWAYS = {"shifts": [{"name": "all", "start": "00:00", "end": "00:00", "people": ["zhao"]}],
          "escalation": [{"after": "0s", "notify": ["on_duty"]}],
          "escalation_p1": [{"after": "0s", "notify": ["on_duty"]}]}


@pytest.fixture
async def rx() -> AsyncIterator[Receiver]:
    r = await Receiver().start()
    yield r
    await r.stop()


def detector(tag: str, hs: str) -> dict[str, Any]:
    return {"id": tag, "name": f"LEL detector {tag}", "kind": "combustible_gas", "gas": "CH4", "unit": "%LEL",
            "range": [0, 100], "hazard_source": hs,
            "alarms": {"hh": {"limit": 50, "priority": 1, "latch": True}, "h": {"limit": 25, "priority": 2}}}


def gds_site(tmp: Path, port: int, rx: Receiver) -> Config:
    return Config.model_validate({
        "site": {"code": "91430900DEMO0001XX", "name": "示范化工", "timezone": "Asia/Shanghai"},
        "hazard_sources": [{"code": "HS-001", "name": "液氯储罐区", "grade": 2},
                           {"code": "HS-002", "name": "液化石油气球罐区", "grade": 3}],
        "people": [{"id": "zhao", "name": "赵磊", "notify": [rx.json_url("zhao")]}],
        "duty": ALWAYS,
        "sources": [{"id": "gds-b", "name": "GDS-B", "type": "modbus_tcp", "host": "127.0.0.1", "port": port,
                     "poll_interval": f"{POLL}s", "timeout": "200ms", "backoff_max": "1s",
                     "points": [{"tag": t, "table": "input", "address": i, "type": "uint16",
                                 "current_loop": {"raw_4ma": 6400, "raw_20ma": 32000}}
                                for i, t in enumerate(GDS)]}],
        "tags": [detector(t, "HS-001" if i < 20 else "HS-002") for i, t in enumerate(GDS)],
        "api": {"enabled": False},
        "store": {"path": str(tmp / "store")},
    })


async def journal_events(gw: Gateway, **kw: Any) -> list[dict[str, Any]]:
    j = gw.alarms.journal
    assert j is not None
    await asyncio.to_thread(j.flush)
    rows: list[dict[str, Any]] = await asyncio.to_thread(j.events, limit=10_000, **kw)
    return rows


async def test_killed_controller_is_one_comm_alarm_and_one_push(tmp_path: Path, rx: Receiver) -> None:
    cfg = gds_site(tmp_path, free_port(), rx)
    server = ModbusPlantServer(list(cfg.sources), cfg.tag_map())  # type: ignore[arg-type]
    for t in GDS:
        server.set_value(t, 2.0)
    await server.start()
    gw = Gateway(cfg)
    await gw.start()
    try:
        await async_wait_for(lambda: all((r := gw.live.get(t)) is not None and r.quality == "good" for t in GDS),
                             timeout=10, desc="36 detectors read good")
        await server.stop()  # the controller dies

        await async_wait_for(lambda: [a.id for a in gw.alarms.active()] == ["gds-b/comm"], timeout=10,
                             desc="one COMM alarm")
        comm = gw.alarms.get("gds-b/comm")
        assert (comm.state, comm.priority) == (S.UNACK, 1)  # covers gas detectors with P1 alarms
        (hit,) = await rx.wait("/zhao", 1)
        assert hit.title == "【一级(紧急)】液氯储罐区 GDS-B 通讯中断"
        assert "报警：通讯中断：36 个探测器，重大危险源 HS-001、HS-002" in hit.message
        await async_wait_for(lambda: all(gw.alarms.get(f"{t}/bad").state == S.DSUPR for t in GDS), timeout=5)
        assert {gw.alarms.get(f"{t}/bad").parent for t in GDS} == {"gds-b/comm"}
        statuses = gw.alarms.statuses()
        assert (statuses["HS-001"].status, statuses["HS-002"].status) == ("red", "orange")  # P1 in grade 2 / 3

        # it comes back, one detector on a broken loop (2 mA: a fault, not a loss)
        server.set_current("GT-07", 2.0)
        await server.start()
        await async_wait_for(lambda: gw.alarms.get("gds-b/comm").state == S.RTNUN, timeout=10, desc="COMM cleared")
        await async_wait_for(lambda: gw.alarms.get("GT-07/bad").state == S.UNACK, timeout=10,
                             desc="GT-07 raises its own BAD alarm after the recovery")
        hits = await rx.wait("/zhao", 2)
        assert "GT-07" in hits[1].title and "仪表故障" in hits[1].title
        assert [a.id for a in gw.alarms.active()] == ["gds-b/comm", "GT-07/bad"]
        assert all(gw.alarms.get(f"{t}/bad").state == S.NORM for t in GDS if t != "GT-07")

        # the record: one COMM raise, 36 suppressions under it, nothing raised for the 35 others
        raised = [r["alarm"] for r in await journal_events(gw, kinds=["raised"])]
        assert sorted(raised) == ["GT-07/bad", "gds-b/comm"]
        sup = await journal_events(gw, kinds=["suppressed"])
        assert len(sup) == 36 and {r["data"]["parent"] for r in sup} == {"gds-b/comm"}
        assert gw.notifier.health()["escalations_open"] == 2
        assert len(rx.on("/zhao")) == 2  # the COMM alarm and GT-07's own alarm, nothing else
    finally:
        await gw.stop()
        await server.stop()


def bus_site(tmp: Path, port: int) -> Config:
    def dev(sid: str, unit: int, tags: list[str]) -> dict[str, Any]:
        return {"id": sid, "type": "modbus_tcp", "host": "127.0.0.1", "port": port, "device_id": unit,
                "poll_interval": f"{POLL}s", "timeout": "200ms", "backoff_max": "1s",
                "points": [{"tag": t, "address": 2 * i, "type": "float32"} for i, t in enumerate(tags)]}

    return Config.model_validate({
        "site": {"code": "S", "name": "S"},
        "hazard_sources": [{"code": "HS-001", "name": "Tank farm", "grade": 2}],
        "sources": [dev("rtu-a", 1, ["PT-1", "PT-2"]), dev("rtu-b", 2, ["PT-3", "PT-4"])],
        "tags": [{"id": t, "kind": "pressure", "unit": "MPa", "range": [0, 5], "hazard_source": "HS-001",
                  "alarms": {"h": {"limit": 4, "priority": 2}}} for t in ("PT-1", "PT-2", "PT-3", "PT-4")],
        "api": {"enabled": False},
        "store": {"path": str(tmp / "store")},
    })


async def test_device_on_a_shared_line_vs_the_whole_line(tmp_path: Path) -> None:
    port = free_port()
    cfg = bus_site(tmp_path, port)
    line = f"modbus:127.0.0.1:{port}/comm"
    server = ModbusPlantServer(list(cfg.sources), cfg.tag_map())  # type: ignore[arg-type]
    for t in ("PT-1", "PT-2", "PT-3", "PT-4"):
        server.set_value(t, 1.0)
    await server.start()
    gw = Gateway(cfg)
    await gw.start()
    try:
        await async_wait_for(lambda: all((r := gw.live.get(t)) is not None and r.quality == "good"
                                         for t in ("PT-1", "PT-2", "PT-3", "PT-4")), timeout=10)
        server.set_silent("rtu-b")  # one device stops answering; the other keeps answering on the same line
        await async_wait_for(lambda: [a.id for a in gw.alarms.active()] == ["rtu-b/comm"], timeout=10,
                             desc="the device's COMM alarm")
        assert gw.alarms.get(line).state == S.NORM
        assert gw.live.get("PT-1").quality == "good"
        server.set_silent("rtu-b", False)
        await async_wait_for(lambda: gw.alarms.get("rtu-b/comm").state == S.RTNUN, timeout=10)
        gw.alarms.ack("rtu-b/comm", "zhao")

        await server.stop()  # the whole line goes down: one alarm, for the line
        await async_wait_for(lambda: [a.id for a in gw.alarms.active()] == [line], timeout=10,
                             desc="one COMM alarm for the line")
        view = gw.alarms.get(line)
        assert view.comm is not None and view.comm["units"] == ["rtu-a", "rtu-b"] and view.comm["tags"] == 4
        assert {gw.alarms.get(f"rtu-{x}/comm").parent for x in "ab"} == {line}
        raised = [e.alarm for e in gw.alarms.history(limit=1000) if e.event == "raised"]
        assert sorted(raised) == sorted(["rtu-b/comm", line])
    finally:
        await gw.stop()
        await server.stop()
