"""The alarm engine: evaluates every reading, runs the ISA-18.2 state machine, publishes events.

``AlarmEngine`` is a pipeline subscriber (``name``, synchronous ``on_readings``). Per
reading it does a dict lookup, a few attribute stores and one ``feed`` per condition of the
tag; only a condition *change* reaches the state machine, creates an :class:`AlarmEvent`
and hands it to the history, the journal queue and the subscribers, all in memory. No I/O,
no logging per reading, no pydantic object on this path.

Time: delays, stale detection, frozen, shelving and re-alarm use the injectable monotonic
``clock`` (seconds); event timestamps use the reading's source timestamp (raised/cleared
caused by a reading) or the injectable ``wall`` clock (ns). A timer task calls
:meth:`tick` every ``tick_interval``; tests call ``tick()`` themselves with a fake clock.

Start order: ``await engine.start()`` (restores the journal's state) before the pipeline
starts dispatching; ``await engine.stop()`` after the pipeline stopped (flushes the
journal).

Subscriber callbacks run synchronously inside the evaluation and must be cheap (append
to the subscriber's own buffer) and must not call back into the engine; an exception in
one is counted and does not affect the others or the engine.

Test mode (:meth:`AlarmEngine.set_tests`, driven by gateway/upkeep/testmode.py): a tag in
test is evaluated exactly as before, but an occurrence raised while it is in test is a
*test occurrence*: its events carry ``test=True`` (journaled, shown, never pushed or sent to
the platform), it does not count towards the hazard-source status, the active-alarm gauges
or a flood. Alarms of other tags are untouched: a vote is a test alarm only while its
non-test members alone are fewer than k (a real member that trips it turns it into a real
alarm at once), a COMM alarm is never a test alarm, and a discrete tag in test suppresses
nothing by design. When the tag leaves test mode its test occurrences close (``test_ended``)
and a condition still active is raised anew, as a real alarm. Nothing of this runs per
reading except one attribute check per vote a reading's tag is a member of.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Collection, Sequence
from typing import Any, Final

from alerting import states as S
from alerting.alarms import AlarmPoint, AlarmView, Gate
from alerting.comm import LOSS, CommLost
from alerting.conditions import PENDING
from alerting.events import AlarmEvent
from alerting.journal import Journal, Restored
from alerting.metrics import AlarmMetrics
from alerting.plan import TRIPS_VOTE, USABLE, TagPlan, build_plans
from alerting.status import DEFAULT_RULE, RANK, HazardStatus, evaluate
from gateway.core.config import SiteConfig, StatusRule
from gateway.core.metrics import Metrics
from gateway.core.models import Reading
from gateway.core.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

SYSTEM: Final = "system"  # the user of transitions made by timers and suppression by design
_COUNTED: Final = frozenset({S.UNACK, S.ACKED, S.SHLVD})  # states that count towards hazard-source status


class AlarmNotFound(LookupError):
    """No alarm with that id, or no open occurrence with that number."""


class NotPermitted(Exception):
    """The action is not allowed for this alarm (e.g. shelving a gas alarm)."""


AlarmCallback = Callable[[AlarmEvent], None]


class AlarmEngine:
    name = "alarms"

    def __init__(
        self,
        config: SiteConfig,
        metrics: Metrics,
        journal: Journal | None,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], int] = time.time_ns,
        *,
        tick_interval: float = 0.25,
        history_size: int = 5000,
        recent_occurrences: int = 10_000,
    ) -> None:
        self.config = config
        self._clock = clock
        self._wall = wall
        self._journal = journal
        self._journal_error: str | None = None
        self.tick_interval = tick_interval
        self._m = metrics.group(AlarmMetrics)
        self._rlog = RateLimitedLog(log, 30.0)  # log pacing only (its own monotonic clock); never alarm logic

        built = build_plans(config)
        self._plans: dict[str, TagPlan] = built.tags
        self._alarms: dict[str, AlarmPoint] = built.alarms
        self.warnings: list[str] = built.warnings
        for w in self.warnings:
            log.warning("alarm config: %s", w)
        self._stale_plans = [(p, p.stale_after) for p in self._plans.values() if p.stale_after is not None]
        self._comm: list[AlarmPoint] = built.comm
        self._held: set[AlarmPoint] = set()  # gated alarms waiting for their parent or for their tags
        # test mode: the tags in test, and each vote's member plans (for "is this vote a test alarm")
        self._testing: frozenset[str] = frozenset()
        self._vote_members: dict[str, list[tuple[TagPlan, AlarmPoint | None]]] = {}
        for p in self._plans.values():
            for link in p.vote_links:
                self._vote_members.setdefault(link.vote.key, []).append((p, link.member))
        self._test_occ: set[int] = set()  # recent occurrence ids that are test occurrences (bounded like _recent)

        al = config.alarming
        self._shelve_max = al.shelve_max
        self._chatter_window = al.chatter_window
        self._flood_window = al.flood_window
        self._flood_times: deque[float] = deque(maxlen=al.flood_count + 1)
        self._flood = False
        rule = al.status_rule
        self._rule: StatusRule = rule if isinstance(rule, StatusRule) else DEFAULT_RULE
        self._grades = {h.code: h.grade for h in config.hazard_sources}
        self._hs_counts: dict[str, list[int]] = {h.code: [0, 0, 0] for h in config.hazard_sources}
        self._hs_status: dict[str, str] = {}
        for code in self._hs_counts:
            self._update_hs(code)

        self._subs: list[AlarmCallback] = []
        self._timed: set[AlarmPoint] = set()
        self._history: deque[AlarmEvent] = deque(maxlen=history_size)
        self._open: dict[int, AlarmPoint] = {}  # open occurrence id -> alarm
        self._recent: OrderedDict[int, str] = OrderedDict()  # occurrence id -> alarm id (bounded)
        self._recent_max = recent_occurrences
        self._active_counts = {1: 0, 2: 0, 3: 0}
        self._seq = 0
        self._next_occ = 1
        self._task: asyncio.Task[None] | None = None
        now = clock()
        for p in self._plans.values():
            p.last_seen = now

    # ================================================================== lifecycle
    async def start(self) -> None:
        """Restore the journal's state (no events), start the journal writer and the timers."""
        j = self._journal
        if j is not None:
            try:
                restored = await asyncio.to_thread(j.open)
            except Exception as e:  # alarms must keep working without their journal
                self._journal_error = f"{type(e).__name__}: {e}"
                log.critical("alarm journal %s cannot be opened (%s): alarms run WITHOUT a journal", j.file, e)
                self._journal = None
            else:
                self.restore(restored)
                await j.start()
        now = self._clock()
        for p in self._plans.values():
            p.last_seen = now
        self._task = asyncio.create_task(self._timer_loop(), name="alarm-timers")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self._journal is not None:
            await self._journal.stop()

    async def _timer_loop(self) -> None:
        while True:
            await asyncio.sleep(self.tick_interval)
            try:
                self.tick()
            except Exception:
                self._error("timer", "tick")

    def health(self) -> dict[str, Any]:
        j = self._journal
        if j is not None:
            journal: dict[str, Any] = j.health()
        elif self._journal_error is not None:  # configured but failed to open: degraded
            journal = {"ok": False, "error": self._journal_error}
        else:
            journal = {"ok": True, "configured": False}
        ok = self._task is not None and not self._task.done()
        return {
            "ok": ok and bool(journal.get("ok", False)),
            "running": ok,
            "alarms": len(self._alarms),
            "active": len(self._open),
            "flood": self._flood,
            "journal": journal,
        }

    @property
    def journal(self) -> Journal | None:
        return self._journal

    @property
    def flood(self) -> bool:
        return self._flood

    # ================================================================== hot path
    def on_readings(self, batch: Sequence[Reading]) -> None:
        now = self._clock()
        plans = self._plans
        for r in batch:
            p = plans.get(r[0])
            if p is None:
                continue
            try:
                p.last_seen = now
                q = r[3]
                if q != p.quality or p.stale_flag:
                    self._quality(p, q, now, r[2])
                if p.usable:
                    v = r[1]
                    if v is not None and v == v:  # NaN is no value
                        p.last_value = v
                        ts = r[2]
                        for a in p.value_alarms:
                            c = a.cond.feed(v, now, ts)
                            if c:
                                if c == PENDING:
                                    self._timed.add(a)
                                else:
                                    self._cond_changed(a, ts)
                if p.extra:
                    self._extra(p, r[2])
            except Exception:
                self._error("reading", r[0])

    def _quality(self, p: TagPlan, q: str, now: float, ts: int | None) -> None:
        if p.stale_flag and q != "stale":
            p.stale_flag = False
        p.quality = q
        p.usable = q in USABLE
        p.is_bad = q in TRIPS_VOTE or p.stale_flag
        if p.unit is not None:  # before BAD/STALE: a loss that completes the unit's is suppressed at once
            self._unit_tag(p, p.unit, q in LOSS or p.stale_flag, now)
        b = p.bad
        if b is not None:
            c = b.cond.feed_quality(q, now)
            if c == PENDING:
                self._timed.add(b)
            elif c:
                self._cond_changed(b, ts)
        st = p.stale
        if st is not None and st.cond.set(p.stale_flag or q == "stale"):
            self._cond_changed(st, ts)

    def _extra(self, p: TagPlan, ts: int | None) -> None:
        """Votes this tag is a member of, alarms it suppresses by design."""
        for link in p.vote_links:
            vote = link.vote
            cond = vote.cond
            tripped = p.is_bad or (link.member is not None and link.member.cond.active)
            if cond.update(link.index, tripped):
                self._cond_changed(vote, ts)
            elif vote.state == S.ACKED and cond.active and cond.count > vote.ack_severity:
                # severity rise: more detectors tripped since the acknowledge -> re-alarm
                self._input(vote, S.REALARM, ts=ts, user=SYSTEM, comment=f"severity rose to {cond.count} of {cond.n}")
            if vote.test and tripped and not p.test and vote.occurrence is not None:
                self._retest(vote)  # a real member tripped: the vote may be a real alarm now
        if p.suppresses:
            usable = p.usable and not p.stale_flag and p.last_value is not None and not p.test
            for a in p.suppresses:
                on = usable and ((p.last_value != 0.0) == a.suppress_state)
                if on != a.suppressed:
                    inp = S.SUPPRESS if on else S.UNSUPPRESS
                    why = (f"{p.tag} {'=' if on else '!='} {int(a.suppress_state)}" if usable
                           else f"{p.tag} in test" if p.test else f"{p.tag} not good")
                    self._input(a, inp, ts=ts, user=SYSTEM, comment=why, flags=(a.oos, on, a.shelved))

    # ================================================================== timers
    def tick(self) -> None:
        """Delays, re-alarm, shelf expiry, chattering and flood ends, stale scan."""
        now = self._clock()
        if self._timed:
            for a in list(self._timed):
                try:
                    self._on_timer(a, now)
                except Exception:
                    self._error("timer", a.key)
        for p, after in self._stale_plans:
            if not p.stale_flag and now - p.last_seen >= after:
                try:
                    self._went_stale(p)
                except Exception:
                    self._error("stale", p.tag)
        if self._held:
            for a in [a for a in self._held if a.hold_until is not None and now >= a.hold_until]:
                try:
                    self._hold_ended(a)
                except Exception:
                    self._error("timer", a.key)
        if self._flood and now - self._flood_times[0] > self._flood_window:
            self._flood = False
            self._m.in_flood.set(0)

    def _on_timer(self, a: AlarmPoint, now: float) -> None:
        cond = a.cond
        if cond.due is not None and now >= cond.due and cond.expire(now):
            self._cond_changed(a, None)
            if a.plan is not None and a.plan.extra:
                self._extra(a.plan, None)
        if a.realarm_due is not None and now >= a.realarm_due:
            a.realarm_due = None
            if a.state == S.ACKED and cond.active:
                self._input(a, S.REALARM, user=SYSTEM, comment="re_alarm: still active after acknowledge")
        if a.shelved and a.shelve_until is not None and now >= a.shelve_until:
            self._unshelve(a, SYSTEM, "shelve expired")
        if a.chattering and (len(a.raises) < (a.raises.maxlen or 0) or now - a.raises[0] > self._chatter_window):
            a.chattering = False
        if not a.needs_timer():
            self._timed.discard(a)

    def _went_stale(self, p: TagPlan) -> None:
        p.stale_flag = True
        p.is_bad = True
        p.usable = False
        if p.unit is not None:
            self._unit_tag(p, p.unit, True, self._clock())
        st = p.stale
        if st is not None and st.cond.set(True):
            self._cond_changed(st, None)
        if p.extra:
            self._extra(p, None)

    # ================================================================== state machine
    def _cond_changed(self, a: AlarmPoint, ts: int | None) -> None:
        if not a.enabled:
            return
        g = a.gate
        if g is None or not self._gated(a, g):
            self._input(a, S.ACTIVATE if a.cond.active else S.RETURN, ts=ts)
        if a.comm is not None:
            self._comm_changed(a)

    # ================================================================== loss of monitoring (alerting/comm.py)
    def _unit_tag(self, p: TagPlan, u: AlarmPoint, lost: bool, now: float) -> None:
        """A watched tag of unit ``u`` changed quality: recount and decide the unit's loss.

        Lost = every watched tag lost; not lost as soon as one heard-from tag is not. Until
        every tag has been heard from (or gone stale) since start, a loss is not decided:
        after a restart a restored COMM alarm is not cleared by partial knowledge.
        """
        c = u.comm
        assert c is not None
        if not p.known:
            p.known = True
            c.known += 1
        if lost != p.lost:
            p.lost = lost
            c.lost += 1 if lost else -1
        if c.lost == c.watch_n:
            raw = True
        elif c.known > c.lost:
            raw = False
        else:
            return
        self._feed_comm(u, raw, now)

    def _feed_comm(self, a: AlarmPoint, raw: bool, now: float) -> None:
        cond = a.cond
        assert isinstance(cond, CommLost)
        r = cond.feed_lost(raw, now)
        if r == PENDING:
            self._timed.add(a)
        elif r:
            self._cond_changed(a, None)

    def _comm_changed(self, a: AlarmPoint) -> None:
        """A COMM alarm's condition changed: settle its children, tell its link."""
        c = a.comm
        assert c is not None
        now = self._clock()
        if a.cond.active:
            for child in c.children:
                if child in self._held and child.cond.active and child.supp_by is None:
                    self._held.discard(child)
                    child.hold_until = None
                    if child.gate is not None and child.gate.explains(child):
                        self._suppress_child(child, a)
                    else:
                        self._input(child, S.ACTIVATE)
        else:
            for child in c.children:
                if child.supp_by != a.key:
                    continue
                if child.cond.active:  # still lost: give it time to report, then it alarms on its own
                    child.hold_until = now + c.hold
                    self._held.add(child)
                else:
                    self._held.discard(child)
                    self._unsuppress_child(child)
        link = c.link
        if link is not None and link.comm is not None:
            self._feed_comm(link, all(m.cond.active for m in link.comm.members), now)

    def _gated(self, a: AlarmPoint, g: Gate) -> bool:
        """Decide a gated alarm's condition change; True when handled here (no plain input)."""
        if a.cond.active:
            if not g.explains(a):
                return False  # e.g. a device fault (quality bad) while the source is fine: alarms as usual
            if a.supp_by is not None:
                return True  # still under its parent (back within the grace after a recovery)
            if g.parent.cond.active:
                self._suppress_child(a, g.parent)
                return True
            a.hold_until = self._clock() + g.hold
            self._held.add(a)
            return True
        if a.supp_by is not None:
            self._held.discard(a)
            a.hold_until = None
            self._unsuppress_child(a)
            return True
        if a in self._held:  # returned before it was ever raised
            self._held.discard(a)
            a.hold_until = None
            return True
        return False

    def _hold_ended(self, a: AlarmPoint) -> None:
        self._held.discard(a)
        a.hold_until = None
        g = a.gate
        assert g is not None
        if not a.cond.active:
            if a.supp_by is not None:
                self._unsuppress_child(a)
        elif g.parent.cond.active and g.explains(a):
            if a.supp_by is None:
                self._suppress_child(a, g.parent)
        elif a.supp_by is not None:
            self._unsuppress_child(a)  # -> NORM, then raised at once (active when the suppression ended)
        else:
            self._input(a, S.ACTIVATE, comment=f"not explained by {g.parent.key} after {g.hold:g} s")

    def _suppress_child(self, a: AlarmPoint, parent: AlarmPoint) -> None:
        a.supp_by = parent.key
        self._input(
            a,
            S.SUPPRESS,
            user=SYSTEM,
            comment=f"{parent.key}: communication lost",
            data={"parent": parent.key},
            flags=(a.oos, True, a.shelved),
        )

    def _unsuppress_child(self, a: AlarmPoint) -> None:
        parent = a.supp_by
        a.supp_by = None
        why = "reports again" if not a.cond.active else f"still {a.condition} after {parent} recovered"
        self._input(
            a,
            S.UNSUPPRESS,
            user=SYSTEM,
            comment=f"{a.tag}: {why}",
            data={"parent": parent},
            flags=(a.oos, False, a.shelved),
        )

    def _input(
        self,
        a: AlarmPoint,
        inp: str,
        *,
        ts: int | None = None,
        user: str | None = None,
        comment: str | None = None,
        data: dict[str, Any] | None = None,
        flags: tuple[bool, bool, bool] | None = None,
    ) -> AlarmEvent | None:
        """Apply one input; ``flags`` = (oos, suppressed, shelved) after the input."""
        oos, supp, shelved = flags if flags is not None else (a.oos, a.suppressed, a.shelved)
        prev = a.state
        new, name = S.step(
            prev, inp, active=a.cond.active, latched=a.latch, oos=oos, suppressed=supp, shelved=shelved
        )  # raises InvalidTransition before anything changed
        a.oos, a.suppressed, a.shelved = oos, supp, shelved
        event = None
        if name is not None:
            now = self._clock()
            wall = self._wall()
            occ = a.occurrence
            if prev not in S.OPEN and new in S.OPEN:
                occ = self._open_occurrence(a, ts, wall)
            elif name == S.RAISED and not a.test and self._testing and self._is_test(a):
                self._occurrence_to_test(a)  # a returned real alarm tripped again by the test
            test = a.test if occ is not None else self._is_test(a)
            a.state = new
            if inp == S.ACK:
                a.acked_by = user
                a.acked_wall = wall
                a.ack_severity = a.severity
            if name in S.ANNUNCIATIONS:
                self._annunciated(a, now, name, test)
            if prev in S.OPEN and new not in S.OPEN:
                self._close_occurrence(a)
            # re-alarm timer runs while ACKED and active
            if a.re_alarm and new == S.ACKED and a.cond.active:
                if prev != S.ACKED or a.realarm_due is None:
                    a.realarm_due = now + a.re_alarm
                    self._timed.add(a)
            else:
                a.realarm_due = None
            event = self._event(a, name, prev, occ, ts, wall, user, comment, data, test)
            self._recount(a)  # hazard-source status is current when subscribers see the event
            self._emit(event, a)
        else:
            self._recount(a)
        # follow-ups
        if prev in S.SUPPRESSION and new == S.NORM and a.cond.active:
            self._input(a, S.ACTIVATE, comment="active when the suppression ended")
        elif inp == S.END_TEST and new == S.NORM and a.cond.active and a.enabled:
            self._input(a, S.ACTIVATE, comment="still active when the test ended")
        if inp == S.RETURN and a.shelved and a.one_shot:
            self._unshelve(a, SYSTEM, "one-shot shelve: returned to normal")
        return event

    def _open_occurrence(self, a: AlarmPoint, ts: int | None, wall: int) -> int:
        occ = self._next_occ
        self._next_occ += 1
        a.occurrence = occ
        a.test = self._is_test(a)
        a.raised_ts = ts if ts is not None else wall
        a.raised_wall = wall
        a.acked_by = None
        a.acked_wall = None
        a.ack_severity = 0
        self._open[occ] = a
        self._remember(occ, a.key, a.test)
        if not a.test:  # the active-alarm gauges count real alarms
            self._active_counts[a.priority] += 1
            self._m.active_children[a.priority].set(self._active_counts[a.priority])
        return occ

    def _occurrence_to_test(self, a: AlarmPoint) -> None:
        """An open real occurrence that returned (RTNUN, or latched ACKED) is raised again while
        its tag is in test: the gas is the test's, so it goes on as a test occurrence (its earlier
        events stay real; the re-raise and what follows are test events)."""
        occ = a.occurrence
        assert occ is not None
        a.test = True
        self._test_occ.add(occ)
        self._active_counts[a.priority] -= 1
        self._m.active_children[a.priority].set(self._active_counts[a.priority])

    def _close_occurrence(self, a: AlarmPoint) -> None:
        if a.occurrence is not None:
            self._open.pop(a.occurrence, None)
            if not a.test:
                self._active_counts[a.priority] -= 1
                self._m.active_children[a.priority].set(self._active_counts[a.priority])
        a.occurrence = None
        a.test = False

    def _remember(self, occ: int, key: str, test: bool = False) -> None:
        self._recent[occ] = key
        if test:
            self._test_occ.add(occ)
        while len(self._recent) > self._recent_max:
            old, _ = self._recent.popitem(last=False)
            self._test_occ.discard(old)

    def _annunciated(self, a: AlarmPoint, now: float, name: str, test: bool = False) -> None:
        if not test:  # test alarms never make a flood (it would batch real pushes)
            ft = self._flood_times
            ft.append(now)
            if not self._flood and len(ft) == ft.maxlen and now - ft[0] <= self._flood_window:
                self._flood = True
                self._m.floods.inc()
                self._m.in_flood.set(1)
        if name == S.RAISED:
            r = a.raises
            r.append(now)
            if not a.chattering and len(r) == r.maxlen and now - r[0] <= self._chatter_window:
                a.chattering = True
                self._m.chattering.inc()
                self._timed.add(a)

    def _event(
        self,
        a: AlarmPoint,
        name: str,
        prev: str,
        occ: int | None,
        ts: int | None,
        wall: int,
        user: str | None,
        comment: str | None,
        data: dict[str, Any] | None,
        test: bool = False,
    ) -> AlarmEvent:
        t = ts if ts is not None else wall
        if data is None and a.comm is not None and name == S.RAISED:
            data = {"comm": a.comm.data()}
        recent = a.recent_ts
        while t in recent:  # same series and timestamp would overwrite the earlier point in InfluxDB
            t += 1
        recent.append(t)
        self._seq += 1
        return AlarmEvent(
            seq=self._seq,
            event=name,
            alarm=a.key,
            tag=a.tag,
            condition=a.condition,
            priority=a.priority,
            state=a.state,
            prev_state=prev,
            active=a.active,
            occurrence=occ,
            value=a.value(),
            limit=a.limit,
            ts=t,
            wall=wall,
            hs=a.hs,
            user=user,
            comment=comment,
            chattering=a.chattering,
            flood=self._flood,
            message=a.message,
            data=data,
            source=a.source,
            test=test,
        )

    def _emit(self, event: AlarmEvent, a: AlarmPoint) -> None:
        self._history.append(event)
        self._m.event_children[event.event].inc()
        j = self._journal
        state = a.persist() if j is not None else None  # the state this event leaves, before anyone acts on it
        # annunciation first: a journal whose queue is full writes its backlog synchronously in
        # submit(), and that must not delay the pushes (alerting/README.md, "Journal")
        for cb in self._subs:
            try:
                cb(event)
            except Exception:
                self._m.callback_errors.inc()
                self._rlog.error(f"cb:{id(cb)}", "alarm subscriber %r failed", cb, exc_info=True)
        if j is not None and state is not None:
            try:
                j.submit(event, state)
            except Exception:
                self._error("journal", a.key)

    def _recount(self, a: AlarmPoint) -> None:
        hss = a.hss
        if not hss:
            return
        counted = a.enabled and a.cond.active and a.state in _COUNTED and not (a.test and a.occurrence is not None)
        if counted != a.counted:
            a.counted = counted
            d = 1 if counted else -1
            for hs, prio in hss:  # a COMM alarm counts in every hazard source it covers
                counts = self._hs_counts.setdefault(hs, [0, 0, 0])
                counts[prio - 1] += d
                self._update_hs(hs)

    def _update_hs(self, hs: str) -> None:
        counts = self._hs_counts[hs]
        status = evaluate(self._rule, self._grades.get(hs), (counts[0], counts[1], counts[2]))
        self._hs_status[hs] = status
        self._m.hs_status.labels(hs).set(RANK[status])

    def _error(self, where: str, what: str) -> None:
        """Count an exception (called from an ``except`` block) and log it at most every 30 s per place."""
        self._m.eval_errors.labels(where).inc()
        self._rlog.error(where, "alarm evaluation failed (%s %s); counted, continuing", where, what, exc_info=True)

    # ================================================================== test mode
    def set_tests(self, tags: Collection[str]) -> None:
        """The tags in test mode from now on (the whole set; idempotent). A tag entering test:
        alarms raised from now on are test occurrences; a discrete tag stops suppressing by
        design. A tag leaving test: its test occurrences close (``test_ended``) and conditions
        still active are raised again as real alarms; votes it is a member of are re-judged.
        Operator-driven, never per reading (gateway/upkeep/testmode.py calls it)."""
        new = frozenset(tags)
        old = self._testing
        if new == old:
            return
        self._testing = new
        begun = [self._plans[t] for t in sorted(new - old) if t in self._plans]
        ended = [self._plans[t] for t in sorted(old - new) if t in self._plans]
        for p in begun:
            p.test = True
        for p in ended:
            p.test = False
        for p in begun:
            if p.suppresses:
                self._safe(self._extra, p, None)
        for p in ended:
            for a in p.alarms:
                if a.test and a.occurrence is not None:
                    self._safe(self._end_test, a)
            for link in p.vote_links:
                self._safe(self._retest, link.vote)
            if p.suppresses:
                self._safe(self._extra, p, None)

    @property
    def testing(self) -> frozenset[str]:
        """The tags in test mode (as last given to :meth:`set_tests`)."""
        return self._testing

    def out_of_service_tags(self) -> set[str]:
        """Tags with an alarm out of service (OOSRV, removed for maintenance): not in use (投用率)."""
        return {a.tag for a in self._alarms.values() if a.oos and a.plan is not None}

    def _safe(self, fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:
            self._error("test", str(getattr(args[0], "key", None) or getattr(args[0], "tag", "?")))

    def _is_test(self, a: AlarmPoint) -> bool:
        """Would an occurrence of ``a`` raised now be a test occurrence?"""
        if not self._testing or a.comm is not None:
            return False  # a COMM alarm (a lost source unit) is always real
        p = a.plan
        if p is not None:
            return p.test
        members = self._vote_members.get(a.key)
        if members is None or not any(m.test for m, _ in members):
            return False
        real = sum(1 for m, member in members
                   if not m.test and (m.is_bad or (member is not None and member.cond.active)))
        return bool(real < a.cond.k)  # only the members in test make it trip

    def _retest(self, a: AlarmPoint) -> None:
        """A test occurrence of ``a`` that would be real now closes and is raised anew."""
        if a.test and a.occurrence is not None and not self._is_test(a):
            self._end_test(a)

    def _end_test(self, a: AlarmPoint) -> None:
        self._input(a, S.END_TEST, user=SYSTEM, comment="test mode ended")

    # ================================================================== restart
    def restore(self, r: Restored) -> None:
        """Put back the journal's state: no event, no notification, nothing cleared."""
        self._seq = max(self._seq, r.max_seq)
        self._next_occ = max(self._next_occ, r.max_occurrence + 1)
        now = self._clock()
        wall = self._wall()
        for occ, key in reversed(r.recent):
            self._remember(occ, key, occ in r.test_occurrences)
        for key, snap in r.alarms.items():
            a = self._alarms.get(key)
            if a is None or not a.enabled:
                if snap.get("state", S.NORM) != S.NORM:
                    msg = f"journal has alarm {key} in {snap.get('state')} but it is no longer configured"
                    self.warnings.append(msg)
                    log.warning("%s", msg)
                continue
            try:
                a.restore(snap, now, wall)
            except Exception:
                self._error("restore", key)
                continue
            if a.occurrence is not None:
                self._open[a.occurrence] = a
                self._remember(a.occurrence, key, a.test)
                if not a.test:
                    self._active_counts[a.priority] += 1
            if a.needs_timer():
                self._timed.add(a)
            self._recount(a)
        for p, c in self._active_counts.items():
            self._m.active_children[p].set(c)

    # ================================================================== API
    def subscribe(self, callback: AlarmCallback) -> Callable[[], None]:
        """Call ``callback(event)`` for every event; returns an unsubscribe function."""
        self._subs.append(callback)

        def unsubscribe() -> None:
            if callback in self._subs:
                self._subs.remove(callback)

        return unsubscribe

    def active(self) -> list[AlarmView]:
        """Alarms with an open occurrence (UNACK, ACKED, RTNUN), by priority then raise time."""
        views = [a.view() for a in self._open.values()]
        views.sort(key=lambda v: (v.priority, v.raised_ts or 0))
        return views

    def suppressed(self) -> list[AlarmView]:
        """Shelved, suppressed-by-design and out-of-service alarms (ISA-18.2 requires this list)."""
        return [a.view() for a in self._alarms.values() if a.state in S.SUPPRESSION or a.shelved or a.oos]

    def alarms(self) -> list[AlarmView]:
        return [a.view() for a in self._alarms.values()]

    def get(self, ref: int | str) -> AlarmView:
        return self._resolve(ref).view()

    def history(self, limit: int = 100, *, alarm: str | None = None, tag: str | None = None) -> list[AlarmEvent]:
        """Recent events from memory, newest first (the journal has the durable history)."""
        out: list[AlarmEvent] = []
        for ev in reversed(self._history):
            if (alarm is None or ev.alarm == alarm) and (tag is None or ev.tag == tag):
                out.append(ev)
                if len(out) >= limit:
                    break
        return out

    def statuses(self) -> dict[str, HazardStatus]:
        return {code: self.status(code) for code in self._hs_status}

    def status(self, hs: str) -> HazardStatus:
        if hs not in self._hs_status:
            raise AlarmNotFound(f"unknown hazard source {hs!r}")
        c = self._hs_counts[hs]
        return HazardStatus(hs, self._grades.get(hs), self._hs_status[hs], (c[0], c[1], c[2]))

    def ack(self, ref: int | str, user: str, comment: str | None = None) -> AlarmEvent:
        """Acknowledge (never clears: an active alarm goes to ACKED). Also the reset of a latched alarm."""
        a = self._resolve(ref)
        ev = self._input(a, S.ACK, user=_user(user), comment=comment)
        assert ev is not None
        return ev

    def ack_many(
        self, refs: Sequence[int | str], user: str, comment: str | None = None
    ) -> tuple[list[AlarmEvent], list[tuple[str, str]]]:
        """Acknowledge a group (the console's "acknowledge all in this group") as one operator
        action: one ``acked`` event per alarm, all with the same user and comment, in the
        order given. An id given twice is acknowledged once; one that cannot be acknowledged
        (unknown, nothing to acknowledge) is skipped with the reason, the others still are."""
        user = _user(user)
        done: list[AlarmEvent] = []
        skipped: list[tuple[str, str]] = []
        seen: set[str] = set()
        for ref in refs:
            try:
                a = self._resolve(ref)
            except AlarmNotFound as e:
                skipped.append((str(ref), str(e)))
                continue
            if a.key in seen:
                continue
            seen.add(a.key)
            try:
                ev = self._input(a, S.ACK, user=user, comment=comment)
            except S.InvalidTransition as e:
                skipped.append((a.key, str(e)))
                continue
            assert ev is not None
            done.append(ev)
        return done, skipped

    def shelve(
        self,
        ref: int | str,
        user: str,
        duration: float | None = None,
        *,
        one_shot: bool = False,
        comment: str | None = None,
    ) -> AlarmEvent:
        """Shelve for ``duration`` seconds (<= shelve_max), or one-shot until the alarm returns.

        One-shot shelving is also limited to ``shelve_max``. Alarms of gas tags are not
        shelvable unless the tag sets ``suppressible: true``.
        """
        a = self._resolve(ref)
        user = _user(user)
        if not a.suppressible:
            raise NotPermitted(f"{a.key}: gas alarms cannot be shelved (the tag does not set suppressible: true)")
        if one_shot:
            if duration is not None:
                raise ValueError("give either a duration or one_shot, not both")
            if not a.cond.active:
                raise NotPermitted(f"{a.key}: one-shot shelving needs an active alarm")
            duration = self._shelve_max
        elif duration is None:
            raise ValueError("shelving needs a duration or one_shot")
        if not 0 < duration <= self._shelve_max:
            raise ValueError(f"shelve duration must be > 0 and <= {self._shelve_max:g} s")
        saved = (a.one_shot, a.shelve_until, a.shelve_until_wall)
        wall = self._wall()
        a.one_shot = one_shot
        a.shelve_until = self._clock() + duration
        a.shelve_until_wall = wall + int(duration * 1e9)
        try:
            ev = self._input(
                a,
                S.SHELVE,
                user=user,
                comment=comment,
                flags=(a.oos, a.suppressed, True),
                data={"until": a.shelve_until_wall, "one_shot": one_shot, "duration": duration},
            )
        except S.InvalidTransition:
            a.one_shot, a.shelve_until, a.shelve_until_wall = saved
            raise
        self._timed.add(a)
        assert ev is not None
        return ev

    def unshelve(self, ref: int | str, user: str, comment: str | None = None) -> AlarmEvent:
        a = self._resolve(ref)
        if not a.shelved:
            raise S.InvalidTransition(f"{a.key} is not shelved")
        ev = self._unshelve(a, _user(user), comment)
        assert ev is not None
        return ev

    def _unshelve(self, a: AlarmPoint, user: str, comment: str | None) -> AlarmEvent | None:
        a.one_shot = False
        a.shelve_until = None
        a.shelve_until_wall = None
        return self._input(a, S.UNSHELVE, user=user, comment=comment, flags=(a.oos, a.suppressed, False))

    def set_out_of_service(
        self, ref: int | str, user: str, out_of_service: bool = True, comment: str | None = None
    ) -> AlarmEvent:
        """Remove an alarm from service (maintenance) or put it back. Allowed for every alarm."""
        a = self._resolve(ref)
        inp = S.REMOVE if out_of_service else S.RESTORE
        ev = self._input(a, inp, user=_user(user), comment=comment, flags=(out_of_service, a.suppressed, a.shelved))
        assert ev is not None
        return ev

    def dispose(
        self,
        occurrence: int,
        cause: str,
        action: str,
        handler: str,
        result: str,
        *,
        user: str | None = None,
        comment: str | None = None,
    ) -> AlarmEvent:
        """Record the disposition (处置: cause, action, handler, result) of an occurrence.

        Does not change the alarm's state. A later disposition of the same occurrence
        replaces the earlier one in ``occurrences`` (both stay in ``events``).
        """
        key = self._recent.get(int(occurrence))
        if key is None:
            raise AlarmNotFound(f"unknown alarm occurrence {occurrence}")
        fields = {"cause": cause, "action": action, "handler": handler, "result": result}
        missing = [k for k, v in fields.items() if not isinstance(v, str) or not v.strip()]
        if missing:
            raise ValueError(f"a disposition needs {', '.join(missing)}")
        a = self._alarms[key]
        wall = self._wall()
        ev = self._event(
            a,
            S.DISPOSED,
            a.state,
            int(occurrence),
            None,
            wall,
            _user(user or handler),
            comment,
            {k: v.strip() for k, v in fields.items()},
            int(occurrence) in self._test_occ,
        )
        self._emit(ev, a)
        return ev

    def _resolve(self, ref: int | str) -> AlarmPoint:
        if isinstance(ref, int) or (isinstance(ref, str) and ref.isdigit()):
            occ = int(ref)
            a = self._open.get(occ)
            if a is None:
                raise AlarmNotFound(f"alarm occurrence {occ} is not open")
            return a
        a = self._alarms.get(ref)
        if a is None:
            raise AlarmNotFound(f"unknown alarm {ref!r} (ids look like TAG/hh)")
        return a


def _user(user: str | None) -> str:
    if not isinstance(user, str) or not user.strip():
        raise ValueError("an operator action needs a user")
    return user.strip()
