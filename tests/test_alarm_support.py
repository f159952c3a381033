"""Shared helpers of the alarm tests: configs from dicts, a fake clock, an engine harness.

(Named test_alarm_* so it stays within the alarm test files; its own tests check the
helpers.)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from alerting import AlarmEngine, AlarmEvent, Journal
from gateway.config import Config
from gateway.core.metrics import Metrics
from gateway.core.models import Reading

WALL0 = 1_700_000_000_000_000_000  # ns


def make_config(
    tags: Sequence[dict[str, Any]],
    *,
    votes: Sequence[dict[str, Any]] = (),
    sources: Sequence[dict[str, Any]] = (),
    alarming: dict[str, Any] | None = None,
    hazard_sources: Sequence[dict[str, Any]] | None = None,
    store: str | None = None,
) -> Config:
    data: dict[str, Any] = {
        "site": {"code": "TESTSITE", "name": "Test site"},
        "hazard_sources": list(hazard_sources)
        if hazard_sources is not None
        else [
            {"code": "HS-1", "name": "Chlorine tank farm", "grade": 2},
            {"code": "HS-3", "name": "Small store", "grade": 3},
        ],
        "tags": list(tags),
        "votes": list(votes),
        "sources": list(sources),
    }
    if alarming is not None:
        data["alarming"] = alarming
    if store is not None:
        data["store"] = {"path": store}
    return Config.model_validate(data)


def modbus_source(tags: Iterable[str], poll: str = "1s") -> dict[str, Any]:
    return {
        "id": "plc",
        "type": "modbus_tcp",
        "host": "127.0.0.1",
        "port": 5020,
        "poll_interval": poll,
        "points": [{"tag": t, "table": "holding", "address": 2 * i, "type": "float32"} for i, t in enumerate(tags)],
    }


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def wall(self) -> int:
        return WALL0 + round(self.now * 1e9)


class Harness:
    """An engine on a fake clock that records every event."""

    def __init__(self, config: Config, journal: Journal | None = None, clock: FakeClock | None = None) -> None:
        self.clock = clock or FakeClock()
        self.metrics = Metrics()
        self.engine = AlarmEngine(config, self.metrics, journal, clock=self.clock, wall=self.clock.wall)
        self.events: list[AlarmEvent] = []
        self.engine.subscribe(self.events.append)

    def feed(self, tag: str, value: float | None, quality: str = "good", ts: int | None = None) -> None:
        self.engine.on_readings([Reading(tag, value, self.clock.wall() if ts is None else ts, quality)])

    def at(self, t: float, tag: str, value: float | None, quality: str = "good") -> None:
        """Advance the clock to ``t`` s after the start, then feed one reading."""
        self.clock.now = 1000.0 + t
        self.feed(tag, value, quality)

    def tick(self, dt: float = 0.0) -> None:
        self.clock.advance(dt)
        self.engine.tick()

    def names(self) -> list[tuple[str, str, str]]:
        return [(e.alarm, e.event, e.state) for e in self.events]

    def take(self) -> list[tuple[str, str, str]]:
        out = self.names()
        self.events.clear()
        return out

    def state(self, alarm: str) -> str:
        return self.engine.get(alarm).state

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        v = self.metrics.registry.get_sample_value(name, labels or {})
        return 0.0 if v is None else v


def journal_at(path: Path, **kw: Any) -> Journal:
    return Journal(path, Metrics(), **kw)


# ----------------------------------------------------------------------------- helper self-tests


def test_fake_clock_and_wall_move_together() -> None:
    c = FakeClock(10.0)
    w0 = c.wall()
    c.advance(1.5)
    assert c() == 11.5
    assert c.wall() - w0 == 1_500_000_000


def test_harness_records_events() -> None:
    h = Harness(make_config([{"id": "P1", "kind": "pressure", "unit": "MPa", "alarms": {"h": {"limit": 1.0}}}]))
    h.feed("P1", 2.0)
    assert h.take() == [("P1/h", "raised", "UNACK")]
    assert h.names() == []
