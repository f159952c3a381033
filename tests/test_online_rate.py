"""Data online rate (gateway/online.py): definition, capping, aggregation, persistence,
hot reload, Prometheus and ``GET /api/online``. Time is an explicit fake clock throughout."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import generate_latest
from test_api_support import H_VIEWER, TOKENS

from devkit.services import free_port
from gateway.api import build_app
from gateway.api.schemas import OnlineOut
from gateway.config import Config
from gateway.core.metrics import Metrics
from gateway.core.models import Reading
from gateway.online import OnlineRate
from gateway.supervisor import Gateway

T0 = 28_333_334 * 60.0  # a minute boundary (2023-11-14)


class Clock:
    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def modbus(sid: str, poll: str, tags: Iterable[str]) -> dict[str, Any]:
    """Nothing listens on the port: a started gateway only gets comm readings from it."""
    return {"id": sid, "type": "modbus_tcp", "host": "127.0.0.1", "port": free_port(), "poll_interval": poll,
            "points": [{"tag": t, "table": "holding", "address": i, "type": "int16"} for i, t in enumerate(tags)]}


def config(tmp: Path, *, with_b: bool = True, with_mqtt: bool = True, store: Path | None = None,
           uplink_period: str | None = None, api: dict[str, Any] | None = None) -> Config:
    """src-a (Modbus, 1 s): A1, A2 in HS-1; src-b (Modbus, 2 s): B1 in HS-1;
    mq (MQTT): M1 stale_after 30 s (e = 10 s), M2 no stale_after, M3 stale_after 0, all HS-2."""
    sources: list[dict[str, Any]] = [modbus("src-a", "1s", ["A1", "A2"])]
    tags: list[dict[str, Any]] = [{"id": "A1", "hazard_source": "HS-1"}, {"id": "A2", "hazard_source": "HS-1"}]
    if with_b:
        sources.append(modbus("src-b", "2s", ["B1"]))
        tags.append({"id": "B1", "hazard_source": "HS-1"})
    if with_mqtt:
        sources.append({"id": "mq", "type": "mqtt", "url": "mqtt://127.0.0.1:1883", "subscriptions": [
            {"topic": "plant/m", "points": [{"tag": "M1", "path": "$.m1"}, {"tag": "M2", "path": "$.m2"},
                                            {"tag": "M3", "path": "$.m3"}]}]})
        tags += [{"id": "M1", "hazard_source": "HS-2", "stale_after": "30s"},
                 {"id": "M2", "hazard_source": "HS-2"},
                 {"id": "M3", "hazard_source": "HS-2", "stale_after": 0}]
    doc: dict[str, Any] = {
        "site": {"code": "S1", "name": "site"},
        "hazard_sources": [{"code": "HS-1", "name": "tanks", "grade": 2}, {"code": "HS-2", "name": "spheres",
                                                                          "grade": 3}],
        "sources": sources,
        "tags": tags,
        "store": {"path": str(store or tmp / "store")},
        "api": api or {"enabled": False},
    }
    if uplink_period:
        doc["uplink"] = {"url": "mqtt://127.0.0.1:1883", "period": uplink_period}
    return Config.model_validate(doc)


def run(o: OnlineRate, clk: Clock, seconds: float, tags: dict[str, float], quality: str = "good",
        step: float = 1.0) -> None:
    """Advance the clock by ``seconds`` in ``step``s; a tag with interval e reports at every
    multiple of e (relative to T0)."""
    end = clk.t + seconds
    while clk.t < end - 1e-9:
        k = round((clk.t - T0) / step)
        batch = [Reading(t, 1.0, 0, quality) for t, e in tags.items() if k % round(e / step) == 0]
        if batch:
            o.on_readings(batch)
        clk.t = T0 + (k + 1) * step


def approx(x: float | None, want: float, tol: float = 0.01) -> bool:
    return x is not None and abs(x - want) <= tol


ALL_A = {"A1": 1.0, "A2": 1.0}


# ---------------------------------------------------------------------------- definition


def test_full_rate_when_every_poll_arrives(tmp_path: Path) -> None:
    clk = Clock()
    o = OnlineRate(config(tmp_path), clock=clk)
    assert o.rates()["sources"]["src-a"]["hour"] is None  # nothing expected yet
    run(o, clk, 3600, {**ALL_A, "B1": 2.0})
    r = o.rates()
    assert r["window"] == {"hour": 3600, "day": 86400}
    assert r["sources"]["src-a"] == {"hour": 1.0, "day": 1.0, "tags": 2, "interval_s": 1.0}
    assert r["sources"]["src-b"] == {"hour": 1.0, "day": 1.0, "tags": 1, "interval_s": 2.0}
    assert r["hazard_sources"]["HS-1"] == {"hour": 1.0, "day": 1.0, "tags": 3}
    assert r["sources"]["mq"]["hour"] == 0.0  # expected (default interval) but silent


def test_a_source_silent_for_15_of_60_minutes_is_75_percent(tmp_path: Path) -> None:
    clk = Clock()
    o = OnlineRate(config(tmp_path), clock=clk)
    run(o, clk, 20 * 60, {**ALL_A, "B1": 2.0})
    run(o, clk, 15 * 60, {"B1": 2.0})  # src-a silent
    run(o, clk, 25 * 60, {**ALL_A, "B1": 2.0})
    r = o.rates()
    assert approx(r["sources"]["src-a"]["hour"], 0.75)
    assert r["sources"]["src-b"]["hour"] == 1.0
    # HS-1 expects 150 readings a minute (A1 60, A2 60, B1 30); src-a's 120 missing for 15 min
    assert approx(r["hazard_sources"]["HS-1"]["hour"], 1 - 15 * 120 / (60 * 150))


def test_comm_and_stale_do_not_count_bad_and_uncertain_do(tmp_path: Path) -> None:
    clk = Clock()
    o = OnlineRate(config(tmp_path, with_b=False, with_mqtt=False), clock=clk)
    run(o, clk, 600, ALL_A)
    run(o, clk, 600, {"A1": 1.0}, quality="comm")
    run(o, clk, 600, {"A2": 1.0}, quality="stale")
    assert approx(o.rates()["sources"]["src-a"]["hour"], 1 / 3, 0.001)
    run(o, clk, 300, ALL_A, quality="bad")
    run(o, clk, 300, ALL_A, quality="uncertain")
    assert approx(o.rates()["sources"]["src-a"]["hour"], 0.5, 0.001)  # 20 of 40 minutes


def test_stale_after_and_default_intervals(tmp_path: Path) -> None:
    o = OnlineRate(config(tmp_path), clock=Clock(), default_interval=5.0)
    # M1: 30 s / 3 = 10 s; M2 (none) and M3 (0): default 5 s; median 5
    assert o.rates()["sources"]["mq"]["interval_s"] == 5.0
    assert o.rates()["sources"]["mq"]["tags"] == 3
    assert o.rates()["hazard_sources"]["HS-2"]["tags"] == 3


def test_a_fast_publisher_is_capped_and_cannot_hide_a_silent_tag(tmp_path: Path) -> None:
    clk = Clock()
    o = OnlineRate(config(tmp_path, with_b=False), clock=clk, default_interval=5.0)
    # M1 (e = 10 s) publishes every 0.1 s: 600 a minute, capped at 6; M2 and M3 (e = 5 s) silent
    run(o, clk, 600, {"M1": 0.1}, step=0.1)
    r = o.rates()
    # expected a minute: M1 6 + M2 12 + M3 12 = 30; received 6
    assert approx(r["sources"]["mq"]["hour"], 6 / 30, 0.001)
    assert approx(r["hazard_sources"]["HS-2"]["hour"], 6 / 30, 0.001)


def test_hazard_source_aggregates_tags_of_two_sources(tmp_path: Path) -> None:
    clk = Clock()
    o = OnlineRate(config(tmp_path, with_mqtt=False), clock=clk)
    run(o, clk, 3600, ALL_A)  # src-b (B1, 2 s) silent
    r = o.rates()
    assert r["sources"]["src-a"]["hour"] == 1.0 and r["sources"]["src-b"]["hour"] == 0.0
    assert r["hazard_sources"]["HS-1"]["tags"] == 3
    assert approx(r["hazard_sources"]["HS-1"]["hour"], 120 / 150, 0.001)
    assert r["hazard_sources"]["HS-2"] == {"hour": None, "day": None, "tags": 0}


def test_the_day_window_and_the_hour_window_differ(tmp_path: Path) -> None:
    clk = Clock()
    o = OnlineRate(config(tmp_path, with_b=False, with_mqtt=False), clock=clk)
    run(o, clk, 3600, {}, step=60.0)  # an hour of silence (no batches at all)
    run(o, clk, 3600, ALL_A)
    r = o.rates()["sources"]["src-a"]
    assert r["hour"] == 1.0 and approx(r["day"], 0.5, 0.001)
    clk.t += 1440 * 60  # a day without a single batch
    r = o.rates()["sources"]["src-a"]
    assert r["hour"] == 0.0 and r["day"] == 0.0


# ---------------------------------------------------------------------------- persistence


async def test_downtime_counts_as_offline_across_a_restart(tmp_path: Path) -> None:
    clk = Clock()
    cfg = config(tmp_path, with_b=False, with_mqtt=False)
    path = tmp_path / "store" / "online.json"
    o1 = OnlineRate(cfg, path=path, clock=clk)
    await o1.start()
    run(o1, clk, 30 * 60, ALL_A)
    assert o1.rates()["sources"]["src-a"]["hour"] == 1.0
    await o1.stop()
    saved = json.loads(path.read_text())
    assert saved["version"] == 1 and saved["covered_until"] == T0 + 1800

    clk.t += 30 * 60  # the gateway is down for 30 minutes
    o2 = OnlineRate(cfg, path=path, clock=clk)
    await o2.start()
    try:
        assert o2.health()["ok"] is True
        # windows are the last 60 / 1440 minute buckets, the current one included (here 0 s old)
        r = o2.rates()["sources"]["src-a"]
        assert approx(r["hour"], 29 / 59, 0.001) and approx(r["day"], 0.5, 0.001)
        run(o2, clk, 30 * 60, ALL_A)
        r = o2.rates()["sources"]["src-a"]
        assert approx(r["hour"], 30 / 59, 0.001)  # 29 minutes down + 30 up
        assert approx(r["day"], 60 / 90, 0.001)
        assert approx(o2.rates()["hazard_sources"]["HS-1"]["day"], 60 / 90, 0.001)
    finally:
        await o2.stop()


async def test_restart_within_the_same_minute_counts_the_gap(tmp_path: Path) -> None:
    clk = Clock()
    cfg = config(tmp_path, with_b=False, with_mqtt=False)
    path = tmp_path / "online.json"
    o1 = OnlineRate(cfg, path=path, clock=clk)
    await o1.start()
    run(o1, clk, 20, ALL_A)
    await o1.stop()
    clk.t += 20  # down 20 s of the same minute
    o2 = OnlineRate(cfg, path=path, clock=clk)
    await o2.start()
    run(o2, clk, 20, ALL_A)
    await o2.stop()
    clk.t = T0 + 120
    assert approx(o2.rates()["sources"]["src-a"]["hour"], 40 / 120, 0.001)  # minute 0: 40 of 60, minute 1 down


@pytest.mark.parametrize("content", [b"{not json", b'{"version": 1, "covered_until": 1, "buckets": "x"}',
                                     b'{"version": 1, "covered_until": -5, "buckets": []}', b"\xff\xfe"],
                         ids=["json", "buckets", "negative", "bytes"])
async def test_a_corrupt_file_starts_empty(tmp_path: Path, caplog: pytest.LogCaptureFixture, content: bytes) -> None:
    path = tmp_path / "online.json"
    path.write_bytes(content)
    clk = Clock()
    o = OnlineRate(config(tmp_path, with_b=False, with_mqtt=False), path=path, clock=clk)
    with caplog.at_level(logging.WARNING, logger="gateway.online"):
        await o.start()
    try:
        warnings = [r for r in caplog.records if r.name == "gateway.online"]
        assert len(warnings) == 1 and "unreadable" in warnings[0].getMessage()
        assert o.load_error is not None and o.health()["ok"] is True
        assert o.rates()["sources"]["src-a"]["hour"] is None  # no history, no downtime
        run(o, clk, 120, ALL_A)
        assert o.rates()["sources"]["src-a"]["hour"] == 1.0
    finally:
        await o.stop()
    assert json.loads(path.read_text())["version"] == 1  # replaced by a valid file


def test_removed_sources_are_dropped_on_load(tmp_path: Path) -> None:
    clk = Clock()
    path = tmp_path / "online.json"
    o1 = OnlineRate(config(tmp_path, with_mqtt=False), path=path, clock=clk)
    run(o1, clk, 600, {**ALL_A, "B1": 2.0})
    o1.save()
    assert '"src-b"' in path.read_text()
    o2 = OnlineRate(config(tmp_path, with_b=False, with_mqtt=False), path=path, clock=clk)
    o2.load()
    r = o2.rates()
    assert set(r["sources"]) == {"src-a"} and r["sources"]["src-a"]["hour"] == 1.0
    o2.save()
    assert '"src-b"' not in path.read_text()


def test_a_save_failure_is_reported_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    o = OnlineRate(config(tmp_path), path=blocker / "online.json", clock=Clock())
    o.save()
    assert o.save_error is not None and o.health()["ok"] is False and "error" in o.health()


# ---------------------------------------------------------------------------- hot reload


def test_configure_keeps_history_of_surviving_sources(tmp_path: Path) -> None:
    clk = Clock()
    o = OnlineRate(config(tmp_path, with_mqtt=False), clock=clk)
    run(o, clk, 30 * 60 + 30, ALL_A)  # src-b silent; reload in the middle of a minute
    o.configure(config(tmp_path, with_b=False, with_mqtt=True), default_interval=5.0)
    run(o, clk, 30 * 60 - 30, {**ALL_A, "M1": 10.0, "M2": 5.0, "M3": 5.0})
    r = o.rates()
    assert set(r["sources"]) == {"src-a", "mq"}
    assert r["sources"]["src-a"] == {"hour": 1.0, "day": 1.0, "tags": 2, "interval_s": 1.0}
    # HS-1 expected 150 a minute (120 received) before, 120 of 120 after: history kept. The
    # hour window (minute buckets 1..60, the current one 0 s old) holds 29.5 minutes of each.
    assert approx(r["hazard_sources"]["HS-1"]["hour"], (29.5 * 120 + 29.5 * 120) / (29.5 * 150 + 29.5 * 120), 0.001)
    assert approx(r["hazard_sources"]["HS-1"]["day"], (30.5 * 120 + 29.5 * 120) / (30.5 * 150 + 29.5 * 120), 0.001)
    assert r["hazard_sources"]["HS-1"]["tags"] == 2
    assert approx(r["sources"]["mq"]["hour"], 1.0, 0.001)  # new source: only since the reload


# ---------------------------------------------------------------------------- Prometheus


def series(metrics: Metrics) -> str:
    return generate_latest(metrics.registry).decode()


def test_prometheus_gauge_is_computed_at_scrape_time(tmp_path: Path) -> None:
    clk = Clock()
    metrics = Metrics()
    o = OnlineRate(config(tmp_path, with_mqtt=False), metrics, clock=clk)
    assert "hazardgw_online_rate{" not in series(metrics)  # nothing expected yet: no samples
    run(o, clk, 3600, ALL_A)
    text = series(metrics)
    assert 'hazardgw_online_rate{id="src-a",scope="source",window="1h"} 1.0' in text
    assert 'hazardgw_online_rate{id="src-b",scope="source",window="1d"} 0.0' in text
    assert 'hazardgw_online_rate{id="HS-1",scope="hazard_source",window="1h"} 0.8' in text
    # a reload builds a new OnlineRate on the same registry: no duplicate, it reads the new one
    o2 = OnlineRate(config(tmp_path, with_b=False, with_mqtt=False), metrics, clock=clk)
    run(o2, clk, 60, {})
    text = series(metrics)
    assert 'hazardgw_online_rate{id="src-a",scope="source",window="1h"} 0.0' in text
    assert 'id="src-b"' not in text


def test_two_gateways_metrics_in_one_process_do_not_collide(tmp_path: Path) -> None:
    clk = Clock()
    m1, m2 = Metrics(), Metrics()
    o1 = OnlineRate(config(tmp_path, with_b=False, with_mqtt=False), m1, clock=clk)
    o2 = OnlineRate(config(tmp_path, with_b=False, with_mqtt=False), m2, clock=clk)
    run(o1, clk, 600, ALL_A)
    o2.on_readings([])
    assert 'hazardgw_online_rate{id="src-a",scope="source",window="1h"} 1.0' in series(m1)
    assert 'hazardgw_online_rate{id="src-a",scope="source",window="1h"} 0.0' in series(m2)


# ---------------------------------------------------------------------------- gateway and API


async def test_gateway_wiring_survives_a_reload(tmp_path: Path) -> None:
    cfg = config(tmp_path, with_mqtt=False, uplink_period="15s")
    gw = Gateway(cfg)
    assert gw.online.default_interval == 15.0
    online = gw.online
    await gw.start()
    try:
        assert gw.health()["components"]["online"]["ok"] is True
        await gw.reload(config(tmp_path, with_b=False, with_mqtt=True))
        assert gw.online is online and set(online.rates()["sources"]) == {"src-a", "mq"}
        assert online.default_interval == 10.0  # no uplink any more
    finally:
        await gw.stop()
    assert json.loads((tmp_path / "store" / "online.json").read_text())["version"] == 1
    assert online.health()["ok"] is False  # stopped


async def test_api_online_route(tmp_path: Path) -> None:
    cfg = config(tmp_path, with_mqtt=False, api={"listen": "127.0.0.1:0", "tokens": TOKENS})
    gw = Gateway(cfg)  # not started: the route only reads the online rate
    clk = Clock()
    gw.online = OnlineRate(cfg, gw.metrics, clock=clk)
    run(gw.online, clk, 600, ALL_A)
    app = build_app(gw.api_facade())
    async with app.router.lifespan_context(app):
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as c:
            r = await c.get("/api/online")
            assert r.status_code == 401 and r.json()["error"] == "unauthorized"
            assert (await c.get("/api/online", headers={"Authorization": "Bearer wrong"})).status_code == 401
            r = await c.get("/api/online", headers=H_VIEWER)
            assert r.status_code == 200
            body = r.json()
            OnlineOut.model_validate(body)  # the documented schema (extra keys forbidden)
            assert body["window"] == {"hour": 3600, "day": 86400}
            assert body["sources"]["src-a"] == {"hour": 1.0, "day": 1.0, "tags": 2, "interval_s": 1.0}
            assert body["sources"]["src-b"]["hour"] == 0.0
            assert body["hazard_sources"]["HS-1"]["hour"] == 0.8
            assert body["hazard_sources"]["HS-2"] == {"hour": None, "day": None, "tags": 0}
            spec = (await c.get("/openapi.json")).json()
            op = spec["paths"]["/api/online"]["get"]
            assert op["security"] == [{"token": []}] and "数据在线率" in op["summary"]
            assert "OnlineOut" in spec["components"]["schemas"]
            metrics = (await c.get("/metrics")).text
            assert 'hazardgw_online_rate{id="HS-1",scope="hazard_source",window="1h"} 0.8' in metrics
