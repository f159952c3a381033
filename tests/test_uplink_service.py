"""The uplink service with other profiles: ``tcp-aes`` end to end through a gateway (against
the reference receiver), a profile loaded from outside the package, meta on a config change."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from helpers import async_wait_for
from test_uplink_mqtt import config_text, emit

from devkit.receivers.tcp_aes import AesTcpPlatform
from gateway.config import Config
from gateway.supervisor import Gateway
from gateway.validate import validate_text

KEY = bytes(range(32))


def cfg(uplink: dict[str, Any], store: Path, **changes: Any) -> Config:
    text = config_text(uplink, store)
    if changes:
        doc = json.loads(text)
        doc.update(changes)
        text = json.dumps(doc)
    res = validate_text(text, env={**os.environ, "UPLINK_KEY": KEY.hex()})
    assert res.config is not None, [p.format("cfg") for p in res.errors]
    return res.config


def aes_uplink(port: int) -> dict[str, Any]:
    return {"profile": "tcp-aes", "url": f"tcp://127.0.0.1:{port}", "period": "1s", "heartbeat": "1s",
            "username": "gw", "password": "pw", "reconnect_max": "1s",
            "options": {"key": "${UPLINK_KEY}", "key_id": "k1"}}


async def test_tcp_aes_through_a_gateway_with_a_dropped_connection(tmp_path: Path) -> None:
    platform = AesTcpPlatform(KEY, key_id="k1", username="gw", password="pw")
    port = await platform.start()
    gw = Gateway(cfg(aes_uplink(port), tmp_path))
    await gw.start()
    try:
        await async_wait_for(lambda: any(r.type == "meta" for r in platform.received), timeout=10)
        platform.drop_after = 2  # the connection dies without acking: the gateway re-sends
        for v in (1.5, 0.1, 1.5):
            await emit(gw, "GT-101", v)
        await emit(gw, "TT-202", 20.5)
        await async_wait_for(lambda: len([r for r in platform.received if r.type == "alarm"]) >= 3, timeout=15)
        await async_wait_for(lambda: sum(r.type == "realtime" for r in platform.received) >= 3, timeout=15)
        await async_wait_for(lambda: any(r.type == "heartbeat" for r in platform.received), timeout=15)
    finally:
        await gw.stop()
        await platform.stop()
    assert platform.logins >= 2  # logged in again after the drop
    ids = [r.payload["msgId"] for r in platform.received]
    assert platform.drop_after is None  # the drop happened
    assert len(ids) > len(set(ids))  # the unacknowledged frame was re-sent (at-least-once, same msgId)
    unique: dict[str, Any] = {}
    for r in platform.received:
        unique.setdefault(r.payload["msgId"], r)
    alarms = [r.payload for r in unique.values() if r.type == "alarm"]
    assert [(a["event"], a["alarmType"]) for a in alarms] == [("raised", "H"), ("cleared", "H"), ("raised", "H")]
    rt = [r.payload["collectTs"] for r in unique.values() if r.type == "realtime"]
    assert rt == sorted(rt)
    last = {i["tagCode"]: i for i in [r for r in unique.values() if r.type == "realtime"][-1].payload["data"]}
    assert last["TT-202"]["value"] == 20.5 and last["GT-101"]["alarmStatus"] == "H"


async def test_a_profile_from_outside_the_package_and_its_failures_are_counted(tmp_path: Path) -> None:
    # a module:Class profile is resolved, validated and used like a built-in one (no platform
    # listening here: everything waits in the spool)
    up = {"profile": "uplink_test_profiles:FlakyRealtimeProfile", "url": "mqtt://127.0.0.1:1", "period": "1s",
          "heartbeat": "60s", "reconnect_max": "1s"}
    gw = Gateway(cfg(up, tmp_path))
    await gw.start()
    try:
        await emit(gw, "TT-202", 21.0)
        await async_wait_for(lambda: gw.uplink is not None and gw.uplink.build_errors >= 2, timeout=10)
        await emit(gw, "GT-101", 1.5)  # alarms still go into the spool while realtime building fails
        h = gw.health()["components"]["uplink"]
        assert h["build_errors"] >= 2 and h["backlog"] >= 2  # meta + realtime + the alarm, waiting
        text = (await _metrics(gw))
        assert 'hazardgw_uplink_messages_total{channel="realtime",result="error"}' in text
    finally:
        await gw.stop()


async def _metrics(gw: Gateway) -> str:
    from prometheus_client import generate_latest

    return generate_latest(gw.metrics.registry).decode()


async def test_unframable_payloads_are_refused_and_counted(tmp_path: Path) -> None:
    up = {"profile": "uplink_test_profiles:NewlineProfile", "url": "mqtt://127.0.0.1:1", "period": "1s",
          "heartbeat": "60s"}
    gw = Gateway(cfg(up, tmp_path))
    await gw.start()
    try:
        await async_wait_for(lambda: gw.uplink is not None and gw.uplink.build_errors >= 1, timeout=10)
        assert gw.uplink is not None and gw.uplink.queue.records == 1  # only the meta message
    finally:
        await gw.stop()


async def test_meta_is_sent_again_when_the_config_changes(tmp_path: Path) -> None:
    platform = AesTcpPlatform(KEY, key_id="k1", username="gw", password="pw")
    port = await platform.start()
    first = cfg(aes_uplink(port), tmp_path)
    gw = Gateway(first)
    await gw.start()
    try:
        await async_wait_for(lambda: any(r.type == "meta" for r in platform.received), timeout=10)
        doc = json.loads(config_text(aes_uplink(port), tmp_path))
        doc["tags"][0]["alarms"]["h"]["limit"] = 1.2  # above 100 % OEL for Cl2: needs a waiver to run
        doc["tags"][0]["standards_waiver"] = {"reason": "test: the meta message carries a changed limit"}
        res = validate_text(json.dumps(doc), env={**os.environ, "UPLINK_KEY": KEY.hex()})
        assert res.config is not None
        summary = await gw.reload(res.config)
        assert "tags" in summary
        metas = await async_wait_for(lambda: [r.payload for r in platform.received if r.type == "meta"][1:],
                                     timeout=10)
    finally:
        await gw.stop()
        await platform.stop()
    gt = next(t for t in metas[0]["tags"] if t["tagCode"] == "GT-101")
    assert gt["H"] == 1.2


async def test_meta_is_sent_again_when_only_sources_change(tmp_path: Path) -> None:
    platform = AesTcpPlatform(KEY, key_id="k1", username="gw", password="pw")
    port = await platform.start()
    src = {"id": "plant", "type": "mqtt", "url": "mqtt://127.0.0.1:1", "reconnect_max": "1s",
           "subscriptions": [{"topic": "plant/t", "format": "json", "points": [{"tag": "TT-202", "path": "$.t"}]}]}
    gw = Gateway(cfg(aes_uplink(port), tmp_path, sources=[src]))
    await gw.start()
    try:
        await async_wait_for(lambda: any(r.type == "meta" for r in platform.received), timeout=10)
        uplink_before = gw.uplink
        summary = await gw.reload(cfg(aes_uplink(port), tmp_path, sources=[{**src, "url": "mqtt://127.0.0.1:2"}]))
        assert summary.startswith("restarted sources plant") and gw.uplink is uplink_before
        metas = await async_wait_for(lambda: [r.payload for r in platform.received if r.type == "meta"][1:],
                                     timeout=10)
    finally:
        await gw.stop()
        await platform.stop()
    assert metas[0]["sources"] == [{"sourceId": "plant", "type": "mqtt"}]
    assert next(t for t in metas[0]["tags"] if t["tagCode"] == "TT-202")["sourceId"] == "plant"


async def test_an_admin_can_ask_for_the_point_registration_again(tmp_path: Path) -> None:
    """POST /api/uplink/register (admin) queues the meta message again; it reaches the platform
    through the spool; viewers are refused, and a gateway without an uplink answers 409."""
    import httpx
    from test_api_support import ADMIN, H_ADMIN, H_VIEWER, TOKENS

    platform = AesTcpPlatform(KEY, key_id="k1", username="gw", password="pw")
    port = await platform.start()
    api = {"listen": "127.0.0.1:0", "tokens": TOKENS}
    gw = Gateway(cfg(aes_uplink(port), tmp_path, api=api))
    doc = json.loads(config_text(aes_uplink(port), tmp_path / "bare"))
    doc.update(api=api, uplink=None)
    res = validate_text(json.dumps(doc), env={**os.environ, "UPLINK_KEY": KEY.hex()})
    assert res.config is not None, res.format_errors()
    bare = Gateway(res.config)
    await gw.start()
    await bare.start()
    try:
        await async_wait_for(lambda: sum(r.type == "meta" for r in platform.received) == 1, timeout=10)
        assert gw.api is not None and bare.api is not None
        async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as c:
            assert (await c.post("/api/uplink/register", headers=H_VIEWER)).status_code == 403
            r = await c.post("/api/uplink/register", headers=H_ADMIN)
            assert r.status_code == 202 and r.json() == {"queued": True}
        await async_wait_for(lambda: sum(r.type == "meta" for r in platform.received) == 2, timeout=10)
        async with httpx.AsyncClient(base_url=bare.api.url, timeout=10) as c:
            r = await c.post("/api/uplink/register", headers={"Authorization": f"Bearer {ADMIN}"})
            assert r.status_code == 409 and r.json()["error"] == "no_uplink"
    finally:
        await bare.stop()
        await gw.stop()
        await platform.stop()
