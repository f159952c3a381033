"""Plausible process signals for the plant simulator.

Each tag gets a baseline inside its normal band (between its low and high alarm limits,
or inside its range) with measurement noise, a slow drift and, for temperatures, a
diurnal swing. Gas detectors sit near zero (oxygen at 20.9 %VOL). Signals are
deterministic for a seed so tests and demos repeat.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from gateway.core.config import Tag

DAY = 86400.0


@dataclass
class Signal:
    base: float
    noise: float
    drift_amp: float = 0.0
    drift_period: float = 1800.0
    diurnal_amp: float = 0.0
    phase: float = 0.0
    floor: float | None = None
    ceil: float | None = None

    def value(self, t: float, rng: random.Random, wall: float = 0.0) -> float:
        v = self.base + rng.gauss(0.0, self.noise) if self.noise else self.base
        if self.drift_amp:
            v += self.drift_amp * math.sin(2 * math.pi * t / self.drift_period + self.phase)
        if self.diurnal_amp:
            # peak in the afternoon (site local time is folded into ``wall`` by the caller)
            v += self.diurnal_amp * math.sin(2 * math.pi * (wall - 9 * 3600) / DAY)
        if self.floor is not None:
            v = max(self.floor, v)
        if self.ceil is not None:
            v = min(self.ceil, v)
        return v


def normal_band(tag: Tag) -> tuple[float, float]:
    lo, hi = tag.range if tag.range else (0.0, 100.0)
    a = tag.alarms
    low = next((x.limit for x in (a.l, a.ll) if x is not None), lo)
    high = next((x.limit for x in (a.h, a.hh) if x is not None), hi)
    if not low < high:
        low, high = lo, hi
    return low, high


def signal_for(tag: Tag, rng: random.Random) -> Signal:
    lo, hi = tag.range if tag.range else (0.0, 100.0)
    span = hi - lo
    phase = rng.uniform(0, 2 * math.pi)
    if tag.kind == "discrete":
        return Signal(base=0.0, noise=0.0)
    if tag.kind == "oxygen":
        return Signal(base=20.9, noise=0.03, drift_amp=0.05, phase=phase, floor=lo, ceil=hi)
    if tag.kind in ("toxic_gas", "combustible_gas"):
        h = tag.alarms.h.limit if tag.alarms.h else lo + 0.25 * span
        base = lo + 0.02 * (h - lo)
        return Signal(base=base, noise=0.01 * (h - lo), phase=phase, floor=lo, ceil=hi)
    low, high = normal_band(tag)
    band = high - low
    mid = (low + high) / 2
    if tag.kind == "temperature":
        return Signal(base=mid, noise=0.004 * span, drift_amp=0.05 * band, diurnal_amp=0.15 * band,
                      phase=phase, floor=lo, ceil=hi)
    if tag.kind == "level":
        return Signal(base=mid, noise=0.002 * span, drift_amp=0.2 * band, drift_period=3600.0,
                      phase=phase, floor=lo, ceil=hi)
    if tag.kind == "pressure":
        return Signal(base=mid, noise=0.003 * span, drift_amp=0.1 * band, phase=phase, floor=lo, ceil=hi)
    return Signal(base=mid, noise=0.01 * span, drift_amp=0.1 * band, phase=phase, floor=lo, ceil=hi)
