"""The one record that flows through the gateway: a reading.

A reading is deliberately a ``NamedTuple`` (a plain tuple at run time): adapters create
hundreds of thousands per second, and a tuple is the cheapest object Python has. Nothing on
the hot path builds pydantic models or ``influxdb_client.Point`` objects.
"""

from __future__ import annotations

import time
from typing import Final, NamedTuple


class Quality:
    """Quality codes (docs/influxdb.md). Plain strings so they serialize for free."""

    GOOD: Final = "good"
    BAD: Final = "bad"  # device fault, 4-20 mA fault band, decode error, exception response
    UNCERTAIN: Final = "uncertain"  # outside the tag's range
    STALE: Final = "stale"  # no update within stale_after
    COMM: Final = "comm"  # source unreachable

    ALL: Final = frozenset({GOOD, BAD, UNCERTAIN, STALE, COMM})


class Reading(NamedTuple):
    """(tag, value, source timestamp in ns since the epoch, quality).

    ``value`` is ``None`` when there is no value to report (``comm`` and ``stale``
    readings): a value is never repeated as fresh after its source went silent.
    Discrete points carry 0.0 / 1.0.
    """

    tag: str
    value: float | None
    ts: int
    quality: str


def now_ns() -> int:
    """Wall-clock time in ns, for readings whose source gives no timestamp."""
    return time.time_ns()
