"""Alarm system performance (ISA-18.2 / IEC 62682, EEMUA 191) computed from the alarm journal.

Pure functions over journal rows (no I/O): :func:`compute` takes the annunciations
(``raised`` and ``realarmed`` events) made in the period and the occurrences that overlap it
(``Journal.kpi_rows`` reads both in one go), and returns :class:`AlarmKpis`. The API
(``GET /api/kpi``), the monthly report (``hazardgw report alarms``) and the KPI gauges shown
on Grafana all use it, so they cannot disagree. Definitions (docs/alarms.md, "Alarm KPIs"):

* **annunciated alarms per 10 minutes**: annunciations in the period / number of 10-minute
  periods (fixed periods from the start; ``alarming.flood_window`` sets the length);
* **% of periods in flood**: periods with more than ``alarming.flood_count`` (10) annunciations;
* **peak 10-minute rate**: the most annunciations in one period, and when;
* **top 10**: the ten alarms annunciated most often and their share of all annunciations;
* **chattering**: alarms raised ``chatter_cycles`` (3) times within ``chatter_window`` (1 min);
* **fleeting**: occurrences whose condition returned within ``fleeting`` (10 s) of the raise
  (source timestamps): the process went back by itself before anyone could act;
* **standing**: occurrences active for more than ``standing`` (24 h) at some moment of the
  period (still active at its end, or active that long before clearing in it);
* **stale acknowledgements**: occurrences raised in the period and left unacknowledged for
  more than ``stale_ack`` (30 min): acknowledged later, or never;
* **time to acknowledge**: first acknowledgement - raise (gateway clock), p50 and p90, all
  priorities and priority 1;
* **disposition completion rate (处置闭环率)**: occurrences raised in the period that have a
  disposition (cause, action, handler, result) / all occurrences raised in the period.

Benchmarks (:data:`BENCHMARKS`): EEMUA 191 ("very likely to be acceptable" ≤ 1 per 10 min,
"maximum manageable" ≤ 2; standing alarms < 10, ISA-18.2 < 5), ISA-18.2 (peak ≤ 10 per
10 min, flood < 1 % of periods, top 10 ≤ 5 % of the load, chattering and fleeting 0, priority
distribution about 5 % / 15 % / 80 % for priorities 1 / 2 / 3); disposition 100 % and no stale
acknowledgement are the site's closed-loop rule, not an EEMUA figure.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

NS: Final = 1_000_000_000
ANNUNCIATIONS: Final = ("raised", "realarmed")


@dataclass(frozen=True)
class KpiSettings:
    window: float = 600.0  # s, the rate period (alarming.flood_window)
    flood_count: int = 10  # a period with more annunciations than this is in flood (alarming.flood_count)
    chatter_cycles: int = 3
    chatter_window: float = 60.0
    fleeting: float = 10.0  # s
    standing: float = 24 * 3600.0  # s
    stale_ack: float = 1800.0  # s

    @classmethod
    def from_config(cls, config: Any) -> KpiSettings:
        al = config.alarming
        return cls(
            window=float(al.flood_window),
            flood_count=int(al.flood_count),
            chatter_cycles=int(al.chatter_cycles),
            chatter_window=float(al.chatter_window),
        )


@dataclass(frozen=True)
class Benchmark:
    kpi: str  # key in AlarmKpis.values()
    target: float | None  # "very likely acceptable" / target
    limit: float | None  # "maximum manageable" (None: target is the limit)
    higher_is_better: bool = False
    source: str = "EEMUA 191"


#: the figures of the report's benchmark table (see the module doc)
BENCHMARKS: Final = (
    Benchmark("per_10min", 1.0, 2.0),
    Benchmark("peak_10min", 10.0, None, source="ISA-18.2"),
    Benchmark("flood_pct", 1.0, None, source="ISA-18.2"),
    Benchmark("top10_pct", 5.0, None, source="ISA-18.2"),
    Benchmark("chattering", 0.0, None, source="ISA-18.2"),
    Benchmark("fleeting", 0.0, None, source="ISA-18.2"),
    Benchmark("standing", 5.0, 10.0, source="ISA-18.2 / EEMUA 191"),
    Benchmark("p1_pct", 5.0, None, source="ISA-18.2"),
    Benchmark("stale_acks", 0.0, None, source="site"),
    Benchmark("disposition_pct", 100.0, None, higher_is_better=True, source="site"),
)


@dataclass
class AlarmCount:
    alarm: str
    tag: str
    condition: str
    hs: str | None
    priority: int
    count: int
    pct: float = 0.0


@dataclass
class AlarmKpis:
    start: int  # ns
    end: int  # ns
    settings: KpiSettings
    periods: int = 0
    annunciations: int = 0
    by_priority: dict[int, int] = field(default_factory=lambda: {1: 0, 2: 0, 3: 0})
    per_10min: float = 0.0
    peak_10min: int = 0
    peak_at: int | None = None  # ns, start of the busiest period
    flood_periods: int = 0
    flood_pct: float = 0.0
    rate: list[tuple[int, int]] = field(default_factory=list)  # (period start ns, annunciations)
    top10: list[AlarmCount] = field(default_factory=list)
    top10_pct: float = 0.0
    chattering: list[AlarmCount] = field(default_factory=list)  # count = raises in chattering bursts
    fleeting: list[AlarmCount] = field(default_factory=list)  # count = fleeting occurrences
    standing: list[dict[str, Any]] = field(default_factory=list)
    standing_at_end: int = 0
    stale_acks: list[dict[str, Any]] = field(default_factory=list)
    occurrences: int = 0  # raised in the period
    acked: int = 0
    ack_p50: float | None = None  # s
    ack_p90: float | None = None
    ack_p1_p50: float | None = None
    ack_p1_p90: float | None = None
    disposed: int = 0
    disposition_pct: float | None = None
    p1_occurrences: int = 0
    p1_disposed: int = 0
    p1: list[dict[str, Any]] = field(default_factory=list)  # every priority-1 occurrence, oldest first

    def values(self) -> dict[str, float | None]:
        """The headline figures, by the keys of :data:`BENCHMARKS` (and a few more)."""
        total = self.annunciations
        return {
            "annunciations": float(total),
            "per_10min": self.per_10min,
            "per_hour": self.per_10min * 3600.0 / self.settings.window if self.settings.window else None,
            "peak_10min": float(self.peak_10min),
            "flood_pct": self.flood_pct,
            "top10_pct": self.top10_pct,
            "chattering": float(len(self.chattering)),
            "fleeting": float(len(self.fleeting)),
            "standing": float(len(self.standing)),
            "p1_pct": 100.0 * self.by_priority[1] / total if total else 0.0,
            "p2_pct": 100.0 * self.by_priority[2] / total if total else 0.0,
            "p3_pct": 100.0 * self.by_priority[3] / total if total else 0.0,
            "stale_acks": float(len(self.stale_acks)),
            "ack_p50_s": self.ack_p50,
            "ack_p90_s": self.ack_p90,
            "disposition_pct": self.disposition_pct,
        }

    def judged(self) -> list[tuple[Benchmark, float | None, str]]:
        """(benchmark, value, status) with status ok | warn | bad | none (no data)."""
        vals = self.values()
        out = []
        for b in BENCHMARKS:
            v = vals.get(b.kpi)
            out.append((b, v, judge(b, v)))
        return out

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["by_priority"] = {str(k): v for k, v in self.by_priority.items()}
        d["values"] = self.values()
        d["benchmarks"] = [
            {"kpi": b.kpi, "value": v, "target": b.target, "limit": b.limit, "source": b.source,
             "higher_is_better": b.higher_is_better, "status": st}
            for b, v, st in self.judged()
        ]
        d["rate"] = [list(x) for x in self.rate]
        return d


def judge(b: Benchmark, v: float | None) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "none"
    if b.higher_is_better:
        if b.target is not None and v >= b.target:
            return "ok"
        return "bad" if b.limit is None or v < b.limit else "warn"
    if b.target is not None and v <= b.target:
        return "ok"
    if b.limit is not None and v <= b.limit:
        return "warn"
    return "bad"


def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (``q`` in 0..100) of ``values``, None when empty."""
    if not values:
        return None
    xs = sorted(values)
    if len(xs) == 1:
        return float(xs[0])
    k = (len(xs) - 1) * q / 100.0
    lo = math.floor(k)
    hi = min(lo + 1, len(xs) - 1)
    return float(xs[lo] + (xs[hi] - xs[lo]) * (k - lo))


def compute(
    annunciations: Iterable[Mapping[str, Any]],
    occurrences: Iterable[Mapping[str, Any]],
    start: int,
    end: int,
    settings: KpiSettings | None = None,
    *,
    now: int | None = None,
) -> AlarmKpis:
    """KPIs of the period [start, end) (ns, gateway wall clock).

    ``annunciations``: journal events (``wall_ns``, ``alarm``, ``tag``, ``condition``, ``hs``,
    ``priority``, ``event``) of type raised/realarmed made in the period; others are ignored.
    ``occurrences``: journal occurrence rows overlapping the period (raised before ``end``,
    not closed before ``start``). ``now`` caps open intervals (default ``end``).
    """
    st = settings or KpiSettings()
    k = AlarmKpis(start=start, end=end, settings=st)
    if end <= start:
        return k
    win = int(st.window * NS)
    k.periods = max(1, -(-(end - start) // win))
    per = [0] * k.periods
    counts: Counter[str] = Counter()
    meta: dict[str, tuple[str, str, str | None, int]] = {}
    raises: dict[str, list[int]] = defaultdict(list)
    for ev in annunciations:
        w = int(ev["wall_ns"])
        if ev.get("event") not in ANNUNCIATIONS or not start <= w < end:
            continue
        pr = int(ev["priority"])
        k.annunciations += 1
        k.by_priority[pr] = k.by_priority.get(pr, 0) + 1
        per[(w - start) // win] += 1
        a = str(ev["alarm"])
        counts[a] += 1
        meta[a] = (str(ev["tag"]), str(ev["condition"]), ev.get("hs"), pr)
        if ev.get("event") == "raised":
            raises[a].append(w)
    k.per_10min = k.annunciations / k.periods
    k.rate = [(start + i * win, n) for i, n in enumerate(per)]
    if per:
        peak = max(per)
        k.peak_10min = peak
        k.peak_at = start + per.index(peak) * win if peak else None
    k.flood_periods = sum(1 for n in per if n > st.flood_count)
    k.flood_pct = 100.0 * k.flood_periods / k.periods

    def count_of(a: str, n: int) -> AlarmCount:
        tag, cond, hs, pr = meta[a]
        return AlarmCount(a, tag, cond, hs, pr, n, 100.0 * n / k.annunciations if k.annunciations else 0.0)

    k.top10 = [count_of(a, n) for a, n in sorted(counts.items(), key=lambda an: (-an[1], an[0]))[:10]]
    k.top10_pct = sum(c.pct for c in k.top10)

    # chattering: >= cycles raises within the window (raises counted once per burst)
    cw = int(st.chatter_window * NS)
    for a, ws in sorted(raises.items()):
        ws.sort()
        in_burst: set[int] = set()
        for i in range(len(ws) - st.chatter_cycles + 1):
            if ws[i + st.chatter_cycles - 1] - ws[i] <= cw:
                in_burst.update(range(i, i + st.chatter_cycles))
        if in_burst:
            k.chattering.append(count_of(a, len(in_burst)))
    k.chattering.sort(key=lambda c: (-c.count, c.alarm))

    _occurrences(k, occurrences, start, end, now if now is not None else end, st)
    return k


def _occurrences(
    k: AlarmKpis, rows: Iterable[Mapping[str, Any]], start: int, end: int, now: int, st: KpiSettings
) -> None:
    horizon = min(end, now)
    fleeting: Counter[str] = Counter()
    fmeta: dict[str, Mapping[str, Any]] = {}
    ack_all: list[float] = []
    ack_p1: list[float] = []
    standing_ns = int(st.standing * NS)
    stale_ns = int(st.stale_ack * NS)
    for o in rows:
        raised = int(o["raised_wall"])
        if raised >= end:
            continue
        closed = o.get("closed_wall")
        cleared = o.get("cleared_ts")
        pr = int(o["priority"])
        # active interval: from the raise to the last clear (source time), else to the close, else now
        stop = min(int(cleared) if cleared is not None else (int(closed) if closed is not None else horizon),
                   horizon)
        if stop - raised > standing_ns and stop > start:
            k.standing.append({"occurrence": o["id"], "alarm": o["alarm"], "hs": o.get("hs"), "priority": pr,
                               "raised_wall": raised, "active_s": round((stop - raised) / NS, 1)})
            if cleared is None and closed is None:
                k.standing_at_end += 1
        if raised < start:
            continue
        k.occurrences += 1
        acked = o.get("acked_wall")
        if acked is not None:
            k.acked += 1
            t = (int(acked) - raised) / NS
            ack_all.append(t)
            if pr == 1:
                ack_p1.append(t)
        unacked_until = int(acked) if acked is not None else min(int(closed) if closed is not None else horizon,
                                                                   horizon)
        if unacked_until - raised > stale_ns:
            k.stale_acks.append({"occurrence": o["id"], "alarm": o["alarm"], "hs": o.get("hs"), "priority": pr,
                                 "raised_wall": raised, "acked_wall": acked,
                                 "unacked_s": round((unacked_until - raised) / NS, 1)})
        raised_ts = o.get("raised_ts")
        if cleared is not None and raised_ts is not None and 0 <= int(cleared) - int(raised_ts) <= st.fleeting * NS:
            fleeting[str(o["alarm"])] += 1
            fmeta[str(o["alarm"])] = o
        disposed = o.get("disposed_wall") is not None
        k.disposed += disposed
        if pr == 1:
            k.p1_occurrences += 1
            k.p1_disposed += disposed
            k.p1.append({key: o.get(key) for key in (
                "id", "alarm", "tag", "condition", "hs", "priority", "raised_ts", "raised_wall", "value",
                "limit_value", "acked_wall", "acked_by", "cleared_ts", "closed_wall", "realarms",
                "disposed_wall", "disposed_by", "cause", "action", "handler", "result")})
    k.fleeting = [
        AlarmCount(a, str(fmeta[a]["tag"]), str(fmeta[a]["condition"]), fmeta[a].get("hs"),
                   int(fmeta[a]["priority"]), n)
        for a, n in sorted(fleeting.items(), key=lambda an: (-an[1], an[0]))
    ]
    k.ack_p50, k.ack_p90 = percentile(ack_all, 50), percentile(ack_all, 90)
    k.ack_p1_p50, k.ack_p1_p90 = percentile(ack_p1, 50), percentile(ack_p1, 90)
    k.disposition_pct = 100.0 * k.disposed / k.occurrences if k.occurrences else None
    k.p1.sort(key=lambda o: (o["raised_wall"], o["id"]))
    k.standing.sort(key=lambda o: -o["active_s"])
