"""The plant simulator: plays a site config on Modbus servers and MQTT.

``Plant.values_at(t)`` is pure (values, faults, silences for time ``t``), so tests can check
a scenario without any server; ``run_plant`` ticks it in real time and pushes the values
into a :class:`ModbusPlantServer` and an :class:`MqttPublisher`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import zoneinfo
from dataclasses import dataclass, field

from adapters.modbus.config import ModbusRtuSource, ModbusTcpSource
from adapters.mqtt.config import MqttSource
from gateway.config import Config
from gateway.simulator.scenarios import SCENARIOS, Effects
from gateway.simulator.signals import Signal, signal_for

log = logging.getLogger(__name__)


@dataclass
class Frame:
    values: dict[str, float | None]
    effects: Effects = field(default_factory=Effects)


class Plant:
    def __init__(self, config: Config, scenario: str = "normal", seed: int = 1) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(sorted(SCENARIOS))}")
        self.config = config
        self.scenario = SCENARIOS[scenario](config)
        self.rng = random.Random(seed)
        self.signals: dict[str, Signal] = {t.id: signal_for(t, self.rng) for t in config.tags}
        self.tz = zoneinfo.ZoneInfo(config.site.timezone)
        # fault point tag -> the detector it belongs to
        self.fault_of: dict[str, str] = {}
        for s in config.sources:
            if isinstance(s, ModbusTcpSource | ModbusRtuSource):
                for p in s.points:
                    if p.fault:
                        self.fault_of[p.fault] = p.tag
        self.fault_state = {
            p.fault: p.fault_state
            for s in config.sources if isinstance(s, ModbusTcpSource | ModbusRtuSource)
            for p in s.points if p.fault
        }

    def values_at(self, t: float, wall: float | None = None) -> Frame:
        wall = time.time() if wall is None else wall
        local = wall + _utcoffset(self.tz, wall)
        eff = self.scenario.effects(t)
        values: dict[str, float | None] = {}
        for tag_id, sig in self.signals.items():
            if tag_id in self.fault_of:
                detector = self.fault_of[tag_id]
                active = detector in eff.faults
                values[tag_id] = 1.0 if active == self.fault_state[tag_id] else 0.0
                continue
            values[tag_id] = eff.values.get(tag_id, sig.value(t, self.rng, local))
        return Frame(values, eff)


def _utcoffset(tz: zoneinfo.ZoneInfo, wall: float) -> float:
    import datetime as dt

    off = dt.datetime.fromtimestamp(wall, tz).utcoffset()
    return off.total_seconds() if off else 0.0


def tick_interval(config: Config) -> float:
    polls = [s.poll_interval for s in config.sources if isinstance(s, ModbusTcpSource | ModbusRtuSource)]
    return max(0.1, min([1.0, *polls]))


async def run_plant(
    config: Config,
    scenario: str,
    stop: asyncio.Event,
    *,
    duration: float | None = None,
    seed: int = 1,
    speed: float = 1.0,
    ready: asyncio.Event | None = None,
) -> None:
    """Play ``scenario`` until ``stop`` (or ``duration`` seconds). ``speed`` > 1 plays the
    scenario's clock faster (a leak ramp that takes 60 s takes 15 s at speed 4); values are
    still served once per tick."""
    from gateway.simulator.modbus_server import ModbusPlantServer
    from gateway.simulator.mqtt_publisher import MqttPublisher

    plant = Plant(config, scenario, seed)
    modbus_sources = [s for s in config.sources if isinstance(s, ModbusTcpSource | ModbusRtuSource)]
    server = ModbusPlantServer(modbus_sources, config.tag_map()) if modbus_sources else None
    publisher = MqttPublisher(config) if any(isinstance(s, MqttSource) for s in config.sources) else None
    if server:
        await server.start()
    if publisher:
        await publisher.start()
    log.info(
        "plant simulator running scenario %r (%s): %d Modbus sources, %d MQTT feeds",
        scenario, plant.scenario.description, len(modbus_sources), len(publisher.feeds) if publisher else 0,
    )
    if ready:
        ready.set()
    interval = tick_interval(config)
    t0 = time.monotonic()
    silenced: set[str] = set()
    try:
        while not stop.is_set():
            elapsed = time.monotonic() - t0
            if duration is not None and elapsed >= duration:
                break
            frame = plant.values_at(elapsed * speed)
            if server:
                for tag, v in frame.values.items():
                    if v is not None and server.has_tag(tag):
                        server.set_value(tag, v)
                for sid in frame.effects.silent_sources - silenced:
                    server.set_silent(sid, True)
                for sid in silenced - frame.effects.silent_sources:
                    server.set_silent(sid, False)
                silenced = set(frame.effects.silent_sources)
            if publisher:
                await publisher.publish(frame.values, time.time_ns() // 1_000_000, frame.effects.silent_tags)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval - ((time.monotonic() - t0) % interval))
    finally:
        if publisher:
            await publisher.stop()
        if server:
            await server.stop()
