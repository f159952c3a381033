"""Escalation logic without I/O: policies, targets and fallbacks, due steps on a fake clock."""

from __future__ import annotations

from pathlib import Path

from test_notify_support import local_ns, site_config

from alerting.notify.escalation import DEFAULT_POLICY, Escalation, Targets, coalesce, policy_for
from alerting.notify.roster import Roster
from gateway.core.config import Duty, EscalationStep


def test_priority_one_uses_its_own_policy(tmp_path: Path) -> None:
    duty = site_config(None, tmp_path).duty
    assert [s.after for s in policy_for(duty, 1)] == [0.0, 120.0]
    assert [s.after for s in policy_for(duty, 2)] == [0.0, 300.0, 600.0]
    assert policy_for(duty, 3) == policy_for(duty, 2)
    no_p1 = Duty.model_validate({"escalation": [{"after": "0s", "notify": ["on_duty"]}]})
    assert policy_for(no_p1, 1) == tuple(no_p1.escalation)  # falls back to the general policy
    assert policy_for(Duty(), 2) == DEFAULT_POLICY and DEFAULT_POLICY[0].notify == ["on_duty"]


def test_targets_resolve_roles_of_the_hazard_source_and_person_ids(tmp_path: Path) -> None:
    cfg = site_config(None, tmp_path)
    roster = Roster(cfg.duty, cfg.site.timezone)
    t = Targets(cfg.people, cfg.hazard_sources, roster.on_duty)
    day, night = local_ns("2026-03-02 10:00"), local_ns("2026-03-02 22:00")
    assert t.resolve(["on_duty"], "HS-001", day).people == ["zhao"]
    assert t.resolve(["on_duty"], "HS-001", night).people == ["sun"]  # resolved at send time
    assert t.resolve(["technical", "principal"], "HS-001", day).people == ["li", "wang"]
    assert t.resolve(["operational", "on_duty", "chen"], "HS-001", day).people == ["chen", "zhao"]  # no duplicates
    r = t.resolve(["principal", "sun"], "HS-002", day)  # HS-002 has no principal
    assert r.people == ["sun"] and r.missing == ["principal"] and r.fallback is None


def test_a_step_naming_nobody_falls_back(tmp_path: Path) -> None:
    cfg = site_config(None, tmp_path, urls={p: [f"json://127.0.0.1:9/{p}"] for p in ("zhao", "sun", "li", "wang")})
    roster = Roster(cfg.duty, cfg.site.timezone)
    t = Targets(cfg.people, cfg.hazard_sources, roster.on_duty)
    r = t.resolve(["principal"], "HS-002", local_ns("2026-03-02 10:00"))
    assert r.people == ["zhao"] and r.fallback is not None and "on-duty" in r.fallback
    empty = Targets(cfg.people, cfg.hazard_sources, lambda _w: [])
    r = empty.resolve(["on_duty"], "HS-001", 0)
    assert r.people == ["chen", "li", "wang"] and "responsible" in (r.fallback or "")
    r = empty.resolve(["on_duty"], "HS-002", 0)
    assert r.people == ["zhao", "sun", "li", "wang"] and "everyone with a channel" in (r.fallback or "")


def _esc(steps: list[float]) -> Escalation:
    return Escalation(
        occurrence=7,
        alarm="GT-101/h",
        priority=2,
        hs="HS-001",
        steps=tuple(EscalationStep(after=a, notify=["on_duty"]) for a in steps),
        started=100.0,
        started_wall=0,
    )


def test_due_steps_follow_the_clock() -> None:
    e = _esc([0, 300, 600])
    assert e.due(100.0) == [0]
    e.next_step = 1
    assert e.due(399.9) == [] and e.next_due() == 400.0
    assert e.due(400.0) == [1]
    assert e.due(10_000.0) == [1, 2]  # after a long pause (restart) every missed step is due
    e.next_step = 3
    assert e.done and e.due(10_000.0) == [] and e.next_due() is None


def test_steps_firing_together_send_one_push_per_person() -> None:
    assert coalesce([(0, ["zhao"]), (1, ["chen", "zhao"]), (2, ["li"])]) == [(1, "chen"), (1, "zhao"), (2, "li")]
    assert coalesce([(0, ["zhao"])]) == [(0, "zhao")]
