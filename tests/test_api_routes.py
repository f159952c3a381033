"""The HTTP API against a real uvicorn (port 0) inside a whole gateway: auth, routes, journal, metrics."""

from __future__ import annotations

import asyncio
import logging
import re
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import APIRouter
from helpers import async_wait_for
from test_api_support import H_ADMIN, H_OPERATOR, H_VIEWER, OPERATOR, VIEWER, reading, site

from alerting import states as S
from gateway.api import ApiSettings, build_app
from gateway.config import Config
from gateway.supervisor import Gateway


@pytest.fixture
async def gw(tmp_path: Path) -> AsyncIterator[Gateway]:
    g = Gateway(site(tmp_path / "store"))
    await g.start()
    try:
        yield g
    finally:
        await g.stop()


@pytest.fixture
async def client(gw: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    assert gw.api is not None and gw.api.url is not None
    async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as c:
        yield c


async def alarm_state(gw: Gateway, alarm: str, state: str) -> None:
    await async_wait_for(lambda: gw.alarms.get(alarm).state == state, timeout=5, desc=f"{alarm} in {state}")


async def raise_alarms(gw: Gateway) -> None:
    """GT-101 at 2.5 mg/m3 (HH and H), PT-201 at 1.5 MPa (H)."""
    await gw.pipeline.emit([reading("GT-101", 2.5), reading("PT-201", 1.5), reading("AI/7", 50.0)])
    await alarm_state(gw, "GT-101/hh", S.UNACK)
    await alarm_state(gw, "PT-201/h", S.UNACK)


async def journal_rows(gw: Gateway, n: int = 1, **kw: Any) -> list[dict[str, Any]]:
    """At least ``n`` journal events matching ``kw`` (the journal writes in the background)."""
    journal = gw.alarms.journal
    assert journal is not None

    async def rows() -> list[dict[str, Any]]:
        got: list[dict[str, Any]] = await asyncio.to_thread(journal.events, **kw)
        return got if len(got) >= n else []

    return await async_wait_for(rows, timeout=5, desc=f"{n} journal events {kw}")


# ---------------------------------------------------------------------------- health, auth


async def test_health_is_open_and_lists_components(client: httpx.AsyncClient, gw: Gateway) -> None:
    r = await client.get("/api/health")
    assert r.status_code == 200
    body = r.json()
    assert body["status"] == "ok" and body["site"] == "91430900TEST0001XX"
    assert body["components"]["api"]["ok"] is True
    assert body["components"]["api"]["url"] == gw.api.url  # type: ignore[union-attr]
    assert {"alarms", "Pipeline", "stale-watcher"} <= set(body["components"])


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {VIEWER}"}, {"Authorization": "Bearer"}],
    ids=["none", "unknown-token", "basic-scheme", "empty"],
)
async def test_401_without_a_valid_bearer_token(client: httpx.AsyncClient, headers: dict[str, str]) -> None:
    for path in ("/api/tags", "/api/tags/GT-101", "/api/alarms", "/api/alarms/history", "/api/events"):
        r = await client.get(path, headers=headers)
        assert r.status_code == 401, path
        assert r.headers["www-authenticate"] == "Bearer"
        assert r.json()["error"] == "unauthorized"
    r = await client.post("/api/alarms/GT-101/hh/ack", headers=headers)
    assert r.status_code == 401


async def test_roles_viewer_reads_operator_and_admin_act(client: httpx.AsyncClient, gw: Gateway) -> None:
    await raise_alarms(gw)
    assert (await client.get("/api/alarms", headers=H_VIEWER)).status_code == 200
    r = await client.post("/api/alarms/GT-101/hh/ack", headers=H_VIEWER)
    assert r.status_code == 403
    assert r.json() == {"error": "forbidden", "detail": "token 'screen' has role viewer; this needs operator"}
    assert gw.alarms.get("GT-101/hh").state == S.UNACK  # nothing happened
    assert (await client.post("/api/alarms/GT-101/hh/ack", headers=H_OPERATOR)).status_code == 200
    assert (await client.post("/api/alarms/PT-201/h/ack", headers=H_ADMIN)).status_code == 200  # admin >= operator
    failures = (await client.get("/metrics")).text
    assert 'hazardgw_api_auth_failures_total{reason="role"} 1.0' in failures


async def test_no_tokens_configured_means_no_access(tmp_path: Path) -> None:
    gw = Gateway(site(tmp_path, api={"tokens": []}))
    await gw.start()
    try:
        async with httpx.AsyncClient(base_url=gw.api.url) as c:  # type: ignore[union-attr]
            r = await c.get("/api/tags", headers=H_ADMIN)
            assert r.status_code == 401 and "api.tokens" in r.json()["detail"]
            assert (await c.get("/api/health")).status_code == 200
    finally:
        await gw.stop()


async def test_tokens_never_reach_the_logs(
    client: httpx.AsyncClient, gw: Gateway, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    await client.get("/api/tags", headers=H_VIEWER)
    await client.get("/api/tags", headers={"Authorization": "Bearer not-a-real-token-5e1"})
    await client.post("/api/alarms/GT-101/hh/ack", headers=H_VIEWER)
    await client.get("/ack/signed-ack-token-xyz")  # one-tap links carry a secret in the path
    # what the server side logged (the test's own HTTP client logs its URLs, so it is left out);
    # the API thread writes an access line after the response went out: wait for the last one
    def server_log() -> str:
        return "\n".join(r.getMessage() for r in caplog.records if not r.name.startswith(("httpx", "httpcore")))

    await async_wait_for(lambda: '"GET /ack/***" 403' in server_log(), timeout=5, desc="the /ack access line")
    text = server_log()
    assert '"GET /api/tags" 200' in text and '"GET /ack/***" 403' in text  # requests are logged...
    for secret in (VIEWER, OPERATOR, "not-a-real-token-5e1", "signed-ack-token-xyz"):
        assert secret not in text  # ...but never a token
    assert "invalid token from 127.0.0.1" in text
    assert not [r for r in caplog.records if r.name == "uvicorn.access"]


# ---------------------------------------------------------------------------- tags


async def test_tags_with_value_quality_and_alarm_state(client: httpx.AsyncClient, gw: Gateway) -> None:
    r = await client.get("/api/tags", headers=H_VIEWER)
    assert [t["id"] for t in r.json()] == ["GT-101", "PT-201", "AI/7"]
    assert r.json()[0]["quality"] is None and r.json()[0]["alarm"] is None  # nothing read yet
    await raise_alarms(gw)
    await gw.pipeline.emit([reading("PT-201", None, "comm")])
    await async_wait_for(lambda: gw.live.latest["PT-201"].quality == "comm", timeout=5)
    tags = {t["id"]: t for t in (await client.get("/api/tags", headers=H_VIEWER)).json()}
    gt = tags["GT-101"]
    assert (gt["value"], gt["quality"], gt["unit"], gt["hs"], gt["limits"]) == (
        2.5, "good", "mg/m3", "HS-001", {"hh": 2.0, "h": 1.0}
    )
    assert gt["alarm"] == {"priority": 1, "state": "UNACK", "alarms": ["GT-101/hh", "GT-101/h"]}
    assert (tags["PT-201"]["value"], tags["PT-201"]["quality"]) == (None, "comm")
    assert tags["AI/7"]["alarm"] is None
    only = (await client.get("/api/tags", params={"hs": "HS-002"}, headers=H_VIEWER)).json()
    assert [t["id"] for t in only] == ["PT-201"]


async def test_tag_detail_has_trend_and_alarms_and_accepts_slashes(client: httpx.AsyncClient, gw: Gateway) -> None:
    for v in (10.0, 20.0, 30.0):
        await gw.pipeline.emit([reading("AI/7", v)])
        # the trend keeps at most one point per tag per second: wait for each to be recorded
        await async_wait_for(lambda v=v: gw.api.app.state.hazardgw.trends.recent("AI/7")[-1:] and  # type: ignore[union-attr]
                             gw.api.app.state.hazardgw.trends.recent("AI/7")[-1][1] == v, timeout=5)  # type: ignore[union-attr]
    for path in ("/api/tags/AI/7", "/api/tags/AI%2F7"):
        d = (await client.get(path, headers=H_VIEWER)).json()
        assert d["id"] == "AI/7" and d["value"] == 30.0
        assert [p[1] for p in d["recent"]] == [10.0, 20.0, 30.0]
        assert [a["id"] for a in d["alarms"]] == ["AI/7/h"] and d["alarms"][0]["state"] == "NORM"
    few = (await client.get("/api/tags", params={"recent": 2}, headers=H_VIEWER)).json()
    assert [p[1] for p in next(t for t in few if t["id"] == "AI/7")["recent"]] == [20.0, 30.0]
    r = await client.get("/api/tags/NOPE-1", headers=H_VIEWER)
    assert r.status_code == 404 and r.json()["error"] == "not_found"


# ---------------------------------------------------------------------------- alarms


async def test_alarm_list_filters(client: httpx.AsyncClient, gw: Gateway) -> None:
    await raise_alarms(gw)
    active = (await client.get("/api/alarms", headers=H_VIEWER)).json()
    assert [a["id"] for a in active] == ["GT-101/hh", "GT-101/h", "PT-201/h"]  # priority, then raise time
    assert active[0]["suppressible"] is False and active[0]["latch"] is True
    p2 = (await client.get("/api/alarms", params={"priority": 2, "hs": "HS-002"}, headers=H_VIEWER)).json()
    assert [a["id"] for a in p2] == ["PT-201/h"]
    every = (await client.get("/api/alarms", params={"state": "all"}, headers=H_VIEWER)).json()
    assert {"GT-101/bad", "GT-101/stale", "PT-201/l", "AI/7/h"} <= {a["id"] for a in every}
    norm = (await client.get("/api/alarms", params={"state": "NORM"}, headers=H_VIEWER)).json()
    assert all(a["state"] == "NORM" for a in norm) and "PT-201/l" in {a["id"] for a in norm}
    assert (await client.get("/api/alarms", params={"state": "bogus"}, headers=H_VIEWER)).status_code == 422


async def test_ack_by_plain_encoded_and_occurrence_ids_journals_token_name(
    client: httpx.AsyncClient, gw: Gateway
) -> None:
    await raise_alarms(gw)
    r = await client.post("/api/alarms/GT-101/hh/ack", headers=H_OPERATOR, json={"comment": "checked on site"})
    assert r.status_code == 200
    body = r.json()
    assert (body["event"]["event"], body["event"]["user"], body["event"]["comment"]) == ("acked", "ops-zhao",
                                                                                         "checked on site")
    assert (body["alarm"]["state"], body["alarm"]["acked_by"]) == ("ACKED", "ops-zhao")
    assert (await client.post("/api/alarms/GT-101%2Fh/ack", headers=H_OPERATOR)).status_code == 200
    assert gw.alarms.get("GT-101/h").state == S.ACKED
    occ = gw.alarms.get("PT-201/h").occurrence
    assert (await client.post(f"/api/alarms/{occ}/ack", headers=H_ADMIN)).status_code == 200
    assert gw.alarms.get("PT-201/h").acked_by == "admin"
    rows = await journal_rows(gw, 3, kinds=["acked"])
    assert {(r["alarm"], r["user"]) for r in rows} == {("GT-101/hh", "ops-zhao"), ("GT-101/h", "ops-zhao"),
                                                       ("PT-201/h", "admin")}
    # the same through the API's history route
    h = (await client.get("/api/alarms/history", params={"event": "acked"}, headers=H_VIEWER)).json()
    assert h["source"] == "journal" and {e["user"] for e in h["events"]} == {"ops-zhao", "admin"}


async def test_action_errors_map_to_status_codes(client: httpx.AsyncClient, gw: Gateway) -> None:
    await raise_alarms(gw)
    post = client.post
    r = await post("/api/alarms/NOPE/hh/ack", headers=H_OPERATOR)
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    r = await post("/api/alarms/GT-101/hh/shelve", headers=H_OPERATOR, json={"duration": "1h"})
    assert (r.status_code, r.json()["error"]) == (403, "not_permitted")  # gas alarms cannot be shelved
    assert (await post("/api/alarms/GT-101/hh/ack", headers=H_OPERATOR)).status_code == 200
    r = await post("/api/alarms/GT-101/hh/ack", headers=H_OPERATOR)
    assert (r.status_code, r.json()["error"]) == (409, "invalid_transition")  # already acknowledged
    r = await post("/api/alarms/PT-201/h/shelve", headers=H_OPERATOR, json={"duration": "9h"})
    assert (r.status_code, r.json()["error"]) == (400, "bad_request")  # over 8 h
    r = await post("/api/alarms/PT-201/h/shelve", headers=H_OPERATOR, json={"duration": "soon"})
    assert r.status_code == 400
    r = await post("/api/alarms/PT-201/h/shelve", headers=H_OPERATOR, json={"duration": 60, "bogus": 1})
    assert r.status_code == 422  # unknown fields are refused
    r = await post("/api/alarms/PT-201/h/dispose", headers=H_OPERATOR,
                   json={"cause": "  ", "action": "a", "result": "r"})
    assert r.status_code == 400  # blank after trimming
    r = await post("/api/alarms/PT-201/h/unshelve", headers=H_OPERATOR)
    assert (r.status_code, r.json()["error"]) == (409, "invalid_transition")  # not shelved


async def test_shelve_unshelve_dispose(client: httpx.AsyncClient, gw: Gateway) -> None:
    await raise_alarms(gw)
    r = await client.post("/api/alarms/PT-201/h/shelve", headers=H_OPERATOR,
                          json={"duration": "30m", "comment": "relief valve test"})
    assert r.status_code == 200 and r.json()["alarm"]["state"] == "SHLVD"
    assert r.json()["event"]["data"]["duration"] == 1800
    sup = (await client.get("/api/alarms", params={"state": "suppressed"}, headers=H_VIEWER)).json()
    assert [a["id"] for a in sup] == ["PT-201/h"] and sup[0]["shelved_until"] is not None
    r = await client.post("/api/alarms/PT-201/h/unshelve", headers=H_OPERATOR, json={})
    assert r.status_code == 200
    assert gw.alarms.get("PT-201/h").state == S.UNACK  # still active: a new occurrence is raised at once

    occ = gw.alarms.get("GT-101/hh").occurrence
    r = await client.post("/api/alarms/GT-101/hh/dispose", headers=H_OPERATOR,
                          json={"cause": "flange leak", "action": "isolated V-101", "result": "closed"})
    assert r.status_code == 200
    ev = r.json()["event"]
    assert (ev["event"], ev["occurrence"], ev["user"]) == ("disposed", occ, "ops-zhao")
    assert ev["data"] == {"cause": "flange leak", "action": "isolated V-101", "handler": "ops-zhao",
                          "result": "closed"}
    # by occurrence number, with an explicit handler
    r = await client.post(f"/api/alarms/{occ}/dispose", headers=H_OPERATOR,
                          json={"cause": "c", "action": "a", "result": "r", "handler": "li"})
    assert r.status_code == 200 and r.json()["event"]["data"]["handler"] == "li"
    occs = await async_wait_for(lambda: _occurrences(client), timeout=5)
    gt = next(o for o in occs if o["id"] == occ)
    assert (gt["handler"], gt["disposed_by"], gt["cause"]) == ("li", "ops-zhao", "c")
    rows = await journal_rows(gw, 4, kinds=["shelved", "unshelved", "disposed"])
    assert all(r["user"] == "ops-zhao" for r in rows) and len(rows) == 4


async def _occurrences(client: httpx.AsyncClient) -> list[dict[str, Any]]:
    r = await client.get("/api/alarms/history", params={"view": "occurrences"}, headers=H_VIEWER)
    occs: list[dict[str, Any]] = r.json()["occurrences"]
    return occs if any(o.get("handler") == "li" for o in occs) else []


async def test_history_filters(client: httpx.AsyncClient, gw: Gateway) -> None:
    await raise_alarms(gw)
    await journal_rows(gw, 3, kinds=["raised"])
    h = (await client.get("/api/alarms/history", params={"alarm": "GT-101/hh"}, headers=H_VIEWER)).json()
    assert [e["event"] for e in h["events"]] == ["raised"] and h["events"][0]["limit"] == 2.0
    h = (await client.get("/api/alarms/history", params={"tag": "PT-201", "limit": 1}, headers=H_VIEWER)).json()
    assert len(h["events"]) == 1 and h["events"][0]["tag"] == "PT-201"
    future = (await client.get("/api/alarms/history", params={"since": "2999-01-01T00:00:00"},
                               headers=H_VIEWER)).json()
    assert future["events"] == []
    past = (await client.get("/api/alarms/history", params={"until": "2000-01-01T00:00:00+08:00"},
                             headers=H_VIEWER)).json()
    assert past["events"] == []
    assert (await client.get("/api/alarms/history", params={"since": "yesterday"}, headers=H_VIEWER)).status_code == 422
    assert (await client.get("/api/alarms/history", params={"event": "exploded"}, headers=H_VIEWER)).status_code == 422


# ---------------------------------------------------------------------------- metrics, console, CORS


async def test_metrics_has_gateway_registry_and_api_additions(client: httpx.AsyncClient, gw: Gateway) -> None:
    await raise_alarms(gw)
    await client.get("/api/tags", headers=H_VIEWER)
    r = await client.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    for line in (
        'hazardgw_alarms_active{priority="1"} 1.0',  # the engine's own (gateway registry)
        'hazardgw_alarms_unacknowledged{priority="1"} 1.0',  # added by the API
        'hazardgw_alarms_unacknowledged{priority="2"} 2.0',
        'hazardgw_tags{quality="good"} 3.0',
        'hazardgw_api_requests_total{method="GET",route="/api/tags",status="200"} 1.0',
        "hazardgw_api_sse_clients 0.0",
        'hazardgw_hazard_source_status{hs="HS-001"} 3.0',
        "hazardgw_pipeline_readings_out_total",
    ):
        assert line in text, line


async def test_console_is_served_offline_with_a_strict_csp(client: httpx.AsyncClient) -> None:
    r = await client.get("/")
    assert r.status_code == 200 and "<title>hazardgw</title>" in r.text
    assert "script-src 'self'" in r.headers["content-security-policy"]
    assert r.headers["x-frame-options"] == "DENY"
    for asset in ("/static/console.js", "/static/console.css", "/static/i18n.js"):
        a = await client.get(asset)
        assert a.status_code == 200 and a.headers["cache-control"] == "no-cache", asset
        urls = set(re.findall(r"https?://[^\s\"')]+", a.text)) - {"http://www.w3.org/2000/svg"}
        assert not urls, f"{asset} loads something from the network: {urls}"
    assert "https://" not in r.text
    assert (await client.get("/docs")).status_code == 404  # Swagger UI would load from a CDN
    assert (await client.get("/openapi.json")).json()["paths"]["/api/alarms/{id}/ack"]["post"]


async def test_no_cors_unless_configured(client: httpx.AsyncClient, tmp_path: Path) -> None:
    pre = {"Origin": "https://evil.example", "Access-Control-Request-Method": "GET"}
    r = await client.options("/api/tags", headers=pre)
    assert "access-control-allow-origin" not in r.headers
    r = await client.get("/api/health", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in r.headers

    gw2 = Gateway(site(tmp_path / "b", api={"cors_origins": ["https://scada.plant.local"]}))
    await gw2.start()
    try:
        async with httpx.AsyncClient(base_url=gw2.api.url) as c:  # type: ignore[union-attr]
            ok = {"Origin": "https://scada.plant.local", "Access-Control-Request-Method": "GET",
                  "Access-Control-Request-Headers": "authorization"}
            r = await c.options("/api/tags", headers=ok)
            assert r.headers["access-control-allow-origin"] == "https://scada.plant.local"
            r = await c.options("/api/tags", headers={**ok, "Origin": "https://evil.example"})
            assert "access-control-allow-origin" not in r.headers
    finally:
        await gw2.stop()


# ---------------------------------------------------------------------------- server component


async def test_two_gateways_in_one_process_are_independent(tmp_path: Path) -> None:
    a, b = Gateway(site(tmp_path / "a")), Gateway(site(tmp_path / "b"))
    await a.start()
    await b.start()
    try:
        assert a.api is not None and b.api is not None and a.api.port != b.api.port
        await a.pipeline.emit([reading("GT-101", 3.0)])
        await alarm_state(a, "GT-101/hh", S.UNACK)
        async with httpx.AsyncClient() as c:
            ra = (await c.get(f"{a.api.url}/api/alarms", headers=H_VIEWER)).json()
            rb = (await c.get(f"{b.api.url}/api/alarms", headers=H_VIEWER)).json()
            ma = (await c.get(f"{a.api.url}/metrics")).text
            mb = (await c.get(f"{b.api.url}/metrics")).text
        assert [x["id"] for x in ra] == ["GT-101/hh", "GT-101/h"] and rb == []
        assert 'hazardgw_alarms_active{priority="1"} 1.0' in ma
        assert 'hazardgw_alarms_active{priority="1"} 0.0' in mb
    finally:
        await a.stop()
        await b.stop()


async def test_port_in_use_degrades_and_retries_instead_of_failing(tmp_path: Path) -> None:
    blocker = socket.socket()
    blocker.bind(("127.0.0.1", 0))
    blocker.listen()
    port = blocker.getsockname()[1]
    gw = Gateway(site(tmp_path, api={"listen": f"127.0.0.1:{port}"}))
    assert gw.api is not None
    gw.api.retry_interval = 0.1
    await gw.start()  # the alarm engine and the pipeline run regardless
    try:
        h = gw.health()
        assert h["status"] == "degraded" and "cannot listen" in h["components"]["api"]["error"]
        await gw.pipeline.emit([reading("GT-101", 3.0)])
        await alarm_state(gw, "GT-101/hh", S.UNACK)  # alarms work without the API
        blocker.close()
        await async_wait_for(lambda: gw.api.listening, timeout=5, desc="API bound after the port was freed")  # type: ignore[union-attr]
        assert gw.api.port == port and gw.health()["status"] == "ok"
        async with httpx.AsyncClient() as c:
            assert (await c.get(f"{gw.api.url}/api/alarms", headers=H_VIEWER)).json()[0]["id"] == "GT-101/hh"
    finally:
        blocker.close()
        await gw.stop()


async def test_api_disabled_runs_no_server(tmp_path: Path) -> None:
    gw = Gateway(site(tmp_path, api={"enabled": False}))
    await gw.start()
    try:
        assert gw.api is None and "api" not in gw.health()["components"]
    finally:
        await gw.stop()


# ---------------------------------------------------------------------------- in-process (ASGI) app


async def test_build_app_over_asgi_with_an_extra_router(tmp_path: Path) -> None:
    cfg: Config = site(tmp_path, api={"enabled": False})
    gw = Gateway(cfg)
    await gw.start()
    extra = APIRouter()

    @extra.get("/ack/{token}")
    async def one_tap(token: str) -> dict[str, int]:
        return {"length": len(token)}

    app = build_app(gw.api_facade(), extra_routers=[extra], settings=ApiSettings(sse_interval=0.1))
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
                assert (await c.get("/ack/abc")).json() == {"length": 3}
                await gw.pipeline.emit([reading("GT-101", 2.5)])
                await alarm_state(gw, "GT-101/hh", S.UNACK)
                r = await c.post("/api/alarms/GT-101%2Fhh/ack", headers=H_OPERATOR)
                assert r.status_code == 200 and r.json()["event"]["user"] == "ops-zhao"
                assert (await c.get("/api/tags", headers=H_VIEWER)).json()[0]["alarm"]["state"] == "ACKED"
                assert app.state.hazardgw.hub.health()["ok"] is True  # the lifespan started the hub
        assert app.state.hazardgw.hub.health()["ok"] is False
    finally:
        await gw.stop()
