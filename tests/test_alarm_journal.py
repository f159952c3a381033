"""The durable journal: real SQLite files in tmp_path, restart without re-raising, overflow."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

import pytest
from test_alarm_support import WALL0, FakeClock, Harness, journal_at, make_config

import alerting.journal as jmod
from alerting import AlarmEvent, Journal

DAY_NS = 86_400 * 10**9


def _config(store: Path) -> Any:
    return make_config(
        [
            {
                "id": "GT-1",
                "kind": "toxic_gas",
                "gas": "Cl2",
                "unit": "mg/m3",
                "hazard_source": "HS-1",
                "alarms": {"hh": {"limit": 2.0, "priority": 1, "latch": True}, "h": {"limit": 1.0, "deadband": 0.1}},
            },
            {
                "id": "PT-1",
                "kind": "pressure",
                "unit": "MPa",
                "hazard_source": "HS-1",
                "alarms": {"h": {"limit": 1.0, "re_alarm": "10m"}},
            },
            {"id": "LT-1", "kind": "level", "unit": "%", "alarms": {"h": {"limit": 80}}},
        ],
        store=str(store),
    )


def _rows(db: Path, sql: str, args: tuple[Any, ...] = ()) -> list[sqlite3.Row]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    try:
        return list(con.execute(sql, args))
    finally:
        con.close()


async def test_restart_restores_state_without_re_raising(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    clock = FakeClock()
    h1 = Harness(cfg, Journal.from_config(cfg), clock)
    await h1.engine.start()
    h1.feed("GT-1", 3.0)  # h and hh raised
    h1.feed("PT-1", 2.0)
    h1.engine.ack("PT-1/h", "zhao")
    h1.engine.ack("GT-1/hh", "zhao")
    h1.feed("GT-1", 0.5)  # hh latched (ACKED, returned); h -> RTNUN
    h1.feed("LT-1", 90)
    h1.engine.shelve("LT-1/h", "li", 3600)
    before = {v.id: v for v in h1.engine.alarms()}
    last_seq = h1.events[-1].seq
    await h1.engine.stop()

    clock.advance(120.0)  # two minutes of downtime
    h2 = Harness(cfg, Journal.from_config(cfg), clock)
    await h2.engine.start()
    try:
        assert h2.events == []  # nothing re-raised, nothing cleared, nothing re-notified
        after = {v.id: v for v in h2.engine.alarms()}
        for key in ("GT-1/hh", "GT-1/h", "PT-1/h", "LT-1/h"):
            b, a = before[key], after[key]
            assert (a.state, a.active, a.occurrence, a.acked_by, a.shelved) == (
                b.state,
                b.active,
                b.occurrence,
                b.acked_by,
                b.shelved,
            ), key
        assert after["GT-1/hh"].state == "ACKED" and not after["GT-1/hh"].active  # latched, waiting for reset
        assert after["GT-1/h"].state == "RTNUN"
        assert after["LT-1/h"].state == "SHLVD"
        assert {v.id for v in h2.engine.active()} == {"GT-1/hh", "GT-1/h", "PT-1/h"}
        assert h2.engine.status("HS-1").status == "orange"  # PT-1/h (p2) active on a grade-2 source

        h2.feed("PT-1", 2.5)  # still above the limit: no new raise
        h2.feed("GT-1", 0.5)
        assert h2.events == []
        h2.feed("PT-1", 0.1)  # the process returns: a real, journaled clear
        assert h2.take() == [("PT-1/h", "cleared", "NORM")]
        assert h2.events == [] and h2.engine.history(1)[0].seq == last_seq + 1  # sequence continues
        h2.feed("PT-1", 2.0)
        new_occ = h2.engine.get("PT-1/h").occurrence
        assert new_occ is not None and new_occ > max(v.occurrence or 0 for v in before.values())
        # the shelf keeps its wall-clock expiry across the restart: 3600 s - 120 s left
        h2.tick(3600.0 - 120.0 - 1.0)
        assert h2.engine.get("LT-1/h").shelved
        h2.tick(1.0)
        assert ("LT-1/h", "unshelved", "NORM") in h2.take()
        h2.engine.ack("GT-1/hh", "zhao", "reset after restart")
        assert h2.take() == [("GT-1/hh", "acked", "NORM")]
    finally:
        await h2.engine.stop()


async def test_re_alarm_timer_survives_restart(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    clock = FakeClock()
    h1 = Harness(cfg, Journal.from_config(cfg), clock)
    await h1.engine.start()
    h1.feed("PT-1", 2.0)
    h1.engine.ack("PT-1/h", "zhao")
    await h1.engine.stop()
    clock.advance(300.0)
    h2 = Harness(cfg, Journal.from_config(cfg), clock)
    await h2.engine.start()
    try:
        h2.tick(299.0)
        assert h2.events == []
        h2.tick(1.0)  # 600 s after the acknowledge, downtime included
        assert h2.take() == [("PT-1/h", "realarmed", "UNACK")]
    finally:
        await h2.engine.stop()


async def test_journal_contents(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    h = Harness(cfg, Journal.from_config(cfg))
    await h.engine.start()
    src_ts = WALL0 + 123_456_789
    h.feed("PT-1", 2.0, ts=src_ts)
    occ = h.engine.get("PT-1/h").occurrence
    assert occ is not None
    h.engine.ack("PT-1/h", "zhao", "operator on the way")
    h.feed("PT-1", 0.2, ts=src_ts + 10**9)
    h.engine.dispose(occ, "regulator drift", "regulator reset", "zhao", "pressure normal", user="li")
    await h.engine.stop()
    db = tmp_path / "alarm-journal.sqlite3"
    assert _rows(db, "PRAGMA journal_mode")[0][0] == "wal"
    ev = _rows(db, "SELECT * FROM events ORDER BY seq")
    assert [(r["event"], r["state"], r["prev_state"]) for r in ev] == [
        ("raised", "UNACK", "NORM"),
        ("acked", "ACKED", "UNACK"),
        ("cleared", "NORM", "ACKED"),
        ("disposed", "NORM", "NORM"),
    ]
    raised, acked, cleared, disposed = ev
    assert (raised["alarm"], raised["tag"], raised["condition"], raised["priority"], raised["hs"]) == (
        "PT-1/h",
        "PT-1",
        "h",
        2,
        "HS-1",
    )
    assert (raised["value"], raised["limit_value"], raised["ts_ns"], raised["occurrence"]) == (2.0, 1.0, src_ts, occ)
    assert (acked["user"], acked["comment"]) == ("zhao", "operator on the way")
    assert cleared["ts_ns"] == src_ts + 10**9 and cleared["value"] == 0.2
    assert disposed["user"] == "li" and '"cause": "regulator drift"' in disposed["data"]
    o = _rows(db, "SELECT * FROM occurrences")
    assert len(o) == 1
    o0 = o[0]
    assert (o0["id"], o0["raised_ts"], o0["acked_by"], o0["cleared_ts"]) == (occ, src_ts, "zhao", src_ts + 10**9)
    assert o0["closed_wall"] is not None
    assert (o0["cause"], o0["action"], o0["handler"], o0["result"], o0["disposed_by"]) == (
        "regulator drift",
        "regulator reset",
        "zhao",
        "pressure normal",
        "li",
    )
    st = _rows(db, "SELECT state FROM alarm_state WHERE alarm = 'PT-1/h'")
    assert st[0]["state"] == "NORM"
    # the read API returns the same
    j = Journal.from_config(cfg)
    got = j.events(alarm="PT-1/h", newest_first=False)
    assert [e["event"] for e in got] == ["raised", "acked", "cleared", "disposed"]
    assert got[3]["data"]["result"] == "pressure normal"
    assert j.occurrences(occurrence=occ)[0]["result"] == "pressure normal"


def _event(
    seq: int,
    wall: int = WALL0,
    occ: int | None = None,
    event: str = "raised",
    state: str = "UNACK",
    prev: str = "NORM",
) -> AlarmEvent:
    return AlarmEvent(
        seq=seq,
        event=event,
        alarm="X/h",
        tag="X",
        condition="h",
        priority=2,
        state=state,
        prev_state=prev,
        active=True,
        occurrence=occ,
        value=1.0,
        limit=0.5,
        ts=wall,
        wall=wall,
    )


async def test_overflow_writes_synchronously_and_loses_nothing(tmp_path: Path) -> None:
    j = journal_at(tmp_path, max_queue=5, group_size=2)
    j.open()
    await j.start()
    # the writer task cannot run while we submit without yielding: the queue fills up
    for i in range(1, 13):
        j.submit(_event(i), {"state": "UNACK"})
    assert j.sync_flushes == 2 and j.queued == 2
    assert len(_rows(j.file, "SELECT seq FROM events")) == 10  # written before submit returned
    await j.stop()
    assert [r[0] for r in _rows(j.file, "SELECT seq FROM events ORDER BY seq")] == list(range(1, 13))


async def test_writer_commits_in_small_groups(tmp_path: Path) -> None:
    from gateway.core.metrics import Metrics

    m = Metrics()
    j = Journal(tmp_path, m, group_size=3)
    j.open()
    await j.start()
    for i in range(1, 11):
        j.submit(_event(i), None)
    await j.stop()
    assert len(_rows(j.file, "SELECT seq FROM events")) == 10
    assert m.registry.get_sample_value("hazardgw_alarm_journal_commits_total") == 4  # 3 + 3 + 3 + 1
    assert m.registry.get_sample_value("hazardgw_alarm_journal_events_total") == 10


def test_failed_write_keeps_events_queued(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    j = journal_at(tmp_path)
    j.open()
    real = jmod._write_event
    calls = {"n": 0}

    def flaky(con: sqlite3.Connection, ev: AlarmEvent, snap: dict[str, Any] | None) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise sqlite3.OperationalError("disk I/O error")
        real(con, ev, snap)

    monkeypatch.setattr(jmod, "_write_event", flaky)
    for i in range(1, 4):
        j.submit(_event(i), None)
    with pytest.raises(sqlite3.OperationalError):
        j.flush()
    assert j.queued == 3  # rolled back and put back in order
    assert _rows(j.file, "SELECT count(*) FROM events")[0][0] == 0
    assert j.flush() == 3
    assert [r[0] for r in _rows(j.file, "SELECT seq FROM events ORDER BY seq")] == [1, 2, 3]


def test_hard_max_drops_only_when_the_disk_keeps_failing(tmp_path: Path) -> None:
    j = journal_at(tmp_path, max_queue=2, hard_max=4)
    for i in range(1, 5):
        j._queue.append((_event(i), None))
    j._failed(OSError("disk full"))
    assert j.queued == 4 and j.health()["ok"] is False
    j._queue.append((_event(5), None))
    j._failed(OSError("disk full"))
    assert j.queued == 4 and j._queue[0][0].seq == 2  # the oldest record went, counted


def test_retention_prunes_old_rows_but_keeps_open_occurrences(tmp_path: Path) -> None:
    j = journal_at(tmp_path, retention=30 * 86400)
    j.open()
    old = WALL0 - 40 * DAY_NS
    j.submit(_event(1, old, occ=1), None)
    j.submit(_event(2, old, occ=1, event="cleared", state="NORM", prev="UNACK"), None)
    j.submit(_event(3, old, occ=2), None)  # occurrence 2 never closed
    j.submit(_event(4, WALL0, occ=3), None)
    j.flush()
    assert j.prune(WALL0) == 4  # three old events + closed occurrence 1
    assert [r[0] for r in _rows(j.file, "SELECT seq FROM events")] == [4]
    assert sorted(r[0] for r in _rows(j.file, "SELECT id FROM occurrences")) == [2, 3]


def test_default_retention_keeps_the_month_a_monthly_report_needs(tmp_path: Path) -> None:
    # a report on last month taken up to a month late still sees all of it (issue 19 noted 30 d cut it)
    default = make_config([]).alarming.journal_retention
    assert default >= 62 * 86400
    j = journal_at(tmp_path, retention=default)
    j.open()
    j.submit(_event(1, WALL0 - 61 * DAY_NS, occ=1), None)
    j.submit(_event(2, WALL0 - 61 * DAY_NS, occ=1, event="cleared", state="NORM", prev="UNACK"), None)
    j.flush()
    assert j.prune(WALL0) == 0


def test_retention_below_30_days_is_rejected() -> None:
    with pytest.raises(ValueError, match="30 days"):
        make_config([], alarming={"journal_retention": "29d"})


async def test_engine_runs_without_a_journal_that_cannot_open(tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    cfg = _config(blocker / "store")
    h = Harness(cfg, Journal.from_config(cfg))
    await h.engine.start()
    try:
        h.feed("PT-1", 2.0)
        assert h.take() == [("PT-1/h", "raised", "UNACK")]  # alarms keep working
        health = h.engine.health()
        assert health["ok"] is False and health["journal"]["error"]
    finally:
        await h.engine.stop()


async def test_active_vote_is_not_cleared_by_the_first_clean_detector_after_restart(tmp_path: Path) -> None:
    gas = [
        {
            "id": f"GT-{i}",
            "kind": "toxic_gas",
            "gas": "Cl2",
            "unit": "mg/m3",
            "hazard_source": "HS-1",
            "alarms": {"h": {"limit": 1.0}},
        }
        for i in (1, 2, 3)
    ]
    cfg = make_config(gas, votes=[{"id": "ZONE", "tags": ["GT-1", "GT-2", "GT-3"], "k": 2}], store=str(tmp_path))
    clock = FakeClock()
    h1 = Harness(cfg, Journal.from_config(cfg), clock)
    await h1.engine.start()
    for t, v in (("GT-1", 1.5), ("GT-2", 1.5), ("GT-3", 0.0)):
        h1.feed(t, v)
    assert h1.engine.get("ZONE/vote").state == "UNACK"
    await h1.engine.stop()
    h2 = Harness(cfg, Journal.from_config(cfg), clock)
    await h2.engine.start()
    try:
        h2.feed("GT-3", 0.0)
        h2.feed("GT-1", 0.0)  # GT-2 not heard from since the restart: the vote holds
        assert h2.engine.get("ZONE/vote").state == "UNACK" and ("ZONE/vote", "cleared", "RTNUN") not in h2.names()
        h2.feed("GT-2", 0.0)
        assert ("ZONE/vote", "cleared", "RTNUN") in h2.take()
    finally:
        await h2.engine.stop()
