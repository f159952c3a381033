"""Each alarm condition with an explicit fake clock: unit level and through the engine."""

from __future__ import annotations

import math
import random

import pytest
from test_alarm_support import FakeClock, Harness, make_config, modbus_source

from alerting.conditions import (
    CHANGED,
    NO_CHANGE,
    PENDING,
    BadQuality,
    Discrete,
    Frozen,
    HighLimit,
    KofN,
    LowLimit,
    RateOfChange,
)
from gateway.config import Config

# ----------------------------------------------------------------------------- limits


def test_high_limit_exactly_at_the_limit_raises() -> None:
    c = HighLimit(10.0)
    assert c.feed(9.999999, 0.0) == NO_CHANGE and not c.active
    assert c.feed(10.0, 0.0) == CHANGED and c.active


def test_low_limit_exactly_at_the_limit_raises() -> None:
    c = LowLimit(19.5)
    assert c.feed(19.500001, 0.0) == NO_CHANGE and not c.active
    assert c.feed(19.5, 0.0) == CHANGED and c.active


def test_high_limit_deadband_return() -> None:
    c = HighLimit(10.0, deadband=1.0)
    assert c.feed(10.5, 0.0) == CHANGED
    for v in (9.5, 9.0, 10.2, 9.0):  # 9.0 = limit - deadband: still active
        assert c.feed(v, 0.0) == NO_CHANGE and c.active
    assert c.feed(8.999, 0.0) == CHANGED and not c.active
    assert c.feed(9.9, 0.0) == NO_CHANGE and not c.active  # rising again below the limit: no alarm


def test_low_limit_deadband_return() -> None:
    c = LowLimit(19.5, deadband=0.2)
    assert c.feed(19.0, 0.0) == CHANGED
    assert c.feed(19.7, 0.0) == NO_CHANGE and c.active
    assert c.feed(19.71, 0.0) == CHANGED and not c.active


def test_on_delay_cancelled_by_a_dip() -> None:
    c = HighLimit(10.0, on_delay=5.0)
    assert c.feed(11.0, 0.0) == PENDING and c.due == 5.0
    assert c.feed(11.0, 3.0) == NO_CHANGE
    assert c.feed(9.0, 3.5) == NO_CHANGE and c.due is None  # the dip cancels the pending delay
    assert c.feed(11.0, 4.0) == PENDING and c.due == 9.0  # starts again from the new crossing
    assert c.feed(11.0, 8.999) == NO_CHANGE and not c.active
    assert c.feed(11.0, 9.0) == CHANGED and c.active  # exactly at the end of the delay


def test_off_delay_and_timer_expiry() -> None:
    c = HighLimit(10.0, off_delay=30.0)
    assert c.feed(12.0, 0.0) == CHANGED
    assert c.feed(5.0, 1.0) == PENDING and c.due == 31.0
    assert c.feed(10.5, 2.0) == NO_CHANGE and c.due is None  # back above: return cancelled
    assert c.feed(5.0, 3.0) == PENDING
    assert not c.expire(32.9) and c.active
    assert c.expire(33.0) and not c.active and c.due is None


def test_engine_on_delay_fires_from_the_timer_without_a_new_reading() -> None:
    cfg = make_config(
        [
            {
                "id": "PT-1",
                "kind": "pressure",
                "unit": "MPa",
                "alarms": {"h": {"limit": 1.0, "on_delay": "5s", "deadband": 0}},
            }
        ]
    )
    h = Harness(cfg)
    h.at(0, "PT-1", 1.5)
    h.tick(4.9)
    assert h.names() == []
    h.tick(0.1)
    assert h.take() == [("PT-1/h", "raised", "UNACK")]
    ev = h.engine.history(1)[0]
    assert ev.ts == h.clock.wall()  # raised by the timer: gateway wall time


def test_engine_delay_cancelled_by_a_dip_never_raises() -> None:
    cfg = make_config(
        [
            {
                "id": "PT-1",
                "kind": "pressure",
                "unit": "MPa",
                "alarms": {"h": {"limit": 1.0, "on_delay": "5s", "deadband": 0}},
            }
        ]
    )
    h = Harness(cfg)
    h.at(0, "PT-1", 1.5)
    h.at(4, "PT-1", 0.9)  # dip
    h.tick(2.0)  # t = 6: past the original delay
    h.at(7, "PT-1", 1.5)
    h.tick(4.0)  # t = 11 < 7 + 5
    assert h.names() == []
    h.tick(1.0)
    assert h.take() == [("PT-1/h", "raised", "UNACK")]


def test_deadband_default_by_kind_percent_of_span() -> None:
    cfg = make_config(
        [
            {"id": "PT-1", "kind": "pressure", "unit": "MPa", "range": [0, 2.5], "alarms": {"h": {"limit": 1.0}}},
            {
                "id": "GT-1",
                "kind": "toxic_gas",
                "gas": "H2S",
                "unit": "mg/m3",
                "range": [0, 50],
                "alarms": {"h": {"limit": 10}},
            },
        ]
    )
    h = Harness(cfg)
    h.feed("PT-1", 1.0)
    h.feed("PT-1", 0.951)  # 2 % of 2.5 MPa = 0.05: still inside the deadband
    h.feed("GT-1", 10)
    h.feed("GT-1", 9.99)  # gas: no default deadband
    assert h.take() == [("PT-1/h", "raised", "UNACK"), ("GT-1/h", "raised", "UNACK"), ("GT-1/h", "cleared", "RTNUN")]
    h.feed("PT-1", 0.949)
    assert h.take() == [("PT-1/h", "cleared", "RTNUN")]


def test_nan_and_missing_values_never_clear_an_alarm() -> None:
    cfg = make_config([{"id": "PT-1", "kind": "pressure", "unit": "MPa", "alarms": {"h": {"limit": 1.0}}}])
    h = Harness(cfg)
    h.feed("PT-1", 2.0)
    h.feed("PT-1", math.nan)
    h.feed("PT-1", None, "comm")
    h.feed("PT-1", 0.0, "bad")  # a bad reading's value is not evaluated
    assert h.take() == [("PT-1/h", "raised", "UNACK")]
    assert h.engine.get("PT-1/h").active


def test_over_range_uncertain_gas_reading_raises() -> None:
    cfg = make_config(
        [
            {
                "id": "GT-1",
                "kind": "toxic_gas",
                "gas": "Cl2",
                "unit": "mg/m3",
                "range": [0, 10],
                "alarms": {"hh": {"limit": 2.0, "priority": 1}},
            }
        ]
    )
    h = Harness(cfg)
    h.feed("GT-1", 12.0, "uncertain")
    assert h.take() == [("GT-1/hh", "raised", "UNACK")]


# ----------------------------------------------------------------------------- latch


def test_latched_alarm_stays_until_acknowledged_after_return() -> None:
    cfg = make_config(
        [
            {
                "id": "GT-1",
                "kind": "toxic_gas",
                "gas": "Cl2",
                "unit": "mg/m3",
                "hazard_source": "HS-1",
                "alarms": {"hh": {"limit": 2.0, "priority": 1, "latch": True}},
            }
        ]
    )
    h = Harness(cfg)
    h.feed("GT-1", 3.0)
    h.engine.ack("GT-1/hh", "zhao")
    h.feed("GT-1", 0.1)  # process returned: latched, stays ACKED
    assert h.take() == [("GT-1/hh", "raised", "UNACK"), ("GT-1/hh", "acked", "ACKED"), ("GT-1/hh", "cleared", "ACKED")]
    v = h.engine.get("GT-1/hh")
    assert v.state == "ACKED" and not v.active and v.occurrence is not None
    assert [a.id for a in h.engine.active()] == ["GT-1/hh"]
    h.engine.ack("GT-1/hh", "zhao", "reset after return")
    assert h.take() == [("GT-1/hh", "acked", "NORM")]
    assert h.engine.active() == []


def test_latched_alarm_trips_again_before_reset() -> None:
    cfg = make_config(
        [
            {
                "id": "GT-1",
                "kind": "toxic_gas",
                "gas": "Cl2",
                "unit": "mg/m3",
                "alarms": {"hh": {"limit": 2.0, "latch": True}},
            }
        ]
    )
    h = Harness(cfg)
    h.feed("GT-1", 3.0)
    occ = h.engine.get("GT-1/hh").occurrence
    h.engine.ack(occ, "zhao")
    h.feed("GT-1", 0.0)
    h.feed("GT-1", 2.5)
    assert h.take()[-1] == ("GT-1/hh", "raised", "UNACK")
    assert h.engine.get("GT-1/hh").occurrence == occ  # still the same occurrence


# ----------------------------------------------------------------------------- ROC


def _ramp(c: RateOfChange, slope_per_s: float, seconds: int, t0_ns: int = 0, v0: float = 0.0) -> list[int]:
    return [c.feed(v0 + slope_per_s * i, 0.0, t0_ns + i * 1_000_000_000) for i in range(seconds)]


def test_roc_least_squares_slope_of_a_ramp() -> None:
    c = RateOfChange(limit=6.0, per=60.0)  # 6 units per minute = 0.1 / s
    results = _ramp(c, 0.1, 40)
    assert c.rate == pytest.approx(6.0)
    assert CHANGED in results and c.active  # exactly at the limit counts
    c2 = RateOfChange(limit=6.0, per=60.0)
    _ramp(c2, 0.0999, 40)
    assert not c2.active


def test_roc_holds_until_half_a_window_of_data() -> None:
    c = RateOfChange(limit=1.0, per=60.0)
    results = _ramp(c, 10.0, 30)  # a steep ramp, but only 29 s of data
    assert results == [NO_CHANGE] * 30 and c.rate is None
    assert c.feed(300.0, 0.0, 30_000_000_000) == CHANGED


def test_roc_direction_and_return() -> None:
    rise = RateOfChange(limit=1.0, per=1.0, window=10.0, direction="rise")
    fall = RateOfChange(limit=1.0, per=1.0, window=10.0, direction="fall")
    both = RateOfChange(limit=1.0, per=1.0, window=10.0, direction="both")
    for i in range(12):
        for c in (rise, fall, both):
            c.feed(100.0 - 2.0 * i, 0.0, i * 1_000_000_000)
    assert (rise.active, fall.active, both.active) == (False, True, True)
    for i in range(12, 40):  # flat again: the window forgets the fall
        both.feed(76.0, 0.0, i * 1_000_000_000)
    assert not both.active and both.rate == pytest.approx(0.0, abs=1e-9)


def test_roc_with_noise_and_out_of_order_timestamps() -> None:
    rnd = random.Random(7)
    c = RateOfChange(limit=100.0, per=60.0, window=60.0)
    for i in range(120):
        c.feed(0.5 * i + rnd.gauss(0, 0.2), 0.0, i * 1_000_000_000)
        c.feed(1e6, 0.0, (i - 1) * 1_000_000_000 if i else 0)  # late duplicate: ignored
    assert c.rate == pytest.approx(30.0, rel=0.02)
    assert not c.active


def test_roc_stays_precise_over_a_long_run() -> None:
    c = RateOfChange(limit=1000.0, per=1.0, window=5.0)
    base = 1_700_000_000_000_000_000
    for i in range(50_000):  # 50,000 s at 1 Hz: many rebases
        c.feed(1e4 + 0.25 * i, 0.0, base + i * 1_000_000_000)
    assert c.rate == pytest.approx(0.25, rel=1e-9)


def test_roc_through_the_engine_uses_source_timestamps() -> None:
    cfg = make_config(
        [
            {
                "id": "GT-1",
                "kind": "toxic_gas",
                "gas": "Cl2",
                "unit": "mg/m3",
                "alarms": {"roc": {"limit": 0.5, "per": "1m", "window": "20s"}},
            }
        ]
    )
    h = Harness(cfg)
    t0 = 1_800_000_000_000_000_000
    # a store-and-forward burst: 30 readings delivered at one instant, 1 s apart at the source
    from gateway.core.models import Reading

    h.engine.on_readings([Reading("GT-1", 0.02 * i, t0 + i * 1_000_000_000, "good") for i in range(30)])
    assert h.take() == [("GT-1/roc", "raised", "UNACK")]
    ev = h.engine.history(1)[0]
    assert ev.value == pytest.approx(1.2)  # 0.02 / s = 1.2 per minute
    assert ev.limit == 0.5


# ----------------------------------------------------------------------------- frozen, stale, bad, discrete


def test_frozen_within_tolerance() -> None:
    c = Frozen(after=60.0, tolerance=0.05)
    assert c.feed(5.0, 0.0) == NO_CHANGE
    assert c.feed(5.04, 30.0) == NO_CHANGE
    assert c.feed(4.96, 59.9) == NO_CHANGE and not c.active
    assert c.feed(5.0, 60.0) == CHANGED and c.active
    assert c.feed(5.06, 61.0) == CHANGED and not c.active  # moved beyond the tolerance
    assert c.feed(5.06, 120.0) == NO_CHANGE  # reference restarted at 61
    assert c.feed(5.06, 121.0) == CHANGED


def test_frozen_restored_active_is_not_cleared_by_the_same_value() -> None:
    c = Frozen(after=60.0)
    c.restore(True)
    assert c.feed(5.0, 0.0) == NO_CHANGE and c.active
    assert c.feed(5.0, 1.0) == NO_CHANGE and c.active
    assert c.feed(5.1, 2.0) == CHANGED and not c.active


def test_frozen_through_the_engine() -> None:
    cfg = make_config([{"id": "LT-1", "kind": "level", "unit": "%", "alarms": {"frozen": {"after": "10m"}}}])
    h = Harness(cfg)
    for t in range(0, 601, 60):
        h.at(t, "LT-1", 42.0)
    assert h.take() == [("LT-1/frozen", "raised", "UNACK")]
    h.at(660, "LT-1", 42.5)
    assert h.take() == [("LT-1/frozen", "cleared", "RTNUN")]


def test_stale_default_three_poll_intervals() -> None:
    cfg = make_config(
        [{"id": "GT-1", "kind": "toxic_gas", "gas": "H2S", "unit": "mg/m3", "alarms": {"h": {"limit": 10}}}],
        sources=[modbus_source(["GT-1"], poll="2s")],
        alarming={"comm": {"enabled": False}},  # the tag's own STALE alarm, not its source's COMM alarm
    )
    h = Harness(cfg)
    h.at(0, "GT-1", 1.0)
    h.clock.now = 1000.0 + 5.99
    h.tick()
    assert h.names() == []
    h.clock.now = 1000.0 + 6.0  # 3 x 2 s
    h.tick()
    assert h.take() == [("GT-1/stale", "raised", "UNACK")]  # implicit for gas detectors
    h.at(7, "GT-1", 1.0)
    assert h.take() == [("GT-1/stale", "cleared", "RTNUN")]


def test_stale_reading_quality_and_mqtt_without_stale_after() -> None:
    cfg = make_config(
        [
            {
                "id": "PT-1",
                "kind": "pressure",
                "unit": "MPa",
                "stale_after": "5s",
                "alarms": {"stale": {"priority": 3}},
            },
            {"id": "PT-2", "kind": "pressure", "unit": "MPa", "alarms": {"stale": {}}},  # nothing to time it by
        ]
    )
    h = Harness(cfg)
    assert any("PT-2" in w and "stale" in w for w in h.engine.warnings)
    h.feed("PT-1", None, "stale")
    assert h.take() == [("PT-1/stale", "raised", "UNACK")]
    h.tick(1000.0)
    assert h.names() == []  # PT-2 has no stale check, PT-1 already stale
    h.feed("PT-1", 0.5)
    assert h.take() == [("PT-1/stale", "cleared", "RTNUN")]


def test_bad_quality_with_on_delay_and_held_limits() -> None:
    cfg = make_config(
        [
            {
                "id": "PT-1",
                "kind": "pressure",
                "unit": "MPa",
                "alarms": {"h": {"limit": 1.0}, "bad": {"on_delay": "2s", "priority": 3}},
            }
        ]
    )
    h = Harness(cfg)
    h.at(0, "PT-1", 1.5)
    h.at(1, "PT-1", None, "comm")
    h.at(2, "PT-1", None, "comm")
    assert h.take() == [("PT-1/h", "raised", "UNACK")]
    h.tick(1.0)  # t = 3: bad for 2 s
    assert h.take() == [("PT-1/bad", "raised", "UNACK")]
    assert h.engine.get("PT-1/h").active  # the limit alarm is held, not cleared by missing data
    h.at(4, "PT-1", 0.2)
    assert h.take() == [("PT-1/bad", "cleared", "RTNUN"), ("PT-1/h", "cleared", "RTNUN")]
    h.at(5, "PT-1", 0.2, "uncertain")  # not in the default qualities
    assert h.names() == []


def test_bad_quality_unit() -> None:
    c = BadQuality(frozenset({"bad", "comm"}))
    assert c.feed_quality("good", 0.0) == NO_CHANGE
    assert c.feed_quality("bad", 0.0) == CHANGED and c.active
    assert c.feed_quality("comm", 1.0) == NO_CHANGE and c.active
    assert c.feed_quality("good", 2.0) == CHANGED and not c.active


def test_discrete_state_and_on_delay() -> None:
    c = Discrete(state=False, on_delay=3.0)  # alarm when the point is 0, e.g. "permissive lost"
    assert c.feed(1.0, 0.0) == NO_CHANGE
    assert c.feed(0.0, 1.0) == PENDING
    assert c.feed(1.0, 2.0) == NO_CHANGE and c.due is None
    assert c.feed(0.0, 3.0) == PENDING
    assert c.feed(0.0, 6.0) == CHANGED and c.active


def test_discrete_esd_valve_through_the_engine() -> None:
    cfg = make_config(
        [
            {
                "id": "XV-1.CLOSED",
                "kind": "discrete",
                "hazard_source": "HS-1",
                "alarms": {"discrete": {"state": True, "priority": 1, "message": "ESD valve closed"}},
            }
        ]
    )
    h = Harness(cfg)
    h.feed("XV-1.CLOSED", 0.0)
    h.feed("XV-1.CLOSED", 1.0)
    assert h.take() == [("XV-1.CLOSED/discrete", "raised", "UNACK")]
    ev = h.engine.history(1)[0]
    assert ev.message == "ESD valve closed" and ev.priority == 1 and ev.value == 1.0
    h.feed("XV-1.CLOSED", 0.0)
    assert h.take() == [("XV-1.CLOSED/discrete", "cleared", "RTNUN")]


# ----------------------------------------------------------------------------- vote


def test_kofn_raises_at_k_but_clears_only_when_every_member_is_known() -> None:
    v = KofN(2, 3)
    assert v.update(0, True) == NO_CHANGE
    assert v.update(1, True) == CHANGED and v.active and v.count == 2  # member 2 not heard from: irrelevant
    assert v.update(0, False) == NO_CHANGE and v.active  # member 2 unknown: it may be tripped
    assert v.update(2, False) == CHANGED and not v.active and v.count == 1
    restored = KofN(2, 3)
    restored.restore(True)  # active before a restart
    assert restored.update(0, False) == NO_CHANGE and restored.active
    assert restored.update(1, False) == NO_CHANGE and restored.active
    assert restored.update(2, False) == CHANGED and not restored.active


def _vote_config(k: int = 2) -> dict[str, object]:
    return {
        "id": "ZONE-A",
        "name": "Tank farm zone A",
        "tags": ["GT-1", "GT-2", "GT-3"],
        "k": k,
        "condition": "h",
        "hazard_source": "HS-1",
    }


def _gas(tid: str) -> dict[str, object]:
    return {
        "id": tid,
        "kind": "toxic_gas",
        "gas": "Cl2",
        "unit": "mg/m3",
        "hazard_source": "HS-1",
        "alarms": {"h": {"limit": 1.0}},
    }


def test_vote_with_a_bad_detector() -> None:
    cfg = make_config([_gas("GT-1"), _gas("GT-2"), _gas("GT-3")], votes=[_vote_config()])
    h = Harness(cfg)
    h.feed("GT-1", 0.1)
    h.feed("GT-2", 0.0, "bad")  # a failed detector counts as tripped
    h.feed("GT-3", 0.1)
    assert ("ZONE-A/vote", "raised", "UNACK") not in h.names()
    h.feed("GT-1", 1.2)  # one real trip + one bad = 2 of 3
    assert ("ZONE-A/vote", "raised", "UNACK") in h.take()
    ev = next(e for e in h.engine.history(10) if e.alarm == "ZONE-A/vote")
    assert ev.value == 2.0 and ev.limit == 2.0 and ev.priority == 1 and ev.hs == "HS-1"
    h.feed("GT-2", 0.1)  # detector repaired, reads clean: 1 of 3
    assert ("ZONE-A/vote", "cleared", "RTNUN") in h.take()


def test_vote_with_a_stale_detector_and_severity_realarm() -> None:
    cfg = make_config(
        [_gas("GT-1"), _gas("GT-2"), _gas("GT-3")],
        votes=[_vote_config()],
        sources=[modbus_source(["GT-1", "GT-2", "GT-3"])],
    )
    h = Harness(cfg)
    for t in ("GT-1", "GT-2", "GT-3"):
        h.feed(t, 0.0)
    h.feed("GT-1", 1.5)
    h.feed("GT-2", 1.5)
    assert ("ZONE-A/vote", "raised", "UNACK") in h.take()
    h.engine.ack("ZONE-A/vote", "zhao")
    h.take()
    # GT-3 goes silent: 3 of 3 tripped -> severity rose -> re-alarm
    h.clock.advance(2.0)
    h.feed("GT-1", 1.5)
    h.feed("GT-2", 1.5)
    h.tick(1.0)
    assert ("ZONE-A/vote", "realarmed", "UNACK") in h.take()
    assert h.engine.get("ZONE-A/vote").state == "UNACK"


# ----------------------------------------------------------------------------- suppression by design


def _suppressed_config(gas_suppressible: bool | None = None) -> Config:
    pump = {
        "id": "FT-1",
        "kind": "flow",
        "unit": "m3/h",
        "alarms": {"l": {"limit": 5.0, "deadband": 0, "suppress_by": {"tag": "UNIT.DOWN", "state": True}}},
    }
    gas = {
        "id": "GT-9",
        "kind": "combustible_gas",
        "gas": "CH4",
        "unit": "%LEL",
        "alarms": {"h": {"limit": 20, "suppress_by": {"tag": "UNIT.DOWN"}}},
    }
    if gas_suppressible is not None:
        gas["suppressible"] = gas_suppressible
    down = {"id": "UNIT.DOWN", "kind": "discrete"}
    return make_config([pump, gas, down])


def test_suppressed_by_design_and_raised_when_the_unit_starts() -> None:
    h = Harness(_suppressed_config())
    h.feed("UNIT.DOWN", 1.0)
    h.feed("FT-1", 0.0)  # no flow while the unit is down: expected, not an alarm
    assert h.take() == [("FT-1/l", "suppressed", "DSUPR")]
    h.feed("UNIT.DOWN", 0.0)  # unit started, still no flow: now it is an alarm
    assert h.take() == [("FT-1/l", "unsuppressed", "NORM"), ("FT-1/l", "raised", "UNACK")]


def test_suppressing_tag_going_bad_lifts_the_suppression() -> None:
    h = Harness(_suppressed_config())
    h.feed("UNIT.DOWN", 1.0)
    h.feed("FT-1", 0.0)
    h.take()
    h.feed("UNIT.DOWN", None, "comm")
    assert h.take() == [("FT-1/l", "unsuppressed", "NORM"), ("FT-1/l", "raised", "UNACK")]


def test_gas_alarms_are_not_suppressible_by_default() -> None:
    h = Harness(_suppressed_config())
    assert any("GT-9" in w and "not suppressible" in w for w in h.engine.warnings)
    h.feed("UNIT.DOWN", 1.0)
    h.feed("GT-9", 30.0)
    assert ("GT-9/h", "raised", "UNACK") in h.take()
    h2 = Harness(_suppressed_config(gas_suppressible=True))
    h2.feed("UNIT.DOWN", 1.0)
    h2.feed("GT-9", 30.0)
    assert ("GT-9/h", "suppressed", "DSUPR") in h2.take()


def test_fake_clock_is_the_only_time_source() -> None:
    # the engine reads no real clock: an hour of fake time passes instantly
    cfg = make_config([{"id": "PT-1", "kind": "pressure", "unit": "MPa", "stale_after": "1h", "alarms": {"stale": {}}}])
    h = Harness(cfg, clock=FakeClock(0.0))
    h.feed("PT-1", 1.0)
    h.tick(3599.0)
    assert h.names() == []
    h.tick(1.0)
    assert h.take() == [("PT-1/stale", "raised", "UNACK")]
