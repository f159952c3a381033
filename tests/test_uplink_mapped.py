"""The ``mapped`` uplink profile end to end: a real Gateway sends through each shipped mapping
to its reference receiver (devkit/receivers), which decrypts every message, validates it
against the JSON Schema derived from the mapping and acknowledges it as the mapping says.

jiangsu-tcp: JSON + "@@" over TCP, AES-128-CBC with IV = key, dataId acks.
mem-http-sm4: HTTP POST, SM4-CBC, appsecret header, success by status and body field.
"""

from __future__ import annotations

import asyncio
import json
import ssl
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from helpers import async_wait_for
from test_uplink_mapping import ENT, ENV, HS1, jiangsu, site_doc
from test_uplink_mqtt import emit

from devkit.receivers.delimited_tcp import DelimitedTcpPlatform
from devkit.receivers.http import HttpPlatform
from devkit.receivers.mapped import MappedReceiver, Received
from devkit.services import Mosquitto, TlsFiles, free_port
from gateway.config import Config
from gateway.supervisor import Gateway
from gateway.uplink.mapping import load_mapping
from gateway.validate import validate_text

SECRET = ENV["UPLINK_SECRET"]


def mem(url: str, **options: Any) -> dict[str, Any]:
    return {"profile": "mapped", "mapping": "mem-http-sm4", "url": url, "period": "1s", "heartbeat": "1s",
            "reconnect_max": "1s",
            "options": {"app_id": "mem-001", "app_secret": "${UPLINK_SECRET}", "key": "${UPLINK_SM4_KEY}",
                        "salt": "${UPLINK_SALT}", "enterprise_code": ENT, "district_code": "320500", **options}}


def config(uplink: dict[str, Any], store: Path, env: dict[str, str] | None = None) -> Config:
    r = validate_text(json.dumps(site_doc(uplink, str(store)), ensure_ascii=False), "site.yaml", {**ENV, **(env or {})})
    assert r.config is not None, [p.format("site.yaml") for p in r.errors]
    return r.config


def options_of(cfg: Config) -> dict[str, Any]:
    assert cfg.uplink is not None
    return dict(cfg.uplink.options)


# accessors over both vocabularies -------------------------------------------------------


def rt_rows(r: Received) -> dict[str, dict[str, Any]]:
    if isinstance(r.body, list):  # jiangsu: the rows are the body
        return {row["TARGET_CODE"]: row for row in r.body}
    return {row["targetCode"]: row for row in r.body["datas"]}


def rt_value(r: Received, tag: str) -> Any:
    row = rt_rows(r).get(tag)
    return None if row is None else row.get("VALUE", row.get("value"))


def alarm_doc(r: Received) -> dict[str, Any]:
    return r.body[0] if isinstance(r.body, list) else r.body


def alarm_state(r: Received) -> str:
    d = alarm_doc(r)
    return str(d.get("ALARM_STATE", d.get("alarmState")))


def uplink_health(gw: Gateway) -> dict[str, Any]:
    return gw.health()["components"]["uplink"]


# --------------------------------------------------------------------------- every kind


async def test_jiangsu_tcp_every_kind_request_and_resend(tmp_path: Path) -> None:
    port = free_port()
    up = jiangsu(f"tcp://127.0.0.1:{port}", tag_fields={"GT-101": {"target_code": "GT101-CL2"}})
    cfg = config({**up, "heartbeat": "60s"}, tmp_path)  # one heartbeat at start: the frame dropped below is spooled
    platform = DelimitedTcpPlatform("jiangsu-tcp", options_of(cfg))
    await platform.start(port=port)
    gw = Gateway(cfg)
    await gw.start()
    try:
        await async_wait_for(lambda: platform.of("meta") and platform.of("heartbeat"), timeout=10)
        await emit(gw, "GT-101", 1.5)  # raises H
        await emit(gw, "TT-202", 20.5)
        await async_wait_for(lambda: any(rt_value(r, "TT-202") == 20.5 and rt_value(r, "GT101-CL2") == 1.5
                                         for r in platform.of("realtime")), timeout=10)
        await emit(gw, "GT-101", 0.1)  # clears H
        await async_wait_for(lambda: len(platform.of("alarm")) >= 2, timeout=10)
        # on request: the platform asks for the sensor table again
        assert await platform.request() == 1
        await async_wait_for(lambda: len(platform.of("meta")) >= 2, timeout=10)
        # a frame whose ack is lost is sent again with the same dataId
        platform.drop_after = 1
        await async_wait_for(lambda: platform.drop_after is None, timeout=10)
        await async_wait_for(lambda: len(platform.received) > len(platform.unique()), timeout=10)
        h = uplink_health(gw)
        assert h["profile"] == "mapped" and "aes-128-cbc" in h["platform"]
    finally:
        await gw.stop()
        await platform.stop()
    assert platform.errors == [] and platform.frame_errors == []
    assert platform.connections >= 2
    meta = platform.of("meta")[0]
    rows = {row["BIT_NO"]: row for row in meta.body}
    assert set(rows) == {"GT-101", "PT-201", "TT-202"}
    assert rows["GT-101"]["TARGET_CODE"] == "GT101-CL2" and rows["GT-101"]["TOP_VALUE_02"] == 2.0
    assert rows["TT-202"]["EQUIP_CODE"] == "32050000001002" and rows["TT-202"]["GATEWAY_CODE"] == site_doc({})[
        "site"]["code"]
    assert meta.envelope["appId"] == "hz-001" and meta.envelope["districtCode"] == "320500"
    assert len(meta.envelope["dataId"]) == 32 and meta.service == "SENSOR_INFO"
    alarms = [alarm_doc(r) for r in platform.unique("alarm")]
    assert [(a["ALARM_STATE"], a["ALARM_TYPE"], a["HAZARD_CODE"]) for a in alarms] == [("1", "1", HS1), ("0", "1", HS1)]
    assert alarms[0]["ALARM_VALUE"] == 1.5 and alarms[0]["THRESHOLD"] == 1.0
    assert len(alarms[0]["ALARM_TIME"]) == 14
    hb = platform.of("heartbeat")[0].body
    assert hb["STATUS"] in ("ok", "degraded") and hb["ENTERPRISE_CODE"] == ENT


async def test_mem_http_every_kind_and_request(tmp_path: Path) -> None:
    port = free_port()
    cfg = config(mem(f"http://127.0.0.1:{port}/api/v1"), tmp_path)
    platform = HttpPlatform("mem-http-sm4", options_of(cfg), headers={"appsecret": SECRET}, prefix="/api/v1")
    await platform.start(port=port)
    gw = Gateway(cfg)
    await gw.start()
    try:
        await async_wait_for(lambda: platform.of("meta") and platform.of("heartbeat"), timeout=10)
        await emit(gw, "PT-201", 1.7)  # raises H
        await emit(gw, "PT-201", 1.0)  # clears it
        await async_wait_for(lambda: len(platform.of("alarm")) >= 2, timeout=10)
        await async_wait_for(lambda: any(rt_value(r, "PT-201") == 1.0 for r in platform.of("realtime")), timeout=10)
        platform.request()  # the next answer asks for the point registration again
        await async_wait_for(lambda: len(platform.of("meta")) >= 2, timeout=10)
        h = uplink_health(gw)
        assert h["connected"] and "sm4-cbc" in h["platform"]
    finally:
        await gw.stop()
        await platform.stop()
    assert platform.errors == [] and platform.unauthorized == 0
    assert {r.path for r in platform.received} == {"/sensor", "/realtime", "/alarm", "/heartbeat"}
    meta = platform.of("meta")[0]
    assert meta.envelope["appid"] == "mem-001" and isinstance(meta.envelope["data"], str)
    assert {s["BIT_NO"] for s in meta.body["sensors"]} == {"GT-101", "PT-201", "TT-202"}
    assert meta.body["districtCode"] == "320500" and len(meta.body["msgId"]) == 32
    alarms = [alarm_doc(r) for r in platform.unique("alarm")]
    assert [(a["alarmState"], a["alarmType"], a["targetCode"]) for a in alarms] == [
        ("1", "1", "PT-201"), ("0", "1", "PT-201")]
    rt = platform.of("realtime")[-1].body
    assert rt["enterpriseCode"] == ENT and rt["part"] == 1 and len(rt["collectTime"]) == 19
    hb = platform.of("heartbeat")[-1].body
    assert hb["gatewayCode"] == site_doc({})["site"]["code"] and hb["sources"] == []


# --------------------------------------------------------------------------- keys and secrets


async def test_wrong_key_keeps_the_backlog_until_the_key_is_fixed(tmp_path: Path) -> None:
    """The gateway runs with a key the platform does not have: every message is refused and
    kept. Restarted with the right key, the same messages (same dataId) go through: the spool
    holds them unencrypted and the transport encrypts on sending."""
    port = free_port()
    right = config(jiangsu(f"tcp://127.0.0.1:{port}"), tmp_path)
    wrong = config(jiangsu(f"tcp://127.0.0.1:{port}"), tmp_path, {"UPLINK_KEY": "fedcba9876543210"})
    platform = DelimitedTcpPlatform("jiangsu-tcp", options_of(right))
    await platform.start(port=port)
    gw = Gateway(wrong)
    await gw.start()
    try:
        await emit(gw, "GT-101", 1.5)
        err = await async_wait_for(lambda: uplink_health(gw)["last_error"], timeout=10)
        assert "rejected" in err and "cannot decrypt" in err
        assert "fedcba9876543210" not in json.dumps(gw.health()) and ENV["UPLINK_KEY"] not in json.dumps(gw.health())
        assert uplink_health(gw)["backlog"] >= 2  # meta + alarm kept
    finally:
        await gw.stop()
    assert platform.received == [] and all("cannot decrypt" in e for e in platform.errors)
    gw2 = Gateway(right)
    await gw2.start()
    try:
        await async_wait_for(lambda: platform.of("alarm"), timeout=15)
    finally:
        await gw2.stop()
        await platform.stop()
    assert [alarm_state(r) for r in platform.unique("alarm")] == ["1"]
    assert len(platform.unique("meta")) == 2  # the first start's meta (kept) and the second's


async def test_wrong_appsecret_is_refused_and_never_shown(tmp_path: Path) -> None:
    port = free_port()
    cfg = config(mem(f"http://127.0.0.1:{port}"), tmp_path, {"UPLINK_SECRET": "not-the-secret-77"})
    platform = HttpPlatform("mem-http-sm4", options_of(config(mem("http://x:1"), tmp_path / "x")),
                            headers={"appsecret": SECRET})
    await platform.start(port=port)
    gw = Gateway(cfg)
    await gw.start()
    try:
        err = await async_wait_for(lambda: uplink_health(gw)["last_error"], timeout=10)
        assert "HTTP 401" in err
        text = json.dumps(gw.health()) + repr(gw.uplink.transport) + repr(cfg.uplink)  # type: ignore[union-attr]
        assert "not-the-secret-77" not in text and SECRET not in text and ENV["UPLINK_SM4_KEY"] not in text
    finally:
        await gw.stop()
        await platform.stop()
    assert platform.received == [] and platform.unauthorized >= 1


# --------------------------------------------------------------------------- outage

OUTAGE_S = 12.0


@pytest.mark.parametrize("kind", ["tcp", "http"])
async def test_platform_outage_loses_nothing_and_keeps_order(kind: str, tmp_path: Path) -> None:
    """The platform is away for 12 s while readings (1 s period) and alarms go on. After it is
    back: every alarm event once, in order, before the realtime backlog; every realtime period
    made during the outage, in order (TT-202 rises with every reading)."""
    port = free_port()
    platform: DelimitedTcpPlatform | HttpPlatform
    if kind == "tcp":
        cfg = config({**jiangsu(f"tcp://127.0.0.1:{port}"), "heartbeat": "5s"}, tmp_path)
        platform = DelimitedTcpPlatform("jiangsu-tcp", options_of(cfg))
    else:
        cfg = config({**mem(f"http://127.0.0.1:{port}"), "heartbeat": "5s"}, tmp_path)
        platform = HttpPlatform("mem-http-sm4", options_of(cfg), headers={"appsecret": SECRET})
    await platform.start(port=port)
    gw = Gateway(cfg)
    await gw.start()
    value = 0.0
    raised = 0
    try:
        await emit(gw, "TT-202", value)
        await async_wait_for(lambda: len(platform.of("realtime")) >= 2, timeout=10)
        await platform.stop()
        await async_wait_for(lambda: not uplink_health(gw)["connected"], timeout=15)
        first_outage_value = value + 1
        end = time.monotonic() + OUTAGE_S
        i = 0
        while time.monotonic() < end:
            value += 1
            await emit(gw, "TT-202", value)
            if i % 12 == 0:
                await emit(gw, "GT-101", 1.5)
                raised += 1
            elif i % 12 == 6:
                await emit(gw, "GT-101", 0.1)
            i += 1
            await asyncio.sleep(0.25)
        await emit(gw, "GT-101", 0.1)  # the last raise is cleared too
        backlog = uplink_health(gw)["backlog"]
        assert backlog >= OUTAGE_S - 2 + 2 * raised - 1, backlog
        await platform.start(port=port)
        await async_wait_for(lambda: uplink_health(gw)["backlog"] == 0, timeout=30)
        last = value
        await async_wait_for(lambda: any(rt_value(r, "TT-202") == last for r in platform.of("realtime")), timeout=10)
    finally:
        await gw.stop()
        await platform.stop()
    assert platform.errors == []
    unique = platform.unique()
    alarms = [r for r in unique if r.kind == "alarm"]
    states = [alarm_state(r) for r in alarms]
    assert states == ["1", "0"] * (len(states) // 2) and len(states) == 2 * raised
    rt = [(k, rt_value(r, "TT-202")) for k, r in enumerate(unique) if r.kind == "realtime"]
    values = [v for _, v in rt]
    assert values == sorted(values)  # order kept
    during = [k for k, v in rt if first_outage_value <= v < last]
    assert len(during) >= OUTAGE_S - 2  # one per period of the outage, none lost
    outage_alarms = [k for k, r in enumerate(unique) if r.kind == "alarm"]
    assert max(outage_alarms) < min(during)  # the alarms of the outage went before its realtime backlog
    assert gw.uplink is not None and gw.uplink.build_errors == 0


def test_receiver_rejects_what_breaks_the_schema(tmp_path: Path) -> None:
    """The reference receiver really validates: a body missing a field, a wrong word, a
    wrong key and a non-JSON frame are each refused with the reason."""
    cfg = config(jiangsu("tcp://127.0.0.1:1"), tmp_path)
    rx = MappedReceiver("jiangsu-tcp", options_of(cfg))
    from gateway.uplink.mapped import MappedProfile
    from gateway.uplink.profile import TagValue

    assert cfg.uplink is not None
    p = MappedProfile(cfg, cfg.uplink)
    (msg,) = p.realtime([TagValue("GT-101", "x", HS1, "toxic_gas", "mg/m3", 0.5, "good", time.time_ns(), "normal")],
                        time.time_ns())
    ok = p.sealer.seal(msg.payload)[1]
    assert rx.handle(ok)[1] is None

    def tampered(change: Callable[[list[dict[str, Any]]], None]) -> str:
        doc = json.loads(msg.payload)
        change(doc["data"])
        return p.sealer.seal(json.dumps(doc))[1]

    assert "required" in (rx.handle(tampered(lambda rows: rows[0].pop("VALUE")))[1] or "")
    assert "ALARM_STATUS" in (rx.handle(tampered(lambda rows: rows[0].update(ALARM_STATUS="7")))[1] or "")
    other = MappedReceiver("jiangsu-tcp", {**options_of(cfg), "key": "x" * 16})
    assert "cannot decrypt" in (other.handle(ok)[1] or "")
    assert rx.handle(b"not json")[1] == "not JSON"


def mqtt_mapping(folder: Path) -> Path:
    src = Path(load_mapping("jiangsu-tcp").file).read_text(encoding="utf-8")
    mp = folder / "jiangsu-mqtt.yaml"
    mp.write_text(src.replace("requests:", 'mqtt: {topic: "prov/{site.code}/{msg.kind}"}\n\nrequests:', 1),
                  encoding="utf-8")
    return mp


async def test_mapping_over_mqtt(mosquitto: Mosquitto, tmp_path: Path) -> None:
    """The same declarative format over MQTT: a copy of jiangsu-tcp with an mqtt: section;
    the platform's subscriber decrypts and validates each message like the other receivers."""
    mp = mqtt_mapping(tmp_path)
    cfg = config({**jiangsu(mosquitto.url), "mapping": str(mp)}, tmp_path)
    rx = MappedReceiver(str(mp), options_of(cfg))
    topics: list[str] = []
    sub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="mapped-platform")
    sub.on_message = lambda c, u, m: (topics.append(m.topic), rx.handle(m.payload))
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe("prov/#", qos=1)
    sub.loop_start()
    gw = Gateway(cfg)
    try:
        await async_wait_for(lambda: sub.is_connected(), timeout=10)
        await gw.start()
        await emit(gw, "GT-101", 1.5)
        await async_wait_for(lambda: rx.of("meta") and rx.of("alarm") and rx.of("realtime") and rx.of("heartbeat"),
                             timeout=15)
    finally:
        await gw.stop()
        sub.loop_stop()
        sub.disconnect()
    assert rx.errors == []
    site = cfg.site.code
    assert {f"prov/{site}/meta", f"prov/{site}/alarm", f"prov/{site}/realtime", f"prov/{site}/heartbeat"} <= set(topics)
    assert alarm_state(rx.of("alarm")[0]) == "1"


@pytest.mark.parametrize("scheme", ["tls", "https"])
async def test_tls_with_client_certificate(scheme: str, test_pki: TlsFiles, tmp_path: Path) -> None:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(test_pki.ca))
    ctx.load_cert_chain(test_pki.server_cert, test_pki.server_key)
    ctx.verify_mode = ssl.CERT_REQUIRED
    port = free_port()
    pki = {"ca": str(test_pki.ca), "cert": str(test_pki.client_cert), "key": str(test_pki.client_key)}
    platform: DelimitedTcpPlatform | HttpPlatform
    if scheme == "tls":
        cfg = config({**jiangsu(f"tls://127.0.0.1:{port}"), **pki}, tmp_path)
        platform = DelimitedTcpPlatform("jiangsu-tcp", options_of(cfg), ssl_context=ctx)
    else:
        cfg = config({**mem(f"https://127.0.0.1:{port}"), **pki}, tmp_path)
        platform = HttpPlatform("mem-http-sm4", options_of(cfg), headers={"appsecret": SECRET}, ssl_context=ctx)
    await platform.start(port=port)
    gw = Gateway(cfg)
    await gw.start()
    try:
        await async_wait_for(lambda: platform.of("meta") and platform.of("heartbeat"), timeout=15)
        assert uplink_health(gw)["platform"].startswith(f"{scheme}://127.0.0.1:{port}")
    finally:
        await gw.stop()
        await platform.stop()
    assert platform.errors == []
