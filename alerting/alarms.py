"""One alarm point at run time (``AlarmPoint``) and its read-only view (``AlarmView``).

An alarm point is one (tag, condition) pair, e.g. ``GT-101/hh``, or a vote. It owns its
condition object and its ISA-18.2 state; the engine drives both. ``AlarmView`` is the
immutable snapshot handed to the API, console and notification code.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from alerting import states as S

if TYPE_CHECKING:
    from alerting.comm import CommInfo
    from alerting.plan import TagPlan


class Condition(Protocol):
    active: bool
    due: float | None

    def expire(self, now: float) -> bool: ...

    def restore(self, active: bool) -> None: ...


@dataclass(frozen=True, slots=True)
class AlarmView:
    id: str  # "<tag>/<condition>"
    tag: str
    condition: str
    priority: int
    state: str
    active: bool
    occurrence: int | None
    hs: str | None
    value: float | None
    limit: float | None
    raised_ts: int | None  # ns, source timestamp of the raise of the open occurrence
    acked_by: str | None
    acked_wall: int | None
    shelved: bool
    shelved_until: int | None  # wall ns
    one_shot: bool
    suppressed: bool
    out_of_service: bool
    latch: bool
    chattering: bool
    suppressible: bool
    message: str | None
    source: str | None = None  # the source (id) the tag's readings come through
    parent: str | None = None  # DSUPR under this COMM alarm (its loss explains this alarm)
    hazard_sources: tuple[str, ...] = ()  # every hazard source the alarm concerns (COMM: several)
    comm: dict[str, Any] | None = None  # a COMM alarm: what it covers (alerting.comm.CommInfo.data)
    test: bool = False  # the open occurrence was raised while its tag was in test mode


class Gate:
    """A gated alarm's parent: the COMM alarm whose loss explains it (alerting/comm.py).

    ``plan`` is the child's tag plan (its ``lost`` flag tells a loss from a device fault);
    ``members`` (a vote) the member plans with their voted alarms (the vote is explained by
    the loss while fewer than k members are tripped by anything else); neither for a unit's
    COMM alarm under its link (always a loss).
    """

    __slots__ = ("hold", "members", "parent", "plan")

    def __init__(
        self,
        parent: AlarmPoint,
        hold: float,
        plan: TagPlan | None,
        members: list[tuple[TagPlan, AlarmPoint | None]] | None = None,
    ) -> None:
        self.parent = parent
        self.hold = hold
        self.plan = plan
        self.members = members

    def explains(self, a: AlarmPoint) -> bool:
        """Is ``a``'s active condition a consequence of the loss (not of the process or a fault)?"""
        if self.plan is not None:
            return self.plan.lost
        if self.members is not None:
            real = sum(1 for p, m in self.members if (m is not None and m.cond.active) or (p.is_bad and not p.lost))
            return bool(real < a.cond.k)
        return True


class AlarmPoint:
    __slots__ = (
        "_chatter_cycles",
        "_raises",
        "_recent_ts",
        "ack_severity",
        "acked_by",
        "acked_wall",
        "chattering",
        "comm",
        "cond",
        "condition",
        "counted",
        "enabled",
        "gate",
        "hold_until",
        "hs",
        "hss",
        "key",
        "latch",
        "limit",
        "message",
        "occurrence",
        "one_shot",
        "oos",
        "plan",
        "priority",
        "raised_ts",
        "raised_wall",
        "re_alarm",
        "realarm_due",
        "shelve_until",
        "shelve_until_wall",
        "shelved",
        "source",
        "state",
        "supp_by",
        "suppress_state",
        "suppress_tag",
        "suppressed",
        "suppressible",
        "tag",
        "test",
        "value_kind",
    )

    def __init__(
        self,
        tag: str,
        condition: str,
        cond: Any,
        *,
        priority: int,
        limit: float | None,
        hs: str | None,
        latch: bool = False,
        re_alarm: float | None = None,
        suppressible: bool = True,
        enabled: bool = True,
        message: str | None = None,
        value_kind: str = "reading",
        chatter_cycles: int = 3,
    ) -> None:
        self.key = f"{tag}/{condition}"
        self.tag = tag
        self.condition = condition
        self.cond = cond
        self.priority = priority
        self.limit = limit
        self.hs = hs
        self.latch = latch
        self.re_alarm = re_alarm
        self.suppressible = suppressible
        self.enabled = enabled
        self.message = message
        self.value_kind = value_kind  # reading | rate | count | none: what ``value`` of an event is
        self.plan: TagPlan | None = None
        self.source: str | None = None  # source id of the tag's readings
        self.hss: tuple[tuple[str, int], ...] = ((hs, priority),) if hs else ()  # status: (hazard source, priority)
        self.comm: CommInfo | None = None  # a COMM alarm's description and counters
        self.gate: Gate | None = None  # a gated child (BAD/STALE of a watched tag, a unit under its link)
        self.supp_by: str | None = None  # DSUPR under this COMM alarm (key)
        self.hold_until: float | None = None  # monotonic: held waiting for its parent, or for its tags to report
        self.suppress_tag: str | None = None
        self.suppress_state = True
        # state
        self.state = S.NORM
        self.occurrence: int | None = None
        self.raised_ts: int | None = None
        self.raised_wall: int | None = None
        self.acked_by: str | None = None
        self.acked_wall: int | None = None
        self.ack_severity = 0
        self.shelved = False
        self.one_shot = False
        self.shelve_until: float | None = None  # monotonic
        self.shelve_until_wall: int | None = None
        self.suppressed = False
        self.oos = False
        self.realarm_due: float | None = None  # monotonic
        self.chattering = False
        # made on first use (issue 23: two empty deques were ~1.2 KB of every alarm, 12 MB for 10,000)
        self._chatter_cycles = chatter_cycles
        self._raises: deque[float] | None = None
        self._recent_ts: deque[int] | None = None
        self.counted = False  # counted in its hazard source's status
        self.test = False  # the open occurrence is a test occurrence (valid while ``occurrence`` is set)

    @property
    def raises(self) -> deque[float]:
        """Monotonic times of the latest raises (chatter detection)."""
        r = self._raises
        if r is None:
            r = self._raises = deque(maxlen=self._chatter_cycles)
        return r

    @property
    def recent_ts(self) -> deque[int]:
        """Timestamps of the last events (InfluxDB point keys)."""
        r = self._recent_ts
        if r is None:
            r = self._recent_ts = deque(maxlen=4)
        return r

    def __repr__(self) -> str:
        return f"<AlarmPoint {self.key} {self.state} active={self.cond.active}>"

    @property
    def active(self) -> bool:
        return bool(self.cond.active)

    @property
    def severity(self) -> int:
        return int(getattr(self.cond, "count", 0))

    def value(self) -> float | None:
        kind = self.value_kind
        if kind == "rate":
            rate: float | None = self.cond.rate
            return rate
        if kind == "count":
            return float(self.cond.count)
        if kind == "reading" and self.plan is not None:
            return self.plan.last_value
        return None

    def needs_timer(self) -> bool:
        return (
            self.cond.due is not None
            or self.realarm_due is not None
            or (self.shelved and self.shelve_until is not None)
            or self.chattering
        )

    def view(self) -> AlarmView:
        return AlarmView(
            id=self.key,
            tag=self.tag,
            condition=self.condition,
            priority=self.priority,
            state=self.state,
            active=self.active,
            occurrence=self.occurrence,
            hs=self.hs,
            value=self.value(),
            limit=self.limit,
            raised_ts=self.raised_ts,
            acked_by=self.acked_by,
            acked_wall=self.acked_wall,
            shelved=self.shelved,
            shelved_until=self.shelve_until_wall,
            one_shot=self.one_shot,
            suppressed=self.suppressed,
            out_of_service=self.oos,
            latch=self.latch,
            chattering=self.chattering,
            suppressible=self.suppressible,
            message=self.message,
            source=self.source,
            parent=self.supp_by,
            hazard_sources=tuple(h for h, _ in self.hss),
            comm=self.comm.data() if self.comm is not None else None,
            test=self.test and self.occurrence is not None,
        )

    # -- persistence (journal ``alarm_state``)
    def persist(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "active": self.active,
            "occurrence": self.occurrence,
            "raised_ts": self.raised_ts,
            "raised_wall": self.raised_wall,
            "acked_by": self.acked_by,
            "acked_wall": self.acked_wall,
            "ack_severity": self.ack_severity,
            "shelved": self.shelved,
            "one_shot": self.one_shot,
            "shelve_until_wall": self.shelve_until_wall,
            "suppressed": self.suppressed,
            "oos": self.oos,
            "recent_ts": list(self._recent_ts or ()),
            "supp_by": self.supp_by,
            "test": self.test and self.occurrence is not None,
        }

    def restore(self, snap: dict[str, Any], now: float, wall_ns: int) -> None:
        """Put back a persisted state without emitting anything (after a restart)."""
        state = snap.get("state", S.NORM)
        if state not in S.STATES:
            raise ValueError(f"unknown state {state!r}")
        self.state = state
        self.cond.restore(bool(snap.get("active", False)))
        self.occurrence = snap.get("occurrence") if state in S.OPEN else None
        self.test = bool(snap.get("test")) and self.occurrence is not None
        self.raised_ts = snap.get("raised_ts")
        self.raised_wall = snap.get("raised_wall")
        self.acked_by = snap.get("acked_by")
        self.acked_wall = snap.get("acked_wall")
        self.ack_severity = int(snap.get("ack_severity") or 0)
        self.shelved = bool(snap.get("shelved"))
        self.one_shot = bool(snap.get("one_shot"))
        self.shelve_until_wall = snap.get("shelve_until_wall")
        self.shelve_until = (
            now + max(0.0, (self.shelve_until_wall - wall_ns) / 1e9)
            if self.shelved and self.shelve_until_wall is not None
            else None
        )
        self.suppressed = bool(snap.get("suppressed"))
        self.oos = bool(snap.get("oos"))
        supp_by = snap.get("supp_by")
        self.supp_by = supp_by if isinstance(supp_by, str) and self.suppressed else None
        restored = snap.get("recent_ts") or ()
        if restored or self._recent_ts is not None:
            self.recent_ts.clear()
            self.recent_ts.extend(int(t) for t in restored)
        self.realarm_due = None
        if state == S.ACKED and self.active and self.re_alarm and self.acked_wall is not None:
            self.realarm_due = now + max(0.0, self.re_alarm - (wall_ns - self.acked_wall) / 1e9)
