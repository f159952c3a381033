"""Engine-wide behaviour: events and InfluxDB lines, status rule, metrics, isolation of failures."""

from __future__ import annotations

from typing import Any

import pytest
from test_alarm_support import WALL0, Harness, make_config

from alerting import AlarmEvent, alarm_line
from alerting.status import DEFAULT_RULE, evaluate
from gateway.core.config import StatusRule
from gateway.core.metrics import Metrics
from gateway.core.models import Reading
from gateway.pipeline import Pipeline


def _tags() -> list[dict[str, Any]]:
    return [
        {
            "id": "GT-1",
            "kind": "toxic_gas",
            "gas": "Cl2",
            "unit": "mg/m3",
            "hazard_source": "HS-1",
            "alarms": {"hh": {"limit": 2.0, "priority": 1}, "h": {"limit": 1.0, "priority": 2}},
        },
        {
            "id": "GT-2",
            "kind": "toxic_gas",
            "gas": "Cl2",
            "unit": "mg/m3",
            "hazard_source": "HS-1",
            "alarms": {"hh": {"limit": 2.0, "priority": 1}},
        },
        {
            "id": "TT-3",
            "kind": "temperature",
            "unit": "°C",
            "hazard_source": "HS-3",
            "alarms": {"h": {"limit": 40, "priority": 3}, "hh": {"limit": 45, "priority": 1}},
        },
        {
            "id": "PT-3",
            "kind": "pressure",
            "unit": "MPa",
            "hazard_source": "HS-3",
            "alarms": {"h": {"limit": 1.0, "priority": 2}},
        },
    ]


def test_alarm_line_per_design_section_5() -> None:
    h = Harness(make_config(_tags()))
    src = WALL0 + 42
    h.feed("GT-1", 1.5, ts=src)
    ev = h.events[0]
    assert alarm_line(ev, "9143 SITE") == (
        "alarm,condition=h,hs=HS-1,priority=2,site=9143\\ SITE,tag=GT-1 "
        f'event="raised",state="UNACK",value=1.5,limit=1.0,seq=1i,occurrence={ev.occurrence}i {src}'
    )
    h.engine.ack("GT-1/h", 'zhao "the" operator')
    line = alarm_line(h.events[-1], "S")
    assert 'by="zhao \\"the\\" operator"' in line and 'event="acked"' in line
    assert line.endswith(f" {h.clock.wall()}")  # operator events carry the gateway's wall time


def test_vote_count_is_written_as_a_float_field() -> None:
    ev = AlarmEvent(
        seq=7,
        event="raised",
        alarm="Z/vote",
        tag="Z",
        condition="vote",
        priority=1,
        state="UNACK",
        prev_state="NORM",
        active=True,
        occurrence=3,
        value=2,
        limit=2,
        ts=5,
        wall=5,
        hs=None,
    )
    line = alarm_line(ev, "S")
    assert "value=2.0," in line and "limit=2.0," in line and ",hs=" not in line


def test_same_timestamp_events_of_one_alarm_get_distinct_influx_times() -> None:
    h = Harness(
        make_config([{"id": "PT-1", "kind": "pressure", "unit": "MPa", "alarms": {"h": {"limit": 1.0, "deadband": 0}}}])
    )
    h.feed("PT-1", 2.0, ts=WALL0)
    h.feed("PT-1", 0.0, ts=WALL0)  # same source timestamp (a device with a coarse clock)
    h.feed("PT-1", 2.0, ts=WALL0 + 5)
    assert [e.ts for e in h.events] == [WALL0, WALL0 + 1, WALL0 + 5]


def test_hazard_source_status_default_rule() -> None:
    h = Harness(make_config(_tags()))
    assert {k: v.status for k, v in h.engine.statuses().items()} == {"HS-1": "blue", "HS-3": "blue"}
    h.feed("TT-3", 41)  # priority 3 on a grade-3 source
    assert h.engine.status("HS-3").status == "blue"
    h.feed("PT-3", 1.1)  # priority 2, grade 3
    assert h.engine.status("HS-3").status == "yellow"
    h.feed("TT-3", 46)  # priority 1, grade 3
    assert h.engine.status("HS-3").status == "orange" and h.engine.status("HS-3").zh == "橙"
    h.feed("GT-1", 1.2)  # priority 2, grade 2
    assert h.engine.status("HS-1").status == "orange"
    h.feed("GT-1", 2.5)  # priority 1, grade 2
    s = h.engine.status("HS-1")
    assert (s.status, s.zh, s.counts, s.grade) == ("red", "红", (1, 1, 0), 2)
    h.engine.ack("GT-1/hh", "zhao")
    assert h.engine.status("HS-1").status == "red"  # acknowledging does not remove the hazard
    h.feed("GT-1", 0.0)  # returned: RTNUN does not count
    assert h.engine.status("HS-1").status == "blue"
    assert h.metric("hazardgw_hazard_source_status", {"hs": "HS-3"}) == 2  # orange


def test_two_priority_1_alarms_make_any_source_red() -> None:
    h = Harness(make_config(_tags()))
    h.feed("TT-3", 46)
    assert h.engine.status("HS-3").status == "orange"
    tags = _tags()
    tags[3]["alarms"]["hh"] = {"limit": 2.0, "priority": 1}
    h2 = Harness(make_config(tags))
    h2.feed("TT-3", 46)
    h2.feed("PT-3", 2.5)
    assert h2.engine.status("HS-3").status == "red"


def test_status_rule_is_configurable() -> None:
    rule = {
        "matrix": {
            1: ["red", "red", "orange"],
            2: ["red", "red", "orange"],
            3: ["red", "orange", "yellow"],
            4: ["orange", "yellow", "yellow"],
        },
        "normal": "blue",
        "p1_red_count": 0,
    }
    h = Harness(make_config(_tags(), alarming={"status_rule": rule}))
    h.feed("TT-3", 41)
    assert h.engine.status("HS-3").status == "yellow"
    with pytest.raises(ValueError, match="grades 1, 2, 3 and 4"):
        StatusRule.model_validate({"matrix": {1: ["red", "red", "red"]}})


def test_status_evaluate_table() -> None:
    r = DEFAULT_RULE
    assert evaluate(r, 1, (0, 0, 0)) == "blue"
    assert evaluate(r, 1, (0, 0, 1)) == "yellow"
    assert evaluate(r, 4, (0, 0, 5)) == "blue"
    assert evaluate(r, 4, (0, 1, 0)) == "yellow"
    assert evaluate(r, 4, (1, 0, 0)) == "orange"
    assert evaluate(r, 4, (2, 0, 0)) == "red"
    assert evaluate(r, None, (0, 1, 0)) == "yellow"  # no hazard source grade: treated as grade 4


def test_shelved_active_alarm_still_counts_for_status() -> None:
    h = Harness(make_config(_tags()))
    h.feed("PT-3", 1.5)
    h.engine.shelve("PT-3/h", "li", 600)
    assert h.engine.status("HS-3").status == "yellow"
    h.engine.set_out_of_service("PT-3/h", "li")
    assert h.engine.status("HS-3").status == "blue"


def test_metrics_active_by_priority_and_events_by_type() -> None:
    h = Harness(make_config(_tags()))
    h.feed("GT-1", 3.0)
    h.feed("TT-3", 41.0)
    assert h.metric("hazardgw_alarms_active", {"priority": "1"}) == 1
    assert h.metric("hazardgw_alarms_active", {"priority": "2"}) == 1
    assert h.metric("hazardgw_alarms_active", {"priority": "3"}) == 1
    assert h.metric("hazardgw_alarm_events_total", {"event": "raised"}) == 3
    h.engine.ack("GT-1/hh", "zhao")
    h.feed("GT-1", 0.0)
    assert h.metric("hazardgw_alarms_active", {"priority": "1"}) == 0
    assert h.metric("hazardgw_alarms_active", {"priority": "2"}) == 1  # GT-1/h in RTNUN still open
    assert h.metric("hazardgw_alarm_events_total", {"event": "cleared"}) == 2


def test_a_failing_subscriber_does_not_stop_the_others() -> None:
    h = Harness(make_config(_tags()))
    got: list[str] = []

    def broken(ev: AlarmEvent) -> None:
        raise RuntimeError("sink bug")

    h.engine.subscribe(broken)
    unsubscribe = h.engine.subscribe(lambda ev: got.append(ev.alarm))
    h.feed("GT-1", 1.5)
    assert got == ["GT-1/h"] and h.names() == [("GT-1/h", "raised", "UNACK")]
    assert h.metric("hazardgw_alarm_callback_errors_total") == 1
    unsubscribe()
    h.feed("GT-2", 2.5)
    assert got == ["GT-1/h"]


def test_an_evaluation_error_skips_one_reading_not_the_batch() -> None:
    h = Harness(make_config(_tags()))
    batch = [Reading("GT-1", "oops", WALL0, "good"), Reading("GT-2", 2.5, WALL0, "good")]  # type: ignore[arg-type]
    h.engine.on_readings(batch)
    assert h.names() == [("GT-2/hh", "raised", "UNACK")]
    assert h.metric("hazardgw_alarm_evaluation_errors_total", {"where": "reading"}) == 1


def test_unknown_tags_are_ignored() -> None:
    h = Harness(make_config(_tags()))
    h.engine.on_readings([Reading("NOT-A-TAG", 1e9, WALL0, "good")])
    assert h.names() == [] and h.metric("hazardgw_alarm_evaluation_errors_total", {"where": "reading"}) == 0


def test_history_and_views() -> None:
    h = Harness(make_config(_tags()))
    h.feed("GT-1", 3.0)
    h.feed("TT-3", 41.0)
    # newest first; a reading that crosses both limits raises the more severe one first
    assert [e.alarm for e in h.engine.history(10, tag="GT-1")] == ["GT-1/h", "GT-1/hh"]
    assert len(h.engine.history(1)) == 1
    act = h.engine.active()
    assert [a.id for a in act] == ["GT-1/hh", "GT-1/h", "TT-3/h"]  # priority order
    v = act[0]
    assert (v.value, v.limit, v.hs, v.suppressible, v.latch) == (3.0, 2.0, "HS-1", False, False)
    assert h.engine.get(str(v.occurrence)).id == "GT-1/hh"  # occurrence id as a path segment


async def test_pipeline_dispatch_and_timer_task() -> None:
    metrics = Metrics()
    h = Harness(make_config(_tags()))
    pipe = Pipeline(metrics)
    pipe.subscribe(h.engine)
    await h.engine.start()
    await pipe.start()
    await pipe.emit([Reading("GT-1", 3.0, WALL0, "good")])
    await pipe.stop()
    assert ("GT-1/hh", "raised", "UNACK") in h.names()
    assert h.engine.health()["running"] is True
    await h.engine.stop()
    assert h.engine.health()["running"] is False


def test_status_is_current_when_subscribers_see_the_event() -> None:
    h = Harness(make_config(_tags()))
    seen: list[str] = []
    h.engine.subscribe(lambda ev: seen.append(h.engine.status(ev.hs or "HS-1").status))
    h.feed("GT-1", 2.5)  # hh (p1) then h (p2) on grade 2
    assert seen == ["red", "red"]
