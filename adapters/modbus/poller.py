"""One source's poll loop: schedule, read the planned requests, turn them into readings.

Scheduling: polls run on a fixed grid of ``poll_interval``. A poll that starts late (the
previous one overran, or the pipeline applied backpressure) is measured and counted; the
grid ticks it missed are dropped, never queued, so polls cannot stack up.

One cycle reads the source's requests in order over the shared bus. Outcomes map onto
quality per docs/influxdb.md:

* answer            -> each point decoded: ``good``, ``uncertain`` (outside the tag's range)
                       or ``bad`` (4-20 mA fault band, fault point set, decode error)
* exception answer  -> the points of that request only: ``bad``. "Illegal data address" on
                       a merged request splits it (remembered) and reads the halves at once
* timeout           -> the cycle stops (so a dead device costs its bus one timeout per
                       cycle); the points not read read ``comm`` with no value
* gateway exception 10/11 (target device did not answer) counts as a timeout.
* bad answer        -> counted as ``bad_response`` and logged once per device and reason
                       (garbage, another transaction id, a wrong length, count or function
                       code). One that fits no request at all (garbage, wrong transaction
                       id or length) cost the whole timeout and ends the cycle like one.
* connection closed by the device during a request -> like a timeout.

Request size: a device that stays silent (or closes the connection) on a read larger than
it supports gets its requests halved, one step per poll cycle, until it answers; the limit
found is kept for the life of the source (not persisted: a restart learns it again) and
logged with the suggestion to set ``max_registers`` / ``max_bits``. Halving starts when the
same merged request failed twice in a row, so a single lost answer never shrinks requests;
when even the smallest requests get no answer the device is dead, not picky, and the plan
goes back to the configured limits.

All readings of a cycle carry the cycle's start time and go out as one batch.

Raw words (the console's point table): each answered request keeps a reference to its
register/bit list (one dict assignment per request and cycle, nothing per point);
:meth:`SourcePoller.raw_points` slices and formats them only when the API asks.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from typing import Any

from adapters.modbus.bus import GATEWAY_CODES, ModbusBus, Outcome, ReadResult
from adapters.modbus.config import ModbusCommon
from adapters.modbus.decoder import DecodeError
from adapters.modbus.device import DeviceState
from adapters.modbus.metrics import ModbusMetrics
from adapters.modbus.planner import BIT_TABLES, Request, Span, plan_requests, split_request
from adapters.modbus.points import PointCodec
from gateway.core.models import Quality, Reading
from gateway.core.ratelog import RateLimitedLog
from gateway.core.sources import RawValue, SourceContext

log = logging.getLogger("adapters.modbus")

# Exception codes that make a merged read split: 2 = illegal data address, 3 = illegal
# data value (what some devices answer when a read spans unmapped registers or is longer
# than they support).
SPLIT_CODES = frozenset({2, 3})
LATE_FRACTION = 0.1  # a poll starting later than 10 % of its interval counts as late
STRIKES_BEFORE_HALVING = 2  # failures in a row of one merged request before its size is suspected

Result = tuple[float | None, str]


def on_grid(t: float, interval: float, phase: float) -> float:
    """The first time after ``t`` on the grid ``(k + phase) * interval`` (loop clock): at most
    one interval later."""
    return (math.floor(t / interval - phase) + 1 + phase) * interval


class SourcePoller:
    def __init__(
        self,
        cfg: ModbusCommon,
        bus: ModbusBus,
        ctx: SourceContext,
        metrics: ModbusMetrics,
        codecs: list[PointCodec],
        device: DeviceState,
        phase: float = 0.0,
    ) -> None:
        self.cfg = cfg
        self.source = cfg.id
        self.phase = phase % 1.0  # where on the interval grid this source polls (fraction of the interval)
        self.bus = bus
        self.ctx = ctx
        self.codecs = codecs
        self.device = device
        self.requests: list[Request] = plan_requests(
            [c.span for c in codecs],
            max_registers=cfg.max_registers,
            max_bits=cfg.max_bits,
            max_gap=cfg.max_gap,
        )
        self._limits = {"registers": cfg.max_registers, "bits": cfg.max_bits}  # current planning limits
        self.learned: dict[str, int] = {}  # limits found by halving (kind -> size), for health
        self._strikes: Counter[str] = Counter()  # request label -> silent failures in a row
        self._probing: str | None = None  # kind whose request size is being halved
        self._probe_from = 0  # the size that got no answer
        self._plan_before_probe: list[Request] = []
        self._halving_spent = False  # halving found nothing; not again until the device answers
        self._fault_linked = [c for c in codecs if c.fault_index is not None]
        self._rlog = RateLimitedLog(log, interval=60.0)
        self.exceptions: dict[str, int] = {}  # request label -> last exception code
        self._blocks: dict[int, tuple[Request, int | None, Any]] = {}  # id(request) -> (request, cycle ts, answer)
        self.polls = 0
        self.late_polls = 0
        self.skipped_polls = 0
        self.splits = 0
        self.last_poll_ns: int | None = None
        self.last_duration: float | None = None
        self.last_lateness = 0.0
        self.stopping = False  # set by the adapter's stop(); ends the loop even if a cancel got lost
        self.busy = False  # inside a poll cycle (requests or emit)
        self.crashes = 0
        # bound metric children once; labels() is a dict lookup plus a lock
        self._m_lateness = metrics.poll_lateness.labels(self.source)
        self._m_lateness_last = metrics.poll_lateness_last.labels(self.source)
        self._m_duration = metrics.poll_duration.labels(self.source)
        self._m_polls = metrics.polls.labels(self.source)
        self._m_late = metrics.polls_late.labels(self.source)
        self._m_skipped = metrics.polls_skipped.labels(self.source)
        self._m_req = {o: metrics.requests.labels(self.source, o.name.lower()) for o in Outcome}
        self._m_exc = metrics.exceptions
        self._m_splits = metrics.splits.labels(self.source)
        self._m_bad = metrics.bad_responses
        self._m_regs = metrics.registers.labels(self.source, "registers")
        self._m_bits = metrics.registers.labels(self.source, "bits")
        self._m_up = metrics.device_up.labels(self.source)
        self._m_connected = ctx.metrics.source_connected.labels(self.source)
        self._m_readings = ctx.metrics.readings_in.labels(self.source)
        self._decode_errors = ctx.metrics.decode_errors
        for c in codecs:
            if c.config_error:
                log.error("source %s: %s; the point reads bad", self.source, c.config_error)

    # ------------------------------------------------------------------ schedule
    async def run(self) -> None:
        """Poll until cancelled."""
        loop = asyncio.get_running_loop()
        interval = self.cfg.poll_interval
        next_at = loop.time()  # the first poll at once: readings right after a start or reload
        first = True
        while not self.stopping:
            delay = next_at - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
            started = loop.time()
            lateness = max(0.0, started - next_at)
            self.last_lateness = lateness
            self._m_lateness.observe(lateness)
            self._m_lateness_last.set(lateness)
            if lateness > LATE_FRACTION * interval:
                self.late_polls += 1
                self._m_late.inc()
            if lateness >= interval:  # drop the ticks this poll overran; re-anchor on the grid
                missed = int(lateness // interval)
                self.skipped_polls += missed
                self._m_skipped.inc(missed)
                next_at += missed * interval
            self.busy = True
            try:
                batch = await self.poll_once()
            except asyncio.CancelledError:
                self.busy = False
                raise
            except Exception:  # a bug must not end polling of a safety source
                self.crashes += 1
                self._rlog.error(
                    "crash", "source %s: poll failed (%d time(s) so far); polling goes on", self.source, self.crashes,
                    exc_info=True,
                )
                batch = []
            self.last_duration = loop.time() - started
            self._m_duration.observe(self.last_duration)
            self._m_polls.inc()
            self.polls += 1
            try:
                if batch:
                    await self.ctx.emit(batch)
                    self._m_readings.inc(len(batch))
            finally:
                self.busy = False
            if first:
                # then on this source's phase of the grid, at most one interval later (never a
                # longer gap than usual: a short stale_after must not see one): sources started
                # together do not poll in step (build_modbus_sources spreads a site's sources over
                # the interval; 50 endpoints polled in the same millisecond were late by the
                # others' answers, up to 57 ms at p99, issue 23)
                first = False
                next_at = on_grid(started, interval, self.phase)
            else:
                next_at += interval

    # ------------------------------------------------------------------ one cycle
    async def poll_once(self) -> list[Reading]:
        """Read every request once and return the cycle's readings (one per point)."""
        ts = time.time_ns()
        self.last_poll_ns = ts
        out: list[Result | None] = [None] * len(self.codecs)
        if self.device.due(time.monotonic()):
            for req in list(self.requests):  # a copy: splitting edits the plan
                if self.stopping:
                    return []  # stopping: an unfinished cycle is dropped, not reported as comm
                if not await self._execute(req, out):
                    break
        self._m_up.set(1 if self.device.state == "ok" else 0)
        self._m_connected.set(1 if self.bus.connected else 0)
        self._apply_fault_links(out)
        tags = [c.tag for c in self.codecs]
        new, comm = tuple.__new__, Quality.COMM  # tuple.__new__(Reading, ...): Reading(...) without its Python __new__
        return [
            new(Reading, (tag, None, ts, comm) if r is None else (tag, r[0], ts, r[1]))
            for tag, r in zip(tags, out, strict=True)
        ]

    async def _read(self, req: Request) -> ReadResult:
        cfg = self.cfg
        attempts = cfg.retries + 1
        for attempt in range(attempts):
            r = await self.bus.read(req.table, req.start, req.count, cfg.device_id, cfg.timeout)
            self._m_req[r.outcome].inc()
            if not r.silent or attempt == attempts - 1:
                return r
        raise AssertionError("unreachable")  # pragma: no cover

    async def _execute(self, req: Request, out: list[Result | None]) -> bool:
        """Read one request into ``out``. False when the device or bus is unreachable."""
        r = await self._read(req)
        now = time.monotonic()
        outcome = r.outcome
        if outcome is Outcome.OK:
            self.device.answered(now)
            self._strikes.pop(req.label, None)
            self._halving_spent = False
            if self._probing is not None:
                self._probe_done(req)
            self.exceptions.pop(req.label, None)
            (self._m_bits if req.table in BIT_TABLES else self._m_regs).inc(req.count)
            values = r.values
            self._blocks[id(req)] = (req, self.last_poll_ns, values)  # raw words for the point table
            codecs = self.codecs
            for span in req.spans:
                c = codecs[span.key]
                try:
                    out[span.key] = c.evaluate(values, span.start - req.start)
                except DecodeError as e:
                    out[span.key] = (None, Quality.BAD)
                    self._decode_errors.labels(self.source, c.tag, e.reason).inc()
                    self._rlog.warning(
                        f"dec:{c.tag}:{e.reason}", "source %s: cannot decode %s: %s", self.source, c.tag, e
                    )
            return True
        if r.silent:
            if r.garbled:
                self._count_bad(r, req)
            self._silent(req, now, r.detail, quiet=r.garbled)
            return False
        if outcome is Outcome.NOT_CONNECTED:
            self.device.unreachable(now, r.detail)
            return False
        if outcome is Outcome.EXCEPTION:
            self._m_exc.labels(self.source, str(r.code)).inc()
            if r.code in GATEWAY_CODES:
                self._silent(req, now, f"gateway: target device did not answer (exception {r.code})")
                return False
            self.device.answered(now)
            if r.code in SPLIT_CODES and len(req.spans) > 1:
                return await self._split(req, r.code, out)
            self.exceptions[req.label] = r.code
            self._mark_bad(req, out)
            self._rlog.warning(
                f"exc:{req.label}:{r.code}",
                "source %s: device %s answered %s with exception code %d; its %d point(s) read bad",
                self.source,
                self.device.key,
                req.label,
                r.code,
                len(req.spans),
            )
            return True
        # BAD_RESPONSE: the device answered, but not what was asked
        self.device.answered(now, well=False)
        self._count_bad(r, req)
        self._mark_bad(req, out)
        return True

    def _count_bad(self, r: ReadResult, req: Request) -> None:
        reason = r.reason or "bad_response"
        self._m_bad.labels(self.source, reason).inc()
        if not r.garbled:  # an answer that decodes but does not fit: also a decode error of the block
            self._decode_errors.labels(self.source, req.label, reason).inc()
        self.device.bad_answer(reason, f"{r.detail} (answer to {req.label})")

    # ------------------------------------------------------------------ request size
    def _silent(self, req: Request, now: float, detail: str, *, quiet: bool = False) -> None:
        """No usable answer to ``req``: a timeout for the device, unless the request's size
        is suspected (then its size is halved for the next cycle, without backoff). A garbled
        answer (``quiet``: logged as a bad answer already) says nothing about the size."""
        if not quiet:
            self._strikes[req.label] += 1
        kind = "bits" if req.table in BIT_TABLES else "registers"
        if not quiet and self._halvable(req) and not self._halving_spent and (
            self._probing == kind or (self._probing is None and self._strikes[req.label] >= STRIKES_BEFORE_HALVING)
        ):
            self._halve(req, kind, detail)
            self.device.timed_out(now, detail, count=False, quiet=quiet)
            return
        if self._probing is not None:
            self._probe_failed(req)
        self.device.timed_out(now, detail, quiet=quiet)

    @staticmethod
    def _halvable(req: Request) -> bool:
        return len(req.spans) > 1 and max(s.count for s in req.spans) < req.count

    def _halve(self, req: Request, kind: str, detail: str) -> None:
        limit = max(req.count // 2, max(s.count for s in req.spans))
        if self._probing is None:
            self._probing, self._probe_from = kind, req.count
            self._plan_before_probe = list(self.requests)
            log.warning(
                "source %s: device %s gives no answer to %s (%s) twice in a row; trying reads of at most "
                "%d %s (the device may not support reads this large)",
                self.source, self.device.key, req.label, detail, limit, kind,
            )
        self._limits[kind] = limit
        self._replan(kind)

    def _replan(self, kind: str) -> None:
        """Re-plan the requests of ``kind`` larger than its limit (others, and their
        illegal-address splits, stay)."""
        limit = self._limits[kind]
        out: list[Request] = []
        for r in self.requests:
            if (r.table in BIT_TABLES) == (kind == "bits") and r.count > limit:
                out.extend(self._plan(r.spans, kind, limit))
            else:
                out.append(r)
        self.requests = out
        self._strikes.clear()

    def _plan(self, spans: tuple[Span, ...], kind: str, limit: int) -> list[Request]:
        regs = limit if kind == "registers" else self._limits["registers"]
        bits = limit if kind == "bits" else self._limits["bits"]
        return plan_requests(spans, max_registers=regs, max_bits=bits, max_gap=self.cfg.max_gap)

    def _probe_done(self, req: Request) -> None:
        kind = self._probing
        assert kind is not None
        if (req.table in BIT_TABLES) != (kind == "bits"):
            return
        limit = self._limits[kind]
        self.learned[kind] = limit
        self._probing = None
        key = "max_registers" if kind == "registers" else "max_bits"
        log.warning(
            "source %s: device %s answers reads of %d %s but not of %d: reading at most %d per request from "
            "now on (learned, kept until the source restarts); set %s: %d on the source to make it permanent",
            self.source, self.device.key, limit, kind, self._probe_from, limit, key, limit,
        )

    def _probe_failed(self, req: Request) -> None:
        kind = self._probing
        assert kind is not None
        log.warning(
            "source %s: device %s answers no read, not even %s; not a request size problem: back to the "
            "configured request sizes",
            self.source, self.device.key, req.label,
        )
        self._probing = None
        self._halving_spent = True
        self._limits = {"registers": self.cfg.max_registers, "bits": self.cfg.max_bits}
        self.requests = self._plan_before_probe
        self._strikes.clear()

    async def _split(self, req: Request, code: int, out: list[Result | None]) -> bool:
        first, second = split_request(req)
        i = self.requests.index(req)
        self.requests[i : i + 1] = [first, second]
        self.splits += 1
        self._m_splits.inc()
        log.warning(
            "source %s: device %s rejected %s (exception %d); reading it as %s and %s from now on",
            self.source,
            self.device.key,
            req.label,
            code,
            first.label,
            second.label,
        )
        return await self._execute(first, out) and await self._execute(second, out)

    @staticmethod
    def _mark_bad(req: Request, out: list[Result | None]) -> None:
        for span in req.spans:
            out[span.key] = (None, Quality.BAD)

    def _apply_fault_links(self, out: list[Result | None]) -> None:
        """A set fault point makes its measured point bad; an unreadable one, uncertain."""
        for c in self._fault_linked:
            cur = out[c.index]
            if cur is None or cur[0] is None:
                continue
            f = out[c.fault_index]  # type: ignore[index]
            if f is None or f[0] is None:
                if cur[1] == Quality.GOOD:
                    out[c.index] = (cur[0], Quality.UNCERTAIN)
            elif (f[0] != 0.0) == c.fault_state:
                out[c.index] = (cur[0], Quality.BAD)

    def raw_points(self) -> dict[str, RawValue]:
        """The words (registers as hex, bits as 0/1) of every point in the last answer of its
        request (on request; not the hot path)."""
        live = {id(r) for r in self.requests}
        for k in [k for k in self._blocks if k not in live]:  # requests replaced by a split or halving
            del self._blocks[k]
        out: dict[str, RawValue] = {}
        for req in self.requests:
            got = self._blocks.get(id(req))
            if got is None or got[0] is not req:
                continue
            _, ts, values = got
            bits = req.table in BIT_TABLES
            for span in req.spans:
                off = span.start - req.start
                words = [int(bool(w)) if bits else int(w) for w in values[off:off + span.count]]
                if len(words) != span.count:
                    continue
                text = " ".join(str(w) for w in words) if bits else " ".join(f"0x{w & 0xFFFF:04X}" for w in words)
                out[self.codecs[span.key].tag] = RawValue(text, tuple(words), ts)
        return out

    # ------------------------------------------------------------------ health
    def health(self) -> dict[str, Any]:
        return {
            "device": self.device.health(time.monotonic()),
            "last_poll_ns": self.last_poll_ns,
            "last_poll_age_s": (
                None if self.last_poll_ns is None else round((time.time_ns() - self.last_poll_ns) / 1e9, 3)
            ),
            "last_poll_duration_s": None if self.last_duration is None else round(self.last_duration, 4),
            "last_lateness_s": round(self.last_lateness, 4),
            "polls": self.polls,
            "late_polls": self.late_polls,
            "skipped_polls": self.skipped_polls,
            "requests": [r.label for r in self.requests],
            "splits": self.splits,
            "exceptions": dict(self.exceptions),
            "learned_limits": dict(self.learned),
            "probing_request_size": self._probing is not None,
        }
