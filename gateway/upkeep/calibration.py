"""Calibration due dates (检定/校准周期) of detectors and transmitters.

A tag's last calibration and interval come from its config (``tags[].calibration: {last:
2026-03-01, interval: 365d}``) and from the calibrations recorded through the API
(``POST /api/tags/{id}/calibration``, gateway/upkeep/store.py): whichever is later counts,
with the recorded interval when one was given, else the config's, else 365 days. From
that, on the site's calendar (``site.timezone``):

* ``overdue``: the due date (last + interval) has passed;
* ``due``: it falls within :data:`~gateway.core.config.CALIBRATION_DUE_DAYS` (30) days;
* ``ok``; ``none`` when nothing is known.

``hazardgw check`` warns about ``due`` and ``overdue`` from the config alone
(:func:`check_problems`: a commissioning laptop has no store); the console, the API and the
in-use rate (an overdue gas detector is not in use) use the records too
(:class:`Calibrations`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.config import CALIBRATION_DUE_DAYS, SiteConfig, Tag
from gateway.core.problems import Problem
from gateway.upkeep.store import CalibrationRecord, UpkeepStore

DEFAULT_INTERVAL = 365 * 86400.0


@dataclass(frozen=True)
class CalibrationState:
    tag: str
    status: str  # ok | due | overdue | none
    last: dt.date | None = None
    interval_s: float | None = None
    due: dt.date | None = None
    days_left: int | None = None  # negative when overdue
    source: str | None = None  # config | record
    by: str | None = None  # who recorded it (record)

    def to_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "last": self.last.isoformat() if self.last else None,
            "interval_s": self.interval_s,
            "due": self.due.isoformat() if self.due else None,
            "days_left": self.days_left,
            "source": self.source,
            "by": self.by,
        }


def today(tz: str, wall_ns: int | None = None) -> dt.date:
    """The site's calendar date now."""
    w = time.time_ns() if wall_ns is None else wall_ns
    return dt.datetime.fromtimestamp(w / 1e9, ZoneInfo(tz)).date()


def state_of(tag: Tag, record: CalibrationRecord | None, on: dt.date) -> CalibrationState:
    cfg = tag.calibration
    last: dt.date | None = cfg.last if cfg is not None else None
    interval = cfg.interval if cfg is not None else None
    source: str | None = "config" if cfg is not None else None
    by: str | None = None
    if record is not None and (last is None or record.date >= last):
        last = record.date
        interval = record.interval_s if record.interval_s is not None else interval
        source, by = "record", record.by
    if last is None:
        return CalibrationState(tag.id, "none")
    interval = interval if interval is not None else DEFAULT_INTERVAL
    due = last + dt.timedelta(seconds=interval)
    left = (due - on).days
    status = "overdue" if left < 0 else "due" if left <= CALIBRATION_DUE_DAYS else "ok"
    return CalibrationState(tag.id, status, last, interval, due, left, source, by)


def check_problems(config: SiteConfig, on: dt.date | None = None) -> list[Problem]:
    """``hazardgw check`` warnings: calibrations (from the config) overdue or due within 30 days."""
    day = on if on is not None else today(config.site.timezone)
    out: list[Problem] = []
    for i, t in enumerate(config.tags):
        if t.calibration is None:
            continue
        s = state_of(t, None, day)
        path = ("tags", i, "calibration")
        if s.status == "overdue":
            msg = (f"tag {t.id}: calibration overdue: it was due on {s.due} (last {s.last}, every "
                   f"{(s.interval_s or 0) / 86400:g} days): an overdue gas detector counts as not in use; calibrate it "
                   "and update calibration.last (or record it in the console)")
            out.append(Problem(path, None, msg, "warning"))
        elif s.status == "due":
            out.append(Problem(path, None, f"tag {t.id}: calibration due on {s.due} (in {s.days_left} days; last "
                               f"{s.last})", "warning"))
    return out


class Calibrations:
    """The calibration state of every tag: config plus the records (kept in memory; the store
    is read once at start and written on every new record)."""

    def __init__(self, config: SiteConfig, store: UpkeepStore, *, wall: Callable[[], int] = time.time_ns) -> None:
        self.config = config
        self.store = store
        self.wall = wall
        self.records: dict[str, CalibrationRecord] = {}
        self._cache: tuple[dt.date, int, dict[str, CalibrationState]] | None = None
        self._version = 0
        self.load_error: str | None = None

    def configure(self, config: SiteConfig) -> None:
        self.config = config
        self._cache = None

    async def load(self) -> None:
        try:
            self.records = await asyncio.to_thread(self.store.latest_calibrations, writer=True)
            self.load_error = None
        except Exception as e:  # the config's dates still apply
            self.load_error = f"{type(e).__name__}: {e}"
        self._cache = None

    def states(self) -> dict[str, CalibrationState]:
        """Every tag's state today (cached for the day and until a new record)."""
        day = today(self.config.site.timezone, self.wall())
        c = self._cache
        if c is not None and c[0] == day and c[1] == self._version:
            return c[2]
        states = {t.id: state_of(t, self.records.get(t.id), day) for t in self.config.tags}
        self._cache = (day, self._version, states)
        return states

    def overdue(self) -> set[str]:
        return {t for t, s in self.states().items() if s.status == "overdue"}

    async def record(self, tag: str, by: str, *, date: dt.date | None = None, interval_s: float | None = None,
                     comment: str | None = None) -> CalibrationState:
        """Record a calibration (the operator's action; persisted before it counts). ValueError
        for an unknown tag, a date in the future or an interval out of range."""
        t = self.config.tag_map().get(tag)
        if t is None:
            raise LookupError(f"unknown tag {tag!r}")
        if not by or not by.strip():
            raise ValueError("a calibration needs the operator's name")
        day = today(self.config.site.timezone, self.wall())
        d = date or day
        if d > day:
            raise ValueError(f"date {d} is in the future")
        if interval_s is not None and not 86400 <= interval_s <= 10 * 366 * 86400:
            raise ValueError("interval must be 1d..10 years")
        rec = CalibrationRecord(tag, d, interval_s, self.wall(), by.strip(), comment)
        rec = await asyncio.to_thread(self.store.add_calibration, rec)
        cur = self.records.get(tag)
        if cur is None or (rec.date, rec.recorded) >= (cur.date, cur.recorded):
            self.records[tag] = rec
        self._version += 1
        return self.states()[tag]
