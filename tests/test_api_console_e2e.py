"""End to end in a real browser: chlorine leak -> MQTT -> gateway -> SSE -> duty console -> acknowledge.

A whole gateway runs with a real mosquitto and the plant simulator's chlorine-leak scenario
(``Plant`` + ``MqttPublisher``, time-accelerated so the ramp crosses GT-101's HH in seconds
instead of a minute). Debian's headless Chromium, driven by Playwright, opens the console,
enters a viewer token, sees the alarm appear (row, tile colour, red hazard source, horn),
tries to acknowledge, is asked for an operator token, enters it and sees the state change.
Screenshots go to tests/artifacts/ (gitignored).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path

from helpers import async_wait_for
from playwright.async_api import Browser, Page, async_playwright, expect

from alerting import states as S
from devkit.services import Mosquitto
from devkit.simulator.mqtt import MqttPublisher
from devkit.simulator.plant import Plant
from gateway.api import hash_token
from gateway.config import Config
from gateway.supervisor import Gateway
from gateway.validate import load_config

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
VIEWER, OPERATOR = "viewer-token-e2e", "operator-token-e2e"
TAGS = [
    "GT-101", "GT-102", "GT-103", "GT-104", "PT-101", "TT-101", "LT-101", "XV-101.CLOSED",
    "GT-201", "GT-202", "PT-201", "TT-201", "LT-201", "AT-201",
]
START_T, SPEED = 38.0, 6.0  # scenario seconds: ramp at 47 % at the start, 6x real time


def key(tag: str) -> str:
    return re.sub(r"\W", "_", tag)


def site_config(mqtt_url: str, store: Path) -> Config:
    demo = load_config(ROOT / "config" / "demo-site.yaml", env={}).model_dump(mode="json", exclude_none=True)
    return Config.model_validate(
        {
            "site": demo["site"],
            "hazard_sources": demo["hazard_sources"],
            "tags": [t for t in demo["tags"] if t["id"] in TAGS],
            "votes": [v for v in demo["votes"] if set(v["tags"]) <= set(TAGS)],
            "sources": [
                {
                    "id": "plant-mqtt",
                    "type": "mqtt",
                    "url": mqtt_url,
                    "subscriptions": [
                        {
                            "topic": "plant/+/telemetry",
                            "qos": 0,
                            "format": "json",
                            "points": [{"tag": t, "path": f"$.d.{key(t)}", "ts_path": "$.ts"} for t in TAGS],
                        }
                    ],
                }
            ],
            "api": {
                "listen": "127.0.0.1:0",
                "tokens": [
                    {"name": "screen", "role": "viewer", "token_sha256": hash_token(VIEWER)},
                    {"name": "zhao", "role": "operator", "token_sha256": hash_token(OPERATOR)},
                ],
            },
            "store": {"path": str(store)},
        }
    )


async def play(config: Config, stop: asyncio.Event) -> None:
    """The simulator's chlorine-leak scenario on MQTT, time-accelerated."""
    plant = Plant(config, "chlorine-leak", seed=7)
    pub = MqttPublisher(config)
    await pub.start()
    t0 = time.monotonic()
    try:
        while not stop.is_set():
            t = START_T + (time.monotonic() - t0) * SPEED
            frame = plant.values_at(min(t, 120.0))  # hold at the peak once there
            await pub.publish(frame.values, time.time_ns() // 1_000_000, frame.effects.silent_tags)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.25)
    finally:
        await pub.stop()


@contextlib.asynccontextmanager
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as p:
        b = await p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            await b.close()


async def submit_token(page: Page, token: str, expect_text: str) -> None:
    dialog = page.locator("#dlg-token")
    await expect(dialog).to_be_visible()
    await expect(page.locator("#token-msg")).to_contain_text(expect_text)
    await page.fill("#token-input", token)
    await page.click("#token-ok")
    await expect(dialog).to_be_hidden()


async def test_console_shows_chlorine_leak_and_operator_acknowledges(mosquitto: Mosquitto, tmp_path: Path) -> None:
    cfg = site_config(mosquitto.url, tmp_path / "store")
    gw = Gateway(cfg)
    await gw.start()
    stop = asyncio.Event()
    sim = asyncio.create_task(play(cfg, stop))
    errors: list[str] = []
    try:
        assert gw.api is not None and gw.api.url is not None
        url = gw.api.url
        async with browser() as b:
            ctx = await b.new_context(viewport={"width": 1440, "height": 900}, locale="en-US")
            page = await ctx.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await page.goto(url + "/")

            # first visit: the console asks for a token; a viewer token is enough to watch
            await submit_token(page, VIEWER, "access token")
            await expect(page.locator("#conn")).to_have_class(re.compile(r"\bon\b"), timeout=10_000)
            await expect(page.locator("#site-name")).to_contain_text("Demo Chemical Co.")

            # the leak: GT-101 crosses H then HH; the HH alarm appears, unacknowledged, priority 1
            row = page.locator('[data-alarm="GT-101/hh"]')
            await expect(row).to_be_visible(timeout=20_000)
            await expect(row).to_have_attribute("data-state", "UNACK")
            await expect(row.locator(".prio")).to_contain_text("P1")
            await expect(page.locator('[data-alarm="GT-101/h"]')).to_be_visible()
            await expect(page.locator("#tile-GT-101")).to_have_attribute("data-alarm", "1")
            await expect(page.locator('section[data-hs="HS-001"]')).to_have_class(re.compile(r"\bred\b"))
            await expect(page.locator('section[data-hs="HS-001"] .hs-status')).to_have_text("RED")
            await expect(page.locator("body")).to_have_attribute("data-horn", "on")  # the P1 alarm sounds
            assert await page.evaluate("window.hazardgw.horns") >= 1
            # a console opened while the P1 alarm stands (its raise came before the page) sounds too
            late = await ctx.new_page()  # same browser profile: the token is remembered
            await late.goto(url + "/")
            await expect(late.locator("#conn")).to_have_class(re.compile(r"\bon\b"), timeout=10_000)
            await expect(late.locator('[data-alarm="GT-101/hh"]')).to_have_attribute("data-state", "UNACK")
            await expect(late.locator("body")).to_have_attribute("data-horn", "on")
            await late.close()
            # gas alarms cannot be shelved: no shelve button on them
            assert await row.locator('[data-action="shelve"]').count() == 0
            # the tile's live value (throttled to 1/s, so it may trail the alarm by a second) passes HH
            async def tile_above_hh() -> bool:
                v = await page.locator("#tile-GT-101").get_attribute("data-value")
                return bool(v) and float(v or 0) >= 2.0

            await async_wait_for(tile_above_hh, timeout=5, desc="GT-101 tile value >= HH limit 2.0")

            # acknowledge: the viewer token may not, so the console asks for an operator token
            await row.locator('[data-action="ack"]').click()
            await submit_token(page, OPERATOR, "operator")
            await expect(row).to_have_attribute("data-state", "ACKED", timeout=10_000)
            await expect(row).to_contain_text("acked by zhao")
            await expect(row.locator('[data-action="ack"]')).to_have_count(0)
            # the horn keeps sounding while another P1 alarm (the 2oo4 vote) is unacknowledged; Silence stops it
            await expect(page.locator('[data-alarm="VOTE-HS001-CL2/vote"]')).to_have_attribute("data-state", "UNACK")
            await expect(page.locator("body")).to_have_attribute("data-horn", "on")
            await page.click("#btn-silence")
            await expect(page.locator("body")).to_have_attribute("data-horn", "off")

            # the gateway agrees, and the journal names the operator token
            view = gw.alarms.get("GT-101/hh")
            assert (view.state, view.acked_by) == (S.ACKED, "zhao")
            assert gw.alarms.journal is not None
            rows = await async_wait_for(
                lambda: asyncio.to_thread(gw.alarms.journal.events, alarm="GT-101/hh", kinds=["acked"]), timeout=10
            )
            assert rows[0]["user"] == "zhao"

            # trends filled in; then the screenshots (control-room size and a phone)
            await async_wait_for(lambda: page.evaluate(
                "document.querySelectorAll('#tile-GT-101 svg.spark polyline').length"), timeout=10)
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            await page.mouse.move(0, 0)
            await page.screenshot(path=str(ARTIFACTS / "console.png"), full_page=False)

            # Chinese
            await page.click("#btn-lang")
            await expect(page.locator("#h-alarms")).to_contain_text("当前报警")
            await expect(page.locator('section[data-hs="HS-001"] .hs-status')).to_have_text("红")
            await page.screenshot(path=str(ARTIFACTS / "console-zh.png"))

            # a failed action is explained in Chinese (never "操作失败: Failed to fetch")
            vote = page.locator('[data-alarm="VOTE-HS001-CL2/vote"] [data-action="ack"]')
            await page.route("**/api/alarms/**", lambda route: route.abort())
            await vote.click()
            toast = page.locator("#toast")
            await expect(toast).to_have_text(re.compile(r"^操作失败：无法连接网关（网络中断或网关未运行）"))
            await page.unroute("**/api/alarms/**")
            await page.route("**/api/alarms/**", lambda route: route.fulfill(
                status=409, content_type="application/json",
                body='{"error": "invalid_transition", "detail": "cannot ack in state ACKED"}'))
            await vote.click()
            await expect(toast).to_have_text("操作失败：当前状态不允许此操作（可能已被他人处理）")
            await page.unroute("**/api/alarms/**")

            phone = await b.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                        is_mobile=True, has_touch=True, locale="zh-CN")
            await phone.add_init_script(f"localStorage.setItem('hazardgw.token', '{VIEWER}')")
            mpage = await phone.new_page()
            await mpage.goto(url + "/")
            await expect(mpage.locator('[data-alarm="GT-101/hh"]')).to_have_attribute("data-state", "ACKED")
            await mpage.screenshot(path=str(ARTIFACTS / "console-phone.png"))
            await phone.close()
            await ctx.close()
        assert (ARTIFACTS / "console.png").stat().st_size > 10_000
        # the expected failures: the viewer token's acknowledge attempt (403), the two made to fail above
        expected = ("status of 403", "status of 409", "net::ERR_FAILED")
        assert [e for e in errors if not any(x in e for x in expected)] == [], errors
    finally:
        stop.set()
        await sim
        await gw.stop()

