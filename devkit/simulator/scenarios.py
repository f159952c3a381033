"""Scenarios the plant simulator can play on top of the normal signals.

A scenario picks its target tags from the config (so it works for any site, not only the
demo) and, for a time ``t`` in seconds since the start, overrides values, sets detector
fault points and silences detectors. Leak scenarios repeat every ``cycle`` seconds so a
long-running demo keeps showing alarms: ramp up through H and HH, hold, decay.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from devkit.simulator import SourceTraits
from gateway.core.config import SiteConfig, Tag


@dataclass
class Effects:
    values: dict[str, float] = field(default_factory=dict)  # tag -> overriding value
    faults: set[str] = field(default_factory=set)  # detector tags whose fault point is set
    silent_tags: set[str] = field(default_factory=set)  # tags left out (by devices that can)
    silent_sources: set[str] = field(default_factory=set)  # sources not answering / publishing


class Scenario:
    name = "normal"
    description = "normal operation: every value inside its normal band"

    def __init__(self, config: SiteConfig, traits: SourceTraits | None = None) -> None:
        self.config = config
        self.traits = traits or SourceTraits()
        self.tags = config.tag_map()

    def effects(self, t: float) -> Effects:
        return Effects()


def ramp(t: float, start: float, rise: float, hold: float, fall: float, cycle: float) -> float:
    """0..1..0 profile: flat 0 until ``start``, linear rise, hold at 1, linear fall; repeats."""
    x = t % cycle
    if x < start:
        return 0.0
    x -= start
    if x < rise:
        return x / rise
    x -= rise
    if x < hold:
        return 1.0
    x -= hold
    if x < fall:
        return 1.0 - x / fall
    return 0.0


class LeakScenario(Scenario):
    """A gas detector ramps to ``peak`` x its HH limit; neighbours in the same hazard source see less."""

    kind = "toxic_gas"
    gases: tuple[str, ...] = ()
    peak = 1.6
    start, rise, hold, fall, cycle = 10.0, 60.0, 90.0, 60.0, 300.0

    def __init__(self, config: SiteConfig, traits: SourceTraits | None = None) -> None:
        super().__init__(config, traits)
        cands = [
            t for t in config.tags
            if t.kind == self.kind and (not self.gases or (t.gas or "").upper() in self.gases)
        ]
        self.primary: Tag | None = cands[0] if cands else None
        self.neighbours = [t for t in cands[1:] if self.primary and t.hazard_source == self.primary.hazard_source]

    def _peak_value(self, tag: Tag) -> float:
        a = tag.alarms
        top = a.hh.limit if a.hh else a.h.limit if a.h else (tag.range[1] if tag.range else 100.0)
        v = top * self.peak
        return min(v, tag.range[1]) if tag.range else v

    def effects(self, t: float) -> Effects:
        e = Effects()
        if self.primary is None:
            return e
        k = ramp(t, self.start, self.rise, self.hold, self.fall, self.cycle)
        if k > 0:
            e.values[self.primary.id] = k * self._peak_value(self.primary)
            for i, n in enumerate(self.neighbours):
                e.values[n.id] = k * self._peak_value(n) * (0.45 if i == 0 else 0.2)
        return e


class ChlorineLeak(LeakScenario):
    name = "chlorine-leak"
    description = "a chlorine (Cl2) detector ramps through H and HH, a neighbour sees a weaker plume"
    kind = "toxic_gas"
    gases = ("CL2",)


class LpgLeak(LeakScenario):
    name = "lpg-leak"
    description = "a combustible gas detector (%LEL) ramps through level 1 and level 2"
    kind = "combustible_gas"
    peak = 1.3


class PressureExcursion(LeakScenario):
    name = "pressure-excursion"
    description = "a vessel pressure rises past H and HH, then relieves"
    kind = "pressure"
    peak = 1.05
    start, rise, hold, fall, cycle = 10.0, 45.0, 60.0, 45.0, 240.0

    def effects(self, t: float) -> Effects:
        e = Effects()
        p = self.primary
        if p is None:
            return e
        k = ramp(t, self.start, self.rise, self.hold, self.fall, self.cycle)
        if k > 0:
            from devkit.simulator.signals import normal_band

            lo, hi = normal_band(p)
            base = (lo + hi) / 2
            e.values[p.id] = base + k * (self._peak_value(p) - base)
        return e


class SensorFault(Scenario):
    name = "sensor-fault"
    description = "a detector reports a fault on its status point; another detector goes silent"
    start = 10.0

    def __init__(self, config: SiteConfig, traits: SourceTraits | None = None) -> None:
        super().__init__(config, traits)
        # the first detector with a fault status point; a gas detector a device can leave
        # out alone, else (none can) the last simulated source goes silent as a whole
        self.fault_tag: str | None = next((fp.detector for fp in self.traits.fault_points.values()), None)
        self.silent_tag: str | None = None
        self.silent_source: str | None = None
        gas = [t.id for t in config.tags if t.kind in ("toxic_gas", "combustible_gas", "oxygen")]
        silent = [t for t in gas if t in self.traits.silenceable_tags and t != self.fault_tag]
        if silent:
            self.silent_tag = silent[0]
        elif self.traits.sources:
            self.silent_source = self.traits.sources[-1]

    def effects(self, t: float) -> Effects:
        e = Effects()
        if t < self.start:
            return e
        if self.fault_tag:
            e.faults.add(self.fault_tag)
        if self.silent_tag:
            e.silent_tags.add(self.silent_tag)
        if self.silent_source:
            e.silent_sources.add(self.silent_source)
        return e


SCENARIOS: dict[str, type[Scenario]] = {
    c.name: c for c in (Scenario, ChlorineLeak, LpgLeak, PressureExcursion, SensorFault)
}
