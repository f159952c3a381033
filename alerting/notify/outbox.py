"""The outbox worker: delivers pushes already written to the store, with retry and failover.

Contract:

* A push reaches :meth:`Outbox.add` only after its row is committed (the notifier writes
  first). If the database is broken the notifier still hands the push over, without an id:
  it is delivered from memory (durability lost, delivery not).
* Each attempt uses ONE apprise URL of the push's channel group (``urls(push)``: the
  person's ``notify`` list, or a group such as ``sms``; one push per group, so the never-twice
  guarantee below holds per channel group). SMS/voice URLs get the alarm's template
  parameters from ``params(push)``. A failure fails over at once to the
  group's next URL not tried in this round; when every URL failed, the next round waits
  ``backoff_base * 2**(rounds-1)`` seconds, capped at ``notification.retry_max`` (exactly:
  gateway/core/backoff.py without jitter; pushes are not a herd to spread). A URL that
  failed within ``failover_hold`` seconds is tried after the healthy ones, so a dead first
  channel does not delay every push.
* Before every attempt ``check(push)`` may cancel it (the occurrence was acknowledged or
  closed, or re-alarmed into a new round); cancelled pushes are recorded, never sent.
* Every attempt and its outcome is committed to ``deliveries`` and reported to
  ``on_attempt`` (the notifier turns it into a ``notified`` record).
* A push still undelivered ``give_up_after`` seconds after it was queued (the ack link's
  lifetime) is marked failed (``gave_up``) and logged critical.
* At-least-once: a crash between a channel accepting a push and the commit of that result
  re-sends that one push after the restart. Nothing else is ever sent twice.
* A result that cannot be committed (disk full) is not lost: the push is finished in
  memory (never sent again by this process) and the write waits in the store's backlog
  (store.py ``DbThread``), retried in order until it commits. Once it has, a restart does
  not send the push again; a process that dies before that sends it once more after the
  restart (the at-least-once case above, stretched over the time the disk is full).

Bounds: at most ``max_in_flight`` concurrent attempts (default 16); the schedule holds
every pending push (never dropped), whose number is bounded by the open occurrences times
the recipients of their steps, plus one summary per person.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from alerting.notify.channels import Channels, mask_url, needs_params
from alerting.notify.metrics import NotifyMetrics
from alerting.notify.store import Attempt, DbThread, PushRow
from gateway.core.backoff import Backoff

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Item:
    push: PushRow
    seq: int
    due: float  # monotonic
    tried: set[int] = field(default_factory=set)  # URL indices tried in this round
    rounds: int = 0  # completed rounds (every URL failed)
    done: bool = False
    version: int = 0  # bumps on reschedule; stale heap entries are skipped


class Outbox:
    def __init__(
        self,
        *,
        db: DbThread | None,
        channels: Channels,
        urls: Callable[[PushRow], list[str]],
        check: Callable[[PushRow], str | None],
        on_attempt: Callable[[PushRow, Attempt], None],
        metrics: NotifyMetrics,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], int] = time.time_ns,
        retry_max: float = 300.0,
        backoff_base: float = 1.0,
        give_up_after: float = 86400.0,
        max_in_flight: int = 16,
        failover_hold: float = 60.0,
        tick_interval: float = 0.25,
        params: Callable[[PushRow], Mapping[str, str] | None] | None = None,
    ) -> None:
        self.db = db
        self.channels = channels
        self._urls = urls
        self._params = params
        self._check = check
        self._on_attempt = on_attempt
        self._m = metrics
        self._clock = clock
        self._wall = wall
        self.retry_max = retry_max
        self.backoff_base = backoff_base
        # the round schedule is documented (module doc) and exact: no jitter
        self._rounds = Backoff(backoff_base, retry_max, jitter=False)
        self.give_up_after = give_up_after
        self.max_in_flight = max_in_flight
        self.failover_hold = failover_hold
        self.tick_interval = tick_interval
        self._items: dict[str, _Item] = {}  # by push key: every push not finished
        self._heap: list[tuple[float, int, int, _Item]] = []  # (due, seq, version, item)
        self._seq = itertools.count()
        self._inflight: dict[str, asyncio.Task[None]] = {}
        self._failed_at: dict[str, float] = {}  # url -> monotonic time of its last failure
        self._last_error: dict[str, str] = {}  # masked url -> last error
        self._wake: asyncio.Event | None = None
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._mem_ids = itertools.count(-1, -1)  # ids of pushes that could not be stored

    # ------------------------------------------------------------------ queue
    def add(self, pushes: Iterable[PushRow]) -> None:
        """Schedule pushes (already written to the store; ``id`` None = memory only)."""
        now = self._clock()
        wall = self._wall()
        for p in pushes:
            if p.key in self._items:
                continue
            if p.id is None:
                p.id = next(self._mem_ids)
            due = now + max(0.0, (p.next_wall - wall) / 1e9)
            item = _Item(p, next(self._seq), due)
            self._items[p.key] = item
            heapq.heappush(self._heap, (due, item.seq, item.version, item))
        self._m.pending.set(len(self._items))
        if self._wake is not None:
            self._wake.set()
            if not self._stopping:
                # due now: start the attempts here rather than one event-loop turn later in
                # the worker (issue 23: every turn under load is a slice of readings)
                self._launch_due()

    def forget(self, keys: Iterable[str]) -> None:
        """Drop pushes from the schedule (the notifier cancelled them in the store)."""
        for k in keys:
            item = self._items.pop(k, None)
            if item is not None:
                item.done = True
        self._m.pending.set(len(self._items))

    def pending(self) -> list[PushRow]:
        return [i.push for i in self._items.values()]

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._stopping = False
        self._wake = asyncio.Event()
        self._wake.set()
        self._task = asyncio.create_task(self._run(), name="notify-outbox")

    async def stop(self, grace: float = 5.0) -> None:
        """Stop scheduling; give attempts in flight ``grace`` seconds to finish and be recorded."""
        self._stopping = True
        if self._wake is not None:
            self._wake.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        tasks = list(self._inflight.values())
        if tasks:
            _done, still = await asyncio.wait(tasks, timeout=grace)
            for t in still:
                t.cancel()
            if still:
                await asyncio.gather(*still, return_exceptions=True)

    def health(self) -> dict[str, Any]:
        now = self._clock()
        failing = sum(1 for i in self._items.values() if i.rounds > 0)
        oldest = min((i.push.created_wall for i in self._items.values()), default=None)
        return {
            "pending": len(self._items),
            "in_flight": len(self._inflight),
            "failing": failing,
            "oldest_pending_s": None if oldest is None else round((self._wall() - oldest) / 1e9, 1),
            "channels_failing": sorted(mask_url(u) for u, t in self._failed_at.items() if now - t < self.failover_hold),
            "last_errors": dict(self._last_error),
        }

    # ------------------------------------------------------------------ worker
    async def _run(self) -> None:
        assert self._wake is not None
        while not self._stopping:
            try:
                self._launch_due()
            except Exception:
                log.exception("notify outbox: scheduling failed; continuing")
            timeout = self.tick_interval
            if self._heap and len(self._inflight) < self.max_in_flight:  # when full, a finished attempt wakes us
                timeout = min(timeout, max(0.0, self._heap[0][0] - self._clock()))
            await wait_event(self._wake, timeout)
            self._wake.clear()

    def _launch_due(self) -> None:
        now = self._clock()
        ready: list[_Item] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            _, _, version, item = heapq.heappop(heap)
            if item.done or version != item.version or item.push.key in self._inflight:
                continue
            ready.append(item)
        ready.sort(key=lambda i: (i.push.priority, i.seq))
        for item in ready:
            if len(self._inflight) >= self.max_in_flight:  # wait for a slot; keep it due
                heapq.heappush(heap, (item.due, item.seq, item.version, item))
                continue
            key = item.push.key
            self._inflight[key] = asyncio.create_task(self._attempt(item), name=f"push {item.push.id}")

    def _order(self, urls: list[str]) -> list[int]:
        now = self._clock()
        healthy = [i for i, u in enumerate(urls) if now - self._failed_at.get(u, -1e18) >= self.failover_hold]
        return healthy + [i for i in range(len(urls)) if i not in healthy]

    async def _attempt(self, item: _Item) -> None:
        p = item.push
        try:
            await self._attempt_inner(item)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("notify outbox: attempt for push %s failed unexpectedly; retrying later", p.id)
            self._reschedule(item, self._clock() + max(self.backoff_base, 1.0))
        finally:
            self._inflight.pop(p.key, None)
            if self._wake is not None:
                self._wake.set()

    async def _attempt_inner(self, item: _Item) -> None:
        p = item.push
        assert p.id is not None
        reason = self._check(p)
        if reason is not None:
            self._m.cancelled.inc()
            await self._finish(item, "cancelled", "cancelled", None, reason, None)
            return
        urls = self._urls(p)
        if not urls:
            self._m.no_channel.inc()
            log.error("notify: person %s has no push channel; push %s cannot be delivered", p.person, p.id)
            await self._finish(item, "failed", "no_channel", None, "person has no notify URL", None)
            return
        order = [i for i in self._order(urls) if i not in item.tried] or self._order(urls)
        idx = order[0]
        url = urls[idx]
        shown = mask_url(url)
        params = self._params(p) if self._params is not None and needs_params(url) else None
        res = await self.channels.send(url, p.title or "", p.body or "", p.notify_type or "info", params=params)
        p.attempts += 1
        now = self._clock()
        if res.ok:
            self._failed_at.pop(url, None)
            self._last_error.pop(shown, None)
            self._m.attempts.labels("sent").inc()
            if p.event_wall is not None and p.attempts >= 1:
                self._m.latency.observe(max(0.0, (self._wall() - p.event_wall) / 1e9))
            await self._finish(item, "sent", "sent", shown, None, res.elapsed)
            return
        self._m.attempts.labels("failed").inc()
        self._failed_at[url] = now
        self._last_error[shown] = res.error or "failed"
        item.tried.add(idx)
        if len(item.tried) >= len(urls):
            item.rounds += 1
            item.tried.clear()
            delay = self._rounds.delay(item.rounds - 1)
        else:
            delay = 0.0
            self._m.failovers.inc()
        if (self._wall() - p.created_wall) / 1e9 >= self.give_up_after:
            self._m.gave_up.inc()
            log.critical(
                "notify: push %s to %s undelivered after %d attempts; giving up (%s)",
                p.id,
                p.person,
                p.attempts,
                res.error,
            )
            await self._finish(item, "failed", "gave_up", shown, res.error, res.elapsed)
            return
        log.warning(
            "notify: push %s to %s via %s failed (%s); next attempt in %.0f s%s",
            p.id,
            p.person,
            shown,
            res.error,
            delay,
            " on the next channel" if delay == 0 else "",
        )
        await self._record(
            item,
            Attempt(
                p.id,
                self._wall(),
                p.person,
                p.occurrence,
                p.step,
                p.attempts,
                shown,
                "failed",
                res.error,
                res.elapsed,
                "pending",
                self._wall() + int(delay * 1e9),
            ),
        )
        self._reschedule(item, now + delay)

    def _reschedule(self, item: _Item, due: float) -> None:
        if item.done:
            return
        item.version += 1
        item.due = due
        heapq.heappush(self._heap, (due, item.seq, item.version, item))

    async def _finish(
        self, item: _Item, status: str, outcome: str, channel: str | None, error: str | None, elapsed: float | None
    ) -> None:
        p = item.push
        assert p.id is not None
        item.done = True
        self._items.pop(p.key, None)
        self._m.pending.set(len(self._items))
        await self._record(
            item,
            Attempt(
                p.id,
                self._wall(),
                p.person,
                p.occurrence,
                p.step,
                p.attempts,
                channel,
                outcome,
                error,
                elapsed,
                status,
                self._wall(),
            ),
        )

    async def _record(self, item: _Item, a: Attempt) -> None:
        """Commit the attempt (before anyone hears of it), then report it. A write the disk
        refuses waits in the store's backlog (retried in order); delivery continues."""
        p = item.push
        p.status = a.status
        a.key = p.key  # a push delivered from memory (no stored id yet) is found by key
        if self.db is not None:
            await self.db.write(self.db.store.record, a)
        try:
            self._on_attempt(p, a)
        except Exception:
            log.exception("notify: attempt callback failed")


async def wait_event(event: asyncio.Event, within: float) -> None:
    """Wait for ``event`` at most ``within`` seconds.

    ``asyncio.timeout`` rather than ``asyncio.wait_for``: on Python 3.11 ``wait_for`` can
    swallow a cancellation that arrives while the event is being set, and a stopping task
    would then run on."""
    if within <= 0:
        await asyncio.sleep(0)
        return
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within):
            await event.wait()
