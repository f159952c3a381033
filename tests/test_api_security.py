"""Token lifecycle, lockout, audit log (issue 25 items 2-5), and the guard's body limits.

A real gateway (``Gateway`` with its ``ApiServer`` on a thread of its own, real TCP clients
bound to chosen loopback addresses) on an explicit clock: ``ApiSettings(clock=, wall=)``
drive the lockout windows, token expiry and the audit time stamps.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import json
import logging
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from fastapi import APIRouter, Request
from helpers import async_wait_for
from test_api_support import ADMIN, H_ADMIN, H_OPERATOR, H_VIEWER, OPERATOR, TOKENS, VIEWER, reading

from gateway.api import ApiSettings, build_app, hash_token
from gateway.api.app import context_of
from gateway.api.audit import AuditLog, audit_target
from gateway.api.auth import Operator, TokenAuth
from gateway.api.guard import allow_body
from gateway.config import Config
from gateway.core.config import ApiToken
from gateway.supervisor import Gateway
from gateway.validate import validate_text

ROOT = Path(__file__).resolve().parents[1]
TZ = "Asia/Shanghai"
START = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
EXPIRING = "tok-expiring-5b6c"


class FakeClock:
    def __init__(self, start: dt.datetime = START) -> None:
        self.t = 1000.0
        self.w = int(start.timestamp()) * 10**9

    def mono(self) -> float:
        return self.t

    def wall(self) -> int:
        return self.w

    def advance(self, seconds: float) -> None:
        self.t += seconds
        self.w += int(seconds * 1e9)


def config(store: Path, *, tokens: list[dict[str, Any]] | None = None, api: dict[str, Any] | None = None) -> Config:
    return Config.model_validate({
        "site": {"code": "91430900SEC00001XX", "name": "security test site", "timezone": TZ},
        "hazard_sources": [{"code": "HS-001", "name": "Chlorine tanks", "grade": 2,
                            "responsible": {"principal": "zhao"}}],
        "people": [{"id": "zhao", "name": "Zhao"}],
        "tags": [
            {"id": "GT-101", "name": "Cl2", "hazard_source": "HS-001", "kind": "toxic_gas", "gas": "Cl2",
             "unit": "mg/m3", "range": [0, 20], "stale_after": "1h",
             "alarms": {"hh": {"limit": 2.0, "priority": 1}}},
            {"id": "PT-201", "name": "Pressure", "hazard_source": "HS-001", "kind": "pressure", "unit": "MPa",
             "range": [0, 2.5], "stale_after": "1h", "alarms": {"h": {"limit": 1.4, "priority": 2}}},
        ],
        "api": {"listen": "127.0.0.1:0", "tokens": tokens if tokens is not None else TOKENS, **(api or {})},
        "store": {"path": str(store)},
    })


@dataclass
class Env:
    gw: Gateway
    url: str
    clock: FakeClock

    def client(self, source: str = "127.0.0.1") -> httpx.AsyncClient:
        return httpx.AsyncClient(base_url=self.url, timeout=10,
                                 transport=httpx.AsyncHTTPTransport(local_address=source))

    @property
    def ctx(self) -> Any:
        assert self.gw.api is not None
        return self.gw.api.ctx

    def metric(self, name: str, labels: dict[str, str] | None = None) -> float:
        v = self.ctx.metrics.registry.get_sample_value(name, labels or {})
        return 0.0 if v is None else float(v)

    async def audit(self) -> list[dict[str, Any]]:
        await asyncio.to_thread(self.ctx.audit.flush)
        return [json.loads(line) for _, p in self.ctx.audit.files() for line in p.read_text().splitlines()]


@asynccontextmanager
async def running(tmp_path: Path, **kw: Any) -> AsyncIterator[Env]:
    clock = FakeClock()
    gw = Gateway(config(tmp_path / "store", **kw), api_settings=ApiSettings(clock=clock.mono, wall=clock.wall))
    await gw.start()
    try:
        assert gw.api is not None and gw.api.url is not None
        yield Env(gw, gw.api.url, clock)
    finally:
        await gw.stop()


# ----------------------------------------------------------------------------- token lifecycle


async def test_an_expired_token_gets_401_and_one_log_line(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    soon = START + dt.timedelta(days=3)
    tokens = [*TOKENS, {"name": "temp-li", "role": "operator", "token_sha256": hash_token(EXPIRING),
                        "expires": soon.isoformat()}]
    h = {"Authorization": f"Bearer {EXPIRING}"}
    async with running(tmp_path, tokens=tokens) as env, env.client() as c:
        r = await c.get("/api/me", headers=h)
        assert r.status_code == 200
        me = r.json()
        assert me["name"] == "temp-li" and me["expires_soon"] is True and 2.9 * 86400 < me["expires_in_s"] < 3.1 * 86400
        assert (await c.get("/api/me", headers=H_VIEWER)).json()["expires"] is None
        env.clock.advance(4 * 86400)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="gateway.api.auth"):
            for _ in range(12):
                r = await c.get("/api/tags", headers=h)
                assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
                assert r.json() == {"error": "unauthorized", "detail": "token 'temp-li' has expired"}
        assert len([r for r in caplog.records if "expired" in r.getMessage()]) == 1
        # an expired token is a known token, not a guess: no lockout; others keep working
        assert (await c.get("/api/tags", headers=H_VIEWER)).status_code == 200
        assert env.metric("hazardgw_api_auth_failures_total", {"reason": "expired"}) == 12
        fails = [a for a in await env.audit() if a["event"] == "auth_failure"]
        assert len(fails) == 12 and {a["result"] for a in fails} == {"expired"}


def test_token_expires_is_a_date_or_a_moment_at_the_site() -> None:
    day = ApiToken.model_validate({"name": "a", "role": "viewer", "token_sha256": "a" * 64, "expires": "2026-12-31"})
    end = dt.datetime(2027, 1, 1, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    assert day.expires_ns(TZ) == int(end.timestamp()) * 10**9  # through the whole day, site time
    moment = ApiToken.model_validate({"name": "a", "role": "viewer", "token_sha256": "a" * 64,
                                      "expires": "2026-12-31T18:00"})
    assert moment.expires_ns(TZ) == int(dt.datetime(2026, 12, 31, 10, 0, tzinfo=dt.UTC).timestamp()) * 10**9
    wall = [int(dt.datetime(2026, 12, 31, 23, 59, tzinfo=dt.timezone(dt.timedelta(hours=8))).timestamp()) * 10**9]
    token = ApiToken.model_validate({"name": "d", "role": "viewer", "token_sha256": hash_token("x"),
                                     "expires": "2026-12-31"})
    auth = TokenAuth([token], TZ, wall=lambda: wall[0])
    assert auth.check("x").principal is not None
    wall[0] += 120 * 10**9
    assert auth.check("x").failure == "expired"


def test_token_new_prints_the_secret_once_and_the_config_line(tmp_path: Path) -> None:
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "token", "new", "--name", "zhao", "--role",
                          "operator", "--expires", "2027-06-30"], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    secret = lines[1].strip()
    assert len(secret) >= 40 and run.stdout.count(secret) == 1  # shown once, not in the config line
    entry = yaml.safe_load(lines[-1].strip()[2:])
    assert entry == {"name": "zhao", "role": "operator",
                     "token_sha256": hashlib.sha256(secret.encode()).hexdigest(), "expires": dt.date(2027, 6, 30)}
    cfg = validate_text(yaml.safe_dump({"site": {"code": "S", "name": "S"}, "api": {"tokens": [entry]}}), env={})
    assert cfg.config is not None
    auth = TokenAuth(cfg.config.api.tokens, TZ, wall=lambda: int(START.timestamp()) * 10**9)
    assert auth.authenticate(secret) is not None and auth.authenticate(secret + "x") is None
    bad = subprocess.run([sys.executable, "-m", "gateway.cli", "token", "new", "--name", "zhao", "--role", "viewer",
                          "--expires", "next tuesday"], cwd=ROOT, capture_output=True, text=True)
    assert bad.returncode == 2 and "expires" in bad.stderr and not bad.stdout


# ----------------------------------------------------------------------------- lockout


async def test_ten_failures_lock_an_address_out_until_the_cooling_period_ends(tmp_path: Path) -> None:
    async with running(tmp_path) as env, env.client("127.0.0.7") as bad, env.client("127.0.0.8") as other:
        wrong = {"Authorization": "Bearer not-a-token"}
        # failures spread over more than the window do not lock
        for _ in range(9):
            assert (await bad.get("/api/tags", headers=wrong)).status_code == 401
        env.clock.advance(61)
        for _ in range(9):
            assert (await bad.get("/api/tags", headers=wrong)).status_code == 401
        assert (await bad.get("/api/tags", headers=H_VIEWER)).status_code == 200  # (and a success resets nothing)
        assert (await bad.get("/api/tags", headers=wrong)).status_code == 401  # 10 within the last minute
        t0 = time.monotonic()
        r = await bad.get("/api/tags", headers=H_VIEWER)
        assert r.status_code == 429 and r.json()["error"] == "locked_out"
        assert 290 <= int(r.headers["retry-after"]) <= 300
        assert time.monotonic() - t0 >= 0.2  # answered after locked_delay: a guesser cannot ask at full speed
        assert (await bad.post("/api/alarms/GT-101%2Fhh/ack", headers=H_OPERATOR)).status_code == 429
        assert (await other.get("/api/tags", headers=H_VIEWER)).status_code == 200  # only that address
        assert (await bad.get("/api/health")).status_code == 200  # open routes stay open
        assert env.metric("hazardgw_api_lockouts_total") == 1
        assert env.metric("hazardgw_api_locked_clients") == 1
        assert env.metric("hazardgw_api_auth_failures_total", {"reason": "locked"}) == 2
        text = (await other.get("/metrics")).text
        assert "hazardgw_api_lockouts_total 1.0" in text
        env.clock.advance(299)
        assert (await bad.get("/api/tags", headers=H_VIEWER)).status_code == 429
        env.clock.advance(2)  # the cooling period is over
        assert (await bad.get("/api/tags", headers=H_VIEWER)).status_code == 200
        assert env.metric("hazardgw_api_locked_clients") == 0
        records = await env.audit()
        lockouts = [a for a in records if a["event"] == "lockout"]
        assert len(lockouts) == 1 and lockouts[0]["client"] == "127.0.0.7" and lockouts[0]["status"] == 429
        fails = [a for a in records if a["event"] == "auth_failure"]
        assert len(fails) == 19 and {a["client"] for a in fails} == {"127.0.0.7"}
        assert {a["result"] for a in fails} == {"invalid"} and {a["user"] for a in fails} == {None}


async def test_one_tap_links_cannot_be_guessed(tmp_path: Path) -> None:
    async with running(tmp_path) as env, env.client("127.0.0.9") as bad, env.client("127.0.0.10") as other:
        await env.gw.pipeline.emit([reading("GT-101", 5.0)])
        occ = await async_wait_for(lambda: env.gw.alarms.get("GT-101/hh").occurrence, timeout=5)
        assert occ is not None
        link = "/ack/" + env.gw.notifier.sign(occ, "zhao")
        for i in range(10):
            r = await bad.get(f"/ack/guess{i}.xyz")
            assert r.status_code == 403
        assert (await bad.get(link)).status_code == 429  # even the right link, from that address
        assert (await bad.post(link)).status_code == 429
        assert (await other.get(link)).status_code == 200
        assert env.metric("hazardgw_api_auth_failures_total", {"reason": "invalid_link"}) == 10
        records = await env.audit()
        assert [a["result"] for a in records if a["event"] == "auth_failure"] == ["invalid_link"] * 10
        assert all("guess" not in json.dumps(a) for a in records)  # link paths are never written


# ----------------------------------------------------------------------------- audit log


async def test_every_state_changing_call_is_audited_with_its_user(tmp_path: Path) -> None:
    async with running(tmp_path) as env, env.client("127.0.0.11") as c:
        await env.gw.pipeline.emit([reading("GT-101", 5.0), reading("PT-201", 1.8)])
        occ = await async_wait_for(lambda: env.gw.alarms.get("GT-101/hh").occurrence, timeout=5)
        assert occ is not None
        await async_wait_for(lambda: env.gw.alarms.get("PT-201/h").state == "UNACK", timeout=5)
        calls = [
            ("/api/alarms/PT-201%2Fh/ack", H_OPERATOR, {"comment": "seen"}, 200),
            ("/api/alarms/PT-201/h/shelve", H_OPERATOR, {"duration": "1h", "comment": "maintenance"}, 200),
            ("/api/alarms/PT-201/h/unshelve", H_OPERATOR, None, 200),
            ("/api/alarms/GT-101/hh/shelve", H_OPERATOR, {"duration": "1h"}, 403),  # gas: not permitted
            ("/api/alarms/GT-101/hh/ack", H_VIEWER, None, 403),  # role too low
            ("/api/alarms/NOPE/hh/ack", H_OPERATOR, None, 404),
            (f"/api/alarms/{occ}/dispose", H_OPERATOR,
             {"cause": "valve leak", "action": "closed XV-101", "result": "back to normal"}, 200),
        ]
        for path, headers, body, status in calls:
            r = await c.post(path, headers=headers, json=body)
            assert r.status_code == status, (path, r.text)
        link = env.gw.notifier.sign(occ, "zhao")
        assert (await c.post(f"/ack/{link}")).status_code == 200  # one tap on the phone
        assert (await c.post("/api/alarms/GT-101%2Fhh/ack", headers={"Authorization": "Bearer wrong"})).status_code \
            == 401

        records = await env.audit()
        requests = [a for a in records if a["event"] == "request"]
        got = [(a["method"], a["route"], a["target"], a["user"], a["status"], a["result"]) for a in requests]
        assert got == [
            ("POST", "/api/alarms/{id}/ack", "PT-201/h", "ops-zhao", 200, "ok"),
            ("POST", "/api/alarms/{id}/shelve", "PT-201/h", "ops-zhao", 200, "ok"),
            ("POST", "/api/alarms/{id}/unshelve", "PT-201/h", "ops-zhao", 200, "ok"),
            ("POST", "/api/alarms/{id}/shelve", "GT-101/hh", "ops-zhao", 403, "forbidden"),
            ("POST", "/api/alarms/{id}/ack", "GT-101/hh", "screen", 403, "forbidden"),
            ("POST", "/api/alarms/{id}/ack", "NOPE/hh", "ops-zhao", 404, "not_found"),
            ("POST", "/api/alarms/{id}/dispose", str(occ), "ops-zhao", 200, "ok"),
            ("POST", "/ack/{token}", {"occurrence": occ, "alarm": "GT-101/hh"}, "zhao", 200, "ok"),
        ]
        assert all(a["client"] == "127.0.0.11" for a in records)
        fail = [a for a in records if a["event"] == "auth_failure"]
        assert [(f["result"], f["route"], f["method"]) for f in fail] == [
            ("invalid", "/api/alarms/GT-101/hh/ack", "POST")]
        # ISO time and ns of the explicit clock
        assert requests[0]["time"] == "2026-03-02T10:00:00.000Z" and requests[0]["ts"] == env.clock.w

        # private, and nothing secret in it
        audit_dir = env.ctx.audit.directory
        assert audit_dir.stat().st_mode & 0o777 == 0o700
        files = [p for _, p in env.ctx.audit.files()]
        assert files and all(p.stat().st_mode & 0o777 == 0o600 for p in files)
        raw = "".join(p.read_text() for p in files)
        for secret in (VIEWER, OPERATOR, ADMIN, link, link.split(".")[0], "Bearer", "wrong"):
            assert secret not in raw

        # admins read it back
        r = await c.get("/api/audit", params={"from": "2026-03-02T00:00:00Z", "to": "2026-03-03T00:00:00Z"},
                        headers=H_ADMIN)
        assert r.status_code == 200 and len(r.json()["records"]) == len(records) and not r.json()["truncated"]
        r = await c.get("/api/audit", params={"from": "2026-03-02T18:00:01", "to": "2026-03-03T00:00:00"},
                        headers=H_ADMIN)  # site time (UTC+8): 10:00:01 UTC is after every record
        assert r.json()["records"] == []
        r = await c.get("/api/audit", params={"limit": 2}, headers=H_ADMIN)  # default: the last 24 h
        assert len(r.json()["records"]) == 2 and r.json()["truncated"] is True
        assert (await c.get("/api/audit", headers=H_OPERATOR)).status_code == 403
        r = await c.get("/api/audit", params={"from": "2026-03-03T00:00:00Z", "to": "2026-03-02T00:00:00Z"},
                        headers=H_ADMIN)
        assert r.status_code == 400


async def test_routes_added_later_are_audited_without_code_of_their_own(tmp_path: Path) -> None:
    """A new route (another helper's test mode, calibration...) is audited by the guard;
    ``audit_target`` names its target when the path parameters do not."""
    extra = APIRouter()

    @extra.post("/api/calibration/{tag}")
    async def calibrate(tag: str, who: Operator) -> dict[str, str]:
        return {"tag": tag, "by": who.name}

    @extra.post("/api/test-mode")
    async def test_mode(request: Request, who: Operator) -> dict[str, bool]:
        audit_target(request, {"hazard_source": "HS-001", "minutes": 30})
        return {"ok": True}

    clock = FakeClock()
    gw = Gateway(config(tmp_path / "store"))
    app = build_app(gw.api_facade(), extra_routers=[extra], settings=ApiSettings(clock=clock.mono, wall=clock.wall))
    ctx = context_of(app)
    allow_body(ctx, "/api/calibration/", 256 * 1024)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("10.1.2.3", 5555))
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as c:
            assert (await c.post("/api/calibration/PT-201", headers=H_OPERATOR)).status_code == 200
            assert (await c.post("/api/test-mode", headers=H_OPERATOR)).status_code == 200
            big = b"x" * (200 * 1024)
            r = await c.post("/api/calibration/PT-201", headers=H_OPERATOR, content=big)
            assert r.status_code == 200, r.text  # this path takes up to 256 KiB
            r = await c.post("/api/test-mode", headers=H_OPERATOR, content=big)
            assert r.status_code == 413 and r.json()["error"] == "too_large"  # 64 KiB elsewhere
            r = await c.post("/api/test-mode", content=big)
            assert r.status_code == 401  # no token: refused before the body
        await asyncio.to_thread(ctx.audit.flush)
        records = await asyncio.to_thread(ctx.audit.read)
    got = [(a["route"], a["target"], a["user"], a["status"], a["client"]) for a in records if a["event"] == "request"]
    assert got == [
        ("/api/calibration/{tag}", "PT-201", "ops-zhao", 200, "10.1.2.3"),
        ("/api/test-mode", {"hazard_source": "HS-001", "minutes": 30}, "ops-zhao", 200, "10.1.2.3"),
        ("/api/calibration/{tag}", "PT-201", "ops-zhao", 200, "10.1.2.3"),
    ]  # a body refused before the app is not a call (it is in the access log and hazardgw_api_body_rejected)


def test_audit_files_are_kept_for_the_retention_and_then_deleted(tmp_path: Path) -> None:
    clock = FakeClock(dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC))
    log = AuditLog(tmp_path / "audit", 180 * 86400, wall=clock.wall)
    for _ in range(4):  # one record a day on four days
        log.record("request", client="10.0.0.1", user="zhao", method="POST", route="/x", target="t", status=200,
                   result="ok")
        log.flush()
        clock.advance(86400)
    days = [d for d, _ in log.files()]
    assert days == ["2026-01-01", "2026-01-02", "2026-01-03", "2026-01-04"]
    assert (tmp_path / "audit").stat().st_mode & 0o777 == 0o700
    # 2026-01-02 ended (01-03 00:00 UTC) 180 days before 2026-07-02 00:00: a moment later 01-01 and 01-02 go
    now = int(dt.datetime(2026, 7, 2, 0, 0, 1, tzinfo=dt.UTC).timestamp()) * 10**9
    removed = log.prune(now)
    assert [p.name for p in removed] == ["audit-2026-01-01.jsonl", "audit-2026-01-02.jsonl"]
    assert [d for d, _ in log.files()] == ["2026-01-03", "2026-01-04"]
    assert log.read(limit=10)[0]["time"].startswith("2026-01-03")
    # the writer thread prunes by itself when it starts (and once a day)
    clock.w = int(dt.datetime(2026, 12, 31, tzinfo=dt.UTC).timestamp()) * 10**9
    log.start()
    log.record("request", client="10.0.0.1", user="zhao", method="POST", route="/x", target="t", status=200,
               result="ok")
    log.flush()
    log.stop()
    assert [d for d, _ in log.files()] == ["2026-12-31"]


def test_audit_retention_is_at_least_180_days() -> None:
    def check(value: str) -> list[str]:
        text = yaml.safe_dump({"site": {"code": "S", "name": "S"}, "api": {"audit_retention": value}})
        return validate_text(text, env={}).format_errors()

    assert any("180" in e for e in check("90d"))
    assert check("400d") == [] and check("180d") == []


async def test_audit_write_failures_are_counted_not_raised(tmp_path: Path) -> None:
    blocker = tmp_path / "audit"
    blocker.write_text("a file where the directory should be")
    m = build_app(Gateway(config(tmp_path / "store")).api_facade()).state.hazardgw.metrics
    log = AuditLog(blocker, 180 * 86400, metrics=m)
    log.record("request", client="x", user=None, method="POST", route="/x", target=None, status=200, result="ok")
    log.flush()
    assert log.dropped == 1 and log.health()["ok"] is False
    assert m.registry.get_sample_value("hazardgw_api_audit_dropped_total") == 1


# ----------------------------------------------------------------------------- console


async def test_the_console_warns_when_its_token_expires_within_a_week(tmp_path: Path) -> None:
    from playwright.async_api import async_playwright, expect

    soon = dt.datetime.now(dt.UTC) + dt.timedelta(days=3)
    tokens = [*TOKENS, {"name": "temp-li", "role": "viewer", "token_sha256": hash_token(EXPIRING),
                        "expires": soon.replace(microsecond=0).isoformat()}]
    gw = Gateway(config(tmp_path / "store", tokens=tokens))
    await gw.start()
    try:
        assert gw.api is not None and gw.api.url is not None
        async with async_playwright() as p:
            browser = await p.chromium.launch(executable_path="/usr/bin/chromium",
                                              args=["--headless", "--no-sandbox", "--disable-gpu"])
            try:
                for token, lang, shown in ((EXPIRING, "en", True), (VIEWER, "en", False), (EXPIRING, "zh", True)):
                    ctx = await browser.new_context()
                    await ctx.add_init_script(f"localStorage.setItem('hazardgw.token', '{token}');"
                                              f"localStorage.setItem('hazardgw.lang', '{lang}');")
                    page = await ctx.new_page()
                    await page.goto(gw.api.url + "/")
                    line = page.locator("#token-expiry")
                    if shown:
                        await expect(line).to_be_visible(timeout=10_000)
                        await expect(line).to_contain_text("temp-li")
                        await expect(line).to_contain_text("expires on" if lang == "en" else "过期")
                    else:
                        # (a locator, not wait_for_function: that polls with eval(), which the
                        # console's CSP refuses whenever the first check finds nothing yet)
                        await line.wait_for(state="attached", timeout=10_000)
                        await expect(line).to_be_hidden()
                    await ctx.close()
            finally:
                await browser.close()
    finally:
        await gw.stop()

