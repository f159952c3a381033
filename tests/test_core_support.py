"""The shared helpers of gateway/core: backoff with jitter, rate-limited logging, SQLite open/migrate.

The SQLite tests use real files in tmp_path, including files written by the code from before
gateway/core/sqlite.py (tests/data/legacy-*.sql, dumped from such files).
"""

from __future__ import annotations

import logging
import math
import random
import sqlite3
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from alerting.events import AlarmEvent
from alerting.journal import MIGRATIONS as JOURNAL_MIGRATIONS
from alerting.journal import Journal, JournalError
from alerting.notify.store import MIGRATIONS as STORE_MIGRATIONS
from alerting.notify.store import NotifyStore
from gateway.core import sqlite
from gateway.core.backoff import JITTER, Backoff
from gateway.core.ratelog import RateLimitedLog

DATA = Path(__file__).parent / "data"
W = 1_700_000_000_000_000_000  # the wall time (ns) in the legacy files


# ---------------------------------------------------------------------- backoff


def _const(x: float) -> Callable[[], float]:
    return lambda: x


def test_backoff_doubles_from_initial_up_to_the_cap() -> None:
    b = Backoff(0.5, 4.0, jitter=False)
    assert [b.next_delay() for _ in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert b.attempts == 6


def test_backoff_reset_starts_over_at_initial() -> None:
    b = Backoff(1.0, 60.0, jitter=False)
    for _ in range(5):
        b.next_delay()
    b.reset()
    assert b.attempts == 0
    assert [b.next_delay(), b.next_delay()] == [1.0, 2.0]


def test_backoff_delay_is_pure() -> None:
    b = Backoff(1.0, 300.0, jitter=False)
    assert [b.delay(n) for n in (0, 1, 2, 8, 9)] == [1.0, 2.0, 4.0, 256.0, 300.0]
    assert b.attempts == 0
    assert b.delay(-1) == 1.0


def test_backoff_jitter_is_plus_minus_20_percent_and_never_above_the_cap() -> None:
    assert JITTER == 0.2
    low = Backoff(1.0, 100.0, rand=_const(0.0))
    assert [low.next_delay() for _ in range(3)] == pytest.approx([0.8, 1.6, 3.2])
    high = Backoff(1.0, 100.0, rand=_const(0.999999))
    assert [high.next_delay() for _ in range(3)] == pytest.approx([1.2, 2.4, 4.8], rel=1e-5)
    # at the cap the upper half of the jitter is clipped: maximum is a hard cap
    capped = Backoff(1.0, 4.0, rand=_const(0.999999))
    assert [capped.next_delay() for _ in range(5)] == pytest.approx([1.2, 2.4, 4.0, 4.0, 4.0], rel=1e-5)
    capped_low = Backoff(1.0, 4.0, rand=_const(0.0))
    assert [capped_low.next_delay() for _ in range(5)] == pytest.approx([0.8, 1.6, 3.2, 3.2, 3.2])


def test_backoff_jitter_spreads_the_whole_range() -> None:
    rng = random.Random(1)
    b = Backoff(10.0, 1000.0, rand=rng.random)
    delays = [b.delay(0) for _ in range(2000)]
    assert all(8.0 <= d < 12.0 for d in delays)
    assert min(delays) < 8.1 and max(delays) > 11.9  # the full +-20 %, not a narrower band
    assert 9.8 < sum(delays) / len(delays) < 10.2  # centred on the base


def test_backoff_maximum_below_initial_and_zero() -> None:
    assert [Backoff(0.5, 0.2, jitter=False).next_delay() for _ in range(2)] == [0.2, 0.2]
    assert Backoff(0.2, 0.1).next_delay() <= 0.1
    assert Backoff(0.2, 0.0).next_delay() == 0.0


def test_backoff_many_attempts_do_not_overflow() -> None:
    b = Backoff(1e-6, 30.0)
    b.attempts = 10_000
    d = b.next_delay()
    assert math.isfinite(d) and 24.0 <= d <= 30.0


@pytest.mark.parametrize(("initial", "maximum"), [(0.0, 1.0), (-1.0, 1.0), (1.0, -1.0), (1.0, math.nan)])
def test_backoff_rejects_bad_bounds(initial: float, maximum: float) -> None:
    with pytest.raises(ValueError, match="backoff needs"):
        Backoff(initial, maximum)


# ---------------------------------------------------------------------- rate-limited log


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_ratelog_logs_the_first_then_counts_repeats(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="test.ratelog")
    clock = Clock()
    rl = RateLimitedLog(logging.getLogger("test.ratelog"), 30.0, clock=clock)
    assert rl.warning("k", "bad thing %d", 1) is True
    clock.t += 10
    assert rl.warning("k", "bad thing %d", 2) is False
    clock.t += 10
    assert rl.warning("k", "bad thing %d", 3) is False
    assert [r.getMessage() for r in caplog.records] == ["bad thing 1"]
    clock.t += 21  # 41 s after the first
    assert rl.warning("k", "bad thing %d", 4) is True
    assert caplog.records[-1].getMessage() == "bad thing 4 (2 similar suppressed in the last 41 s)"
    assert caplog.records[-1].levelno == logging.WARNING
    clock.t += 30  # nothing suppressed since: no count
    assert rl.warning("k", "bad thing %d", 5) is True
    assert caplog.records[-1].getMessage() == "bad thing 5"


def test_ratelog_keys_are_independent(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="test.ratelog")
    rl = RateLimitedLog(logging.getLogger("test.ratelog"), 30.0, clock=Clock())
    assert rl.log(logging.INFO, "dev-1", "device %s down", "1")
    assert rl.log(logging.INFO, "dev-2", "device %s down", "2")
    assert not rl.log(logging.INFO, "dev-1", "device %s down", "1")
    assert [r.getMessage() for r in caplog.records] == ["device 1 down", "device 2 down"]


def test_ratelog_error_carries_the_traceback(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="test.ratelog")
    rl = RateLimitedLog(logging.getLogger("test.ratelog"), 30.0, clock=Clock())
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        assert rl.error("cb", "subscriber %s failed", "x", exc_info=True)
        assert not rl.error("cb", "subscriber %s failed", "x", exc_info=True)
    (rec,) = caplog.records
    assert rec.levelno == logging.ERROR and rec.exc_info is not None and rec.exc_info[0] is RuntimeError
    assert "RuntimeError: boom" in caplog.text


# ---------------------------------------------------------------------- sqlite


def test_connect_creates_a_wal_file_with_full_sync_and_the_schema(tmp_path: Path) -> None:
    f = tmp_path / "sub" / "x.sqlite3"
    con = sqlite.connect(
        f,
        ["CREATE TABLE a (x INTEGER);", "CREATE TABLE b (y TEXT); INSERT INTO b VALUES ('1;2');"],
        file_mode=0o600,
        foreign_keys=True,
    )
    try:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        assert con.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert sqlite.user_version(con) == 2
        assert con.execute("SELECT y FROM b").fetchall() == [("1;2",)]
        assert con.isolation_level is None
    finally:
        con.close()
    assert stat.S_IMODE(f.stat().st_mode) == 0o600


def test_migrate_applies_only_the_missing_scripts_in_order(tmp_path: Path) -> None:
    f = tmp_path / "x.sqlite3"
    v1 = ["CREATE TABLE a (x INTEGER); INSERT INTO a VALUES (1);"]  # not re-runnable: must run once
    sqlite.connect(f, v1).close()
    v2 = [*v1, "ALTER TABLE a ADD COLUMN y TEXT DEFAULT 'n'; UPDATE a SET y = 'm';"]
    con = sqlite.connect(f, v2)
    try:
        assert sqlite.user_version(con) == 2
        assert con.execute("SELECT x, y FROM a").fetchall() == [(1, "m")]
        assert sqlite.migrate(con, v2) == 2  # up to date: nothing to do
    finally:
        con.close()


def test_a_failing_migration_changes_nothing(tmp_path: Path) -> None:
    f = tmp_path / "x.sqlite3"
    sqlite.connect(f, ["CREATE TABLE a (x INTEGER);"]).close()
    bad = ["CREATE TABLE a (x INTEGER);", "CREATE TABLE b (y); INSERT INTO nosuchtable VALUES (1);"]
    with pytest.raises(sqlite3.OperationalError, match="nosuchtable"):
        sqlite.connect(f, bad)
    con = sqlite3.connect(f)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 1
        names = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        assert names == {"a"}  # b was rolled back with the rest
    finally:
        con.close()


def test_a_newer_file_is_refused_untouched(tmp_path: Path) -> None:
    f = tmp_path / "x.sqlite3"
    sqlite.connect(f, ["CREATE TABLE a (x);", "CREATE TABLE b (y);"]).close()
    with pytest.raises(sqlite.SchemaError, match="schema version 2 is newer than this gateway's \\(1\\)"):
        sqlite.connect(f, ["CREATE TABLE a (x);"])
    assert issubclass(sqlite.SchemaError, sqlite3.OperationalError)
    con = sqlite3.connect(f)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 2
    finally:
        con.close()


def test_incomplete_migration_script_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="incomplete statement"):
        list(sqlite.statements("CREATE TABLE a (x); CREATE TABLE b (y)"))
    assert list(sqlite.statements("-- only a comment; here\n")) == []
    trigger = "CREATE TRIGGER t AFTER INSERT ON a BEGIN DELETE FROM b; DELETE FROM c; END;"
    assert list(sqlite.statements(f"CREATE TABLE a (x);\n{trigger}\n-- end")) == ["CREATE TABLE a (x);", trigger]


def test_readonly_connection_reads_but_cannot_write(tmp_path: Path) -> None:
    f = tmp_path / "x.sqlite3"
    w = sqlite.connect(f, ["CREATE TABLE a (x); INSERT INTO a VALUES (7);"])
    try:
        ro = sqlite.connect_readonly(f)
        try:
            assert dict(ro.execute("SELECT x FROM a").fetchone()) == {"x": 7}
            with pytest.raises(sqlite3.OperationalError, match="readonly"):
                ro.execute("INSERT INTO a VALUES (8)")
        finally:
            ro.close()
    finally:
        w.close()
    with pytest.raises(sqlite3.OperationalError):
        sqlite.connect_readonly(tmp_path / "missing.sqlite3")


def _legacy(tmp_path: Path, name: str) -> Path:
    """A file as the code before gateway/core/sqlite.py left it (WAL, user_version 0)."""
    f = tmp_path / f"{name}.sqlite3"
    con = sqlite3.connect(f, isolation_level=None)
    try:
        assert con.execute("PRAGMA journal_mode=WAL").fetchone()[0] == "wal"
        con.executescript((DATA / f"legacy-{name}.sql").read_text())
        assert con.execute("PRAGMA user_version").fetchone()[0] == 0
    finally:
        con.close()
    return f


def _schema(f: Path) -> list[tuple[str, str, str]]:
    con = sqlite3.connect(f)
    try:
        return sorted(con.execute("SELECT type, name, sql FROM sqlite_master WHERE sql IS NOT NULL"))
    finally:
        con.close()


def _version_and_meta(f: Path) -> tuple[int, str]:
    con = sqlite3.connect(f)
    try:
        return (
            con.execute("PRAGMA user_version").fetchone()[0],
            con.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()[0],
        )
    finally:
        con.close()


def test_new_files_have_exactly_the_schema_the_old_code_made(tmp_path: Path) -> None:
    # the first migration of each store is the schema the old code made (the journal's second
    # one, test mode, is checked below)
    for name, migrations in (("alarm-journal", JOURNAL_MIGRATIONS[:1]), ("notify-outbox", STORE_MIGRATIONS)):
        fresh = tmp_path / f"fresh-{name}.sqlite3"
        sqlite.connect(fresh, migrations).close()
        assert _schema(fresh) == _schema(_legacy(tmp_path, name)), name
        assert _version_and_meta(fresh) == (1, "1")


def test_journal_migration_2_adds_the_test_columns_to_an_old_file(tmp_path: Path) -> None:
    old = _legacy(tmp_path, "alarm-journal")
    sqlite.connect(old, JOURNAL_MIGRATIONS).close()
    fresh = tmp_path / "fresh.sqlite3"
    sqlite.connect(fresh, JOURNAL_MIGRATIONS).close()
    assert _schema(fresh) == _schema(old)
    assert _version_and_meta(old) == (2, "2")
    con = sqlite3.connect(old)
    try:
        cols = {t: [r[1] for r in con.execute(f"PRAGMA table_info({t})")] for t in ("events", "occurrences")}
        assert cols["events"][-1] == "test" and cols["occurrences"][-1] == "test"
        assert con.execute("SELECT test FROM events").fetchall() == [(0,)]  # old rows: not a test
    finally:
        con.close()


def test_journal_opens_a_file_from_before_user_version(tmp_path: Path) -> None:
    f = _legacy(tmp_path, "alarm-journal")
    j = Journal(f, wall=lambda: W)
    restored = j.open()
    try:
        assert restored.alarms == {"GT-1/hh": {"state": "UNACK", "occurrence": 3, "active": True}}
        assert (restored.max_seq, restored.max_occurrence) == (7, 3)
        assert [(e["seq"], e["alarm"], e["value"]) for e in j.events()] == [(7, "GT-1/hh", 2.5)]
        ev = AlarmEvent(
            seq=8,
            event="raised",
            alarm="PT-1/h",
            tag="PT-1",
            condition="h",
            priority=2,
            state="UNACK",
            prev_state="NORM",
            active=True,
            occurrence=4,
            value=1.5,
            limit=1.0,
            ts=W,
            wall=W,
        )
        j.submit(ev, None)
        assert j.flush() == 1
        assert [e["seq"] for e in j.events()] == [8, 7]
    finally:
        j._flush_and_close()
    assert _version_and_meta(f) == (2, "2")
    j2 = Journal(f, wall=lambda: W)  # and again, now at user_version 2
    try:
        assert j2.open().max_seq == 8
    finally:
        j2._flush_and_close()


def test_journal_refuses_a_newer_file_with_a_journal_error(tmp_path: Path) -> None:
    f = tmp_path / "alarm-journal.sqlite3"
    sqlite.connect(f, [*JOURNAL_MIGRATIONS, "CREATE TABLE later (x);"]).close()
    with pytest.raises(JournalError, match="newer than this gateway"):
        Journal(f).open()


def test_notify_store_opens_a_file_from_before_user_version(tmp_path: Path) -> None:
    _legacy(tmp_path, "notify-outbox")
    s = NotifyStore(tmp_path)  # the file name is fixed: notify-outbox.sqlite3
    try:
        (p,) = s.open_pushes()
        assert (p.key, p.person, p.status, p.info) == ("a:3:0:0:zhao", "zhao", "pending", {"x": 1})
        assert [e.occurrence for e in s.open_escalations()] == [3]
        assert s.token_used("nonce1") == ("zhao", W)
        assert s.consume_token("nonce2", 3, "zhao", W, W + 1) is True
        assert [d["outcome"] for d in s.deliveries(3)] == ["failed"]
    finally:
        s.close()
    assert _version_and_meta(s.file) == (1, "1")
