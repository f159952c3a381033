"""In-use rate of gas detectors (投用率) per hazard source and for the site.

Definition
----------
The gas detector tags are the tags of kind ``combustible_gas``, ``toxic_gas`` and ``oxygen``.
One is **in service** at an instant when all of these hold:

* its latest reading has quality ``good`` (not bad, uncertain, stale, comm, nor missing);
* it is not in test mode (gateway/upkeep/testmode.py);
* none of its alarms is out of service (OOSRV, removed for maintenance);
* its calibration is not overdue (gateway/upkeep/calibration.py).

Every ``interval`` (10 s) the component samples which detectors are in service and adds, per
hazard source and for the site, (in-service detector-seconds, detector-seconds) for the time
since the previous sample (at most 60 s: a stalled loop does not stretch one sample) into a
one-minute bucket of the wall clock. The **rate** over the last hour or day is the sum over
the last 60 (1440) buckets, in-service / all, rounded to 4 decimals; ``None`` while nothing
was sampled. The site covers every gas detector, with or without a hazard source.

**Gateway downtime counts as not in use**, as for the data online rate (gateway/online.py,
which this follows): the buckets are saved once a minute and on stop as JSON
(``{store.path}/inuse.json``, 0600, gateway/core/files.py); on start the time since the last
save (at most a day) is added with nothing in service, for the current config's detectors.
An unreadable file is logged and ignored; a failed save is retried with backoff.

Exposed as :meth:`InUseRate.rates` (``GET /api/online`` ``in_use``, the uplink heartbeat)
and the Prometheus gauges ``hazardgw_inuse_rate{scope="site"|"hazard_source", id,
window="1h"|"1d"}`` and ``hazardgw_inuse_tags{scope, id, state="in_service"|"total"}``
(computed at scrape time; InfluxDB ``gateway`` measurement, component ``inuse``, through the
self-metrics writer). Nothing runs per reading: the sampler reads the live state.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Final

from prometheus_client import CollectorRegistry
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from gateway.core.backoff import Backoff
from gateway.core.config import GAS_KINDS, SiteConfig
from gateway.core.files import private_dir, write_private
from gateway.core.metrics import Metrics
from gateway.core.models import Quality, Reading
from gateway.core.tasks import TaskComponent

log = logging.getLogger(__name__)

MINUTE: Final = 60
RING_MINUTES: Final = 1440
HOUR_MINUTES: Final = 60
MAX_STEP: Final = 60.0  # s one sample may cover at most
MIN_STEP: Final = 0.5  # s: a sample closer to the previous one only refreshes the current state
FILE_VERSION: Final = 1
SITE: Final = "site"

Key = tuple[str, str]  # ("site", site code) or ("h", hazard source code)
Bucket = dict[Key, tuple[float, float]]  # (in-service detector-seconds, detector-seconds)

#: why a detector is not in service (the API and console show them)
REASONS: Final = ("quality", "test", "out_of_service", "calibration_overdue")


class InUseRate(TaskComponent):
    name = "in-use"

    def __init__(
        self,
        config: SiteConfig,
        metrics: Metrics | None = None,
        *,
        path: str | os.PathLike[str] | None = None,
        latest: Mapping[str, Reading],
        testing: Callable[[], frozenset[str]],
        out_of_service: Callable[[], set[str]],
        overdue: Callable[[], set[str]],
        clock: Callable[[], float] = time.time,
        interval: float = 10.0,
    ) -> None:
        super().__init__()
        self.path = Path(path) if path is not None else None
        self.latest = latest
        self.testing = testing
        self.out_of_service = out_of_service
        self.overdue = overdue
        self.clock = clock
        self.interval = interval
        self._ring: dict[int, Bucket] = {}
        self._last: float | None = None  # wall s of the last sample (covered until)
        self._now: dict[Key, tuple[int, int]] = {}  # (in service, total) at the last sample
        self._why: dict[str, list[str]] = {}  # detector -> reasons it is not in service (last sample)
        self._dirty = False
        self._retry = Backoff(1.0, 10.0)
        self.save_error: str | None = None
        self.load_error: str | None = None
        self._loaded = False
        self.configure(config)
        if metrics is not None:
            metrics.group(_collector_group).current = self

    def configure(self, config: SiteConfig) -> None:
        """The detectors and hazard sources of ``config`` (a reload keeps the history of the
        hazard sources that still exist)."""
        self.site = config.site.code
        codes = [h.code for h in config.hazard_sources]
        known = set(codes)
        self._codes = codes
        self._detectors = [(t.id, ("h", t.hazard_source) if t.hazard_source in known else None)
                           for t in config.tags if t.kind in GAS_KINDS]
        self._keys: list[Key] = [(SITE, self.site), *(("h", c) for c in codes)]
        self._count: dict[Key, int] = dict.fromkeys(self._keys, 0)
        for _, hs in self._detectors:
            self._count[(SITE, self.site)] += 1
            if hs is not None:
                self._count[hs] += 1
        keys = set(self._keys)
        self._ring = {m: {k: v for k, v in b.items() if k in keys} for m, b in self._ring.items()}

    # ------------------------------------------------------------------ sampling
    def sample(self, now: float | None = None) -> None:
        """Which detectors are in service now; adds the time since the last sample."""
        t = self.clock() if now is None else now
        testing = self.testing()
        oos = self.out_of_service()
        overdue = self.overdue()
        latest = self.latest
        counts: dict[Key, list[int]] = {k: [0, 0] for k in self._keys}
        why: dict[str, list[str]] = {}
        site = (SITE, self.site)
        for tag, hs in self._detectors:
            r = latest.get(tag)
            reasons = []
            if r is None or r.quality != Quality.GOOD:
                reasons.append("quality")
            if tag in testing:
                reasons.append("test")
            if tag in oos:
                reasons.append("out_of_service")
            if tag in overdue:
                reasons.append("calibration_overdue")
            ok = not reasons
            if reasons:
                why[tag] = reasons
            for k in (site, hs):
                if k is not None:
                    c = counts[k]
                    c[1] += 1
                    if ok:
                        c[0] += 1
        self._why = why
        self._now = {k: (v[0], v[1]) for k, v in counts.items()}
        if self._last is None:
            self._last = t
        elif t - self._last >= MIN_STEP:
            step = min(t - self._last, MAX_STEP)
            self._add(t, {k: (v[0] * step, v[1] * step) for k, v in counts.items() if v[1]})
            self._last = t

    def _add(self, t: float, add: Mapping[Key, tuple[float, float]]) -> None:
        m = int(t // MINUTE)
        old = self._ring.get(m)
        b: Bucket = dict(old) if old else {}
        for k, (a, e) in add.items():
            a0, e0 = b.get(k, (0.0, 0.0))
            b[k] = (a0 + a, e0 + e)
        self._ring[m] = b
        for old_m in [x for x in self._ring if x <= m - RING_MINUTES]:
            del self._ring[old_m]
        self._dirty = True

    # ------------------------------------------------------------------ rates
    def rates(self) -> dict[str, Any]:
        """``{"window": {...}, "site": {"hour", "day", "tags", "in_service"}, "hazard_sources":
        {code: {...}}, "not_in_service": {tag: [reasons]}}`` (``in_service``: at the last sample)."""
        now = self.clock()
        m = int(now // MINUTE)
        sums: dict[Key, list[float]] = {}
        for minute, b in self._ring.items():
            if minute > m or minute <= m - RING_MINUTES:
                continue
            in_hour = minute > m - HOUR_MINUTES
            for k, (a, e) in b.items():
                s = sums.setdefault(k, [0.0, 0.0, 0.0, 0.0])
                s[2] += a
                s[3] += e
                if in_hour:
                    s[0] += a
                    s[1] += e

        def entry(k: Key) -> dict[str, Any]:
            ah, eh, ad, ed = sums.get(k, (0.0, 0.0, 0.0, 0.0))
            cur = self._now.get(k)
            return {"hour": _rate(ah, eh), "day": _rate(ad, ed), "tags": self._count.get(k, 0),
                    "in_service": cur[0] if cur is not None else None}

        return {
            "window": {"hour": HOUR_MINUTES * MINUTE, "day": RING_MINUTES * MINUTE},
            "site": entry((SITE, self.site)),
            "hazard_sources": {c: entry(("h", c)) for c in self._codes},
            "not_in_service": dict(sorted(self._why.items())),
        }

    def reasons(self) -> dict[str, list[str]]:
        """Detectors not in service at the last sample, with why."""
        return self._why

    # ------------------------------------------------------------------ persistence
    def _doc(self) -> bytes:
        buckets = [[m, {f"{k[0]}:{k[1]}": [_compact(a), _compact(e)] for k, (a, e) in b.items()}]
                   for m, b in sorted(self._ring.items())]
        return json.dumps({"version": FILE_VERSION, "covered_until": self._last, "buckets": buckets},
                          separators=(",", ":")).encode()

    async def save(self) -> None:
        if self.path is None:
            return
        data = self._doc()
        self._dirty = False
        path = self.path
        try:
            await asyncio.to_thread(_write, path, data)
        except Exception as e:
            self._dirty = True
            if self.save_error is None:
                log.warning("cannot save the in-use rate history to %s: %s (kept in memory, retrying)", path, e)
            self.save_error = f"{type(e).__name__}: {e}"
        else:
            if self.save_error is not None:
                log.info("in-use rate history saved to %s again", path)
            self.save_error = None
            self._retry.reset()

    async def load(self) -> None:
        """Read the saved buckets and count the time since the last save as not in use."""
        if self._loaded:
            return
        self._loaded = True
        now = self.clock()
        if self.path is not None:
            try:
                raw = await asyncio.to_thread(self.path.read_bytes)
            except FileNotFoundError:
                raw = None
            except OSError as e:
                raw = None
                self.load_error = f"{type(e).__name__}: {e}"
            if raw is not None:
                try:
                    covered, buckets = _parse(json.loads(raw))
                except Exception as e:
                    self.load_error = f"{type(e).__name__}: {e}"
                    log.warning("in-use rate history %s is unreadable (%s); starting empty", self.path, e)
                else:
                    keys = set(self._keys)
                    first = int(now // MINUTE) - RING_MINUTES + 1
                    for m, b in buckets:
                        if first <= m <= int(now // MINUTE):
                            self._ring[m] = {k: v for k, v in b.items() if k in keys}
                    if covered is not None and covered < now:
                        self._down(max(covered, now - RING_MINUTES * MINUTE), now)
        self._last = now

    def _down(self, start: float, end: float) -> None:
        """[start, end): the gateway was down: every detector counts as not in service."""
        t = start
        while t < end:
            nxt = min(end, (int(t // MINUTE) + 1) * MINUTE)
            secs = nxt - t
            self._add(t, {k: (0.0, n * secs) for k, n in self._count.items() if n})
            t = nxt

    async def start(self) -> None:
        await self.load()
        self.sample()
        await super().start()

    async def stop(self) -> None:
        await super().stop()
        self.sample()
        await self.save()

    def health(self) -> dict[str, Any]:
        h: dict[str, Any] = {"ok": self.running and self.save_error is None, "detectors": len(self._detectors)}
        if self.save_error is not None:
            h["error"] = self.save_error
        if self.load_error is not None:
            h["load_error"] = self.load_error
        return h

    async def _run(self) -> None:
        next_save = self.clock() + MINUTE
        while True:
            delay = self.interval
            if self.save_error is not None:
                delay = min(delay, self._retry.next_delay())
            await asyncio.sleep(delay)
            try:
                self.sample()
                if self._dirty and (self.clock() >= next_save or self.save_error is not None):
                    next_save = self.clock() + MINUTE
                    await self.save()
            except Exception:
                log.exception("in-use rate sampling failed; continuing")


def _write(path: Path, data: bytes) -> None:
    private_dir(path.parent)
    write_private(path, data)


def _rate(a: float, e: float) -> float | None:
    if e <= 0:
        return None
    return round(min(1.0, max(0.0, a / e)), 4)


def _compact(x: float) -> float | int:
    r = round(x, 3)
    return int(r) if r.is_integer() else r


def _parse(data: Any) -> tuple[float | None, list[tuple[int, Bucket]]]:
    if not isinstance(data, dict) or data.get("version") != FILE_VERSION:
        raise ValueError("not an in-use rate file of version 1")
    covered = data.get("covered_until")
    if covered is not None and (isinstance(covered, bool) or not isinstance(covered, int | float)
                                or not math.isfinite(covered)):
        raise ValueError("covered_until must be a number")
    out: list[tuple[int, Bucket]] = []
    for item in data.get("buckets") or []:
        if not (isinstance(item, list) and len(item) == 2 and isinstance(item[0], int) and isinstance(item[1], dict)):
            raise ValueError(f"malformed bucket {item!r:.80}")
        b: Bucket = {}
        for key, pair in item[1].items():
            scope, _, ident = str(key).partition(":")
            if scope not in (SITE, "h") or not (isinstance(pair, list) and len(pair) == 2):
                raise ValueError(f"malformed entry {key!r}")
            a, e = (float(x) for x in pair)
            if not (0 <= a <= e) or not math.isfinite(e):
                raise ValueError(f"malformed entry {key!r}")
            b[(scope, ident)] = (a, e)
        out.append((item[0], b))
    return (float(covered) if covered is not None else None), out


# ---------------------------------------------------------------------- Prometheus

_RATE = "hazardgw_inuse_rate"
_TAGS = "hazardgw_inuse_tags"


class InUseCollector(Collector):
    """One per registry (``metrics.group``); reads whichever InUseRate is current."""

    def __init__(self) -> None:
        self.current: InUseRate | None = None

    def describe(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(_RATE, "In-use rate of gas detectors (投用率) over the window", labels=["scope", "id",
                                                                                                    "window"])
        yield GaugeMetricFamily(_TAGS, "Gas detectors in service / in total at the last sample",
                                labels=["scope", "id", "state"])

    def collect(self) -> Iterator[Metric]:
        rate = GaugeMetricFamily(_RATE, "In-use rate of gas detectors (投用率) over the window",
                                 labels=["scope", "id", "window"])
        tags = GaugeMetricFamily(_TAGS, "Gas detectors in service / in total at the last sample",
                                 labels=["scope", "id", "state"])
        cur = self.current
        if cur is not None:
            r = cur.rates()
            entries = [("site", cur.site, r["site"])] + [("hazard_source", c, v)
                                                         for c, v in r["hazard_sources"].items()]
            for scope, ident, v in entries:
                for window, key in (("1h", "hour"), ("1d", "day")):
                    if v[key] is not None:
                        rate.add_metric([scope, ident, window], v[key])
                if v["in_service"] is not None:
                    tags.add_metric([scope, ident, "in_service"], v["in_service"])
                tags.add_metric([scope, ident, "total"], v["tags"])
        yield rate
        yield tags


def _collector_group(registry: CollectorRegistry) -> InUseCollector:
    c = InUseCollector()
    registry.register(c)
    return c
