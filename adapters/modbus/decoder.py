"""Registers -> values: every Modbus data type and byte order, as pure functions.

Nothing here does I/O or keeps state. The poller calls these on the hot path, so the
struct codecs for every (type, byte order) pair are built once, at import.

Byte orders name where the bytes of a value travel on the wire, ``A`` being the most
significant byte. The four names of the config apply to every width:

============  ==========  ============  =================================
config name   16 bit      32 bit        64 bit
============  ==========  ============  =================================
``ABCD``      AB          ABCD          ABCDEFGH  (big endian, Modbus default)
``CDAB``      AB          CDAB          GHEFCDAB  (word swap)
``BADC``      BA          BADC          BADCFEHG  (byte swap inside each register)
``DCBA``      BA          DCBA          HGFEDCBA  (little endian)
============  ==========  ============  =================================

A 16-bit value is one register, so only the byte swap (``BADC``/``DCBA``) changes it.
Strings honour the byte swap only: register order is always the text order.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from typing import Final

from adapters.modbus.config import CurrentLoop

NUMERIC_TYPES: Final = ("int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64")
BYTE_ORDERS: Final = ("ABCD", "CDAB", "BADC", "DCBA")
ORDER_64: Final = {"ABCD": "ABCDEFGH", "CDAB": "GHEFCDAB", "BADC": "BADCFEHG", "DCBA": "HGFEDCBA"}

TYPE_REGISTERS: Final = {
    "int16": 1,
    "uint16": 1,
    "int32": 2,
    "uint32": 2,
    "float32": 2,
    "int64": 4,
    "uint64": 4,
    "float64": 4,
    "bool": 1,
}
_STRUCT_CODE: Final = {
    "int16": "h",
    "uint16": "H",
    "int32": "i",
    "uint32": "I",
    "int64": "q",
    "uint64": "Q",
    "float32": "f",
    "float64": "d",
}
# (endianness used to pack the wire registers, endianness used to read the value).
# Packing the registers little endian swaps the two bytes of each register; reading the
# value little endian reverses all bytes. The combinations give the four orders.
_ENDIAN: Final = {"ABCD": (">", ">"), "CDAB": ("<", "<"), "BADC": ("<", ">"), "DCBA": (">", "<")}
_SWAPS_BYTES: Final = frozenset({"BADC", "DCBA"})

# (type, order) -> (wire codec, value codec); built once.
CODECS: Final[dict[tuple[str, str], tuple[struct.Struct, struct.Struct]]] = {
    (t, o): (struct.Struct(f"{_ENDIAN[o][0]}{TYPE_REGISTERS[t]}H"), struct.Struct(f"{_ENDIAN[o][1]}{_STRUCT_CODE[t]}"))
    for t in NUMERIC_TYPES
    for o in BYTE_ORDERS
}


class DecodeError(ValueError):
    """A register block that cannot be turned into a value. ``reason`` is a metric label."""

    def __init__(self, message: str, reason: str = "decode") -> None:
        super().__init__(message)
        self.reason = reason


class RegisterCountError(DecodeError):
    """The number of registers does not match the type (short or long response)."""

    def __init__(self, message: str) -> None:
        super().__init__(message, "register_count")


def registers_for(type_: str, length: int | None = None) -> int:
    """Registers a value of ``type_`` occupies (``length`` for strings)."""
    if type_ == "string":
        if not length:
            raise ValueError("type string needs a length in registers")
        return length
    try:
        return TYPE_REGISTERS[type_]
    except KeyError:
        raise ValueError(f"unknown Modbus type {type_!r}") from None


def _check_order(order: str) -> None:
    if order not in _ENDIAN:
        raise ValueError(f"unknown byte order {order!r}; use one of {', '.join(BYTE_ORDERS)}")


def decode_number(registers: Sequence[int], type_: str, order: str = "ABCD") -> int | float:
    """Registers as received (wire order) -> the number. Raises :class:`DecodeError`."""
    try:
        wire, value = CODECS[(type_, order)]
    except KeyError:
        if type_ not in _STRUCT_CODE:
            raise ValueError(f"{type_!r} is not a numeric Modbus type") from None
        _check_order(order)
        raise
    n = TYPE_REGISTERS[type_]
    if len(registers) != n:
        raise RegisterCountError(f"{type_} needs {n} register(s), got {len(registers)}")
    try:
        return value.unpack(wire.pack(*registers))[0]
    except struct.error as e:
        raise DecodeError(f"register value out of 0..65535: {list(registers)} ({e})", "register_value") from None


def swap_bytes(register: int) -> int:
    return ((register & 0xFF) << 8) | ((register >> 8) & 0xFF)


def extract_bit(register: int, bit: int, order: str = "ABCD") -> bool:
    """Bit ``bit`` (0 = least significant) of a register read as uint16 in ``order``."""
    if not 0 <= bit <= 15:
        raise ValueError(f"bit must be 0..15, got {bit}")
    if not 0 <= register <= 0xFFFF:
        raise DecodeError(f"register value out of 0..65535: {register}", "register_value")
    if order in _SWAPS_BYTES:
        register = swap_bytes(register)
    return bool((register >> bit) & 1)


def registers_to_bytes(registers: Sequence[int], order: str = "ABCD") -> bytes:
    """Text bytes of a string block: big endian registers, bytes swapped for BADC/DCBA."""
    _check_order(order)
    try:
        return struct.pack(f"{'<' if order in _SWAPS_BYTES else '>'}{len(registers)}H", *registers)
    except struct.error as e:
        raise DecodeError(f"register value out of 0..65535 ({e})", "register_value") from None


def decode_string(registers: Sequence[int], order: str = "ABCD", length: int | None = None) -> str:
    """A string block -> text. Stops at the first NUL; strips surrounding blanks.

    ``length`` (registers), when given, is checked against the block.
    """
    if length is not None and len(registers) != length:
        raise RegisterCountError(f"string needs {length} register(s), got {len(registers)}")
    raw = registers_to_bytes(registers, order).split(b"\0", 1)[0]
    return raw.decode("latin-1").strip()


def parse_numeric_text(text: str) -> float:
    """Analyzers that report ASCII numbers ("  12.50"): text -> float, or DecodeError."""
    try:
        v = float(text)
    except ValueError:
        raise DecodeError(f"string {text!r} is not a number", "not_numeric") from None
    if not math.isfinite(v):
        raise DecodeError(f"string {text!r} is not a finite number", "not_finite")
    return v


def scale_value(raw: float, scale: float = 1.0, offset: float = 0.0) -> float:
    """Engineering value = raw * scale + offset."""
    return raw * scale + offset


def loop_milliamps(raw: float, loop: CurrentLoop) -> float:
    """Raw counts -> loop current in mA (linear through raw_4ma and raw_20ma)."""
    return 4.0 + 16.0 * (raw - loop.raw_4ma) / (loop.raw_20ma - loop.raw_4ma)


def current_loop_value(raw: float, loop: CurrentLoop, span: tuple[float, float]) -> tuple[float, bool]:
    """Raw counts -> (engineering value on ``span``, in_fault_band).

    ``in_fault_band`` is true below ``fault_below_ma`` (default 3.8 mA: wire break, detector
    fault) or above ``fault_above_ma`` (default 20.5 mA: short circuit, over-range fault).
    Between 3.8 and 4 mA the value is an under-range measurement, not a fault.
    """
    ma = loop_milliamps(raw, loop)
    lo, hi = span
    value = lo + (ma - 4.0) * (hi - lo) / 16.0
    return value, (ma < loop.fault_below_ma or ma > loop.fault_above_ma)
