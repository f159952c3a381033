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

All readings of a cycle carry the cycle's start time and go out as one batch.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from adapters.modbus.bus import GATEWAY_CODES, ModbusBus, Outcome, ReadResult
from adapters.modbus.config import ModbusCommon
from adapters.modbus.decoder import DecodeError
from adapters.modbus.device import DeviceState
from adapters.modbus.metrics import ModbusMetrics
from adapters.modbus.planner import BIT_TABLES, Request, plan_requests, split_request
from adapters.modbus.points import PointCodec
from gateway.core.models import Quality, Reading
from gateway.core.ratelog import RateLimitedLog
from gateway.core.sources import SourceContext

log = logging.getLogger("adapters.modbus")

# Exception codes that make a merged read split: 2 = illegal data address, 3 = illegal
# data value (what some devices answer when a read spans unmapped registers or is longer
# than they support).
SPLIT_CODES = frozenset({2, 3})
LATE_FRACTION = 0.1  # a poll starting later than 10 % of its interval counts as late

Result = tuple[float | None, str]


class SourcePoller:
    def __init__(
        self,
        cfg: ModbusCommon,
        bus: ModbusBus,
        ctx: SourceContext,
        metrics: ModbusMetrics,
        codecs: list[PointCodec],
        device: DeviceState,
    ) -> None:
        self.cfg = cfg
        self.source = cfg.id
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
        self._fault_linked = [c for c in codecs if c.fault_index is not None]
        self._rlog = RateLimitedLog(log, interval=60.0)
        self.exceptions: dict[str, int] = {}  # request label -> last exception code
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
        next_at = loop.time()
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
        return [
            Reading(tag, None, ts, Quality.COMM) if r is None else Reading(tag, r[0], ts, r[1])
            for tag, r in zip(tags, out, strict=True)
        ]

    async def _read(self, req: Request) -> ReadResult:
        cfg = self.cfg
        attempts = cfg.retries + 1
        for attempt in range(attempts):
            r = await self.bus.read(req.table, req.start, req.count, cfg.device_id, cfg.timeout)
            self._m_req[r.outcome].inc()
            if r.outcome is not Outcome.TIMEOUT or attempt == attempts - 1:
                return r
        raise AssertionError("unreachable")  # pragma: no cover

    async def _execute(self, req: Request, out: list[Result | None]) -> bool:
        """Read one request into ``out``. False when the device or bus is unreachable."""
        r = await self._read(req)
        now = time.monotonic()
        outcome = r.outcome
        if outcome is Outcome.OK:
            self.device.answered(now)
            self.exceptions.pop(req.label, None)
            (self._m_bits if req.table in BIT_TABLES else self._m_regs).inc(req.count)
            values = r.values
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
        if outcome is Outcome.TIMEOUT:
            self.device.timed_out(now, r.detail)
            return False
        if outcome is Outcome.NOT_CONNECTED:
            self.device.unreachable(now, r.detail)
            return False
        if outcome is Outcome.EXCEPTION:
            self._m_exc.labels(self.source, str(r.code)).inc()
            if r.code in GATEWAY_CODES:
                self.device.timed_out(now, f"gateway: target device did not answer (exception {r.code})")
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
        self.device.answered(now)
        self._mark_bad(req, out)
        self._decode_errors.labels(self.source, req.label, r.reason or "bad_response").inc()
        self._rlog.warning(
            f"bad:{req.label}:{r.reason}",
            "source %s: bad answer to %s: %s; its points read bad",
            self.source,
            req.label,
            r.detail,
        )
        return True

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
        }
