"""The ISA-18.2 state machine: the table row by row, then the same rules through the engine."""

from __future__ import annotations

import pytest
from test_alarm_support import Harness, make_config

from alerting import AlarmNotFound, InvalidTransition, NotPermitted
from alerting import states as S
from gateway.config import Config

A, R, K = S.ACTIVATE, S.RETURN, S.ACK

# (state, input, active after input, latched, flags (oos, suppressed, shelved) after input) -> (state, event)
ROWS = [
    # ISA-18.2 figure: A NORM -> B UNACK -> C ACKED -> A; B -> D RTNUN -> A
    (S.NORM, A, True, False, (0, 0, 0), S.UNACK, "raised"),
    (S.UNACK, K, True, False, (0, 0, 0), S.ACKED, "acked"),  # ack never clears
    (S.ACKED, R, False, False, (0, 0, 0), S.NORM, "cleared"),
    (S.UNACK, R, False, False, (0, 0, 0), S.RTNUN, "cleared"),
    (S.RTNUN, K, False, False, (0, 0, 0), S.NORM, "acked"),
    (S.RTNUN, A, True, False, (0, 0, 0), S.UNACK, "raised"),  # returns, then trips again before ack
    (S.NORM, R, False, False, (0, 0, 0), S.NORM, None),
    (S.UNACK, A, True, False, (0, 0, 0), S.UNACK, None),
    # latching
    (S.ACKED, R, False, True, (0, 0, 0), S.ACKED, "cleared"),  # latched: stays until reset
    (S.ACKED, K, False, True, (0, 0, 0), S.NORM, "acked"),  # reset after return
    (S.ACKED, A, True, True, (0, 0, 0), S.UNACK, "raised"),  # latched, trips again
    (S.UNACK, R, False, True, (0, 0, 0), S.RTNUN, "cleared"),
    # re-alarm
    (S.ACKED, S.REALARM, True, False, (0, 0, 0), S.UNACK, "realarmed"),
    (S.UNACK, S.REALARM, True, False, (0, 0, 0), S.UNACK, None),
    (S.NORM, S.REALARM, False, False, (0, 0, 0), S.NORM, None),
    # shelving (E)
    (S.UNACK, S.SHELVE, True, False, (0, 0, 1), S.SHLVD, "shelved"),
    (S.NORM, S.SHELVE, False, False, (0, 0, 1), S.SHLVD, "shelved"),
    (S.SHLVD, A, True, False, (0, 0, 1), S.SHLVD, None),  # shelved: no annunciation
    (S.SHLVD, S.SHELVE, True, False, (0, 0, 1), S.SHLVD, "shelved"),  # re-shelve
    (S.SHLVD, S.UNSHELVE, True, False, (0, 0, 0), S.NORM, "unshelved"),  # engine then raises
    (S.SHLVD, S.SUPPRESS, True, False, (0, 1, 1), S.DSUPR, "suppressed"),
    # suppressed by design (F)
    (S.ACKED, S.SUPPRESS, True, False, (0, 1, 0), S.DSUPR, "suppressed"),
    (S.DSUPR, S.UNSUPPRESS, True, False, (0, 0, 0), S.NORM, "unsuppressed"),
    (S.DSUPR, S.UNSUPPRESS, True, False, (0, 0, 1), S.SHLVD, "unsuppressed"),  # back to the shelf
    (S.DSUPR, A, True, False, (0, 1, 0), S.DSUPR, None),
    (S.DSUPR, S.SHELVE, True, False, (0, 1, 1), S.DSUPR, "shelved"),
    # out of service (G)
    (S.UNACK, S.REMOVE, True, False, (1, 0, 0), S.OOSRV, "out_of_service"),
    (S.DSUPR, S.REMOVE, True, False, (1, 1, 0), S.OOSRV, "out_of_service"),
    (S.OOSRV, A, True, False, (1, 0, 0), S.OOSRV, None),
    (S.OOSRV, S.SUPPRESS, True, False, (1, 1, 0), S.OOSRV, None),
    (S.OOSRV, S.RESTORE, True, False, (0, 0, 0), S.NORM, "in_service"),
    (S.OOSRV, S.RESTORE, True, False, (0, 1, 0), S.DSUPR, "in_service"),
    (S.OOSRV, S.RESTORE, False, False, (0, 0, 1), S.SHLVD, "in_service"),
]


@pytest.mark.parametrize(("state", "inp", "active", "latched", "flags", "nxt", "event"), ROWS)
def test_transition_table(
    state: str, inp: str, active: bool, latched: bool, flags: tuple[int, int, int], nxt: str, event: str | None
) -> None:
    oos, supp, shelved = (bool(f) for f in flags)
    got = S.step(state, inp, active=active, latched=latched, oos=oos, suppressed=supp, shelved=shelved)
    assert got == (nxt, event)


INVALID = [
    (S.NORM, K, False),
    (S.ACKED, K, True),
    (S.SHLVD, K, True),
    (S.DSUPR, K, True),
    (S.OOSRV, K, True),
    (S.OOSRV, S.SHELVE, True),
    (S.OOSRV, S.REMOVE, True),
    (S.NORM, S.RESTORE, False),
    (S.UNACK, S.UNSHELVE, True),
]


@pytest.mark.parametrize(("state", "inp", "active"), INVALID)
def test_invalid_operator_actions(state: str, inp: str, active: bool) -> None:
    with pytest.raises(InvalidTransition):
        S.step(state, inp, active=active, latched=False)


def test_table_is_complete_and_ack_never_clears() -> None:
    assert set(S.TABLE) == {(s, i) for s in S.STATES for i in S.INPUTS}
    for state in set(S.STATES) - {S.NORM, S.RTNUN}:  # the states an active alarm can be in
        for latched in (False, True):
            try:
                nxt, _ = S.step(state, K, active=True, latched=latched)
            except InvalidTransition:
                continue
            assert nxt not in (S.NORM, S.RTNUN), f"ack cleared an active alarm from {state}"


def test_only_the_process_or_operator_leaves_open_states() -> None:
    # from an open state, no input but ACK/RETURN/suppression can reach NORM; and the end of
    # test mode, which the engine feeds only to test occurrences (and then raises an active
    # condition anew as a real alarm: tests/test_alarm_testmode.py)
    for state in S.OPEN:
        for inp in S.INPUTS:
            try:
                nxt, _ = S.step(state, inp, active=inp != R, latched=False)
            except InvalidTransition:
                continue
            if nxt == S.NORM:
                assert inp in (R, K, S.END_TEST), (state, inp)


def test_end_of_test_closes_any_open_state_and_nothing_else() -> None:
    for state in S.STATES:
        for active in (True, False):
            nxt, ev = S.step(state, S.END_TEST, active=active, latched=True)
            if state in S.OPEN:
                assert (nxt, ev) == (S.NORM, S.TEST_ENDED), state
            else:
                assert (nxt, ev) == (state, None), state


# ----------------------------------------------------------------------------- through the engine


def _cfg(**alarm: object) -> Config:
    spec = {"limit": 1.0, "priority": 2, **alarm}
    return make_config(
        [{"id": "PT-1", "kind": "pressure", "unit": "MPa", "hazard_source": "HS-1", "alarms": {"h": spec}}]
    )


def test_ack_never_clears_through_the_engine() -> None:
    h = Harness(_cfg())
    h.feed("PT-1", 2.0)
    occ = h.engine.get("PT-1/h").occurrence
    assert occ is not None
    ev = h.engine.ack(occ, "zhao", "seen")
    assert (ev.state, ev.user, ev.comment, ev.occurrence) == ("ACKED", "zhao", "seen", occ)
    assert h.engine.get("PT-1/h").active and [a.id for a in h.engine.active()] == ["PT-1/h"]
    with pytest.raises(InvalidTransition):
        h.engine.ack("PT-1/h", "zhao")  # already acknowledged
    h.feed("PT-1", 0.0)
    assert h.take()[-1] == ("PT-1/h", "cleared", "NORM")
    with pytest.raises(AlarmNotFound):
        h.engine.ack(occ, "zhao")  # that occurrence is closed


def test_operator_actions_need_a_user() -> None:
    h = Harness(_cfg())
    h.feed("PT-1", 2.0)
    with pytest.raises(ValueError, match="user"):
        h.engine.ack("PT-1/h", "  ")
    with pytest.raises(AlarmNotFound):
        h.engine.ack("NOPE/h", "zhao")


def test_shelve_timed_expiry_and_max_8h() -> None:
    h = Harness(_cfg())
    h.feed("PT-1", 2.0)
    with pytest.raises(ValueError, match="<= 28800"):
        h.engine.shelve("PT-1/h", "li", 8 * 3600 + 1)
    with pytest.raises(ValueError):
        h.engine.shelve("PT-1/h", "li")  # neither duration nor one-shot
    ev = h.engine.shelve("PT-1/h", "li", 3600, comment="instrument tech on site")
    assert ev.state == "SHLVD" and ev.data is not None and ev.data["until"] == h.clock.wall() + 3600 * 10**9
    assert h.engine.active() == [] and [v.id for v in h.engine.suppressed()] == ["PT-1/h"]
    h.feed("PT-1", 0.0)
    h.feed("PT-1", 3.0)  # changes while shelved: not annunciated
    h.take()
    h.tick(3599.0)
    assert h.names() == []
    h.tick(1.0)  # shelf expired, condition active -> a new occurrence is raised
    assert h.take() == [("PT-1/h", "unshelved", "NORM"), ("PT-1/h", "raised", "UNACK")]
    assert h.engine.history(2)[1].user == "system"


def test_shelve_one_shot_ends_when_the_alarm_returns() -> None:
    h = Harness(_cfg())
    with pytest.raises(NotPermitted):
        h.engine.shelve("PT-1/h", "li", one_shot=True)  # nothing active to shelve once
    h.feed("PT-1", 2.0)
    h.engine.shelve("PT-1/h", "li", one_shot=True)
    h.feed("PT-1", 0.0)
    assert h.take()[-2:] == [("PT-1/h", "shelved", "SHLVD"), ("PT-1/h", "unshelved", "NORM")]
    h.feed("PT-1", 2.0)
    assert h.take() == [("PT-1/h", "raised", "UNACK")]


def test_one_shot_shelve_is_also_limited_to_8h() -> None:
    h = Harness(_cfg())
    h.feed("PT-1", 2.0)
    h.engine.shelve("PT-1/h", "li", one_shot=True)
    h.take()
    h.tick(8 * 3600.0)
    assert h.take() == [("PT-1/h", "unshelved", "NORM"), ("PT-1/h", "raised", "UNACK")]


def test_gas_alarms_cannot_be_shelved() -> None:
    cfg = make_config(
        [{"id": "GT-1", "kind": "toxic_gas", "gas": "H2S", "unit": "mg/m3", "alarms": {"h": {"limit": 10}}}]
    )
    h = Harness(cfg)
    h.feed("GT-1", 12)
    with pytest.raises(NotPermitted, match="suppressible"):
        h.engine.shelve("GT-1/h", "li", 60)
    assert h.state("GT-1/h") == "UNACK"


def test_unshelve_by_operator() -> None:
    h = Harness(_cfg())
    with pytest.raises(InvalidTransition):
        h.engine.unshelve("PT-1/h", "li")
    h.engine.shelve("PT-1/h", "li", 600)
    h.feed("PT-1", 2.0)
    h.engine.unshelve("PT-1/h", "li", "done")
    assert h.take()[-2:] == [("PT-1/h", "unshelved", "NORM"), ("PT-1/h", "raised", "UNACK")]


def test_out_of_service_and_back() -> None:
    h = Harness(_cfg())
    h.feed("PT-1", 2.0)
    occ = h.engine.get("PT-1/h").occurrence
    ev = h.engine.set_out_of_service("PT-1/h", "li", True, "transmitter replaced")
    assert (ev.state, ev.occurrence) == ("OOSRV", occ)  # closes the open occurrence
    with pytest.raises(InvalidTransition):
        h.engine.shelve("PT-1/h", "li", 60)
    with pytest.raises(InvalidTransition):
        h.engine.ack("PT-1/h", "li")
    h.feed("PT-1", 0.0)
    h.feed("PT-1", 5.0)
    assert h.take() == [("PT-1/h", "raised", "UNACK"), ("PT-1/h", "out_of_service", "OOSRV")]
    h.engine.set_out_of_service("PT-1/h", "li", False)
    assert h.take() == [("PT-1/h", "in_service", "NORM"), ("PT-1/h", "raised", "UNACK")]
    assert h.engine.get("PT-1/h").occurrence != occ


def test_re_alarm_when_acked_and_still_active() -> None:
    h = Harness(_cfg(re_alarm="10m"))
    h.feed("PT-1", 2.0)
    h.engine.ack("PT-1/h", "zhao")
    h.take()
    h.tick(599.0)
    assert h.names() == []
    h.tick(1.0)
    assert h.take() == [("PT-1/h", "realarmed", "UNACK")]
    h.engine.ack("PT-1/h", "zhao")
    h.feed("PT-1", 0.0)
    h.tick(600.0)  # returned: no more re-alarm
    assert h.take() == [("PT-1/h", "acked", "ACKED"), ("PT-1/h", "cleared", "NORM")]


def test_occurrence_ids_are_unique_and_increasing() -> None:
    h = Harness(_cfg(deadband=0))
    occs = []
    for _ in range(3):
        h.feed("PT-1", 2.0)
        occs.append(h.engine.get("PT-1/h").occurrence)
        h.feed("PT-1", 0.0)
        h.engine.ack("PT-1/h", "zhao")
    assert occs == sorted(set(occs)) and len(occs) == 3
    seqs = [e.seq for e in h.events]
    assert seqs == list(range(1, len(seqs) + 1))


def test_chattering_flag_and_counter() -> None:
    h = Harness(_cfg(deadband=0))
    for i in range(3):
        h.at(i * 10, "PT-1", 2.0)
        h.at(i * 10 + 5, "PT-1", 0.0)
    raised = [e for e in h.events if e.event == "raised"]
    assert [e.chattering for e in raised] == [False, False, True]
    assert h.metric("hazardgw_alarm_chattering_total") == 1
    assert h.engine.get("PT-1/h").chattering
    h.tick(61.0)
    assert not h.engine.get("PT-1/h").chattering


def test_chattering_needs_the_cycles_within_the_window() -> None:
    h = Harness(_cfg(deadband=0))
    for i in range(3):
        h.at(i * 31, "PT-1", 2.0)
        h.at(i * 31 + 1, "PT-1", 0.0)
    assert not any(e.chattering for e in h.events)


def test_flood_after_more_than_10_annunciations_in_10_minutes() -> None:
    tags = [{"id": f"PT-{i}", "kind": "pressure", "unit": "MPa", "alarms": {"h": {"limit": 1.0}}} for i in range(12)]
    h = Harness(make_config(tags))
    for i in range(12):
        h.at(i * 50, f"PT-{i}", 2.0)  # 11th within 500 s
    flags = [e.flood for e in h.events]
    assert flags == [False] * 10 + [True, True]
    assert h.engine.flood and h.metric("hazardgw_alarm_floods_total") == 1
    assert h.metric("hazardgw_alarm_flood") == 1
    h.clock.now = 1000.0 + 50 + 601  # the 2nd annunciation leaves the window
    h.tick()
    assert not h.engine.flood and h.metric("hazardgw_alarm_flood") == 0


def test_dispose_closed_occurrence() -> None:
    h = Harness(_cfg())
    h.feed("PT-1", 2.0)
    occ = h.engine.get("PT-1/h").occurrence
    assert occ is not None
    h.engine.ack(occ, "zhao")
    h.feed("PT-1", 0.0)
    with pytest.raises(ValueError, match="result"):
        h.engine.dispose(occ, "valve stuck", "isolated", "zhao", "")
    ev = h.engine.dispose(occ, "relief valve stuck", "isolated and replaced", "zhao", "closed", user="li")
    assert (ev.event, ev.state, ev.occurrence, ev.user) == ("disposed", "NORM", occ, "li")
    assert dict(ev.data or {}) == {
        "cause": "relief valve stuck",
        "action": "isolated and replaced",
        "handler": "zhao",
        "result": "closed",
    }
    with pytest.raises(AlarmNotFound):
        h.engine.dispose(occ + 100, "a", "b", "c", "d")
