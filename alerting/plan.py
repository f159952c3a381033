"""Per-tag evaluation structures, built once from the config when the engine is made.

Nothing here runs per reading: :func:`build_plans` turns the pydantic config into plain
slotted objects (``TagPlan`` holding ``AlarmPoint`` s and their conditions) so the hot path
touches no pydantic model, dict of options or string formatting.

Defaults resolved here (documented in alerting/README.md):

* limit deadband when not configured: % of the tag's range span by kind (flow 5, level 5,
  pressure 2, temperature 1), 0 for other kinds or without a range;
* ROC direction when not configured: ``rise`` for gas tags, ``both`` otherwise;
* ``stale_after``: the tag's own, else 3 x its Modbus source's poll interval; MQTT tags
  without ``stale_after`` have no stale check;
* gas detectors (combustible_gas, toxic_gas, oxygen) get BAD (bad, comm) and STALE alarms
  even when the tag does not list them, unless the tag sets ``enabled: false`` on them: a
  silent or failed gas detector must never look like a quiet one;
* gas alarms are not suppressible (shelving, suppression by design) unless the tag sets
  ``suppressible: true``; votes are suppressible only if all their members are.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Final

from alerting.alarms import AlarmPoint
from alerting.comm import build_comm
from alerting.conditions import (
    BadQuality,
    Discrete,
    Frozen,
    HighLimit,
    KofN,
    LowLimit,
    RateOfChange,
    Stale,
)
from gateway.core.config import GAS_KINDS, BadAlarm, SiteConfig, StaleAlarm, Suppression, Tag
from gateway.core.intervals import stale_limits

DEADBAND_PCT: Final = {"flow": 5.0, "level": 5.0, "pressure": 2.0, "temperature": 1.0}
USABLE: Final = frozenset({"good", "uncertain"})  # qualities whose value is evaluated
TRIPS_VOTE: Final = frozenset({"bad", "comm", "stale"})  # a detector in these counts as tripped
LIMITS: Final = ("hh", "h", "l", "ll")


class TagPlan:
    """Everything the engine does with one tag's readings."""

    __slots__ = (
        "bad",
        "extra",
        "hs",
        "is_bad",
        "known",
        "last_seen",
        "last_value",
        "lost",
        "quality",
        "stale",
        "stale_after",
        "stale_flag",
        "suppresses",
        "tag",
        "test",
        "unit",
        "usable",
        "value_alarms",
        "vote_links",
    )

    def __init__(self, tag: str, hs: str | None) -> None:
        self.tag = tag
        self.hs = hs
        self.value_alarms: list[AlarmPoint] = []  # limit, roc, frozen, discrete: cond.feed(v, now, ts)
        self.bad: AlarmPoint | None = None
        self.stale: AlarmPoint | None = None
        self.stale_after: float | None = None
        self.vote_links: list[VoteLink] = []
        self.suppresses: list[AlarmPoint] = []  # alarms suppressed by design by this (discrete) tag
        self.extra = False  # has vote links or suppresses: post-reading work
        self.unit: AlarmPoint | None = None  # the COMM alarm of the source unit watching this tag
        # live
        self.last_seen = 0.0  # monotonic
        self.last_value: float | None = None
        self.quality: str | None = None
        self.usable = False
        self.stale_flag = False  # no reading within stale_after (engine scan)
        self.is_bad = False  # quality bad/comm/stale or stale_flag
        self.lost = False  # quality comm/stale or stale_flag: nothing arrives (counted in its unit)
        self.known = False  # heard from (or gone stale) since start (counted in its unit)
        self.test = False  # the tag is in test mode (set by the engine's set_tests, never per reading)

    @property
    def alarms(self) -> list[AlarmPoint]:
        out = list(self.value_alarms)
        out += [a for a in (self.bad, self.stale) if a is not None]
        return out


@dataclass(slots=True)
class VoteLink:
    vote: AlarmPoint
    index: int
    member: AlarmPoint | None  # the member tag's voted limit alarm (its condition is read)


@dataclass
class Plans:
    tags: dict[str, TagPlan] = field(default_factory=dict)
    alarms: dict[str, AlarmPoint] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    comm: list[AlarmPoint] = field(default_factory=list)  # COMM alarms (alerting/comm.py)


def default_deadband(tag: Tag) -> float:
    pct = DEADBAND_PCT.get(tag.kind)
    if pct is None or tag.range is None:
        return 0.0
    return (tag.range[1] - tag.range[0]) * pct / 100.0


def is_suppressible(tag: Tag) -> bool:
    return tag.suppressible if tag.suppressible is not None else tag.kind not in GAS_KINDS


def stale_after_of(config: SiteConfig) -> dict[str, float | None]:
    """tag id -> stale_after seconds (None: no stale check), the same limits as the
    gateway's stale watcher."""
    limits = stale_limits(config)
    return {t.id: limits.get(t.id) for t in config.tags}


def build_plans(config: SiteConfig) -> Plans:
    plans = Plans()
    tags = config.tag_map()
    stale_after = stale_after_of(config)
    cycles = config.alarming.chatter_cycles

    def add(a: AlarmPoint) -> AlarmPoint:
        plans.alarms[a.key] = a
        return a

    def plan_of(t: Tag) -> TagPlan:
        p = plans.tags.get(t.id)
        if p is None:
            p = plans.tags[t.id] = TagPlan(t.id, t.hazard_source)
            p.stale_after = stale_after.get(t.id)
        return p

    for t in config.tags:
        al = t.alarms
        gas = t.kind in GAS_KINDS
        supp = is_suppressible(t)
        common: dict[str, Any] = {"hs": t.hazard_source, "suppressible": supp, "chatter_cycles": cycles}
        points: list[AlarmPoint] = []

        for name in LIMITS:
            spec = getattr(al, name)
            if spec is None:
                continue
            deadband = spec.deadband if spec.deadband is not None else default_deadband(t)
            cls = HighLimit if name in ("h", "hh") else LowLimit
            cond = cls(spec.limit, deadband, spec.on_delay, spec.off_delay)
            a = AlarmPoint(
                t.id,
                name,
                cond,
                priority=spec.priority,
                limit=spec.limit,
                latch=spec.latch,
                re_alarm=spec.re_alarm,
                enabled=spec.enabled,
                **common,
            )
            _suppression(a, spec.suppress_by, t, supp, plans)
            points.append(a)

        if al.roc is not None:
            r = al.roc
            direction = r.direction or ("rise" if gas else "both")
            roc = RateOfChange(r.limit, r.per, r.window, direction)
            a = AlarmPoint(
                t.id,
                "roc",
                roc,
                priority=r.priority,
                limit=r.limit,
                latch=r.latch,
                re_alarm=r.re_alarm,
                enabled=r.enabled,
                value_kind="rate",
                **common,
            )
            _suppression(a, r.suppress_by, t, supp, plans)
            points.append(a)

        if al.frozen is not None:
            f = al.frozen
            a = AlarmPoint(
                t.id,
                "frozen",
                Frozen(f.after, f.tolerance),
                priority=f.priority,
                limit=f.after,
                enabled=f.enabled,
                **common,
            )
            points.append(a)

        if al.discrete is not None:
            d = al.discrete
            a = AlarmPoint(
                t.id,
                "discrete",
                Discrete(d.state, d.on_delay),
                priority=d.priority,
                limit=1.0 if d.state else 0.0,
                latch=d.latch,
                re_alarm=d.re_alarm,
                enabled=d.enabled,
                message=d.message,
                **common,
            )
            _suppression(a, d.suppress_by, t, supp, plans)
            points.append(a)

        bad_spec = al.bad if al.bad is not None else (BadAlarm() if gas else None)
        bad_point = None
        if bad_spec is not None and bad_spec.enabled:
            bad_point = AlarmPoint(
                t.id,
                "bad",
                BadQuality(frozenset(bad_spec.qualities), bad_spec.on_delay),
                priority=bad_spec.priority,
                limit=None,
                value_kind="none",
                **common,
            )

        stale_spec = al.stale if al.stale is not None else (StaleAlarm() if gas else None)
        stale_point = None
        if stale_spec is not None and stale_spec.enabled:
            after = stale_after.get(t.id)
            if after is None:
                plans.warnings.append(
                    f"tag {t.id}: stale alarm not evaluated: no stale_after and no polled source "
                    "(set stale_after on MQTT tags)"
                )
            else:
                stale_point = AlarmPoint(
                    t.id, "stale", Stale(after), priority=stale_spec.priority, limit=after, value_kind="none", **common
                )

        if points or bad_point or stale_point:
            p = plan_of(t)
            for a in points:
                a.plan = p
                p.value_alarms.append(add(a))
            if bad_point:
                bad_point.plan = p
                p.bad = add(bad_point)
            if stale_point:
                stale_point.plan = p
                p.stale = add(stale_point)

    for v in config.votes:
        members = [tags.get(tid) for tid in v.tags]
        hs = v.hazard_source
        if hs is None:
            codes = {m.hazard_source for m in members if m is not None}
            hs = codes.pop() if len(codes) == 1 else None
        supp = all(m is not None and is_suppressible(m) for m in members)
        vote = AlarmPoint(
            v.id,
            "vote",
            KofN(v.k, len(v.tags)),
            priority=v.priority,
            limit=float(v.k),
            latch=v.latch,
            hs=hs,
            suppressible=supp,
            value_kind="count",
            chatter_cycles=cycles,
            message=v.name or None,
        )
        add(vote)
        for i, (tid, m) in enumerate(zip(v.tags, members, strict=True)):
            if m is None:
                raise ValueError(f"vote {v.id}: unknown tag {tid!r}")
            member = plans.alarms.get(f"{tid}/{v.condition}")
            if member is None:
                raise ValueError(f"vote {v.id}: tag {tid!r} has no {v.condition!r} alarm to vote on")
            p = plan_of(m)
            p.vote_links.append(VoteLink(vote, i, member))
            p.extra = True

    _link_suppressors(plans, tags, plan_of)
    source_of = {t: u.source for u in config.comm_units() for t in u.tags}
    for a in plans.alarms.values():
        if a.plan is not None:
            a.source = source_of.get(a.tag)
    plans.comm = build_comm(config, plans.alarms, plan_of, plans.warnings)
    return plans


def _suppression(a: AlarmPoint, spec: Suppression | None, t: Tag, suppressible: bool, plans: Plans) -> None:
    if spec is None:
        return
    if not suppressible:
        plans.warnings.append(
            f"tag {t.id}: suppress_by on {a.condition} ignored: gas alarms are not suppressible "
            "unless the tag sets suppressible: true"
        )
        return
    a.suppress_tag = spec.tag
    a.suppress_state = spec.state


def _link_suppressors(plans: Plans, tags: dict[str, Tag], plan_of: Callable[[Tag], TagPlan]) -> None:
    """Attach each alarm suppressed by design to its suppressing tag's plan."""
    for a in list(plans.alarms.values()):
        if a.suppress_tag is None:
            continue
        st = tags.get(a.suppress_tag)
        if st is None:
            plans.warnings.append(f"alarm {a.key}: suppressing tag {a.suppress_tag!r} is not in tags; ignored")
            a.suppress_tag = None
            continue
        p = plan_of(st)
        p.suppresses.append(a)
        p.extra = True
