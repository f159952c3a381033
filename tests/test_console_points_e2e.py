"""The console's point table and test mode in a real browser (issue 17).

A gateway polls a pymodbus plant (devkit.simulator.modbus); headless Chromium opens the
console with an operator token, switches to the point table and finds every tag with its
source, Modbus address and raw register words, value, quality and age; searches, filters
(calibration overdue) and sorts; puts GT-1 in test from its row, sees the gas alarm marked
TEST without the horn, the tile badged TEST; ends the test and sees the alarm still present
raised for real (horn); records a calibration; and reads the table on a phone as cards.
Screenshots go to tests/artifacts/.
"""

from __future__ import annotations

import re
from pathlib import Path

from helpers import async_wait_for
from playwright.async_api import expect
from test_api_console_e2e import ARTIFACTS, OPERATOR, browser

from devkit.services import free_port
from devkit.simulator.modbus import ModbusPlantServer
from gateway.api import hash_token
from gateway.config import Config
from gateway.supervisor import Gateway


def site(port: int, store: Path) -> Config:
    return Config.model_validate({
        "site": {"code": "91430900DEMO0001XX", "name": "Point table site", "timezone": "Asia/Shanghai"},
        "hazard_sources": [{"code": "HS-001", "name": "LPG spheres", "grade": 2}],
        "sources": [{"id": "gds-1", "type": "modbus_tcp", "host": "127.0.0.1", "port": port, "poll_interval": "200ms",
                     "timeout": "500ms", "points": [
                         {"tag": "GT-1", "table": "holding", "address": 0, "type": "float32"},
                         {"tag": "GT-2", "table": "input", "address": 0, "type": "uint16", "scale": 0.1},
                         {"tag": "PT-1", "table": "input", "address": 1, "type": "int16", "scale": 0.01}]}],
        "tags": [
            {"id": "GT-1", "name": "LEL sphere bottom", "hazard_source": "HS-001", "kind": "combustible_gas",
             "gas": "LPG", "unit": "%LEL", "range": [0, 100],
             "alarms": {"h": {"limit": 25, "priority": 2}, "hh": {"limit": 50, "priority": 1}}},
            {"id": "GT-2", "name": "H2S pump house", "hazard_source": "HS-001", "kind": "toxic_gas", "gas": "H2S",
             "unit": "mg/m3", "range": [0, 100], "alarms": {"h": {"limit": 10}, "hh": {"limit": 20, "priority": 1}},
             "calibration": {"last": "2025-01-10", "interval": "365d"}},
            {"id": "PT-1", "name": "Sphere pressure", "hazard_source": "HS-001", "kind": "pressure", "unit": "MPa",
             "range": [0, 2.5]},
        ],
        "api": {"listen": "127.0.0.1:0",
                "tokens": [{"name": "zhao", "role": "operator", "token_sha256": hash_token(OPERATOR)}]},
        "store": {"path": str(store)},
    })


async def test_point_table_test_mode_and_calibration_in_chromium(tmp_path: Path) -> None:
    cfg = site(free_port(), tmp_path / "store")
    src = cfg.sources[0]
    plant = ModbusPlantServer([src], cfg.tag_map())
    plant.set_value("GT-1", 20.0)  # float32 20.0 = 0x41A0 0x0000
    plant.set_value("GT-2", 1.5)  # uint16 15 = 0x000F
    plant.set_value("PT-1", 1.2)
    await plant.start()
    gw = Gateway(cfg)
    await gw.start()
    errors: list[str] = []
    try:
        assert gw.api is not None and gw.api.url is not None
        url = gw.api.url
        async with browser() as b:
            ctx = await b.new_context(viewport={"width": 1440, "height": 900}, locale="en-US")
            await ctx.add_init_script(f"localStorage.setItem('hazardgw.token', '{OPERATOR}');"
                                      "localStorage.setItem('hazardgw.lang', 'en')")
            page = await ctx.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await page.goto(url + "/")
            await expect(page.locator("#conn")).to_have_class(re.compile(r"\bon\b"), timeout=10_000)

            # the point table: one row per tag, with where it is read and the raw register words
            await page.click("#tab-points")
            await expect(page.locator("#points-view")).to_be_visible()
            await expect(page.locator("#sources")).to_be_hidden()
            rows = page.locator("#points-body tr")
            await expect(rows).to_have_count(3)
            gt1 = page.locator('tr[data-point="GT-1"]')
            await expect(gt1.locator('td[data-col="raw"]')).to_have_text("0x41A0 0x0000", timeout=10_000)
            await expect(gt1.locator('td[data-col="where"]')).to_have_text("holding:0 (40001) float32 ABCD, unit 1")
            await expect(gt1.locator('td[data-col="source"]')).to_have_text("gds-1")
            await expect(gt1.locator('td[data-col="value"]')).to_contain_text("20")
            await expect(gt1.locator('td[data-col="quality"]')).to_have_text("good")
            await expect(gt1.locator('td[data-col="age"]')).to_have_text(re.compile(r"^\d+ s$"))
            gt2 = page.locator('tr[data-point="GT-2"]')
            await expect(gt2.locator('td[data-col="raw"]')).to_have_text("0x000F")
            await expect(gt2.locator('td[data-col="upkeep"]')).to_contain_text("calibration overdue 2026-01-10")

            # search, filter, sort
            await page.fill("#p-text", "h2s")
            await expect(rows).to_have_count(1)
            await page.fill("#p-text", "")
            await page.select_option("#p-state", "cal")
            await expect(rows).to_have_count(1)
            await expect(rows.first).to_have_attribute("data-point", "GT-2")
            await page.select_option("#p-state", "")
            await page.click('th[data-col="value"]')
            await expect(page.locator('th[data-col="value"]')).to_have_attribute("aria-sort", "ascending")
            order = await page.eval_on_selector_all("#points-body tr", "rs => rs.map(r => r.dataset.point)")
            assert order == ["PT-1", "GT-2", "GT-1"]  # 1.2, 1.5, 20
            await page.click('th[data-col="value"]')
            await expect(rows.first).to_have_attribute("data-point", "GT-1")

            # GT-1 into test from its row, then gas: the alarm is marked TEST and the horn stays off
            await gt1.locator('[data-action="test"]').click()
            await expect(page.locator("#dlg-test")).to_be_visible()
            await page.select_option("#test-duration", "30m")
            await page.fill("#test-comment", "bump test 50 %LEL")
            await page.click("#test-ok")
            await expect(page.locator("#toast")).to_contain_text("In test mode: 1")
            assert gw.testmode.testing == {"GT-1"}
            await expect(gt1.locator('td[data-col="upkeep"] .chip.test')).to_contain_text("TEST", timeout=10_000)
            await expect(gt1).to_have_attribute("data-test", "1")
            plant.set_value("GT-1", 60.0)
            alarm = page.locator('[data-alarm="GT-1/hh"]')
            await expect(alarm).to_have_attribute("data-test", "1", timeout=10_000)
            await expect(alarm.locator(".chip.test")).to_have_text("TEST")
            await expect(page.locator("#summary [data-test-alarms]")).to_be_visible()
            assert await page.get_attribute("body", "data-horn") == "off"  # a bump test does not sound the horn
            await expect(gt1.locator('td[data-col="alarm"]')).to_contain_text("TEST")
            await page.screenshot(path=str(ARTIFACTS / "console-points.png"))
            # the tiles show it too
            await page.click("#tab-tiles")
            tile = page.locator("#tile-GT-1")
            await expect(tile).to_have_class(re.compile(r"\bin-test\b"))
            await expect(tile.locator(".t-test")).to_be_visible()
            await expect(page.locator("#tile-GT-2 .t-cal")).to_have_text("calibration overdue")
            await page.click("#tab-points")

            # end the test: the gas is still there, so the alarm is raised for real (horn)
            await gt1.locator('[data-action="end-test"]').click()
            await expect(page.locator("#toast")).to_contain_text("Test ended: GT-1 · pass")
            await async_wait_for(lambda: gw.testmode.testing == frozenset(), timeout=5)
            await expect(alarm).not_to_have_attribute("data-test", "1", timeout=10_000)
            await expect(page.locator("body")).to_have_attribute("data-horn", "on")
            assert gw.alarms.get("GT-1/hh").test is False

            # a calibration recorded from the row: GT-2 no longer overdue
            await gt2.locator('[data-action="calibrate"]').click()
            await expect(page.locator("#dlg-cal")).to_be_visible()
            await page.fill("#cal-comment", "cert 2026-118")
            await page.click("#cal-ok")
            await expect(page.locator("#toast")).to_contain_text("Calibration recorded: GT-2")
            await expect(gt2.locator('td[data-col="upkeep"]')).to_contain_text("calibrated until", timeout=10_000)
            assert gw.calibrations.overdue() == set()
            await ctx.close()

            # a phone: the rows are cards with their labels
            phone = await b.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True,
                                        has_touch=True, locale="zh-CN")
            await phone.add_init_script(f"localStorage.setItem('hazardgw.token', '{OPERATOR}');"
                                        "localStorage.setItem('hazardgw.points', '{\"view\": \"points\"}')")
            mpage = await phone.new_page()
            mpage.on("pageerror", lambda e: errors.append(str(e)))
            await mpage.goto(url + "/")
            card = mpage.locator('tr[data-point="GT-1"]')
            await expect(card.locator('td[data-col="raw"]')).to_have_text(re.compile("^0x"), timeout=10_000)
            assert await mpage.eval_on_selector("#points thead", "e => getComputedStyle(e).display") == "none"
            label = await mpage.eval_on_selector('tr[data-point="GT-1"] td[data-col="raw"]',
                                                 "e => getComputedStyle(e, '::before').content")
            assert label == '"原始值"'
            box = await card.bounding_box()
            assert box is not None and box["width"] <= 390
            await mpage.screenshot(path=str(ARTIFACTS / "console-points-phone.png"), full_page=True)
            await phone.close()
        assert errors == [], errors
    finally:
        await gw.stop()
        await plant.stop()
