"""The upkeep records under ``store.path``: test mode (bump tests, loop checks) and calibrations.

One SQLite file, ``{store.path}/upkeep.sqlite3`` (gateway/core/sqlite.py: WAL,
``synchronous=FULL``, 0600), two tables:

* ``tests``: one row per tag and test. A running test has ``ended_wall`` NULL, so a restart
  finds it and resumes it with the same end time (``until_wall``): a restart neither ends nor
  extends a test. The row is the test record too (who, when, which alarm levels the test
  verifies, which ones were reached and when, the peak value, how it ended), which
  ``GET /api/tests`` and ``hazardgw report tests`` read.
* ``calibrations``: every calibration recorded through ``POST /api/tags/{id}/calibration``
  (date, interval, who). The latest one of a tag supersedes its config's ``calibration.last``
  when it is later (gateway/upkeep/calibration.py).

Rows are never pruned (a few per detector and year; an inspector asks for them years later).
Writes are operator actions and test progress, never per reading; every method here blocks
(callers use ``asyncio.to_thread``). One write connection, used under a lock; reads open a
read-only connection of their own.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from gateway.core import sqlite

FILENAME: Final = "upkeep.sqlite3"

_SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS tests (
    id INTEGER PRIMARY KEY,
    tag TEXT NOT NULL,
    source TEXT,
    started_wall INTEGER NOT NULL,
    until_wall INTEGER NOT NULL,
    started_by TEXT NOT NULL,
    comment TEXT,
    levels TEXT NOT NULL,
    reached TEXT NOT NULL DEFAULT '{}',
    peak REAL,
    low REAL,
    ended_wall INTEGER,
    ended_by TEXT,
    end_reason TEXT
);
CREATE INDEX IF NOT EXISTS tests_started ON tests (started_wall);
CREATE INDEX IF NOT EXISTS tests_running ON tests (ended_wall);
CREATE TABLE IF NOT EXISTS calibrations (
    id INTEGER PRIMARY KEY,
    tag TEXT NOT NULL,
    date TEXT NOT NULL,
    interval_s REAL,
    recorded_wall INTEGER NOT NULL,
    by TEXT NOT NULL,
    comment TEXT
);
CREATE INDEX IF NOT EXISTS calibrations_tag ON calibrations (tag, date);
"""
MIGRATIONS: Final = (_SCHEMA_1,)

#: how a test ended: DELETE by an operator, its duration ran out, or its tag left the config
END_REASONS: Final = ("ended", "expired", "removed")


@dataclass
class TestRecord:
    """One tag's test: while it runs (``ended`` None) and afterwards (the record).

    ``levels``: the alarm conditions the test is to verify (``h``, ``hh`` ...); ``reached``:
    every condition raised during the test -> (wall ns, value at the raise). ``peak`` / ``low``:
    the highest and lowest usable value read during the test."""

    __test__ = False  # not a pytest test class

    tag: str
    started: int  # wall ns
    until: int  # wall ns: when it ends by itself
    by: str  # the operator (API token name)
    levels: tuple[str, ...] = ()
    source: str | None = None  # a test started for a whole source
    comment: str | None = None
    reached: dict[str, tuple[int, float | None]] = field(default_factory=dict)
    peak: float | None = None
    low: float | None = None
    ended: int | None = None
    ended_by: str | None = None
    end_reason: str | None = None
    id: int | None = None

    @property
    def running(self) -> bool:
        return self.ended is None

    @property
    def result(self) -> str:
        """``running``; ``pass`` (every level reached); ``fail``; ``none`` (no level to verify)."""
        if self.ended is None:
            return "running"
        if not self.levels:
            return "none"
        return "pass" if all(c in self.reached for c in self.levels) else "fail"

    def seconds_to(self, condition: str) -> float | None:
        r = self.reached.get(condition)
        return None if r is None else max(0.0, (r[0] - self.started) / 1e9)

    @property
    def first_alarm_s(self) -> float | None:
        """Seconds from the start to the first level reached (the detector's time to alarm)."""
        times = [self.seconds_to(c) for c in self.levels if c in self.reached]
        return min((t for t in times if t is not None), default=None)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "tag": self.tag,
            "source": self.source,
            "started": self.started,
            "until": self.until,
            "by": self.by,
            "comment": self.comment,
            "levels": list(self.levels),
            "reached": {c: {"wall": w, "after_s": round((w - self.started) / 1e9, 3), "value": v}
                        for c, (w, v) in sorted(self.reached.items())},
            "peak": self.peak,
            "low": self.low,
            "ended": self.ended,
            "ended_by": self.ended_by,
            "end_reason": self.end_reason,
            "result": self.result,
            "first_alarm_s": None if self.first_alarm_s is None else round(self.first_alarm_s, 3),
        }


@dataclass(frozen=True)
class CalibrationRecord:
    tag: str
    date: dt.date
    interval_s: float | None  # None: the config's interval (or the default)
    recorded: int  # wall ns
    by: str
    comment: str | None = None
    id: int | None = None


def _test_row(r: sqlite3.Row | tuple[Any, ...]) -> TestRecord:
    (rid, tag, source, started, until, by, comment, levels, reached, peak, low, ended, ended_by, reason) = tuple(r)
    lv = json.loads(levels) if levels else []
    rc = json.loads(reached) if reached else {}
    return TestRecord(
        tag=str(tag), started=int(started), until=int(until), by=str(by),
        levels=tuple(str(x) for x in lv), source=source, comment=comment,
        reached={str(c): (int(v[0]), None if v[1] is None else float(v[1])) for c, v in rc.items()},
        peak=peak, low=low, ended=ended, ended_by=ended_by, end_reason=reason, id=int(rid),
    )


_TEST_COLS = ("id, tag, source, started_wall, until_wall, started_by, comment, levels, reached, peak, low, "
              "ended_wall, ended_by, end_reason")


class UpkeepStore:
    def __init__(self, path: str | Path) -> None:
        p = Path(path)
        self.file = p if p.suffix in (".sqlite3", ".db", ".sqlite") else p / FILENAME
        self._lock = threading.Lock()
        self._con: sqlite3.Connection | None = None

    # ------------------------------------------------------------------ connection
    def open(self) -> None:
        """Create or migrate the file. Blocking; raises sqlite3.Error / SchemaError."""
        with self._lock:
            self._connect()

    def close(self) -> None:
        with self._lock:
            if self._con is not None:
                with contextlib.suppress(sqlite3.Error):
                    self._con.execute("PRAGMA wal_checkpoint(PASSIVE)")
                self._con.close()
                self._con = None

    def _connect(self) -> sqlite3.Connection:
        if self._con is None:
            self._con = sqlite.connect(self.file, MIGRATIONS)
        return self._con

    def _write(self, fn: Any, *args: Any) -> Any:
        with self._lock:
            con = self._connect()
            con.execute("BEGIN IMMEDIATE")
            try:
                out = fn(con, *args)
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
                raise
            return out

    def _read(self) -> sqlite3.Connection:
        if not self.file.exists():
            raise FileNotFoundError(f"no upkeep records at {self.file}")
        return sqlite.connect_readonly(self.file)

    # ------------------------------------------------------------------ tests
    def insert_tests(self, records: Iterable[TestRecord]) -> None:
        """Write new tests in one transaction and set their ``id``."""
        recs = list(records)

        def run(con: sqlite3.Connection) -> list[int]:
            ids = []
            for r in recs:
                cur = con.execute(
                    "INSERT INTO tests (tag, source, started_wall, until_wall, started_by, comment, levels, reached, "
                    "peak, low, ended_wall, ended_by, end_reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (r.tag, r.source, r.started, r.until, r.by, r.comment, json.dumps(list(r.levels)),
                     _reached_json(r), r.peak, r.low, r.ended, r.ended_by, r.end_reason),
                )
                ids.append(int(cur.lastrowid or 0))
            return ids

        for r, i in zip(recs, self._write(run), strict=True):
            r.id = i

    def update_tests(self, records: Iterable[TestRecord]) -> None:
        """Write the progress (levels reached, peak) or the end of tests, in one transaction."""
        rows = [(_reached_json(r), r.peak, r.low, r.ended, r.ended_by, r.end_reason, r.until, r.id)
                for r in records if r.id is not None]

        def run(con: sqlite3.Connection) -> None:
            con.executemany(
                "UPDATE tests SET reached = ?, peak = ?, low = ?, ended_wall = ?, ended_by = ?, end_reason = ?, "
                "until_wall = ? WHERE id = ?", rows)

        if rows:
            self._write(run)

    def running_tests(self) -> list[TestRecord]:
        """Tests without an end (what a restart resumes), oldest first. Uses the write connection."""
        with self._lock:
            con = self._connect()
            return [_test_row(r) for r in con.execute(
                f"SELECT {_TEST_COLS} FROM tests WHERE ended_wall IS NULL ORDER BY id")]

    def tests(self, *, since_ns: int | None = None, until_ns: int | None = None, tag: str | None = None,
              limit: int = 100_000) -> list[TestRecord]:
        """Tests started in [since, until), oldest first (read-only; the report and the API)."""
        where, args = [], []
        for cond, val in (("started_wall >= ?", since_ns), ("started_wall < ?", until_ns), ("tag = ?", tag)):
            if val is not None:
                where.append(cond)
                args.append(val)
        sql = f"SELECT {_TEST_COLS} FROM tests" + (" WHERE " + " AND ".join(where) if where else "")
        con = self._read()
        try:
            return [_test_row(r) for r in con.execute(sql + " ORDER BY started_wall, id LIMIT ?", (*args, limit))]
        finally:
            con.close()

    # ------------------------------------------------------------------ calibrations
    def add_calibration(self, rec: CalibrationRecord) -> CalibrationRecord:
        def run(con: sqlite3.Connection) -> int:
            cur = con.execute(
                "INSERT INTO calibrations (tag, date, interval_s, recorded_wall, by, comment) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (rec.tag, rec.date.isoformat(), rec.interval_s, rec.recorded, rec.by, rec.comment),
            )
            return int(cur.lastrowid or 0)

        rid = self._write(run)
        return CalibrationRecord(rec.tag, rec.date, rec.interval_s, rec.recorded, rec.by, rec.comment, rid)

    def latest_calibrations(self, *, writer: bool = False) -> dict[str, CalibrationRecord]:
        """The latest recorded calibration of every tag (by date, then by when it was recorded)."""
        sql = ("SELECT id, tag, date, interval_s, recorded_wall, by, comment FROM calibrations "
               "ORDER BY tag, date, recorded_wall, id")
        if writer:
            with self._lock:
                rows = list(self._connect().execute(sql))
        else:
            con = self._read()
            try:
                rows = list(con.execute(sql))
            finally:
                con.close()
        out: dict[str, CalibrationRecord] = {}
        for rid, tag, date, interval, recorded, by, comment in (tuple(r) for r in rows):
            out[str(tag)] = CalibrationRecord(str(tag), dt.date.fromisoformat(str(date)), interval, int(recorded),
                                              str(by), comment, int(rid))
        return out


def _reached_json(r: TestRecord) -> str:
    return json.dumps({c: [w, v] for c, (w, v) in r.reached.items()})
