"""Parsing of human-written durations (``500ms``, ``5s``, ``1m30s``) and sizes (``512MiB``), and the
one normalisation of engineering-unit spellings (``mg/m³`` = ``mg/m3``, ``%LEL`` = ``% lel``)."""

from __future__ import annotations

import re

_DUR_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DUR_RE = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h|d)")
_SIZE_UNITS = {
    "": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
    "kib": 1024, "mib": 1024**2, "gib": 1024**3, "k": 1024, "m": 1024**2, "g": 1024**3,
}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*$")


def parse_duration(value: object) -> float:
    """Seconds from ``"500ms"``, ``"5s"``, ``"1m30s"``, ``"2h"``, ``"30d"`` or a plain number (seconds)."""
    if isinstance(value, bool):
        raise ValueError("a duration must be a number of seconds or a string like '500ms', '5s', '1m'")
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        text = value.strip().replace(" ", "")
        if not text:
            raise ValueError("empty duration")
        pos = 0
        seconds = 0.0
        for m in _DUR_RE.finditer(text):
            if m.start() != pos:
                break
            seconds += float(m.group(1)) * _DUR_UNITS[m.group(2)]
            pos = m.end()
        if pos != len(text):
            try:
                seconds = float(text)
            except ValueError:
                raise ValueError(
                    f"invalid duration {value!r}: use a number with a unit, e.g. 500ms, 5s, 1m, 2h, 30d"
                ) from None
    else:
        raise ValueError(f"invalid duration {value!r}")
    if seconds != seconds or seconds < 0 or seconds == float("inf"):
        raise ValueError(f"duration must be finite and >= 0, got {value!r}")
    return seconds


def parse_size(value: object) -> int:
    """Bytes from ``1073741824``, ``"512MiB"``, ``"2GB"``."""
    if isinstance(value, bool):
        raise ValueError("invalid size")
    if isinstance(value, int):
        n = value
    elif isinstance(value, str):
        m = _SIZE_RE.match(value)
        if not m or m.group(2).lower() not in _SIZE_UNITS:
            raise ValueError(f"invalid size {value!r}: use bytes or a unit like 512MiB, 2GB")
        n = int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
    else:
        raise ValueError(f"invalid size {value!r}")
    if n < 0:
        raise ValueError("size must be >= 0")
    return n


def normalize_unit(unit: str) -> str:
    """The comparable form of an engineering unit: no spaces, ``³`` -> ``3``, no ``^``, lower case.

    The GB/T 50493 set-point checks (alerting/standards.py) and the MQTT source's
    ``"12.5 ppm"`` values (a unit in the payload must equal the tag's unit) compare units
    through this one function.
    """
    return unit.replace(" ", "").replace("³", "3").replace("^", "").lower()
