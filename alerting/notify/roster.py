"""Duty roster: who is on duty at a given wall-clock time (``duty.shifts`` / ``overrides`` / ``handover``).

Rules (all times in the site's time zone, ``site.timezone``):

* A shift runs from ``start`` (inclusive) to ``end`` (exclusive). ``end`` at or before
  ``start`` crosses midnight (``20:00``-``08:00``); ``end == start`` is a 24 h shift. A shift
  instance belongs to the date it *starts* on; ``days`` (mon..sun) filters those start dates.
* Overlapping shifts add up: everyone of every shift running at that moment is on duty.
* ``overrides`` with ``shift``: the instance of that shift starting on ``date`` is staffed by
  the override's people instead (the whole instance, also after midnight).
* ``overrides`` without ``shift``: the override's people are on duty for the whole calendar
  ``date`` (00:00-24:00), replacing every shift during that day.
* ``handover``: the people of a shift instance that ended less than ``handover`` ago are
  still on duty (outgoing and incoming shift both receive pushes).

``on_duty`` is called at send time with the wall clock (ns); it is pure and cheap (a few
shift checks), so the notifier resolves it per escalation step, never ahead of time.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from zoneinfo import ZoneInfo

from gateway.core.config import Duty, Shift

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


@dataclass(frozen=True, slots=True)
class ShiftInstance:
    name: str
    start: dt.datetime  # aware, site time zone
    end: dt.datetime
    people: tuple[str, ...]
    override: bool  # staffed by a date override


def _hm(s: str) -> tuple[int, int]:
    h, m = s.split(":")
    return int(h), int(m)


class Roster:
    def __init__(self, duty: Duty, timezone: str | dt.tzinfo) -> None:
        self.tz: dt.tzinfo = ZoneInfo(timezone) if isinstance(timezone, str) else timezone
        self.shifts: tuple[Shift, ...] = tuple(duty.shifts)
        self.handover = float(duty.handover)
        self._by_shift: dict[tuple[dt.date, str], tuple[str, ...]] = {}
        self._whole_day: dict[dt.date, tuple[str, ...]] = {}
        for ov in duty.overrides:
            d = dt.date.fromisoformat(ov.date)
            if ov.shift is None:
                self._whole_day[d] = _merge(self._whole_day.get(d, ()), ov.people)
            else:
                key = (d, ov.shift)
                self._by_shift[key] = _merge(self._by_shift.get(key, ()), ov.people)

    # ------------------------------------------------------------------ queries
    def local(self, wall_ns: int) -> dt.datetime:
        return dt.datetime.fromtimestamp(wall_ns / 1e9, self.tz)

    def instances(self, day: dt.date) -> Iterator[ShiftInstance]:
        """The shift instances starting on ``day`` (overrides applied)."""
        weekday = _DAYS[day.weekday()]
        for s in self.shifts:
            if s.days is not None and weekday not in s.days:
                continue
            sh, sm = _hm(s.start)
            eh, em = _hm(s.end)
            start = dt.datetime(day.year, day.month, day.day, sh, sm, tzinfo=self.tz)
            end_day = day if (eh, em) > (sh, sm) else day + dt.timedelta(days=1)
            end = dt.datetime(end_day.year, end_day.month, end_day.day, eh, em, tzinfo=self.tz)
            people = self._by_shift.get((day, s.name))
            yield ShiftInstance(s.name, start, end, people or tuple(s.people), people is not None)

    def running(self, wall_ns: int) -> list[ShiftInstance]:
        """Shift instances running at ``wall_ns`` (whole-day overrides not applied)."""
        t = wall_ns / 1e9
        local = self.local(wall_ns)
        out = []
        for day in (local.date() - dt.timedelta(days=1), local.date()):
            for inst in self.instances(day):
                if inst.start.timestamp() <= t < inst.end.timestamp():
                    out.append(inst)
        return out

    def on_duty(self, wall_ns: int) -> list[str]:
        """Person ids on duty at ``wall_ns`` (ns since the epoch), in roster order, no duplicates."""
        local = self.local(wall_ns)
        whole = self._whole_day.get(local.date())
        if whole is not None:
            return list(whole)
        people: tuple[str, ...] = ()
        for inst in self.running(wall_ns):
            people = _merge(people, inst.people)
        if self.handover > 0:
            t = wall_ns / 1e9
            for day in (local.date() - dt.timedelta(days=2), local.date() - dt.timedelta(days=1), local.date()):
                for inst in self.instances(day):
                    end = inst.end.timestamp()
                    if end <= t < end + self.handover:
                        people = _merge(people, inst.people)
        return list(people)

    def gaps(self, start_wall_ns: int, days: int = 7, step_s: int = 60) -> list[tuple[dt.datetime, dt.datetime]]:
        """Intervals (site time) within ``days`` from ``start_wall_ns`` when nobody is on duty."""
        out: list[tuple[dt.datetime, dt.datetime]] = []
        gap_start: int | None = None
        t = start_wall_ns - start_wall_ns % (step_s * 1_000_000_000)
        end = t + days * 86400 * 1_000_000_000
        while t < end:
            empty = not self.on_duty(t)
            if empty and gap_start is None:
                gap_start = t
            elif not empty and gap_start is not None:
                out.append((self.local(gap_start), self.local(t)))
                gap_start = None
            t += step_s * 1_000_000_000
        if gap_start is not None:
            out.append((self.local(gap_start), self.local(end)))
        return out


def _merge(a: tuple[str, ...], b: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    seen = set(a)
    out = list(a)
    for p in b:
        if p not in seen:
            seen.add(p)
            out.append(p)
    return tuple(out)
