"""Loss of monitoring: one COMM alarm per lost source unit, and the alarms it explains.

A source type says what fails as one unit (:meth:`gateway.core.config.SourceConfig.comm_units`:
a Modbus device, an MQTT broker connection, an OPC UA session, a Sparkplug node or device)
and which units share a connection (:class:`~gateway.core.config.CommLink`, a Modbus bus).
From that, once, when the engine is built (nothing here runs per reading):

* every unit with at least one *watched* tag (a tag that can show a loss: any tag of a unit
  whose adapter reports ``comm``, else a tag with a stale limit) gets a COMM alarm
  ``<unit id>/comm`` whose condition is "every watched tag reads ``comm`` or ``stale``"
  (:class:`CommLost`, with ``alarming.comm.on_delay`` / ``off_delay``);
* a link shared by two or more such units gets a COMM alarm ``<link id>/comm`` whose
  condition is "every unit on it is lost";
* the priority of a COMM alarm is the highest priority among the alarms of the tags it
  covers (their limit, ROC, frozen, discrete, BAD and STALE alarms and the votes they are
  members of): a lost gas detector makes it priority 1. A unit whose tags have no alarm at
  all gets 2 when one of them belongs to a hazard source (the priority of the implicit gas
  BAD/STALE alarms), else 3. It counts towards the status of every hazard source it covers,
  with the highest priority among that source's covered alarms;
* the BAD and STALE alarms of the watched tags, the votes over tags of one unit, and the
  COMM alarms of the units on a link, are *gated* (:class:`~alerting.alarms.Gate`): when
  their condition becomes active because of a loss, the engine does not raise them at once
  but holds them up to ``hold`` seconds waiting for their parent (the unit's, or the
  link's, COMM alarm). If the parent's condition becomes active they are suppressed by
  design under it (DSUPR, ``data.parent``); if not, they raise on their own when the hold
  ends. When the parent recovers, a suppressed child whose condition
  has returned goes back to NORM; one still lost gets ``hold`` seconds to report and then
  raises its own alarm.

``hold`` default per unit: the spread of its tags' stale limits plus one expected interval
(``max(stale) - min(stale - interval) + max(interval)``, at least 1 s): the time within
which a real loss of the unit shows on all of its tags; ``alarming.comm.hold`` sets one
value for all. The COMM on-delay is added (children wait for a parent that takes that long
to decide). For a link: the longest hold of its units plus the on-delay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from alerting.alarms import AlarmPoint, Gate
from alerting.conditions import Delayed
from gateway.core.config import GAS_KINDS, CommLink, CommUnit, SiteConfig, Tag
from gateway.core.intervals import poll_intervals, stale_limits

LOSS: Final = frozenset({"comm", "stale"})  # qualities that mean "nothing arrives" (not a device fault)
CONDITION: Final = "comm"
MIN_HOLD: Final = 1.0


class CommLost(Delayed):
    """A unit is lost: every watched tag reads comm or stale (a link: every unit is lost).

    ``count`` is the number of tags the alarm covers (the ``value`` of its events).
    """

    __slots__ = ("count",)

    def __init__(self, on_delay: float, off_delay: float, count: int) -> None:
        super().__init__(on_delay, off_delay)
        self.count = count

    def feed_lost(self, lost: bool, now: float) -> int:
        if lost == self.active:
            if self.due is not None:
                self.due = None
            return 0
        return self._differs(now)


@dataclass(eq=False)
class CommInfo:
    """Static description and live counters of one COMM alarm (a unit's or a link's)."""

    kind: str  # unit | link
    name: str
    source: str | None  # the unit's source id; a link: the sources on it, comma-separated
    tags: int  # tags covered
    detectors: int  # gas detectors among them (combustible, toxic, oxygen)
    hazard_sources: tuple[str, ...]
    units: tuple[str, ...] = ()  # a link: the COMM alarm tags of its units
    hold: float = MIN_HOLD
    children: list[AlarmPoint] = field(default_factory=list)  # gated alarms it explains
    members: list[AlarmPoint] = field(default_factory=list)  # a link: its units' COMM alarms
    link: AlarmPoint | None = None  # a unit: its link's COMM alarm
    watch_n: int = 0  # a unit: watched tags
    lost: int = 0  # a unit: watched tags reading comm/stale now
    known: int = 0  # a unit: watched tags heard from (or stale) since start

    def data(self) -> dict[str, Any]:
        """What events and views carry about the alarm (``data.comm``)."""
        return {
            "kind": self.kind,
            "name": self.name,
            "source": self.source,
            "tags": self.tags,
            "detectors": self.detectors,
            "hazard_sources": list(self.hazard_sources),
            "units": list(self.units),
        }


def _hold(config: SiteConfig, tags: list[str], stale: dict[str, float], poll: dict[str, float]) -> float:
    """How long a watched tag's loss waits for its unit's (see the module doc); the unit's
    on-delay is added: the children wait for a parent that takes that long to decide."""
    return config.alarming.comm.on_delay + _spread(config, tags, stale, poll)


def _spread(config: SiteConfig, tags: list[str], stale: dict[str, float], poll: dict[str, float]) -> float:
    fixed = config.alarming.comm.hold
    if fixed is not None:
        return fixed
    limits: list[float] = []
    intervals: list[float] = []
    for t in tags:
        e = poll.get(t)
        s = stale.get(t)
        if s is None:
            s = 3.0 * e if e is not None else None
        if s is None:
            continue
        e = e if e is not None else s / 3.0
        limits.append(s)
        intervals.append(e)
    if not limits:
        return MIN_HOLD
    spread = max(limits) - min(s - e for s, e in zip(limits, intervals, strict=True))
    return max(MIN_HOLD, spread + max(intervals))


def _priorities(
    tags: list[str],
    tag_map: dict[str, Tag],
    alarm_prio: dict[str, int],
) -> tuple[int, dict[str, int]]:
    """(priority of the COMM alarm, per hazard source) over ``tags``."""
    per_hs: dict[str, int | None] = {}
    best: int | None = None
    for tid in tags:
        t = tag_map[tid]
        p = alarm_prio.get(tid)
        if p is not None:
            best = p if best is None else min(best, p)
        hs = t.hazard_source
        if hs is not None:
            cur = per_hs.get(hs)
            per_hs[hs] = p if cur is None else (cur if p is None else min(cur, p))
    if best is None:
        best = 2 if per_hs else 3
    # a hazard source whose covered tags have no alarm at all takes the alarm's priority
    return best, {hs: (p if p is not None else best) for hs, p in per_hs.items()}


def _hss(per_hs: dict[str, int], order: dict[str, int]) -> tuple[tuple[str, int], ...]:
    return tuple(sorted(per_hs.items(), key=lambda kv: order.get(kv[0], len(order))))


def _primary(hss: tuple[tuple[str, int], ...]) -> str | None:
    """The hazard source a COMM alarm is filed under (event ``hs``): the one with the
    highest covered priority, then the first in config order."""
    if not hss:
        return None
    return min(enumerate(hss), key=lambda ih: (ih[1][1], ih[0]))[1][0]


def build_comm(
    config: SiteConfig,
    alarms: dict[str, AlarmPoint],
    plan_of: Callable[[Tag], Any],
    warnings: list[str],
) -> list[AlarmPoint]:
    """Create the COMM alarms (added to ``alarms``), link them to the tag plans and gate
    their children. Returns the COMM alarms, units first, then links."""
    al = config.alarming.comm
    if not al.enabled or not config.sources:
        return []
    tag_map = config.tag_map()
    stale = stale_limits(config)
    poll = poll_intervals(config)
    order = {h.code: i for i, h in enumerate(config.hazard_sources)}
    cycles = config.alarming.chatter_cycles
    alarm_prio: dict[str, int] = {}
    for a in alarms.values():
        if a.enabled and a.plan is not None:
            alarm_prio[a.tag] = min(alarm_prio.get(a.tag, 3), a.priority)
    for v in config.votes:
        for tid in v.tags:
            alarm_prio[tid] = min(alarm_prio.get(tid, 3), v.priority)

    made: list[AlarmPoint] = []
    by_link: dict[str, tuple[CommLink, list[AlarmPoint]]] = {}
    seen: set[str] = set()
    for u in config.comm_units():
        key = f"{u.id}/{CONDITION}"
        if key in alarms:
            warnings.append(f"comm unit {u.id!r} of source {u.source!r}: id used twice; ignored")
            continue
        utags = [t for t in u.tags if t in tag_map and t not in seen]
        watch = utags if u.reports_comm else [t for t in utags if t in stale]
        if not watch:
            if utags:
                warnings.append(
                    f"source {u.source}: no COMM alarm for {u.label}: none of its tags can show a loss "
                    "(give its tags stale_after)"
                )
            continue
        seen.update(utags)
        a = _unit_alarm(u, utags, watch, tag_map, alarm_prio, order, config, stale, poll, cycles)
        alarms[a.key] = a
        made.append(a)
        info = a.comm
        assert info is not None
        for tid in watch:
            p = plan_of(tag_map[tid])
            p.unit = a
            for child in (p.bad, p.stale):
                if child is not None and child.enabled:
                    child.gate = Gate(a, info.hold, p)
                    info.children.append(child)
        if u.link is not None:
            by_link.setdefault(u.link.id, (u.link, []))[1].append(a)

    # a vote whose members are all watched by one unit: tripped only by lost members, it is
    # explained by that unit's loss (a vote over units of several sources stays fail-safe)
    for v in config.votes:
        vote = alarms.get(f"{v.id}/vote")
        plans = [plan_of(tag_map[t]) for t in v.tags if t in tag_map]
        owners = {id(p.unit): p.unit for p in plans}
        if vote is None or len(owners) != 1 or len(plans) != len(v.tags):
            continue
        unit = next(iter(owners.values()))
        if unit is None or unit.comm is None:
            continue
        members = [(p, alarms.get(f"{p.tag}/{v.condition}")) for p in plans]
        vote.gate = Gate(unit, unit.comm.hold, None, members)
        vote.source = unit.source
        unit.comm.children.append(vote)

    for link_id, (link, units) in by_link.items():
        key = f"{link_id}/{CONDITION}"
        if len(units) < 2:
            continue
        if key in alarms:
            warnings.append(f"comm link {link_id!r}: id clashes with another alarm; no link alarm")
            continue
        la = _link_alarm(link, units, order, config, cycles)
        alarms[la.key] = la
        made.append(la)
        info = la.comm
        assert info is not None
        for ua in units:
            uinfo = ua.comm
            assert uinfo is not None
            uinfo.link = la
            ua.gate = Gate(la, info.hold, None)
            info.children.append(ua)
    return made


def _unit_alarm(
    u: CommUnit,
    utags: list[str],
    watch: list[str],
    tag_map: dict[str, Tag],
    alarm_prio: dict[str, int],
    order: dict[str, int],
    config: SiteConfig,
    stale: dict[str, float],
    poll: dict[str, float],
    cycles: int,
) -> AlarmPoint:
    al = config.alarming.comm
    prio, per_hs = _priorities(utags, tag_map, alarm_prio)
    hss = _hss(per_hs, order)
    ts = [tag_map[t] for t in utags]
    supp = all((t.suppressible if t.suppressible is not None else t.kind not in GAS_KINDS) for t in ts)
    info = CommInfo(
        kind="unit",
        name=u.label,
        source=u.source,
        tags=len(utags),
        detectors=sum(1 for t in ts if t.kind in GAS_KINDS),
        hazard_sources=tuple(h for h, _ in hss),
        hold=_hold(config, watch, stale, poll),
        watch_n=len(watch),
    )
    a = AlarmPoint(
        u.id,
        CONDITION,
        CommLost(al.on_delay, al.off_delay, len(utags)),
        priority=prio,
        limit=None,
        hs=_primary(hss),
        suppressible=supp,
        value_kind="count",
        chatter_cycles=cycles,
    )
    a.comm = info
    a.source = u.source
    a.hss = hss
    return a


def _link_alarm(
    link: CommLink, units: list[AlarmPoint], order: dict[str, int], config: SiteConfig, cycles: int
) -> AlarmPoint:
    al = config.alarming.comm
    per_hs: dict[str, int] = {}
    for ua in units:
        for hs, p in ua.hss:
            per_hs[hs] = min(per_hs.get(hs, 3), p)
    hss = _hss(per_hs, order)
    infos = [ua.comm for ua in units if ua.comm is not None]
    sources = ",".join(dict.fromkeys(i.source for i in infos if i.source))
    info = CommInfo(
        kind="link",
        name=link.name,
        source=sources or None,
        tags=sum(i.tags for i in infos),
        detectors=sum(i.detectors for i in infos),
        hazard_sources=tuple(h for h, _ in hss),
        units=tuple(ua.tag for ua in units),
        hold=max(i.hold for i in infos) + al.on_delay,
        members=list(units),
    )
    a = AlarmPoint(
        link.id,
        CONDITION,
        CommLost(al.on_delay, al.off_delay, info.tags),
        priority=min(ua.priority for ua in units),
        limit=None,
        hs=_primary(hss),
        suppressible=all(ua.suppressible for ua in units),
        value_kind="count",
        chatter_cycles=cycles,
    )
    a.comm = info
    a.source = info.source
    a.hss = hss
    return a


def comm_descriptions(config: SiteConfig) -> dict[str, dict[str, Any]]:
    """COMM alarm tag -> :meth:`CommInfo.data` for every COMM alarm of ``config`` (push texts)."""
    from alerting.plan import build_plans

    return {a.tag: a.comm.data() for a in build_plans(config).comm if a.comm is not None}


def comm_summary(d: dict[str, Any], lang: str) -> str:
    """What a COMM alarm cut off, in words: "36 个探测器，重大危险源 HS-001、HS-002"."""
    n, det = int(d.get("tags") or 0), int(d.get("detectors") or 0)
    hss = list(d.get("hazard_sources") or [])
    units = list(d.get("units") or [])
    if lang == "zh":
        what = f"{det} 个探测器" if det == n else (f"{n} 个位号（其中 {det} 个探测器）" if det else f"{n} 个位号")
        if units:
            what = f"{len(units)} 台设备（{'、'.join(units)}），{what}"
        return what + (f"，重大危险源 {'、'.join(hss)}" if hss else "")
    dword = "detector" if det == 1 else "detectors"
    what = f"{det} {dword}" if det == n else (f"{n} tags ({det} {dword})" if det else f"{n} tags")
    if units:
        what = f"{len(units)} devices ({', '.join(units)}), {what}"
    return what + (f", major hazard sources {', '.join(hss)}" if hss else "")
