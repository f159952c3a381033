"""Data online rate (数据在线率) per source and per hazard source.

Definition
----------
Every tag bound to an enabled source (``sources[].points`` / MQTT subscription points) has
an **expected interval** ``e``:

* its Modbus source's ``poll_interval``;
* otherwise (MQTT) the tag's ``stale_after / 3`` when set and > 0 (``stale_after`` is by
  convention 3 expected intervals, :data:`gateway.core.intervals.STALE_POLLS`);
* otherwise ``default_interval`` (the uplink period when an uplink is configured, else 10 s).

A reading **counts as received** when data arrived: quality ``good``, ``uncertain`` or
``bad``. ``comm`` and ``stale`` readings (the gateway saying nothing arrived) do not count.

Time is cut into one-minute buckets of the (wall) clock. In a bucket, a tag's received
count is capped at ``ceil(s / e)`` (``s`` = seconds of that minute the gateway ran, so 60 for
a full minute: a fast MQTT publisher cannot hide another tag's gap) and its expected count
is ``s / e``. At the end of a minute the per-tag counts are folded into (received,
expected) pairs per source and per hazard source, kept for the last 1440 minutes.

The **rate** of a source or hazard source over the last hour or day is ``received /
expected`` summed over the last 60 (1440) minute buckets, the current partial minute
included (so just after a minute boundary the hour holds 59 full minutes and a few
seconds), clamped to [0, 1] and rounded to 4 decimals; ``None`` while nothing was
expected yet. A hazard source sums the tags of all its sources.

**Gateway downtime counts as offline.** The buckets are saved as JSON (``path``, the
supervisor uses ``{store.path}/online.json``, mode 0600) once a minute and on stop; on
start, the time between the last save and now (at most a day) is added as expected with
nothing received, using the current config's tags. A file that cannot be read is logged
once and ignored. A save that fails (disk full) keeps everything in memory, makes health
not ok and is retried with backoff (1 s doubling to 5 s, gateway/core/backoff.py), not
only at the next minute: health is ok again within seconds of space returning.
Sources and hazard sources no longer in the config are dropped, on load and on
:meth:`OnlineRate.configure` (hot reload); the history of the others is kept.

A restart within the same minute continues that minute's bucket; after a crash the time
since the last once-a-minute save counts as down (at most the minute in progress is lost).
If the clock jumps back, buckets "in the future" are dropped.

Not counted: tags of disabled sources, tags bound to no source, and tags carried in the
payload of an MQTT ``format: native`` subscription (they are not bound in the config).

Exposed as ``rates()`` (``GET /api/online``, the uplink heartbeat) and as the Prometheus
gauge ``hazardgw_online_rate{scope="source"|"hazard_source", id, window="1h"|"1d"}``,
computed at scrape time.

Hot path: per reading one dict lookup and one int increment; the clock is read once per
batch to notice a minute rollover.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import os
import statistics
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.config import Config
from gateway.core.backoff import Backoff
from gateway.core.files import private_dir, write_private
from gateway.core.intervals import expected_intervals
from gateway.core.metrics import Metrics
from gateway.core.models import Quality, Reading
from gateway.core.tasks import TaskComponent

log = logging.getLogger(__name__)

MINUTE = 60
RING_MINUTES = 1440  # one day of one-minute buckets
HOUR_MINUTES = 60
FILE_VERSION = 1
DEFAULT_INTERVAL = 10.0
RETRY_INITIAL = 1.0  # s, first retry after a failed save; doubles up to RETRY_MAX
RETRY_MAX = 5.0

_COMM: str = Quality.COMM
_STALE: str = Quality.STALE

Key = tuple[str, str]  # ("s", source id) or ("h", hazard source code)
Bucket = dict[Key, tuple[float, float]]  # key -> (received, expected); never mutated once in the ring


def default_interval_of(config: Config) -> float:
    """The expected interval of tags with no poll interval and no stale_after: the uplink
    period when an uplink is configured, else 10 s."""
    return float(config.uplink.period) if config.uplink is not None else DEFAULT_INTERVAL


class OnlineRate(TaskComponent):
    """Pipeline subscriber and component computing the data online rate (see module doc)."""

    name = "online"

    def __init__(
        self,
        config: Config,
        metrics: Metrics | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        default_interval: float = DEFAULT_INTERVAL,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__()
        self.path = Path(path) if path is not None else None
        self.clock = clock
        self.default_interval = float(default_interval)
        now = clock()
        self._minute = int(now // MINUTE)  # the current minute (epoch minutes)
        self._next_roll = (self._minute + 1) * MINUTE
        self._cover = now  # the current segment (of the current minute) started here
        self._ring: dict[int, Bucket] = {}
        self._sums: dict[Key, tuple[float, float, float, float]] | None = None
        self._dirty = False
        self._loaded = False
        self._seq = 0
        self._written_seq = 0
        self._write_lock = threading.Lock()
        self.saves = 0
        self.save_error: str | None = None
        self._retry = Backoff(RETRY_INITIAL, RETRY_MAX)
        self._save_failed_event: asyncio.Event | None = None
        self.load_error: str | None = None
        # per-tag state (rebuilt by configure)
        self._index: dict[str, int] = {}
        self._counts: list[int] = []
        self._apply_config(config, self.default_interval)
        if metrics is not None:
            metrics.group(_collector_group).current = self

    # ------------------------------------------------------------------ hot path
    def on_readings(self, batch: Sequence[Reading]) -> None:
        if self.clock() >= self._next_roll:
            self.roll()
        idx = self._index
        counts = self._counts
        for tag, _v, _ts, q in batch:
            if q != _COMM and q != _STALE:
                i = idx.get(tag)
                if i is not None:
                    counts[i] += 1

    # ------------------------------------------------------------------ config
    def _apply_config(self, config: Config, default_interval: float) -> None:
        self.default_interval = float(default_interval)
        per_tag = expected_intervals(config, self.default_interval)
        self._tags = list(per_tag)
        self._source_ids = [s.id for s in config.sources if s.enabled]
        self._hs_codes = [h.code for h in config.hazard_sources]
        known_hs = set(self._hs_codes)  # (a loaded config checks the reference; be safe anyway)
        self._e = [e for _, _, e in per_tag.values()]
        self._tag_src: list[Key] = [("s", sid) for sid, _, _ in per_tag.values()]
        self._tag_hs: list[Key | None] = [("h", hs) if hs in known_hs else None for _, hs, _ in per_tag.values()]
        self._keys: set[Key] = {("s", s) for s in self._source_ids} | {("h", h) for h in self._hs_codes}
        rate: dict[Key, float] = dict.fromkeys(self._keys, 0.0)  # expected readings per second
        ntags: dict[Key, int] = dict.fromkeys(self._keys, 0)
        intervals: dict[str, list[float]] = {}
        for src, hs, e in zip(self._tag_src, self._tag_hs, self._e, strict=True):
            for k in (src, hs):
                if k is not None:
                    rate[k] += 1.0 / e
                    ntags[k] += 1
            intervals.setdefault(src[1], []).append(e)
        self._rate = rate
        self._ntags = ntags
        self._interval = {sid: round(statistics.median(v), 3) for sid, v in intervals.items()}
        self._counts = [0] * len(self._tags)
        self._index = {t: i for i, t in enumerate(self._tags)}
        self._sums = None

    def configure(self, config: Config, *, default_interval: float | None = None) -> None:
        """Hot reload: the current minute so far is accounted under the old config, then
        the new tags and intervals apply; history of sources/hazard sources that still exist
        is kept, the rest dropped."""
        now = self.clock()
        self.roll(now)
        self._fold_segment(now)
        self._apply_config(config, self.default_interval if default_interval is None else default_interval)
        keys = self._keys
        self._ring = {m: {k: v for k, v in b.items() if k in keys} for m, b in self._ring.items()}
        self._sums = None
        self._dirty = True

    # ------------------------------------------------------------------ folding
    def _fold_segment(self, until: float) -> None:
        """Fold the current segment [cover, until) of the current minute into its bucket."""
        seg = max(0.0, until - self._cover)
        counts = self._counts
        add: dict[Key, list[float]] = {}
        if seg > 0:
            for k, per_s in self._rate.items():
                if per_s:
                    add[k] = [0.0, seg * per_s]
        if any(counts):
            e_list, srcs, hss = self._e, self._tag_src, self._tag_hs
            for i, c in enumerate(counts):
                if c:
                    capped = min(c, math.ceil(seg / e_list[i] - 1e-9)) if seg > 0 else 0
                    if capped:
                        for owner in (srcs[i], hss[i]):
                            if owner is not None:
                                add.setdefault(owner, [0.0, 0.0])[0] += capped
            counts[:] = [0] * len(counts)
        self._cover = max(self._cover, until)
        if add:
            self._merge(self._minute, add)

    def _merge(self, minute: int, add: dict[Key, list[float]]) -> None:
        old = self._ring.get(minute)
        b: Bucket = dict(old) if old else {}
        for k, (r, e) in add.items():
            r0, e0 = b.get(k, (0.0, 0.0))
            b[k] = (r0 + r, e0 + e)
        self._ring[minute] = b  # replaced, never mutated: a saved snapshot stays consistent
        self._sums = None
        self._dirty = True

    def _add_expected(self, minute: int, seconds: float) -> None:
        """Expected readings with none received (gateway down, or nothing arrived)."""
        add = {k: [0.0, seconds * per_s] for k, per_s in self._rate.items() if per_s}
        if add and seconds > 0:
            self._merge(minute, add)

    def roll(self, now: float | None = None) -> bool:
        """Fold the current minute when the clock has moved past it; True if it did."""
        if now is None:
            now = self.clock()
        m = int(now // MINUTE)
        if m == self._minute:
            return False
        if m < self._minute:  # the clock went back: forget the future, keep counting
            self._ring = {k: v for k, v in self._ring.items() if k <= m}
            self._minute, self._cover = m, min(self._cover, now)
            self._next_roll = (m + 1) * MINUTE
            self._sums = None
            self._dirty = True
            return True
        self._fold_segment((self._minute + 1) * MINUTE)
        # whole minutes with no batch at all (and no task to fold them): nothing arrived
        for mm in range(max(self._minute + 1, m - RING_MINUTES + 1), m):
            self._add_expected(mm, float(MINUTE))
        self._minute = m
        self._cover = float(m * MINUTE)
        self._next_roll = (m + 1) * MINUTE
        cutoff = m - RING_MINUTES
        for old in [k for k in self._ring if k <= cutoff]:
            del self._ring[old]
        self._sums = None
        self._dirty = True
        return True

    # ------------------------------------------------------------------ rates
    def _window_sums(self) -> dict[Key, tuple[float, float, float, float]]:
        """key -> (received hour, expected hour, received day, expected day) over the ring
        (complete minutes and earlier segments of the current one); cached until it changes."""
        if self._sums is None:
            sums: dict[Key, list[float]] = {}
            hour_from = self._minute - HOUR_MINUTES + 1
            day_from = self._minute - RING_MINUTES + 1
            for m, b in self._ring.items():
                if m < day_from or m > self._minute:
                    continue
                in_hour = m >= hour_from
                for k, (r, e) in b.items():
                    s = sums.get(k)
                    if s is None:
                        s = sums[k] = [0.0, 0.0, 0.0, 0.0]
                    s[2] += r
                    s[3] += e
                    if in_hour:
                        s[0] += r
                        s[1] += e
            self._sums = {k: (v[0], v[1], v[2], v[3]) for k, v in sums.items()}
        return self._sums

    def rates(self) -> dict[str, Any]:
        """``{"window": {"hour": 3600, "day": 86400}, "sources": {id: {"hour", "day", "tags",
        "interval_s"}}, "hazard_sources": {code: {"hour", "day", "tags"}}}``."""
        now = self.clock()
        self.roll(now)
        sums = self._window_sums()
        seg = max(0.0, now - self._cover)
        cur: dict[Key, list[float]] = {}
        for k, per_s in self._rate.items():
            cur[k] = [0.0, seg * per_s]
        if seg > 0:
            for i, c in enumerate(self._counts):
                if c:
                    capped = min(c, math.ceil(seg / self._e[i] - 1e-9))
                    for owner in (self._tag_src[i], self._tag_hs[i]):
                        if owner is not None:
                            cur[owner][0] += capped

        def entry(k: Key) -> dict[str, Any]:
            rh, eh, rd, ed = sums.get(k, (0.0, 0.0, 0.0, 0.0))
            r, e = cur.get(k, (0.0, 0.0))
            return {"hour": _rate(rh + r, eh + e), "day": _rate(rd + r, ed + e), "tags": self._ntags.get(k, 0)}

        sources: dict[str, Any] = {}
        for sid in self._source_ids:
            d = entry(("s", sid))
            d["interval_s"] = self._interval.get(sid)
            sources[sid] = d
        return {
            "window": {"hour": HOUR_MINUTES * MINUTE, "day": RING_MINUTES * MINUTE},
            "sources": sources,
            "hazard_sources": {code: entry(("h", code)) for code in self._hs_codes},
        }

    # ------------------------------------------------------------------ persistence
    def _snapshot(self) -> tuple[int, dict[str, Any]]:
        """What to save, taken on the event loop (cheap: buckets are immutable)."""
        self._seq += 1
        self._dirty = False
        return self._seq, {"covered_until": self._cover, "minute": self._minute, "ring": list(self._ring.items())}

    def _write(self, seq: int, snap: dict[str, Any]) -> None:
        """Serialize and write ``snap`` (temp file + os.replace); safe in a worker thread."""
        assert self.path is not None
        buckets = []
        for m, b in snap["ring"]:
            s = {k[1]: [_compact(r), _compact(e)] for k, (r, e) in b.items() if k[0] == "s"}
            h = {k[1]: [_compact(r), _compact(e)] for k, (r, e) in b.items() if k[0] == "h"}
            buckets.append([m, {"s": s, "h": h}])
        doc = {"version": FILE_VERSION, "covered_until": snap["covered_until"], "minute": snap["minute"],
               "buckets": buckets}
        data = json.dumps(doc, separators=(",", ":")).encode()
        with self._write_lock:
            if seq <= self._written_seq:  # a newer snapshot is already on disk
                return
            private_dir(self.path.parent)
            write_private(self.path, data)  # temp file + fsync + rename; no debris on ENOSPC
            self._written_seq = seq

    def save(self) -> None:
        """Write the buckets now (synchronously; the component does it off the event loop)."""
        if self.path is None:
            return
        self.roll()
        seq, snap = self._snapshot()
        try:
            self._write(seq, snap)
        except Exception as e:
            self._save_failed(e)
        else:
            self._save_ok()

    async def _save_async(self) -> None:
        if self.path is None:
            return
        self.roll()
        seq, snap = self._snapshot()
        try:
            await asyncio.to_thread(self._write, seq, snap)
        except Exception as e:
            self._save_failed(e)
        else:
            self._save_ok()

    def _save_failed(self, e: Exception) -> None:
        self._dirty = True
        msg = f"{type(e).__name__}: {e}"
        if self.save_error is None:
            log.warning("cannot save the online rate history to %s: %s (kept in memory, retrying)", self.path, msg)
        self.save_error = msg
        if self._save_failed_event is not None:
            self._save_failed_event.set()  # the task retries with backoff, not at the next minute

    def _save_ok(self) -> None:
        if self.save_error is not None:
            log.info("online rate history saved to %s again", self.path)
        self.save_error = None
        self._retry.reset()
        self.saves += 1

    def load(self) -> None:
        """Read the saved buckets (once) and count the time since the last save as offline."""
        if self._loaded:
            return
        self._loaded = True
        self._apply_loaded(self._read())

    def _read(self) -> Any:
        if self.path is None:
            return None
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            return e
        try:
            return json.loads(raw)
        except ValueError as e:
            return e

    def _apply_loaded(self, data: Any) -> None:
        if data is None:
            return
        try:
            if isinstance(data, Exception):
                raise data
            covered, buckets = _parse(data)
        except Exception as e:
            self.load_error = f"{type(e).__name__}: {e}"
            log.warning("online rate history %s is unreadable (%s); starting empty", self.path, self.load_error)
            return
        keys = self._keys
        first = self._minute - RING_MINUTES + 1
        for m, b in buckets:
            if first <= m <= self._minute:
                add = {k: [r, e] for k, (r, e) in b.items() if k in keys}
                if add:
                    self._merge(m, add)
        # downtime [covered, cover): expected, nothing received
        start = max(covered, float(first * MINUTE))
        if start < self._cover:
            cur_start = float(self._minute * MINUTE)
            mm = int(start // MINUTE)
            while mm < self._minute:
                lo = max(start, float(mm * MINUTE))
                self._add_expected(mm, float((mm + 1) * MINUTE) - lo)
                mm += 1
            # the part in the current minute joins the current segment
            self._cover = max(start, cur_start)
        self._sums = None
        self._dirty = True

    # ------------------------------------------------------------------ component
    async def start(self) -> None:
        self._save_failed_event = asyncio.Event()
        if not self._loaded:
            self._loaded = True
            self._apply_loaded(await asyncio.to_thread(self._read))
            await self._save_async()  # from now on a crash counts as downtime
        await super().start()

    async def stop(self) -> None:
        """Stop the task, account the current minute so far and save."""
        await super().stop()
        now = self.clock()
        self.roll(now)
        self._fold_segment(now)
        await self._save_async()

    def health(self) -> dict[str, Any]:
        h: dict[str, Any] = {
            "ok": self.running and self.save_error is None,
            "sources": len(self._source_ids),
            "tags": len(self._tags),
            "minutes": len(self._ring),
            "saves": self.saves,
        }
        if self.save_error is not None:
            h["error"] = self.save_error
        if self.load_error is not None:
            h["load_error"] = self.load_error
        return h

    async def _run(self) -> None:
        failed = self._save_failed_event
        assert failed is not None
        while True:
            delay = MINUTE - (self.clock() % MINUTE) + 0.05  # just after the minute boundary
            delay = min(max(delay, 0.05), MINUTE + 0.05)
            if self.save_error is not None:  # the last save failed: retry sooner, with backoff
                delay = min(delay, self._retry.next_delay())
            failed.clear()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(delay):
                    await failed.wait()  # a save failed meanwhile (e.g. stop/start): plan the retry
                continue
            self.roll()
            if self._dirty or self.save_error is not None:
                await self._save_async()


def _rate(received: float, expected: float) -> float | None:
    if expected <= 0:
        return None
    return round(min(1.0, max(0.0, received / expected)), 4)


def _compact(x: float) -> float | int:
    """A count for the file: an int when whole (most are), else 4 decimals."""
    r = round(x, 4)
    return int(r) if r.is_integer() else r


def _num(v: Any) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v < 0:
        raise ValueError(f"expected a non-negative number, got {v!r}")
    return float(v)


def _parse(data: Any) -> tuple[float, list[tuple[int, Bucket]]]:
    """(covered_until, [(minute, bucket)]) from the saved JSON; ValueError when malformed."""
    if not isinstance(data, dict) or data.get("version") != FILE_VERSION:
        raise ValueError("not an online rate file of version 1")
    covered = _num(data.get("covered_until"))
    raw = data.get("buckets")
    if not isinstance(raw, list):
        raise ValueError("buckets must be a list")
    out: list[tuple[int, Bucket]] = []
    for item in raw:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int)
                and isinstance(item[1], dict)):
            raise ValueError(f"malformed bucket {item!r:.80}")
        b: Bucket = {}
        for scope in ("s", "h"):
            part = item[1].get(scope, {})
            if not isinstance(part, dict):
                raise ValueError(f"malformed bucket {item!r:.80}")
            for ident, pair in part.items():
                if not (isinstance(pair, list) and len(pair) == 2):
                    raise ValueError(f"malformed pair {pair!r:.80}")
                b[(scope, ident)] = (_num(pair[0]), _num(pair[1]))
        out.append((item[0], b))
    return covered, out


# ---------------------------------------------------------------------- Prometheus

_METRIC = "hazardgw_online_rate"
_HELP = "Data online rate (received / expected readings) over the window, per source or hazard source"


class OnlineCollector(Collector):
    """One per registry (``metrics.group``); reads whichever OnlineRate is current."""

    def __init__(self) -> None:
        self.current: OnlineRate | None = None

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(_METRIC, _HELP, labels=["scope", "id", "window"])

    def collect(self) -> Iterator[Metric]:
        g = GaugeMetricFamily(_METRIC, _HELP, labels=["scope", "id", "window"])
        cur = self.current
        if cur is not None:
            r = cur.rates()
            for scope, section in (("source", "sources"), ("hazard_source", "hazard_sources")):
                for ident, v in r[section].items():
                    for window, key in (("1h", "hour"), ("1d", "day")):
                        if v[key] is not None:
                            g.add_metric([scope, ident, window], v[key])
        yield g


def _collector_group(registry: CollectorRegistry) -> OnlineCollector:
    c = OnlineCollector()
    registry.register(c)
    return c
