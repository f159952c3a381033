"""Test mode (检测/标定模式): a detector under a bump test, loop check or maintenance.

``POST /api/tags/{id}/test`` (or ``/api/sources/{id}/test`` for every tag of a source) puts
tags in test for a duration (at most 8 h); ``DELETE`` ends it; it ends by itself at expiry.
While a tag is in test:

* its alarms still run through the alarm engine and show in the console, marked TEST, and
  are journaled with ``test=1``; they are not pushed to phones, not sent to the platform as
  alarms, and count towards no hazard-source status, flood or KPI (alerting/engine.py);
* its readings still go to InfluxDB, with the tag ``test=true`` (docs/influxdb.md);
* the uplink tells the platform the tag is under maintenance (``maintenance`` per tag);
* it counts as not in use (投用率, gateway/upkeep/inuse.py);
* this component records the test: which alarm conditions were raised and how long after the
  start (per alarm level: the bump-test result), the peak and lowest value, who started and
  who ended it (:class:`~gateway.upkeep.store.TestRecord`).

At the end the alarm engine closes the tag's test occurrences and raises a condition still
present as a real alarm.

Durable: a test is written to ``{store.path}/upkeep.sqlite3`` before it starts (the API
answers 503 when it cannot be: nothing started), its end right after it ended (a failed
write is kept in memory and retried with backoff; health is not ok meanwhile), its progress
(levels reached, peak) every few seconds. After a restart the tests still running resume
with their original end time; those that expired while the gateway was down end once every
component runs again, recorded as ended at their expiry time. So a restart neither ends
nor extends a test.

Who hears about test changes: the supervisor wires ``listeners`` (gateway/supervisor.py
``_wiring``): each gets the whole set of tags in test, after every change and whenever the
wiring is (re)made. Per reading: :meth:`TestMode.on_readings` returns at once when no test
runs; while tests run, one dict lookup per reading (peak and low of the tags in test).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final

from alerting.events import AlarmEvent
from gateway.core.backoff import Backoff
from gateway.core.config import SiteConfig, Tag
from gateway.core.models import Reading
from gateway.core.ratelog import RateLimitedLog
from gateway.upkeep.store import TestRecord, UpkeepStore

log = logging.getLogger(__name__)

MAX_DURATION: Final = 8 * 3600.0
SYSTEM: Final = "system"
_USABLE: Final = frozenset({"good", "uncertain"})
Listener = Callable[[frozenset[str]], None]


class TestModeError(ValueError):
    """A request the test mode refuses (unknown tag, bad duration): HTTP 400/404/409."""

    __test__ = False

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code


class StoreUnavailable(Exception):
    """The test could not be written to the upkeep store: nothing was started (HTTP 503)."""


def default_levels(tag: Tag) -> tuple[str, ...]:
    """The alarm conditions a test verifies by default: the enabled limit alarms in the direction
    a bump test drives the detector (combustible and toxic gas: up, h/hh; oxygen: down, l/ll, or
    up when it has only high limits), every enabled limit of other tags, the discrete alarm of a
    discrete tag."""
    a = tag.alarms
    present = [c for c in ("h", "hh", "l", "ll") if (x := getattr(a, c)) is not None and x.enabled]
    if tag.kind in ("combustible_gas", "toxic_gas"):
        high = [c for c in present if c in ("h", "hh")]
        return tuple(high or present)
    if tag.kind == "oxygen":
        low = [c for c in present if c in ("l", "ll")]
        return tuple(low or present)
    if tag.kind == "discrete":
        return ("discrete",) if a.discrete is not None and a.discrete.enabled else ()
    return tuple(present)


class TestMode:
    """The tags in test, their records, expiry. See the module docstring."""

    __test__ = False
    name = "test-mode"

    def __init__(
        self,
        config: SiteConfig,
        store: UpkeepStore,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], int] = time.time_ns,
        tick_interval: float = 1.0,
        save_interval: float = 2.0,
    ) -> None:
        self.config = config
        self.store = store
        self.clock = clock
        self.wall = wall
        self.tick_interval = tick_interval
        self.save_interval = save_interval
        self.active: dict[str, TestRecord] = {}  # tag -> running test
        self._deadline: dict[str, float] = {}  # tag -> monotonic end
        self._testing: frozenset[str] = frozenset()
        self.listeners: list[tuple[str, Listener]] = []  # set by the supervisor's wiring
        self._dirty: set[str] = set()  # running tests with progress not yet written
        self._unsaved: list[TestRecord] = []  # ended tests whose end is not written yet
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._lock = asyncio.Lock()  # begin/end/save one at a time
        self._retry = Backoff(1.0, 10.0)
        self._rlog = RateLimitedLog(log, 60.0)
        self.loaded = False
        self.load_error: str | None = None
        self.save_error: str | None = None

    # ------------------------------------------------------------------ reads
    @property
    def testing(self) -> frozenset[str]:
        """The tags in test now."""
        return self._testing

    def running(self) -> list[TestRecord]:
        return sorted(self.active.values(), key=lambda r: (r.started, r.tag))

    def health(self) -> dict[str, Any]:
        running = self._task is not None and not self._task.done()
        h: dict[str, Any] = {
            "ok": running and self.save_error is None and self.load_error is None,
            "running": running,
            "tags_in_test": len(self.active),
            "unsaved": len(self._unsaved) + len(self._dirty),
        }
        if self.save_error is not None:
            h["error"] = self.save_error
        if self.load_error is not None:
            h["load_error"] = self.load_error
        return h

    # ------------------------------------------------------------------ wiring
    def notify(self) -> None:
        """Tell every listener the current set (also after a rewiring)."""
        s = self._testing
        for name, cb in self.listeners:
            try:
                cb(s)
            except Exception:
                self._rlog.error(f"listener:{name}", "test mode listener %s failed", name, exc_info=True)

    def _changed(self) -> None:
        self._testing = frozenset(self.active)
        self.notify()

    def configure(self, config: SiteConfig) -> list[TestRecord]:
        """A reload: tests of tags no longer configured end (reason ``removed``)."""
        self.config = config
        gone = [t for t in self.active if t not in config.tag_map()]
        return self._finish(gone, SYSTEM, "removed") if gone else []

    # ------------------------------------------------------------------ lifecycle
    async def load(self) -> None:
        """Read the running tests (before the alarm engine restores its journal, so their test
        occurrences stay test occurrences). Tests that expired while the gateway was down stay
        in the set until :meth:`start` ends them, with every component running."""
        if self.loaded:
            return
        self.loaded = True
        try:
            rows = await asyncio.to_thread(self._open_and_read)
        except Exception as e:
            self.load_error = f"{type(e).__name__}: {e}"
            log.critical("upkeep store %s cannot be read (%s): tests that were running are not resumed and "
                         "no test can be started", self.store.file, e)
            return
        now, wall = self.clock(), self.wall()
        for r in rows:
            self.active[r.tag] = r
            self._deadline[r.tag] = now + max(0.0, (r.until - wall) / 1e9)
        if rows:
            log.warning("test mode: %d tag(s) still in test after the restart: %s", len(rows),
                        ", ".join(f"{r.tag} until {time.strftime('%H:%M:%S', time.localtime(r.until / 1e9))}"
                                  for r in rows[:10]))
        self._changed()

    def _open_and_read(self) -> list[TestRecord]:
        self.store.open()
        return self.store.running_tests()

    async def start(self) -> None:
        """End the tests that expired meanwhile (now that everything downstream runs), tell the
        listeners once more (the alarm engine closes test occurrences no test covers any more),
        and run expiry and saving from now on."""
        if not self.loaded:
            await self.load()
        self._wake = asyncio.Event()
        await self.tick()
        self.notify()
        self._task = asyncio.create_task(self._run(), name=self.name)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._save()
        if self._unsaved or self._dirty:
            log.critical("test mode: %d test record(s) could not be written at shutdown", len(self._unsaved))
        with contextlib.suppress(Exception):
            await asyncio.to_thread(self.store.close)

    async def _run(self) -> None:
        assert self._wake is not None
        last_save = self.clock()
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._sleep()):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.tick()
                now = self.clock()
                if self._unsaved or (self._dirty and now - last_save >= self.save_interval):
                    last_save = now
                    await self._save()
            except Exception:
                self._rlog.error("run", "test mode loop failed; continuing", exc_info=True)

    def _sleep(self) -> float:
        d = self.tick_interval
        if self._unsaved:
            d = min(d, self._retry.next_delay()) if self.save_error else 0.0
        return max(0.01, d)

    # ------------------------------------------------------------------ actions
    def _tags_of_source(self, source: str) -> list[str]:
        for s in self.config.sources:
            if s.id == source:
                return list(dict.fromkeys(s.point_tags()))
        raise TestModeError(404, "not_found", f"unknown source {source!r}")

    async def begin(
        self,
        tags: Sequence[str] | None,
        duration: float,
        by: str,
        *,
        source: str | None = None,
        comment: str | None = None,
        levels: Sequence[str] | None = None,
    ) -> tuple[list[TestRecord], list[tuple[str, str]]]:
        """Put ``tags`` (or every tag of ``source``) in test for ``duration`` seconds.

        Returns (the tests started, [(tag, why) skipped]). One tag already in test: 409; for a
        source, tags already in test are skipped. Raises :class:`TestModeError` and
        :class:`StoreUnavailable` (then nothing started)."""
        if not by or not by.strip():
            raise TestModeError(400, "bad_request", "a test needs the operator's name")
        if not (isinstance(duration, int | float) and math.isfinite(duration) and 0 < duration <= MAX_DURATION):
            raise TestModeError(400, "bad_request", f"duration must be > 0 and at most {MAX_DURATION / 3600:g} h")
        if self.load_error is not None:
            raise StoreUnavailable(f"upkeep store unavailable: {self.load_error}")
        tag_map = self.config.tag_map()
        names = self._tags_of_source(source) if source is not None else list(tags or ())
        if not names:
            raise TestModeError(400, "bad_request", "no tag to test")
        for t in names:
            if t not in tag_map:
                raise TestModeError(404, "not_found", f"unknown tag {t!r}")
        if levels is not None:
            bad = [c for c in levels if c not in ("hh", "h", "l", "ll", "discrete", "roc")]
            if bad:
                raise TestModeError(400, "bad_request", f"unknown alarm level(s) {bad}: use hh, h, l, ll, roc, "
                                    "discrete")
        async with self._lock:
            skipped = [(t, "already in test") for t in names if t in self.active]
            if skipped and source is None:
                r = self.active[skipped[0][0]]
                raise TestModeError(409, "conflict", f"{r.tag} is already in test (started by {r.by}); end it "
                                    "first")
            wall = self.wall()
            until = wall + int(duration * 1e9)
            recs = [
                TestRecord(tag=t, started=wall, until=until, by=by.strip(), source=source, comment=comment,
                           levels=tuple(levels) if levels is not None else default_levels(tag_map[t]))
                for t in names if t not in self.active
            ]
            if recs:
                try:
                    await asyncio.to_thread(self.store.insert_tests, recs)
                except Exception as e:
                    raise StoreUnavailable(f"the test could not be recorded: {type(e).__name__}: {e}") from e
                now = self.clock()
                for r in recs:
                    self.active[r.tag] = r
                    self._deadline[r.tag] = now + duration
                log.warning("test mode: %s put %d tag(s) in test for %g min: %s", by, len(recs), duration / 60,
                            ", ".join(r.tag for r in recs[:20]))
                self._changed()
            return recs, skipped

    async def end(
        self, tags: Sequence[str] | None, by: str, *, source: str | None = None
    ) -> list[TestRecord]:
        """End the tests of ``tags`` (or of every tag of ``source`` in test) now. A tag not in
        test: 409 (for a source: nothing to end is fine)."""
        names = self._tags_of_source(source) if source is not None else list(tags or ())
        if source is None:
            for t in names:
                if t not in self.config.tag_map():
                    raise TestModeError(404, "not_found", f"unknown tag {t!r}")
                if t not in self.active:
                    raise TestModeError(409, "conflict", f"{t} is not in test")
        async with self._lock:
            done = self._finish([t for t in names if t in self.active], by.strip() or SYSTEM, "ended")
            await self._save_locked()
        return done

    def _finish(self, tags: Iterable[str], by: str, reason: str, at: dict[str, int] | None = None) -> list[TestRecord]:
        """End tests in memory (the listeners hear it at once); their records are written by
        :meth:`_save` (now, by the caller, or retried by the task)."""
        wall = self.wall()
        done = []
        for t in tags:
            r = self.active.pop(t, None)
            self._deadline.pop(t, None)
            self._dirty.discard(t)
            if r is None:
                continue
            r.ended = at.get(t, wall) if at else wall
            r.ended_by = by
            r.end_reason = reason
            done.append(r)
            self._unsaved.append(r)
        if done:
            log.warning("test mode: ended for %s (%s by %s)", ", ".join(r.tag for r in done[:20]), reason, by)
            self._changed()
            if self._wake is not None:
                self._wake.set()
        return done

    async def tick(self) -> list[TestRecord]:
        """End the tests whose time is up (the task calls it every second; tests call it with
        their own clock). A test that expired while the gateway was down is recorded as ended
        at its expiry time."""
        now = self.clock()
        due = [t for t, d in self._deadline.items() if now >= d]
        if not due:
            return []
        wall = self.wall()
        at = {t: min(wall, self.active[t].until) for t in due}
        async with self._lock:
            done = self._finish(due, SYSTEM, "expired", at)
            await self._save_locked()
        return done

    # ------------------------------------------------------------------ records
    def on_alarm_event(self, ev: AlarmEvent) -> None:
        """Alarm engine callback (wired by the supervisor): a test alarm raised on a tag in test
        is a level reached. Cheap, no I/O."""
        if not ev.test or ev.event != "raised":
            return
        r = self.active.get(ev.tag)
        if r is None or ev.condition in r.reached:
            return
        r.reached[ev.condition] = (ev.wall, ev.value)
        self._dirty.add(ev.tag)
        if self._wake is not None:
            self._wake.set()

    def on_readings(self, batch: Sequence[Reading]) -> None:
        """Pipeline subscriber: peak and low value of the tags in test. Returns at once (one
        truth test per batch) while no test runs."""
        active = self.active
        if not active:
            return
        for tag, value, _ts, quality in batch:
            r = active.get(tag)
            if r is None or value is None or quality not in _USABLE or value != value:
                continue
            if r.peak is None or value > r.peak:
                r.peak = value
                self._dirty.add(tag)
            if r.low is None or value < r.low:
                r.low = value
                self._dirty.add(tag)

    async def _save(self) -> None:
        async with self._lock:
            await self._save_locked()

    async def _save_locked(self) -> None:
        recs = self._unsaved + [self.active[t] for t in self._dirty if t in self.active]
        if not recs:
            return
        unsaved, dirty = list(self._unsaved), set(self._dirty)
        try:
            await asyncio.to_thread(self.store.update_tests, recs)
        except Exception as e:
            msg = f"{type(e).__name__}: {e}"
            if self.save_error is None:
                log.error("test mode: cannot write test records to %s (%s); kept in memory and retried",
                          self.store.file, msg)
            self.save_error = msg
            return
        self._unsaved = [r for r in self._unsaved if r not in unsaved]
        self._dirty -= dirty
        if self.save_error is not None:
            log.warning("test mode: test records written to %s again", self.store.file)
        self.save_error = None
        self._retry.reset()

    async def records(self, since_ns: int | None, until_ns: int | None, tag: str | None = None) -> list[TestRecord]:
        """Tests started in [since, until) (the store; running tests with their live progress)."""
        try:
            rows = await asyncio.to_thread(self.store.tests, since_ns=since_ns, until_ns=until_ns, tag=tag)
        except FileNotFoundError:
            rows = []
        live = {r.id: r for r in self.active.values()} | {r.id: r for r in self._unsaved}
        return [live.get(r.id, r) for r in rows]
