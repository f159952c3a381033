"""Durable alarm journal: SQLite in WAL mode under ``store.path``.

The engine never does I/O on its hot path. ``submit`` only appends the event (and the
alarm's new persisted state) to a bounded in-memory queue; a writer task hands groups of
at most ``group_size`` events to one dedicated thread, which writes each group in one
transaction (``synchronous=FULL``: a committed group survives a power cut).

Overflow policy (the queue holds at most ``max_queue`` events): an alarm event is never
dropped because the writer is behind. When ``submit`` finds the queue full it writes the
whole backlog synchronously, in the caller's thread, before returning: the event loop (and
so alarm evaluation) stalls for the duration of those commits instead of losing a record.
This only happens when the disk is much slower than the alarm rate; it is counted in
``hazardgw_alarm_journal_sync_flushes``.

Only if the disk itself fails (writes raise: disk full, I/O error) do events stay queued
and get retried with backoff (0.5 s doubling to 5 s): health is not ok meanwhile and ok
again with the first commit after the disk recovers, without a restart. Past ``hard_max``
queued events (a disk that has been failing for a long time) the oldest journal records
are dropped, counted in ``hazardgw_alarm_journal_dropped`` and logged as critical.
Annunciation does not depend on the journal: subscribers (pushes, InfluxDB, uplink,
console) got every event before it was queued here. A process that stops (or dies) while
events are still queued loses those journal records (logged critical at a clean stop).
The file (and SQLite's ``-wal``/``-shm``) is created 0600 (gateway/core/sqlite.py).

Tables: ``events`` (one row per event, the regulator's record), ``occurrences`` (one row
per alarm occurrence: raise, first ack, last clear, close, disposition 处置) and
``alarm_state`` (the latest persisted state per alarm, used to restore after a restart
without re-raising or clearing anything). Retention: rows older than ``retention``
(default 30 days, the minimum 总局令40号 allows) are pruned at open and hourly; open
occurrences and ``alarm_state`` are never pruned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import sqlite3
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from prometheus_client import CollectorRegistry

from alerting import states as S
from alerting.events import AlarmEvent
from gateway.core import sqlite
from gateway.core.backoff import Backoff
from gateway.core.config import JOURNAL_RETENTION
from gateway.core.metrics import Metrics
from gateway.core.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

FILENAME: Final = "alarm-journal.sqlite3"
RETRY_INITIAL: Final = 0.5  # s, first wait after a failed write; doubles up to RETRY_MAX
RETRY_MAX: Final = 5.0  # a failed transaction costs nothing: retry often, recover soon after space returns

# Schema migrations (gateway/core/sqlite.py): script i takes a file from user_version i to
# i + 1. Script 0 is the original schema; files written before user_version was used carry it
# already and only get their version set. A new migration is appended, never edited in, and
# also sets meta.schema to its version so gateways from before user_version refuse the file.
_SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', '1');
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    wall_ns INTEGER NOT NULL,
    ts_ns INTEGER NOT NULL,
    event TEXT NOT NULL,
    alarm TEXT NOT NULL,
    tag TEXT NOT NULL,
    condition TEXT NOT NULL,
    hs TEXT,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL,
    prev_state TEXT NOT NULL,
    active INTEGER NOT NULL,
    occurrence INTEGER,
    value REAL,
    limit_value REAL,
    user TEXT,
    comment TEXT,
    chattering INTEGER NOT NULL DEFAULT 0,
    flood INTEGER NOT NULL DEFAULT 0,
    message TEXT,
    data TEXT
);
CREATE INDEX IF NOT EXISTS events_wall ON events (wall_ns);
CREATE INDEX IF NOT EXISTS events_alarm ON events (alarm, seq);
CREATE INDEX IF NOT EXISTS events_occurrence ON events (occurrence);
CREATE TABLE IF NOT EXISTS occurrences (
    id INTEGER PRIMARY KEY,
    alarm TEXT NOT NULL,
    tag TEXT NOT NULL,
    condition TEXT NOT NULL,
    hs TEXT,
    priority INTEGER NOT NULL,
    raised_ts INTEGER NOT NULL,
    raised_wall INTEGER NOT NULL,
    value REAL,
    limit_value REAL,
    acked_wall INTEGER,
    acked_by TEXT,
    cleared_ts INTEGER,
    realarms INTEGER NOT NULL DEFAULT 0,
    closed_wall INTEGER,
    closed_by TEXT,
    disposed_wall INTEGER,
    disposed_by TEXT,
    cause TEXT,
    action TEXT,
    handler TEXT,
    result TEXT
);
CREATE INDEX IF NOT EXISTS occurrences_closed ON occurrences (closed_wall);
CREATE TABLE IF NOT EXISTS alarm_state (
    alarm TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    snapshot TEXT NOT NULL
);
"""
# 2: test mode (issue 17): events and occurrences of a tag in test carry test = 1 (shown and
# kept, left out of the alarm KPIs)
_SCHEMA_2 = """
ALTER TABLE events ADD COLUMN test INTEGER NOT NULL DEFAULT 0;
ALTER TABLE occurrences ADD COLUMN test INTEGER NOT NULL DEFAULT 0;
UPDATE meta SET value = '2' WHERE key = 'schema';
"""
MIGRATIONS: Final = (_SCHEMA_1, _SCHEMA_2)

_EVENT_COLS = (
    "seq, wall_ns, ts_ns, event, alarm, tag, condition, hs, priority, state, prev_state, active, occurrence, "
    "value, limit_value, user, comment, chattering, flood, message, data, test"
)


class JournalError(Exception):
    pass


@dataclass
class Restored:
    """What the journal knows after a restart."""

    alarms: dict[str, dict[str, Any]] = field(default_factory=dict)  # alarm id -> persisted state
    max_seq: int = 0
    max_occurrence: int = 0
    recent: list[tuple[int, str]] = field(default_factory=list)  # (occurrence id, alarm id), newest first
    test_occurrences: set[int] = field(default_factory=set)  # those of ``recent`` that are test occurrences


class _Metrics:
    def __init__(self, r: CollectorRegistry) -> None:
        from prometheus_client import Counter, Gauge

        self.queue = Gauge("hazardgw_alarm_journal_queue", "Alarm events waiting for the journal writer", registry=r)
        self.written = Counter("hazardgw_alarm_journal_events", "Alarm events committed to the journal", registry=r)
        self.commits = Counter("hazardgw_alarm_journal_commits", "Journal transactions committed", registry=r)
        self.sync_flushes = Counter(
            "hazardgw_alarm_journal_sync_flushes", "Journal queue full: backlog written synchronously", registry=r
        )
        self.errors = Counter("hazardgw_alarm_journal_write_errors", "Journal writes that failed", registry=r)
        self.dropped = Counter(
            "hazardgw_alarm_journal_dropped", "Journal records dropped after hard_max (failing disk)", registry=r
        )
        self.pruned = Counter("hazardgw_alarm_journal_pruned", "Journal rows removed by retention", registry=r)


class Journal:
    def __init__(
        self,
        path: str | Path,
        metrics: Metrics | None = None,
        *,
        retention: float = JOURNAL_RETENTION,
        max_queue: int = 10_000,
        group_size: int = 256,
        hard_max: int = 200_000,
        prune_interval: float = 3600.0,
        wall: Callable[[], int] = time.time_ns,
    ) -> None:
        p = Path(path)
        self.file = p if p.suffix in (".sqlite3", ".db", ".sqlite") else p / FILENAME
        self.retention = retention
        self.max_queue = max(1, max_queue)
        self.group_size = max(1, group_size)
        self.hard_max = max(self.max_queue, hard_max)
        self.prune_interval = prune_interval
        self._wall = wall
        self._m = metrics.group(_Metrics) if metrics is not None else _Metrics(CollectorRegistry())
        self._queue: deque[tuple[AlarmEvent, dict[str, Any] | None]] = deque()
        self._lock = threading.Lock()  # the write connection is used by one thread at a time
        self._con: sqlite3.Connection | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._closing = False
        self._last_prune = 0.0
        self._ratelog = RateLimitedLog(log, 30.0)
        self.last_error: str | None = None
        self.prune_error: str | None = None  # retention not applied (disk full): retried at the next prune
        self.sync_flushes = 0

    @classmethod
    def from_config(cls, config: Any, metrics: Metrics | None = None, **kw: Any) -> Journal:
        return cls(config.store.path, metrics, retention=config.alarming.journal_retention, **kw)

    # ------------------------------------------------------------------ lifecycle
    def open(self) -> Restored:
        """Create the file and schema if needed, prune, and return the persisted state. Blocking."""
        with self._lock:
            con = self._connect()
            restored = self._load(con)
        self._prune_logged()
        return restored

    async def start(self) -> None:
        if self._con is None:
            await asyncio.to_thread(self.open)
        self._closing = False
        self._wake = asyncio.Event()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="alarm-journal")
        self._last_prune = time.monotonic()
        self._task = asyncio.create_task(self._run(), name="alarm-journal")
        if self._queue:
            self._wake.set()

    async def stop(self) -> None:
        """Write everything still queued, then close."""
        self._closing = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await self._task
            self._task = None
        if self._executor is not None:
            await asyncio.to_thread(self._flush_and_close)
            self._executor.shutdown(wait=True)
            self._executor = None
        else:
            self._flush_and_close()

    def _flush_and_close(self) -> None:
        try:
            self.flush()
        except Exception as e:
            self._m.errors.inc()
            log.critical("alarm journal: %d events could not be written at shutdown (%s)", len(self._queue), e)
        finally:
            with self._lock:
                if self._con is not None:
                    with contextlib.suppress(sqlite3.Error):
                        self._con.execute("PRAGMA wal_checkpoint(PASSIVE)")
                    self._con.close()
                    self._con = None

    def health(self) -> dict[str, Any]:
        return {
            "ok": self.last_error is None,
            "file": str(self.file),
            "queued": len(self._queue),
            "sync_flushes": self.sync_flushes,
            "error": self.last_error,
            "prune_error": self.prune_error,
        }

    @property
    def queued(self) -> int:
        return len(self._queue)

    # ------------------------------------------------------------------ hot side
    def submit(self, event: AlarmEvent, snapshot: dict[str, Any] | None) -> None:
        """Queue an event (and the alarm's new persisted state). Never drops; see the module doc."""
        self._queue.append((event, snapshot))
        overflow = len(self._queue) >= self.max_queue
        if overflow or (self._task is None and self._closing):  # full, or submitted after stop()
            if overflow:
                self.sync_flushes += 1
                self._m.sync_flushes.inc()
            try:
                self.flush()
            except Exception as e:
                self._failed(e)
        elif self._wake is not None:
            self._wake.set()
        self._m.queue.set(len(self._queue))

    def flush(self) -> int:
        """Write the whole queue now, in the calling thread. Returns events written. Raises on I/O errors."""
        total = 0
        while self._queue:
            total += self._write_some(len(self._queue))
        return total

    # ------------------------------------------------------------------ writer
    async def _run(self) -> None:
        assert self._wake is not None and self._executor is not None
        loop = asyncio.get_running_loop()
        backoff = Backoff(RETRY_INITIAL, RETRY_MAX)
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                try:
                    await loop.run_in_executor(self._executor, self._write_some, self.group_size)
                    backoff.reset()
                except Exception as e:
                    self._failed(e)
                    if self._closing:
                        return
                    await asyncio.sleep(backoff.next_delay())
            self._m.queue.set(len(self._queue))
            if self._closing:
                return
            if time.monotonic() - self._last_prune >= self.prune_interval:
                self._last_prune = time.monotonic()
                await loop.run_in_executor(self._executor, self._prune_logged)

    def _prune_logged(self) -> None:
        """:meth:`prune`; a failure (a DELETE needs space too) is logged and retried at the
        next prune, and does not make the journal unhealthy: no record waits for it."""
        try:
            self.prune()
        except Exception as e:
            self.prune_error = f"{type(e).__name__}: {e}"
            self._m.errors.inc()
            self._ratelog.log(logging.WARNING, "prune", "alarm journal retention not applied (%s); retried later", e)
        else:
            self.prune_error = None

    def _failed(self, e: BaseException) -> None:
        self.last_error = f"{type(e).__name__}: {e}"
        self._m.errors.inc()
        self._ratelog.log(logging.ERROR, "write", "alarm journal write failed (%s); events stay queued", e)
        excess = len(self._queue) - self.hard_max
        if excess > 0:
            for _ in range(excess):
                self._queue.popleft()
            self._m.dropped.inc(excess)
            log.critical(
                "alarm journal: disk failing, %d oldest journal records dropped (hard_max %d)", excess, self.hard_max
            )

    def _write_some(self, limit: int) -> int:
        """Write up to ``limit`` queued events in one transaction; dequeue only after the commit."""
        with self._lock:
            # popleft/appendleft are atomic; iterating the deque while the loop thread
            # appends would not be. On failure the group goes back to the front, in order.
            q = self._queue
            items: list[tuple[AlarmEvent, dict[str, Any] | None]] = []
            while q and len(items) < limit:
                items.append(q.popleft())
            if not items:
                return 0
            try:
                con = self._connect()
                con.execute("BEGIN IMMEDIATE")
                try:
                    for ev, snap in items:
                        _write_event(con, ev, snap)
                    con.execute("COMMIT")
                except BaseException:
                    with contextlib.suppress(sqlite3.Error):
                        con.execute("ROLLBACK")
                    raise
            except BaseException:
                q.extendleft(reversed(items))
                raise
        self.last_error = None
        self._m.commits.inc()
        self._m.written.inc(len(items))
        self._m.queue.set(len(self._queue))
        return len(items)

    def _connect(self) -> sqlite3.Connection:
        """The write connection (caller holds the lock)."""
        if self._con is None:
            try:
                self._con = sqlite.connect(self.file, MIGRATIONS, foreign_keys=True)
            except sqlite.SchemaError as e:
                raise JournalError(str(e)) from e
        return self._con

    @staticmethod
    def _load(con: sqlite3.Connection) -> Restored:
        r = Restored()
        r.max_seq = max(
            con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0],
            con.execute("SELECT coalesce(max(seq), 0) FROM alarm_state").fetchone()[0],
        )
        r.max_occurrence = con.execute("SELECT coalesce(max(id), 0) FROM occurrences").fetchone()[0]
        for alarm, snap in con.execute("SELECT alarm, snapshot FROM alarm_state"):
            try:
                r.alarms[alarm] = json.loads(snap)
            except ValueError:
                log.error("alarm journal: unreadable state for %s ignored", alarm)
        for occ in r.alarms.values():
            o = occ.get("occurrence")
            if isinstance(o, int):
                r.max_occurrence = max(r.max_occurrence, o)
        for i, a, test in con.execute("SELECT id, alarm, test FROM occurrences ORDER BY id DESC LIMIT 10000"):
            r.recent.append((int(i), str(a)))
            if test:
                r.test_occurrences.add(int(i))
        return r

    # ------------------------------------------------------------------ retention
    def prune(self, now_ns: int | None = None) -> int:
        """Delete events and closed occurrences older than ``retention``. Returns rows deleted."""
        cutoff = (now_ns if now_ns is not None else self._wall()) - int(self.retention * 1e9)
        with self._lock:
            con = self._connect()
            con.execute("BEGIN IMMEDIATE")
            try:
                n = con.execute("DELETE FROM events WHERE wall_ns < ?", (cutoff,)).rowcount
                n += con.execute(
                    "DELETE FROM occurrences WHERE closed_wall IS NOT NULL AND closed_wall < ?", (cutoff,)
                ).rowcount
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
                raise
        if n:
            self._m.pruned.inc(n)
        return n

    # ------------------------------------------------------------------ reads (API, reports; not the hot path)
    def _reader(self) -> sqlite3.Connection:
        return sqlite.connect_readonly(self.file)

    def events(
        self,
        *,
        since_ns: int | None = None,
        until_ns: int | None = None,
        tag: str | None = None,
        alarm: str | None = None,
        occurrence: int | None = None,
        kinds: Iterable[str] | None = None,
        limit: int = 1000,
        newest_first: bool = True,
    ) -> list[dict[str, Any]]:
        """Journal events by wall time / tag / alarm / occurrence / event type. Blocking: use ``to_thread``."""
        where: list[str] = []
        args: list[Any] = []
        for cond, val in (
            ("wall_ns >= ?", since_ns),
            ("wall_ns < ?", until_ns),
            ("tag = ?", tag),
            ("alarm = ?", alarm),
            ("occurrence = ?", occurrence),
        ):
            if val is not None:
                where.append(cond)
                args.append(val)
        if kinds is not None:
            ks = list(kinds)
            where.append(f"event IN ({','.join('?' * len(ks))})")
            args.extend(ks)
        sql = f"SELECT {_EVENT_COLS} FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += f" ORDER BY seq {'DESC' if newest_first else 'ASC'} LIMIT ?"
        args.append(int(limit))
        con = self._reader()
        try:
            rows = [dict(r) for r in con.execute(sql, args)]
        finally:
            con.close()
        for r in rows:
            r["active"] = bool(r["active"])
            r["chattering"] = bool(r["chattering"])
            r["flood"] = bool(r["flood"])
            r["test"] = bool(r["test"])
            r["data"] = json.loads(r["data"]) if r["data"] else None
        return rows

    def occurrences(
        self,
        *,
        since_ns: int | None = None,
        alarm: str | None = None,
        occurrence: int | None = None,
        limit: int = 1000,
    ) -> list[dict[str, Any]]:
        """Occurrences (raise, ack, clear, close, disposition), newest first. Blocking."""
        where: list[str] = []
        args: list[Any] = []
        for cond, val in (("raised_wall >= ?", since_ns), ("alarm = ?", alarm), ("id = ?", occurrence)):
            if val is not None:
                where.append(cond)
                args.append(val)
        sql = "SELECT * FROM occurrences" + (" WHERE " + " AND ".join(where) if where else "")
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(int(limit))
        con = self._reader()
        try:
            return [dict(r) for r in con.execute(sql, args)]
        finally:
            con.close()


    def kpi_rows(self, since_ns: int, until_ns: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """What alerting/kpi.py needs for [since, until): the annunciations (raised, realarmed
        events) made in it, oldest first, and the occurrences overlapping it (raised before
        ``until``, not closed before ``since``). Test occurrences (test mode) are left out: they
        are not process alarms. Blocking; one read transaction."""
        con = self._reader()
        try:
            con.execute("BEGIN")
            ann = [dict(r) for r in con.execute(
                "SELECT wall_ns, alarm, tag, condition, hs, priority, event FROM events "
                "WHERE event IN ('raised', 'realarmed') AND test = 0 AND wall_ns >= ? AND wall_ns < ? ORDER BY seq",
                (since_ns, until_ns),
            )]
            occ = [dict(r) for r in con.execute(
                "SELECT * FROM occurrences WHERE raised_wall < ? AND (closed_wall IS NULL OR closed_wall >= ?) "
                "AND test = 0 ORDER BY id",
                (until_ns, since_ns),
            )]
            con.execute("COMMIT")
        finally:
            con.close()
        return ann, occ

    def oldest_event_wall(self) -> int | None:
        """Wall time (ns) of the oldest event kept (retention prunes older ones). Blocking."""
        con = self._reader()
        try:
            row = con.execute("SELECT min(wall_ns) FROM events").fetchone()
        finally:
            con.close()
        return int(row[0]) if row and row[0] is not None else None


def _write_event(con: sqlite3.Connection, ev: AlarmEvent, snap: dict[str, Any] | None) -> None:
    data = json.dumps(dict(ev.data), ensure_ascii=False, default=str) if ev.data is not None else None
    con.execute(
        f"INSERT OR IGNORE INTO events ({_EVENT_COLS}) VALUES ({','.join('?' * 22)})",
        (
            ev.seq,
            ev.wall,
            ev.ts,
            ev.event,
            ev.alarm,
            ev.tag,
            ev.condition,
            ev.hs,
            ev.priority,
            ev.state,
            ev.prev_state,
            int(ev.active),
            ev.occurrence,
            ev.value,
            ev.limit,
            ev.user,
            ev.comment,
            int(ev.chattering),
            int(ev.flood),
            ev.message,
            data,
            int(ev.test),
        ),
    )
    if snap is not None:
        con.execute(
            "INSERT INTO alarm_state (alarm, seq, state, snapshot) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (alarm) DO UPDATE SET seq = excluded.seq, state = excluded.state, "
            "snapshot = excluded.snapshot WHERE excluded.seq > alarm_state.seq",
            (ev.alarm, ev.seq, ev.state, json.dumps(snap)),
        )
    occ = ev.occurrence
    if occ is None:
        return
    e = ev.event
    if e == S.RAISED:
        con.execute(
            "INSERT OR IGNORE INTO occurrences (id, alarm, tag, condition, hs, priority, raised_ts, raised_wall, "
            "value, limit_value, test) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (occ, ev.alarm, ev.tag, ev.condition, ev.hs, ev.priority, ev.ts, ev.wall, ev.value, ev.limit,
             int(ev.test)),
        )
    elif e == S.ACKED_EV:
        con.execute(
            "UPDATE occurrences SET acked_wall = ?, acked_by = ? WHERE id = ? AND acked_wall IS NULL",
            (ev.wall, ev.user, occ),
        )
    elif e == S.CLEARED:
        con.execute("UPDATE occurrences SET cleared_ts = ? WHERE id = ?", (ev.ts, occ))
    elif e == S.REALARMED:
        con.execute("UPDATE occurrences SET realarms = realarms + 1 WHERE id = ?", (occ,))
    elif e == S.DISPOSED and ev.data is not None:
        d = ev.data
        con.execute(
            "UPDATE occurrences SET disposed_wall = ?, disposed_by = ?, cause = ?, action = ?, handler = ?, "
            "result = ? WHERE id = ?",
            (ev.wall, ev.user, d.get("cause"), d.get("action"), d.get("handler"), d.get("result"), occ),
        )
    if ev.prev_state in S.OPEN and ev.state not in S.OPEN:
        con.execute(
            "UPDATE occurrences SET closed_wall = ?, closed_by = ? WHERE id = ? AND closed_wall IS NULL",
            (ev.wall, ev.user, occ),
        )
