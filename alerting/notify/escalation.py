"""Escalation: which step is due for an unacknowledged occurrence, and who its targets are.

Pure logic, no I/O and no clock of its own: the notifier passes ``now`` (monotonic seconds).

* The policy is ``duty.escalation``; priority-1 alarms use ``duty.escalation_p1`` when it is
  given. With no policy at all every alarm goes to ``on_duty`` at once (``DEFAULT_POLICY``).
* Step ``after`` times count from the start of the current *round*: the raise of the
  occurrence or its latest re-alarm (a re-alarm walks the policy again from step 0). A
  round is identified by the wall-clock ns of the event that started it, so push keys stay
  unique even if occurrence numbers were ever reused (an engine running without journal).
* Targets: ``on_duty`` (the roster at send time), ``principal`` / ``technical`` /
  ``operational`` (包保责任人 of the alarm's hazard source) or a person id.
* Channel plans: a step's ``channels`` (default ``[notify]``) are the channel groups that
  fire *together* for each of its people: ``notify`` is the person's ``notify`` list, other
  names are groups of ``people[].channels`` (``sms``, ``voice`` ...). Each group is its own
  push, delivered over that group's URLs in failover order; a person who has none of the
  step's groups gets the push on ``notify`` (:func:`plan`).
* A step that resolves to nobody (no shift running, role not set, person removed) falls
  back so that an alarm never reaches no one: on-duty people, else the hazard source's
  responsible people, else everyone who has a push channel. The fallback is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Final

from gateway.core.config import DEFAULT_CHANNEL, Duty, EscalationStep, HazardSource, Person

ON_DUTY: Final = "on_duty"
ROLES: Final = ("principal", "technical", "operational")
DEFAULT_POLICY: Final = (EscalationStep(after=0.0, notify=[ON_DUTY]),)


def policy_for(duty: Duty, priority: int) -> tuple[EscalationStep, ...]:
    """The steps walked for an alarm of ``priority``."""
    if priority == 1 and duty.escalation_p1:
        return tuple(duty.escalation_p1)
    if duty.escalation:
        return tuple(duty.escalation)
    return DEFAULT_POLICY


@dataclass(slots=True)
class Resolved:
    people: list[str]
    fallback: str | None = None  # why the fallback was used, or None
    missing: list[str] = field(default_factory=list)  # targets that named nobody


class Targets:
    """Turns step targets into person ids."""

    def __init__(
        self,
        people: Sequence[Person],
        hazard_sources: Sequence[HazardSource],
        on_duty: Callable[[int], list[str]],
    ) -> None:
        self.people = {p.id: p for p in people}
        self.hs = {h.code: h for h in hazard_sources}
        self._on_duty = on_duty

    def responsible(self, hs: str | None) -> list[str]:
        h = self.hs.get(hs) if hs is not None else None
        if h is None:
            return []
        out: list[str] = []
        for role in ("operational", "technical", "principal"):
            pid = getattr(h.responsible, role)
            if pid is not None and pid in self.people and pid not in out:
                out.append(pid)
        return out

    def resolve(self, targets: Sequence[str], hs: str | None, wall_ns: int) -> Resolved:
        out: list[str] = []
        missing: list[str] = []

        def add(pids: Sequence[str], target: str) -> None:
            found = [p for p in pids if p in self.people]
            if not found:
                missing.append(target)
            for p in found:
                if p not in out:
                    out.append(p)

        for t in targets:
            if t == ON_DUTY:
                add(self._on_duty(wall_ns), t)
            elif t in ROLES:
                h = self.hs.get(hs) if hs is not None else None
                pid = getattr(h.responsible, t) if h is not None else None
                add([pid] if pid is not None else [], t)
            else:
                add([t], t)
        if out:
            return Resolved(out, None, missing)
        fb = [p for p in self._on_duty(wall_ns) if p in self.people]
        why = f"{', '.join(targets)} named nobody: "
        if fb:
            return Resolved(fb, why + "sent to on-duty", missing)
        fb = self.responsible(hs)
        if fb:
            return Resolved(fb, why + "nobody on duty, sent to the hazard source's responsible people", missing)
        fb = [p.id for p in self.people.values() if p.all_urls()]
        return Resolved(fb, why + "nobody on duty or responsible, sent to everyone with a channel", missing)


@dataclass(slots=True)
class Escalation:
    """The escalation state of one open occurrence."""

    occurrence: int
    alarm: str
    priority: int
    hs: str | None
    steps: tuple[EscalationStep, ...]
    started: float  # monotonic start of the current round
    started_wall: int  # ns, the same instant on the wall clock (persisted)
    round: int = 0  # round id: wall ns of the annunciation (raise or re-alarm) that started this round
    next_step: int = 0
    info: dict[str, object] = field(default_factory=dict)  # AlarmInfo as JSON-ready dict

    def due(self, now: float) -> list[int]:
        """Indices of the steps due at ``now`` that have not fired yet."""
        out = []
        i = self.next_step
        while i < len(self.steps) and self.started + self.steps[i].after <= now:
            out.append(i)
            i += 1
        return out

    def next_due(self) -> float | None:
        """Monotonic time the next step is due, or None when every step has fired."""
        if self.next_step >= len(self.steps):
            return None
        return self.started + self.steps[self.next_step].after

    @property
    def done(self) -> bool:
        return self.next_step >= len(self.steps)


def coalesce(per_step: Sequence[tuple[int, Sequence[str]]]) -> list[tuple[int, str]]:
    """(step, person) pairs for steps that fire together: a person named by several of them
    gets one push, for the latest step."""
    last: dict[str, int] = {}
    for step, people in per_step:
        for p in people:
            last[p] = step
    out: list[tuple[int, str]] = []
    for step, people in per_step:
        for p in people:
            if last[p] == step and (step, p) not in out:
                out.append((step, p))
    return out


def groups_of(person: Person | None, wanted: Sequence[str]) -> tuple[list[str], bool]:
    """(the groups of ``wanted`` that ``person`` has, whether it fell back to ``notify``)."""
    if person is None:
        return [DEFAULT_CHANNEL], False
    have = [g for g in wanted if person.group(g)]
    if have:
        return have, False
    return [DEFAULT_CHANNEL], tuple(wanted) != (DEFAULT_CHANNEL,)


@dataclass(slots=True)
class Plan:
    pushes: list[tuple[int, str, str]]  # (step, person, channel group)
    fallbacks: list[tuple[int, str, tuple[str, ...]]]  # (step, person, groups the person lacks)


def plan(
    per_step: Sequence[tuple[int, Sequence[str]]],
    steps: Sequence[EscalationStep],
    people: Mapping[str, Person],
) -> Plan:
    """(step, person, group) pushes for steps that fire together.

    Every person of a step gets one push per channel group the step names (the groups fire
    together); a person without any of them gets the push on ``notify`` (a fallback). A
    (person, group) named by several due steps gets one push, for the latest step, so a
    restart after a long outage does not call someone twice at once."""
    out: list[tuple[int, str, str]] = []
    fallbacks: list[tuple[int, str, tuple[str, ...]]] = []
    for step, pids in per_step:
        wanted = steps[step].groups
        for pid in pids:
            groups, fell_back = groups_of(people.get(pid), wanted)
            if fell_back:
                fallbacks.append((step, pid, tuple(wanted)))
            out.extend((step, pid, g) for g in groups)
    last: dict[tuple[str, str], int] = {}
    for step, pid, g in out:
        last[(pid, g)] = step
    kept: list[tuple[int, str, str]] = []
    for step, pid, g in out:
        if last[(pid, g)] == step and (step, pid, g) not in kept:
            kept.append((step, pid, g))
    return Plan(kept, fallbacks)
