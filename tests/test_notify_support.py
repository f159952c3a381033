"""Shared helpers of the notification tests: a real local webhook receiver, a site config,
a fake clock whose wall time is a chosen local time, and an engine + notifier harness.

(Named test_notify_* so it stays within the notification test files; its own tests check
the helpers.)
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from aiohttp import web
from helpers import async_wait_for

from alerting import AlarmEngine, Journal
from alerting.notify import Notifier, NotifyRecord
from gateway.config import Config
from gateway.core.metrics import Metrics
from gateway.core.models import Reading

TZ = ZoneInfo("Asia/Shanghai")


def local_ns(text: str, tz: dt.tzinfo = TZ) -> int:
    """'2026-03-02 10:00' in ``tz`` -> wall ns."""
    d = dt.datetime.fromisoformat(text).replace(tzinfo=tz)
    return int(d.timestamp()) * 1_000_000_000 + d.microsecond * 1000


class Clock:
    """Monotonic seconds and wall ns that move together; the wall starts at a local time."""

    def __init__(self, local: str = "2026-03-02 10:00") -> None:
        self.now = 1000.0
        self.base = local_ns(local) - int(self.now * 1e9)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def wall(self) -> int:
        return self.base + round(self.now * 1e9)


# ----------------------------------------------------------------------------- receiver


@dataclass
class Hit:
    path: str
    body: str
    json: Any
    headers: dict[str, str]
    at: float  # time.monotonic() at arrival

    @property
    def message(self) -> str:
        return str(self.json.get("message", "")) if isinstance(self.json, dict) else self.body

    @property
    def title(self) -> str:
        return str(self.json.get("title", "")) if isinstance(self.json, dict) else ""


@dataclass
class Receiver:
    """A real aiohttp server on a free loopback port that records every request.

    ``fail[path] = n`` answers 500 to the next n requests on that path (-1: always)."""

    hits: list[Hit] = field(default_factory=list)
    fail: dict[str, int] = field(default_factory=dict)
    port: int = 0
    _runner: web.AppRunner | None = None

    async def start(self) -> Receiver:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        self.port = server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        raw = await request.text()
        try:
            data = json.loads(raw)
        except ValueError:
            data = None
        path = request.path
        n = self.fail.get(path, 0)
        if n:
            if n > 0:
                self.fail[path] = n - 1
            self.hits.append(Hit(path, raw, data, dict(request.headers), time.monotonic()))
            return web.Response(status=500, text="receiver told to fail")
        self.hits.append(Hit(path, raw, data, dict(request.headers), time.monotonic()))
        return web.json_response({"ok": True})

    def json_url(self, path: str) -> str:
        return f"json://127.0.0.1:{self.port}/{path.lstrip('/')}"

    def on(self, path: str) -> list[Hit]:
        """Every request to ``path``, including those answered 500."""
        return [h for h in self.hits if h.path == path]

    async def wait(self, path: str, n: int = 1, within: float = 10.0) -> list[Hit]:
        """Wait until ``path`` received at least ``n`` requests (polling, no fixed sleep)."""
        return await async_wait_for(
            lambda: len(self.on(path)) >= n and self.on(path), within, 0.01, desc=f"{n} request(s) on {path}"
        )


# ----------------------------------------------------------------------------- config


def site_config(
    rx: Receiver | None,
    store: Path,
    *,
    extra_people: Sequence[dict[str, Any]] = (),
    duty: dict[str, Any] | None = None,
    notification: dict[str, Any] | None = None,
    tags: Sequence[dict[str, Any]] | None = None,
    alarming: dict[str, Any] | None = None,
    urls: dict[str, list[str]] | None = None,
    channels: dict[str, dict[str, list[str]]] | None = None,
) -> Config:
    """Demo-like site: chlorine tank farm HS-001 (principal wang, technical li, operational chen),
    day shift zhao 08-20, night shift sun 20-08, each person one json:// URL on ``rx``."""

    def u(pid: str) -> list[str]:
        if urls is not None and pid in urls:
            return urls[pid]
        return [rx.json_url(pid)] if rx is not None else []

    people = [
        {"id": "zhao", "name": "赵磊", "notify": u("zhao")},
        {"id": "sun", "name": "孙丽", "notify": u("sun")},
        {"id": "li", "name": "李娜", "notify": u("li"), "language": "en"},
        {"id": "wang", "name": "王军", "notify": u("wang")},
        {"id": "chen", "name": "陈刚", "notify": u("chen")},
        *extra_people,
    ]
    for p in people:
        if channels and p["id"] in channels:
            p["channels"] = channels[p["id"]]
    data: dict[str, Any] = {
        "site": {"code": "91430900DEMO0001XX", "name": "示范化工有限公司", "timezone": "Asia/Shanghai"},
        "hazard_sources": [
            {
                "code": "HS-001",
                "name": "液氯储罐区",
                "grade": 2,
                "responsible": {"principal": "wang", "technical": "li", "operational": "chen"},
            },
            {"code": "HS-002", "name": "LPG spheres", "grade": 3},
        ],
        "people": people,
        "duty": duty
        if duty is not None
        else {
            "shifts": [
                {"name": "day", "start": "08:00", "end": "20:00", "people": ["zhao"]},
                {"name": "night", "start": "20:00", "end": "08:00", "people": ["sun"]},
            ],
            "escalation": [
                {"after": "0s", "notify": ["on_duty"]},
                {"after": "5m", "notify": ["operational"]},
                {"after": "10m", "notify": ["technical", "principal"]},
            ],
            "escalation_p1": [
                {"after": "0s", "notify": ["on_duty"]},
                {"after": "2m", "notify": ["technical"]},
            ],
        },
        "tags": list(tags)
        if tags is not None
        else [
            {
                "id": "GT-101",
                "name": "T-101 北侧氯气探测器",
                "hazard_source": "HS-001",
                "kind": "toxic_gas",
                "gas": "Cl2",
                "unit": "ppm",
                "range": [0, 10],
                "alarms": {"hh": {"limit": 2.0, "priority": 1}, "h": {"limit": 1.0, "priority": 2}},
            },
            *(
                {
                    "id": f"PT-{i}",
                    "name": f"Pressure {i}",
                    "hazard_source": "HS-002",
                    "kind": "pressure",
                    "unit": "MPa",
                    "alarms": {"h": {"limit": 1.0, "priority": 2, "deadband": 0}},
                }
                for i in range(1, 21)
            ),
        ],
        "api": {"listen": "127.0.0.1:8080", "public_url": "http://127.0.0.1:8080/"},
        "store": {"path": str(store)},
    }
    if notification is not None:
        data["notification"] = notification
    if alarming is not None:
        data["alarming"] = alarming
    return Config.model_validate(data)


# ----------------------------------------------------------------------------- harness


class Harness:
    """An alarm engine (with its journal) and a notifier on one clock, both under ``store``.

    ``clock=None`` runs both on the real clocks with production tick intervals."""

    def __init__(self, config: Config, clock: Clock | None, **notifier_kw: Any) -> None:
        self.config = config
        self.clock = clock
        mono: Callable[[], float] = clock if clock is not None else time.monotonic
        self.wall: Callable[[], int] = clock.wall if clock is not None else time.time_ns
        self.metrics = Metrics()
        self.journal = Journal(Path(config.store.path), self.metrics)
        self.engine = AlarmEngine(config, self.metrics, self.journal, clock=mono, wall=self.wall)
        kw: dict[str, Any] = {"tick_interval": 0.01, "stop_grace": 1.0} if clock is not None else {}
        kw.update(notifier_kw)
        self.notifier = Notifier(config, self.engine, self.metrics, clock=mono, wall=self.wall, **kw)
        self.engine.subscribe(self.notifier.on_alarm_event)  # as gateway/supervisor.py wires it
        self.records: list[NotifyRecord] = []
        self.notifier.subscribe(self.records.append)

    async def start(self) -> Harness:
        await self.engine.start()
        await self.notifier.start()
        return self

    async def stop(self) -> None:
        await self.notifier.stop()
        await self.engine.stop()

    def feed(self, tag: str, value: float) -> None:
        self.engine.on_readings([Reading(tag, value, self.wall(), "good")])

    async def settle(self) -> None:
        """Let the notifier take every queued event and fire what is due now."""
        await self.notifier.tick()

    def notified(self, outcome: str | None = "sent", person: str | None = None) -> list[NotifyRecord]:
        return [
            r
            for r in self.records
            if r.event == "notified"
            and (outcome is None or r.outcome == outcome)
            and (person is None or r.person == person)
        ]

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        v = self.metrics.registry.get_sample_value(name, labels or {})
        return 0.0 if v is None else v

    async def deliveries(self, occurrence: int | None = None) -> list[dict[str, Any]]:
        return await self.notifier.deliveries(occurrence)


# ----------------------------------------------------------------------------- helper self-tests


def test_clock_wall_is_the_chosen_local_time() -> None:
    c = Clock("2026-03-02 23:30")
    assert dt.datetime.fromtimestamp(c.wall() / 1e9, TZ).strftime("%Y-%m-%d %H:%M") == "2026-03-02 23:30"
    c.advance(3600)
    assert dt.datetime.fromtimestamp(c.wall() / 1e9, TZ).strftime("%d %H:%M") == "03 00:30"


async def test_receiver_records_and_fails_on_request() -> None:
    import aiohttp

    rx = await Receiver().start()
    try:
        rx.fail["/bad"] = 1
        async with aiohttp.ClientSession() as s:
            async with s.post(f"http://127.0.0.1:{rx.port}/bad", json={"message": "x"}) as r1:
                assert r1.status == 500
            async with s.post(f"http://127.0.0.1:{rx.port}/bad", json={"message": "y"}) as r2:
                assert r2.status == 200
        assert [h.json["message"] for h in rx.on("/bad")] == ["x", "y"]
    finally:
        await rx.stop()


def test_site_config_is_valid(tmp_path: Path) -> None:
    cfg = site_config(None, tmp_path)
    assert cfg.hazard_source_map()["HS-001"].responsible.operational == "chen"
    assert len(cfg.tags) == 21
