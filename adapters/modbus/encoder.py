"""Values -> registers: the exact inverse of :mod:`adapters.modbus.decoder`.

The adapter is read-only and never encodes anything; the plant simulator and the tests
use these to put engineering values into a server's tables.
"""

from __future__ import annotations

import math
import struct

from adapters.modbus.config import CurrentLoop
from adapters.modbus.decoder import CODECS, NUMERIC_TYPES, swap_bytes

_INT_LIMITS = {
    "int16": (-(2**15), 2**15 - 1),
    "uint16": (0, 2**16 - 1),
    "int32": (-(2**31), 2**31 - 1),
    "uint32": (0, 2**32 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint64": (0, 2**64 - 1),
}


def encode_number(value: float, type_: str, order: str = "ABCD") -> list[int]:
    """A number -> registers in wire order. Integer types round and clamp to their range."""
    if type_ not in NUMERIC_TYPES:
        raise ValueError(f"{type_!r} is not a numeric Modbus type")
    wire, val = CODECS[(type_, order)]
    if type_ in _INT_LIMITS:
        lo, hi = _INT_LIMITS[type_]
        if not math.isfinite(value):
            raise ValueError(f"cannot encode {value!r} as {type_}")
        v: float = max(lo, min(hi, round(value)))
    else:
        v = value
        if type_ == "float32" and math.isfinite(v) and abs(v) > 3.4028234663852886e38:
            v = math.copysign(math.inf, v)
    return list(wire.unpack(val.pack(v)))


def encode_string(text: str, length: int, order: str = "ABCD") -> list[int]:
    """Text -> ``length`` registers, NUL padded (truncated if longer)."""
    raw = text.encode("latin-1")[: 2 * length].ljust(2 * length, b"\0")
    regs = list(struct.unpack(f">{length}H", raw))
    return [swap_bytes(r) for r in regs] if order in ("BADC", "DCBA") else regs


def set_bit(register: int, bit: int, state: bool, order: str = "ABCD") -> int:
    """Inverse of :func:`decoder.extract_bit`: the register with one bit set or cleared."""
    swap = order in ("BADC", "DCBA")
    r = swap_bytes(register) if swap else register
    r = (r | (1 << bit)) if state else (r & ~(1 << bit) & 0xFFFF)
    return swap_bytes(r) if swap else r


def unscale(value: float, scale: float = 1.0, offset: float = 0.0) -> float:
    """Raw value whose ``raw * scale + offset`` is ``value``."""
    if scale == 0:
        raise ValueError("scale 0 cannot be inverted")
    return (value - offset) / scale


def milliamps_to_raw(ma: float, loop: CurrentLoop) -> float:
    return loop.raw_4ma + (ma - 4.0) * (loop.raw_20ma - loop.raw_4ma) / 16.0


def value_to_milliamps(value: float, span: tuple[float, float]) -> float:
    lo, hi = span
    return 4.0 + 16.0 * (value - lo) / (hi - lo)
