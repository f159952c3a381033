"""Hot reload: unaffected sources keep running, the rest is rebuilt without losing readings or alarms."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import httpx
from helpers import async_wait_for
from test_api_support import H_OPERATOR, H_VIEWER, TOKENS, sse_events

from devkit.services import free_port
from devkit.simulator.modbus import ModbusPlantServer
from gateway.config import Config
from gateway.core.models import Reading
from gateway.supervisor import Gateway, _sources_to_restart


def site(tmp: Path, port_a: int, port_b: int, *, h_limit: float = 20.0, extra_point: bool = False,
         api: bool = False) -> Config:
    points_b = [{"tag": "PT-2", "table": "input", "address": 0, "type": "int16", "scale": 0.01}]
    if extra_point:
        points_b.append({"tag": "PT-3", "table": "input", "address": 1, "type": "int16", "scale": 0.01})
    return Config.model_validate(
        {
            "site": {"code": "S", "name": "S"},
            "hazard_sources": [{"code": "HS-1", "name": "hs", "grade": 2}],
            "sources": [
                {"id": "dev-a", "type": "modbus_tcp", "host": "127.0.0.1", "port": port_a, "poll_interval": "100ms",
                 "timeout": "300ms",
                 "points": [{"tag": "GT-1", "table": "holding", "address": 0, "type": "float32"}]},
                {"id": "dev-b", "type": "modbus_tcp", "host": "127.0.0.1", "port": port_b, "poll_interval": "100ms",
                 "timeout": "300ms", "points": points_b},
            ],
            "tags": [
                {"id": "GT-1", "hazard_source": "HS-1", "kind": "combustible_gas", "gas": "CH4", "unit": "%LEL",
                 "range": [0, 100], "alarms": {"h": {"limit": h_limit, "priority": 2}}},
                {"id": "PT-2", "hazard_source": "HS-1", "kind": "pressure", "unit": "MPa", "range": [0, 10]},
                {"id": "PT-3", "hazard_source": "HS-1", "kind": "pressure", "unit": "MPa", "range": [0, 10]},
            ],
            "api": {"enabled": api, "listen": "127.0.0.1:0", "tokens": TOKENS},
            "store": {"path": str(tmp / "store")},
        }
    )


class Recorder:
    name = "recorder"

    def __init__(self) -> None:
        self.got: list[Reading] = []

    def on_readings(self, batch: Any) -> None:
        self.got.extend(batch)


def test_which_sources_restart(tmp_path: Path) -> None:
    a = site(tmp_path, 1001, 1002)
    assert _sources_to_restart(a, a) == set()
    # a new point on dev-b restarts dev-b only
    assert _sources_to_restart(a, site(tmp_path, 1001, 1002, extra_point=True)) == {"dev-b"}
    # an alarm limit of a dev-a tag: dev-a's tag changed, so dev-a restarts (range/kind feed its qualities)
    assert _sources_to_restart(a, site(tmp_path, 1001, 1002, h_limit=30)) == {"dev-a"}
    # two sources on one bus restart together
    b = site(tmp_path, 1001, 1001)
    assert _sources_to_restart(b, site(tmp_path, 1001, 1001, extra_point=True)) == {"dev-a", "dev-b"}


async def test_reload_keeps_unaffected_source_running_and_carries_alarm_state(tmp_path: Path) -> None:
    port_a, port_b = free_port(), free_port()
    cfg1 = site(tmp_path, port_a, port_b)
    cfg2 = site(tmp_path, port_a, port_b, extra_point=True)  # dev-b changes, dev-a does not
    plant = ModbusPlantServer([*cfg2.sources], cfg2.tag_map())  # serves PT-3 too
    await plant.start()
    gw = Gateway(cfg1)
    rec = Recorder()
    gw.pipeline.subscribe(rec)
    try:
        plant.set_value("GT-1", 25.0)  # above h=20: alarm raised
        plant.set_value("PT-2", 1.5)
        plant.set_value("PT-3", 2.5)
        await gw.start()
        await async_wait_for(lambda: [a.id for a in gw.alarms.active()] == ["GT-1/h"], timeout=10)
        dev_a = next(s for s in gw.sources if s.id == "dev-a")
        raised = [e for e in gw.alarms.history() if e.event == "raised"]
        assert len(raised) == 1

        summary = await gw.reload(cfg2)
        assert "restarted sources dev-b" in summary and "kept running dev-a" in summary
        assert next(s for s in gw.sources if s.id == "dev-a") is dev_a  # same adapter object, never stopped
        await async_wait_for(lambda: any(r.tag == "PT-3" and r.value == 2.5 for r in rec.got), timeout=10)

        # a limit change rebuilds the engine; the active alarm carries over, not raised again
        cfg3 = site(tmp_path, port_a, port_b, extra_point=True, h_limit=22.0)
        summary = await gw.reload(cfg3)
        assert "rebuilt tags" in summary
        assert [a.id for a in gw.alarms.active()] == ["GT-1/h"]
        n = len(rec.got)
        await async_wait_for(lambda: len(rec.got) > n + 20, timeout=10)  # still flowing, through the new engine
        assert not [e for e in gw.alarms.history() if e.event == "raised"]  # restored state, no re-raise
        plant.set_value("GT-1", 21.0)  # below the new limit of 22 -> returns, judged by the new engine
        await async_wait_for(lambda: gw.alarms.get("GT-1/h").state == "RTNUN", timeout=10)
        assert gw.alarms.get("GT-1/h").active is False

        # no gap for dev-a: its readings kept their 100 ms rhythm across both reloads
        ts = [r.ts for r in rec.got if r.tag == "GT-1"]
        gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(ts)]
        assert max(gaps) < 1.0, max(gaps)
    finally:
        await gw.stop()
        await plant.stop()


async def test_reload_with_the_same_config_changes_nothing(tmp_path: Path) -> None:
    cfg = site(tmp_path, free_port(), free_port())
    gw = Gateway(cfg)
    await gw.start()
    try:
        engine = gw.alarms
        assert await gw.reload(cfg) == "no changes"
        assert gw.alarms is engine
    finally:
        await gw.stop()


async def test_two_reloads_leave_every_subscriber_wired_once(tmp_path: Path) -> None:
    """The supervisor rebuilds its wiring on every reload: after two of them each pipeline
    subscriber is there once, in the declared order, and an alarm event reaches the
    console exactly once."""
    port_a, port_b = free_port(), free_port()
    cfg1 = site(tmp_path, port_a, port_b, api=True)
    plant = ModbusPlantServer([*cfg1.sources], cfg1.tag_map())
    await plant.start()
    plant.set_value("GT-1", 5.0)
    plant.set_value("PT-2", 1.0)
    gw = Gateway(cfg1)
    try:
        await gw.start()
        for limit in (22.0, 24.0):  # a tag change rebuilds the downstream components
            assert "rebuilt tags" in await gw.reload(site(tmp_path, port_a, port_b, api=True, h_limit=limit))
        names = ["live", "online", "alarms", "test-mode", "api-trends"]
        assert [s.name for s in gw.pipeline.subscribers] == names
        assert gw.pipeline.subscribers == gw.wiring.readings
        assert gw.wiring.names() == {"readings": names, "alarm_events": ["notifier", "api-events", "test-records"],
                                     "notify_records": [], "test_changes": ["alarms"]}
        assert gw.testmode.listeners == list(gw.wiring.test_changes)  # the new engine's, not an old one's
        assert gw.testmode.listeners[-1][1] == gw.alarms.set_tests
        assert gw.api is not None and gw.api.url is not None
        assert gw.wiring.readings[-1] is gw.api.trends  # the new API's, not an old one's

        events: list[dict[str, Any]] = []
        connected = asyncio.Event()

        async def console(url: str) -> None:
            async with httpx.AsyncClient(timeout=None) as c, \
                    c.stream("GET", f"{url}/api/events", headers=H_VIEWER) as r:
                async for event, data in sse_events(r):
                    connected.set()
                    if event == "alarm" and data["alarm"] == "GT-1/h":
                        events.append(data)

        task = asyncio.create_task(console(gw.api.url))
        try:
            await asyncio.wait_for(connected.wait(), 10)
            plant.set_value("GT-1", 30.0)  # above the limit of the third config (24)
            await async_wait_for(lambda: gw.alarms.get("GT-1/h").state == "UNACK", timeout=10)
            async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as c:
                r = await c.post("/api/alarms/GT-1%2Fh/ack", headers=H_OPERATOR)
                assert r.status_code == 200
            # events reach a subscriber in order, so once "acked" is there a duplicate
            # "raised" would be there too
            await async_wait_for(lambda: any(e["event"] == "acked" for e in events), timeout=10)
            assert [e["event"] for e in events] == ["raised", "acked"]
        finally:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
    finally:
        await gw.stop()
        await plant.stop()
