"""A configured point compiled for the hot path: registers -> (value, quality).

Everything that can be decided from the config (type, byte order, bit, scaling, 4-20 mA
mapping, the tag's range) is decided once here; :meth:`PointCodec.evaluate` then only
slices, decodes and compares.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence

from adapters.modbus.config import ModbusCommon, ModbusPoint
from adapters.modbus.decoder import (
    DecodeError,
    current_loop_value,
    decode_number,
    decode_string,
    extract_bit,
    parse_numeric_text,
)
from adapters.modbus.planner import BIT_TABLES, Span
from gateway.core.config import Tag
from gateway.core.models import Quality

RawFn = Callable[[Sequence[int] | Sequence[bool], int], float]


class PointCodec:
    """Decoding and quality rules of one point. ``evaluate`` raises :class:`DecodeError`."""

    __slots__ = (
        "_lo_hi",
        "_loop",
        "_offset",
        "_raw",
        "_scale",
        "_scaled",
        "config_error",
        "fault_index",
        "fault_state",
        "fault_tag",
        "index",
        "is_bool",
        "span",
        "tag",
    )

    def __init__(self, index: int, point: ModbusPoint, tag: Tag | None, default_order: str) -> None:
        self.index = index
        self.tag = point.tag
        self.span = Span(index, point.table, point.register, point.count)
        self.fault_tag = point.fault
        self.fault_state = point.fault_state
        self.fault_index: int | None = None
        self.config_error: str | None = None
        order = point.byte_order or default_order
        self.is_bool = point.type == "bool"
        self._raw = _raw_fn(point, order)
        self._scale = point.scale
        self._offset = point.offset
        self._scaled = not (point.scale == 1.0 and point.offset == 0.0)
        self._loop = point.current_loop
        rng = tag.range if tag is not None else None
        self._lo_hi: tuple[float, float] | None = None if self.is_bool else rng
        if self._loop is not None and rng is None:
            self.config_error = (
                f"point {point.tag}: current_loop maps onto the tag's range, but tag {point.tag!r} has no range"
            )

    def evaluate(self, values: Sequence[int] | Sequence[bool], offset: int) -> tuple[float | None, str]:
        """(value, quality) of the point inside a response block, before the fault link."""
        if self.config_error is not None:
            return None, Quality.BAD
        raw = self._raw(values, offset)
        if self.is_bool:
            return raw, Quality.GOOD
        quality = Quality.GOOD
        if self._loop is not None:
            assert self._lo_hi is not None
            value, in_fault = current_loop_value(raw, self._loop, self._lo_hi)
            if in_fault:
                quality = Quality.BAD
        elif self._scaled:
            value = raw * self._scale + self._offset
        else:
            value = float(raw)
        if not math.isfinite(value):
            raise DecodeError(f"{self.tag}: value {value!r} is not finite", "not_finite")
        rng = self._lo_hi
        if quality == Quality.GOOD and rng is not None and not rng[0] <= value <= rng[1]:
            quality = Quality.UNCERTAIN
        return value, quality


def _raw_fn(point: ModbusPoint, order: str) -> RawFn:
    n = point.count
    if point.table in BIT_TABLES:
        return lambda v, o: 1.0 if v[o] else 0.0
    if point.type == "bool":
        bit = point.bit if point.bit is not None else 0

        def bit_fn(v: Sequence[int] | Sequence[bool], o: int) -> float:
            return 1.0 if extract_bit(int(v[o]), bit, order) else 0.0

        return bit_fn
    if point.type == "string":

        def str_fn(v: Sequence[int] | Sequence[bool], o: int) -> float:
            return parse_numeric_text(decode_string([int(x) for x in v[o : o + n]], order, n))

        return str_fn
    type_ = point.type

    def num_fn(v: Sequence[int] | Sequence[bool], o: int) -> float:
        return decode_number(v[o : o + n], type_, order)

    return num_fn


def compile_points(cfg: ModbusCommon, tags: Mapping[str, Tag]) -> list[PointCodec]:
    """Codecs for a source's points, with fault links resolved to point indexes."""
    codecs = [PointCodec(i, p, tags.get(p.tag), cfg.byte_order) for i, p in enumerate(cfg.points)]
    by_tag = {c.tag: c.index for c in codecs}
    for c in codecs:
        if c.fault_tag is None:
            continue
        idx = by_tag.get(c.fault_tag)
        if idx is None or idx == c.index:
            c.config_error = f"point {c.tag}: fault point {c.fault_tag!r} is not another point of source {cfg.id}"
        elif not codecs[idx].is_bool:
            c.config_error = f"point {c.tag}: fault point {c.fault_tag!r} must be type bool"
        else:
            c.fault_index = idx
    return codecs


def check_points(cfg: ModbusCommon, tags: Mapping[str, Tag]) -> list[str]:
    """Problems the schema cannot see (they need the tag table); for ``hazardgw check``."""
    return [c.config_error for c in compile_points(cfg, tags) if c.config_error]
