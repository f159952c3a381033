"""Unit tests of the MQTT payload decoders: JSON paths, timestamps, json and native formats,
a malformed-payload corpus, and hypothesis fuzzing (decoders never raise)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from adapters.mqtt.config import MqttSource, MqttSubscription
from adapters.mqtt.jsonpath import PathMissing, compile_path, format_path, resolve
from adapters.mqtt.payload import JsonDecoder, NativeDecoder, Problem, Reason, count_reasons, make_decoder
from adapters.mqtt.timestamps import BadTimestamp, epoch_to_ns, iso_to_ns, to_ns
from adapters.mqtt.topics import TopicRouter, filter_matches
from gateway.core.config import Tag
from gateway.core.models import Quality, Reading

RECV = 1_800_000_000_000_000_000  # "now" for readings without a source timestamp
TS_MS = 1732300000123
TS_NS = TS_MS * 1_000_000

TAGS = {
    "PT-201": Tag(id="PT-201", kind="pressure", unit="MPa", range=(0.0, 2.5)),
    "TT-202": Tag(id="TT-202", kind="temperature", unit="°C", range=(-40.0, 150.0)),
    "LT-203": Tag(id="LT-203", kind="level", unit="m"),  # no range
    "XS-204": Tag(id="XS-204", kind="discrete"),
}


def json_decoder(points: list[dict[str, Any]], max_payload: int = 1 << 20, **sub: Any) -> JsonDecoder:
    d = make_decoder(MqttSubscription(topic="t/+", format="json", points=points, **sub), TAGS, max_payload)
    assert isinstance(d, JsonDecoder)
    return d


def native_decoder(max_payload: int = 1 << 20, **sub: Any) -> NativeDecoder:
    d = make_decoder(MqttSubscription(topic="bulk", format="native", **sub), TAGS, max_payload)
    assert isinstance(d, NativeDecoder)
    return d


def reasons(problems: Any) -> dict[str, int]:
    return count_reasons(problems)


# --------------------------------------------------------------------------- JSON paths


@pytest.mark.parametrize(
    ("text", "keys"),
    [
        ("$", ()),
        ("$.a", ("a",)),
        ("$.a.b", ("a", "b")),
        ("$.a[0].b", ("a", 0, "b")),
        ("$.data[-1].v", ("data", -1, "v")),
        ("$['key with.dots']", ("key with.dots",)),
        ('$["double"]', ("double",)),
        ("$['it\\'s'][2]", ("it's", 2)),
        ("$.snake_case-and-dash.x1", ("snake_case-and-dash", "x1")),
        ("$[0][1]", (0, 1)),
        ("$['温度']", ("温度",)),
    ],
)
def test_compile_path(text: str, keys: tuple[Any, ...]) -> None:
    assert compile_path(text) == keys
    assert compile_path(format_path(keys)) == keys


@pytest.mark.parametrize("text", ["a.b", "", "$.", "$..a", "$.1a", "$[x]", "$['open", "$.a[", "$a", "$.a b", "$[1.5]"])
def test_compile_path_rejects_bad_syntax(text: str) -> None:
    with pytest.raises(ValueError, match="JSON path"):
        compile_path(text)


def test_bad_path_is_a_config_error() -> None:
    with pytest.raises(ValidationError, match=r"points\.0\.ts_path") as e:
        MqttSubscription(topic="x", points=[{"tag": "PT-201", "path": "$.v", "ts_path": "ts"}])
    assert "must start with '$'" in str(e.value)


def test_resolve() -> None:
    doc = {"a": {"b": [10, {"c": 3}]}, "k.d": 1, "n": None}
    assert resolve(doc, compile_path("$.a.b[0]")) == 10
    assert resolve(doc, compile_path("$.a.b[-1].c")) == 3
    assert resolve(doc, compile_path("$['k.d']")) == 1
    assert resolve(doc, compile_path("$.n")) is None  # present, null: the value decoder rejects it
    assert resolve(7.5, ()) == 7.5
    for missing in ("$.x", "$.a.b[2]", "$.a.b.c", "$.a[0]", "$['k.d'].e", "$.a.b[0].c", "$[0]"):
        with pytest.raises(PathMissing):
            resolve(doc, compile_path(missing))


# --------------------------------------------------------------------------- timestamps


@pytest.mark.parametrize(
    ("raw", "unit", "ns"),
    [
        (1732300000, "auto", 1732300000 * 10**9),  # s
        (1732300000123, "auto", TS_NS),  # ms
        (1732300000123456, "auto", 1732300000123456000),  # us
        (1732300000123456789, "auto", 1732300000123456789),  # ns, exact
        (1732300000.123, "auto", TS_NS),  # float s -> rounded to the microsecond
        (1732300000.123456, "auto", 1732300000123456000),
        (1732300000123.5, "auto", 1732300000123500000),  # float ms
        ("1732300000123", "auto", TS_NS),  # numeric strings
        (" 1732300000.5 ", "auto", 1732300000500000000),
        (1732300000123, "ms", TS_NS),  # explicit units
        (1732300000, "ms", 1732300000 * 10**6),  # explicit unit wins over magnitude (Jan 1970)
        (1732300000123456789, "ns", 1732300000123456789),
        (1732300000, "s", 1732300000 * 10**9),
        (1732300000123456, "us", 1732300000123456000),
        ("2024-11-22T18:26:40.123456789Z", "auto", 1732300000123456789),
        ("2024-11-22T18:26:40.123Z", "auto", TS_NS),
        ("2024-11-23T02:26:40.123+08:00", "auto", TS_NS),
        ("2024-11-23T02:26:40.123+0800", "auto", TS_NS),
        ("2024-11-23T02:26:40.123+08", "auto", TS_NS),
        ("2024-11-22T13:26:40.123-05:00", "auto", TS_NS),
        ("2024-11-22 18:26:40,123z", "auto", TS_NS),  # space, comma, lower-case z
        ("2024-11-22T18:26:40.1234567891234Z", "auto", 1732300000123456789),  # > 9 digits truncated
        ("2024-11-22T18:26:40Z", "auto", 1732300000 * 10**9),
        ("20241122T182640Z", "auto", 1732300000 * 10**9),  # basic format via fromisoformat
        ("2024-11-22T18:26:40.123456+00:00", "ms", 1732300000123456000),  # unit applies to numbers only
    ],
)
def test_timestamps(raw: Any, unit: str, ns: int) -> None:
    assert to_ns(raw, unit) == ns


@pytest.mark.parametrize(
    ("raw", "unit", "reason"),
    [
        ("2024-11-22T18:26:40", "auto", "naive_ts"),
        ("2024-11-22T18:26:40.123", "auto", "naive_ts"),
        ("2024-11-22", "auto", "naive_ts"),
        ("2024-02-30T00:00:00Z", "auto", "bad_ts"),
        ("2024-11-22T24:00:00Z", "auto", "bad_ts"),
        ("2024-11-22T18:26:60Z", "auto", "bad_ts"),  # leap seconds are not representable
        ("2024-11-22T18:26:40+25:00", "auto", "bad_ts"),
        ("yesterday", "auto", "bad_ts"),
        ("", "auto", "bad_ts"),
        ("1" * 80, "auto", "bad_ts"),
        (True, "auto", "bad_ts"),
        (None, "auto", "bad_ts"),
        ({"s": 1}, "auto", "bad_ts"),
        ([1732300000], "auto", "bad_ts"),
        (0, "auto", "bad_ts"),
        (-1732300000, "auto", "bad_ts"),
        ("1969-12-31T23:59:59Z", "auto", "bad_ts"),
        (float("nan"), "auto", "bad_ts"),
        (float("inf"), "auto", "bad_ts"),
        ("1e400", "auto", "bad_ts"),
        (1732300000123, "s", "bad_ts"),  # ms sent as seconds -> beyond 2262
        (10**30, "auto", "bad_ts"),
        ("2262-04-12T00:00:00Z", "auto", "bad_ts"),
    ],
)
def test_bad_timestamps(raw: Any, unit: str, reason: str) -> None:
    with pytest.raises(BadTimestamp) as e:
        to_ns(raw, unit)
    assert e.value.reason == reason


def test_float_timestamps_are_exact_to_the_microsecond() -> None:
    for ms in range(TS_MS, TS_MS + 1000, 7):
        assert epoch_to_ns(ms / 1000) == ms * 1_000_000
        assert epoch_to_ns(float(ms)) == ms * 1_000_000
    assert iso_to_ns("2262-04-11T23:47:16.854775807Z") == 2**63 - 1


# --------------------------------------------------------------------------- json format


def test_json_points_values_ts_quality() -> None:
    d = json_decoder([
        {"tag": "PT-201", "path": "$.p", "ts_path": "$.ts"},
        {"tag": "TT-202", "path": "$.data[0]['t.c']", "ts_path": "$.ts", "scale": 0.1, "offset": -40},
        {"tag": "LT-203", "path": "$.level", "quality_path": "$.q"},
        {"tag": "XS-204", "path": "$.esd", "ts_path": "$.meta.time"},
    ])
    payload = {"p": 1.25, "ts": TS_MS, "data": [{"t.c": 655}], "level": "3.5", "q": "Uncertain",
               "esd": True, "meta": {"time": "2024-11-22T18:26:40.5+00:00"}}
    out, problems = d.decode(json.dumps(payload).encode(), RECV)
    assert problems == ()
    assert out == [
        Reading("PT-201", 1.25, TS_NS, Quality.GOOD),
        Reading("TT-202", pytest.approx(25.5), TS_NS, Quality.GOOD),
        Reading("LT-203", 3.5, RECV, Quality.UNCERTAIN),  # the payload's quality
        Reading("XS-204", 1.0, 1732300000500000000, Quality.GOOD),
    ]


def test_json_quality_is_the_worse_of_range_and_payload() -> None:
    d = json_decoder([{"tag": "PT-201", "path": "$.v", "quality_path": "$.q"}])
    cases = [
        ({"v": 1.0}, Quality.GOOD, ()),  # no quality field: good
        ({"v": 2.5}, Quality.GOOD, ()),  # range is inclusive
        ({"v": 2.6}, Quality.UNCERTAIN, ()),
        ({"v": -0.1}, Quality.UNCERTAIN, ()),
        ({"v": 1.0, "q": "good"}, Quality.GOOD, ()),
        ({"v": 3.0, "q": "good"}, Quality.UNCERTAIN, ()),  # out of range beats the device's "good"
        ({"v": 3.0, "q": "BAD"}, Quality.BAD, ()),
        ({"v": 1.0, "q": "comm"}, Quality.COMM, ()),
        ({"v": 1.0, "q": "fault"}, Quality.UNCERTAIN, (Reason.BAD_QUALITY,)),  # unknown: kept, counted
        ({"v": 1.0, "q": 192}, Quality.UNCERTAIN, (Reason.BAD_QUALITY,)),
    ]
    for doc, quality, why in cases:
        out, problems = d.decode(json.dumps(doc).encode(), RECV)
        assert [r.quality for r in out] == [quality], doc
        assert tuple(p.reason for p in problems) == why, doc


def test_json_missing_ts_rejects_only_the_points_that_use_it() -> None:
    d = json_decoder([
        {"tag": "PT-201", "path": "$.p", "ts_path": "$.ts"},
        {"tag": "TT-202", "path": "$.t", "ts_path": "$.ts"},
        {"tag": "LT-203", "path": "$.l"},
    ])
    out, problems = d.decode(b'{"p": 1, "t": 2, "l": 3}', RECV)
    assert out == [Reading("LT-203", 3.0, RECV, Quality.GOOD)]
    assert reasons(problems) == {Reason.MISSING_TS: 2}
    out, problems = d.decode(b'{"p": 1, "t": 2, "l": 3, "ts": "2024-11-22T18:26:40"}', RECV)
    assert reasons(problems) == {Reason.NAIVE_TS: 2} and len(out) == 1
    out, problems = d.decode(b'{"p": 1, "t": 2, "l": 3, "ts": "soon"}', RECV)
    assert reasons(problems) == {Reason.BAD_TS: 2} and len(out) == 1
    assert "PT-201" in problems[0].detail


def test_retained_message_needs_a_source_timestamp() -> None:
    d = json_decoder([{"tag": "PT-201", "path": "$.p", "ts_path": "$.ts"}, {"tag": "LT-203", "path": "$.l"}])
    out, problems = d.decode(json.dumps({"p": 1, "l": 2, "ts": TS_MS}).encode(), RECV, retained=True)
    assert out == [Reading("PT-201", 1.0, TS_NS, Quality.GOOD)]
    assert reasons(problems) == {Reason.RETAINED_NO_TS: 1}
    n = native_decoder()
    out, problems = n.decode(b'[{"tag": "PT-201", "v": 1, "ts": 1732300000123}, {"tag": "LT-203", "v": 2}]', RECV, True)
    assert [r.tag for r in out] == ["PT-201"] and reasons(problems) == {Reason.RETAINED_NO_TS: 1}


def test_scale_overflow_is_not_finite() -> None:
    d = json_decoder([{"tag": "LT-203", "path": "$", "scale": 1e300}])
    out, problems = d.decode(b"1e10", RECV)
    assert out == [] and reasons(problems) == {Reason.NOT_FINITE: 1}
    assert d.decode(b"2", RECV) == ([Reading("LT-203", 2e300, RECV, Quality.GOOD)], ())


# --------------------------------------------------------------------------- malformed corpus

POINTS = [{"tag": "PT-201", "path": "$.p"}, {"tag": "TT-202", "path": "$.a.b[0]"}, {"tag": "LT-203", "path": "$.l"}]
GOOD_P = Reading("PT-201", 1.0, RECV, Quality.GOOD)

# whole-message rejections: (payload, reason)
MESSAGE_CORPUS = [
    (b"", Reason.EMPTY),
    (b"not json", Reason.NOT_JSON),
    (b'{"p": 1, "l": ', Reason.NOT_JSON),  # truncated
    (b'{"p": 1}}', Reason.NOT_JSON),  # trailing garbage
    (b"\x00\x01\x02\x03", Reason.NOT_JSON),  # control bytes are valid UTF-8, not JSON
    (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", Reason.NOT_UTF8),  # binary
    (b'{"p": "\xff\xfe"}', Reason.NOT_UTF8),
    ('{"p": 1}'.encode("utf-16"), Reason.NOT_UTF8),  # UTF-16 is not accepted (UTF-8 only)
    (b"\xef\xbb\xbf" + b'{"p": 1}', Reason.NOT_JSON),  # UTF-8 BOM
    (b"[" * 100_000 + b"]" * 100_000, Reason.TOO_DEEP),
    (b'{"p": ' + b"9" * 5000 + b"}", Reason.NOT_JSON),  # integer beyond Python's digit limit
    (b'{"p": 1, "pad": "' + b"x" * 2000 + b'"}', Reason.OVERSIZED),  # with max_payload 1000
]


@pytest.mark.parametrize(("payload", "reason"), MESSAGE_CORPUS, ids=[r for _, r in MESSAGE_CORPUS])
def test_malformed_messages(payload: bytes, reason: str) -> None:
    for d in (json_decoder(POINTS, max_payload=1000 if reason == Reason.OVERSIZED else 10**6),
              native_decoder(max_payload=1000 if reason == Reason.OVERSIZED else 10**6)):
        out, problems = d.decode(payload, RECV)
        assert out == []
        assert reasons(problems) == {reason: 1}
        # the decoder keeps working afterwards
        ok = b'{"p": 1}' if isinstance(d, JsonDecoder) else b'[{"tag": "PT-201", "v": 1}]'
        assert d.decode(ok, RECV)[0] == [GOOD_P]


def test_oversized_is_checked_before_parsing() -> None:
    d = json_decoder(POINTS, max_payload=16)
    out, problems = d.decode(b"[" * 17, RECV)  # would be TOO_DEEP/NOT_JSON if parsed
    assert out == [] and reasons(problems) == {Reason.OVERSIZED: 1}
    assert d.decode(b'{"p": 1}', RECV)[0] == [GOOD_P]  # 8 bytes: fine


# per-point rejections: the other points of the same message survive
POINT_CORPUS = [
    ({"x": 1}, Reason.MISSING_PATH),  # no "p"
    ({"p": None}, Reason.NOT_NUMERIC),
    ({"p": "high"}, Reason.NOT_NUMERIC),
    ({"p": "1,5"}, Reason.NOT_NUMERIC),
    ({"p": "0x10"}, Reason.NOT_NUMERIC),
    ({"p": "1_000"}, Reason.NOT_NUMERIC),
    ({"p": "١٢"}, Reason.NOT_NUMERIC),  # non-ASCII digits
    ({"p": {"v": 1}}, Reason.NOT_NUMERIC),  # nested wrong type: object where a number is expected
    ({"p": [1]}, Reason.NOT_NUMERIC),
    ({"p": float("nan")}, Reason.NOT_FINITE),  # json.dumps writes NaN
    ({"p": float("inf")}, Reason.NOT_FINITE),  # Infinity
    ({"p": float("-inf")}, Reason.NOT_FINITE),
    ({"p": "NaN"}, Reason.NOT_FINITE),
    ({"p": "-Infinity"}, Reason.NOT_FINITE),
    ({"p": "1e400"}, Reason.NOT_FINITE),
]


@pytest.mark.parametrize(("doc", "reason"), POINT_CORPUS, ids=[f"{r}-{d.get('p')!r}" for d, r in POINT_CORPUS])
def test_malformed_point_keeps_the_others(doc: dict[str, Any], reason: str) -> None:
    d = json_decoder(POINTS)
    full = {"a": {"b": [7.5]}, "l": 3, **doc}
    out, problems = d.decode(json.dumps(full).encode(), RECV)
    assert out == [Reading("TT-202", 7.5, RECV, Quality.GOOD), Reading("LT-203", 3.0, RECV, Quality.GOOD)]
    assert reasons(problems) == {reason: 1}
    assert problems[0].detail.startswith("PT-201: ")


AB = b'"a": {"b": [7.5]}'


@pytest.mark.parametrize(
    ("raw", "reason", "survivors"),
    [
        (b'{"p": 1e400, ' + AB + b', "l": 3}', Reason.NOT_FINITE, ["TT-202", "LT-203"]),  # number too large
        (b'{"p": 1' + b"0" * 400 + b", " + AB + b', "l": 3}', Reason.NOT_FINITE, ["TT-202", "LT-203"]),  # huge int
        (b'{"p": NaN, ' + AB + b', "l": 3}', Reason.NOT_FINITE, ["TT-202", "LT-203"]),
        (b'{"p": Infinity, ' + AB + b', "l": 3}', Reason.NOT_FINITE, ["TT-202", "LT-203"]),
        (b'{"p": -Infinity, ' + AB + b', "l": 3}', Reason.NOT_FINITE, ["TT-202", "LT-203"]),
        (b'{"p": 1, "a": 5, "l": 3}', Reason.MISSING_PATH, ["PT-201", "LT-203"]),  # scalar where an object is
        (b'{"p": 1, "a": {"b": {"0": 1}}, "l": 3}', Reason.MISSING_PATH, ["PT-201", "LT-203"]),  # object, not array
        (b'{"p": 1, "a": {"b": []}, "l": 3}', Reason.MISSING_PATH, ["PT-201", "LT-203"]),  # index out of range
        (b'{"p": 1, "a": ["b"], "l": 3}', Reason.MISSING_PATH, ["PT-201", "LT-203"]),  # array, not object
        (b'{"p": 1, "a": {"b": [[7.5]]}, "l": 3}', Reason.NOT_NUMERIC, ["PT-201", "LT-203"]),  # one level too deep
    ],
)
def test_malformed_raw_json_points(raw: bytes, reason: str, survivors: list[str]) -> None:
    out, problems = json_decoder(POINTS).decode(raw, RECV)
    assert [r.tag for r in out] == survivors
    assert all(r.quality == Quality.GOOD and r.ts == RECV for r in out)
    assert reasons(problems) == {reason: 1}


def test_numbers_strings_and_booleans() -> None:
    d = json_decoder([{"tag": "LT-203", "path": "$"}])
    for raw, value in [(b"12", 12.0), (b"-3.5e2", -350.0), (b'" 12.5 "', 12.5), (b'"-.5"', -0.5), (b'"1E3"', 1000.0),
                       (b"true", 1.0), (b"false", 0.0), (b"0", 0.0), (b"-0.0", -0.0)]:
        out, problems = d.decode(raw, RECV)
        assert problems == () and out == [Reading("LT-203", value, RECV, Quality.GOOD)], raw


# --------------------------------------------------------------------------- native format


def test_native_bulk_mix_of_good_and_bad_entries() -> None:
    entries: list[Any] = [
        {"tag": "PT-201", "v": 1.2, "ts": TS_MS},  # good
        {"tag": "PT-201", "v": 9.9, "ts": TS_MS + 1},  # out of range -> uncertain
        {"tag": "TT-202", "v": "25.5", "ts": TS_MS, "q": "bad"},  # numeric string, device says bad
        {"tag": "LT-203", "v": False},  # boolean, no ts -> receive time
        {"tag": "NOPE-1", "v": 1, "ts": TS_MS},  # unknown tag
        {"tag": "PT-201", "v": "abc", "ts": TS_MS},  # non-numeric
        {"tag": "PT-201", "v": None, "ts": TS_MS},  # null
        {"tag": "PT-201", "ts": TS_MS},  # no v
        {"tag": "PT-201", "v": 1.0, "ts": "yesterday"},  # bad ts
        {"tag": "PT-201", "v": 1.0, "ts": -5},  # bad ts
        {"v": 1.0},  # no tag
        {"tag": 17, "v": 1.0},  # tag not a string
        "PT-201=1.0",  # not an object
        [1, 2],
        {"tag": "TT-202", "v": 30, "ts": TS_MS, "q": "weird"},  # unknown quality: kept, counted
        {"tag": "XS-204", "v": True, "ts": TS_MS, "extra": {"ignored": 1}},
    ]
    raw = json.dumps(entries).encode()
    out, problems = native_decoder().decode(raw, RECV)
    assert out == [
        Reading("PT-201", 1.2, TS_NS, Quality.GOOD),
        Reading("PT-201", 9.9, TS_NS + 1_000_000, Quality.UNCERTAIN),
        Reading("TT-202", 25.5, TS_NS, Quality.BAD),
        Reading("LT-203", 0.0, RECV, Quality.GOOD),
        Reading("TT-202", 30.0, TS_NS, Quality.UNCERTAIN),
        Reading("XS-204", 1.0, TS_NS, Quality.GOOD),
    ]
    assert reasons(problems) == {
        Reason.UNKNOWN_TAG: 1, Reason.NOT_NUMERIC: 2, Reason.MISSING_PATH: 1, Reason.BAD_TS: 2,
        Reason.BAD_ENTRY: 4, Reason.BAD_QUALITY: 1,
    }
    assert any(p.detail.startswith("entry 4 (NOPE-1): ") for p in problems)


def test_native_nan_infinity_and_huge_numbers() -> None:
    raw = (b'[{"tag": "PT-201", "v": NaN}, {"tag": "PT-201", "v": Infinity}, {"tag": "PT-201", "v": -Infinity},'
           b' {"tag": "PT-201", "v": 1e999}, {"tag": "PT-201", "v": "inf"}, {"tag": "PT-201", "v": 2.0}]')
    out, problems = native_decoder().decode(raw, RECV)
    assert out == [Reading("PT-201", 2.0, RECV, Quality.GOOD)]
    assert reasons(problems) == {Reason.NOT_FINITE: 5}


def test_native_needs_an_array() -> None:
    for raw in (b'{"tag": "PT-201", "v": 1}', b"1.5", b'"x"', b"null"):
        out, problems = native_decoder().decode(raw, RECV)
        assert out == [] and reasons(problems) == {Reason.NOT_ARRAY: 1}
    assert native_decoder().decode(b"[]", RECV) == ([], ())


def test_native_ts_unit_and_iso() -> None:
    d = native_decoder(ts_unit="s")
    out, problems = d.decode(b'[{"tag": "PT-201", "v": 1, "ts": 1732300000}, '
                             b'{"tag": "PT-201", "v": 1, "ts": "2024-11-22T18:26:40.123456789Z"}]', RECV)
    assert problems == () and [r.ts for r in out] == [1732300000 * 10**9, 1732300000123456789]


@pytest.mark.parametrize("unit", ["auto", "s", "ms", "us", "ns"])
def test_native_integer_timestamp_fast_path_agrees_with_to_ns(unit: str) -> None:
    """The decoder's shortcut for integer epochs (issue 23) gives what to_ns gives, and leaves
    to it what it does not cover: 14-digit local times, seconds/us/ns by magnitude, out of range."""
    edges = [0, 1, 99_999_999_999, 100_000_000_000, TS_MS, 9_223_372_036_854, 9_223_372_036_855,
             9_999_999_999_999, 20241123102640, 10**14, 10**17, 2**63 - 1, 2**63, -TS_MS, 1732300000]
    d = make_decoder(MqttSubscription(topic="bulk", format="native", ts_unit=unit), TAGS, 1 << 20, "Asia/Shanghai")
    assert isinstance(d, NativeDecoder)
    for ts in edges:
        out, problems = d.decode(json.dumps([{"tag": "LT-203", "v": 1.5, "ts": ts}]).encode(), RECV)
        try:
            want = to_ns(ts, unit, d.local)
        except BadTimestamp as e:
            assert out == [] and reasons(problems) == {e.reason: 1}, ts
        else:
            assert problems == () and out == [Reading("LT-203", 1.5, want, Quality.GOOD)], ts


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=4), c, max_size=4),
                    max_leaves=12))
def test_load_takes_what_the_stdlib_takes(doc: Any) -> None:
    """load() parses with orjson and leaves what it refuses to the stdlib (issue 23): every
    document means what json.loads says (integers beyond 64 bits: the float of that integer)."""
    from adapters.mqtt.payload import load

    raw = json.dumps(doc).encode()  # NaN/Infinity literals and big integers included
    got, problem = load(raw, 1 << 20)
    assert problem is None

    def same(a: Any, b: Any) -> bool:
        if isinstance(b, int) and not isinstance(b, bool) and not -(2**63) <= b < 2**64:
            return (type(a) is int and a == b) or (type(a) is float and a == float(b))
        if isinstance(b, float) and math.isnan(b):
            return isinstance(a, float) and math.isnan(a)
        if isinstance(b, list):
            return isinstance(a, list) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
        if isinstance(b, dict):
            return isinstance(a, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in b)
        return type(a) is type(b) and a == b

    assert same(got, json.loads(raw))


# --------------------------------------------------------------------------- topic routing


@pytest.mark.parametrize(
    ("filt", "topic", "match"),
    [
        ("a/b", "a/b", True),
        ("a/b", "a/b/c", False),
        ("a/+", "a/b", True),
        ("a/+", "a/b/c", False),
        ("a/+/c", "a/x/c", True),
        ("a/#", "a", True),  # '#' includes the parent level
        ("a/#", "a/b/c", True),
        ("#", "a/b", True),
        ("+", "a", True),
        ("+/+", "/a", True),  # empty levels are levels
        ("#", "$SYS/broker/load", False),
        ("+/broker/#", "$SYS/broker/load", False),
        ("$SYS/#", "$SYS/broker/load", True),
        ("$share/g1/plant/+", "plant/u1", True),
        ("plant/+/telemetry", "plant/u1/status", False),
    ],
)
def test_filter_matches(filt: str, topic: str, match: bool) -> None:
    assert filter_matches(filt, topic) is match


def test_router_overlapping_filters_in_config_order() -> None:
    r = TopicRouter([("plant/#", "all"), ("plant/+/telemetry", "tele"), ("plant/u1/telemetry", "u1"),
                     ("other", "x"), ("plant/u1/telemetry", "u1-again")])
    assert r.route("plant/u1/telemetry") == ("all", "tele", "u1", "u1-again")
    assert r.route("plant/u2/telemetry") == ("all", "tele")
    assert r.route("plant/u2/telemetry") == ("all", "tele")  # cached
    assert r.route("elsewhere") == ()


# --------------------------------------------------------------------------- config


def test_mqtt_source_validation() -> None:
    base = {"id": "m", "type": "mqtt", "url": "mqtt://127.0.0.1:1883",
            "subscriptions": [{"topic": "x", "format": "native"}]}
    MqttSource.model_validate(base)
    for extra, msg in [
        ({"ca": "/ca.pem"}, "need an mqtts:// url"),
        ({"tls_insecure": True}, "need an mqtts:// url"),
        ({"url": "mqtts://h", "key": "/k.pem"}, "key needs cert"),
        ({"password": "x"}, "password needs username"),
        ({"reconnect_min": "10s", "reconnect_max": "1s"}, "reconnect_min <= reconnect_max"),
        ({"keepalive": 0}, "keepalive"),
    ]:
        with pytest.raises(ValidationError, match=msg):
            MqttSource.model_validate({**base, **extra})
    ok = MqttSource.model_validate({**base, "url": "mqtts://h:8883", "ca": "/ca", "cert": "/c", "key": "/k",
                                    "username": "u", "password": "p", "session_expiry": "2h"})
    assert ok.session_expiry == 7200.0


# --------------------------------------------------------------------------- fuzzing

json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(10**30), max_value=10**30),
    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=20),
    st.sampled_from(["12.5", "NaN", "1e400", "2024-11-22T18:26:40Z", "2024-11-22T18:26:40", "good", "bad", "x"]),
)
json_values = st.recursive(
    json_scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.dictionaries(st.sampled_from(["p", "a", "b", "l", "ts", "q", "v", "tag", "x"]), children, max_size=5),
    ),
    max_leaves=25,
)
native_entries = st.lists(
    st.one_of(
        st.fixed_dictionaries(
            {"tag": st.sampled_from([*TAGS, "NOPE", "", "PT-201 "])},
            optional={"v": json_scalars, "ts": json_scalars, "q": json_scalars},
        ),
        json_values,
    ),
    max_size=20,
)
FUZZ_POINTS = [
    {"tag": "PT-201", "path": "$.p", "ts_path": "$.ts", "quality_path": "$.q"},
    {"tag": "TT-202", "path": "$.a.b[0]", "ts_path": "$.a.ts", "scale": 10.0, "offset": -1.0},
    {"tag": "LT-203", "path": "$.l"},
    {"tag": "XS-204", "path": "$"},
]
REJECTING = Reason.ALL - {Reason.BAD_QUALITY, Reason.UNIT_MISMATCH, Reason.SEQ_GAP}  # the last keep a reading


def check_readings(out: list[Reading], problems: Any) -> None:
    for r in out:
        if r.value is None:  # a unit that is not the tag's: bad, without a value
            assert r.quality == Quality.BAD and any(p.reason == Reason.UNIT_MISMATCH for p in problems)
            continue
        assert type(r.value) is float and math.isfinite(r.value)
        assert type(r.ts) is int and 0 < r.ts < 2**63
        assert r.quality in Quality.ALL
    for p in problems:
        assert isinstance(p, Problem) and p.reason in Reason.ALL and isinstance(p.detail, str)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.booleans())
def test_fuzz_arbitrary_bytes_never_raise(payload: bytes, retained: bool) -> None:
    for d in (json_decoder(FUZZ_POINTS, max_payload=200), native_decoder(max_payload=200)):
        out, problems = d.decode(payload, RECV, retained)
        check_readings(out, problems)
        if not out and not problems:  # only an empty native array yields neither
            assert isinstance(d, NativeDecoder) and json.loads(payload) == []


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.booleans())
def test_fuzz_json_documents_every_point_is_accounted_for(doc: Any, retained: bool) -> None:
    d = json_decoder(FUZZ_POINTS)
    out, problems = d.decode(json.dumps(doc).encode(), RECV, retained)
    check_readings(out, problems)
    rejected = sum(1 for p in problems if p.reason in REJECTING)
    assert len(out) + rejected == len(FUZZ_POINTS)  # each point: a reading or a counted reason


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(native_entries, st.booleans())
def test_fuzz_native_every_entry_is_accounted_for(entries: list[Any], retained: bool) -> None:
    out, problems = native_decoder().decode(json.dumps(entries).encode(), RECV, retained)
    check_readings(out, problems)
    rejected = sum(1 for p in problems if p.reason in REJECTING)
    assert len(out) + rejected == len(entries)
    assert {r.tag for r in out} <= set(TAGS)


def test_sample_yaml_is_a_valid_source() -> None:
    import yaml

    from adapters.mqtt.payload import make_decoder as _make

    raw = yaml.safe_load((Path(__file__).parents[1] / "adapters" / "mqtt" / "sample.yaml").read_text())
    [src] = raw["sources"]
    src["password"] = "from-env"  # ${MQTT_PASSWORD} is interpolated by the loader, not the model
    cfg = MqttSource.model_validate(src)
    assert cfg.url.startswith("mqtts://") and cfg.queue_size == 10000 and cfg.session_expiry == 86400.0
    for sub in cfg.subscriptions:
        _make(sub, TAGS, cfg.max_payload)  # paths compile


topic_levels = st.lists(st.sampled_from(["a", "b", "", "$x"]), min_size=1, max_size=4)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.lists(st.sampled_from(["a", "b", "", "+", "#"]), min_size=1, max_size=4), min_size=1,
                max_size=5),
       st.lists(topic_levels, min_size=1, max_size=10))
def test_fuzz_router_agrees_with_filter_matches(filters: list[list[str]], topics: list[list[str]]) -> None:
    filts = ["/".join(f[: f.index("#") + 1] if "#" in f else f) for f in filters]
    r = TopicRouter([(f, i) for i, f in enumerate(filts)])
    for levels in topics:
        t = "/".join(levels)
        assert r.route(t) == tuple(i for i, f in enumerate(filts) if filter_matches(f, t))
        assert r.route(t) == r.route(t)


# --------------------------------------------------------------------------- issue 18 shapes


def test_values_units_states_decimal_comma() -> None:
    d = json_decoder([{"tag": "PT-201", "path": "$.p"}, {"tag": "XS-204", "path": "$.x"}],
                     states={"ON": 1, "报警": 1, "off": 0}, decimal_comma=True)
    cases: list[tuple[Any, Any, Any, str | None]] = [
        ("0.6MPa", "on", 0.6, None), (" 1.2 mpa ", "报警", 1.2, None), ("1,5", "OFF", 1.5, None),
        ("0.6 kPa", "ON", None, Reason.UNIT_MISMATCH), ("1.0 MPa x", "ON", None, Reason.UNIT_MISMATCH),
        ("0x10", "ON", "skip", Reason.NOT_NUMERIC), ("1_000", "ON", "skip", Reason.NOT_NUMERIC),
        ("1.234,5", "ON", "skip", Reason.NOT_NUMERIC),
    ]
    for p, x, want, reason in cases:
        out, problems = d.decode(json.dumps({"p": p, "x": x}).encode(), RECV)
        assert [r for r in out if r.tag == "XS-204"] == [Reading("XS-204", 0.0 if x in ("OFF",) else 1.0, RECV,
                                                                 Quality.GOOD)], (p, x)
        got = [r for r in out if r.tag == "PT-201"]
        if want == "skip":
            assert got == [] and reasons(problems) == {reason: 1}, p
        elif want is None:
            assert got == [Reading("PT-201", None, RECV, Quality.BAD)] and reasons(problems) == {reason: 1}, p
        else:
            assert got == [Reading("PT-201", want, RECV, Quality.GOOD)] and problems == (), p
    # without decimal_comma "1,5" is not a number; a unit on a tag without a unit is a mismatch
    plain = json_decoder([{"tag": "PT-201", "path": "$.p"}, {"tag": "XS-204", "path": "$.x"}])
    out, problems = plain.decode(b'{"p": "1,5", "x": "2 ppm"}', RECV)
    assert out == [Reading("XS-204", None, RECV, Quality.BAD)]
    assert reasons(problems) == {Reason.NOT_NUMERIC: 1, Reason.UNIT_MISMATCH: 1}


def test_quality_map_codes_and_words() -> None:
    d = json_decoder([{"tag": "LT-203", "path": "$.v", "quality_path": "$.q"}],
                     quality_map={192: "good", 0: "bad", "OK": "good", "Fault": "bad"})
    for q, want in [(192, Quality.GOOD), (192.0, Quality.GOOD), ("192", Quality.GOOD), (0, Quality.BAD),
                    ("ok", Quality.GOOD), ("FAULT", Quality.BAD), ("uncertain", Quality.UNCERTAIN),
                    (64, Quality.UNCERTAIN)]:
        out, problems = d.decode(json.dumps({"v": 1, "q": q}).encode(), RECV)
        assert [r.quality for r in out] == [want], q
        assert (reasons(problems) == {Reason.BAD_QUALITY: 1}) == (q == 64)


def test_filters_select_by_name_and_refuse_ambiguity() -> None:
    pts = [{"tag": "PT-201", "path": "$.m[?(@.n=='P')].v"}, {"tag": "LT-203", "path": "$.m[?(@.id==2)].v"}]
    d = json_decoder(pts)
    out, _ = d.decode(b'{"m": [{"id": 2, "v": 3}, {"n": "P", "v": 1}, {"id": "2", "v": 9}]}', RECV)
    assert [(r.tag, r.value) for r in out] == [("PT-201", 1.0), ("LT-203", 3.0)]
    out, problems = d.decode(b'{"m": [{"n": "P", "v": 1}, {"n": "P", "v": 2}]}', RECV)
    assert out == [] and reasons(problems) == {Reason.AMBIGUOUS_PATH: 1, Reason.MISSING_PATH: 1}
    # the memo (index per list) and the plain scan agree
    doc = {"m": [{"n": "P", "v": 1}, {"n": "Q", "v": 2}, {"x": 1}, 5]}
    path = compile_path("$.m[?(@.n=='Q')].v")
    assert resolve(doc, path) == resolve(doc, path, {}) == 2


@pytest.mark.parametrize(("raw", "ns"), [
    ("2024-11-23 10:26:40", 1732328800 * 10**9),
    ("2024/11/23 10:26:40.25", 1732328800 * 10**9 + 250_000_000),
    ("20241123102640", 1732328800 * 10**9),
    (20241123102640, 1732328800 * 10**9),
    ("2024-11-23T10:26:40", 1732328800 * 10**9),
    ("2024-11-23T02:26:40Z", 1732328800 * 10**9),  # an offset wins over the zone
])
def test_local_times_in_the_source_timezone(raw: Any, ns: int) -> None:
    sub = MqttSubscription.model_validate({"topic": "t", "points": [{"tag": "LT-203", "path": "$.v",
                                                                      "ts_path": "$.t"}]})
    d = make_decoder(sub, TAGS, 1 << 20, "Asia/Shanghai")
    out, problems = d.decode(json.dumps({"v": 1, "t": raw}).encode(), RECV)
    assert problems == () and [r.ts for r in out] == [ns]
    if raw != "2024-11-23T02:26:40Z":
        out, problems = json_decoder([{"tag": "LT-203", "path": "$.v", "ts_path": "$.t"}]).decode(
            json.dumps({"v": 1, "t": raw}).encode(), RECV)
        assert out == [] and reasons(problems) == {Reason.NAIVE_TS: 1}


def test_local_times_across_a_dst_change() -> None:
    from zoneinfo import ZoneInfo

    from adapters.mqtt.timestamps import LocalTime

    lt = LocalTime(ZoneInfo("Europe/Berlin"))
    assert to_ns("2024-07-01 12:00:00", "auto", lt) == 1719828000 * 10**9  # CEST, +02:00
    assert to_ns("2024-01-01 12:00:00", "auto", lt) == 1704106800 * 10**9  # CET, +01:00


def records_decoder(**sub: Any) -> Any:
    return make_decoder(MqttSubscription(topic="r/{d}", format="records", **sub), TAGS, 1 << 20, "Asia/Shanghai")


def test_records_shapes_and_errors() -> None:
    d = records_decoder(each="$.data[*]", tag_path="$.id", value_path="$.v", ts_path="$.t")
    out, problems = d.decode(json.dumps({"data": [
        {"id": "PT-201", "v": 1, "t": "2024-11-23 10:26:40"}, {"id": "NOPE", "v": 2}, {"v": 3},
        {"id": "LT-203", "v": "x", "t": 1732328800}, {"id": "TT-202", "v": 4}, 7]}).encode(), RECV, topic="r/a")
    assert out == [Reading("PT-201", 1.0, 1732328800 * 10**9, Quality.GOOD)]
    assert reasons(problems) == {Reason.UNKNOWN_TAG: 1, Reason.BAD_ENTRY: 2, Reason.NOT_NUMERIC: 1,
                                 Reason.MISSING_TS: 1}
    out, problems = d.decode(b'{"data": []}', RECV, topic="r/a")
    assert out == [] and reasons(problems) == {Reason.NO_RECORDS: 1}
    # keys by point, per publisher
    d = records_decoder(each="$[*]", values_path="$.values", points=[
        {"tag": "PT-201", "key": "p", "match": {"d": "a"}}, {"tag": "LT-203", "key": 3, "match": {"d": "b"}}])
    out, problems = d.decode(b'[{"values": {"p": 1, "3": 2}}]', RECV, topic="r/a")
    assert [(r.tag, r.value) for r in out] == [("PT-201", 1.0)] and reasons(problems) == {Reason.UNKNOWN_TAG: 1}
    out, _ = d.decode(b'[{"values": {"p": 1, "3": 2}}]', RECV, topic="r/b")
    assert [(r.tag, r.value) for r in out] == [("LT-203", 2.0)]
    out, problems = d.decode(b'[{"values": {"p": 1}}]', RECV, topic="r/c")
    assert out == [] and reasons(problems) == {Reason.UNMATCHED_TOPIC: 1}


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(json_values, st.booleans())
def test_fuzz_records_never_raise(doc: Any, retained: bool) -> None:
    d = records_decoder(each="$..data[*]".replace("..", "."), tag_path="$.id", value_path="$.v", ts_path="$.t")
    out, problems = d.decode(json.dumps({"data": doc}).encode(), RECV, retained, "r/a")
    check_readings(out, problems)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=200))
def test_fuzz_sparkplug_bytes_never_raise(payload: bytes) -> None:
    d = make_decoder(MqttSubscription.model_validate({"topic": "spBv1.0/g/#", "format": "sparkplug_b", "points": [
        {"tag": "PT-201", "edge_node": "e", "metric": "p"}]}), TAGS, 1 << 20)
    for kind in ("NBIRTH", "NDATA", "NDEATH"):
        out, problems = d.decode(payload, RECV, False, f"spBv1.0/g/{kind}/e")
        check_readings([r for r in out if r.quality != Quality.COMM], problems)
