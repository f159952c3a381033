"""The uplink (联网监控) with the generic profile against a real second mosquitto acting as the platform.

A plant broker feeds the gateway (MQTT source) where the test is end to end; other tests
emit readings straight into the pipeline. The platform side is a paho subscriber with a
persistent session on its own broker, so messages the gateway publishes while the
subscriber reconnects after a broker restart are queued for it, not lost.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema_rs
import paho.mqtt.client as paho
import pytest
from helpers import MQTT_PASSWORD, MQTT_USER, async_wait_for
from uplink_schemas import SCHEMAS

from devkit.services import Mosquitto, TlsFiles
from gateway.config import Config
from gateway.core.models import Quality, Reading, now_ns
from gateway.supervisor import Gateway
from gateway.validate import validate_text

SITE = "91430900DEMO0001XX"
VALIDATORS = {k: jsonschema_rs.validator_for(v) for k, v in SCHEMAS.items()}


class Platform:
    """The platform's subscriber: every message on ``{prefix}/#`` with its arrival time."""

    def __init__(self, broker: Mosquitto, prefix: str = "hazard", *, tls: TlsFiles | None = None,
                 client_id: str = "platform") -> None:
        self.broker = broker
        self.topic = f"{prefix}/#"
        self.messages: list[tuple[float, str, dict[str, Any]]] = []
        self.lock = threading.Lock()
        self.connected = threading.Event()
        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        c.reconnect_delay_set(0.1, 0.5)
        c.on_connect = self._on_connect
        c.on_disconnect = lambda *a: self.connected.clear()
        c.on_message = self._on_message
        self.client = c
        port = broker.port
        if tls is not None:
            c.tls_set(ca_certs=str(tls.ca), certfile=str(tls.client_cert), keyfile=str(tls.client_key))
            c.username_pw_set(MQTT_USER, MQTT_PASSWORD)
            assert broker.tls_port is not None
            port = broker.tls_port
        c.connect(broker.host, port)
        c.loop_start()
        assert self.connected.wait(10), "platform subscriber did not connect"

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        client.subscribe(self.topic, qos=1)
        self.connected.set()

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        doc = json.loads(msg.payload.decode("utf-8"))
        with self.lock:
            self.messages.append((time.monotonic(), msg.topic, doc))

    def of(self, channel: str) -> list[dict[str, Any]]:
        with self.lock:
            return [d for _, t, d in self.messages if t.endswith("/" + channel)]

    def timed(self, channel: str) -> list[tuple[float, dict[str, Any]]]:
        with self.lock:
            return [(at, d) for at, t, d in self.messages if t.endswith("/" + channel)]

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


@pytest.fixture
def platform_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    """The second mosquitto: the platform's broker."""
    server = Mosquitto(tmp_path_factory.mktemp("platform"))
    try:
        server.start()
        yield server
    finally:
        server.stop()


def config_text(uplink: dict[str, Any], store: Path, *, sources: list[dict[str, Any]] | None = None) -> str:
    return json.dumps({
        "site": {"code": SITE, "name": "上游化工 Uplink Test", "timezone": "Asia/Shanghai"},
        "hazard_sources": [
            {"code": "HS-001", "name": "液氯储罐区", "grade": 1,
             "responsible": {"principal": "zhang", "technical": "li", "operational": "wang"}},
            {"code": "HS-002", "name": "LPG spheres", "grade": 3},
        ],
        "people": [
            {"id": "zhang", "name": "张三", "phone": "13800000001"},
            {"id": "li", "name": "李四"},
            {"id": "wang", "name": "王五", "phone": "13800000003"},
        ],
        "sources": sources or [],
        "tags": [
            # stale_after: a hazard-source tag must be able to show a lost MQTT connection (hazardgw check)
            {"id": "GT-101", "name": "液氯泄漏检测", "hazard_source": "HS-001", "kind": "toxic_gas", "gas": "Cl2",
             "unit": "mg/m3", "range": [0, 10], "alarms": {"h": {"limit": 1.0}, "hh": {"limit": 2.0}},
             "stale_after": "1h"},
            {"id": "PT-201", "name": "Sphere pressure", "hazard_source": "HS-002", "kind": "pressure", "unit": "MPa",
             "range": [0, 2.5], "alarms": {"l": {"limit": 0.2, "priority": 3}, "h": {"limit": 1.6, "priority": 2},
                                          "stale": {}}, "stale_after": "1h"},
            {"id": "TT-202", "hazard_source": "HS-002", "kind": "temperature", "unit": "°C", "range": [-40, 80],
             "stale_after": "1h"},
        ],
        "api": {"enabled": False},
        "store": {"path": str(store)},
        "uplink": uplink,
    }, ensure_ascii=False)


def config(uplink: dict[str, Any], store: Path, *, sources: list[dict[str, Any]] | None = None) -> Config:
    res = validate_text(config_text(uplink, store, sources=sources))
    assert res.config is not None, [p.format("cfg") for p in res.errors]
    return res.config


def validate(channel: str, doc: dict[str, Any]) -> None:
    errors = [str(e) for e in VALIDATORS[channel].iter_errors(doc)]
    assert not errors, f"{channel} payload violates its schema: {errors}\n{json.dumps(doc, ensure_ascii=False)}"


async def emit(gw: Gateway, tag: str, value: float | None, quality: str = Quality.GOOD) -> Reading:
    r = Reading(tag, value, now_ns(), quality)
    await gw.pipeline.emit([r])
    return r


# --------------------------------------------------------------------------- shapes, period


async def test_end_to_end_payload_shapes_and_period(
    mosquitto: Mosquitto, platform_broker: Mosquitto, tmp_path: Path
) -> None:
    """Plant broker -> gateway -> platform broker: every message type matches its JSON Schema,
    realtime comes at every period boundary with the values published in the plant."""
    plat = Platform(platform_broker)
    src = [{"id": "plant", "type": "mqtt", "url": mosquitto.url, "client_id": "uplink-e2e",
            "subscriptions": [{"topic": "plant/+/telemetry", "qos": 1, "format": "json", "single_publisher": True,
                               "points": [
                {"tag": "GT-101", "path": "$.cl2", "ts_path": "$.ts"},
                {"tag": "PT-201", "path": "$.p", "ts_path": "$.ts"},
                {"tag": "TT-202", "path": "$.t", "ts_path": "$.ts"}]}]}]
    cfg = config({"url": platform_broker.url, "period": "1s", "heartbeat": "1s"}, tmp_path, sources=src)
    gw = Gateway(cfg)
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="plant-pub")
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    await gw.start()
    try:
        await async_wait_for(lambda: gw.health()["components"]["source:plant"].get("connected"), timeout=10)
        ts = time.time_ns() // 1_000_000
        info = pub.publish("plant/unit1/telemetry", json.dumps({"cl2": 2.5, "p": 1.2, "t": 21.5, "ts": ts}), qos=1)
        info.wait_for_publish(5)

        def complete() -> bool:
            rt = plat.of("realtime")
            return bool(rt) and len(rt[-1]["data"]) == 3 and len(plat.of("heartbeat")) >= 2 and bool(
                plat.of("alarm"))

        await async_wait_for(complete, timeout=15)
        n = len(plat.of("realtime"))
        await async_wait_for(lambda: len(plat.of("realtime")) >= n + 4, timeout=15)
    finally:
        await gw.stop()
        pub.loop_stop()
        plat.close()

    for channel in ("meta", "realtime", "alarm", "heartbeat"):
        docs = plat.of(channel)
        assert docs, f"no {channel} message"
        for d in docs:
            validate(channel, d)
            assert d["enterpriseCode"] == SITE
    # meta on start: tags with ranges and limits, hazard sources with grade and 包保责任人
    meta = plat.of("meta")[0]
    tags = {t["tagCode"]: t for t in meta["tags"]}
    assert (tags["GT-101"]["H"], tags["GT-101"]["HH"], tags["GT-101"]["L"]) == (1.0, 2.0, None)
    assert (tags["PT-201"]["L"], tags["PT-201"]["rangeHigh"], tags["PT-201"]["sourceId"]) == (0.2, 2.5, "plant")
    hs1 = next(h for h in meta["hazardSources"] if h["hazardCode"] == "HS-001")
    assert hs1["gradeName"] == "一级" and hs1["responsible"]["principal"] == {
        "id": "zhang", "name": "张三", "phone": "13800000001"}
    # realtime: the published values, in the platform vocabulary
    last = {i["tagCode"]: i for i in plat.of("realtime")[-1]["data"]}
    assert last["GT-101"]["value"] == 2.5 and last["GT-101"]["alarmStatus"] == "HH"
    assert last["PT-201"]["value"] == 1.2 and last["PT-201"]["alarmStatus"] == "normal"
    assert last["TT-202"] == {**last["TT-202"], "value": 21.5, "unit": "°C", "quality": "good",
                              "hazardCode": "HS-002", "collectTs": ts}
    # collection time in the site's time zone (UTC+8) and epoch ms agree
    t = time.gmtime(ts / 1000 + 8 * 3600)
    assert last["TT-202"]["collectTime"] == time.strftime("%Y%m%d%H%M%S", t)
    # the period: consecutive realtime messages are one period (1000 ms) apart on the
    # wall-clock grid, and arrive about one period apart
    timed = plat.timed("realtime")
    stamps = [d["collectTs"] for _, d in timed]
    assert all(s % 1000 < 50 for s in stamps), stamps  # aligned to the period grid
    steps = [b - a for a, b in itertools.pairwise(stamps)]
    assert steps and all(s == 1000 for s in steps[1:]), steps
    arrivals = [b[0] - a[0] for a, b in itertools.pairwise(timed[1:])]
    assert arrivals and all(0.5 < a < 1.6 for a in arrivals), arrivals
    # alarms: GT-101 at 2.5 > hh 2.0 raised both H and HH
    raised = {(d["alarmType"], d["event"]) for d in plat.of("alarm")}
    assert {("H", "raised"), ("HH", "raised")} <= raised
    # heartbeat: per-source online state and online rates
    hb = plat.of("heartbeat")[-1]
    assert hb["sources"][0]["sourceId"] == "plant" and hb["sources"][0]["online"] is True
    assert hb["sources"][0]["onlineRateHour"] is not None
    assert {h["hazardCode"] for h in hb["hazardSources"]} == {"HS-001", "HS-002"}
    assert "uplink" in hb["components"]


# --------------------------------------------------------------------------- alarm immediacy


async def test_alarm_events_reach_the_platform_within_one_second(platform_broker: Mosquitto, tmp_path: Path) -> None:
    plat = Platform(platform_broker)
    cfg = config({"url": platform_broker.url, "period": "60s", "heartbeat": "60s"}, tmp_path)
    gw = Gateway(cfg)
    await gw.start()
    delays: list[float] = []
    try:
        await async_wait_for(lambda: plat.of("meta"), timeout=10)
        for i in range(10):
            value = 1.5 if i % 2 == 0 else 0.1  # raise H, then clear it
            want = "raised" if i % 2 == 0 else "cleared"
            t0 = time.monotonic()
            await emit(gw, "GT-101", value)
            got = await async_wait_for(
                lambda n=i // 2 + 1, w=want: [at for at, d in plat.timed("alarm") if d["event"] == w][n - 1:n],
                timeout=5,
            )
            delays.append(got[0] - t0)
    finally:
        await gw.stop()
        plat.close()
    assert max(delays) < 1.0, delays
    alarms = plat.of("alarm")
    assert [d["event"] for d in alarms] == ["raised", "cleared"] * 5
    assert [d["alarmStatus"] for d in alarms] == ["H", "normal"] * 5
    seqs = [d["seq"] for d in alarms]
    assert seqs == sorted(seqs) and len(set(seqs)) == 10


# --------------------------------------------------------------------------- outage


async def test_platform_outage_of_60s_loses_nothing_and_keeps_order(platform_broker: Mosquitto, tmp_path: Path) -> None:
    """The platform's broker is down for 60 s while readings and alarms go on. After it is back:
    every realtime period and every alarm event arrives, once each by msgId, in order, and the
    alarms made during the outage arrive before the realtime backlog."""
    plat = Platform(platform_broker)
    cfg = config({"url": platform_broker.url, "period": "1s", "heartbeat": "5s", "reconnect_max": "1s"}, tmp_path)
    gw = Gateway(cfg)
    await gw.start()
    try:
        await emit(gw, "TT-202", 20.0)
        await async_wait_for(lambda: len(plat.of("realtime")) >= 2, timeout=10)
        platform_broker.stop()  # SIGTERM: the broker saves the subscriber's persistent session
        await async_wait_for(lambda: not gw.health()["components"]["uplink"]["connected"], timeout=10)
        t_down = time.time_ns() // 1_000_000
        outage_end = time.monotonic() + 60
        i = 0
        while time.monotonic() < outage_end:
            await emit(gw, "TT-202", 20.0 + i % 10)
            if i % 20 == 0:
                await emit(gw, "GT-101", 1.5)  # raise H
            elif i % 20 == 10:
                await emit(gw, "GT-101", 0.1)  # clear
            i += 1
            await asyncio.sleep(0.25)
        backlog = gw.health()["components"]["uplink"]["backlog"]
        assert backlog >= 55  # ~60 realtime + ~12 alarm messages kept while the platform was away
        t_up = time.time_ns() // 1_000_000
        platform_broker.start()
        await async_wait_for(lambda: gw.health()["components"]["uplink"]["backlog"] == 0, timeout=30)
        # the subscriber reconnects and gets what the broker queued for its session, then live periods
        await async_wait_for(lambda: any(d["collectTs"] > t_up for d in plat.of("realtime")), timeout=15)
    finally:
        await gw.stop()
        plat.close()

    with plat.lock:
        msgs = list(plat.messages)
    seen: set[str] = set()
    unique: list[tuple[str, dict[str, Any]]] = []
    for _, topic, d in msgs:
        if d["msgId"] not in seen:
            seen.add(d["msgId"])
            unique.append((topic.rsplit("/", 1)[-1], d))
    rt = [d["collectTs"] for ch, d in unique if ch == "realtime"]
    # no period missing, none out of order
    assert rt == sorted(rt)
    steps = {b - a for a, b in itertools.pairwise(rt)}
    assert steps == {1000}, sorted(steps)
    assert rt[0] < t_down and rt[-1] > t_up
    assert sum(1 for t in rt if t_down <= t <= t_up) >= 58
    # alarm events: all of them, in order, none twice
    alarms = [d for ch, d in unique if ch == "alarm"]
    assert [d["event"] for d in alarms] == ["raised", "cleared"] * (len(alarms) // 2)
    assert len(alarms) >= 10
    seqs = [d["seq"] for d in alarms]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    # after recovery the alarms made during the outage came before the realtime backlog
    order = [(ch, d) for ch, d in unique if ch in ("alarm", "realtime")]
    first_backlog_rt = next(k for k, (ch, d) in enumerate(order) if ch == "realtime" and d["collectTs"] > t_down)
    outage_alarms = [k for k, (ch, d) in enumerate(order) if ch == "alarm" and d["collectTs"] > t_down]
    assert outage_alarms and max(outage_alarms) < first_backlog_rt
    # heartbeats are not stored: the ones due during the outage were skipped and counted
    assert gw.uplink is not None and gw.uplink.skipped_heartbeats >= 5


# --------------------------------------------------------------------------- restart, TLS, config


async def test_backlog_survives_a_gateway_restart(platform_broker: Mosquitto, tmp_path: Path) -> None:
    """Store-and-forward is durable: messages spooled while the platform was down are sent by
    the next gateway process on the same store."""
    plat = Platform(platform_broker)
    platform_broker.stop()
    cfg = config({"url": platform_broker.url, "period": "1s", "heartbeat": "60s", "reconnect_max": "1s"}, tmp_path)
    gw = Gateway(cfg)
    await gw.start()
    await emit(gw, "GT-101", 1.5)
    await async_wait_for(lambda: gw.health()["components"]["uplink"]["backlog"] >= 4, timeout=10)
    await gw.stop()
    platform_broker.start()
    gw2 = Gateway(cfg)
    await gw2.start()
    try:
        await async_wait_for(lambda: gw2.health()["components"]["uplink"]["backlog"] == 0, timeout=20)
        await async_wait_for(lambda: plat.of("alarm") and len(plat.of("realtime")) >= 3, timeout=15)
    finally:
        await gw2.stop()
        plat.close()
    assert [d["event"] for d in plat.of("alarm")] == ["raised"]
    assert len(plat.of("meta")) == 2  # one per start
    rt = [d["collectTs"] for d in plat.of("realtime")]
    assert rt == sorted(rt)


async def test_mqtts_with_client_certificate_and_password(
    mosquitto_tls: Mosquitto, test_pki: TlsFiles, tmp_path: Path
) -> None:
    plat = Platform(mosquitto_tls, tls=test_pki)
    url = f"mqtts://127.0.0.1:{mosquitto_tls.tls_port}"
    up = {"url": url, "username": MQTT_USER, "password": MQTT_PASSWORD, "ca": str(test_pki.ca),
          "cert": str(test_pki.client_cert), "key": str(test_pki.client_key), "period": "1s"}
    gw = Gateway(config(up, tmp_path / "ok"))
    await gw.start()
    try:
        await async_wait_for(lambda: plat.of("meta") and plat.of("heartbeat"), timeout=15)
        h = gw.health()["components"]["uplink"]
        assert h["connected"] and h["platform"] == url and h["ok"]
    finally:
        await gw.stop()
    # a wrong password: not connected, the error is reported, the password never shown
    bad = Gateway(config({**up, "password": "wrong-pass-XYZ"}, tmp_path / "bad"))
    await bad.start()
    try:
        err = await async_wait_for(lambda: bad.health()["components"]["uplink"]["last_error"], timeout=15)
        h = bad.health()["components"]["uplink"]
        assert not h["connected"] and not h["ok"]
        assert "wrong-pass-XYZ" not in json.dumps(h) and "wrong-pass-XYZ" not in err
    finally:
        await bad.stop()
        plat.close()


def test_config_check_reports_uplink_problems(tmp_path: Path) -> None:
    def problems(uplink: dict[str, Any]) -> list[str]:
        return [p.format("c.yaml") for p in validate_text(config_text(uplink, tmp_path)).errors]

    assert problems({"url": "mqtt://x:1883"}) == []
    assert any("unknown uplink profile 'nope'" in p for p in problems({"url": "mqtt://x", "profile": "nope"}))
    assert any("url must be mqtt:// or mqtts://" in p for p in problems({"url": "tcp://x:1"}))
    assert any("max_items" in p for p in problems({"url": "mqtt://x", "options": {"max_items": 0}}))
    assert any("unknown option 'colour'" in p for p in problems({"url": "mqtt://x", "options": {"colour": 1}}))
    assert any("alarm_events" in p for p in problems({"url": "mqtt://x", "options": {"alarm_events": ["boom"]}}))
    assert any("reconnect_min" in p for p in problems({"url": "mqtt://x", "reconnect_min": "5s",
                                                       "reconnect_max": "1s"}))
    assert any("is not a subclass" in p for p in problems({"url": "mqtt://x", "profile": "json:dumps"}))
