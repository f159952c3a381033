"""Test mode end to end (issue 17): a whole gateway with a real notifier pushing to a local webhook,
a real platform broker (the generic uplink profile), a real influxd and the HTTP API.

A duty officer puts GT-101 in test through the API, gas is applied: its alarms are raised, shown
and journaled marked test, nobody's phone rings and the platform gets no alarm, only the tag
under maintenance; a real alarm on GT-102 meanwhile is pushed and sent as usual. Readings of
GT-101 reach InfluxDB tagged test=true. Ending the test gives the record (levels reached,
time to alarm, who) and, the gas still being there, the alarm is raised as a real one: pushed
and sent to the platform.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import async_wait_for
from test_api_support import H_OPERATOR, H_VIEWER, TOKENS
from test_notify_support import Receiver
from test_uplink_mqtt import Platform, validate

from devkit.services import Influxd, Mosquitto
from gateway.config import Config
from gateway.core.models import Reading, now_ns
from gateway.supervisor import Gateway

SITE = "91430900DEMO0001XX"


@pytest.fixture
def platform_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path_factory.mktemp("platform"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def _gas(tag: str, name: str) -> dict[str, Any]:
    return {"id": tag, "name": name, "hazard_source": "HS-001", "kind": "toxic_gas", "gas": "Cl2", "unit": "ppm",
            "range": [0, 10], "stale_after": "1h",
            "alarms": {"hh": {"limit": 2.0, "priority": 1}, "h": {"limit": 1.0, "priority": 2}}}


def site(store: Path, rx: Receiver, platform: str, influx: Influxd, db: str) -> Config:
    return Config.model_validate({
        "site": {"code": SITE, "name": "示范化工有限公司", "timezone": "Asia/Shanghai"},
        "hazard_sources": [{"code": "HS-001", "name": "液氯储罐区", "grade": 2}],
        "people": [{"id": "zhao", "name": "赵磊", "notify": [rx.json_url("zhao")]}],
        "duty": {
            "shifts": [{"name": "am", "start": "00:00", "end": "12:00", "people": ["zhao"]},
                       {"name": "pm", "start": "12:00", "end": "00:00", "people": ["zhao"]}],
            "escalation": [{"after": "0s", "notify": ["on_duty"]}],
        },
        "tags": [_gas("GT-101", "T-101 北侧氯气"), _gas("GT-102", "T-101 南侧氯气")],
        "influx": {"url": influx.url, "api": "v1", "bucket": db, "flush_interval": "100ms"},
        "uplink": {"url": platform, "period": "1s", "heartbeat": "1s"},
        "api": {"listen": "127.0.0.1:0", "tokens": TOKENS},
        "store": {"path": str(store)},
    })


async def emit(gw: Gateway, tag: str, value: float) -> None:
    await gw.pipeline.emit([Reading(tag, value, now_ns(), "good")])


def mentions(hits: list[Any], tag: str) -> list[Any]:
    return [h for h in hits if tag in h.body]


async def test_test_mode_end_to_end(tmp_path: Path, platform_broker: Mosquitto, influxd: Influxd,
                                    influx_db: str) -> None:
    rx = await Receiver().start()
    plat = Platform(platform_broker)
    gw = Gateway(site(tmp_path / "store", rx, platform_broker.url, influxd, influx_db))
    await gw.start()
    try:
        assert gw.api is not None and gw.api.url is not None
        api = httpx.AsyncClient(base_url=gw.api.url, timeout=10)
        await emit(gw, "GT-101", 0.1)
        await emit(gw, "GT-102", 0.1)

        # --- the duty officer puts GT-101 in test (operator token "ops-zhao")
        r = await api.post("/api/tags/GT-101/test", json={"duration": "1h", "comment": "bump test 5 ppm"},
                           headers=H_VIEWER)
        assert r.status_code == 403  # a viewer may not
        r = await api.post("/api/tags/GT-101/test", json={"duration": "9h"}, headers=H_OPERATOR)
        assert r.status_code == 400 and r.json()["error"] == "bad_request"  # at most 8 h
        r = await api.post("/api/tags/GT-101/test", json={"duration": "1h", "comment": "bump test 5 ppm"},
                           headers=H_OPERATOR)
        assert r.status_code == 200, r.text
        (started,) = r.json()["started"]
        assert (started["tag"], started["by"], started["levels"], started["result"]) == (
            "GT-101", "ops-zhao", ["h", "hh"], "running")
        r = await api.post("/api/tags/GT-101/test", json={"duration": "1h"}, headers=H_OPERATOR)
        assert r.status_code == 409
        # the platform learns at once that GT-101 is under maintenance (meta sent again)
        await async_wait_for(lambda: any(next(t for t in m["tags"] if t["tagCode"] == "GT-101")["maintenance"]
                                         for m in plat.of("meta")), timeout=15)

        # --- gas at GT-101's head: test alarms, shown and journaled, not pushed, not sent
        await emit(gw, "GT-101", 2.5)
        await async_wait_for(lambda: gw.alarms.get("GT-101/hh").state == "UNACK", timeout=10)
        r = await api.get("/api/alarms", headers=H_VIEWER)
        shown = {a["id"]: a for a in r.json()}
        assert shown["GT-101/hh"]["test"] is True and shown["GT-101/h"]["test"] is True
        # a REAL alarm meanwhile, on GT-102: pushed and sent as usual
        await emit(gw, "GT-102", 2.5)
        await async_wait_for(lambda: len(mentions(rx.on("/zhao"), "GT-102")) >= 2, timeout=15)
        await async_wait_for(lambda: {a["alarmId"] for a in plat.of("alarm") if a["event"] == "raised"} >= {
            "GT-102/h", "GT-102/hh"}, timeout=15)
        assert mentions(rx.on("/zhao"), "GT-101") == []  # nobody's phone rang for the test
        assert [a for a in plat.of("alarm") if a["tagCode"] == "GT-101"] == []  # nor was the platform told
        assert gw.alarms.status("HS-001").counts == (1, 1, 0)  # GT-102's alarms only
        # realtime: GT-101 under maintenance, its value still there; alarmStatus from real alarms only
        await emit(gw, "GT-101", 2.6)

        def maintained() -> dict[str, Any] | None:
            for doc in reversed(plat.of("realtime")):
                items = {i["tagCode"]: i for i in doc["data"]}
                if items.get("GT-101", {}).get("value") == 2.6:
                    return items
            return None

        items = await async_wait_for(maintained, timeout=15)
        assert items["GT-101"]["maintenance"] is True and items["GT-101"]["alarmStatus"] == "normal"
        assert items["GT-102"]["maintenance"] is False and items["GT-102"]["alarmStatus"] == "HH"
        # the heartbeat carries the in-use rate (投用率): GT-101 in test is not in use
        gw.inuse.sample()  # (it samples every 10 s by itself; two samples 1 s apart make a rate now)
        gw.inuse.sample(time.time() + 1.0)
        hb = await async_wait_for(lambda: next((h for h in reversed(plat.of("heartbeat"))
                                                if h.get("gasDetectorsInService") == 1), None), timeout=15)
        assert hb["gasDetectors"] == 2 and hb["hazardSources"][0]["inUseRateHour"] is not None
        r = await api.get("/api/online", headers=H_VIEWER)
        assert r.json()["in_use"]["not_in_service"] == {"GT-101": ["test"]}

        # --- InfluxDB: GT-101's readings and alarm events carry test=true, GT-102's do not
        def influx_rows() -> list[dict[str, Any]] | None:
            rows = influxd.select(influx_db, 'SELECT "value", "tag" FROM "reading" WHERE "test" = \'true\'')
            return rows if any(x["value"] == 2.6 for x in rows) else None

        rows = await async_wait_for(influx_rows, timeout=15)
        assert {x["tag"] for x in rows} == {"GT-101"}
        test_alarms = influxd.select(influx_db, 'SELECT "event", "tag" FROM "alarm" WHERE "test" = \'true\'')
        assert {(x["tag"], x["event"]) for x in test_alarms} == {("GT-101", "raised")}
        real = influxd.select(influx_db, 'SELECT "event" FROM "alarm" WHERE "tag" = \'GT-102\' AND "test" != \'true\'')
        assert len(real) >= 2

        # --- the test ends: its record, and the alarm still present is raised as a real one
        n_pushes = len(rx.on("/zhao"))
        r = await api.delete("/api/tags/GT-101/test", headers=H_OPERATOR)
        assert r.status_code == 200, r.text
        (rec,) = r.json()["ended"]
        assert (rec["result"], rec["ended_by"], rec["end_reason"], rec["peak"]) == ("pass", "ops-zhao", "ended", 2.6)
        assert set(rec["reached"]) == {"h", "hh"} and rec["first_alarm_s"] is not None
        await async_wait_for(lambda: len(mentions(rx.on("/zhao")[n_pushes:], "GT-101")) >= 1, timeout=15)
        await async_wait_for(lambda: any(a["tagCode"] == "GT-101" and a["event"] == "raised" for a in plat.of("alarm")),
                             timeout=15)
        assert gw.alarms.get("GT-101/hh").test is False and gw.alarms.status("HS-001").counts == (2, 2, 0)
        await async_wait_for(lambda: not next(t for t in plat.of("meta")[-1]["tags"]
                                              if t["tagCode"] == "GT-101")["maintenance"], timeout=15)
        r = await api.delete("/api/tags/GT-101/test", headers=H_OPERATOR)
        assert r.status_code == 409  # not in test any more

        # the record through GET /api/tests, and the journal: test events flagged
        r = await api.get("/api/tests", headers=H_VIEWER)
        body = r.json()
        assert body["running"] == [] and [t["tag"] for t in body["tests"]] == ["GT-101"]
        assert body["tests"][0]["result"] == "pass" and body["tests"][0]["comment"] == "bump test 5 ppm"
        journal = gw.alarms.journal
        assert journal is not None

        async def journaled() -> list[dict[str, Any]] | None:
            e = await asyncio.to_thread(journal.events, alarm="GT-101/hh", newest_first=False)
            return e if len(e) >= 3 else None

        evs = await async_wait_for(journaled, timeout=10)
        assert [(e["event"], e["test"]) for e in evs][:3] == [("raised", True), ("test_ended", True),
                                                              ("raised", False)]
        r = await api.get("/api/alarms/history", params={"alarm": "GT-101/hh"}, headers=H_VIEWER)
        assert [e["test"] for e in r.json()["events"]][-1] is True
        await api.aclose()
    finally:
        await gw.stop()
        await rx.stop()
        plat.close()
    for channel in ("meta", "realtime", "alarm", "heartbeat"):
        for d in plat.of(channel):
            validate(channel, d)
