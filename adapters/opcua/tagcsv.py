"""Tag-list CSV as ``hazardgw tags import`` reads it (the commissioning tag list, 位号表).

Fixed header names in this order, UTF-8 with a byte order mark (so Excel on a Chinese
Windows opens it as UTF-8), one row per tag; empty cells for what the browse cannot know
(alarm limits, hazard source, gas). Written with the csv module; the importer is the tag
list tool's (``hazardgw tags``).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

COLUMNS = (
    "id", "name", "hazard_source", "kind", "gas", "unit", "range_lo", "range_hi", "ll", "l", "h", "hh",
    "source", "address", "type", "byte_order", "scale", "offset", "node", "topic", "path",
)


@dataclass(frozen=True)
class TagRow:
    id: str
    name: str = ""
    kind: str = "analog"
    unit: str = ""
    range_lo: float | None = None
    range_hi: float | None = None
    source: str = ""
    node: str = ""


def _num(x: float | None) -> str:
    return "" if x is None else f"{x:g}"


def write_tag_csv(path: str | Path, rows: Sequence[TagRow]) -> None:
    with open(path, "w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(COLUMNS)
        for r in rows:
            cells = dict.fromkeys(COLUMNS, "")
            cells.update(id=r.id, name=r.name, kind=r.kind, unit=r.unit, range_lo=_num(r.range_lo),
                         range_hi=_num(r.range_hi), source=r.source, node=r.node)
            w.writerow([cells[c] for c in COLUMNS])
