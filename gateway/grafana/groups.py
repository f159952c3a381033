"""Which tags share a panel, and how a panel draws their alarm limits.

A panel draws one set of threshold lines for all its series (Grafana's time series panel
keeps one threshold set per axis), so tags share a panel only when the lines are right
for every one of them: same kind, same gas, same unit and the same HH/H/L/LL limits.
Gas detectors are grouped by gas (all Cl2 detectors with the same set points in one
panel); a detector with its own set points gets its own panel.

Thresholds are Grafana "absolute" steps in the tag's engineering unit (the value written
to InfluxDB is already in that unit; Grafana's unit only formats). Regions beyond a limit
take the colour of that alarm's priority (1 red, 2 orange, 3 yellow); the normal band is
transparent, so the panel shows coloured bands and lines only where an alarm would be.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from gateway.core.config import GAS_KINDS, Tag
from gateway.grafana.texts import KIND_TEXT, LIMIT_TEXT

PRIORITY_COLORS = {1: "red", 2: "orange", 3: "yellow"}
NORMAL_COLOR = "transparent"
LIMIT_NAMES = ("ll", "l", "h", "hh")

KIND_TITLES = {
    "combustible_gas": "Combustible gas",
    "toxic_gas": "Toxic gas",
    "oxygen": "Oxygen",
    "pressure": "Pressure",
    "temperature": "Temperature",
    "level": "Level",
    "flow": "Flow",
    "analog": "Analog",
    "discrete": "Valves, interlocks and faults",
}
#: row order on a hazard-source dashboard
KIND_ORDER = (
    "combustible_gas", "toxic_gas", "oxygen", "pressure", "temperature", "level", "flow", "analog", "discrete",
)

# Grafana unit ids for the units sites use; anything else is shown as a suffix.
_UNITS = {
    "%": "percent",
    "ppm": "ppm",
    "ppb": "ppb",
    "mg/m3": "conmgm3",
    "mg/m³": "conmgm3",
    "°C": "celsius",
    "degC": "celsius",
    "°F": "fahrenheit",
    "kPa": "pressurekpa",
    "bar": "pressurebar",
    "mbar": "pressurembar",
    "hPa": "pressurehpa",
    "psi": "pressurepsi",
    "m": "lengthm",
    "mm": "lengthmm",
    "L/min": "flowlpm",
}


def grafana_unit(unit: str) -> str:
    """Grafana unit id for a tag's unit (``suffix:<unit>`` when Grafana has none, e.g. MPa, %LEL)."""
    if not unit:
        return "none"
    return _UNITS.get(unit, f"suffix: {unit}")


@dataclass(frozen=True, slots=True)
class Limit:
    name: str  # ll l h hh
    value: float
    priority: int


def limits(tag: Tag) -> tuple[Limit, ...]:
    """The tag's enabled HH/H/L/LL limits, ascending by value."""
    out = []
    for name in LIMIT_NAMES:
        a = getattr(tag.alarms, name)
        if a is not None and a.enabled:
            out.append(Limit(name, float(a.limit), int(a.priority)))
    return tuple(sorted(out, key=lambda lim: lim.value))


def threshold_steps(lims: Sequence[Limit]) -> list[tuple[float | None, str]]:
    """Absolute threshold steps ``[(None, base colour), (value, colour), ...]`` for ``lims``.

    A step colours values at or above it; low limits colour the region below them, so the
    base colour is the lowest low alarm's and a low limit's step starts the next region.
    """
    ordered = sorted(lims, key=lambda lim: lim.value)
    lows = [lim for lim in ordered if lim.name in ("l", "ll")]
    highs = [lim for lim in ordered if lim.name in ("h", "hh")]
    steps: list[tuple[float | None, str]] = []
    # lows ascending: ll, l. Below the lowest: its colour; from each low up: the next low's or normal.
    base = PRIORITY_COLORS[lows[0].priority] if lows else NORMAL_COLOR
    steps.append((None, base))
    for i, low in enumerate(lows):
        above = PRIORITY_COLORS[lows[i + 1].priority] if i + 1 < len(lows) else NORMAL_COLOR
        steps.append((low.value, above))
    for high in highs:
        steps.append((high.value, PRIORITY_COLORS[high.priority]))
    return steps


def aggregate_for(lims: Sequence[Limit]) -> str:
    """Aggregation that keeps excursions visible when zoomed out: max for high alarms, min for low."""
    names = {lim.name for lim in lims}
    has_high = bool(names & {"h", "hh"})
    has_low = bool(names & {"l", "ll"})
    if has_high and not has_low:
        return "max"
    if has_low and not has_high:
        return "min"
    return "mean"


@dataclass(frozen=True, slots=True)
class TagGroup:
    kind: str
    gas: str | None
    unit: str
    limits: tuple[Limit, ...]
    tags: tuple[Tag, ...]

    @property
    def tag_ids(self) -> tuple[str, ...]:
        return tuple(t.id for t in self.tags)

    @property
    def is_gas(self) -> bool:
        return self.kind in GAS_KINDS

    @property
    def discrete(self) -> bool:
        return self.kind == "discrete"

    @property
    def title(self) -> str:
        return self.title_in("en")

    def title_in(self, lang: str) -> str:
        """Panel title: kind (gas), unit, limits; in Chinese ``Cl2（有毒气体）[ppm] — 高高 2，高 1``."""
        zh = lang == "zh"
        what = (KIND_TEXT["zh"] if zh else KIND_TITLES).get(self.kind, self.kind)
        if self.discrete:
            return what
        if self.gas:
            what = f"{self.gas}（{what}）" if zh else f"{self.gas} ({what.lower()})"
        unit = f" [{self.unit}]" if self.unit else ""
        if zh:
            names = LIMIT_TEXT["zh"]
            lims = "，".join(f"{names.get(lim.name, lim.name)} {lim.value:g}" for lim in reversed(self.limits))
        else:
            lims = ", ".join(f"{lim.name.upper()} {lim.value:g}" for lim in reversed(self.limits))
        return f"{what}{unit}" + (f" — {lims}" if lims else "")

    @property
    def soft_range(self) -> tuple[float | None, float | None]:
        """Axis soft min/max: the tag range's low end, and room above the highest limit."""
        rng = self.tags[0].range
        lo = rng[0] if rng else None
        vals = [lim.value for lim in self.limits]
        hi = max(vals) * 1.2 if vals and max(vals) > 0 else (rng[1] if rng else None)
        if rng and hi is not None:
            hi = min(hi, rng[1])
        return lo, hi


def group_tags(tags: Iterable[Tag]) -> list[TagGroup]:
    """Tags in panel groups, in :data:`KIND_ORDER` then first appearance; discrete tags form one group."""
    buckets: dict[tuple[object, ...], list[Tag]] = {}
    for t in tags:
        if t.kind == "discrete":
            key: tuple[object, ...] = ("discrete",)
        else:
            key = (t.kind, t.gas if t.kind in GAS_KINDS else None, t.unit, limits(t))
        buckets.setdefault(key, []).append(t)
    groups = []
    for key, members in buckets.items():
        first = members[0]
        if key == ("discrete",):
            groups.append(TagGroup("discrete", None, "", (), tuple(members)))
        else:
            gas = first.gas if first.kind in GAS_KINDS else None
            groups.append(TagGroup(first.kind, gas, first.unit, limits(first), tuple(members)))
    order = {k: i for i, k in enumerate(KIND_ORDER)}
    return sorted(groups, key=lambda g: order.get(g.kind, len(order)))  # stable: keeps appearance order
