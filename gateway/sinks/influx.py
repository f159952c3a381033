"""InfluxDB sink: the batcher between the pipeline and an InfluxDB writer.

``on_readings`` (a pipeline subscriber, called on the event loop, no I/O) turns readings
into line protocol using a per-tag series prefix built once, and appends them to the
sink's queue; ``enqueue_priority`` does the same for alarm events and self-metrics.

The queue is a durable :class:`gateway.spool.Spool` when the sink is given a spool
directory (the supervisor always gives ``{store.path}/spool/influx``), else a
:class:`gateway.spool.MemorySpool` (tests, benchmarks). Either way, records become
visible to the senders at a group commit (a full batch of readings, any priority record,
or ``min(flush_interval, 1 s)`` at the latest; memory mode: ``flush_interval``). A sender
takes one batch (priority records first), writes it, and acknowledges it; up to
``INFLIGHT`` (3) senders run at once, so several batches are in flight (issue 23): they are
taken in the spool's order and each is acknowledged when InfluxDB answered it (the spool
records acknowledgements per block, in any order). A failed write is retried with capped
exponential backoff and blocks the batches behind it: no sender takes a new batch until a
write succeeds again (while the server is unreachable, a ``/ping`` every second cuts the
backoff short once it answers); a batch InfluxDB refuses as invalid (4xx) is counted and
dropped.

Bounds and overflow policy (details in :mod:`gateway.spool.spool`):

* spool: up to ``store.max_bytes`` on disk; beyond that the oldest *readings* are dropped
  and counted (``hazardgw_sink_dropped{reason="spool_overflow"}``), never priority
  records for readings. In memory between commits: ``influx.max_buffer`` readings
  (oldest dropped, ``reason="overflow"``; only when the disk stalls).
* memory mode: ``influx.max_buffer`` readings and ``max_priority`` priority lines, the
  oldest dropped and counted (``reason="overflow"``); what is left at stop is counted
  as ``reason="shutdown"``. With the spool, what is left at stop stays on disk and is
  sent after the next start.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import orjson

from gateway.config import Config
from gateway.core.backoff import Backoff
from gateway.core.config import Influx, Tag
from gateway.core.lineprotocol import QUALITY_FIELD, reading_line, series_prefix
from gateway.core.metrics import Metrics
from gateway.core.models import Reading
from gateway.core.ratelog import RateLimitedLog
from gateway.sinks.influx_writers import (
    RejectedWriteError,
    RetryableWriteError,
    TooLargeError,
    Writer,
    make_writer,
)
from gateway.spool import Batch, MemorySpool, SinkQueue, Spool, SpoolMetrics

log = logging.getLogger(__name__)
RETRY_INITIAL = 0.2  # s, first wait after a failed write; doubles up to influx.backoff_max
PROBE_INTERVAL = 1.0  # s between pings while waiting out a backoff with the server down
INFLIGHT = 3  # batches written concurrently (issue 23: influxd takes several requests at once)
FAST_BATCH = 32  # readings: from this batch size on, on_readings tries the batch path first
_FLOATS_ONLY = {float}
_DROPPED = re.compile(r"dropped=(\d+)")


def reading_prefixes(config: Config) -> dict[str, str]:
    """``reading,hs=..,kind=..,site=..,tag=..,unit=.. `` for every tag of the site."""
    return {t.id: _prefix(config.site.code, t) for t in config.tags}


def _prefix(site: str, t: Tag | None, tag_id: str = "", *, test: bool = False) -> str:
    marker = "true" if test else None  # tag test=true while the tag is in test mode (docs/influxdb.md)
    if t is None:
        return series_prefix("reading", {"site": site, "tag": tag_id, "test": marker})
    return series_prefix(
        "reading", {"site": site, "hs": t.hazard_source, "tag": t.id, "kind": t.kind, "unit": t.unit, "test": marker}
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
        spool_dir: str | Path | None = None,
        spool_max_bytes: int = 1024**3,
        commit_interval: float | None = None,
        spool_metrics: SpoolMetrics | None = None,
        fsync: bool = True,
        inflight: int = INFLIGHT,
    ) -> None:
        self.cfg = cfg
        self.site = config.site.code
        self.metrics = metrics
        self.writer = writer or make_writer(cfg)
        self.max_priority = max_priority
        self.shutdown_timeout = shutdown_timeout
        self._tags = config.tag_map()
        self._prefix = reading_prefixes(config)
        self._testing: frozenset[str] = frozenset()
        self.queue: SinkQueue
        if spool_dir is not None:
            self.queue = Spool(
                Path(spool_dir),
                name=self.name,
                metrics=metrics,
                max_bytes=spool_max_bytes,
                block_records=cfg.batch_size,
                commit_interval=commit_interval if commit_interval is not None else min(1.0, cfg.flush_interval),
                max_pending=cfg.max_buffer,
                max_pending_priority=max_priority,
                spool_metrics=spool_metrics,
                fsync=fsync,
            )
        else:
            self.queue = MemorySpool(
                name=self.name,
                metrics=metrics,
                block_records=cfg.batch_size,
                commit_interval=commit_interval if commit_interval is not None else cfg.flush_interval,
                max_records=cfg.max_buffer,
                max_priority=max_priority,
            )
        self.inflight = max(1, inflight)
        self._healthy = asyncio.Event()  # cleared while a write fails: no new batch is taken
        self._healthy.set()
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._rlog = RateLimitedLog(log, 30.0)
        self._failures = 0
        self.last_success: float | None = None
        self.last_error: str | None = None
        self.written = 0
        self._m_lines_r = metrics.sink_lines.labels(self.name, "reading")
        self._m_lines_p = metrics.sink_lines.labels(self.name, "priority")
        self._m_buffer = metrics.sink_buffer.labels(self.name)

    # ------------------------------------------------------------------ producers (no I/O)
    def on_readings(self, batch: Sequence[Reading]) -> None:
        lines = self._batch_lines(batch) if len(batch) >= FAST_BATCH else None
        if lines is None:
            lines = self._lines(batch)
        self.queue.append("reading", lines)

    def _lines(self, batch: Sequence[Reading]) -> list[str]:
        prefixes = self._prefix
        qfield = QUALITY_FIELD
        lines: list[str] = []
        add = lines.append
        for tag, value, ts, quality in batch:
            p = prefixes.get(tag)
            if p is None:
                p = prefixes[tag] = _prefix(self.site, None, tag)
            # the usual reading inline (issue 23: a function call per reading is 10 % of this
            # loop): a finite float and a known quality, else reading_line decides
            if type(value) is float and value - value == 0.0 and (q := qfield.get(quality)) is not None:
                add(f"{p}value={value!r}{q}{ts}")
            else:
                add(reading_line(p, value, quality, ts))
        return lines

    def _batch_lines(self, batch: Sequence[Reading]) -> list[str] | None:
        """The usual batch in one go (issue 23), or None when :meth:`_lines` must decide: every
        value a float, every tag and quality known. ``repr`` of the values was 45 % of
        :meth:`_lines`; orjson writes all of them in one call with the same shortest digits.
        The two differ only in notation: orjson writes ``1e16`` and ``0.00001`` where repr
        writes ``1e+16`` and ``1e-05``, and ``null`` for NaN and infinities; a batch whose
        text has an ``e``, an ``n`` or ``0.0000`` anywhere goes to :meth:`_lines`, so every
        line is the very text :func:`~gateway.core.lineprotocol.reading_line` makes
        (tests/test_influx_sink.py compares them on random values)."""
        tags, values, stamps, qualities = zip(*batch, strict=True)
        if set(map(type, values)) != _FLOATS_ONLY:
            return None
        text = orjson.dumps(values)
        if b"e" in text or b"n" in text or b"0.0000" in text:
            return None
        prefix = self._prefix
        qfield = QUALITY_FIELD
        try:
            return [f"{prefix[t]}value={v}{qfield[q]}{ts}"
                    for t, v, ts, q in zip(tags, text[1:-1].decode().split(","), stamps, qualities, strict=True)]
        except KeyError:  # a tag without a series prefix yet, or a quality of its own
            return None

    def set_tests(self, tags: frozenset[str]) -> None:
        """Test mode (wired by the supervisor): readings of ``tags`` get the tag ``test=true``.
        Swaps the tags' series prefixes; nothing changes on the per-reading path."""
        for t in self._testing ^ tags:
            self._prefix[t] = _prefix(self.site, self._tags.get(t), t, test=t in tags)
        self._testing = tags

    def enqueue_priority(self, lines: Sequence[str]) -> None:
        """Alarm events and self-metrics: sent before readings, never dropped for them."""
        self.queue.append("priority", lines)

    @property
    def buffered(self) -> int:
        """Lines not yet written: waiting for a commit, spooled, and the batch being sent."""
        return self.queue.records

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.queue.open()
        self._stopping.clear()
        self._task = asyncio.create_task(self._run(), name="influx-sink")

    async def stop(self) -> None:
        """Send what is queued (bounded by ``shutdown_timeout``), then close. With the spool,
        what could not be sent stays on disk for the next start."""
        self._stopping.set()
        self.queue.readable.set()
        if self._task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.shutdown_timeout)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            self._task = None
        lost = await self.queue.close()
        if lost:
            log.error("InfluxDB sink stopped with %d lines undelivered and not spooled", lost)
            self.metrics.sink_dropped.labels(self.name, "reading", "shutdown").inc(lost)
        elif self.queue.durable and self.queue.records:
            log.info("InfluxDB sink stopped: %d lines kept in the spool for the next start", self.queue.records)
        self._m_buffer.set(self.queue.records)
        await self.writer.close()

    def health(self) -> dict[str, Any]:
        q = self.queue.health()
        return {
            "ok": self._task is not None and not self._task.done() and self._failures == 0 and bool(q["ok"]),
            "buffered": self.buffered,
            "consecutive_failures": self._failures,
            "last_success_age_s": None if self.last_success is None else time.monotonic() - self.last_success,
            "last_error": self.last_error,
            "spool": q,
        }

    # ------------------------------------------------------------------ sending
    async def _run(self) -> None:
        """``inflight`` workers: take, send, acknowledge. On stop: commit and send the rest."""
        workers = [asyncio.create_task(self._worker(), name=f"influx-send-{i}") for i in range(self.inflight)]
        try:
            await asyncio.gather(*workers)
        finally:
            for w in workers:
                w.cancel()
            await asyncio.gather(*workers, return_exceptions=True)

    async def _worker(self) -> None:
        q = self.queue
        while True:
            # while a write is failing, only the batches already taken are retried: nothing
            # newer is taken meanwhile (a failed batch holds back the ones behind it)
            await self._healthy.wait()
            batch = await q.next_batch(self.cfg.batch_size)
            if batch is None:
                self._m_buffer.set(q.records)
                if self._stopping.is_set():
                    if await q.flush():
                        continue
                    return
                await q.readable.wait()
                continue
            if not await self._send_batch(batch):
                await q.release(batch)  # only when stopping: kept (spool) or counted at close (memory)
                return
            await q.ack(batch)
            self._m_lines_p.inc(batch.n_priority)
            self._m_lines_r.inc(batch.count - batch.n_priority)
            self._m_buffer.set(q.records)

    async def _send_batch(self, batch: Batch) -> bool:
        return await self._send(batch.body, batch.count, batch.records)

    async def _send_lines(self, lines: list[str]) -> bool:
        return await self._send("\n".join(lines).encode("utf-8", "replace"), len(lines), lambda: lines)

    async def _send(self, body: bytes, n: int, records: Callable[[], list[str]]) -> bool:
        """Send one batch; retries retryable errors until stopping. False: not sent."""
        backoff = Backoff(RETRY_INITIAL, self.cfg.backoff_max)
        while True:
            t0 = time.perf_counter()
            try:
                await self.writer.write(body)
            except TooLargeError:
                lines = records()
                if len(lines) == 1:
                    self._reject(1, RejectedWriteError("line too large", 413, lines[0]))
                    return True
                mid = len(lines) // 2
                return await self._send_lines(lines[:mid]) and await self._send_lines(lines[mid:])
            except RejectedWriteError as e:
                self._reject(n, e)
                return True
            except RetryableWriteError as e:
                self._failures += 1
                self.last_error = str(e)
                self.metrics.sink_batches.labels(self.name, "retry").inc()
                self._rlog.warning("retry", "InfluxDB write failed, will retry: %s", e)
                if self._stopping.is_set():
                    return False
                self._healthy.clear()
                await self._backoff(backoff.next_delay(), e.server_down)
                continue
            self.metrics.sink_latency.labels(self.name).observe(time.perf_counter() - t0)
            self.metrics.sink_batches.labels(self.name, "ok").inc()
            if self._failures:
                log.warning("InfluxDB writes recovered after %d failed attempts", self._failures)
            self._failures = 0
            self._healthy.set()
            self.last_error = None
            self.last_success = time.monotonic()
            self.written += n
            return True

    async def _backoff(self, delay: float, probe: bool) -> None:
        """Wait ``delay`` s or until stopping. While the server is down, a cheap ping every
        ``PROBE_INTERVAL`` ends the wait as soon as it answers again, so a long backoff
        (``backoff_max``) does not delay the drain after an outage."""
        deadline = time.monotonic() + delay
        while (remaining := deadline - time.monotonic()) > 0:
            step = min(remaining, PROBE_INTERVAL) if probe else remaining
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), step)
                return
            if probe and deadline - time.monotonic() > 0 and await self.writer.ping():
                return

    def _reject(self, n_lines: int, e: RejectedWriteError) -> None:
        m = _DROPPED.search(str(e))
        n = int(m.group(1)) if m else n_lines
        self.metrics.sink_batches.labels(self.name, "rejected").inc()
        self.metrics.sink_dropped.labels(self.name, "reading", "rejected").inc(n)
        self.last_error = str(e)
        self._rlog.log(
            logging.ERROR,
            "rejected",
            "InfluxDB rejected a batch of %d lines (not retried): %s; offending line: %s",
            n_lines,
            e,
            e.line or "(not given by the server)",
        )
