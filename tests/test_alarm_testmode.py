"""Test mode in the alarm engine (issue 17): test occurrences, their end, and what they never touch.

A tag in test is evaluated as usual, but what it raises is a *test occurrence* (events with
``test=True``): no hazard-source status, no active-alarm gauge, no flood. Real alarms of other
tags, a vote that real members trip, a COMM alarm covering the tag, and suppression by design
are never suppressed or turned into test alarms by it. When the test ends, test occurrences
close (``test_ended``) and a condition still present is raised as a real alarm.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from test_alarm_support import Harness, journal_at, make_config, modbus_source

from alerting import states as S
from alerting.journal import Journal


def _gas(tag: str, hs: str = "HS-1", **alarms: Any) -> dict[str, Any]:
    return {"id": tag, "kind": "toxic_gas", "gas": "Cl2", "unit": "mg/m3", "hazard_source": hs, "range": [0, 10],
            "alarms": alarms or {"h": {"limit": 1.0, "priority": 2}, "hh": {"limit": 2.0, "priority": 1}}}


def _three() -> list[dict[str, Any]]:
    return [_gas("GT-1"), _gas("GT-2"), _gas("GT-3")]


def test_alarm_of_a_tag_in_test_is_a_test_occurrence_that_counts_nowhere() -> None:
    h = Harness(make_config(_three()))
    h.engine.set_tests({"GT-1"})
    h.feed("GT-1", 2.5)
    assert [(e.alarm, e.event, e.test) for e in h.events] == [("GT-1/hh", "raised", True), ("GT-1/h", "raised", True)]
    v = h.engine.get("GT-1/hh")
    assert (v.state, v.test) == (S.UNACK, True)
    assert h.engine.status("HS-1").status == "blue" and h.engine.status("HS-1").counts == (0, 0, 0)
    assert h.metric("hazardgw_alarms_active", {"priority": "1"}) == 0
    # a real alarm of another tag meanwhile is real, counted, coloured
    h.events.clear()
    h.feed("GT-2", 2.5)
    assert [(e.alarm, e.test) for e in h.events] == [("GT-2/hh", False), ("GT-2/h", False)]
    assert h.engine.status("HS-1").counts == (1, 1, 0) and h.engine.status("HS-1").status == "red"
    assert h.metric("hazardgw_alarms_active", {"priority": "1"}) == 1
    # acknowledging a test alarm is a test event too
    ev = h.engine.ack("GT-1/hh", "zhao")
    assert ev.test and ev.event == "acked"


def test_end_of_test_closes_test_occurrences_and_raises_a_still_present_alarm_as_real() -> None:
    h = Harness(make_config(_three()))
    h.engine.set_tests({"GT-1", "GT-2"})
    h.feed("GT-1", 2.5)  # gas on GT-1, still there at the end
    h.feed("GT-2", 1.5)  # GT-2 reached H and went back
    h.feed("GT-2", 0.0)
    h.engine.ack("GT-2/h", "zhao")
    h.events.clear()
    h.engine.set_tests({"GT-2"})  # GT-1 leaves test; GT-2 stays
    got = [(e.alarm, e.event, e.state, e.test) for e in h.events]
    assert got == [
        ("GT-1/hh", "test_ended", S.NORM, True), ("GT-1/hh", "raised", S.UNACK, False),
        ("GT-1/h", "test_ended", S.NORM, True), ("GT-1/h", "raised", S.UNACK, False),
    ]
    raised = h.events[1]
    assert raised.user is None and raised.comment == "still active when the test ended"
    assert h.engine.get("GT-1/hh").test is False and h.engine.status("HS-1").counts == (1, 1, 0)
    # a test alarm that is gone by the end just closes (nothing new raised)
    h.engine.set_tests({"GT-2"})
    h.feed("GT-2", 1.6)
    h.events.clear()
    h.engine.set_tests(())
    assert [(e.alarm, e.event, e.test) for e in h.events] == [("GT-2/h", "test_ended", True),
                                                                 ("GT-2/h", "raised", False)]
    h.feed("GT-2", 0.0)  # the real alarm returned, not acknowledged (RTNUN)
    h.events.clear()
    h.engine.set_tests({"GT-2"})
    h.feed("GT-2", 1.6)  # the test's gas trips it again: from here on a test occurrence, nobody is pushed
    h.feed("GT-2", 0.0)
    assert [(e.event, e.test) for e in h.events] == [("raised", True), ("cleared", True)]
    assert h.engine.status("HS-1").counts == (1, 1, 0)  # GT-1s real alarms only
    h.events.clear()
    h.engine.set_tests(())
    assert [(e.alarm, e.event, e.state) for e in h.events] == [("GT-2/h", "test_ended", S.NORM)]


def test_real_alarm_open_when_the_test_starts_stays_real() -> None:
    h = Harness(make_config(_three()))
    h.feed("GT-1", 1.5)
    h.engine.set_tests({"GT-1"})
    h.events.clear()
    h.feed("GT-1", 2.5)  # the technician adds gas: HH is a test alarm, the real H stays real
    assert [(e.alarm, e.event, e.test) for e in h.events] == [("GT-1/hh", "raised", True)]
    assert h.engine.get("GT-1/h").test is False
    h.feed("GT-1", 0.0)
    assert [(e.alarm, e.test) for e in h.events if e.event == "cleared"] == [("GT-1/hh", True), ("GT-1/h", False)]


def test_vote_is_real_as_soon_as_real_members_trip_it() -> None:
    h = Harness(make_config(_three(), votes=[{"id": "V", "tags": ["GT-1", "GT-2", "GT-3"], "k": 2,
                                               "condition": "h", "priority": 1}]))
    h.engine.set_tests({"GT-1"})
    h.feed("GT-1", 1.5)
    h.feed("GT-2", 1.5)  # 2 of 3 tripped, but one is the tested detector: a test vote
    vote = [e for e in h.events if e.alarm == "V/vote"]
    assert [(e.event, e.test) for e in vote] == [("raised", True)]
    assert h.engine.status("HS-1").counts[0] == 0
    h.events.clear()
    h.feed("GT-3", 1.5)  # a second real member: the vote is a real alarm now, raised at once
    vote = [(e.event, e.test) for e in h.events if e.alarm == "V/vote"]
    assert vote == [("test_ended", True), ("raised", False)]
    assert h.engine.get("V/vote").test is False and h.engine.status("HS-1").counts[0] == 1


def test_vote_test_occurrence_becomes_real_when_the_member_leaves_test_with_gas_present() -> None:
    h = Harness(make_config(_three(), votes=[{"id": "V", "tags": ["GT-1", "GT-2", "GT-3"], "k": 2,
                                               "condition": "h", "priority": 1}]))
    h.engine.set_tests({"GT-1"})
    h.feed("GT-1", 1.5)
    h.feed("GT-2", 1.5)
    h.events.clear()
    h.engine.set_tests(())
    vote = [(e.event, e.test) for e in h.events if e.alarm == "V/vote"]
    assert vote == [("test_ended", True), ("raised", False)]


def test_discrete_tag_in_test_suppresses_nothing_by_design() -> None:
    tags = [
        {"id": "XV", "kind": "discrete", "hazard_source": "HS-3"},
        {"id": "PT", "kind": "pressure", "unit": "MPa", "hazard_source": "HS-3",
         "alarms": {"h": {"limit": 1.0, "suppress_by": {"tag": "XV", "state": True}}}},
    ]
    h = Harness(make_config(tags))
    h.feed("XV", 1.0)  # the unit is shut down: PT/h suppressed by design
    h.feed("PT", 1.5)
    assert h.state("PT/h") == S.DSUPR
    h.events.clear()
    h.engine.set_tests({"XV"})  # the shutdown switch is being tested: it must not hide PT's alarm
    assert [(e.alarm, e.event) for e in h.events] == [("PT/h", "unsuppressed"), ("PT/h", "raised")]
    assert h.events[-1].test is False
    h.engine.set_tests(())
    assert h.state("PT/h") == S.DSUPR


def test_comm_alarm_covering_a_tag_in_test_is_real() -> None:
    tags = [_gas("GT-1"), _gas("GT-2")]
    h = Harness(make_config(tags, sources=[modbus_source(["GT-1", "GT-2"])]))
    h.feed("GT-1", 0.0)
    h.feed("GT-2", 0.0)
    h.engine.set_tests({"GT-1"})
    h.events.clear()
    h.feed("GT-1", None, "comm")
    h.feed("GT-2", None, "comm")
    comm = [e for e in h.events if e.alarm == "plc/comm"]
    assert [(e.event, e.test) for e in comm] == [("raised", False)]
    assert h.engine.status("HS-1").counts[0] == 1  # the COMM alarm counts (priority 1: gas detectors)
    # the tested tag's BAD alarm is suppressed under it like the others
    assert h.state("GT-1/bad") == S.DSUPR and h.state("GT-2/bad") == S.DSUPR


def test_bad_alarm_of_the_tested_detector_alone_is_a_test_alarm() -> None:
    tags = [_gas("GT-1"), _gas("GT-2")]
    h = Harness(make_config(tags, sources=[modbus_source(["GT-1", "GT-2"])]))
    h.feed("GT-1", 0.0)
    h.feed("GT-2", 0.0)
    h.engine.set_tests({"GT-1"})
    h.events.clear()
    h.feed("GT-1", None, "bad")  # the technician opens the detector head: a device fault
    assert [(e.alarm, e.event, e.test) for e in h.events] == [("GT-1/bad", "raised", True)]


def test_test_alarms_make_no_flood() -> None:
    tags = [_gas(f"GT-{i}") for i in range(6)]
    h = Harness(make_config(tags, alarming={"flood_count": 3}))
    h.engine.set_tests({t["id"] for t in tags})
    for t in tags:
        h.feed(t["id"], 2.5)
    assert not h.engine.flood
    assert sum(1 for e in h.events if e.event == "raised") == 12


def test_test_flag_survives_a_restart_through_the_journal(tmp_path: Path) -> None:
    cfg = make_config(_three(), store=str(tmp_path))
    j = journal_at(tmp_path)
    h = Harness(cfg, journal=j)
    h.engine.restore(j.open())
    h.engine.set_tests({"GT-1"})
    h.feed("GT-1", 1.5)
    h.feed("GT-2", 1.5)
    assert j.flush() == 2
    rows = {r["alarm"]: r["test"] for r in j.events()}
    assert rows == {"GT-1/h": True, "GT-2/h": False}
    # KPIs never see the test occurrence
    ann, occ = j.kpi_rows(0, 2**62)
    assert [a["alarm"] for a in ann] == ["GT-2/h"] and [o["alarm"] for o in occ] == ["GT-2/h"]
    j._flush_and_close()
    j2 = Journal(tmp_path)
    h2 = Harness(cfg, journal=j2)
    h2.engine.restore(j2.open())
    assert h2.engine.get("GT-1/h").test is True and h2.engine.get("GT-2/h").test is False
    assert h2.engine.status("HS-1").counts == (0, 1, 0)
    h2.engine.set_tests({"GT-1"})  # the test manager re-applies the tests still running
    h2.events.clear()
    h2.engine.set_tests(())
    assert [(e.alarm, e.event) for e in h2.events] == [("GT-1/h", "test_ended"), ("GT-1/h", "raised")]
    j2._flush_and_close()
