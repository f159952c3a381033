"""``hazardgw demo``: Mosquitto + InfluxDB + plant simulator + gateway, on free loopback ports.

Mosquitto and influxd run as child processes with their data in a temp dir (or
``--workdir``); the simulator runs as a child ``hazardgw simulate`` process; the gateway
runs in this process. The demo config reads its ports from ``HAZARDGW_*`` environment
variables, which this module sets, so the same file works for a real site.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path

import paho.mqtt.client as paho
from aiohttp import web

from alerting import AlarmEvent
from devkit.services import Influxd, Mosquitto, free_port
from devkit.webapp import serve
from gateway.core.config import Tag
from gateway.supervisor import Gateway
from gateway.validate import validate_file

log = logging.getLogger(__name__)

PORT_VARS = (
    "HAZARDGW_MQTT_PORT",
    "HAZARDGW_INFLUX_PORT",
    "HAZARDGW_MODBUS_GDS1_PORT",
    "HAZARDGW_MODBUS_RTU_TANK_PORT",
    "HAZARDGW_MODBUS_GDS2_PORT",
    "HAZARDGW_API_PORT",
    "HAZARDGW_NTFY_PORT",
    "HAZARDGW_PLATFORM_PORT",
)


def _banner(env: dict[str, str], db: str, scenario: str, workdir: Path) -> str:
    influx = f"http://127.0.0.1:{env['HAZARDGW_INFLUX_PORT']}"
    q = "SELECT last(value), last(quality) FROM reading GROUP BY tag"
    return "\n".join(
        [
            "",
            "hazardgw demo is running (Ctrl-C stops everything)",
            f"  scenario     {scenario}",
            f"  MQTT broker  mqtt://127.0.0.1:{env['HAZARDGW_MQTT_PORT']}   "
            f"(mosquitto_sub -p {env['HAZARDGW_MQTT_PORT']} -t 'plant/#' -v)",
            f"  platform     mqtt://127.0.0.1:{env['HAZARDGW_PLATFORM_PORT']}   (联网监控 uplink: "
            f"mosquitto_sub -p {env['HAZARDGW_PLATFORM_PORT']} -t 'hazard/#' -v)",
            f"  InfluxDB     {influx}  database '{db}'",
            f"  query        curl -sG {influx}/query --data-urlencode db={db} --data-urlencode \"q={q}\"",
            f"  console      http://127.0.0.1:{env['HAZARDGW_API_PORT']}/   "
            "(token: demo-operator to acknowledge, demo-viewer to watch)",
            f"  data dir     {workdir}",
            "",
        ]
    )


async def run_demo(
    config_path: Path,
    *,
    duration: float | None = None,
    scenario: str = "chlorine-leak",
    workdir: Path | None = None,
    speed: float = 1.0,
) -> int:
    tmp: tempfile.TemporaryDirectory[str] | None = None
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="hazardgw-demo-")
        workdir = Path(tmp.name)
    workdir.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    for var in PORT_VARS:
        env[var] = str(free_port())
    env["HAZARDGW_STORE"] = str(workdir / "store")

    result = validate_file(config_path, env)
    if result.config is None:
        for e in result.format_errors():
            print(f"error: {e}", file=sys.stderr)
        return 2
    config = result.config

    mosq = Mosquitto(workdir / "mosquitto", int(env["HAZARDGW_MQTT_PORT"]))
    # a second broker stands in for the regulator's platform (the config's uplink points to it)
    platform_broker = Mosquitto(workdir / "platform", int(env["HAZARDGW_PLATFORM_PORT"]))
    platform = DemoPlatform(platform_broker, config.uplink.prefix if config.uplink else "hazard")
    influxd = Influxd(workdir / "influxd", int(env["HAZARDGW_INFLUX_PORT"]))
    sim: asyncio.subprocess.Process | None = None
    phones = DemoPhones(int(env["HAZARDGW_NTFY_PORT"]))
    gw: Gateway | None = None
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    import signal

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await phones.start()
        await asyncio.to_thread(mosq.start)
        await asyncio.to_thread(platform_broker.start)
        await asyncio.to_thread(platform.start)
        await asyncio.to_thread(influxd.start)
        db = config.influx.bucket if config.influx else "hazard"
        await asyncio.to_thread(influxd.create_database, db)
        sim = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.cli", "simulate", "-c", str(config_path), "--scenario", scenario,
            "--speed", str(speed),
            env=env,
            start_new_session=True,
        )
        await _wait_for_ports(
            [int(env[v]) for v in PORT_VARS if "MODBUS" in v], seconds=20, proc=sim
        )
        gw = Gateway(config)
        tags = config.tag_map()
        gw.alarms.subscribe(lambda ev: print(_alarm_text(ev, tags), flush=True))
        await gw.start()
        print(_banner(env, db, scenario, workdir), flush=True)
        t0 = time.monotonic()
        while not stop.is_set():
            if sim.returncode is not None:
                log.error("the plant simulator exited with code %s", sim.returncode)
                return 1
            if duration is not None and time.monotonic() - t0 >= duration:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
        await gw.stop()
        stored = _count_readings(influxd, db)
        active = gw.alarms.active()
        print(f"demo finished: {gw.pipeline.dispatched} readings through the pipeline, {stored} stored in InfluxDB, "
              f"{len(active)} alarms active, {phones.received} pushes to phones, platform received "
              f"{platform.summary()}", flush=True)
        gw = None
        return 0
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        if gw is not None:
            await gw.stop()
        if sim is not None and sim.returncode is None:
            sim.terminate()
            try:
                await asyncio.wait_for(sim.wait(), 10)
            except TimeoutError:
                sim.kill()
                await sim.wait()
        await asyncio.to_thread(influxd.stop)
        await asyncio.to_thread(platform.stop)
        await asyncio.to_thread(platform_broker.stop)
        await asyncio.to_thread(mosq.stop)
        await phones.stop()
        if tmp is not None:
            tmp.cleanup()


def _alarm_text(ev: AlarmEvent, tags: Mapping[str, Tag]) -> str:
    t = tags.get(ev.tag)
    unit = t.unit if t else ""
    if ev.condition == "roc":
        unit = "rate"
    value = "" if ev.value is None else f" value {ev.value:.3g}{unit and ' ' + unit}"
    limit = "" if ev.limit is None else f" limit {ev.limit:g}"
    name = f" ({t.name})" if t and t.name else ""
    return (f"ALARM {ev.event:<10} P{ev.priority} {ev.alarm}{name}{value}{limit} -> {ev.state}"
            + (f" by {ev.user}" if ev.user and ev.user != "system" else ""))


class DemoPhones:
    """Stands in for the duty officers' phones: an ntfy-compatible HTTP endpoint on the
    demo's ntfy port that prints each push it receives (the demo people's URLs point here)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.received = 0
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        self._runner, _ = await serve(self._handle, port=self.port)

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.text()
        try:
            data = json.loads(raw)
        except ValueError:
            data = {"message": raw}
        title = data.get("title", "") if isinstance(data, dict) else ""
        message = data.get("message", raw) if isinstance(data, dict) else raw
        first = str(message).strip().splitlines()[0] if str(message).strip() else ""
        self.received += 1
        topic = (data.get("topic") if isinstance(data, dict) else None) or request.path.lstrip("/")
        print(f"PUSH  to {topic}: {title} | {first}", flush=True)
        return web.json_response({"id": str(self.received)})


class DemoPlatform:
    """Stands in for the regulator's platform: subscribes to the uplink topics on the
    platform broker, prints each alarm message and counts the rest."""

    def __init__(self, broker: Mosquitto, prefix: str) -> None:
        self.broker = broker
        self.prefix = prefix
        self.counts: dict[str, int] = {}
        self._client: paho.Client | None = None

    def start(self) -> None:
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="demo-platform")
        c.on_connect = lambda client, *a: client.subscribe(f"{self.prefix}/#", qos=1)
        c.on_message = self._on_message
        c.connect(self.broker.host, self.broker.port)
        c.loop_start()
        self._client = c

    def stop(self) -> None:
        if self._client is not None:
            self._client.loop_stop()
            self._client.disconnect()
            self._client = None

    def summary(self) -> str:
        return ", ".join(f"{n} {ch}" for ch, n in sorted(self.counts.items())) or "nothing"

    def _on_message(self, client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
        channel = msg.topic.rsplit("/", 1)[-1]
        self.counts[channel] = self.counts.get(channel, 0) + 1
        if channel != "alarm":
            return
        try:
            d = json.loads(msg.payload)
            print(f"PLATFORM {d['event']:<10} {d['alarmType']:<5} {d['hazardCode']} {d['tagCode']} "
                  f"value {d['value']} {d['unit']} at {d['collectTime']} (status {d['alarmStatus']})", flush=True)
        except (ValueError, KeyError, TypeError):
            print(f"PLATFORM unreadable alarm message on {msg.topic}", flush=True)


async def _wait_for_ports(ports: list[int], seconds: float, proc: asyncio.subprocess.Process) -> None:
    """Wait until the simulator's Modbus servers accept connections."""
    deadline = time.monotonic() + seconds
    for port in ports:
        while True:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                await w.wait_closed()
                break
            except OSError:
                if proc.returncode is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"the plant simulator did not open Modbus port {port}") from None
                await asyncio.sleep(0.1)


def _count_readings(influxd: Influxd, db: str) -> int:
    try:
        rows = influxd.select(db, "SELECT count(value) FROM reading")
    except Exception:
        return -1
    return int(sum(r.get("count", 0) or 0 for r in rows))
