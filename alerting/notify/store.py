"""The notifier's durable state: SQLite (WAL, synchronous=FULL) at ``{store.path}/notify-outbox.sqlite3``.

Tables:

* ``pushes``: the outbox. One row per push, written *before* the first attempt. ``key`` is
  UNIQUE: ``a:{occurrence}:{round}:{step}:{person}`` for an alarm push, ``s:{person}:{first
  item id}`` for a flood summary, so the same occurrence + step + person is never queued (and
  so never sent) twice, across restarts. ``status``: pending -> sent | failed (gave up) |
  cancelled; batched (waiting for a flood summary) -> summarized | cancelled.
* ``deliveries``: one row per attempt (channel masked, outcome, error, elapsed): the durable
  ``notified`` record.
* ``escalations``: one row per occurrence being walked (round, start, next step, open or
  stopped and why), so a restart continues an escalation where it was.
* ``ack_tokens_used``: consumed one-tap acknowledge tokens (single use across restarts).

All methods are blocking and run on the notifier's single database thread. Each write is
one transaction. The file is created with mode 0600 (push bodies carry ack links).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from gateway.core import sqlite

T = TypeVar("T")

FILE = "notify-outbox.sqlite3"

# Schema migrations (gateway/core/sqlite.py): script i takes a file from user_version i to
# i + 1. Script 0 is the original schema; files written before user_version was used carry it
# already and only get their version set. A new migration is appended, never edited in, and
# also sets meta.schema to its version so gateways from before user_version refuse the file.
_SCHEMA_1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', '1');
CREATE TABLE IF NOT EXISTS pushes (
    id INTEGER PRIMARY KEY,
    key TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    person TEXT NOT NULL,
    priority INTEGER NOT NULL,
    occurrence INTEGER,
    round INTEGER,
    step INTEGER,
    alarm TEXT,
    status TEXT NOT NULL,
    title TEXT,
    body TEXT,
    notify_type TEXT,
    info TEXT,
    created_wall INTEGER NOT NULL,
    event_wall INTEGER,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_wall INTEGER NOT NULL,
    channel TEXT,
    error TEXT,
    done_wall INTEGER,
    summary_id INTEGER
);
CREATE INDEX IF NOT EXISTS pushes_status ON pushes (status);
CREATE INDEX IF NOT EXISTS pushes_occurrence ON pushes (occurrence);
CREATE TABLE IF NOT EXISTS deliveries (
    id INTEGER PRIMARY KEY,
    push_id INTEGER NOT NULL,
    wall INTEGER NOT NULL,
    person TEXT NOT NULL,
    occurrence INTEGER,
    step INTEGER,
    attempt INTEGER NOT NULL,
    channel TEXT,
    outcome TEXT NOT NULL,
    error TEXT,
    elapsed REAL
);
CREATE INDEX IF NOT EXISTS deliveries_occurrence ON deliveries (occurrence);
CREATE INDEX IF NOT EXISTS deliveries_wall ON deliveries (wall);
CREATE TABLE IF NOT EXISTS escalations (
    occurrence INTEGER PRIMARY KEY,
    alarm TEXT NOT NULL,
    priority INTEGER NOT NULL,
    hs TEXT,
    round INTEGER NOT NULL,
    started_wall INTEGER NOT NULL,
    next_step INTEGER NOT NULL,
    status TEXT NOT NULL,
    reason TEXT,
    stopped_wall INTEGER,
    info TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS escalations_status ON escalations (status);
CREATE TABLE IF NOT EXISTS ack_tokens_used (
    nonce TEXT PRIMARY KEY,
    occurrence INTEGER NOT NULL,
    person TEXT NOT NULL,
    used_wall INTEGER NOT NULL,
    expires_wall INTEGER NOT NULL
);
"""
MIGRATIONS = (_SCHEMA_1,)

OPEN_PUSH = ("pending", "batched")


@dataclass(slots=True)
class PushRow:
    key: str
    kind: str  # alarm | summary
    person: str
    priority: int
    status: str  # pending | batched
    created_wall: int
    next_wall: int
    occurrence: int | None = None
    round: int | None = None
    step: int | None = None
    alarm: str | None = None
    title: str | None = None
    body: str | None = None
    notify_type: str | None = None
    info: dict[str, Any] | None = None
    event_wall: int | None = None
    attempts: int = 0
    id: int | None = None
    items: list[int] = field(default_factory=list)  # summary: ids of the batched pushes it carries


@dataclass(slots=True)
class EscalationRow:
    occurrence: int
    alarm: str
    priority: int
    hs: str | None
    round: int
    started_wall: int
    next_step: int
    info: dict[str, Any]
    status: str = "open"
    reason: str | None = None


@dataclass(slots=True)
class Attempt:
    push_id: int
    wall: int
    person: str
    occurrence: int | None
    step: int | None
    attempt: int
    channel: str | None
    outcome: str  # sent | failed | gave_up | cancelled | no_channel
    error: str | None
    elapsed: float | None
    status: str  # the push's status after this attempt
    next_wall: int


class NotifyStore:
    def __init__(self, path: str | Path) -> None:
        self.file = Path(path) / FILE
        self._con: sqlite3.Connection | None = None
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ connection
    def open(self) -> None:
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
            self._con = sqlite.connect(self.file, MIGRATIONS, file_mode=0o600)  # bodies carry ack links
        return self._con

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            con = self._connect()
            con.execute("BEGIN IMMEDIATE")
            try:
                yield con
                con.execute("COMMIT")
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    con.execute("ROLLBACK")
                raise

    # ------------------------------------------------------------------ load (start)
    def open_escalations(self) -> list[EscalationRow]:
        with self._lock:
            rows = (
                self._connect()
                .execute(
                    "SELECT occurrence, alarm, priority, hs, round, started_wall, next_step, info FROM escalations "
                    "WHERE status = 'open' ORDER BY occurrence"
                )
                .fetchall()
            )
        return [EscalationRow(r[0], r[1], r[2], r[3], r[4], r[5], r[6], json.loads(r[7])) for r in rows]

    def known_occurrences(self, occurrences: Iterable[int]) -> set[int]:
        occ = list(occurrences)
        if not occ:
            return set()
        with self._lock:
            con = self._connect()
            out: set[int] = set()
            for i in range(0, len(occ), 500):
                chunk = occ[i : i + 500]
                q = f"SELECT occurrence FROM escalations WHERE occurrence IN ({','.join('?' * len(chunk))})"
                out.update(r[0] for r in con.execute(q, chunk))
        return out

    def open_pushes(self) -> list[PushRow]:
        with self._lock:
            rows = (
                self._connect()
                .execute(
                    "SELECT id, key, kind, person, priority, status, created_wall, next_wall, occurrence, round, step, "
                    "alarm, title, body, notify_type, info, event_wall, attempts FROM pushes "
                    "WHERE status IN ('pending', 'batched') ORDER BY id"
                )
                .fetchall()
            )
            out = []
            for r in rows:
                p = PushRow(
                    key=r[1],
                    kind=r[2],
                    person=r[3],
                    priority=r[4],
                    status=r[5],
                    created_wall=r[6],
                    next_wall=r[7],
                    occurrence=r[8],
                    round=r[9],
                    step=r[10],
                    alarm=r[11],
                    title=r[12],
                    body=r[13],
                    notify_type=r[14],
                    info=json.loads(r[15]) if r[15] else None,
                    event_wall=r[16],
                    attempts=r[17],
                    id=r[0],
                )
                if p.kind == "summary":
                    p.items = [
                        i
                        for (i,) in self._connect().execute(
                            "SELECT id FROM pushes WHERE summary_id = ? ORDER BY id", (p.id,)
                        )
                    ]
                out.append(p)
        return out

    # ------------------------------------------------------------------ writes
    def save_escalations(self, rows: Sequence[EscalationRow]) -> None:
        with self._tx() as con:
            for e in rows:
                _upsert_escalation(con, e)

    def fire(self, escalation: EscalationRow | None, pushes: Sequence[PushRow]) -> list[PushRow]:
        """Save the escalation's new position and insert its pushes, in one transaction.

        Returns the pushes actually inserted (with ids); a push whose key exists already is
        left out: it was queued before (and perhaps sent), so it must not go again.
        """
        inserted: list[PushRow] = []
        with self._tx() as con:
            if escalation is not None:
                _upsert_escalation(con, escalation)
            for p in pushes:
                cur = con.execute(
                    "INSERT OR IGNORE INTO pushes (key, kind, person, priority, occurrence, round, step, alarm, "
                    "status, title, body, notify_type, info, created_wall, event_wall, next_wall) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        p.key,
                        p.kind,
                        p.person,
                        p.priority,
                        p.occurrence,
                        p.round,
                        p.step,
                        p.alarm,
                        p.status,
                        p.title,
                        p.body,
                        p.notify_type,
                        json.dumps(p.info, ensure_ascii=False) if p.info else None,
                        p.created_wall,
                        p.event_wall,
                        p.next_wall,
                    ),
                )
                if cur.rowcount == 1:
                    p.id = cur.lastrowid
                    if p.items:
                        con.executemany(
                            "UPDATE pushes SET status = 'summarized', summary_id = ? "
                            "WHERE id = ? AND status = 'batched'",
                            [(p.id, i) for i in p.items],
                        )
                    inserted.append(p)
        return inserted

    def stop_escalation(self, occurrence: int, reason: str, wall: int, cancel_reason: str | None = None) -> int:
        """Mark the escalation stopped and cancel its pushes not yet sent. Returns pushes cancelled."""
        with self._tx() as con:
            con.execute(
                "UPDATE escalations SET status = 'stopped', reason = ?, stopped_wall = ? "
                "WHERE occurrence = ? AND status = 'open'",
                (reason, wall, occurrence),
            )
            return con.execute(
                "UPDATE pushes SET status = 'cancelled', error = ?, done_wall = ? "
                "WHERE occurrence = ? AND kind = 'alarm' AND status IN ('pending', 'batched')",
                (cancel_reason or reason, wall, occurrence),
            ).rowcount

    def cancel_pushes(self, ids: Sequence[int], reason: str, wall: int) -> None:
        with self._tx() as con:
            con.executemany(
                "UPDATE pushes SET status = 'cancelled', error = ?, done_wall = ? "
                "WHERE id = ? AND status IN ('pending', 'batched')",
                [(reason, wall, i) for i in ids],
            )

    def record(self, a: Attempt) -> None:
        """One attempt's outcome and the push's new status, in one transaction."""
        with self._tx() as con:
            con.execute(
                "INSERT INTO deliveries (push_id, wall, person, occurrence, step, attempt, channel, outcome, error, "
                "elapsed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    a.push_id,
                    a.wall,
                    a.person,
                    a.occurrence,
                    a.step,
                    a.attempt,
                    a.channel,
                    a.outcome,
                    a.error,
                    a.elapsed,
                ),
            )
            done = a.wall if a.status != "pending" else None
            con.execute(
                "UPDATE pushes SET status = ?, attempts = ?, next_wall = ?, channel = ?, error = ?, done_wall = ? "
                "WHERE id = ?",
                (a.status, a.attempt, a.next_wall, a.channel, a.error, done, a.push_id),
            )

    def consume_token(self, nonce: str, occurrence: int, person: str, wall: int, expires_wall: int) -> bool:
        """Record a token as used; False when it was used before."""
        with self._tx() as con:
            cur = con.execute(
                "INSERT OR IGNORE INTO ack_tokens_used (nonce, occurrence, person, used_wall, expires_wall) "
                "VALUES (?, ?, ?, ?, ?)",
                (nonce, occurrence, person, wall, expires_wall),
            )
            return cur.rowcount == 1

    def release_token(self, nonce: str) -> None:
        with self._tx() as con:
            con.execute("DELETE FROM ack_tokens_used WHERE nonce = ?", (nonce,))

    def token_used(self, nonce: str) -> tuple[str, int] | None:
        with self._lock:
            row = (
                self._connect()
                .execute("SELECT person, used_wall FROM ack_tokens_used WHERE nonce = ?", (nonce,))
                .fetchone()
            )
        return (row[0], row[1]) if row else None

    def prune(self, before_wall: int, now_wall: int) -> int:
        """Delete finished pushes, deliveries and stopped escalations older than ``before_wall``
        and used tokens that have expired."""
        with self._tx() as con:
            n = con.execute("DELETE FROM deliveries WHERE wall < ?", (before_wall,)).rowcount
            n += con.execute(
                "DELETE FROM pushes WHERE created_wall < ? AND status NOT IN ('pending', 'batched')", (before_wall,)
            ).rowcount
            n += con.execute(
                "DELETE FROM escalations WHERE status = 'stopped' AND stopped_wall < ?", (before_wall,)
            ).rowcount
            n += con.execute("DELETE FROM ack_tokens_used WHERE expires_wall < ?", (now_wall,)).rowcount
        return n

    # ------------------------------------------------------------------ reads (API, tests)
    def deliveries(self, occurrence: int | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        sql = (
            "SELECT d.id, d.push_id, d.wall, d.person, d.occurrence, d.step, d.attempt, d.channel, d.outcome, "
            "d.error, d.elapsed, p.kind, p.key, p.round, p.alarm FROM deliveries d JOIN pushes p ON p.id = d.push_id"
        )
        args: list[Any] = []
        if occurrence is not None:
            sql += " WHERE d.occurrence = ?"
            args.append(occurrence)
        sql += " ORDER BY d.id LIMIT ?"
        args.append(limit)
        cols = (
            "id",
            "push_id",
            "wall",
            "person",
            "occurrence",
            "step",
            "attempt",
            "channel",
            "outcome",
            "error",
            "elapsed",
            "kind",
            "key",
            "round",
            "alarm",
        )
        with self._lock:
            return [dict(zip(cols, r, strict=True)) for r in self._connect().execute(sql, args)]

    def pushes(self, occurrence: int | None = None, status: str | None = None) -> list[dict[str, Any]]:
        cols = (
            "id",
            "key",
            "kind",
            "person",
            "priority",
            "occurrence",
            "round",
            "step",
            "alarm",
            "status",
            "title",
            "body",
            "attempts",
            "channel",
            "error",
            "created_wall",
            "done_wall",
            "summary_id",
        )
        sql = f"SELECT {', '.join(cols)} FROM pushes"
        where: list[str] = []
        args: list[int | str] = []
        if occurrence is not None:
            where.append("occurrence = ?")
            args.append(occurrence)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY id"
        with self._lock:
            return [dict(zip(cols, r, strict=True)) for r in self._connect().execute(sql, args)]

    def escalations(self) -> list[dict[str, Any]]:
        cols = ("occurrence", "alarm", "priority", "round", "started_wall", "next_step", "status", "reason")
        with self._lock:
            rows = self._connect().execute(f"SELECT {', '.join(cols)} FROM escalations ORDER BY occurrence")
            return [dict(zip(cols, r, strict=True)) for r in rows]


def _upsert_escalation(con: sqlite3.Connection, e: EscalationRow) -> None:
    con.execute(
        "INSERT INTO escalations (occurrence, alarm, priority, hs, round, started_wall, next_step, status, reason, "
        "info) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (occurrence) DO UPDATE SET round = excluded.round, "
        "started_wall = excluded.started_wall, next_step = excluded.next_step, status = excluded.status, "
        "reason = excluded.reason, info = excluded.info, priority = excluded.priority",
        (
            e.occurrence,
            e.alarm,
            e.priority,
            e.hs,
            e.round,
            e.started_wall,
            e.next_step,
            e.status,
            e.reason,
            json.dumps(e.info, ensure_ascii=False),
        ),
    )


class DbThread:
    """Runs the store's blocking calls on one dedicated thread, in submission order.

    ``last_error`` keeps the latest failure for health; callers decide what a failure means
    (the notifier keeps delivering from memory: a push is never held back by a broken disk).
    """

    def __init__(self, store: NotifyStore) -> None:
        self.store = store
        self.last_error: str | None = None
        self._executor: ThreadPoolExecutor | None = None

    def start(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notify-db")

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise RuntimeError("notify database thread is not running")
        loop = asyncio.get_running_loop()
        try:
            out = await loop.run_in_executor(self._executor, functools.partial(fn, *args))
        except Exception as e:
            self.last_error = f"{type(e).__name__}: {e}"
            raise
        self.last_error = None
        return out

    async def stop(self) -> None:
        ex = self._executor
        self._executor = None
        if ex is not None:
            await asyncio.get_running_loop().run_in_executor(ex, self.store.close)
            ex.shutdown(wait=True)
