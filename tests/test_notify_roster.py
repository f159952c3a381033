"""Duty roster: shifts in the site time zone crossing midnight, weekdays, date overrides, handover."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from test_notify_support import local_ns

from alerting.notify.roster import Roster
from gateway.core.config import Duty

DAY_NIGHT: dict[str, Any] = {
    "shifts": [
        {"name": "day", "start": "08:00", "end": "20:00", "people": ["zhao"]},
        {"name": "night", "start": "20:00", "end": "08:00", "people": ["sun"]},
    ]
}


def roster(extra: dict[str, Any] | None = None, tz: str = "Asia/Shanghai") -> Roster:
    return Roster(Duty.model_validate(DAY_NIGHT | (extra or {})), tz)


@pytest.mark.parametrize(
    ("local", "who"),
    [
        ("2026-03-02 10:00", ["zhao"]),
        ("2026-03-02 07:59", ["sun"]),  # night shift that started on 03-01
        ("2026-03-02 08:00", ["zhao"]),  # start inclusive, end exclusive
        ("2026-03-02 19:59", ["zhao"]),
        ("2026-03-02 20:00", ["sun"]),
        ("2026-03-02 23:59", ["sun"]),
        ("2026-03-03 00:00", ["sun"]),  # across midnight
        ("2026-03-03 03:30", ["sun"]),
    ],
)
def test_day_and_night_shift_across_midnight(local: str, who: list[str]) -> None:
    assert roster().on_duty(local_ns(local)) == who


def test_the_site_time_zone_decides_not_utc() -> None:
    t = local_ns("2026-03-02 21:00")  # 13:00 UTC
    assert roster().on_duty(t) == ["sun"]
    assert roster(tz="UTC").on_duty(t) == ["zhao"]


def test_override_of_one_shift_instance_holds_after_midnight() -> None:
    r = roster({"overrides": [{"date": "2026-03-02", "shift": "night", "people": ["li"]}]})
    assert r.on_duty(local_ns("2026-03-02 03:00")) == ["sun"]  # the 03-01 night shift is not overridden
    assert r.on_duty(local_ns("2026-03-02 12:00")) == ["zhao"]  # the day shift is not overridden
    assert r.on_duty(local_ns("2026-03-02 22:00")) == ["li"]
    assert r.on_duty(local_ns("2026-03-03 05:00")) == ["li"]  # same instance, after midnight
    assert r.on_duty(local_ns("2026-03-03 22:00")) == ["sun"]


def test_whole_day_override_covers_the_calendar_date() -> None:
    r = roster({"overrides": [{"date": "2026-03-02", "people": ["wang", "chen"]}]})
    assert r.on_duty(local_ns("2026-03-01 23:59")) == ["sun"]
    assert r.on_duty(local_ns("2026-03-02 00:00")) == ["wang", "chen"]  # replaces the 03-01 night shift
    assert r.on_duty(local_ns("2026-03-02 15:00")) == ["wang", "chen"]
    assert r.on_duty(local_ns("2026-03-03 00:00")) == ["sun"]


def test_weekday_filter_applies_to_the_start_date() -> None:
    duty = {
        "shifts": [
            {"name": "week", "start": "08:00", "end": "20:00", "people": ["zhao"], "days": ["mon", "tue", "wed"]},
            {"name": "fri-night", "start": "22:00", "end": "06:00", "people": ["li"], "days": ["fri"]},
        ]
    }
    r = Roster(Duty.model_validate(duty), "Asia/Shanghai")
    assert r.on_duty(local_ns("2026-03-02 09:00")) == ["zhao"]  # Monday
    assert r.on_duty(local_ns("2026-03-05 09:00")) == []  # Thursday
    assert r.on_duty(local_ns("2026-03-07 03:00")) == ["li"]  # Saturday morning, Friday's shift
    assert r.on_duty(local_ns("2026-03-08 03:00")) == []  # Sunday morning: no Saturday shift


def test_handover_keeps_the_outgoing_shift_on_duty() -> None:
    r = roster({"handover": "15m"})
    assert r.on_duty(local_ns("2026-03-02 20:00")) == ["sun", "zhao"]  # incoming first
    assert r.on_duty(local_ns("2026-03-02 20:14")) == ["sun", "zhao"]
    assert r.on_duty(local_ns("2026-03-02 20:15")) == ["sun"]
    assert r.on_duty(local_ns("2026-03-03 08:05")) == ["zhao", "sun"]  # the night shift hands over after midnight
    assert roster().on_duty(local_ns("2026-03-02 20:05")) == ["sun"]  # no handover configured


def test_overlapping_shifts_and_24h_shift() -> None:
    duty = {
        "shifts": [
            {"name": "all", "start": "06:00", "end": "06:00", "people": ["chen"]},
            {"name": "day", "start": "08:00", "end": "20:00", "people": ["zhao", "chen"]},
        ]
    }
    r = Roster(Duty.model_validate(duty), "Asia/Shanghai")
    assert r.on_duty(local_ns("2026-03-02 05:59")) == ["chen"]  # 24 h shift that started 03-01 06:00
    assert r.on_duty(local_ns("2026-03-02 09:00")) == ["chen", "zhao"]  # union, no duplicates


def test_gaps_are_reported() -> None:
    r = Roster(Duty.model_validate({"shifts": [DAY_NIGHT["shifts"][0]]}), "Asia/Shanghai")
    gaps = r.gaps(local_ns("2026-03-02 00:00"), days=2)
    assert [(a.strftime("%d %H:%M"), b.strftime("%d %H:%M")) for a, b in gaps] == [
        ("02 00:00", "02 08:00"),
        ("02 20:00", "03 08:00"),
        ("03 20:00", "04 00:00"),
    ]
    assert roster().gaps(local_ns("2026-03-02 00:00"), days=2) == []
    assert all(a.tzinfo is not None and a.utcoffset() == dt.timedelta(hours=8) for a, _ in gaps)
