"""Hand-written InfluxDB line protocol serializer (the measured hot path).

Escaping per the spec (https://docs.influxdata.com/influxdb/v2/reference/syntax/line-protocol/):
measurement: comma and space; tag keys, tag values and field keys: comma, equals sign and
space; string field values: double quote and backslash. Newlines are not representable in
line protocol and become (escaped) spaces; backslashes in names and tags become "/". Tags with empty values are omitted
(InfluxDB rejects ``k=``). Tags are sorted by key, which InfluxDB recommends.

For readings, everything but value, quality and timestamp is fixed per tag, so a
``series prefix`` is built once per tag and each reading costs one string join.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

# A backslash right before an escaped character or at the end of a key cannot be
# represented (InfluxDB 1.x keeps "\\" literally and "\\\\ " is a parse error), so in
# names, tag keys and tag values a backslash becomes "/". Config ids forbid backslashes.
_MEAS = str.maketrans({",": "\\,", " ": "\\ ", "\n": "\\ ", "\r": "\\ ", "\\": "/"})
_KEY = str.maketrans({",": "\\,", "=": "\\=", " ": "\\ ", "\n": "\\ ", "\r": "\\ ", "\\": "/"})
_STR = str.maketrans({'"': '\\"', "\\": "\\\\", "\n": " ", "\r": " "})


def escape_measurement(s: str) -> str:
    return s.translate(_MEAS)


def escape_key(s: str) -> str:
    """Tag keys, tag values and field keys."""
    return s.translate(_KEY)


def escape_string(s: str) -> str:
    return s.translate(_STR)


def format_field(v: object) -> str | None:
    """Field value in line protocol, or None when it cannot be written (NaN/inf/None)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return f"{v}i"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else None
    if v is None:
        return None
    return f'"{escape_string(str(v))}"'


def series_prefix(measurement: str, tags: Mapping[str, str | None]) -> str:
    """``measurement,k=v,...`` with a trailing space, for prepending to fields."""
    parts = [escape_measurement(measurement)]
    for k in sorted(tags):
        v = tags[k]
        if v is None or v == "":
            continue
        parts.append(f"{escape_key(k)}={escape_key(str(v))}")
    return ",".join(parts) + " "


def line(measurement: str, tags: Mapping[str, str | None], fields: Mapping[str, object], ts_ns: int) -> str | None:
    """One complete line, or None when no field is writable."""
    fs = fields_text(fields.items())
    if not fs:
        return None
    return f"{series_prefix(measurement, tags)}{fs} {ts_ns}"


def fields_text(items: Iterable[tuple[str, object]]) -> str:
    out = []
    for k, v in items:
        f = format_field(v)
        if f is not None:
            out.append(f"{escape_key(k)}={f}")
    return ",".join(out)


# Pre-rendered quality fields: the only per-reading string work left is the value.
QUALITY_FIELD = {q: f',quality="{q}" ' for q in ("good", "bad", "uncertain", "stale", "comm")}
QUALITY_ONLY = {q: f'quality="{q}" ' for q in QUALITY_FIELD}


def reading_line(prefix: str, value: float | None, quality: str, ts_ns: int) -> str:
    """A ``reading`` line from a pre-built series prefix. Non-finite values keep only quality."""
    if value is not None and value - value == 0.0:  # finite (NaN and inf fail)
        q = QUALITY_FIELD.get(quality)
        if q is None:
            q = f',quality="{escape_string(quality)}" '
        return f"{prefix}value={float(value)!r}{q}{ts_ns}"
    q = QUALITY_ONLY.get(quality) or f'quality="{escape_string(quality)}" '
    return f"{prefix}{q}{ts_ns}"
