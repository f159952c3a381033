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

Writes that fail (disk full, I/O error) are not lost: :class:`DbThread` keeps them in
memory, in order, and retries them with backoff until they commit (see its docstring), so
a push that went out while its "sent" mark could not be written is marked sent once space
returns and a later restart does not send it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import sqlite3
import threading
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from alerting.notify.metrics import NotifyMetrics
from gateway.core import sqlite
from gateway.core.backoff import Backoff
from gateway.core.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

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
MAX_BACKLOG: Final = 10_000  # delayed writes kept in memory while the disk refuses them
RETRY_INITIAL: Final = 0.5  # s, first retry of the delayed writes; doubles up to RETRY_MAX
RETRY_MAX: Final = 5.0


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
    item_keys: list[str] = field(default_factory=list)  # ... and their keys (pushes not stored yet have no id)


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
    key: str | None = None  # the push's key: finds its row when push_id is not a stored id (written later)


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
        left out: it was queued before (and perhaps sent), so it must not go again. Ids are
        set on the rows only after the commit (a rowid of a rolled-back insert is reused).
        """
        inserted: list[tuple[PushRow, int]] = []
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
                    rowid = cur.lastrowid
                    assert rowid is not None
                    if p.item_keys:
                        con.executemany(
                            "UPDATE pushes SET status = 'summarized', summary_id = ? "
                            "WHERE key = ? AND status = 'batched'",
                            [(rowid, k) for k in p.item_keys],
                        )
                    elif p.items:
                        con.executemany(
                            "UPDATE pushes SET status = 'summarized', summary_id = ? "
                            "WHERE id = ? AND status = 'batched'",
                            [(rowid, i) for i in p.items],
                        )
                    inserted.append((p, rowid))
        for p, rowid in inserted:
            p.id = rowid
        return [p for p, _ in inserted]

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

    def cancel_pushes(self, keys: Sequence[str], reason: str, wall: int) -> None:
        """Cancel pushes not sent yet, by key (a push delivered from memory has no stored id)."""
        with self._tx() as con:
            con.executemany(
                "UPDATE pushes SET status = 'cancelled', error = ?, done_wall = ? "
                "WHERE key = ? AND status IN ('pending', 'batched')",
                [(reason, wall, k) for k in keys],
            )

    def record(self, a: Attempt) -> None:
        """One attempt's outcome and the push's new status, in one transaction.

        ``a.push_id`` <= 0 (a push handed to the outbox from memory because its row could not
        be written then) is looked up by ``a.key``: the row was written since (the delayed
        writes are replayed in order). A push never stored is not recorded."""
        with self._tx() as con:
            push_id = a.push_id
            if push_id <= 0:
                row = None if a.key is None else con.execute(
                    "SELECT id FROM pushes WHERE key = ?", (a.key,)
                ).fetchone()
                if row is None:
                    return
                push_id = row[0]
            con.execute(
                "INSERT INTO deliveries (push_id, wall, person, occurrence, step, attempt, channel, outcome, error, "
                "elapsed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    push_id,
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
                (a.status, a.attempt, a.next_wall, a.channel, a.error, done, push_id),
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


@dataclass(slots=True)
class _Write:
    fn: Callable[..., Any]
    args: tuple[Any, ...]


class DbThread:
    """Runs the store's blocking calls on one dedicated thread, in submission order, and
    keeps the writes the disk refused.

    * :meth:`run`: a call whose failure the caller handles (reads, a token check); raises.
    * :meth:`write`: a write that must reach the file sooner or later. Tried at once when
      nothing is waiting; when it fails (disk full, I/O error), or earlier writes still
      wait, it joins the **backlog**: kept in memory, in order, and replayed by a retry
      task with backoff (0.5 s doubling to 5 s) until each commits. ``None`` then tells
      the caller the write did not happen yet (the notifier delivers from memory: a push
      is never held back by a broken disk). While the store could not be opened at all
      (``opened`` False), writes wait in the backlog too and the retry task first calls
      ``reopen`` (the notifier opens the file and merges what it finds).
    * :attr:`error`: why writes wait (health is not ok while it is set); None again as
      soon as the backlog is written, without a restart.

    Bound: at most ``max_backlog`` delayed writes (10,000: hours of alarm traffic); past
    it the oldest is dropped, counted (``hazardgw_notify_db_backlog_dropped``) and logged
    critical. What a lost write costs: the push went out already; after a restart it may
    be sent again (a lost "sent" mark) or be missing from the delivery history.

    If the process stops while writes still wait, they are lost; a clean stop tries them
    once more and logs how many "sent" marks were lost (those pushes are sent again after
    the restart: at-least-once, never silently dropped).
    """

    def __init__(
        self,
        store: NotifyStore,
        *,
        metrics: NotifyMetrics | None = None,
        reopen: Callable[[], Awaitable[None]] | None = None,
        max_backlog: int = MAX_BACKLOG,
        retry_initial: float = RETRY_INITIAL,
        retry_max: float = RETRY_MAX,
    ) -> None:
        self.store = store
        self.last_error: str | None = None  # the latest failure of any call (reads included)
        self.write_error: str | None = None  # why the backlog waits
        self.opened = False  # the owner sets it once the store is open (or reopen() does)
        self.backlog: deque[_Write] = deque()
        self.dropped = 0
        self.max_backlog = max(1, max_backlog)
        self._m = metrics
        self._reopen = reopen
        self._backoff = Backoff(retry_initial, retry_max)
        self._rlog = RateLimitedLog(log, 30.0)
        self._executor: ThreadPoolExecutor | None = None
        self._wake: asyncio.Event | None = None
        self._retry: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the thread and (with a running event loop) the retry task."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="notify-db")
        with contextlib.suppress(RuntimeError):  # no running loop: no retry task
            asyncio.get_running_loop()
            if self._retry is None:
                self._wake = asyncio.Event()
                self._retry = asyncio.create_task(self._retry_loop(), name="notify-db-retry")

    def wake(self) -> None:
        """Have the retry task work now (the owner's first open failed: keep trying)."""
        if self._wake is not None:
            self._wake.set()

    @property
    def error(self) -> str | None:
        """Why outbox writes wait (None when everything is written)."""
        if not self.opened:
            return self.write_error or "outbox database not open"
        if self.backlog:
            return self.write_error or f"{len(self.backlog)} outbox write(s) waiting"
        return None

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        if self._executor is None:
            raise RuntimeError("notify database thread is not running")
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, functools.partial(fn, *args))

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        try:
            out = await self._call(fn, *args)
        except Exception as e:
            self.last_error = f"{type(e).__name__}: {e}"
            raise
        self.last_error = None
        return out

    async def write(self, fn: Callable[..., T], *args: Any) -> T | None:
        """Write now, or keep it for later (see the class docstring); None when kept."""
        if self.backlog or not self.opened:
            self.defer(fn, *args)
            return None
        try:
            return await self.run(fn, *args)
        except Exception as e:
            self._failed(e)
            self.defer(fn, *args)
            return None

    def defer(self, fn: Callable[..., Any], *args: Any) -> None:
        """Queue a write for the retry task (after every write already waiting)."""
        self.backlog.append(_Write(fn, args))
        if len(self.backlog) > self.max_backlog:
            self.backlog.popleft()
            self.dropped += 1
            if self._m is not None:
                self._m.db_backlog_dropped.inc()
            self._rlog.log(
                logging.CRITICAL,
                "dropped",
                "notify outbox: %d delayed writes waiting (disk still failing): the oldest dropped; pushes are "
                "delivered, but after a restart some may be sent again",
                self.max_backlog,
            )
        self._gauge()
        if self._wake is not None:
            self._wake.set()

    def _failed(self, e: Exception) -> None:
        self.write_error = f"{type(e).__name__}: {e}"
        if self._m is not None:
            self._m.db_errors.inc()
        self._rlog.log(
            logging.CRITICAL,
            "write",
            "notify outbox write failed (%s): kept in memory and retried; pushes are delivered from memory",
            e,
        )

    def _gauge(self) -> None:
        if self._m is not None:
            self._m.db_backlog.set(len(self.backlog))

    async def _retry_loop(self) -> None:
        assert self._wake is not None
        while True:
            await self._wake.wait()
            while self.backlog or not self.opened:
                await asyncio.sleep(self._backoff.next_delay())
                try:
                    await self.flush()
                except Exception as e:
                    self._failed(e)
                    continue
            self._backoff.reset()
            self._wake.clear()

    async def flush(self) -> int:
        """Open the store if needed, then write the backlog in order; raises at the first
        failure (what is left stays queued). Returns the writes done."""
        if not self.opened:
            if self._reopen is None:
                raise RuntimeError("outbox database not open")
            await self._reopen()
            self.opened = True
        n = 0
        while self.backlog:
            op = self.backlog[0]
            job = asyncio.ensure_future(self.run(op.fn, *op.args))
            try:
                # shielded: a stop() cancelling the retry task must not leave a write that
                # ran in the thread in the backlog (stop's last flush would run it twice)
                await asyncio.shield(job)
            except asyncio.CancelledError:
                with contextlib.suppress(Exception):
                    await job
                if job.done() and not job.cancelled() and job.exception() is None:
                    self._done(op)
                raise
            self._done(op)
            n += 1
        if n or self.write_error is not None:
            log.warning("notify outbox: %d delayed write(s) stored; the outbox is durable again", n)
        self.write_error = None
        return n

    def _done(self, op: _Write) -> None:
        if self.backlog and self.backlog[0] is op:  # (it may have been dropped meanwhile)
            self.backlog.popleft()
        self._gauge()

    def sent_marks_waiting(self) -> int:
        """Delayed writes that mark a push as sent (lost if the process stops now)."""
        return sum(1 for w in self.backlog if w.args and isinstance(w.args[0], Attempt) and w.args[0].status == "sent")

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
            self._retry = None
        ex = self._executor
        if ex is None:
            return
        if self.backlog and self.opened:
            with contextlib.suppress(Exception):
                await self.flush()  # the disk may be back: one last try
        if self.backlog:
            log.critical(
                "notify outbox: %d write(s) could not be stored before stopping (%s); %d push(es) already sent "
                "may be sent again after the restart",
                len(self.backlog),
                self.error,
                self.sent_marks_waiting(),
            )
        self._executor = None
        await asyncio.get_running_loop().run_in_executor(ex, self.store.close)
        ex.shutdown(wait=True)
