"""Modicon references (``40001``), as vendor manuals and DCS tag lists write Modbus addresses.

The protocol addresses a register by its 0-based offset in one of four tables; manuals
number them from 1 with the table as the leading digit:

=========  =====================  ======================  ==========
table      5-digit reference      6-digit reference       offset
=========  =====================  ======================  ==========
coil       ``00001``-``09999``    ``000001``-``065536``   ref - 1
discrete   ``10001``-``19999``    ``100001``-``165536``   ref - 10001 / 100001
input      ``30001``-``39999``    ``300001``-``365536``   ref - 30001 / 300001
holding    ``40001``-``49999``    ``400001``-``465536``   ref - 40001 / 400001
=========  =====================  ======================  ==========

A reference may carry a bit: ``40041.3`` is bit 3 of holding register offset 40. Leading
zeros of coil references are often lost (a spreadsheet turns ``00017`` into ``17``): with
``addressing: modicon`` any number below 10000 is a coil reference.
"""

from __future__ import annotations

import re

TABLE_OF_DIGIT = {"0": "coil", "1": "discrete", "3": "input", "4": "holding"}
DIGIT_OF_TABLE = {v: k for k, v in TABLE_OF_DIGIT.items()}
# In offset addressing, a register at or above these looks like a reference of its table.
LOOKS_MODICON = {"holding": 40001, "input": 30001, "discrete": 10001}

_REF = re.compile(r"^(\d{1,6})(?:\.(\d{1,2}))?$")


def parse_modicon(text: str) -> tuple[str, int, int | None]:
    """``"40001"`` -> ``("holding", 0, None)``; ``"40041.3"`` -> ``("holding", 40, 3)``.

    Raises ValueError with a message naming the accepted forms."""
    m = _REF.match(text.strip())
    if not m:
        raise ValueError(f"{text!r} is not a Modicon reference (e.g. 40001, 30001, 10001, 00001 or 400001)")
    digits, bit = m.group(1), m.group(2)
    if len(digits) == 6:
        table = TABLE_OF_DIGIT.get(digits[0])
        number = int(digits[1:])
        top = 65536
    elif int(digits) < 10000:
        table, number, top = "coil", int(digits), 9999
    elif len(digits) == 5:
        table = TABLE_OF_DIGIT.get(digits[0])
        number = int(digits[1:])
        top = 9999
    else:
        table, number, top = None, 0, 0
    if table is None:
        raise ValueError(
            f"{text!r} is not a Modicon reference: the leading digit names the table "
            "(0 coil, 1 discrete input, 3 input register, 4 holding register)"
        )
    if not 1 <= number <= top:
        raise ValueError(f"{text!r} is not a Modicon reference: {table} references run from 1 to {top}")
    b = int(bit) if bit is not None else None
    if b is not None:
        if table in ("coil", "discrete"):
            raise ValueError(f"{text!r}: a bit ('.{b}') selects a bit of a register, not of a {table}")
        if b > 15:
            raise ValueError(f"{text!r}: bit must be 0..15")
    return table, number - 1, b


def to_modicon(table: str, offset: int, bit: int | None = None) -> str:
    """The reference of ``table`` offset ``offset``: 5 digits when it fits, else 6."""
    digit = DIGIT_OF_TABLE[table]
    ref = f"{digit}{offset + 1:04d}" if offset + 1 <= 9999 else f"{digit}{offset + 1:05d}"
    return ref + (f".{bit}" if bit is not None else "")


def modicon_suggestion(table: str, register: int, bit: int | None = None) -> str | None:
    """Why an offset address looks like a Modicon reference, with the fix; None if it does not."""
    low = LOOKS_MODICON.get(table)
    if low is None or register < low:
        return None
    try:
        ref_table, offset, _ = parse_modicon(str(register))
    except ValueError:
        return None
    if ref_table != table:
        return None
    b = f".{bit}" if bit is not None else ""
    return (
        f"address {register}{b} in table {table} looks like a Modicon reference ({table} register "
        f"{offset + 1} = protocol offset {offset}); write `addressing: modicon` on the source, or the 0-based "
        f"offset {offset}{b}; if the device really uses offset {register}, write `addressing: offset` on the source"
    )
