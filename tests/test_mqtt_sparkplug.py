"""Sparkplug B decoder units (no broker): the generated code matches the .proto, value types,
sign extension, nulls, unsupported and historical metrics, deaths, unknown aliases, and
the value/time/quality rules of the other formats that sparkplug_b shares."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from adapters.mqtt import sparkplug_b_pb2
from adapters.mqtt.config import MqttSubscription
from adapters.mqtt.payload import Reason, count_reasons, make_decoder
from adapters.mqtt.sparkplug import SparkplugDecoder, rebirth_request
from gateway.core.config import Tag
from gateway.core.models import Quality, Reading

Payload: Any = sparkplug_b_pb2.Payload  # type: ignore[attr-defined]
PROTO = Path(__file__).resolve().parents[1] / "adapters" / "mqtt" / "sparkplug_b.proto"
RECV = 1_800_000_000_000_000_000
TAGS = {t.id: t for t in [Tag(id=f"T{i}", kind="analog", unit="ppm") for i in range(12)]}
METRICS = ["i8", "i16", "i32", "i64", "u32", "f", "d", "b", "s", "dt", "bytes", "hist"]


def test_generated_code_matches_the_proto() -> None:
    text = PROTO.read_text()
    want = {(name, int(num)) for name, num in re.findall(r"\b\w+\s+(\w+)\s*=\s*(\d+);", text)}
    got = {(f.name, f.number) for f in Payload.DESCRIPTOR.fields}
    got |= {(f.name, f.number) for f in Payload.DESCRIPTOR.nested_types_by_name["Metric"].fields}
    assert got == want
    assert "hazardgw.sparkplug_b" in text and Payload.DESCRIPTOR.full_name == "hazardgw.sparkplug_b.Payload"


def decoder(**sub: Any) -> SparkplugDecoder:
    points = [{"tag": f"T{i}", "edge_node": "e", "metric": m} for i, m in enumerate(METRICS)]
    d = make_decoder(MqttSubscription.model_validate(
        {"topic": "spBv1.0/g/#", "format": "sparkplug_b", "points": points, **sub}), TAGS, 1 << 20)
    assert isinstance(d, SparkplugDecoder)
    return d


def payload(metrics: list[dict[str, Any]], seq: int | None = None, ts: int | None = 1732300000000) -> bytes:
    p = Payload()
    if ts is not None:
        p.timestamp = ts
    if seq is not None:
        p.seq = seq
    for m in metrics:
        pm = p.metrics.add()
        for k, v in m.items():
            setattr(pm, k, v)
    return p.SerializeToString()  # type: ignore[no-any-return]


BIRTH = [
    {"name": "bdSeq", "datatype": 8, "long_value": 3},
    {"name": "i8", "alias": 1, "datatype": 1, "int_value": 0},
    {"name": "i16", "alias": 2, "datatype": 2, "int_value": 0},
    {"name": "i32", "alias": 3, "datatype": 3, "int_value": 0},
    {"name": "i64", "alias": 4, "datatype": 4, "long_value": 0},
    {"name": "u32", "alias": 5, "datatype": 7, "int_value": 0},
    {"name": "f", "alias": 6, "datatype": 9, "float_value": 0.0},
    {"name": "d", "alias": 7, "datatype": 10, "double_value": 0.0},
    {"name": "b", "alias": 8, "datatype": 11, "boolean_value": False},
    {"name": "s", "alias": 9, "datatype": 12, "string_value": "0"},
    {"name": "dt", "alias": 10, "datatype": 13, "long_value": 0},
    {"name": "bytes", "alias": 11, "datatype": 17, "bytes_value": b""},
]


def born(**sub: Any) -> SparkplugDecoder:
    d = decoder(**sub)
    out, problems = d.decode(payload(BIRTH, seq=0), RECV, topic="spBv1.0/g/NBIRTH/e")
    assert count_reasons(problems) == {Reason.UNSUPPORTED_TYPE: 2}  # dt and bytes, in the birth too
    assert len(out) == 9
    return d


def test_types_sign_extension_and_strings() -> None:
    d = born()
    out, problems = d.decode(payload([
        {"alias": 1, "int_value": 0xFB},  # Tahu: 8-bit two's complement of -5
        {"alias": 2, "int_value": 0xFFFFFFFE},  # Java: 32-bit two's complement of -2
        {"alias": 3, "int_value": 0x80000000},
        {"alias": 4, "long_value": 2**64 - 7},
        {"alias": 5, "int_value": 0xFFFFFFFF},
        {"alias": 6, "float_value": 1.5},
        {"alias": 7, "double_value": 2.25},
        {"alias": 8, "boolean_value": True},
        {"alias": 9, "string_value": "12.5 ppm"},
    ], seq=1), RECV, topic="spBv1.0/g/NDATA/e")
    assert problems == ()
    assert [r.value for r in out] == [-5.0, -2.0, float(-(2**31)), -7.0, float(2**32 - 1), 1.5, 2.25, 1.0, 12.5]
    assert all(r.ts == 1732300000000 * 10**6 and r.quality == Quality.GOOD for r in out)


def test_null_historical_unsupported_unit_mismatch() -> None:
    d = born()
    out, problems = d.decode(payload([
        {"alias": 6, "is_null": True},
        {"alias": 7, "double_value": 9.0, "is_historical": True},
        {"alias": 10, "long_value": 5},
        {"alias": 9, "string_value": "3 mg/m3"},
        {"alias": 3, "int_value": 4, "timestamp": 1732300005000},
    ], seq=1), RECV, topic="spBv1.0/g/NDATA/e")
    assert out == [Reading("T5", None, 1732300000000 * 10**6, Quality.BAD),
                   Reading("T8", None, 1732300000000 * 10**6, Quality.BAD),
                   Reading("T2", 4.0, 1732300005000 * 10**6, Quality.GOOD)]
    assert count_reasons(problems) == {Reason.UNSUPPORTED_TYPE: 1, Reason.UNIT_MISMATCH: 1}


def test_deaths_and_stale_deaths() -> None:
    d = born()
    out, problems = d.decode(payload([{"name": "bdSeq", "long_value": 2}], ts=None), RECV, topic="spBv1.0/g/NDEATH/e")
    assert out == [] and count_reasons(problems) == {Reason.STALE_DEATH: 1}
    out, problems = d.decode(payload([{"name": "bdSeq", "long_value": 3}], ts=None), RECV, topic="spBv1.0/g/NDEATH/e")
    assert problems == () and {r.tag for r in out} == {f"T{i}" for i in range(12)}
    assert {(r.value, r.ts, r.quality) for r in out} == {(None, RECV, Quality.COMM)}
    # after the death, data by alias is unknown until the next birth (and asks for one with rebirth)
    out, problems = d.decode(payload([{"alias": 6, "float_value": 1.0}], seq=5), RECV, topic="spBv1.0/g/NDATA/e")
    assert out == [] and count_reasons(problems) == {Reason.UNKNOWN_ALIAS: 1}
    assert d.rebirth_requests == []  # rebirth: false


def test_rebirth_requests_are_rate_limited_per_node() -> None:
    d = born(rebirth=True)
    for k, seq in enumerate([5, 9, 20]):  # three gaps within 5 s: one request
        d.decode(payload([{"alias": 6, "float_value": 1.0}], seq=seq), RECV + k * 10**9, topic="spBv1.0/g/NDATA/e")
    assert d.rebirth_requests == [("g", "e")]
    d.decode(payload([{"alias": 6, "float_value": 1.0}], seq=40), RECV + 6 * 10**9, topic="spBv1.0/g/NDATA/e")
    assert d.rebirth_requests == [("g", "e"), ("g", "e")]
    req = Payload.FromString(rebirth_request(1732300000000))
    assert [(m.name, m.datatype, m.boolean_value) for m in req.metrics] == [("Node Control/Rebirth", 11, True)]


@pytest.mark.parametrize(("topic", "data", "reason"), [
    ("spBv1.0/g/NDATA/e", b"\xff\xff\xff", Reason.NOT_PROTOBUF),
    ("spBv1.0/g/NDATA", b"", Reason.BAD_TOPIC),
    ("spBv1.0/g/DDATA/e", b"", Reason.BAD_TOPIC),  # a device message needs a device level
])
def test_bad_input_is_counted(topic: str, data: bytes, reason: str) -> None:
    out, problems = born().decode(data, RECV, topic=topic)
    assert out == [] and count_reasons(problems) == {reason: 1}


def test_commands_states_and_unbound_nodes_are_ignored() -> None:
    d = born()
    for topic in ("spBv1.0/g/NCMD/e", "spBv1.0/g/DCMD/e/d", "spBv1.0/STATE/host", "spBv1.0/g/NDATA/other"):
        assert d.decode(b"\x00garbage", RECV, topic=topic) == ([], ())
