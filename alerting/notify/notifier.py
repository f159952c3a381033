"""The ``Notifier`` component: alarm events -> escalation -> durable outbox -> duty officers' phones.

Flow::

    engine event --(callback: append only)--> intake --(notifier task)--> escalations
        --(step due: roster/targets resolved now; push rows committed)--> outbox --> apprise

* **Hot path.** ``on_alarm_event`` runs inside the engine's evaluation: it filters, appends to
  the intake and wakes the task. No I/O, no lock, no logging. Test occurrences (a tag in
  test mode, ``event.test``) are filtered out here: nobody's phone rings for a bump test.
* **Intake bound** ``max_intake`` (10,000 events). When full, a non-annunciating event
  (acked, shelved, ...) is not queued (counted): every push re-reads the engine's state
  before it is sent, so a lost "acked" costs at most one check, never a wrong push, and a
  sweep every 10 s stops escalations whose occurrence is acknowledged or closed. An
  annunciation (raised, realarmed) is never dropped: it goes to an overflow map keyed by
  alarm id (at most one entry per configured alarm; only the newest occurrence of an alarm
  can still be open, so the replaced one needs no push).
* **Escalation** (escalation.py) per occurrence, rounds restarted by a re-alarm, stopped by
  an acknowledge or the end of the occurrence; state persisted, so a restart continues it.
  Occurrences that the engine restored as unacknowledged but that have no escalation record
  (e.g. the gateway died between the raise and the first commit) are escalated at start.
* **Floods**: while the engine is in flood, or the notifier itself counted more than
  ``alarming.flood_count`` annunciations within ``alarming.flood_window``, priority 2-3
  pushes are batched per person and sent as one summary per ``notification.summary_interval``
  (first batched push + interval; at once when the flood ends). Priority 1 is always
  individual.
* **Acknowledge links** (acklinks.py): :meth:`inspect` / :meth:`acknowledge` serve
  ``gateway.api.ack``.

No I/O on the engine's hot path, no global state (the apprise log filter is attached at
start and removed at stop). Times: ``clock`` (monotonic s) schedules; ``wall`` (ns) stamps
records, signs links and resolves the roster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from alerting import states as S
from alerting.alarms import AlarmView
from alerting.engine import AlarmEngine, AlarmNotFound
from alerting.events import AlarmEvent
from alerting.notify.acklinks import AckClaims, AckSigner, TokenExpired, TokenInvalid, load_key
from alerting.notify.channels import LOGGERS, Channels, SecretFilter, check_url, mask_url, url_secrets
from alerting.notify.escalation import Escalation, Targets, plan, policy_for
from alerting.notify.metrics import NotifyMetrics
from alerting.notify.outbox import Outbox, wait_event
from alerting.notify.records import AlarmInfo, NotifyRecord
from alerting.notify.roster import Roster
from alerting.notify.store import Attempt, DbThread, EscalationRow, NotifyStore, PushRow
from alerting.notify.templates import NOTIFY_TYPE, Templates
from gateway.core.config import DEFAULT_CHANNEL, Person, SiteConfig
from gateway.core.metrics import Metrics
from gateway.core.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

ANNUNCIATING: Final = frozenset({S.RAISED, S.REALARMED})
UNACKED: Final = frozenset({S.UNACK, S.RTNUN})
SWEEP_INTERVAL: Final = 10.0
PRUNE_INTERVAL: Final = 3600.0

RecordCallback = Callable[[NotifyRecord], None]


@dataclass(slots=True)
class _Batch:
    deadline: float  # monotonic
    items: list[PushRow] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AckView:
    """What the /ack page shows. ``status``: ok (can be acknowledged), acked (just now),
    invalid, expired, used, closed, already_acked."""

    status: str
    lang: str
    person: Person | None = None
    claims: AckClaims | None = None
    fields: dict[str, str] | None = None  # templates.fields of the alarm
    by: str | None = None  # who acknowledged / used the link
    at: int | None = None  # wall ns of that
    detail: str | None = None


class Notifier:
    name = "notifier"

    def __init__(
        self,
        config: SiteConfig,
        engine: AlarmEngine,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], int] = time.time_ns,
        store_path: str | Path | None = None,
        channels: Channels | None = None,
        tick_interval: float = 0.25,
        max_intake: int = 10_000,
        backoff_base: float = 1.0,
        max_in_flight: int = 16,
        send_timeout: float = 20.0,
        stop_grace: float = 5.0,
    ) -> None:
        self.config = config
        self.engine = engine
        self._clock = clock
        self._wall = wall
        self.tick_interval = tick_interval
        self.max_intake = max_intake
        self.stop_grace = stop_grace
        self._m = metrics.group(NotifyMetrics)  # one set of collectors per registry (survives a hot reload)
        n = config.notification
        self.ttl = n.ack_link_ttl
        self.summary_interval = n.summary_interval
        self.people: dict[str, Person] = {p.id: p for p in config.people}
        self.roster = Roster(config.duty, config.site.timezone)
        self.targets = Targets(config.people, config.hazard_sources, self.roster.on_duty)
        self.templates = Templates(config)
        self.store_path = Path(store_path if store_path is not None else config.store.path)
        self.store = NotifyStore(self.store_path)
        self.db = DbThread(self.store, metrics=self._m, reopen=self._reopen)
        api = config.api
        self.base_url = (api.public_url or f"http://{api.listen}").rstrip("/")
        self.outbox = Outbox(
            db=self.db,
            channels=channels or Channels(timeout=send_timeout, metrics=self._m),
            urls=self._urls,
            params=self._params,
            check=self._check_push,
            on_attempt=self._on_attempt,
            metrics=self._m,
            clock=clock,
            wall=wall,
            retry_max=n.retry_max,
            backoff_base=backoff_base,
            give_up_after=n.ack_link_ttl,
            max_in_flight=max_in_flight,
            tick_interval=tick_interval,
        )
        al = config.alarming
        self._flood_window = al.flood_window
        self._flood_times: deque[float] = deque(maxlen=al.flood_count + 1)
        self._intake: deque[tuple[AlarmEvent, float]] = deque()
        self._overflow: dict[str, tuple[AlarmEvent, float]] = {}
        self._escalations: dict[int, Escalation] = {}
        self._batches: dict[tuple[str, str], _Batch] = {}  # (person, channel group) -> flood batch
        self._subs: list[RecordCallback] = []
        self._last_ts: dict[str, int] = {}
        self._used_mem: dict[str, int] = {}  # nonce -> expiry s, only while the database is down
        self._signer: AckSigner | None = None
        self._key_source = "none"
        self._db_error: str | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: int | None = None
        self._wake: asyncio.Event | None = None
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._filter: SecretFilter | None = None
        self._last_sweep = 0.0
        self._last_prune = -1e18
        self._rlog = RateLimitedLog(log, 30.0)  # log pacing only
        self.invalid_urls: list[str] = []

    # ================================================================== hot path
    def on_alarm_event(self, ev: AlarmEvent) -> None:
        """Engine callback (the owner subscribes it: ``engine.subscribe(notifier.on_alarm_event)``):
        filter and enqueue; nothing else. Events before ``start()`` wait in the intake;
        from ``stop()`` on they are ignored. Events of test occurrences (test mode: a detector
        under a bump test) are never pushed."""
        if self._stopping or ev.occurrence is None or ev.event == S.DISPOSED or ev.test:
            return
        ann = ev.event in ANNUNCIATING
        if not ann and ev.event != S.ACKED_EV and ev.state in UNACKED:
            return  # e.g. cleared into RTNUN: still unacknowledged, nothing changes
        item = (ev, self._clock())
        if len(self._intake) < self.max_intake:
            self._intake.append(item)
        elif ann:
            self._overflow[ev.alarm] = item
            self._m.intake_coalesced.inc()
        else:
            self._m.intake_dropped.inc()
            return
        self._poke()

    def _poke(self) -> None:
        wake, loop = self._wake, self._loop
        if wake is None or loop is None:
            return
        if threading.get_ident() == self._loop_thread:
            wake.set()
        else:
            with contextlib.suppress(RuntimeError):  # loop closed
                loop.call_soon_threadsafe(wake.set)

    # ================================================================== lifecycle
    async def start(self) -> None:
        """Load the key and the durable state, restore escalations, start the workers.

        Start after ``engine.start()`` (the engine's restored state decides what continues).
        """
        self._loop = asyncio.get_running_loop()
        self._loop_thread = threading.get_ident()
        self._stopping = False
        self._wake = asyncio.Event()
        secret = self.config.notification.ack_secret
        try:
            key = await asyncio.to_thread(
                load_key, secret.get_secret_value() if secret is not None else None, self.store_path
            )
            self._key_source = "config" if secret is not None else "file"
        except Exception as e:
            log.critical("ack link key unavailable (%s): using a temporary key; links die with this process", e)
            key = secrets.token_bytes(32)
            self._key_source = "temporary"
        self._signer = AckSigner(key)
        urls = [u for p in self.people.values() for u in p.all_urls()]
        invalid: dict[str, str] = {}
        for u in urls:
            found = check_url(u)
            if found is not None and found[0] == "error":
                invalid[mask_url(u)] = found[1]
        self.invalid_urls = sorted(invalid)
        for shown, why in sorted(invalid.items()):
            log.error("notify: channel %s cannot be used: %s", shown, why)
        self._filter = SecretFilter(s for u in urls for s in url_secrets(u))
        for name in LOGGERS:
            logging.getLogger(name).addFilter(self._filter)

        self.db.start()
        rows: list[EscalationRow] = []
        pushes: list[PushRow] = []
        try:
            rows, pushes = await self._open_store()
            self.db.opened = True
        except Exception as e:
            self._db_error = f"{type(e).__name__}: {e}"
            log.critical(
                "notify outbox %s unusable (%s): pushes are NOT durable until it opens (retrying)", self.store.file, e
            )
        async with self._lock:
            await self._restore(rows, pushes)
        if not self.db.opened:
            self.db.wake()  # keep trying to open it; writes wait in memory meanwhile
        await self.outbox.start()
        self._task = asyncio.create_task(self._run(), name="notifier")
        self._poke()

    async def stop(self) -> None:
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        await self.outbox.stop(self.stop_grace)
        await self.outbox.channels.close()
        await self.db.stop()
        if self._filter is not None:
            for name in LOGGERS:
                logging.getLogger(name).removeFilter(self._filter)
            self._filter = None

    @property
    def _durable(self) -> bool:
        """The outbox file is open (writes may still wait in the backlog: ``db.error``)."""
        return self.db.opened

    async def _open_store(self) -> tuple[list[EscalationRow], list[PushRow]]:
        await self.db.run(self.store.open)
        rows = await self.db.run(self.store.open_escalations)
        pushes = await self.db.run(self.store.open_pushes)
        return rows, pushes

    async def _reopen(self) -> None:
        """The outbox could not be opened at start and now can (the DbThread's retry task
        calls this): continue what the file holds that memory does not know, then the
        writes kept meanwhile are replayed."""
        rows, pushes = await self._open_store()
        async with self._lock:
            self.db.opened = True
            self._db_error = None
            await self._restore(rows, pushes)
        log.warning("notify outbox %s opened: pushes are durable again", self.store.file)

    def health(self) -> dict[str, Any]:
        ob = self.outbox.health()
        running = self._task is not None and not self._task.done()
        db_error = self.db.error if self._durable else (self._db_error or self.db.error)
        ok = running and self._durable and db_error is None and ob["failing"] == 0 and not self.invalid_urls
        return {
            "ok": ok,
            "running": running,
            "durable": self._durable,
            "db_error": db_error,
            "db_backlog": len(self.db.backlog),
            "ack_key": self._key_source,
            "intake": len(self._intake) + len(self._overflow),
            "escalations_open": len(self._escalations),
            "batched": sum(len(b.items) for b in self._batches.values()),
            "flood": self.flooded(),
            "invalid_channels": self.invalid_urls,
            "outbox": ob,
        }

    def subscribe(self, cb: RecordCallback) -> Callable[[], None]:
        """``cb(NotifyRecord)`` for every notified/escalated record (synchronous, cheap)."""
        self._subs.append(cb)

        def unsubscribe() -> None:
            if cb in self._subs:
                self._subs.remove(cb)

        return unsubscribe

    # ================================================================== loop
    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            await wait_event(self._wake, self.tick_interval)
            self._wake.clear()
            try:
                await self.tick()
            except Exception:
                self._rlog.error("tick", "notifier step failed; continuing", exc_info=True)

    async def tick(self) -> None:
        """One step: take events, fire due escalation steps, flush summaries (tests call this too)."""
        async with self._lock:
            now = self._clock()
            await self._drain(now)
            await self._fire_due(now)
            await self._flush_batches(now)
            if now - self._last_sweep >= SWEEP_INTERVAL:
                self._last_sweep = now
                await self._sweep()
            if now - self._last_prune >= PRUNE_INTERVAL:
                self._last_prune = now
                await self._prune()
            self._m.intake.set(len(self._intake) + len(self._overflow))
            self._m.open_escalations.set(len(self._escalations))
            self._m.flood.set(1 if self.flooded(now) else 0)

    # ================================================================== events
    def flooded(self, now: float | None = None) -> bool:
        if self.engine.flood:
            return True
        ft = self._flood_times
        now = self._clock() if now is None else now
        return len(ft) == ft.maxlen and now - ft[0] <= self._flood_window

    async def _drain(self, now: float) -> None:
        if not self._intake and not self._overflow:
            return
        items = list(self._intake)
        self._intake.clear()
        items.extend(self._overflow.values())
        self._overflow.clear()
        new: dict[int, Escalation] = {}
        for ev, t in items:
            occ = ev.occurrence
            assert occ is not None
            if ev.event in ANNUNCIATING:
                self._flood_times.append(t)
                esc = Escalation(
                    occurrence=occ,
                    alarm=ev.alarm,
                    priority=ev.priority,
                    hs=ev.hs,
                    steps=policy_for(self.config.duty, ev.priority),
                    started=t,
                    started_wall=ev.wall,
                    round=ev.wall,
                    info=AlarmInfo.from_event(ev).to_dict() | {"realarm": ev.event == S.REALARMED},
                )
                old = self._escalations.get(occ)
                if old is not None and old.round != esc.round:
                    await self._cancel_open_pushes(occ, "superseded by a re-alarm")
                self._escalations[occ] = esc
                new[occ] = esc
            else:
                new.pop(occ, None)
                if occ in self._escalations:
                    why = f"{ev.event} by {ev.user}" if ev.user else ev.event
                    await self._stop(occ, why)
        # escalations whose first step is not due now are saved here; due ones with their pushes
        waiting = [e for e in new.values() if not e.due(now)]
        if waiting:
            await self._db_write(self.store.save_escalations, [_row(e) for e in waiting])

    async def _stop(self, occ: int, reason: str) -> None:
        self._escalations.pop(occ, None)
        keys = [p.key for p in self.outbox.pending() if p.occurrence == occ and p.kind == "alarm"]
        self.outbox.forget(keys)
        dropped = 0
        for person, b in list(self._batches.items()):
            keep = [p for p in b.items if p.occurrence != occ]
            dropped += len(b.items) - len(keep)
            if keep:
                b.items = keep
            else:
                del self._batches[person]
        self._m.cancelled.inc(len(keys) + dropped)
        await self._db_write(self.store.stop_escalation, occ, reason, self._wall(), f"cancelled: {reason}")

    async def _cancel_open_pushes(self, occ: int, reason: str) -> None:
        pend = [p for p in self.outbox.pending() if p.occurrence == occ and p.kind == "alarm"]
        batched = [p for b in self._batches.values() for p in b.items if p.occurrence == occ]
        for b in self._batches.values():
            b.items = [p for p in b.items if p.occurrence != occ]
        self.outbox.forget(p.key for p in pend)
        keys = [p.key for p in pend + batched]
        if keys:
            await self._db_write(self.store.cancel_pushes, keys, reason, self._wall())

    # ================================================================== escalation steps
    def _closed_reason(self, occ: int, alarm: str | None = None) -> tuple[str | None, AlarmView | None]:
        """Why pushes for ``occ`` must not go (acknowledged, closed), or None; and the view."""
        try:
            v = self.engine.get(occ)
        except AlarmNotFound:
            return "occurrence closed", None
        if alarm is not None and v.id != alarm:
            return "occurrence closed", None
        if v.state == S.ACKED:
            return f"acknowledged by {v.acked_by}", v
        if v.state not in UNACKED:
            return f"alarm is {v.state}", v
        return None, v

    async def _fire_due(self, now: float) -> None:
        wall = self._wall()
        flooded = self.flooded(now)
        for esc in list(self._escalations.values()):
            due = esc.due(now)
            if not due:
                continue
            reason, view = self._closed_reason(esc.occurrence, esc.alarm)
            if reason is not None:
                await self._stop(esc.occurrence, reason)
                continue
            assert view is not None
            per_step: list[tuple[int, list[str]]] = []
            for i in due:
                res = self.targets.resolve(esc.steps[i].notify, esc.hs, wall)
                if res.fallback is not None:
                    self._m.fallbacks.inc()
                    self._rlog.warning(
                        f"fallback:{esc.alarm}",
                        "notify %s step %d: %s (%s)",
                        esc.alarm,
                        i,
                        res.fallback,
                        ", ".join(res.people) or "nobody",
                    )
                per_step.append((i, res.people))
            info = AlarmInfo.from_dict(esc.info)
            batch = flooded and esc.priority >= 2
            pl = plan(per_step, esc.steps, self.people)
            for step, pid, lacking in pl.fallbacks:
                self._m.fallbacks.inc()
                self._rlog.warning(
                    f"groups:{pid}:{lacking}",
                    "notify %s step %d: %s has no %s channel; sent on notify",
                    esc.alarm,
                    step,
                    pid,
                    "/".join(lacking),
                )
            pushes = [
                self._alarm_push(esc, info, step, pid, group, batch, view, now, wall)
                for step, pid, group in pl.pushes
                if pid in self.people
            ]
            esc.next_step = due[-1] + 1
            inserted = await self._db_write(self.store.fire, _row(esc), pushes)
            if inserted is None:  # not written (yet): deliver from memory
                inserted = [p for p in pushes if p.key not in {q.key for q in self.outbox.pending()}]
            self._m.pushes.labels("alarm").inc(len(inserted))
            self._hand_over(inserted, now)
            for i, people in per_step:
                if i > 0:
                    self._m.escalations.inc()
                    self._emit(
                        self._record(
                            "escalated", esc.occurrence, info, esc.round, i, state=view.state, recipients=tuple(people)
                        )
                    )

    def _alarm_push(
        self,
        esc: Escalation,
        info: AlarmInfo,
        step: int,
        pid: str,
        group: str,
        batch: bool,
        view: AlarmView,
        now: float,
        wall: int,
    ) -> PushRow:
        person = self.people[pid]
        # the notify group keeps the key it always had (pushes queued before an upgrade stay unique)
        suffix = "" if group == DEFAULT_CHANNEL else f":{group}"
        p = PushRow(
            key=f"a:{esc.occurrence}:{esc.round}:{step}:{pid}{suffix}",
            kind="alarm",
            person=pid,
            priority=esc.priority,
            status="batched" if batch else "pending",
            created_wall=wall,
            next_wall=wall,
            occurrence=esc.occurrence,
            round=esc.round,
            step=step,
            alarm=esc.alarm,
            info=esc.info if group == DEFAULT_CHANNEL else esc.info | {"via": group},
            event_wall=esc.started_wall + int(esc.steps[step].after * 1e9),
        )
        if not batch:
            link = self.ack_url(self.sign(esc.occurrence, pid, wall))
            p.title, p.body = self.templates.alarm(
                info,
                person.language,
                link=link,
                step=step,
                elapsed=now - esc.started,
                realarm=bool(esc.info.get("realarm")),
                state=view.state,
                person=person.name,
            )
            p.notify_type = NOTIFY_TYPE.get(esc.priority, "info")
        return p

    def _hand_over(self, pushes: Sequence[PushRow], now: float) -> None:
        ready = []
        for p in pushes:
            if p.status == "batched":
                b = self._batches.get((p.person, _via(p)))
                if b is None:
                    b = self._batches[(p.person, _via(p))] = _Batch(now + self.summary_interval)
                b.items.append(p)
                self._m.batched.inc()
            else:
                ready.append(p)
        if ready:
            self.outbox.add(ready)

    async def _flush_batches(self, now: float) -> None:
        if not self._batches:
            return
        flooded = self.flooded(now)
        wall = self._wall()
        for bkey, b in list(self._batches.items()):
            if flooded and b.deadline > now:
                continue
            del self._batches[bkey]
            pid, via = bkey
            keep: list[PushRow] = []
            drop: list[PushRow] = []
            for p in b.items:
                assert p.occurrence is not None
                (drop if self._closed_reason(p.occurrence, p.alarm)[0] else keep).append(p)
            if drop:
                self._m.cancelled.inc(len(drop))
                await self._db_write(
                    self.store.cancel_pushes, [p.key for p in drop], "cancelled: acknowledged or closed", wall
                )
            if not keep:
                continue
            person = self.people.get(pid)
            lang = person.language if person is not None else None
            items = []
            for p in keep:
                assert p.info is not None and p.occurrence is not None
                items.append((AlarmInfo.from_dict(p.info), self.ack_url(self.sign(p.occurrence, pid, wall))))
            title, body = self.templates.summary(items, lang, self.base_url + "/", self.summary_interval)
            prio = min(p.priority for p in keep)
            first = keep[0].id if keep[0].id is not None else keep[0].key
            s = PushRow(
                key=f"s:{pid}:{first}",
                kind="summary",
                person=pid,
                priority=prio,
                status="pending",
                created_wall=wall,
                next_wall=wall,
                title=title,
                body=body,
                notify_type=NOTIFY_TYPE.get(prio, "info"),
                info={"items": [p.info | {"round": p.round, "step": p.step} for p in keep if p.info is not None]}
                | ({} if via == DEFAULT_CHANNEL else {"via": via}),
                event_wall=min(p.event_wall or wall for p in keep),
                items=[p.id for p in keep if p.id is not None and p.id > 0],
                item_keys=[p.key for p in keep],
            )
            inserted = await self._db_write(self.store.fire, None, [s])
            if inserted is None:
                inserted = [s]
            self._m.pushes.labels("summary").inc(len(inserted))
            self._m.summaries.inc(len(inserted))
            self.outbox.add(inserted)

    async def _sweep(self) -> None:
        """Stop escalations whose occurrence was acknowledged or closed without us hearing it."""
        for esc in list(self._escalations.values()):
            reason, _ = self._closed_reason(esc.occurrence, esc.alarm)
            if reason is not None:
                await self._stop(esc.occurrence, reason)

    async def _prune(self) -> None:
        wall = self._wall()
        keep_ns = int(self.config.alarming.journal_retention * 1e9)
        await self._db_write(self.store.prune, wall - keep_ns, wall)
        now_s = wall / 1e9
        for nonce, exp in list(self._used_mem.items()):
            if exp < now_s:
                del self._used_mem[nonce]

    # ================================================================== restart
    async def _restore(self, rows: list[EscalationRow], pushes: list[PushRow]) -> None:
        """Continue the escalations and pushes of the file (at start, or when a file that
        could not be opened at start opens later: what memory has already is kept)."""
        now = self._clock()
        wall = self._wall()
        stopped = 0
        for r in rows:
            if r.occurrence in self._escalations:  # (late open) escalated from memory meanwhile
                continue
            reason, _ = self._closed_reason(r.occurrence, r.alarm)
            if reason is not None:
                stopped += 1
                await self._db_write(
                    self.store.stop_escalation, r.occurrence, f"{reason} (found at start)", wall, f"cancelled: {reason}"
                )
                continue
            self._escalations[r.occurrence] = Escalation(
                occurrence=r.occurrence,
                alarm=r.alarm,
                priority=r.priority,
                hs=r.hs,
                steps=policy_for(self.config.duty, r.priority),
                started=now - max(0.0, (wall - r.started_wall) / 1e9),
                started_wall=r.started_wall,
                round=r.round,
                next_step=r.next_step,
                info=r.info,
            )
        # occurrences the engine restored as unacknowledged but never escalated here
        active = [v for v in self.engine.active() if v.occurrence is not None and v.state in UNACKED and not v.test]
        known: set[int] = set()
        if self._durable and active:
            known = await self._db_read(self.store.known_occurrences, [v.occurrence for v in active]) or set()
        caught = []
        for v in active:
            assert v.occurrence is not None
            if v.occurrence in known or v.occurrence in self._escalations:
                continue
            info = AlarmInfo.from_view(v, wall)
            started_wall = min(max(info.ts, wall - 86400 * 10**9), wall)
            esc = Escalation(
                occurrence=v.occurrence,
                alarm=v.id,
                priority=v.priority,
                hs=v.hs,
                steps=policy_for(self.config.duty, v.priority),
                started=now - (wall - started_wall) / 1e9,
                started_wall=started_wall,
                round=started_wall,
                info=info.to_dict() | {"realarm": False},
            )
            self._escalations[v.occurrence] = esc
            caught.append(esc)
        if caught:
            log.warning("notify: %d unacknowledged occurrence(s) had no escalation record; escalating now", len(caught))
            await self._db_write(self.store.save_escalations, [_row(e) for e in caught])
        ready = []
        batched = {p.key for b in self._batches.values() for p in b.items}
        for p in pushes:
            if p.status == "batched":
                if p.key in batched:
                    continue
                b = self._batches.setdefault((p.person, _via(p)), _Batch(now))
                b.items.append(p)
            else:
                p.next_wall = min(p.next_wall, wall)  # a restart is a good moment to try again
                ready.append(p)
        self.outbox.add(ready)
        if rows or pushes or caught:
            log.info(
                "notify: restored %d escalation(s) (%d stopped), %d push(es) to deliver, %d batched",
                len(self._escalations) - len(caught),
                stopped,
                len(ready),
                len(pushes) - len(ready),
            )

    # ================================================================== outbox hooks
    def _urls(self, push: PushRow) -> list[str]:
        """The push's channel group of its person (``notify`` if the group is gone)."""
        p = self.people.get(push.person)
        if p is None:
            return []
        return p.group(_via(push)) or list(p.notify)

    def _params(self, push: PushRow) -> dict[str, str] | None:
        """Template parameters of SMS/voice pushes (providers/base.py FIELDS), at send time."""
        person = self.people.get(push.person)
        lang = self._lang(person)
        name = person.name if person is not None else push.person
        wall = self._wall()
        try:
            if push.kind == "summary":
                items = [AlarmInfo.from_dict(i) for i in (push.info or {}).get("items", [])]
                return self.templates.summary_sms_fields(items, lang, wall, person=name, link=self.base_url + "/")
            if push.info is None or push.occurrence is None:
                return None
            state = None
            with contextlib.suppress(AlarmNotFound):
                state = self.engine.get(push.occurrence).state
            link = self.ack_url(self.sign(push.occurrence, push.person, wall)) if self._signer is not None else ""
            return self.templates.sms_fields(
                AlarmInfo.from_dict(push.info), lang, step=push.step or 0, state=state, person=name, link=link
            )
        except Exception:
            self._rlog.error("params", "notify: cannot build SMS/voice parameters", exc_info=True)
            return None

    def _check_push(self, p: PushRow) -> str | None:
        if p.kind == "summary":
            items = (p.info or {}).get("items", [])
            if items and all(self._closed_reason(i["occurrence"], i.get("alarm"))[0] for i in items):
                return "every alarm in it was acknowledged or closed"
            return None
        if p.occurrence is None:
            return None
        reason, _ = self._closed_reason(p.occurrence, p.alarm)
        if reason is not None:
            return reason
        esc = self._escalations.get(p.occurrence)
        if esc is not None and p.round is not None and esc.round != p.round:
            return "superseded by a re-alarm"
        return None

    def _on_attempt(self, p: PushRow, a: Attempt) -> None:
        state = None
        if p.kind == "summary":
            infos = [
                (AlarmInfo.from_dict(i), i.get("round") or 0, i.get("step")) for i in (p.info or {}).get("items", [])
            ]
        else:
            if p.info is None or p.occurrence is None:
                return
            infos = [(AlarmInfo.from_dict(p.info), p.round or 0, p.step)]
        for info, rnd, step in infos:
            with contextlib.suppress(AlarmNotFound):
                state = self.engine.get(info.occurrence).state
            self._emit(
                self._record(
                    "notified",
                    info.occurrence,
                    info,
                    rnd,
                    step,
                    state=state,
                    person=p.person,
                    channel=a.channel,
                    outcome=a.outcome,
                    attempt=a.attempt,
                    error=a.error,
                    kind=p.kind,
                )
            )

    def _record(self, event: str, occ: int, info: AlarmInfo, rnd: int, step: int | None, **kw: Any) -> NotifyRecord:
        wall = self._wall()
        last = self._last_ts.get(info.alarm)
        if last is not None and wall <= last:  # one InfluxDB point per (series, time)
            wall = last + 1
        if len(self._last_ts) > 10_000:
            self._last_ts.clear()
        self._last_ts[info.alarm] = wall
        return NotifyRecord(
            event=event,
            wall=wall,
            occurrence=occ,
            alarm=info.alarm,
            tag=info.tag,
            condition=info.condition,
            priority=info.priority,
            hs=info.hs,
            round=rnd,
            step=step,
            **kw,
        )

    def _emit(self, rec: NotifyRecord) -> None:
        for cb in list(self._subs):
            try:
                cb(rec)
            except Exception:
                self._rlog.error(f"cb:{id(cb)}", "notify record subscriber %r failed", cb, exc_info=True)

    # ================================================================== ack links
    def sign(self, occurrence: int, person: str, wall: int | None = None) -> str:
        if self._signer is None:
            raise RuntimeError("notifier not started (no ack key yet)")
        now_s = (self._wall() if wall is None else wall) / 1e9
        return self._signer.sign(occurrence, person, int(now_s + self.ttl))

    def ack_url(self, token: str) -> str:
        return f"{self.base_url}/ack/{token}"

    def _lang(self, person: Person | None) -> str:
        return (person.language if person is not None else None) or self.config.notification.language

    async def inspect(self, token: str) -> AckView:
        """What ``GET /ack/{token}`` shows; never changes anything."""
        return await self._check_token(token)

    async def _check_token(self, token: str) -> AckView:
        lang: str = self.config.notification.language
        if self._signer is None:
            return AckView("invalid", lang, detail="notifier not started")
        try:
            claims = self._signer.verify(token, self._wall() / 1e9)
        except TokenExpired as e:
            return AckView("expired", self._lang(self.people.get(e.claims.person)), claims=e.claims)
        except TokenInvalid as e:
            return AckView("invalid", lang, detail=str(e))
        person = self.people.get(claims.person)
        if person is None:
            return AckView("invalid", lang, claims=claims, detail="unknown person")
        lang = self._lang(person)
        used = await self._token_used(claims.nonce)
        fields = self._fields(claims.occurrence, lang)
        if used is not None:
            return AckView("used", lang, person, claims, fields, by=used[0], at=used[1])
        reason, view = self._closed_reason(claims.occurrence)
        if view is None:
            return AckView("closed", lang, person, claims, fields, detail=reason)
        if reason is not None:
            return AckView(
                "already_acked", lang, person, claims, fields, by=view.acked_by, at=view.acked_wall, detail=reason
            )
        return AckView("ok", lang, person, claims, fields)

    def _fields(self, occ: int, lang: str) -> dict[str, str] | None:
        esc = self._escalations.get(occ)
        view: AlarmView | None = None
        with contextlib.suppress(AlarmNotFound):
            view = self.engine.get(occ)
        if esc is not None:
            info = AlarmInfo.from_dict(esc.info)
        elif view is not None:
            info = AlarmInfo.from_view(view, self._wall())
        else:
            return None
        return self.templates.fields(info, lang, state=view.state if view is not None else "NORM")

    async def _token_used(self, nonce: str) -> tuple[str, int] | None:
        if nonce in self._used_mem:  # used while the database could not record it
            return ("?", 0)
        if self._durable:
            with contextlib.suppress(Exception):
                return await self.db.run(self.store.token_used, nonce)
        return None

    async def acknowledge(self, token: str, comment: str | None = None) -> AckView:
        """``POST /ack/{token}``: acknowledge the occurrence as the token's person, once."""
        v = await self._check_token(token)
        if v.status != "ok":
            self._m.acks.labels(v.status).inc()
            return v
        claims, person = v.claims, v.person
        assert claims is not None and person is not None
        wall = self._wall()
        consumed = await self._consume(claims, wall)
        if not consumed:
            self._m.acks.labels("used").inc()
            used = await self._token_used(claims.nonce)
            return AckView(
                "used", v.lang, person, claims, v.fields, by=used[0] if used else None, at=used[1] if used else None
            )
        try:
            ev = self.engine.ack(claims.occurrence, person.id, comment or "one-tap ack link")
        except AlarmNotFound:
            await self._release(claims.nonce)
            self._m.acks.labels("closed").inc()
            return AckView("closed", v.lang, person, claims, v.fields)
        except S.InvalidTransition as e:
            await self._release(claims.nonce)
            self._m.acks.labels("already_acked").inc()
            view = None
            with contextlib.suppress(AlarmNotFound):
                view = self.engine.get(claims.occurrence)
            return AckView(
                "already_acked",
                v.lang,
                person,
                claims,
                v.fields,
                by=view.acked_by if view else None,
                at=view.acked_wall if view else None,
                detail=str(e),
            )
        self._m.acks.labels("acked").inc()
        log.info("alarm %s occurrence %d acknowledged by %s via push link", ev.alarm, claims.occurrence, person.id)
        fields = self._fields(claims.occurrence, v.lang) or v.fields
        return AckView("acked", v.lang, person, claims, fields, by=person.id, at=ev.wall)

    async def _consume(self, claims: AckClaims, wall: int) -> bool:
        """Record the token as used; False when it was used before. When the database cannot
        record it, memory does (single use holds in this process) and the write is kept to
        be stored once the disk takes it (single use across a later restart)."""
        if claims.nonce in self._used_mem:
            return False
        args = (claims.nonce, claims.occurrence, claims.person, wall, claims.expires * 10**9)
        if self._durable and not self.db.backlog:
            try:
                return bool(await self.db.run(self.store.consume_token, *args))
            except Exception as e:
                self._m.db_errors.inc()
                log.critical("notify: cannot record a used ack link (%s); remembering it in memory", e)
        elif self._durable:
            with contextlib.suppress(Exception):  # earlier writes wait: the token table may still answer
                if await self.db.run(self.store.token_used, claims.nonce) is not None:
                    return False
        self.db.defer(self.store.consume_token, *args)
        self._used_mem[claims.nonce] = claims.expires
        return True

    async def _release(self, nonce: str) -> None:
        self._used_mem.pop(nonce, None)
        await self._db_write(self.store.release_token, nonce)

    # ================================================================== queries (API)
    async def deliveries(self, occurrence: int | None = None, limit: int = 1000) -> list[dict[str, Any]]:
        """Delivery attempts (who, when, channel, outcome), oldest first."""
        return await self.db.run(self.store.deliveries, occurrence, limit)

    # ================================================================== helpers
    async def _db_write(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A store write: its result, or None when it could not be written now (it is kept
        in memory and retried in order, see DbThread; delivery goes on from memory)."""
        return await self.db.write(fn, *args)

    async def _db_read(self, fn: Callable[..., Any], *args: Any) -> Any:
        """A store read; None when the store is not open or the read fails (logged)."""
        if not self._durable:
            return None
        try:
            return await self.db.run(fn, *args)
        except Exception as e:
            self._m.db_errors.inc()
            self._rlog.log(logging.CRITICAL, "db", "notify outbox read failed (%s)", e)
            return None


def _via(p: PushRow) -> str:
    via = (p.info or {}).get("via")
    return via if isinstance(via, str) and via else DEFAULT_CHANNEL


def _row(e: Escalation) -> EscalationRow:
    return EscalationRow(e.occurrence, e.alarm, e.priority, e.hs, e.round, e.started_wall, e.next_step, e.info)
