"""Fault injection with real processes: a Modbus device killed, the broker restarted, clock jumps."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from helpers import async_wait_for

from alerting import AlarmEngine
from devkit.services import Mosquitto, free_port
from devkit.simulator.modbus import ModbusPlantServer
from gateway.config import Config
from gateway.core.metrics import Metrics
from gateway.core.models import Reading
from gateway.supervisor import Gateway

POLL = 0.5


def modbus_site(tmp: Path, port: int) -> Config:
    return Config.model_validate(
        {
            "site": {"code": "S", "name": "S"},
            "sources": [{"id": "gds", "type": "modbus_tcp", "host": "127.0.0.1", "port": port,
                         "poll_interval": f"{POLL}s", "timeout": "200ms", "backoff_max": "1s",
                         "points": [{"tag": "GT-1", "address": 0, "type": "float32"}]}],
            "tags": [{"id": "GT-1", "kind": "combustible_gas", "gas": "CH4", "unit": "%LEL", "range": [0, 100]}],
            "api": {"enabled": False},
            "store": {"path": str(tmp / "store")},
        }
    )


async def test_killed_modbus_device_goes_comm_within_three_polls_and_recovers(tmp_path: Path) -> None:
    cfg = modbus_site(tmp_path, free_port())
    server = ModbusPlantServer(list(cfg.sources), cfg.tag_map())  # type: ignore[arg-type]
    server.set_value("GT-1", 3.0)
    await server.start()
    gw = Gateway(cfg)
    await gw.start()
    try:
        await async_wait_for(lambda: (r := gw.live.get("GT-1")) is not None and r.quality == "good", timeout=10)
        await server.stop()  # the device dies
        t0 = time.monotonic()
        await async_wait_for(lambda: gw.live.get("GT-1").quality == "comm", timeout=10)
        assert time.monotonic() - t0 <= 3 * POLL + 0.5, "comm must show within 3 poll intervals"
        assert gw.live.get("GT-1").value is None  # never the last value repeated as fresh
        # the loss is one COMM alarm for the device; the detector's implicit BAD alarm is suppressed under it
        await async_wait_for(lambda: [a.id for a in gw.alarms.active()] == ["gds/comm"], timeout=5)
        assert gw.alarms.get("GT-1/bad").parent == "gds/comm"
        server.set_value("GT-1", 4.0)
        await server.start()
        await async_wait_for(lambda: gw.live.get("GT-1").quality == "good" and gw.live.get("GT-1").value == 4.0,
                             timeout=10)
    finally:
        await gw.stop()
        await server.stop()


def mqtt_site(tmp: Path, url: str) -> Config:
    return Config.model_validate(
        {
            "site": {"code": "S", "name": "S"},
            "sources": [{"id": "m", "type": "mqtt", "url": url, "client_id": "fault-gw",
                         "subscriptions": [{"topic": "plant/bulk", "qos": 1, "format": "native"}]}],
            "tags": [{"id": "TT-1", "kind": "temperature", "unit": "°C"}],
            "api": {"enabled": False},
            "store": {"path": str(tmp / "store")},
        }
    )


def publish(broker: Mosquitto, payload: Any) -> None:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="fault-pub")
    c.connect(broker.host, broker.port)
    c.loop_start()
    try:
        info = c.publish("plant/bulk", json.dumps(payload), qos=1)
        info.wait_for_publish(5)
        assert info.is_published()
    finally:
        c.loop_stop()
        c.disconnect()


async def test_broker_restart_ingest_resumes_within_5_s(mosquitto: Mosquitto, tmp_path: Path) -> None:
    gw = Gateway(mqtt_site(tmp_path, mosquitto.url))
    await gw.start()
    try:
        await async_wait_for(lambda: gw.health()["components"]["source:m"]["connected"], timeout=10)
        publish(mosquitto, [{"tag": "TT-1", "v": 1.0, "ts": 1_732_300_000_000}])
        await async_wait_for(lambda: (r := gw.live.get("TT-1")) is not None and r.value == 1.0, timeout=10)
        await asyncio.to_thread(mosquitto.restart)
        t0 = time.monotonic()

        async def ingested() -> bool:
            # publish every attempt: the first ones may reach the broker before the gateway re-subscribed
            await asyncio.to_thread(publish, mosquitto, [{"tag": "TT-1", "v": 2.0, "ts": 1_732_300_001_000}])
            r = gw.live.get("TT-1")
            return r is not None and r.value == 2.0

        await async_wait_for(ingested, timeout=10, interval=0.2)
        assert time.monotonic() - t0 <= 5.0
    finally:
        await gw.stop()


def test_system_clock_jumps_do_not_break_delays_or_stale_checks(tmp_path: Path) -> None:
    """Delays and stale checks run on the monotonic clock; only event timestamps use the wall clock."""
    cfg = Config.model_validate(
        {
            "site": {"code": "S", "name": "S"},
            "tags": [{"id": "PT-1", "kind": "pressure", "unit": "MPa", "range": [0, 10], "stale_after": "5s",
                      "alarms": {"h": {"limit": 5.0, "on_delay": "10s"}, "stale": {"priority": 2}}}],
            "api": {"enabled": False},
            "store": {"path": str(tmp_path / "store")},
        }
    )
    mono = [1000.0]
    wall = [1_732_300_000 * 10**9]
    engine = AlarmEngine(cfg, Metrics(), None, clock=lambda: mono[0], wall=lambda: wall[0])
    engine.on_readings([Reading("PT-1", 6.0, wall[0], "good")])
    wall[0] -= 3600 * 10**9  # the system clock jumps back an hour (NTP step)
    mono[0] += 4.0
    engine.on_readings([Reading("PT-1", 6.0, wall[0], "good")])
    engine.tick()
    assert engine.get("PT-1/h").state == "NORM"  # 4 s of 10 s on-delay
    wall[0] += 7200 * 10**9  # and forward two hours
    mono[0] += 6.5
    engine.on_readings([Reading("PT-1", 6.0, wall[0], "good")])
    engine.tick()
    assert engine.get("PT-1/h").state == "UNACK"  # exactly the on-delay, whatever the wall clock did
    mono[0] += 5.5  # no reading for 5.5 s of monotonic time
    engine.tick()
    assert engine.get("PT-1/stale").state == "UNACK"
