"""The upkeep routes over real HTTP (a started gateway): a whole source into test mode and out,
refusals, calibrations, the point-table fields of /api/tags, the in-use rate of /api/online
and /metrics, and a store that cannot be written (503, nothing started)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from helpers import async_wait_for
from test_api_support import H_OPERATOR, H_VIEWER, TOKENS
from test_upkeep import _block_store

from devkit.services import free_port
from gateway.config import Config
from gateway.core.models import Reading, now_ns
from gateway.supervisor import Gateway


def site(store: Path) -> Config:
    gas = {"kind": "toxic_gas", "gas": "Cl2", "unit": "ppm", "hazard_source": "HS-001", "range": [0, 10],
           "alarms": {"h": {"limit": 1.0}, "hh": {"limit": 2.0, "priority": 1}}}
    return Config.model_validate({
        "site": {"code": "91430900TEST0001XX", "name": "upkeep API", "timezone": "Asia/Shanghai"},
        "hazard_sources": [{"code": "HS-001", "name": "tank farm", "grade": 2}],
        "sources": [{"id": "gds", "type": "modbus_tcp", "host": "127.0.0.1", "port": free_port(),
                     "poll_interval": "1s", "timeout": "200ms", "points": [
                         {"tag": "GT-1", "address": 0, "type": "float32"},
                         {"tag": "GT-2", "address": 2, "type": "float32"}]}],
        "tags": [{"id": "GT-1", **gas, "calibration": {"last": "2026-01-05", "interval": "365d"}},
                 {"id": "GT-2", **gas}, {"id": "TT-1", "kind": "temperature", "unit": "°C"}],
        "api": {"listen": "127.0.0.1:0", "tokens": TOKENS},
        "store": {"path": str(store)},
    })


async def test_upkeep_routes(tmp_path: Path) -> None:
    gw = Gateway(site(tmp_path / "store"))
    await gw.start()
    try:
        assert gw.api is not None and gw.api.url is not None
        async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as c:
            # the point-table fields
            r = await c.get("/api/tags", headers=H_VIEWER)
            tags: dict[str, Any] = {t["id"]: t for t in r.json()}
            assert tags["GT-1"]["source"] == "gds" and tags["GT-1"]["source_type"] == "modbus_tcp"
            assert tags["GT-1"]["where"] == "holding:0 (40001) float32 ABCD, unit 1"
            cal = tags["GT-1"]["calibration"]
            assert (cal["due"], cal["source"]) == ("2027-01-05", "config")
            assert tags["GT-2"]["calibration"]["status"] == "none" and tags["TT-1"]["source"] is None
            assert tags["TT-1"]["in_service"] is None and tags["GT-1"]["raw"] is None
            assert tags["GT-1"]["test"] is None

            # a whole source into test and out
            r = await c.post("/api/sources/gds/test", json={"duration": 600}, headers=H_OPERATOR)
            assert r.status_code == 200, r.text
            assert [t["tag"] for t in r.json()["started"]] == ["GT-1", "GT-2"]
            assert {t["source"] for t in r.json()["started"]} == {"gds"}
            assert gw.testmode.testing == {"GT-1", "GT-2"}
            r = await c.post("/api/tags/GT-1/test", json={"duration": "10m"}, headers=H_OPERATOR)
            assert r.status_code == 409 and r.json()["error"] == "conflict"
            r = await c.post("/api/sources/gds/test", json={"duration": 600}, headers=H_OPERATOR)
            assert r.json()["started"] == [] and len(r.json()["skipped"]) == 2
            gw.inuse.sample()
            r = await c.get("/api/tags/GT-2", headers=H_VIEWER)
            assert r.json()["test"]["by"] == "ops-zhao" and r.json()["in_service"] is False
            assert r.json()["not_in_service"] == ["quality", "test"]  # nothing answers on the Modbus port either
            text = (await c.get("/metrics")).text
            assert "hazardgw_tags_in_test 2.0" in text
            r = await c.delete("/api/sources/gds/test", headers=H_OPERATOR)
            assert sorted(t["tag"] for t in r.json()["ended"]) == ["GT-1", "GT-2"]
            assert {t["end_reason"] for t in r.json()["ended"]} == {"ended"}
            r = await c.get("/api/tests", params={"tag": "GT-2"}, headers=H_VIEWER)
            assert [t["tag"] for t in r.json()["tests"]] == ["GT-2"] and r.json()["running"] == []

            # refusals
            for path, body, status in (("/api/sources/nope/test", {"duration": 60}, 404),
                                       ("/api/tags/NOPE/test", {"duration": 60}, 404),
                                       ("/api/tags/GT-1/test", {"duration": "soon"}, 400),
                                       ("/api/tags/GT-1/test", {"duration": 60, "levels": ["hhh"]}, 422),
                                       ("/api/tags/GT-1/test", {}, 422)):
                r = await c.post(path, json=body, headers=H_OPERATOR)
                assert r.status_code == status, (path, body, r.text)
            assert (await c.delete("/api/tags/GT-1/test", headers=H_VIEWER)).status_code == 403

            # calibrations
            r = await c.post("/api/tags/GT-2/calibration", json={"date": "2026-11-20", "interval": "180d",
                                                                  "comment": "cert 9"}, headers=H_OPERATOR)
            assert r.status_code == 200, r.text
            assert r.json() == {"status": "ok", "last": "2026-11-20", "interval_s": 180 * 86400.0, "due": "2027-05-19",
                                "days_left": r.json()["days_left"], "source": "record", "by": "ops-zhao"}
            r = await c.post("/api/tags/GT-2/calibration", json={"date": "2099-01-01"}, headers=H_OPERATOR)
            assert r.status_code == 400 and "future" in r.json()["detail"]
            r = await c.post("/api/tags/GT-2/calibration", json={"date": "20.11.2026"}, headers=H_OPERATOR)
            assert r.status_code == 422
            r = await c.post("/api/tags/NOPE/calibration", headers=H_OPERATOR)
            assert r.status_code == 404
            r = await c.get("/api/tags", headers=H_VIEWER)
            assert {t["id"]: t for t in r.json()}["GT-2"]["calibration"]["source"] == "record"

            # the in-use rate: two gas detectors, none good (nothing answers on the Modbus port)
            gw.inuse.sample()
            r = await c.get("/api/online", headers=H_VIEWER)
            in_use = r.json()["in_use"]
            assert in_use["site"]["tags"] == 2 and in_use["hazard_sources"]["HS-001"]["in_service"] == 0
            assert in_use["not_in_service"] == {"GT-1": ["quality"], "GT-2": ["quality"]}

            # the routes in the OpenAPI schema, with clear path parameters (the audit log names them)
            paths = (await c.get("/openapi.json")).json()["paths"]
            assert {"/api/tags/{tag}/test", "/api/sources/{source}/test", "/api/tests",
                    "/api/tags/{tag}/calibration"} <= set(paths)
            assert set(paths["/api/tags/{tag}/test"]) == {"post", "delete"}

            # a store that cannot be written: 503, nothing started
            await gw.testmode.stop()  # (closes the store; its task is restarted below)
            _block_store(gw.upkeep_store.file)
            r = await c.post("/api/tags/GT-1/test", json={"duration": 60}, headers=H_OPERATOR)
            assert r.status_code == 503 and r.json()["error"] == "store_unavailable"
            assert gw.testmode.testing == frozenset()
            gw.upkeep_store.file.rmdir()
    finally:
        await gw.stop()


async def test_a_test_goes_on_across_a_reload_and_ends_when_its_tag_is_removed(tmp_path: Path) -> None:
    cfg = site(tmp_path / "store")
    gw = Gateway(cfg)
    await gw.start()
    try:
        await gw.testmode.begin(["GT-1", "GT-2"], 600, "zhao")
        await gw.pipeline.emit([Reading("GT-1", 2.5, now_ns(), "good")])
        await async_wait_for(lambda: gw.alarms.get("GT-1/hh").state == "UNACK", timeout=10)
        assert gw.alarms.get("GT-1/hh").test is True
        # a limit change rebuilds the alarm engine: the new one knows GT-1 is in test, and the
        # test occurrence carried over through the journal is still a test occurrence
        data = cfg.model_dump(mode="json", exclude_none=True)
        data["tags"][0]["alarms"]["h"]["limit"] = 1.5
        data["tags"] = [t for t in data["tags"] if t["id"] != "GT-2"]
        data["sources"][0]["points"] = data["sources"][0]["points"][:1]
        summary = await gw.reload(Config.model_validate(data))
        assert "rebuilt" in summary
        assert gw.alarms.testing == {"GT-1"} and gw.alarms.get("GT-1/hh").test is True
        assert gw.wiring.names()["test_changes"] == ["alarms"]
        recs = await gw.testmode.records(None, None, "GT-2")
        assert [(r.end_reason, r.ended_by) for r in recs] == [("removed", "system")]
        # the end, with the gas still there: raised as a real alarm by the new engine
        await gw.testmode.end(["GT-1"], "zhao")
        assert gw.alarms.get("GT-1/hh").test is False and gw.alarms.get("GT-1/hh").state == "UNACK"
        assert [e.event for e in gw.alarms.history(alarm="GT-1/hh")][:2] == ["raised", "test_ended"]
    finally:
        await gw.stop()
