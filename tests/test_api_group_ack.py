"""``POST /api/alarms/ack`` (a group), the alarm list's filters and the COMM fields of the views,
against a whole gateway with its API on a real uvicorn."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import async_wait_for
from test_api_support import H_OPERATOR, H_VIEWER, reading, site

from alerting import states as S
from devkit.services import free_port
from gateway.supervisor import Gateway

DEVICE = {"id": "gds-9", "name": "GDS-9", "type": "modbus_tcp", "host": "127.0.0.1", "poll_interval": "500ms",
          "timeout": "200ms", "backoff_max": "1s", "points": [{"tag": "GT-101", "address": 0, "type": "float32"}]}


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    cfg = site(tmp_path / "store")
    cfg = cfg.model_validate(cfg.model_dump(mode="json", exclude_none=True) | {"sources": [
        DEVICE | {"port": free_port()}]})  # nobody listens: GDS-9 is lost, its COMM alarm raised
    g = Gateway(cfg)
    await g.start()
    try:
        yield g
    finally:
        await g.stop()


async def test_group_ack_filters_and_comm_views(gw: Gateway) -> None:
    assert gw.api is not None and gw.api.url is not None
    await async_wait_for(lambda: gw.alarms.get("gds-9/comm").state == S.UNACK, timeout=10)
    await gw.pipeline.emit([reading("PT-201", 1.5), reading("AI/7", 95.0)])
    await async_wait_for(lambda: len(gw.alarms.active()) == 3, timeout=5)
    async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as c:
        # views: source, parent, hazard sources, what a COMM alarm covers
        comm = (await c.get("/api/alarms", params={"condition": "comm"}, headers=H_VIEWER)).json()
        assert [a["id"] for a in comm] == ["gds-9/comm"]
        assert comm[0]["comm"] == {"kind": "unit", "name": "GDS-9", "source": "gds-9", "tags": 1, "detectors": 1,
                                   "hazard_sources": ["HS-001"], "units": []}
        assert comm[0]["priority"] == 1 and comm[0]["source"] == "gds-9" and comm[0]["hazard_sources"] == ["HS-001"]
        kids = (await c.get("/api/alarms", params={"state": "all", "parent": "gds-9/comm"}, headers=H_VIEWER)).json()
        assert [a["id"] for a in kids] == ["GT-101/bad"] and kids[0]["state"] == "DSUPR"
        got = await c.get("/api/alarms", params={"q": "sphere"}, headers=H_VIEWER)
        assert [a["id"] for a in got.json()] == ["PT-201/h"]
        got = await c.get("/api/alarms", params={"source": "gds-9"}, headers=H_VIEWER)
        assert [a["id"] for a in got.json()] == ["gds-9/comm"]

        # the group: ids as shown; an unknown one and one given twice
        r = await c.post("/api/alarms/ack", headers=H_VIEWER, json={"ids": ["PT-201/h"]})
        assert r.status_code == 403
        r = await c.post("/api/alarms/ack", headers=H_OPERATOR,
                         json={"ids": ["PT-201/h", "gds-9/comm", "PT-201/h", "NOPE/h"], "comment": "seen on site"})
        assert r.status_code == 200, r.text
        body = r.json()
        assert [(e["alarm"], e["user"], e["comment"]) for e in body["acked"]] == [
            ("PT-201/h", "ops-zhao", "seen on site"), ("gds-9/comm", "ops-zhao", "seen on site")]
        assert [s["id"] for s in body["skipped"]] == ["NOPE/h"]
        assert {a["id"]: a["state"] for a in body["alarms"]} == {"PT-201/h": "ACKED", "gds-9/comm": "ACKED"}
        # again: nothing to acknowledge, each says why
        again = (await c.post("/api/alarms/ack", headers=H_OPERATOR, json={"ids": ["PT-201/h"]})).json()
        assert again["acked"] == [] and "already acknowledged" in again["skipped"][0]["reason"]
        # by filter: every open alarm matching it
        r = await c.post("/api/alarms/ack", headers=H_OPERATOR, json={"filter": {"priority": 3}})
        assert [e["alarm"] for e in r.json()["acked"]] == ["AI/7/h"]
        for bad in ({}, {"ids": ["x"], "filter": {}}, {"ids": ["x"] * 5001}):
            assert (await c.post("/api/alarms/ack", headers=H_OPERATOR, json=bad)).status_code == 422
    # one journal event per alarm
    j = gw.alarms.journal
    assert j is not None
    rows: list[dict[str, Any]] = await async_wait_for(lambda: asyncio.to_thread(j.events, kinds=["acked"]), timeout=5)
    assert sorted(r["alarm"] for r in rows) == ["AI/7/h", "PT-201/h", "gds-9/comm"]
