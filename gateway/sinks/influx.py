"""InfluxDB sink: the batcher between the pipeline and an InfluxDB writer.

``on_readings`` (a pipeline subscriber, called on the event loop, no I/O) turns readings
into line protocol using a per-tag series prefix built once, and appends them to a
bounded buffer. A flush task sends batches of ``batch_size`` lines when enough are
waiting or every ``flush_interval``; a failed batch is retried with capped exponential
backoff and blocks the batches behind it, so order is kept.

Buffers and overflow policy:

* readings: at most ``influx.max_buffer`` lines; when full the *oldest* readings are
  dropped and counted (``hazardgw_sink_dropped{reason="overflow"}``).
* priority lines (alarm events, gateway self-metrics): their own buffer of at most
  ``max_priority`` lines, always sent before readings. It is only full after a very long
  outage; then the oldest priority lines are dropped from the InfluxDB copy and counted.
  Alarm events are never lost by that: the alarm journal (SQLite) is their record.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

from gateway.config import Config, Influx, Tag
from gateway.lineprotocol import reading_line, series_prefix
from gateway.metrics import Metrics
from gateway.models import Reading
from gateway.ratelog import RateLimitedLog
from gateway.sinks.influx_writers import (
    RejectedWriteError,
    RetryableWriteError,
    TooLargeError,
    Writer,
    make_writer,
)

log = logging.getLogger(__name__)
_DROPPED = re.compile(r"dropped=(\d+)")


def reading_prefixes(config: Config) -> dict[str, str]:
    """``reading,hs=..,kind=..,site=..,tag=..,unit=.. `` for every tag of the site."""
    return {t.id: _prefix(config.site.code, t) for t in config.tags}


def _prefix(site: str, t: Tag | None, tag_id: str = "") -> str:
    if t is None:
        return series_prefix("reading", {"site": site, "tag": tag_id})
    return series_prefix(
        "reading", {"site": site, "hs": t.hazard_source, "tag": t.id, "kind": t.kind, "unit": t.unit}
    )


class InfluxSink:
    name = "influx"

    def __init__(
        self,
        cfg: Influx,
        config: Config,
        metrics: Metrics,
        writer: Writer | None = None,
        *,
        max_priority: int = 100_000,
        shutdown_timeout: float = 5.0,
    ) -> None:
        self.cfg = cfg
        self.site = config.site.code
        self.metrics = metrics
        self.writer = writer or make_writer(cfg)
        self.max_priority = max_priority
        self.shutdown_timeout = shutdown_timeout
        self._prefix = reading_prefixes(config)
        self._readings: deque[str] = deque()
        self._priority: deque[str] = deque()
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._rlog = RateLimitedLog(log, 30.0)
        self._failures = 0
        self._inflight = 0
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.written = 0
        self._m_lines_r = metrics.sink_lines.labels(self.name, "reading")
        self._m_lines_p = metrics.sink_lines.labels(self.name, "priority")
        self._m_overflow = metrics.sink_dropped.labels(self.name, "reading", "overflow")
        self._m_buffer = metrics.sink_buffer.labels(self.name)

    # ------------------------------------------------------------------ producers (no I/O)
    def on_readings(self, batch: Sequence[Reading]) -> None:
        prefixes = self._prefix
        buf = self._readings
        for tag, value, ts, quality in batch:
            p = prefixes.get(tag)
            if p is None:
                p = prefixes[tag] = _prefix(self.site, None, tag)
            buf.append(reading_line(p, value, quality, ts))
        over = len(buf) - self.cfg.max_buffer
        if over > 0:
            for _ in range(over):
                buf.popleft()
            self._m_overflow.inc(over)
            self._rlog.warning(
                "overflow", "InfluxDB sink buffer full (%d lines): oldest readings dropped", self.cfg.max_buffer
            )
        if len(buf) >= self.cfg.batch_size:
            self._wake.set()

    def enqueue_priority(self, lines: Sequence[str]) -> None:
        """Alarm events and self-metrics: sent before readings."""
        self._priority.extend(lines)
        over = len(self._priority) - self.max_priority
        if over > 0:
            for _ in range(over):
                self._priority.popleft()
            self.metrics.sink_dropped.labels(self.name, "priority", "overflow").inc(over)
        self._wake.set()

    @property
    def buffered(self) -> int:
        """Lines not yet written, including the batch being sent."""
        return len(self._readings) + len(self._priority) + self._inflight

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="influx-sink")

    async def stop(self) -> None:
        """Flush what is buffered (bounded by ``shutdown_timeout``), then close."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.shutdown_timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        left = self.buffered
        if left:
            log.error("InfluxDB sink stopped with %d lines undelivered (server unreachable)", left)
            self.metrics.sink_dropped.labels(self.name, "reading", "shutdown").inc(left)
        await self.writer.close()

    def health(self) -> dict[str, Any]:
        return {
            "ok": self._task is not None and not self._task.done() and self._failures == 0,
            "buffered": self.buffered,
            "consecutive_failures": self._failures,
            "last_success_age_s": None if self.last_success is None else time.monotonic() - self.last_success,
            "last_error": self.last_error,
        }

    # ------------------------------------------------------------------ flushing
    async def _run(self) -> None:
        """Full batches as soon as they are ready; everything at each interval and on stop."""
        deadline = time.monotonic() + self.cfg.flush_interval
        while True:
            timed_out = True
            if not self._stopping.is_set():
                try:
                    await asyncio.wait_for(self._wake.wait(), max(0.0, deadline - time.monotonic()))
                    timed_out = False
                except TimeoutError:
                    pass
            self._wake.clear()
            everything = timed_out or self._stopping.is_set()
            if everything:
                deadline = time.monotonic() + self.cfg.flush_interval
            await self._flush_all(full_only=not everything)
            if self._stopping.is_set():
                return

    def _take(self) -> tuple[list[str], int]:
        n = self.cfg.batch_size
        lines: list[str] = []
        pr = self._priority
        while pr and len(lines) < n:
            lines.append(pr.popleft())
        n_priority = len(lines)
        rd = self._readings
        k = min(n - len(lines), len(rd))
        lines.extend(rd.popleft() for _ in range(k))
        return lines, n_priority

    async def _flush_all(self, full_only: bool = False) -> None:
        while self._priority or self._readings:
            if full_only and not self._priority and len(self._readings) < self.cfg.batch_size:
                break  # alarm lines never wait for the interval; partial reading batches do
            lines, n_priority = self._take()
            self._inflight = len(lines)
            self._m_buffer.set(self.buffered)
            try:
                ok = await self._send(lines)
            finally:
                self._inflight = 0
            if not ok:
                # give the batch back at the front, keeping order, and stop for now
                self._priority.extendleft(reversed(lines[:n_priority]))
                self._readings.extendleft(reversed(lines[n_priority:]))
                return
            self._m_lines_p.inc(n_priority)
            self._m_lines_r.inc(len(lines) - n_priority)
        self._m_buffer.set(self.buffered)

    async def _send(self, lines: list[str]) -> bool:
        """Send one batch; retries retryable errors until stopping. False: not sent."""
        backoff = 0.2
        while True:
            t0 = time.perf_counter()
            try:
                await self.writer.write("\n".join(lines).encode())
            except TooLargeError:
                if len(lines) == 1:
                    self._reject(lines, RejectedWriteError("line too large", 413, lines[0]))
                    return True
                mid = len(lines) // 2
                return await self._send(lines[:mid]) and await self._send(lines[mid:])
            except RejectedWriteError as e:
                self._reject(lines, e)
                return True
            except RetryableWriteError as e:
                self._failures += 1
                self.last_error = str(e)
                self.metrics.sink_batches.labels(self.name, "retry").inc()
                self._rlog.warning("retry", "InfluxDB write failed, will retry: %s", e)
                if self._stopping.is_set():
                    return False
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), backoff * (0.8 + 0.4 * random.random()))
                backoff = min(backoff * 2, self.cfg.backoff_max)
                continue
            self.metrics.sink_latency.labels(self.name).observe(time.perf_counter() - t0)
            self.metrics.sink_batches.labels(self.name, "ok").inc()
            if self._failures:
                log.warning("InfluxDB writes recovered after %d failed attempts", self._failures)
            self._failures = 0
            self.last_error = None
            self.last_success = time.monotonic()
            self.written += len(lines)
            return True

    def _reject(self, lines: list[str], e: RejectedWriteError) -> None:
        m = _DROPPED.search(str(e))
        n = int(m.group(1)) if m else len(lines)
        self.metrics.sink_batches.labels(self.name, "rejected").inc()
        self.metrics.sink_dropped.labels(self.name, "reading", "rejected").inc(n)
        self.last_error = str(e)
        self._rlog.log(
            logging.ERROR,
            "rejected",
            "InfluxDB rejected a batch of %d lines (not retried): %s; offending line: %s",
            len(lines),
            e,
            e.line or "(not given by the server)",
        )
