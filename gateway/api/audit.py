"""The security audit log (安全审计, GB/T 22239-2019; issue 25 item 4).

Every state-changing API request (any method but GET/HEAD/OPTIONS: ack, shelve, unshelve,
dispose, one-tap acknowledge, and whatever routes are added later), every authentication
failure and every lockout is appended as one JSON line to
``{store.path}/audit/audit-YYYY-MM-DD.jsonl`` (UTC day; a new file each day)::

    {"time": "2026-05-01T08:00:00.123Z", "ts": 1777622400123000000, "event": "request",
     "client": "10.0.0.7", "user": "zhao", "method": "POST", "route": "/api/alarms/{id}/ack",
     "target": "GT-101/hh", "status": 200, "result": "ok"}

* ``event``: ``request`` (a state-changing call, whatever its outcome), ``auth_failure``
  (``result``: ``invalid`` / ``expired`` token, ``invalid_link``), ``lockout`` (the address
  is locked out; once per lockout).
* ``user``: the API token's *name* (never the token), or the person of a one-tap link.
* ``route``: the route *template*; ``target``: what was acted on — by default the route's
  path parameters (one parameter: its value; several: an object), except parameters named
  ``token`` (a one-tap link is a credential). A handler names its target (and, without an
  API token, its user) itself with :func:`audit_target`.
* No header, no query string, no body, no token or secret is ever written.

Files are created 0600 in a 0700 directory. Records are written by a thread of their own
(a bounded queue of 10,000 records; when the disk cannot keep up, new records are counted
in ``hazardgw_api_audit_dropped_total`` and a rate-limited error is logged; nothing
blocks a request). Files whose day ended more than ``retention`` seconds ago
(``api.audit_retention``, at least 180 days) are deleted at start and once a day.
``GET /api/audit?from=&to=`` (admin) reads them back.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from starlette.requests import Request

from gateway.core.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

AUDIT_KEY: Final = "hazardgw.audit"  # request scope: {"target": ..., "user": ...} set by a handler
SECRET_PARAMS: Final = frozenset({"token", "secret", "password", "key"})
_FILE = re.compile(r"^audit-(\d{4}-\d{2}-\d{2})\.jsonl$")
DAY_NS: Final = 86_400 * 1_000_000_000


def audit_target(request: Request, target: Any, *, user: str | None = None) -> None:
    """Name what this request acted on (and who, when no API token names them: a one-tap link's
    person) in its audit record. ``target``: a string or a small JSON-able mapping."""
    info = request.scope.setdefault(AUDIT_KEY, {})
    info["target"] = target
    if user is not None:
        info["user"] = user


def default_target(path_params: Mapping[str, Any] | None) -> Any:
    """The path parameters of a route, without credentials: one -> its value; several -> a dict."""
    if not path_params:
        return None
    kept = {k: v for k, v in path_params.items() if k.lower() not in SECRET_PARAMS}
    if not kept:
        return None
    if len(kept) == 1:
        return next(iter(kept.values()))
    return kept


def _day_of(ns: int) -> str:
    return dt.datetime.fromtimestamp(ns / 1e9, dt.UTC).strftime("%Y-%m-%d")


def _iso(ns: int) -> str:
    t = dt.datetime.fromtimestamp(ns // 1_000_000_000, dt.UTC)
    return f"{t:%Y-%m-%dT%H:%M:%S}.{ns // 1_000_000 % 1000:03d}Z"


class AuditLog:
    """Appends audit records from any thread; a writer thread of its own does the I/O."""

    def __init__(
        self,
        directory: Path,
        retention: float,
        *,
        wall: Callable[[], int] = time.time_ns,
        max_queue: int = 10_000,
        metrics: Any = None,
    ) -> None:
        self.directory = Path(directory)
        self.retention = retention
        self._wall = wall
        self._queue: queue.Queue[dict[str, Any] | None] = queue.Queue(max_queue)
        self._thread: threading.Thread | None = None
        self._metrics = metrics
        self._ratelog = RateLimitedLog(log, 60.0)
        self._pruned_day: str | None = None
        self.written = 0
        self.dropped = 0
        self.errors = 0
        self.error: str | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="api-audit", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Write what is queued and end the writer thread (blocking; call with asyncio.to_thread)."""
        t = self._thread
        if t is None:
            return
        self._thread = None
        while True:
            try:
                self._queue.put(None, timeout=timeout)
                break
            except queue.Full:  # pragma: no cover - a stuck disk: give up on the rest
                break
        t.join(timeout)

    def health(self) -> dict[str, Any]:
        return {"ok": self.error is None, "written": self.written, "dropped": self.dropped, "error": self.error}

    # ------------------------------------------------------------------ recording
    def record(self, event: str, **fields: Any) -> None:
        """Queue one record (never blocks). ``fields``: client, user, method, route, target, status, result."""
        ts = self._wall()
        rec = {"time": _iso(ts), "ts": ts, "event": event, **fields}
        try:
            self._queue.put_nowait(rec)
        except queue.Full:
            self.dropped += 1
            if self._metrics is not None:
                self._metrics.audit_dropped.inc()
            self._ratelog.error("full", "audit log: queue full (disk too slow or failing); a record was dropped")

    def flush(self, timeout: float = 5.0) -> None:
        """Wait until everything queued so far is written (tests; blocking)."""
        if self._thread is None:
            self._write(self._drain())
            return
        done = threading.Event()
        try:
            self._queue.put({"__flush__": done}, timeout=timeout)
        except queue.Full:  # pragma: no cover
            return
        done.wait(timeout)

    # ------------------------------------------------------------------ writer thread
    def _drain(self, first: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        batch = [first] if first is not None else []
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return batch
            if item is None:
                self._stopping = True
                return batch
            batch.append(item)

    def _run(self) -> None:
        self._stopping = False
        self._prune_if_new_day()
        while True:
            try:
                item = self._queue.get(timeout=60.0)
            except queue.Empty:
                self._prune_if_new_day()
                continue
            if item is None:
                self._stopping = True
                item_batch = self._drain()
            else:
                item_batch = self._drain(item)
            self._write(item_batch)
            if self._stopping:
                return
            self._prune_if_new_day()

    def _ensure_dir(self) -> None:
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)

    def _write(self, batch: list[dict[str, Any]]) -> None:
        flushes = [r["__flush__"] for r in batch if "__flush__" in r]
        records = [r for r in batch if "__flush__" not in r]
        by_day: dict[str, list[str]] = {}
        for r in records:
            by_day.setdefault(_day_of(r["ts"]), []).append(json.dumps(r, ensure_ascii=False, default=str))
        try:
            if by_day:
                self._ensure_dir()
            for day, lines in by_day.items():
                path = self.directory / f"audit-{day}.jsonl"
                fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
                try:
                    os.fchmod(fd, 0o600)
                    data = ("\n".join(lines) + "\n").encode("utf-8")
                    while data:
                        n = os.write(fd, data)
                        data = data[n:]
                    os.fsync(fd)
                finally:
                    os.close(fd)
                self.written += len(lines)
            self.error = None
        except OSError as e:
            self.errors += 1
            self.dropped += len(records)
            self.error = f"cannot write {self.directory}: {e}"
            if self._metrics is not None:
                self._metrics.audit_dropped.inc(len(records))
            self._ratelog.error("write", "audit log: %s; %d record(s) lost", self.error, len(records))
        for ev in flushes:
            ev.set()

    def _prune_if_new_day(self) -> None:
        today = _day_of(self._wall())
        if today != self._pruned_day:
            self._pruned_day = today
            self.prune()

    # ------------------------------------------------------------------ retention and reading
    def files(self) -> Iterator[tuple[str, Path]]:
        """(day, path) of every audit file, oldest first."""
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return
        for name in names:
            m = _FILE.match(name)
            if m:
                yield m.group(1), self.directory / name

    def prune(self, now_ns: int | None = None) -> list[Path]:
        """Delete files whose whole day is older than the retention; returns what was deleted."""
        now_ns = self._wall() if now_ns is None else now_ns
        removed = []
        for day, path in list(self.files()):
            end = dt.datetime.fromisoformat(day).replace(tzinfo=dt.UTC) + dt.timedelta(days=1)
            if now_ns - int(end.timestamp()) * 1_000_000_000 > self.retention * 1e9:
                try:
                    path.unlink()
                    removed.append(path)
                except OSError as e:
                    self._ratelog.error("prune", "audit log: cannot delete %s: %s", path, e)
        if removed:
            log.info("audit log: deleted %d file(s) older than the retention (%s .. %s)", len(removed),
                     removed[0].name, removed[-1].name)
        return removed

    def read(self, since_ns: int | None = None, until_ns: int | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Records with ``since_ns <= ts < until_ns``, oldest first, at most ``limit`` (blocking)."""
        first = _day_of(since_ns) if since_ns is not None else None
        last = _day_of(until_ns) if until_ns is not None else None
        out: list[dict[str, Any]] = []
        for day, path in self.files():
            if (first is not None and day < first) or (last is not None and day > last):
                continue
            try:
                with path.open(encoding="utf-8") as f:
                    for line in f:
                        try:
                            rec = json.loads(line)
                        except ValueError:
                            continue  # a line being written
                        ts = rec.get("ts")
                        if not isinstance(ts, int):
                            continue
                        if (since_ns is not None and ts < since_ns) or (until_ns is not None and ts >= until_ns):
                            continue
                        out.append(rec)
                        if len(out) >= limit:
                            return out
            except OSError as e:
                raise RuntimeError(f"cannot read {path}: {e}") from None
        return out
