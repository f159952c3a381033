"""``GET/POST /ack/{token}``: a FastAPI app holding only ``ack_router``, driven with httpx.

The links come from real pushes received by a local HTTP receiver, so these tests also prove
that the link in a push works.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from helpers import async_wait_for
from test_notify_support import Clock, Harness, Receiver, site_config

from gateway.api.ack import AckLinks, ack_router

LINK = re.compile(r"http://127\.0\.0\.1:8080(/ack/[\w-]+\.[\w-]+)")


@dataclass
class Env:
    rx: Receiver
    h: Harness
    clock: Clock
    client: httpx.AsyncClient

    async def link(self, person: str, n: int = 1, title: str = "GT-101") -> str:
        """The ack link of the latest push to ``person`` whose title contains ``title``."""
        hits = await self.rx.wait(f"/{person}", n)
        m = LINK.search(next(h.message for h in reversed(hits) if title in h.title))
        assert m is not None
        return m.group(1)


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    rx = await Receiver().start()
    clock = Clock("2026-03-02 10:00")
    h = await Harness(site_config(rx, tmp_path), clock).start()
    app = FastAPI()
    app.include_router(ack_router(AckLinks.of(h.notifier)))
    client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://127.0.0.1:8080")
    try:
        yield Env(rx, h, clock, client)
    finally:
        await client.aclose()
        await h.stop()
        await rx.stop()


async def test_get_shows_the_alarm_and_a_confirm_button(env: Env) -> None:
    env.h.feed("GT-101", 2.6)
    path = await env.link("zhao", 2, "高高报")
    r = await env.client.get(path)
    assert r.status_code == 200
    html = r.text
    for part in (
        "液氯储罐区 (HS-001)",
        "GT-101 T-101 北侧氯气探测器",
        "2.6 ppm",
        "2 ppm",
        "报警未确认",
        '<form method="post">',
        "确认报警",
        "赵磊 (zhao)",
        'name="viewport"',
    ):
        assert part in html, part
    assert "<script" not in html and "http" not in html.replace("http://127.0.0.1", "")  # no CDN, no script
    assert r.headers["cache-control"] == "no-store" and r.headers["referrer-policy"] == "no-referrer"
    assert env.h.engine.get("GT-101/hh").state == "UNACK"  # a GET (a link preview) never acknowledges


async def test_post_acknowledges_as_that_person_once(env: Env) -> None:
    env.h.feed("GT-101", 2.6)
    path = await env.link("zhao", 2, "高高报")
    r = await env.client.post(path)
    assert r.status_code == 200 and "已确认" in r.text and "赵磊 (zhao)" in r.text
    v = env.h.engine.get("GT-101/hh")
    assert (v.state, v.acked_by) == ("ACKED", "zhao")
    ev = env.h.engine.history(1, alarm="GT-101/hh")[0]
    assert (ev.event, ev.user, ev.comment) == ("acked", "zhao", "one-tap ack link")
    await env.h.journal.stop()  # flush the engine's journal, then read the durable record
    occ = env.h.journal.occurrences(occurrence=v.occurrence)[0]
    assert occ["acked_by"] == "zhao" and occ["acked_wall"] == env.clock.wall()
    again = await env.client.post(path)
    assert again.status_code == 409 and "已使用" in again.text
    assert (await env.client.get(path)).status_code == 409
    assert env.h.metric("hazardgw_notify_link_acks_total", {"result": "acked"}) == 1
    assert env.h.metric("hazardgw_notify_link_acks_total", {"result": "used"}) == 1


async def test_ack_stops_the_escalation(env: Env) -> None:
    env.h.feed("GT-101", 1.5)  # H, priority 2
    path = await env.link("zhao")
    assert (await env.client.post(path)).status_code == 200
    await env.h.settle()
    env.clock.advance(900.0)
    await env.h.settle()
    assert env.rx.on("/chen") == [] and env.rx.on("/li") == []
    esc = await env.h.notifier.db.run(env.h.notifier.store.escalations)
    assert esc[0]["status"] == "stopped" and esc[0]["reason"] == "acked by zhao"


async def test_the_link_is_single_use_across_a_restart(env: Env, tmp_path: Path) -> None:
    env.h.feed("GT-101", 1.5)
    path = await env.link("zhao")
    assert (await env.client.post(path)).status_code == 200
    await env.h.stop()
    h2 = await Harness(env.h.config, env.clock).start()
    try:
        app = FastAPI()
        app.include_router(ack_router(AckLinks.of(h2.notifier)))
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://x") as c:
            r = await c.post(path)
        assert r.status_code == 409 and "已使用" in r.text
    finally:
        await h2.stop()
    env.h = await Harness(env.h.config, env.clock).start()  # for the fixture's teardown


async def test_expired_link(env: Env) -> None:
    env.h.feed("GT-101", 1.5)
    path = await env.link("zhao")
    env.clock.advance(24 * 3600.0)  # ack_link_ttl
    r = await env.client.post(path)
    assert r.status_code == 410 and "已过期" in r.text
    assert env.h.engine.get("GT-101/h").state == "UNACK"


async def test_tampered_and_garbage_links(env: Env) -> None:
    env.h.feed("GT-101", 1.5)
    path = await env.link("zhao")
    tampered = path[:-2] + ("AA" if not path.endswith("AA") else "BB")
    for p in (tampered, "/ack/nonsense", "/ack/" + "x" * 600):
        r = await env.client.post(p)
        assert r.status_code == 403 and "无效" in r.text, p
    assert env.h.engine.get("GT-101/h").state == "UNACK"


async def test_a_link_for_a_closed_occurrence_never_acks_the_next_one(env: Env) -> None:
    env.h.feed("GT-101", 1.5)
    old = await env.link("zhao")
    env.h.engine.ack("GT-101/h", "console")
    env.h.feed("GT-101", 0.5)  # returns: ACKED -> NORM, occurrence closed
    env.h.feed("GT-101", 1.6)  # a new occurrence of the same alarm
    new_occ = env.h.engine.get("GT-101/h").occurrence
    await env.h.settle()
    await env.rx.wait("/zhao", 2)
    r = await env.client.post(old)
    assert r.status_code == 409 and "已结束" in r.text
    v = env.h.engine.get("GT-101/h")
    assert (v.occurrence, v.state) == (new_occ, "UNACK")
    r2 = await env.client.post(await env.link("zhao", 2))
    assert r2.status_code == 200 and env.h.engine.get("GT-101/h").state == "ACKED"


async def test_already_acknowledged_by_someone_else(env: Env) -> None:
    env.h.feed("GT-101", 2.6)
    path = await env.link("zhao", 2, "高高报")
    env.h.engine.ack("GT-101/hh", "li")
    page = await env.client.get(path)
    assert page.status_code == 409 and "李娜 (li)" in page.text and "<form" not in page.text
    r = await env.client.post(path)
    assert r.status_code == 409 and "已由 李娜 (li)" in r.text


async def test_english_page_for_an_english_speaker(env: Env) -> None:
    env.h.feed("GT-101", 2.6)
    env.clock.advance(120.0)  # escalation_p1 step 1: technical = li (language en)
    await env.h.settle()
    path = await env.link("li")
    page = await env.client.get(path)
    assert page.status_code == 200 and "HIGH-HIGH" in page.text and ">Acknowledge</button>" in page.text
    r = await env.client.post(path)
    assert r.status_code == 200 and "Acknowledged by 李娜 (li)" in r.text
    assert env.h.engine.get("GT-101/hh").acked_by == "li"
    await async_wait_for(lambda: env.h.notifier.health()["escalations_open"] == 1)  # only the H alarm still runs
