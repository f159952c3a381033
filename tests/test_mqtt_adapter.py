"""Integration tests of the MQTT adapter against a real Mosquitto (fixtures in conftest.py).

Publishing goes through a separate paho-mqtt client; readings are collected by an
``emit`` that records every batch. Tests wait on conditions (``async_wait_for``), never
on fixed sleeps.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers import MQTT_PASSWORD, MQTT_USER, async_wait_for
from paho.mqtt.enums import CallbackAPIVersion

from adapters.mqtt.adapter import MqttAdapter
from adapters.mqtt.config import MqttSource
from devkit.services import Mosquitto, TlsFiles, make_test_pki
from gateway.core.config import Tag
from gateway.core.metrics import Metrics
from gateway.core.models import Quality, Reading
from gateway.core.sources import SourceContext

TS_MS = 1732300000123
TS_NS = TS_MS * 1_000_000
TAGS = {
    "PT-201": Tag(id="PT-201", kind="pressure", unit="MPa", range=(0.0, 2.5)),
    "TT-202": Tag(id="TT-202", kind="temperature", unit="°C", range=(-40.0, 150.0)),
    "LT-203": Tag(id="LT-203", kind="level", unit="m"),
    "GT-101": Tag(id="GT-101", kind="toxic_gas", gas="Cl2", unit="ppm", range=(0.0, 10.0)),
}
ADAPTER_LOG = "adapters.mqtt.adapter"


class Collector:
    """A pipeline stand-in: records batches; ``gate`` (when cleared) makes emit wait."""

    def __init__(self) -> None:
        self.readings: list[Reading] = []
        self.batches = 0
        self.gate = asyncio.Event()
        self.gate.set()
        self.waiting = 0

    async def emit(self, batch: Sequence[Reading]) -> None:
        if not self.gate.is_set():
            self.waiting += 1
            await self.gate.wait()
            self.waiting -= 1
        self.readings.extend(batch)
        self.batches += 1

    def of(self, tag: str) -> list[Reading]:
        return [r for r in self.readings if r.tag == tag]


class Publisher:
    """A paho-mqtt publisher with its own network thread."""

    def __init__(self, port: int, *, protocol: int = mqtt.MQTTv311, tls: TlsFiles | None = None,
                 auth: tuple[str, str] | None = None) -> None:
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"pub-{uuid.uuid4().hex[:8]}",
                                  protocol=protocol)
        if tls is not None:
            self.client.tls_set(ca_certs=str(tls.ca), certfile=str(tls.client_cert), keyfile=str(tls.client_key))
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.max_queued_messages_set(0)
        self.client.max_inflight_messages_set(1000)
        connected = threading.Event()
        self.client.on_connect = lambda *a: connected.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        if not connected.wait(10):
            raise AssertionError("publisher could not connect")

    def publish(self, topic: str, payload: bytes | str | dict[str, Any] | list[Any], qos: int = 1,
                retain: bool = False) -> mqtt.MQTTMessageInfo:
        if isinstance(payload, dict | list):
            payload = json.dumps(payload)
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        assert info.rc == mqtt.MQTT_ERR_SUCCESS, info.rc
        return info

    def send(self, topic: str, payload: bytes | str | dict[str, Any] | list[Any], qos: int = 1,
             retain: bool = False) -> None:
        """Publish and wait until the broker has it (QoS 1: PUBACK; QoS 0: written)."""
        self.publish(topic, payload, qos, retain).wait_for_publish(10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


MakeAdapter = Callable[..., Awaitable[tuple[MqttAdapter, Collector, Metrics]]]


@pytest.fixture
async def make_adapter() -> AsyncIterator[MakeAdapter]:
    """``await make_adapter(url=..., subscriptions=[...], **cfg)`` -> started adapter, collector, metrics."""
    started: list[MqttAdapter] = []

    async def make(collector: Collector | None = None, metrics: Metrics | None = None, start: bool = True,
                   **cfg: Any) -> tuple[MqttAdapter, Collector, Metrics]:
        collector = collector or Collector()
        metrics = metrics or Metrics()
        raw = {"id": "plant-mqtt", "type": "mqtt", "reconnect_min": 0.05, "reconnect_max": 0.5, **cfg}
        adapter = MqttAdapter(MqttSource.model_validate(raw), SourceContext(collector.emit, metrics, TAGS))
        if start:
            await adapter.start()
            started.append(adapter)
        return adapter, collector, metrics

    yield make
    for a in started:
        await a.stop()


@pytest.fixture
def publisher(mosquitto: Mosquitto) -> Any:
    pubs: list[Publisher] = []

    def make(**kw: Any) -> Publisher:
        p = Publisher(mosquitto.port, **kw)
        pubs.append(p)
        return p

    yield make
    for p in pubs:
        p.close()


def connected_metric(metrics: Metrics, source: str = "plant-mqtt") -> float | None:
    return metrics.registry.get_sample_value("hazardgw_source_connected", {"source": source})


def decode_errors(metrics: Metrics, where: str, reason: str, source: str = "plant-mqtt") -> float:
    v = metrics.registry.get_sample_value("hazardgw_decode_errors_total",
                                          {"source": source, "where": where, "reason": reason})
    return v or 0.0


async def until_connected(adapter: MqttAdapter, within: float = 10.0) -> None:
    await async_wait_for(lambda: adapter.connected, within, desc=f"adapter connected ({adapter.health()})")


async def sentinel(pub: Publisher, col: Collector, topic: str = "plant/bulk", qos: int = 1) -> None:
    """Publish a marker reading and wait for it: everything published before it has been processed."""
    marker = float(len(col.readings) + 1000)
    pub.send(topic, [{"tag": "LT-203", "v": marker, "ts": TS_MS}], qos=qos)
    await async_wait_for(lambda: any(r.tag == "LT-203" and r.value == marker for r in col.readings),
                         desc=f"sentinel {marker} on {topic}")


JSON_AND_NATIVE = [
    {"topic": "plant/+/telemetry", "qos": 1, "format": "json", "points": [
        {"tag": "PT-201", "path": "$.pressure", "ts_path": "$.ts"},
        {"tag": "TT-202", "path": "$.temp.raw", "ts_path": "$.ts", "scale": 0.1, "offset": -40.0,
         "quality_path": "$.temp.q"},
    ]},
    {"topic": "plant/bulk", "qos": 1, "format": "native"},
]


# --------------------------------------------------------------------------- formats


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_json_and_native_messages_become_readings(
    mosquitto: Mosquitto, make_adapter: MakeAdapter, publisher: Any, protocol: str
) -> None:
    adapter, col, metrics = await make_adapter(url=mosquitto.url, protocol=protocol, subscriptions=JSON_AND_NATIVE)
    await until_connected(adapter)
    assert connected_metric(metrics) == 1.0
    pub = publisher(protocol=mqtt.MQTTv5 if protocol == "5" else mqtt.MQTTv311)
    pub.send("plant/unit1/telemetry",
             {"pressure": 1.25, "ts": "2024-11-23T02:26:40.123456789+08:00", "temp": {"raw": 655, "q": "good"}})
    pub.send("plant/unit2/telemetry", {"pressure": 3.1, "ts": TS_MS, "temp": {"raw": 2000, "q": "bad"}})
    pub.send("plant/bulk", [
        {"tag": "GT-101", "v": 0.4, "ts": TS_MS},
        {"tag": "GT-101", "v": 12, "ts": TS_MS + 1, "q": "good"},
        {"tag": "LT-203", "v": "7.25", "ts": TS_MS + 2},
        {"tag": "NOPE", "v": 1},
        {"tag": "GT-101", "v": "high"},
    ])
    await async_wait_for(lambda: len(col.readings) >= 7, desc="7 readings")
    assert col.readings == [
        Reading("PT-201", 1.25, 1732300000123456789, Quality.GOOD),
        Reading("TT-202", pytest.approx(25.5), 1732300000123456789, Quality.GOOD),
        Reading("PT-201", 3.1, TS_NS, Quality.UNCERTAIN),  # above range [0, 2.5]
        Reading("TT-202", pytest.approx(160.0), TS_NS, Quality.BAD),  # the payload's quality
        Reading("GT-101", 0.4, TS_NS, Quality.GOOD),
        Reading("GT-101", 12.0, TS_NS + 1_000_000, Quality.UNCERTAIN),
        Reading("LT-203", 7.25, TS_NS + 2_000_000, Quality.GOOD),
    ]
    assert all(type(r.value) is float and type(r.ts) is int for r in col.readings)
    assert decode_errors(metrics, "plant/bulk", "unknown_tag") == 1
    assert decode_errors(metrics, "plant/bulk", "not_numeric") == 1
    assert metrics.registry.get_sample_value("hazardgw_readings_in_total", {"source": "plant-mqtt"}) == 7
    h = adapter.health()
    assert h["ok"] and h["connected"] and h["messages"] == 3 and h["readings"] == 7 and h["decode_errors"] == 2


async def test_malformed_payloads_are_counted_and_logged_rate_limited(
    mosquitto: Mosquitto, make_adapter: MakeAdapter, publisher: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ADAPTER_LOG)
    adapter, col, metrics = await make_adapter(url=mosquitto.url, subscriptions=JSON_AND_NATIVE, max_payload=2000)
    await until_connected(adapter)
    pub = publisher()
    for _ in range(5):
        pub.send("plant/u1/telemetry", b"{not json")
    pub.send("plant/u1/telemetry", b"\xff\xd8\xff\xe0 binary")
    pub.send("plant/u1/telemetry", b"")
    pub.send("plant/u1/telemetry", json.dumps({"pressure": 1.0, "pad": "x" * 3000}))
    pub.send("plant/u1/telemetry", b'{"pressure": NaN, "ts": 1732300000123, "temp": {"raw": 650}}')
    pub.send("plant/bulk", b'{"tag": "GT-101", "v": 1}')
    await sentinel(pub, col)
    where = "plant/+/telemetry"
    assert decode_errors(metrics, where, "not_json") == 5
    assert decode_errors(metrics, where, "not_utf8") == 1
    assert decode_errors(metrics, where, "empty") == 1
    assert decode_errors(metrics, where, "oversized") == 1
    assert decode_errors(metrics, where, "not_finite") == 1
    assert decode_errors(metrics, "plant/bulk", "not_array") == 1
    # the good point of the NaN message survived; the adapter is still up
    assert col.of("TT-202") == [Reading("TT-202", 25.0, TS_NS, Quality.GOOD)]
    assert adapter.connected
    not_json_lines = [r for r in caplog.records if "not_json" in r.getMessage()]
    assert len(not_json_lines) == 1  # 5 occurrences, one log line (rate-limited)
    assert all(r.levelno <= logging.WARNING for r in caplog.records)


# --------------------------------------------------------------------------- topics, QoS


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_wildcards_and_overlapping_subscriptions(
    mosquitto: Mosquitto, make_adapter: MakeAdapter, publisher: Any, protocol: str
) -> None:
    subs = [
        {"topic": "site/+/unit/#", "qos": 1, "points": [{"tag": "PT-201", "path": "$.p"}]},
        {"topic": "site/#", "qos": 0, "points": [{"tag": "TT-202", "path": "$.t"}]},
        {"topic": "site/a/unit/x", "qos": 1, "points": [{"tag": "GT-101", "path": "$.g"}]},
        {"topic": "plant/bulk", "format": "native"},
    ]
    adapter, col, _ = await make_adapter(url=mosquitto.url, protocol=protocol, subscriptions=subs)
    await until_connected(adapter)
    pub = publisher()
    msg = {"p": 1.0, "t": 2.0, "g": 3.0}
    pub.send("site/a/unit/x", msg)  # matches all three filters
    pub.send("site/b/unit", msg)  # '#' matches the parent level: filters 1 and 2
    pub.send("site/c/other", msg)  # filter 2 only
    pub.send("elsewhere/site/a", msg)  # none
    await sentinel(pub, col)
    got = sorted((r.tag, r.value) for r in col.readings if r.tag != "LT-203")
    # each message decoded once per matching subscription, no duplicates (MQTT 5 brokers send one
    # copy per subscription, in their own order)
    assert got == sorted([("PT-201", 1.0), ("TT-202", 2.0), ("GT-101", 3.0),  # site/a/unit/x
                          ("PT-201", 1.0), ("TT-202", 2.0),  # site/b/unit
                          ("TT-202", 2.0)])  # site/c/other
    assert adapter.health()["decode_errors"] == 0 and adapter.health()["unrouted"] == 0


@pytest.mark.parametrize("qos", [0, 1])
async def test_qos_0_and_1(mosquitto: Mosquitto, make_adapter: MakeAdapter, publisher: Any, qos: int) -> None:
    subs = [{"topic": "q/+", "qos": qos, "points": [{"tag": "PT-201", "path": "$.v", "ts_path": "$.ts"}]},
            {"topic": "plant/bulk", "qos": qos, "format": "native"}]
    adapter, col, _ = await make_adapter(url=mosquitto.url, subscriptions=subs)
    await until_connected(adapter)
    pub = publisher()
    col.gate.clear()  # hold emit so that messages pile up in the adapter's queue
    for i in range(200):
        pub.publish("q/a", {"v": i / 100, "ts": TS_MS + i}, qos=qos)
    # QoS 1 messages are acknowledged only after emit, so the broker stops at its in-flight
    # window (mosquitto's max_inflight_messages, 20): they are all received (one batch waits in
    # emit, the rest in the queue), and no more come until emit returns
    if qos == 0:
        await async_wait_for(lambda: adapter.health()["queue"] >= 150, desc="messages queued behind emit")
    else:
        await async_wait_for(lambda: adapter.health()["messages"] + adapter.health()["queue"] >= 20,
                             desc="the broker's in-flight window received")
        assert adapter.health()["unacked"] == 0 and adapter.health()["acked"] == 0  # emit has not returned
    col.gate.set()
    await sentinel(pub, col, qos=qos)
    assert [r.value for r in col.of("PT-201")] == [i / 100 for i in range(200)]  # all of them, in order
    assert [r.ts for r in col.of("PT-201")] == [TS_NS + i * 1_000_000 for i in range(200)]
    assert col.batches <= 200 - 150 + 2  # messages that waited together went out as one batch


async def test_retained_messages_need_a_source_timestamp(
    mosquitto: Mosquitto, make_adapter: MakeAdapter, publisher: Any
) -> None:
    pub = publisher()
    pub.send("ret/ts/a", {"v": 1.5, "ts": TS_MS}, retain=True)
    pub.send("ret/ts/b", {"v": 9.5}, retain=True)  # ts_path configured, but no ts
    pub.send("ret/no-ts", {"v": 2.5}, retain=True)
    subs = [{"topic": "ret/ts/+", "points": [{"tag": "PT-201", "path": "$.v", "ts_path": "$.ts"}]},
            {"topic": "ret/no-ts", "points": [{"tag": "LT-203", "path": "$.v"}]},
            {"topic": "plant/bulk", "format": "native"}]
    adapter, col, metrics = await make_adapter(url=mosquitto.url, subscriptions=subs)
    await until_connected(adapter)
    await sentinel(pub, col)
    assert col.of("PT-201") == [Reading("PT-201", 1.5, TS_NS, Quality.GOOD)]
    assert [r.value for r in col.of("LT-203")][:-1] == []  # only the sentinel: the stale retained 2.5 is not "fresh"
    assert decode_errors(metrics, "ret/no-ts", "retained_no_ts") == 1
    assert decode_errors(metrics, "ret/ts/+", "missing_ts") == 1
    # the same payload published live (not retained) is stamped with the receive time
    before = time.time_ns()
    pub.send("ret/no-ts", {"v": 3.5})
    await async_wait_for(lambda: any(r.value == 3.5 for r in col.of("LT-203")))
    r = next(r for r in col.of("LT-203") if r.value == 3.5)
    assert before <= r.ts <= time.time_ns()


# --------------------------------------------------------------------------- TLS and auth


async def test_mqtts_with_client_certificate_and_password(
    mosquitto_tls: Mosquitto, test_pki: TlsFiles, make_adapter: MakeAdapter
) -> None:
    adapter, col, _ = await make_adapter(
        url=mosquitto_tls.tls_url, protocol="5", ca=str(test_pki.ca), cert=str(test_pki.client_cert),
        key=str(test_pki.client_key), username=MQTT_USER, password=MQTT_PASSWORD,
        subscriptions=[{"topic": "plant/bulk", "format": "native"}],
    )
    await until_connected(adapter)
    assert adapter.health()["broker"] == mosquitto_tls.tls_url
    assert mosquitto_tls.tls_port is not None
    pub = Publisher(mosquitto_tls.tls_port, tls=test_pki, auth=(MQTT_USER, MQTT_PASSWORD))
    try:
        pub.send("plant/bulk", [{"tag": "GT-101", "v": 0.5, "ts": TS_MS}])
        await async_wait_for(lambda: col.readings == [Reading("GT-101", 0.5, TS_NS, Quality.GOOD)])
    finally:
        pub.close()


async def test_mqtts_stream_with_backpressure(
    mosquitto_tls: Mosquitto, test_pki: TlsFiles, make_adapter: MakeAdapter
) -> None:
    """Many small messages share a TLS record: pausing must not strand the decrypted rest."""
    col = Collector()
    col.gate.clear()
    adapter, _, _ = await make_adapter(
        collector=col, url=mosquitto_tls.tls_url, ca=str(test_pki.ca), cert=str(test_pki.client_cert),
        key=str(test_pki.client_key), username=MQTT_USER, password=MQTT_PASSWORD, queue_size=10,
        subscriptions=[{"topic": "plant/bulk", "qos": 1, "format": "native"}],
    )
    await until_connected(adapter)
    assert mosquitto_tls.tls_port is not None
    pub = Publisher(mosquitto_tls.tls_port, tls=test_pki, auth=(MQTT_USER, MQTT_PASSWORD))
    try:
        n = 800
        infos = [pub.publish("plant/bulk", [{"tag": "GT-101", "v": float(i)}], qos=1) for i in range(n)]
        await asyncio.to_thread(infos[-1].wait_for_publish, 30)
        # queue_size 10 < the broker's in-flight window (20): the queue fills and reading pauses
        await async_wait_for(lambda: adapter.health()["paused"], desc="reading paused")
        assert adapter.health()["queue_peak"] <= 10
        col.gate.set()
        await async_wait_for(lambda: len(col.readings) == n, timeout=30, desc="every message after resuming")
        assert [r.value for r in col.readings] == [float(i) for i in range(n)]
        assert adapter.health()["pauses"] >= 1 and adapter.health()["dropped"] == 0
    finally:
        pub.close()


@pytest.mark.parametrize("case", ["wrong-password", "untrusted-ca", "no-client-cert"])
async def test_mqtts_failures_keep_retrying_and_report(
    mosquitto_tls: Mosquitto, test_pki: TlsFiles, make_adapter: MakeAdapter, tmp_path: Path, case: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger=ADAPTER_LOG)
    cfg: dict[str, Any] = {"url": mosquitto_tls.tls_url, "ca": str(test_pki.ca), "cert": str(test_pki.client_cert),
                           "key": str(test_pki.client_key), "username": MQTT_USER, "password": MQTT_PASSWORD,
                           "subscriptions": [{"topic": "x", "format": "native"}]}
    expect = {"wrong-password": "code:", "untrusted-ca": "CERTIFICATE_VERIFY_FAILED", "no-client-cert": ""}[case]
    if case == "wrong-password":
        cfg["password"] = "not-the-password"
    elif case == "untrusted-ca":
        cfg["ca"] = str(make_test_pki(tmp_path / "other-pki").ca)
    else:
        del cfg["cert"], cfg["key"]
    adapter, _, metrics = await make_adapter(**cfg)
    await async_wait_for(lambda: caplog.text.count("connect attempt") >= 2, desc="several failed attempts")
    assert not adapter.connected and connected_metric(metrics) == 0.0
    assert adapter.health()["ok"] is False
    assert adapter.last_error is not None and expect in adapter.last_error
    # logged once as a warning, then only at debug level
    assert sum(1 for r in caplog.records if r.name == ADAPTER_LOG and r.levelno >= logging.WARNING) == 1
    if case == "untrusted-ca":  # tls_insecure skips verification (and nothing else)
        ok, _, _ = await make_adapter(**{**cfg, "tls_insecure": True, "id": "insecure"})
        await until_connected(ok)


# --------------------------------------------------------------------------- reconnect


async def test_reconnect_after_broker_kill_and_restart(
    mosquitto: Mosquitto, make_adapter: MakeAdapter, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger=ADAPTER_LOG)
    # a clean session: after the restart only our re-subscription brings messages back
    adapter, col, metrics = await make_adapter(url=mosquitto.url, persistent_session=False,
                                               subscriptions=JSON_AND_NATIVE)
    await until_connected(adapter)
    pub = Publisher(mosquitto.port)
    pub.send("plant/bulk", [{"tag": "GT-101", "v": 1.0, "ts": TS_MS}])
    await async_wait_for(lambda: len(col.readings) == 1)
    pub.close()

    mosquitto.kill()
    await async_wait_for(lambda: not adapter.connected, desc="loss noticed")
    assert connected_metric(metrics) == 0.0
    # stay down long enough for several failed attempts (reconnect_max 0.5 s)
    await async_wait_for(lambda: adapter.health()["last_error"] and "Connection refused" in adapter.last_error,
                         desc="a refused reconnect attempt")
    t0 = time.monotonic()
    mosquitto.restart()  # from the main thread: the child then dies with us (PR_SET_PDEATHSIG)
    await until_connected(adapter, within=10)
    pub = Publisher(mosquitto.port)
    try:
        pub.send("plant/bulk", [{"tag": "GT-101", "v": 2.0, "ts": TS_MS + 1}])
        pub.send("plant/u9/telemetry", {"pressure": 1.0, "ts": TS_MS + 2, "temp": {"raw": 400}})
        await async_wait_for(lambda: len(col.readings) == 4, timeout=10, desc="ingest resumed on both subscriptions")
    finally:
        pub.close()
    assert time.monotonic() - t0 < 10
    assert connected_metric(metrics) == 1.0
    assert [r.value for r in col.of("GT-101")] == [1.0, 2.0]
    h = adapter.health()
    assert h["reconnects"] == 1 and h["ok"]
    lost = [r for r in caplog.records if "lost connection" in r.getMessage()]
    back = [r for r in caplog.records if "connected to" in r.getMessage() and "after" in r.getMessage()]
    assert len(lost) == 1 and lost[0].levelno == logging.WARNING  # once, not per attempt
    assert len(back) == 1 and back[0].levelno == logging.INFO
    assert not [r for r in caplog.records if "cannot connect" in r.getMessage()]


async def test_starts_before_the_broker_and_connects_when_it_comes_up(
    tmp_path: Path, make_adapter: MakeAdapter
) -> None:
    broker = Mosquitto(tmp_path / "late")
    adapter, col, _ = await make_adapter(url=broker.url, subscriptions=[{"topic": "plant/bulk", "format": "native"}])
    await async_wait_for(lambda: adapter.last_error is not None, desc="first attempt failed")
    assert not adapter.connected
    try:
        broker.start()  # main thread: PR_SET_PDEATHSIG applies
        await until_connected(adapter)
        pub = Publisher(broker.port)
        pub.send("plant/bulk", [{"tag": "GT-101", "v": 1.0, "ts": TS_MS}])
        await async_wait_for(lambda: len(col.readings) == 1)
        pub.close()
    finally:
        await adapter.stop()
        broker.stop()


# --------------------------------------------------------------------------- persistent session


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
async def test_persistent_session_delivers_messages_published_while_stopped(
    mosquitto: Mosquitto, make_adapter: MakeAdapter, publisher: Any, protocol: str
) -> None:
    cfg = {"url": mosquitto.url, "protocol": protocol, "client_id": f"hazardgw-persist-{protocol}",
           "subscriptions": [{"topic": "plant/bulk", "qos": 1, "format": "native"}]}
    first, col1, _ = await make_adapter(**cfg)
    await until_connected(first)
    await first.stop()
    assert not first.connected
    pub = publisher()
    for i in range(50):
        pub.send("plant/bulk", [{"tag": "GT-101", "v": float(i), "ts": TS_MS + i}], qos=1)
    _, col2, _ = await make_adapter(**cfg)
    await async_wait_for(lambda: len(col2.readings) == 50, desc="queued QoS 1 messages delivered")
    assert [r.value for r in col2.readings] == [float(i) for i in range(50)]
    assert col1.readings == []
    # and the broker log shows the first adapter disconnected cleanly (DISCONNECT), not dropped
    assert f"Client {cfg['client_id']} disconnected." in mosquitto.log_tail(400)


async def test_clean_session_does_not_get_messages_published_while_stopped(
    mosquitto: Mosquitto, make_adapter: MakeAdapter, publisher: Any
) -> None:
    cfg = {"url": mosquitto.url, "client_id": "hazardgw-clean", "persistent_session": False,
           "subscriptions": [{"topic": "plant/bulk", "qos": 1, "format": "native"}]}
    first, _, _ = await make_adapter(**cfg)
    await until_connected(first)
    await first.stop()
    pub = publisher()
    pub.send("plant/bulk", [{"tag": "GT-101", "v": 1.0, "ts": TS_MS}], qos=1)
    second, col, _ = await make_adapter(**cfg)
    await until_connected(second)
    await sentinel(pub, col)
    assert col.of("GT-101") == []  # the control case: without a session the message is gone


# --------------------------------------------------------------------------- backpressure


async def test_slow_emit_pauses_reading_instead_of_buffering(tmp_path: Path, make_adapter: MakeAdapter) -> None:
    broker = Mosquitto(tmp_path / "bp", extra_config="max_queued_messages 0\nmax_inflight_messages 100")
    broker.start()  # main thread: PR_SET_PDEATHSIG applies
    adapter: MqttAdapter | None = None
    try:
        col = Collector()
        col.gate.clear()  # the pipeline is "full": emit waits
        queue_size = 50
        adapter, _, _ = await make_adapter(collector=col, url=broker.url, queue_size=queue_size,
                                           subscriptions=[{"topic": "plant/bulk", "qos": 1, "format": "native"}])
        await until_connected(adapter)
        pub = Publisher(broker.port)
        n = 3000
        payload = [{"tag": "GT-101", "v": 0.0, "ts": TS_MS, "pad": "x" * 200}]
        infos = []
        for i in range(n):
            payload[0]["v"] = float(i)
            infos.append(pub.publish("plant/bulk", payload, qos=1))
        await asyncio.to_thread(infos[-1].wait_for_publish, 30)  # the broker holds all of them now
        await async_wait_for(lambda: adapter.health()["paused"], desc="reading paused")
        h = adapter.health()
        assert col.waiting == 1  # one batch is stuck in emit ...
        assert h["queue"] <= queue_size and h["queue_peak"] <= queue_size  # ... and the queue stopped at its bound
        # read from the socket: the batch stuck in emit (at most what was queued) + the queue, not 3000
        assert h["messages"] + h["queue"] <= 2 * queue_size
        assert h["dropped"] == 0
        col.gate.set()  # the pipeline drains
        await async_wait_for(lambda: len(col.readings) == n, timeout=60, desc="all messages delivered")
        assert [r.value for r in col.readings] == [float(i) for i in range(n)]  # none lost, in order
        h = adapter.health()
        assert h["pauses"] >= 1 and h["dropped"] == 0 and h["queue_peak"] <= queue_size
        pub.close()
    finally:
        if adapter is not None:
            await adapter.stop()
        broker.stop()


async def test_stop_is_idempotent_and_bounded(mosquitto: Mosquitto, make_adapter: MakeAdapter) -> None:
    adapter, _, metrics = await make_adapter(url=mosquitto.url, subscriptions=JSON_AND_NATIVE)
    await until_connected(adapter)
    t0 = time.monotonic()
    await adapter.stop()
    await adapter.stop()
    assert time.monotonic() - t0 < 5
    assert not adapter.connected and connected_metric(metrics) == 0.0
    assert adapter.health()["connected"] is False


def test_quick_ack_turns_off_delayed_ack_on_the_broker_socket() -> None:
    """Issue 23: after each read the adapter's socket acknowledges at once (TCP_QUICKACK), so
    a broker without TCP_NODELAY does not hold an alarm reading under Nagle for our delayed
    ACK (20-45 ms measured). A closed socket is ignored."""
    import socket

    from adapters.mqtt.flow import quick_ack

    srv = socket.create_server(("127.0.0.1", 0))
    cli = socket.create_connection(srv.getsockname())
    conn, _ = srv.accept()
    try:
        cli.setsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK, 0)
        assert cli.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 0
        quick_ack(cli)
        assert cli.getsockopt(socket.IPPROTO_TCP, socket.TCP_QUICKACK) == 1
    finally:
        for s in (cli, conn, srv):
            s.close()
    quick_ack(cli)  # closed: no error
