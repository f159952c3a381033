"""The duty console under a flood, in headless Chromium: grouping, filters, group acknowledge,
suppressed alarms collapsed under their COMM alarm, the hazard-source strip on a phone.

A whole gateway whose gas controller GDS-B (36 detectors) cannot be reached (its Modbus
port is closed: the adapter reports comm), plus pressure alarms in two hazard sources fed
into the pipeline. The console shows one COMM row with its 36 suppressed detectors folded
under it, groups by hazard source with counts, filters by priority / state / text, and
acknowledges a group with an operator token: one journal event per alarm, same user.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

from helpers import async_wait_for
from playwright.async_api import expect
from test_api_console_e2e import ARTIFACTS, OPERATOR, VIEWER, browser, submit_token

from alerting import states as S
from devkit.services import free_port
from gateway.api import hash_token
from gateway.config import Config
from gateway.core.models import Reading, now_ns
from gateway.supervisor import Gateway

GDS = [f"GT-{i:02d}" for i in range(1, 37)]
PRESSURES = {"PT-101": "HS-001", "PT-102": "HS-001", "PT-201": "HS-002", "PT-202": "HS-002", "PT-203": "HS-002"}


def site(store: Path) -> Config:
    tags: list[dict[str, Any]] = [
        {"id": t, "name": f"LEL {t}", "kind": "combustible_gas", "gas": "CH4", "unit": "%LEL", "range": [0, 100],
         "hazard_source": "HS-001" if i < 20 else "HS-002",
         "alarms": {"hh": {"limit": 50, "priority": 1}, "h": {"limit": 25, "priority": 2}}}
        for i, t in enumerate(GDS)
    ]
    tags += [{"id": t, "name": f"Pressure {t}", "kind": "pressure", "unit": "MPa", "range": [0, 2.5],
              "hazard_source": hs, "alarms": {"h": {"limit": 1.4, "priority": 2 if t != "PT-203" else 3}}}
             for t, hs in PRESSURES.items()]
    return Config.model_validate({
        "site": {"code": "91430900DEMO0001XX", "name": "Flood test plant", "timezone": "Asia/Shanghai"},
        "hazard_sources": [{"code": "HS-001", "name": "Chlorine tank farm", "grade": 2},
                           {"code": "HS-002", "name": "LPG spheres", "grade": 3}],
        "sources": [{"id": "gds-b", "name": "GDS-B", "type": "modbus_tcp", "host": "127.0.0.1", "port": free_port(),
                     "poll_interval": "500ms", "timeout": "200ms", "backoff_max": "1s",
                     "points": [{"tag": t, "address": 2 * i, "type": "float32"} for i, t in enumerate(GDS)]}],
        "tags": tags,
        "api": {"listen": "127.0.0.1:0", "tokens": [
            {"name": "screen", "role": "viewer", "token_sha256": hash_token(VIEWER)},
            {"name": "zhao", "role": "operator", "token_sha256": hash_token(OPERATOR)}]},
        "store": {"path": str(store)},
    })


async def test_console_groups_filters_and_acknowledges_a_group(tmp_path: Path) -> None:
    gw = Gateway(site(tmp_path / "store"))
    await gw.start()
    errors: list[str] = []
    try:
        await async_wait_for(lambda: gw.alarms.get("gds-b/comm").state == S.UNACK, timeout=10, desc="COMM raised")
        await gw.pipeline.emit([Reading(t, 1.8, now_ns(), "good") for t in PRESSURES])
        await async_wait_for(lambda: len(gw.alarms.active()) == 6, timeout=5, desc="COMM + 5 pressure alarms")
        assert gw.api is not None and gw.api.url is not None
        url = gw.api.url
        async with browser() as b:
            ctx = await b.new_context(viewport={"width": 1440, "height": 900}, locale="en-US")
            await ctx.add_init_script(f"localStorage.setItem('hazardgw.token', '{VIEWER}');"
                                      "localStorage.setItem('hazardgw.lang', 'en')")
            page = await ctx.new_page()
            page.on("pageerror", lambda e: errors.append(str(e)))
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            await page.goto(url + "/")

            # one row for the lost controller, naming it and what it cut off; its 36 detectors folded
            comm = page.locator('#alarm-list [data-alarm="gds-b/comm"]')
            await expect(comm).to_be_visible(timeout=10_000)
            await expect(comm.locator(".desc")).to_have_text(
                "GDS-B · 36 detectors, major hazard sources HS-001, HS-002")
            await expect(comm.locator(".where")).to_contain_text("HS-001")
            await expect(comm.locator(".where")).to_contain_text("source gds-b")
            await expect(page.locator('#alarm-list [data-alarm="PT-201/h"] .where')).to_contain_text(
                "HS-002 LPG spheres")
            toggle = comm.locator("[data-kids]")
            await expect(toggle).to_have_text("36 suppressed ▸")
            assert await page.locator('[data-alarm="GT-01/bad"]').count() == 0  # folded, not in the lists
            await expect(page.locator("#tile-GT-01")).to_have_attribute("data-alarm", "1")  # the COMM alarm's colour
            await expect(page.locator("#suppressed-box")).to_be_hidden()
            await toggle.click()
            kids = page.locator('[data-kids-of="gds-b/comm"] .alarm')
            await expect(kids).to_have_count(36)
            await expect(page.locator('[data-kids-of="gds-b/comm"] [data-alarm="GT-01/bad"]')).to_have_attribute(
                "data-state", "DSUPR")
            await page.locator('#alarm-list [data-kids="gds-b/comm"]').click()
            await expect(kids).to_have_count(0)

            # group by hazard source: one section per source with counts, worst priority first
            await page.select_option("#f-group", "hs")
            groups = page.locator("#alarm-list > section.group")
            await expect(groups).to_have_count(2)
            assert await groups.evaluate_all("gs => gs.map(g => g.dataset.group)") == ["HS-001", "HS-002"]
            await expect(page.locator('[data-group="HS-001"] .g-count')).to_have_text("3 alarms, 3 unacked")
            await expect(page.locator('[data-group="HS-002"] .g-count')).to_have_text("3 alarms, 3 unacked")
            await page.select_option("#f-group", "condition")
            await expect(groups).to_have_count(2)
            await expect(page.locator('[data-group="comm"] .g-name')).to_have_text("COMM Comm lost")
            await page.select_option("#f-group", "hs")

            # filters: priority, text, state
            await page.click('[data-prio="1"]')
            await expect(page.locator('#alarm-list [data-alarm="gds-b/comm"]')).to_have_count(0)
            await expect(page.locator("#alarm-shown")).to_have_text("showing 5 of 6")
            await page.click('[data-prio="1"]')
            await page.fill("#f-text", "pt-20")
            await expect(page.locator("#alarm-list .alarm")).to_have_count(3)
            await page.fill("#f-text", "")
            await page.select_option("#f-hs", "HS-002")  # its 3 alarms and the COMM alarm that also covers it
            await expect(page.locator("#alarm-list .alarm")).to_have_count(4)
            await expect(page.locator('[data-group="HS-001"] .alarm')).to_have_count(1)
            await page.select_option("#f-hs", "")

            # acknowledge the HS-002 group: operator token asked, then one action for its 3 alarms
            await page.locator('[data-group="HS-002"] [data-action="ack-group"]').click()
            await submit_token(page, OPERATOR, "operator")
            for a in ("PT-201/h", "PT-202/h", "PT-203/h"):
                await expect(page.locator(f'[data-alarm="{a}"]')).to_have_attribute("data-state", "ACKED")
            await expect(page.locator('[data-alarm="PT-101/h"]')).to_have_attribute("data-state", "UNACK")
            await expect(page.locator('[data-group="HS-002"] .g-count')).to_have_text("3 alarms, 0 unacked")
            await expect(page.locator('[data-group="HS-002"] [data-action="ack-group"]')).to_have_count(0)
            await page.select_option("#f-state", "unack")
            await expect(page.locator("#alarm-list .alarm")).to_have_count(3)
            await page.select_option("#f-state", "")
            await page.screenshot(path=str(ARTIFACTS / "console-flood.png"))

            # the journal: one acked event per alarm, same user, none for the others
            j = gw.alarms.journal
            assert j is not None
            rows: list[dict[str, Any]] = await async_wait_for(
                lambda: asyncio.to_thread(j.events, kinds=["acked"]), timeout=10)
            assert sorted((r["alarm"], r["user"]) for r in rows) == [
                ("PT-201/h", "zhao"), ("PT-202/h", "zhao"), ("PT-203/h", "zhao")]

            # a phone: the hazard-source status stays in view at the top while the list scrolls
            phone = await b.new_context(viewport={"width": 390, "height": 844}, device_scale_factor=2,
                                        is_mobile=True, has_touch=True, locale="zh-CN")
            await phone.add_init_script(f"localStorage.setItem('hazardgw.token', '{VIEWER}');"
                                        "localStorage.setItem('hazardgw.lang', 'zh')")
            m = await phone.new_page()
            await m.goto(url + "/")
            chip = m.locator('[data-hs-chip="HS-001"]')
            await expect(chip).to_have_class(re.compile(r"\bred\b"))
            await expect(chip).to_contain_text("红")
            await m.evaluate("window.scrollTo(0, document.body.scrollHeight)")
            await async_wait_for(lambda: m.evaluate("window.scrollY > 300"), timeout=5)
            box = await chip.bounding_box()
            assert box is not None and 0 <= box["y"] < 200, box
            await m.screenshot(path=str(ARTIFACTS / "console-flood-phone.png"))
            # the list fits: one row per alarm, not one per detector
            height = await m.evaluate("document.getElementById('alarm-list').getBoundingClientRect().height")
            assert height < 1500, height
            await phone.close()
            await ctx.close()
        assert [e for e in errors if "status of 403" not in e] == [], errors
    finally:
        await gw.stop()
