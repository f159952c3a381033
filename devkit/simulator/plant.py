"""The plant simulator: plays a site config on each source type's simulated devices.

``Plant.values_at(t)`` is pure (values, faults, silences for time ``t``), so tests can check
a scenario without any server; ``run_plant`` ticks it in real time and shows each frame to
the devices the source types' simulator modules build (the hook contract is in
:mod:`devkit.simulator`). This module never names a source type: it groups the config's
enabled sources by their spec in ``adapters.registry`` and uses each spec's
``simulator`` module.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib
import logging
import random
import time
import zoneinfo
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import cast

from adapters.registry import SOURCE_SPECS
from devkit.simulator import FaultPoint, SimulatedDevice, SimulatorModule, SourceTraits
from devkit.simulator.scenarios import SCENARIOS, Effects
from devkit.simulator.signals import Signal, signal_for
from gateway.core.config import SiteConfig, SourceConfig
from gateway.core.sources import SourceSpec

log = logging.getLogger(__name__)

CONTRACT = ("traits", "build")


@dataclass
class Frame:
    values: dict[str, float | None]
    effects: Effects = field(default_factory=Effects)


@dataclass(frozen=True)
class SimGroup:
    """The enabled sources of one spec and the simulator module that serves them."""

    spec: SourceSpec
    module: SimulatorModule
    configs: tuple[SourceConfig, ...]


def load_simulator(spec: SourceSpec) -> tuple[SimulatorModule | None, str]:
    """The spec's simulator module, or None and why there is none. A module that exists
    but does not implement the contract is a bug in it: TypeError."""
    name = spec.simulator
    if not name:
        return None, "its spec names no simulator module"
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        if e.name is not None and (name == e.name or name.startswith(e.name + ".")):
            return None, f"its simulator module {name} is not installed"
        raise
    missing = [f for f in CONTRACT if not callable(getattr(module, f, None))]
    if missing:
        raise TypeError(f"simulator module {name} lacks {', '.join(f + '()' for f in missing)} "
                        "(the contract is in devkit/simulator/__init__.py)")
    return cast(SimulatorModule, module), ""


def simulator_groups(config: SiteConfig, specs: Sequence[SourceSpec] = SOURCE_SPECS) -> list[SimGroup]:
    """The config's enabled sources grouped by spec, for the specs with a simulator. Each
    source type without one is logged (once per call) and left out."""
    enabled = [s for s in config.sources if s.enabled]
    groups: list[SimGroup] = []
    for spec in specs:
        mine = tuple(c for c in enabled if c.type in spec.types)
        if not mine:
            continue
        module, why = load_simulator(spec)
        if module is None:
            log.warning("source type %s cannot be simulated (%s): sources %s are not served",
                        "/".join(spec.types), why, ", ".join(c.id for c in mine))
            continue
        groups.append(SimGroup(spec, module, mine))
    return groups


def merge_traits(groups: Sequence[SimGroup]) -> SourceTraits:
    faults: dict[str, FaultPoint] = {}
    silenceable: set[str] = set()
    for g in groups:
        t = g.module.traits(g.configs)
        faults.update(t.fault_points)
        silenceable.update(t.silenceable_tags)
    return SourceTraits(faults, frozenset(silenceable), tuple(c.id for g in groups for c in g.configs))


class Plant:
    def __init__(
        self,
        config: SiteConfig,
        scenario: str = "normal",
        seed: int = 1,
        *,
        specs: Sequence[SourceSpec] = SOURCE_SPECS,
    ) -> None:
        if scenario not in SCENARIOS:
            raise ValueError(f"unknown scenario {scenario!r}; known: {', '.join(sorted(SCENARIOS))}")
        self.config = config
        self.groups = simulator_groups(config, specs)
        self.traits = merge_traits(self.groups)
        self.scenario = SCENARIOS[scenario](config, self.traits)
        self.rng = random.Random(seed)
        self.signals: dict[str, Signal] = {t.id: signal_for(t, self.rng) for t in config.tags}
        self.tz = zoneinfo.ZoneInfo(config.site.timezone)

    def values_at(self, t: float, wall: float | None = None) -> Frame:
        wall = time.time() if wall is None else wall
        local = wall + _utcoffset(self.tz, wall)
        eff = self.scenario.effects(t)
        values: dict[str, float | None] = {}
        for tag_id, sig in self.signals.items():
            fp = self.traits.fault_points.get(tag_id)
            if fp is not None:
                active = fp.detector in eff.faults
                values[tag_id] = 1.0 if active == fp.state else 0.0
                continue
            values[tag_id] = eff.values.get(tag_id, sig.value(t, self.rng, local))
        return Frame(values, eff)

    def build_devices(self) -> list[SimulatedDevice]:
        return [d for g in self.groups for d in g.module.build(g.configs, self.config)]


def _utcoffset(tz: zoneinfo.ZoneInfo, wall: float) -> float:
    off = dt.datetime.fromtimestamp(wall, tz).utcoffset()
    return off.total_seconds() if off else 0.0


def tick_interval(config: SiteConfig) -> float:
    """Once a second, or as often as the fastest polled source polls (not below 0.1 s)."""
    polls = [e for s in config.sources if s.enabled and (e := s.expected_interval) is not None]
    return max(0.1, min([1.0, *polls]))


async def run_plant(
    config: SiteConfig,
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
    plant = Plant(config, scenario, seed)
    devices = plant.build_devices()
    started: list[SimulatedDevice] = []
    try:
        for d in devices:
            await d.start()
            started.append(d)
        log.info(
            "plant simulator running scenario %r (%s): %s",
            scenario, plant.scenario.description,
            "; ".join(f"{'/'.join(g.spec.types)}: {len(g.configs)} sources" for g in plant.groups) or "no devices",
        )
        if ready:
            ready.set()
        interval = tick_interval(config)
        t0 = time.monotonic()
        while not stop.is_set():
            elapsed = time.monotonic() - t0
            if duration is not None and elapsed >= duration:
                break
            frame = plant.values_at(elapsed * speed)
            ts_ms = time.time_ns() // 1_000_000
            for d in devices:
                await d.show(frame, ts_ms)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), interval - ((time.monotonic() - t0) % interval))
    finally:
        for d in reversed(started):
            await d.stop()
