"""End to end through a whole gateway: real mosquitto -> MQTT adapter -> pipeline -> InfluxDB.

Both write paths: influxd 1.6.7 through v1 ``/write`` and VictoriaMetrics through
influxdb-client's ``/api/v2/write``. Values, timestamps (to the ns on influxd), quality and
tags are read back and compared.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import paho.mqtt.client as paho
from helpers import async_wait_for

from devkit.services import Influxd, Mosquitto, VictoriaMetrics
from gateway.config import Config
from gateway.supervisor import Gateway

TS = 1_732_300_000_123_456_789


def gateway_config(mqtt_url: str, influx: dict[str, Any], store: str) -> Config:
    return Config.model_validate(
        {
            "site": {"code": "91430900DEMO0001XX", "name": "E2E"},
            "hazard_sources": [{"code": "HS-002", "name": "LPG", "grade": 3}],
            "sources": [
                {
                    "id": "plant-mqtt",
                    "type": "mqtt",
                    "url": mqtt_url,
                    "client_id": f"e2e-{abs(hash(store)) % 10**8}",
                    "subscriptions": [
                        {"topic": "plant/+/telemetry", "qos": 1, "format": "json", "single_publisher": True,
                         "points": [{"tag": "PT-201", "path": "$.pressure", "ts_path": "$.ts"},
                                    {"tag": "GT-207", "path": "$.gas.lel", "ts_path": "$.ts"}]},
                        {"topic": "plant/bulk", "qos": 1, "format": "native"},
                    ],
                }
            ],
            "tags": [
                {"id": "PT-201", "hazard_source": "HS-002", "kind": "pressure", "unit": "MPa", "range": [0, 2.5]},
                {"id": "GT-207", "hazard_source": "HS-002", "kind": "combustible_gas", "gas": "LPG",
                 "unit": "%LEL", "range": [0, 100]},
                {"id": "TT-202", "hazard_source": "HS-002", "kind": "temperature", "unit": "°C", "range": [-40, 80]},
            ],
            "influx": {"flush_interval": "100ms", **influx},
            "api": {"enabled": False},
            "store": {"path": store},
        }
    )


def publisher(broker: Mosquitto) -> paho.Client:
    c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="e2e-pub")
    c.connect(broker.host, broker.port)
    c.loop_start()
    return c


def publish(c: paho.Client, topic: str, payload: str | bytes) -> None:
    info = c.publish(topic, payload, qos=1)
    info.wait_for_publish(5)
    assert info.is_published()


async def started_gateway(cfg: Config) -> Gateway:
    gw = Gateway(cfg)
    await gw.start()
    await async_wait_for(lambda: gw.health()["components"]["source:plant-mqtt"].get("connected"), timeout=10)
    return gw


async def test_mqtt_json_and_native_to_influxd_v1(
    mosquitto: Mosquitto, influxd: Influxd, influx_db: str, tmp_path: Any
) -> None:
    cfg = gateway_config(mosquitto.url, {"url": influxd.url, "api": "v1", "bucket": influx_db}, str(tmp_path))
    gw = await started_gateway(cfg)
    pub = publisher(mosquitto)
    try:
        publish(pub, "plant/sphere1/telemetry", json.dumps({"pressure": 1.234, "gas": {"lel": 3.5}, "ts": TS}))
        publish(pub, "plant/sphere2/telemetry", json.dumps({"pressure": 2.6, "ts": TS + 1}))  # outside range
        publish(pub, "plant/bulk", json.dumps([
            {"tag": "TT-202", "v": 18.25, "ts": 1_732_300_000_500},
            {"tag": "NOPE", "v": 1, "ts": 1_732_300_000_500},          # unknown tag: counted, skipped
            {"tag": "TT-202", "v": "hot", "ts": 1_732_300_000_600},    # non-numeric: counted, skipped
            {"tag": "TT-202", "v": 19.5, "ts": 1_732_300_000_700},
        ]))
        publish(pub, "plant/sphere1/telemetry", b"\xff\xfe not json")  # malformed: counted, adapter goes on

        def rows() -> list[dict[str, Any]]:
            return influxd.select(influx_db, 'SELECT * FROM reading GROUP BY "tag"')

        got = await async_wait_for(lambda: len(r := rows()) == 5 and r, timeout=15)
        by = {(r["tag"], r["time"]): r for r in got}
        pt = by[("PT-201", TS)]
        assert (pt["value"], pt["quality"], pt["hs"], pt["kind"], pt["unit"], pt["site"]) == (
            1.234, "good", "HS-002", "pressure", "MPa", "91430900DEMO0001XX"
        )
        assert by[("GT-207", TS)]["value"] == 3.5 and by[("GT-207", TS)]["kind"] == "combustible_gas"
        assert by[("PT-201", TS + 1)]["quality"] == "uncertain"  # 2.6 MPa is outside [0, 2.5]
        assert by[("TT-202", 1_732_300_000_500_000_000)]["value"] == 18.25
        assert by[("TT-202", 1_732_300_000_700_000_000)]["value"] == 19.5
        errors = {
            s.labels["reason"]: s.value
            for fam in gw.metrics.registry.collect() if fam.name == "hazardgw_decode_errors"
            for s in fam.samples if s.name.endswith("_total")
        }
        # sphere2 has no gas.lel (its pressure still counts), plus the three bad inputs
        assert errors == {"missing_path": 1, "unknown_tag": 1, "not_numeric": 1, "not_utf8": 1}
    finally:
        pub.loop_stop()
        pub.disconnect()
        await gw.stop()
    gw_rows = influxd.select(influx_db, "SELECT * FROM gateway")
    assert any(r["component"] == "source:plant-mqtt" for r in gw_rows)


async def test_mqtt_to_victoria_metrics_v2_write_path(
    mosquitto: Mosquitto, victoria: VictoriaMetrics, tmp_path: Any
) -> None:
    cfg = gateway_config(mosquitto.url, {"url": victoria.url, "api": "v2", "bucket": "hazard", "org": "demo",
                                         "token": "unused"}, str(tmp_path))
    gw = await started_gateway(cfg)
    pub = publisher(mosquitto)
    base_ms = 1_732_400_000_000
    try:
        bulk = [{"tag": "TT-202", "v": 10.0 + i, "ts": base_ms + i} for i in range(100)]
        publish(pub, "plant/bulk", json.dumps(bulk))

        def series() -> list[dict[str, Any]]:
            s = victoria.export('reading_value{tag="TT-202",site="91430900DEMO0001XX"}')
            return s if s and len(s[0]["values"]) == 100 else []

        got = await async_wait_for(series, timeout=20)
    finally:
        pub.loop_stop()
        pub.disconnect()
        await gw.stop()
    s = got[0]
    assert s["metric"]["hs"] == "HS-002" and s["metric"]["unit"] == "°C"
    assert s["values"] == [10.0 + i for i in range(100)]
    assert s["timestamps"] == [base_ms + i for i in range(100)]


async def test_ingest_resumes_after_broker_restart(
    mosquitto: Mosquitto, influxd: Influxd, influx_db: str, tmp_path: Any
) -> None:
    cfg = gateway_config(mosquitto.url, {"url": influxd.url, "api": "v1", "bucket": influx_db}, str(tmp_path))
    gw = await started_gateway(cfg)
    try:
        pub = publisher(mosquitto)
        publish(pub, "plant/bulk", json.dumps([{"tag": "TT-202", "v": 1.0, "ts": 1_732_300_000_000}]))
        pub.loop_stop()
        pub.disconnect()
        await asyncio.to_thread(mosquitto.kill)
        await async_wait_for(
            lambda: not gw.health()["components"]["source:plant-mqtt"].get("connected"), timeout=10
        )
        await asyncio.to_thread(mosquitto.restart)
        await async_wait_for(lambda: gw.health()["components"]["source:plant-mqtt"].get("connected"), timeout=15)
        pub = publisher(mosquitto)
        publish(pub, "plant/bulk", json.dumps([{"tag": "TT-202", "v": 2.0, "ts": 1_732_300_001_000}]))
        pub.loop_stop()
        pub.disconnect()
        await async_wait_for(
            lambda: len(influxd.select(influx_db, "SELECT value FROM reading")) == 2, timeout=15
        )
    finally:
        await gw.stop()


async def test_alarm_event_reaches_influx_with_the_reading_timestamp(
    mosquitto: Mosquitto, influxd: Influxd, influx_db: str, tmp_path: Any
) -> None:
    data = gateway_config(mosquitto.url, {"url": influxd.url, "api": "v1", "bucket": influx_db}, str(tmp_path))
    raw = data.model_dump(mode="json")
    raw["tags"][1]["alarms"] = {"hh": {"limit": 40, "priority": 1}, "h": {"limit": 20, "priority": 2}}
    raw["influx"]["token"] = None
    cfg = Config.model_validate(raw)
    gw = await started_gateway(cfg)
    pub = publisher(mosquitto)
    try:
        publish(pub, "plant/s/telemetry", json.dumps({"pressure": 1.0, "gas": {"lel": 5.0}, "ts": TS}))
        publish(pub, "plant/s/telemetry", json.dumps({"pressure": 1.0, "gas": {"lel": 45.0}, "ts": TS + 10}))
        await async_wait_for(lambda: len(gw.alarms.active()) == 2, timeout=10)

        def alarm_rows() -> list[dict[str, Any]]:
            return influxd.select(influx_db, 'SELECT * FROM alarm WHERE "event" = \'raised\'')

        rows = await async_wait_for(lambda: len(r := alarm_rows()) == 2 and r, timeout=10)
    finally:
        pub.loop_stop()
        pub.disconnect()
        await gw.stop()
    by_cond = {r["condition"]: r for r in rows}
    assert set(by_cond) == {"h", "hh"}
    hh = by_cond["hh"]
    assert hh["tag"] == "GT-207" and hh["hs"] == "HS-002" and hh["priority"] == "1"
    assert hh["value"] == 45.0 and hh["limit"] == 40.0
    # raised/cleared carry the source timestamp of the reading that crossed the limit
    # (a second event of the same alarm in the same ns would be moved on by 1 ns)
    assert TS + 10 <= hh["time"] <= TS + 11
