"""Decoder: every type and byte order, bits, strings, scaling, 4-20 mA, count errors.

Property tests run values through the encoder (what the simulator serves) and back through
the decoder (what the adapter reads); known vectors pin the byte orders to the wire.
"""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.modbus.config import CurrentLoop, ModbusPoint, ModbusTcpSource
from adapters.modbus.decoder import (
    BYTE_ORDERS,
    NUMERIC_TYPES,
    DecodeError,
    RegisterCountError,
    current_loop_value,
    decode_number,
    decode_string,
    extract_bit,
    loop_milliamps,
    parse_numeric_text,
    registers_for,
)
from adapters.modbus.encoder import (
    encode_number,
    encode_string,
    milliamps_to_raw,
    set_bit,
    unscale,
    value_to_milliamps,
)
from adapters.modbus.points import PointCodec, compile_points
from gateway.core.config import Tag
from gateway.core.models import Quality

INT_RANGES = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}
orders = st.sampled_from(BYTE_ORDERS)


@st.composite
def typed_values(draw: st.DrawFn) -> tuple[str, float]:
    t = draw(st.sampled_from(NUMERIC_TYPES))
    if t in INT_RANGES:
        lo, hi = INT_RANGES[t]
        return t, draw(st.integers(lo, hi))
    if t == "float32":
        return t, draw(st.floats(width=32, allow_nan=False))
    return t, draw(st.floats(allow_nan=False))


@settings(max_examples=400, deadline=None)
@given(typed_values(), orders)
def test_every_numeric_type_and_order_round_trips(tv: tuple[str, float], order: str) -> None:
    type_, value = tv
    regs = encode_number(value, type_, order)
    assert len(regs) == registers_for(type_)
    assert all(0 <= r <= 0xFFFF for r in regs)
    assert decode_number(regs, type_, order) == value


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(["float32", "float64"]), orders)
def test_nan_survives_the_round_trip_as_nan(type_: str, order: str) -> None:
    assert math.isnan(decode_number(encode_number(math.nan, type_, order), type_, order))


# Worked examples (also in the README): the wire registers of one value in each order.
KNOWN = [
    # float32 123.456 = 0x42F6E979
    ("float32", "ABCD", [0x42F6, 0xE979], 123.456),
    ("float32", "CDAB", [0xE979, 0x42F6], 123.456),
    ("float32", "BADC", [0xF642, 0x79E9], 123.456),
    ("float32", "DCBA", [0x79E9, 0xF642], 123.456),
    # uint64 0x0102030405060708: ABCDEFGH, GHEFCDAB, BADCFEHG, HGFEDCBA
    ("uint64", "ABCD", [0x0102, 0x0304, 0x0506, 0x0708], 0x0102030405060708),
    ("uint64", "CDAB", [0x0708, 0x0506, 0x0304, 0x0102], 0x0102030405060708),
    ("uint64", "BADC", [0x0201, 0x0403, 0x0605, 0x0807], 0x0102030405060708),
    ("uint64", "DCBA", [0x0807, 0x0605, 0x0403, 0x0201], 0x0102030405060708),
    # int32 -2 = 0xFFFFFFFE
    ("int32", "ABCD", [0xFFFF, 0xFFFE], -2),
    ("int32", "CDAB", [0xFFFE, 0xFFFF], -2),
    ("int32", "BADC", [0xFFFF, 0xFEFF], -2),
    # 16 bit: only the byte swap matters
    ("int16", "ABCD", [0xFF85], -123),
    ("int16", "CDAB", [0xFF85], -123),
    ("int16", "BADC", [0x85FF], -123),
    ("int16", "DCBA", [0x85FF], -123),
    ("uint16", "DCBA", [0x3412], 0x1234),
]


@pytest.mark.parametrize(("type_", "order", "regs", "value"), KNOWN)
def test_known_wire_layouts(type_: str, order: str, regs: list[int], value: float) -> None:
    got = decode_number(regs, type_, order)
    if type_ == "float32":
        assert got == pytest.approx(value, rel=1e-7)
        assert got == struct.unpack(">f", struct.pack(">f", value))[0]
    else:
        assert got == value
    assert encode_number(got, type_, order) == regs


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 0xFFFF), st.integers(0, 15), st.booleans(), orders)
def test_bit_in_register_round_trips(register: int, bit: int, state: bool, order: str) -> None:
    changed = set_bit(register, bit, state, order)
    assert extract_bit(changed, bit, order) is state
    for other in range(16):  # no other bit moves
        if other != bit:
            assert extract_bit(changed, other, order) == extract_bit(register, other, order)


def test_bit_numbering_is_lsb_first_on_the_uint16_value() -> None:
    assert extract_bit(0x0008, 3) is True
    assert extract_bit(0x8000, 15) is True
    assert extract_bit(0x0008, 3, "BADC") is False  # byte swapped: 0x0800
    assert extract_bit(0x0800, 3, "BADC") is True


@settings(max_examples=200, deadline=None)
@given(
    st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=20),
    st.integers(1, 12),
    orders,
)
def test_string_round_trips(text: str, length: int, order: str) -> None:
    regs = encode_string(text, length, order)
    assert len(regs) == length
    assert decode_string(regs, order, length) == text[: 2 * length]


def test_string_stops_at_nul_and_strips_blanks() -> None:
    regs = [0x2020, 0x3132, 0x2E35, 0x0000, 0x4142]  # "  12.5\0AB"
    assert decode_string(regs) == "12.5"
    assert parse_numeric_text(decode_string(regs)) == 12.5
    with pytest.raises(DecodeError) as e:
        parse_numeric_text("ERR")
    assert e.value.reason == "not_numeric"


@pytest.mark.parametrize(("type_", "n"), [("int16", 2), ("float32", 1), ("float32", 3), ("float64", 2), ("uint64", 5)])
def test_wrong_register_count_is_a_clear_error(type_: str, n: int) -> None:
    with pytest.raises(RegisterCountError) as e:
        decode_number([0] * n, type_, "ABCD")
    assert f"needs {registers_for(type_)} register(s), got {n}" in str(e.value)
    assert e.value.reason == "register_count"


def test_string_length_mismatch_and_bad_register_values() -> None:
    with pytest.raises(RegisterCountError, match="string needs 4 register"):
        decode_string([0x4142] * 3, "ABCD", 4)
    with pytest.raises(DecodeError) as e:
        decode_number([70000, 0], "float32", "ABCD")
    assert e.value.reason == "register_value"
    with pytest.raises(ValueError, match="unknown byte order"):
        decode_number([0, 0], "float32", "WXYZ")


@settings(max_examples=200, deadline=None)
@given(
    st.floats(-1e6, 1e6),
    st.floats(1e-3, 1e3) | st.floats(-1e3, -1e-3),
    st.floats(-1e4, 1e4),
)
def test_scale_offset_round_trips(value: float, scale: float, offset: float) -> None:
    raw = unscale(value, scale, offset)
    assert raw * scale + offset == pytest.approx(value, rel=1e-9, abs=1e-6)


LOOP = CurrentLoop(raw_4ma=4000, raw_20ma=20000)


@pytest.mark.parametrize(
    ("ma", "value", "fault"),
    [
        (4.0, 0.0, False),
        (12.0, 50.0, False),
        (20.0, 100.0, False),
        (3.9, -0.625, False),
        (20.4, 102.5, False),
        (3.79, -1.3125, True),
        (2.0, -12.5, True),
        (0.0, -25.0, True),
        (20.51, 103.1875, True),
        (22.0, 112.5, True),
    ],
)
def test_current_loop_mapping_and_fault_band(ma: float, value: float, fault: bool) -> None:
    raw = milliamps_to_raw(ma, LOOP)
    assert loop_milliamps(raw, LOOP) == pytest.approx(ma)
    got, in_fault = current_loop_value(raw, LOOP, (0.0, 100.0))
    assert got == pytest.approx(value)
    assert in_fault is fault


@settings(max_examples=200, deadline=None)
@given(st.floats(0, 100), st.integers(-30000, 30000), st.integers(1, 30000))
def test_current_loop_round_trips(value: float, raw4: int, width: int) -> None:
    loop = CurrentLoop(raw_4ma=raw4, raw_20ma=raw4 + width)
    raw = milliamps_to_raw(value_to_milliamps(value, (0, 100)), loop)
    got, fault = current_loop_value(raw, loop, (0, 100))
    assert got == pytest.approx(value, abs=1e-6)
    assert fault is False


# --------------------------------------------------------------------------- point level


@st.composite
def points(draw: st.DrawFn) -> tuple[ModbusPoint, float]:
    type_, value = draw(typed_values())
    order = draw(orders)
    if type_ in ("float32", "float64"):
        value = draw(st.floats(-1e6, 1e6, width=32 if type_ == "float32" else 64))
        scale = draw(st.sampled_from([1.0, 0.1, 2.5]))
        offset = draw(st.sampled_from([0.0, -40.0]))
    else:
        scale, offset = draw(st.sampled_from([(1.0, 0.0), (0.01, 0.0), (0.1, -50.0)]))
    p = ModbusPoint(
        tag="T", address=draw(st.integers(0, 1000)), type=type_, byte_order=order, scale=scale, offset=offset
    )
    return p, float(value)


@settings(max_examples=300, deadline=None)
@given(points())
def test_point_codec_round_trips_engineering_values(pv: tuple[ModbusPoint, float]) -> None:
    p, raw_value = pv
    codec = PointCodec(0, p, None, "ABCD")
    regs = encode_number(raw_value, p.type, p.byte_order or "ABCD")
    value, quality = codec.evaluate([0xAAAA, *regs, 0x5555], 1)  # inside a larger block
    assert quality == Quality.GOOD
    expected = raw_value * p.scale + p.offset
    if p.type == "float32":
        expected = struct.unpack(">f", struct.pack(">f", raw_value))[0] * p.scale + p.offset
    assert value == pytest.approx(expected, rel=1e-12, abs=1e-9)


def _source(points: list[dict[str, object]]) -> ModbusTcpSource:
    return ModbusTcpSource.model_validate({"id": "s", "type": "modbus_tcp", "host": "127.0.0.1", "points": points})


def test_point_codec_range_loop_nan_and_config_errors() -> None:
    src = _source(
        [
            {"tag": "GT", "address": 0, "type": "float32"},
            {"tag": "LT", "address": 2, "type": "uint16", "current_loop": {"raw_4ma": 4000, "raw_20ma": 20000}},
            {"tag": "NORANGE", "address": 3, "type": "uint16", "current_loop": {"raw_4ma": 0, "raw_20ma": 1000}},
            {"tag": "S", "address": 4, "type": "string", "length": 2},
        ]
    )
    tags = {"GT": Tag(id="GT", range=(0, 10)), "LT": Tag(id="LT", range=(0, 100))}
    gt, lt, norange, s = compile_points(src, tags)
    assert gt.evaluate(encode_number(5.0, "float32"), 0) == (5.0, Quality.GOOD)
    assert gt.evaluate(encode_number(10.5, "float32"), 0) == (10.5, Quality.UNCERTAIN)
    assert gt.evaluate(encode_number(-0.5, "float32"), 0) == (-0.5, Quality.UNCERTAIN)
    with pytest.raises(DecodeError) as e:
        gt.evaluate(encode_number(math.nan, "float32"), 0)
    assert e.value.reason == "not_finite"
    assert lt.evaluate([12000], 0) == (50.0, Quality.GOOD)
    assert lt.evaluate([2000], 0)[1] == Quality.BAD  # 2 mA: wire break
    assert lt.evaluate([3900], 0)[1] == Quality.UNCERTAIN  # 3.9 mA: under range, not a fault
    assert norange.config_error is not None and "has no range" in norange.config_error
    assert norange.evaluate([500], 0) == (None, Quality.BAD)
    assert s.evaluate(encode_string("7.5", 2), 0) == (7.5, Quality.GOOD)
    with pytest.raises(RegisterCountError):  # a block too short for the point
        gt.evaluate([0x4120], 0)


def test_fault_links_resolve_and_reject_non_bool() -> None:
    src = _source(
        [
            {"tag": "GT", "address": 0, "type": "float32", "fault": "GT.F"},
            {"tag": "GT.F", "table": "discrete", "address": 0, "type": "bool"},
            {"tag": "PT", "address": 4, "type": "uint16", "fault": "GT"},
        ]
    )
    gt, f, pt = compile_points(src, {})
    assert gt.fault_index == f.index and gt.config_error is None
    assert pt.fault_index is None and pt.config_error is not None and "must be type bool" in pt.config_error
