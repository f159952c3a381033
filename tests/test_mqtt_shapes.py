"""The MQTT source against payloads as real devices publish them (issue 18), on two broker
implementations (mosquitto and amqtt): topic bindings, selection by name, records, local
times, units and states, Sparkplug B births/data/deaths encoded with the same proto, QoS 2,
and a clean stop while a listener never answers CONNACK.
"""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from helpers import async_wait_for
from paho.mqtt.enums import CallbackAPIVersion
from test_mqtt_adapter import Collector, Publisher

from adapters.mqtt import sparkplug_b_pb2
from adapters.mqtt.adapter import MqttAdapter
from adapters.mqtt.config import MqttSource
from adapters.mqtt.sparkplug import REBIRTH_METRIC
from devkit.services import Amqtt, Mosquitto
from gateway.core.config import Tag
from gateway.core.metrics import Metrics
from gateway.core.models import Quality, Reading
from gateway.core.sources import SourceContext
from gateway.validate import validate_text

Payload: Any = sparkplug_b_pb2.Payload  # type: ignore[attr-defined]
TZ_NS = 8 * 3600 * 10**9  # Asia/Shanghai
TAGS = {t.id: t for t in [
    Tag(id="GT-207", kind="combustible_gas", gas="CH4", unit="%LEL", range=(0.0, 100.0)),
    Tag(id="GT-208", kind="combustible_gas", gas="CH4", unit="%LEL", range=(0.0, 100.0)),
    Tag(id="GT-301", kind="toxic_gas", gas="CO", unit="ppm", range=(0.0, 500.0)),
    Tag(id="GT-302", kind="toxic_gas", gas="H2S", unit="ppm", range=(0.0, 100.0)),
    Tag(id="PT-201", kind="pressure", unit="MPa", range=(0.0, 2.5)),
    Tag(id="XS-101", kind="discrete"),
    Tag(id="TT-101", kind="temperature", unit="°C"),
]}
BROKERS = ["mosquitto", "amqtt"]


@pytest.fixture(params=BROKERS)
def broker(request: pytest.FixtureRequest) -> Mosquitto | Amqtt:
    return request.getfixturevalue(request.param)  # type: ignore[no-any-return]


@pytest.fixture
async def started() -> AsyncIterator[list[MqttAdapter]]:
    adapters: list[MqttAdapter] = []
    yield adapters
    for a in adapters:
        await a.stop()


async def run_adapter(started: list[MqttAdapter], url: str, subs: list[dict[str, Any]], **cfg: Any
                      ) -> tuple[MqttAdapter, Collector, Metrics]:
    col, metrics = Collector(), Metrics()
    raw = {"id": "dev", "type": "mqtt", "url": url, "reconnect_min": 0.05, "reconnect_max": 0.5,
           "client_id": f"gw-{uuid.uuid4().hex[:6]}", "subscriptions": subs, **cfg}
    a = MqttAdapter(MqttSource.model_validate(raw), SourceContext(col.emit, metrics, TAGS))
    await a.start()
    started.append(a)
    await async_wait_for(lambda: a.connected, 10, desc="adapter connected")
    return a, col, metrics


def errors(metrics: Metrics, where: str, reason: str) -> float:
    return metrics.registry.get_sample_value(
        "hazardgw_decode_errors_total", {"source": "dev", "where": where, "reason": reason}) or 0.0


async def until(col: Collector, n: int, desc: str) -> None:
    await async_wait_for(lambda: len(col.readings) >= n, 10, desc=f"{desc} ({len(col.readings)}/{n})")


# --------------------------------------------------------------------------- topic binding / names


async def test_two_devices_on_one_wildcard_pattern_stay_separate(broker: Any, started: list[MqttAdapter]) -> None:
    subs = [{"topic": "plant/{device}/telemetry", "points": [
        {"tag": "GT-207", "match": {"device": "gds7"}, "path": "$.ch1"},
        {"tag": "GT-208", "match": {"device": "gds8"}, "path": "$.ch1"},
    ]}]
    a, col, metrics = await run_adapter(started, broker.url, subs)
    pub = Publisher(broker.port)
    try:
        for i in range(10):
            pub.send("plant/gds7/telemetry", {"ch1": 5 + i / 100})
            pub.send("plant/gds8/telemetry", {"ch1": 50 + i / 100})
        pub.send("plant/gds9/telemetry", {"ch1": 99})  # no point matches: counted, not read
        await until(col, 20, "both devices")
        await async_wait_for(lambda: errors(metrics, "plant/{device}/telemetry", "unmatched_topic") == 1, 5)
    finally:
        pub.close()
    assert [r.value for r in col.of("GT-207")] == [5 + i / 100 for i in range(10)]
    assert [r.value for r in col.of("GT-208")] == [50 + i / 100 for i in range(10)]
    assert a.health()["acked"] >= 21


async def test_reordered_metrics_stay_on_their_tags(broker: Any, started: list[MqttAdapter]) -> None:
    subs = [{"topic": "vendor/gds1/up", "qos": 1, "points": [
        {"tag": "GT-301", "path": "$.metrics[?(@.name=='CO')].value", "ts_path": "$.metrics[?(@.name=='CO')].ts"},
        {"tag": "GT-302", "path": "$.metrics[?(@.name=='H2S')].value",
         "quality_path": "$.metrics[?(@.name=='H2S')].q"},
    ]}]
    _, col, metrics = await run_adapter(started, broker.url, subs)
    pub = Publisher(broker.port)
    try:
        co = {"name": "CO", "value": 12.0, "ts": 1732300000000}
        h2s = {"name": "H2S", "value": 3.0, "q": "good"}
        pub.send("vendor/gds1/up", {"metrics": [co, h2s]})
        pub.send("vendor/gds1/up", {"metrics": [h2s | {"value": 4.0}, co | {"value": 13.0}]})  # reordered
        pub.send("vendor/gds1/up", {"metrics": [co, co, h2s]})  # CO twice: ambiguous, not guessed
        await until(col, 5, "readings")
        await async_wait_for(lambda: errors(metrics, "vendor/gds1/up", "ambiguous_path") == 1, 5)
    finally:
        pub.close()
    assert [r.value for r in col.of("GT-301")] == [12.0, 13.0]
    assert [r.value for r in col.of("GT-302")] == [3.0, 4.0, 3.0]
    assert col.of("GT-301")[0].ts == 1732300000000 * 10**6


# --------------------------------------------------------------------------- records


async def test_records_of_every_shape(broker: Any, started: list[MqttAdapter]) -> None:
    subs: list[dict[str, Any]] = [
        # [{"id": .., "value": ..}]: ids are tag ids of the table
        {"topic": "r/ids", "format": "records", "each": "$[*]", "tag_path": "$.id", "value_path": "$.value"},
        # ThingsBoard: [{"ts": .., "values": {key: value}}], keys mapped by points
        {"topic": "r/tb/{device}", "format": "records", "each": "$[*]", "values_path": "$.values", "ts_path": "$.ts",
         "points": [{"tag": "GT-207", "key": "lel", "match": {"device": "d1"}},
                    {"tag": "TT-101", "key": "temperature", "match": {"device": "d1"}}]},
        # a vendor batch with local times and vendor quality codes
        {"topic": "r/batch", "format": "records", "each": "$.data[*]", "tag_path": "$.ch", "value_path": "$.v",
         "ts_path": "$.t", "quality_path": "$.st", "quality_map": {192: "good", 0: "bad"},
         "points": [{"tag": "GT-301", "key": 1}, {"tag": "GT-302", "key": 2}]},
    ]
    _, col, metrics = await run_adapter(started, broker.url, subs, timezone="Asia/Shanghai")
    pub = Publisher(broker.port)
    try:
        pub.send("r/ids", [{"id": "PT-201", "value": 1.1}, {"id": "NOPE", "value": 2}, {"id": "XS-101", "value": 1}])
        pub.send("r/tb/d1", [{"ts": 1732300000000, "values": {"lel": 1.0, "temperature": 20.5}},
                             {"ts": 1732300001000, "values": {"lel": 2.0, "temperature": 20.6}},
                             {"ts": 1732300002000, "values": {"lel": 3.0, "temperature": 20.7}}])
        pub.send("r/batch", {"data": [{"ch": 1, "v": "12.5", "t": "2024-11-23 10:26:40", "st": 192},
                                      {"ch": 2, "v": 0.5, "t": "20241123102641", "st": 0},
                                      {"ch": 3, "v": 9, "t": "2024-11-23 10:26:40", "st": 192}]})
        await until(col, 2 + 6 + 2, "records")
        await async_wait_for(lambda: errors(metrics, "r/ids", "unknown_tag") == 1, 5)
        await async_wait_for(lambda: errors(metrics, "r/batch", "unknown_tag") == 1, 5)
    finally:
        pub.close()
    assert [r.value for r in col.of("PT-201")] == [1.1] and [r.value for r in col.of("XS-101")] == [1.0]
    # the middle ThingsBoard entry is kept, each entry with its own timestamp
    assert [(r.value, r.ts) for r in col.of("GT-207")] == [(1.0 + i, (1732300000000 + i * 1000) * 10**6)
                                                            for i in range(3)]
    assert [r.value for r in col.of("TT-101")] == [20.5, 20.6, 20.7]
    local = 1732328800 * 10**9  # 2024-11-23 10:26:40 +08:00
    assert col.of("GT-301") == [Reading("GT-301", 12.5, local, Quality.GOOD)]
    assert col.of("GT-302") == [Reading("GT-302", 0.5, local + 10**9, Quality.BAD)]


# --------------------------------------------------------------------------- values and time


async def test_naive_local_times_units_states_and_quality_codes(broker: Any, started: list[MqttAdapter]) -> None:
    subs = [{"topic": "v/{device}", "states": {"ON": 1, "OFF": 0, "报警": 1, "正常": 0}, "decimal_comma": True,
             "quality_map": {"OK": "good", "FLT": "bad"}, "points": [
                 {"tag": "GT-301", "match": {"device": "a"}, "path": "$.co", "ts_path": "$.time"},
                 {"tag": "PT-201", "match": {"device": "a"}, "path": "$.p", "ts_path": "$.time",
                  "quality_path": "$.st"},
                 {"tag": "XS-101", "match": {"device": "a"}, "path": "$.alarm", "ts_path": "$.time"}]}]
    _, col, metrics = await run_adapter(started, broker.url, subs, timezone="Asia/Shanghai")
    pub = Publisher(broker.port)
    local = 1732328800 * 10**9
    try:
        pub.send("v/a", {"co": "12.5 ppm", "p": "0.6MPa", "alarm": "报警", "st": "OK", "time": "2024-11-23 10:26:40"})
        pub.send("v/a", {"co": "12,5", "p": "0,6 kPa", "alarm": "off", "st": "FLT", "time": "2024/11/23 10:26:41"})
        pub.send("v/a", {"co": "7 %LEL", "p": 1, "alarm": "ON", "time": "2024-11-23T10:26:42"})
        await until(col, 9, "readings")
    finally:
        pub.close()
    assert col.of("GT-301") == [Reading("GT-301", 12.5, local, Quality.GOOD),
                                Reading("GT-301", 12.5, local + 10**9, Quality.GOOD),
                                Reading("GT-301", None, local + 2 * 10**9, Quality.BAD)]  # %LEL is not ppm
    assert col.of("PT-201") == [Reading("PT-201", 0.6, local, Quality.GOOD),
                                Reading("PT-201", None, local + 10**9, Quality.BAD),  # kPa is not MPa
                                Reading("PT-201", 1.0, local + 2 * 10**9, Quality.GOOD)]
    assert [r.value for r in col.of("XS-101")] == [1.0, 0.0, 1.0]
    assert errors(metrics, "v/{device}", "unit_mismatch") == 2


async def test_naive_times_without_a_timezone_stay_rejected(mosquitto: Mosquitto, started: list[MqttAdapter]) -> None:
    subs = [{"topic": "v/a", "points": [{"tag": "GT-301", "path": "$.co", "ts_path": "$.time"}]}]
    _, col, metrics = await run_adapter(started, mosquitto.url, subs)
    pub = Publisher(mosquitto.port)
    try:
        pub.send("v/a", {"co": 1, "time": "2024-11-23 10:26:40"})
        pub.send("v/a", {"co": 2, "time": "2024-11-23T02:26:40Z"})
        await until(col, 1, "the reading with an offset")
    finally:
        pub.close()
    assert [r.value for r in col.readings] == [2.0]
    assert errors(metrics, "v/a", "naive_ts") == 1


# --------------------------------------------------------------------------- QoS 2


async def test_qos_2_end_to_end(broker: Any, started: list[MqttAdapter]) -> None:
    subs = [{"topic": "q2/bulk", "qos": 2, "format": "native"}]
    a, col, _ = await run_adapter(started, broker.url, subs)
    pub = Publisher(broker.port)
    try:
        # paced (each PUBLISH completes at the broker first): mosquitto 2.0.11 strands QoS 2 messages
        # queued behind a full in-flight window when they arrive back to back (a plain paho
        # subscriber gets 20 of 100 too)
        for i in range(100):
            await asyncio.to_thread(pub.send, "q2/bulk", [{"tag": "TT-101", "v": float(i), "ts": 1732300000000 + i}],
                                    2)
        await until(col, 100, "QoS 2 messages")
        await async_wait_for(lambda: a.health()["acked"] == 100 and a.health()["unacked"] == 0, 10,
                             desc="every PUBREC sent")
    finally:
        pub.close()
    assert [r.value for r in col.readings] == [float(i) for i in range(100)]  # exactly once, in order


# --------------------------------------------------------------------------- Sparkplug B


class SparkplugNode:
    """A minimal Sparkplug B edge node encoding with the gateway's own proto."""

    def __init__(self, pub: Publisher, group: str = "plant1", edge: str = "edge1") -> None:
        self.pub, self.group, self.edge = pub, group, edge
        self.seq = 0
        self.bd_seq = 0

    def topic(self, kind: str, device: str | None = None) -> str:
        return f"spBv1.0/{self.group}/{kind}/{self.edge}" + (f"/{device}" if device else "")

    def payload(self, metrics: list[dict[str, Any]], *, seq: bool = True, ts: int = 1732300000000) -> bytes:
        p = Payload(timestamp=ts)
        if seq:
            p.seq = self.seq
            self.seq = (self.seq + 1) % 256
        for m in metrics:
            pm = p.metrics.add()
            for k, v in m.items():
                setattr(pm, k, v)
        return p.SerializeToString()  # type: ignore[no-any-return]

    def nbirth(self) -> None:
        self.seq = 0
        bd = {"name": "bdSeq", "datatype": 8, "long_value": self.bd_seq}
        self.pub.send(self.topic("NBIRTH"), self.payload([
            bd, {"name": "Node Control/Rebirth", "datatype": 11, "boolean_value": False},
            {"name": "Pressure", "alias": 1, "datatype": 9, "float_value": 0.5},
            {"name": "Temp", "alias": 2, "datatype": 3, "int_value": (-5) & 0xFFFFFFFF}]), qos=0)

    def dbirth(self, device: str) -> None:
        self.pub.send(self.topic("DBIRTH", device), self.payload([
            {"name": "CO", "alias": 10, "datatype": 10, "double_value": 1.0},
            {"name": "H2S", "alias": 11, "datatype": 10, "double_value": 0.1}]), qos=0)

    def data(self, metrics: list[dict[str, Any]], device: str | None = None) -> None:
        self.pub.send(self.topic("DDATA" if device else "NDATA", device), self.payload(metrics), qos=0)

    def ndeath(self, bd_seq: int | None = None) -> None:
        bd = self.bd_seq if bd_seq is None else bd_seq
        self.pub.send(self.topic("NDEATH"), self.payload([{"name": "bdSeq", "datatype": 8, "long_value": bd}],
                                                         seq=False), qos=0)


SPB_SUB = {"topic": "spBv1.0/plant1/#", "format": "sparkplug_b", "qos": 0, "rebirth": True, "points": [
    {"tag": "PT-201", "edge_node": "edge1", "metric": "Pressure"},
    {"tag": "TT-101", "edge_node": "edge1", "metric": "Temp"},
    {"tag": "GT-301", "edge_node": "edge1", "device": "gds1", "metric": "CO"},
    {"tag": "GT-302", "edge_node": "edge1", "device": "gds1", "metric": "H2S"},
]}


def _watch_ncmd(port: int) -> tuple[mqtt.Client, list[Any]]:
    got: list[Any] = []
    ready = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"host-{uuid.uuid4().hex[:6]}")

    def on_connect(*_: Any) -> None:
        c.subscribe("spBv1.0/plant1/NCMD/#", 0)

    c.on_connect = on_connect
    c.on_subscribe = lambda *_: ready.set()  # SUBACK: NCMDs from now on reach us
    c.on_message = lambda _c, _u, m: got.append((m.topic, Payload.FromString(m.payload)))
    c.connect("127.0.0.1", port)
    c.loop_start()
    assert ready.wait(10)
    return c, got


async def test_sparkplug_birth_data_gap_rebirth_and_death(broker: Any, started: list[MqttAdapter]) -> None:
    a, col, metrics = await run_adapter(started, broker.url, [SPB_SUB])
    watcher, ncmds = _watch_ncmd(broker.port)
    pub = Publisher(broker.port)
    node = SparkplugNode(pub)
    try:
        node.nbirth()
        node.dbirth("gds1")
        # data by alias, metrics in any order, with their own timestamps
        node.data([{"alias": 11, "double_value": 0.2, "timestamp": 1732300001000},
                   {"alias": 10, "double_value": 2.0, "timestamp": 1732300001000}], device="gds1")
        node.data([{"alias": 2, "int_value": 7}, {"alias": 1, "float_value": 0.75}])
        await until(col, 8, "births and data")
        assert [r.value for r in col.of("GT-301")] == [1.0, 2.0]
        assert [r.value for r in col.of("GT-302")] == [0.1, 0.2]
        assert [r.value for r in col.of("TT-101")] == [-5.0, 7.0]  # Int32 sign-extended
        assert col.of("GT-301")[1].ts == 1732300001000 * 10**6
        assert all(r.quality == Quality.GOOD for r in col.readings)
        # a sequence gap: uncertain until the next birth, and a Rebirth request to the node
        node.seq += 3
        node.data([{"alias": 1, "float_value": 0.8}])
        await until(col, 9, "data after the gap")
        assert col.readings[-1] == Reading("PT-201", 0.800000011920929, 1732300000000 * 10**6, Quality.UNCERTAIN)
        await async_wait_for(lambda: ncmds, 5, desc="Rebirth NCMD")
        topic, req = ncmds[0]
        assert topic == "spBv1.0/plant1/NCMD/edge1"
        assert [(m.name, m.boolean_value) for m in req.metrics] == [(REBIRTH_METRIC, True)]
        assert errors(metrics, "spBv1.0/plant1/#", "seq_gap") == 1 and a.health()["rebirths"] == 1
        node.nbirth()  # the node answers with a birth: good again
        node.data([{"alias": 1, "float_value": 1.0}])
        await until(col, 12, "after the rebirth")
        assert col.readings[-1].quality == Quality.GOOD
        # DDEATH: the device's tags go comm; a stale NDEATH (older bdSeq) is ignored; NDEATH: all comm
        node.data([], device=None)
        pub.send(node.topic("DDEATH", "gds1"), node.payload([]), qos=0)
        await until(col, 14, "DDEATH")
        assert {(r.tag, r.value, r.quality) for r in col.readings[-2:]} == {
            ("GT-301", None, Quality.COMM), ("GT-302", None, Quality.COMM)}
        node.ndeath(bd_seq=99)
        node.ndeath()
        await until(col, 18, "NDEATH")
        assert {(r.tag, r.quality) for r in col.readings[-4:]} == {
            (t, Quality.COMM) for t in ("PT-201", "TT-101", "GT-301", "GT-302")}
        assert errors(metrics, "spBv1.0/plant1/#", "stale_death") == 1
    finally:
        pub.close()
        watcher.loop_stop()
        watcher.disconnect()


async def test_sparkplug_data_before_any_birth_asks_for_one(mosquitto: Mosquitto,
                                                            started: list[MqttAdapter]) -> None:
    _, col, metrics = await run_adapter(started, mosquitto.url, [SPB_SUB])
    watcher, ncmds = _watch_ncmd(mosquitto.port)
    pub = Publisher(mosquitto.port)
    node = SparkplugNode(pub)
    try:
        node.seq = 17
        node.data([{"alias": 1, "float_value": 0.5}, {"name": "Temp", "datatype": 3, "int_value": 4}])
        await until(col, 1, "the metric named in the data")
        await async_wait_for(lambda: ncmds, 5, desc="Rebirth NCMD")
        assert col.readings == [Reading("TT-101", 4.0, 1732300000000 * 10**6, Quality.GOOD)]
        assert errors(metrics, "spBv1.0/plant1/#", "unknown_alias") == 1
    finally:
        pub.close()
        watcher.loop_stop()
        watcher.disconnect()


# --------------------------------------------------------------------------- stop / check


async def test_stop_during_a_connect_that_never_gets_connack(
    started: list[MqttAdapter], caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    silent = socket.create_server(("127.0.0.1", 0))  # accepts TCP, never answers CONNECT
    port = silent.getsockname()[1]
    held: list[socket.socket] = []
    stop_accepting = threading.Event()
    got_connect = threading.Event()

    def accept() -> None:
        silent.settimeout(0.1)
        while not stop_accepting.is_set():
            try:
                conn = silent.accept()[0]
                held.append(conn)
                conn.settimeout(5)
                if conn.recv(1):  # the CONNECT packet: the client now waits for a CONNACK
                    got_connect.set()
            except TimeoutError:
                continue
            except OSError:
                return

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    col = Collector()
    a = MqttAdapter(MqttSource.model_validate({
        "id": "dev", "type": "mqtt", "url": f"mqtt://127.0.0.1:{port}",
        "subscriptions": [{"topic": "x", "format": "native"}]}), SourceContext(col.emit, Metrics(), TAGS))
    try:
        with caplog.at_level(logging.DEBUG):
            await a.start()
            await async_wait_for(got_connect.is_set, 5, desc="CONNECT received by the silent listener")
            t0 = time.monotonic()
            await a.stop()
            took = time.monotonic() - t0
            import gc

            gc.collect()  # a never-retrieved future exception would be logged now
    finally:
        stop_accepting.set()
        t.join(5)
        silent.close()
        for s in held:
            s.close()
    assert took < 1.0, took
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    err = capfd.readouterr().err
    assert "Traceback" not in err and "never retrieved" not in err


def _site(subs: list[dict[str, Any]]) -> str:
    return json.dumps({
        "site": {"code": "T", "name": "t"},
        "sources": [{"id": "m", "type": "mqtt", "url": "mqtt://127.0.0.1:1883", "subscriptions": subs}],
        "tags": [{"id": "GT-207", "kind": "analog"}, {"id": "GT-208", "kind": "analog"}],
        "api": {"enabled": False},
    })


@pytest.mark.parametrize(("subs", "error"), [
    ([{"topic": "plant/+/telemetry", "points": [{"tag": "GT-207", "path": "$.a"}]}], "single_publisher"),
    ([{"topic": "plant/{device}/telemetry", "points": [{"tag": "GT-207", "path": "$.a"}]}], "add match"),
    ([{"topic": "plant/#", "format": "records", "each": "$[*]", "tag_path": "$.id", "value_path": "$.v",
       "points": [{"tag": "GT-207", "key": "a"}]}], "single_publisher"),
    ([{"topic": "plant/{device}/telemetry", "points": [
        {"tag": "GT-207", "path": "$.a", "match": {"device": "d1"}},
        {"tag": "GT-208", "path": "$.a", "match": {"device": "d2"}}]}], None),
    ([{"topic": "plant/+/telemetry", "single_publisher": True, "points": [{"tag": "GT-207", "path": "$.a"}]}],
     None),
])
def test_check_refuses_unbound_points_in_wildcard_subscriptions(subs: list[dict[str, Any]], error: str | None
                                                                 ) -> None:
    v = validate_text(_site(subs), "site.yaml", {})
    msgs = [p.message for p in v.errors]
    if error is None:
        assert msgs == []
    else:
        assert any(error in m for m in msgs), msgs


def test_comm_units_group_tags_by_publisher() -> None:
    src = MqttSource.model_validate({"id": "m", "type": "mqtt", "url": "mqtt://h", "subscriptions": [
        SPB_SUB,
        {"topic": "plant/{device}/telemetry", "points": [{"tag": "GT-207", "path": "$.a", "match": {"device": "d1"}}]},
        {"topic": "plant/x", "points": [{"tag": "GT-208", "path": "$.a"}]},
    ]})
    assert src.publishers() == {
        "PT-201": "spBv1.0/plant1/edge1", "TT-101": "spBv1.0/plant1/edge1",
        "GT-301": "spBv1.0/plant1/edge1/gds1", "GT-302": "spBv1.0/plant1/edge1/gds1",
        "GT-207": "plant/d1/telemetry", "GT-208": "plant/x",
    }
    # the alarm engine's units: one per publisher, the broker connection as their shared link
    units = {u.name: u for u in src.comm_units()}
    assert set(units) == {"spBv1.0/plant1/edge1", "spBv1.0/plant1/edge1/gds1", "plant/d1/telemetry", "plant/x"}
    assert units["spBv1.0/plant1/edge1/gds1"].tags == ("GT-301", "GT-302")
    assert units["spBv1.0/plant1/edge1"].reports_comm and not units["plant/x"].reports_comm
    assert {u.link.id for u in units.values() if u.link is not None} == {"m"}
    assert len({u.id for u in units.values()}) == 4 and "/" not in "".join(u.id for u in units.values())


