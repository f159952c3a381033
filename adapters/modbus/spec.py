"""The Modbus entry of the source-type registry (``modbus_tcp`` and ``modbus_rtu``).

Importing this module costs only the config models; pymodbus is imported when a Modbus
source is built.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any, ClassVar, cast, get_args

from adapters.modbus.addressing import parse_modicon, to_modicon
from adapters.modbus.config import BYTE_ORDERS, ModbusRtuSource, ModbusTcpSource, ModbusType
from gateway.core.config import SourceConfig, Tag
from gateway.core.sources import (
    ColumnProblem,
    PointPlacement,
    SourceAdapter,
    SourceContext,
    SourceProblem,
    SourceSpec,
    listed_points,
    merged_point,
    number_cells,
    point_cells,
)
from gateway.core.yamlsrc import Path_

ModbusConfig = ModbusTcpSource | ModbusRtuSource


MODBUS_TYPES: tuple[str, ...] = get_args(ModbusType)
TABLES = ("holding", "input", "coil", "discrete")
_TABLE_ADDRESS = re.compile(r"^(holding|input|coil|discrete)\s*:\s*(\d+(?:\.\d+)?)$", re.IGNORECASE)
_NUMBER = re.compile(r"^\d+(?:\.\d+)?$")
_GOVERNED = ("table", "address", "type", "byte_order", "scale", "offset")


def parse_address_cell(text: str, addressing: str | None, existing_table: str | None) -> tuple[str, int, int | None]:
    """A tag-list ``address`` cell -> (table, offset, bit). Accepts ``holding:0`` (``table:offset``,
    ``holding:40.3`` for a bit) and a bare number: in a source with ``addressing: modicon`` a
    Modicon reference; otherwise a Modicon reference when it is one (``40001``, ``300010``),
    else (below 10000, or ``addressing: offset`` said explicitly) a 0-based offset in the
    point's table (holding unless the point already has one). Raises ValueError."""
    t = text.strip()
    m = _TABLE_ADDRESS.match(t)
    if m:
        reg_text, _, bit_text = m.group(2).partition(".")
        return m.group(1).lower(), int(reg_text), int(bit_text) if bit_text else None
    if not _NUMBER.match(t):
        raise ValueError(f"{text!r} is neither a Modicon reference (40001) nor table:offset (holding:0)")
    if addressing == "modicon":
        return parse_modicon(t)
    reg_text, _, bit_text = t.partition(".")
    if addressing is None and int(reg_text) >= 10001:
        try:
            return parse_modicon(t)
        except ValueError:
            pass
    return existing_table or "holding", int(reg_text), int(bit_text) if bit_text else None


class ModbusSpec(SourceSpec):
    models = (ModbusTcpSource, ModbusRtuSource)
    simulator = "devkit.simulator.modbus"
    commands = "adapters.modbus.cli"
    point_columns = ("address", "type", "byte_order", "scale", "offset")
    column_choices: ClassVar[Mapping[str, tuple[str, ...]]] = {"type": MODBUS_TYPES, "byte_order": BYTE_ORDERS}

    def build(self, configs: Sequence[SourceConfig], ctx: SourceContext) -> list[SourceAdapter]:
        from adapters.modbus.build import build_modbus_sources

        return build_modbus_sources(cast(Sequence[ModbusConfig], configs), ctx)

    def raw_points(self, source: Mapping[str, Any]) -> Iterator[tuple[Path_, Mapping[str, Any]]]:
        return listed_points(source)

    def check_raw(self, source: Mapping[str, Any]) -> Iterator[tuple[Path_, str]]:
        """A ``fault`` status point is a point of the same source, and not the point itself."""
        points = list(self.raw_points(source))
        local = {p.get("tag") for _, p in points}
        for path, p in points:
            fault = p.get("fault")
            if fault is None:
                continue
            if fault not in local:
                yield (*path, "fault"), f"fault point {fault!r} must be a point of the same source"
            if isinstance(p.get("tag"), str) and fault == p.get("tag"):
                yield (*path, "fault"), "a point cannot be its own fault point"

    def check(self, configs: Sequence[SourceConfig], tags: Mapping[str, Tag]) -> list[SourceProblem]:
        from adapters.modbus.build import check_modbus_sources

        ids = {c.id for c in configs}
        out = []
        for msg in check_modbus_sources(cast(Sequence[ModbusConfig], configs), tags):
            sid = msg.removeprefix("source ").split(":", 1)[0]
            out.append(SourceProblem(sid if sid in ids else None, msg))
        return out

    # ------------------------------------------------------------------ tag lists
    def export_rows(self, source: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, str]]]:
        modicon = source.get("addressing") == "modicon"
        for _, p in self.raw_points(source):
            if not isinstance(p.get("tag"), str):
                continue
            cells: dict[str, str] = {}
            a = p.get("address")
            if a is not None:
                cells["address"] = str(a) if modicon else f"{p.get('table', 'holding')}:{a}"
            cells.update(point_cells(p, ("type", "byte_order", "scale", "offset")))
            yield p["tag"], cells

    def import_point(
        self, source: MutableMapping[str, Any], row: Mapping[str, str], existing: Mapping[str, Any] | None
    ) -> PointPlacement | list[ColumnProblem]:
        problems: list[ColumnProblem] = []
        addressing = source.get("addressing")
        values: dict[str, Any] = {"tag": row["id"]}
        cell = row.get("address", "")
        old = existing.get("table") if existing else None
        old_table = old if isinstance(old, str) else None
        if not cell:
            problems.append(ColumnProblem("address", "a Modbus point needs an address (40001, or holding:0)"))
        else:
            try:
                table, offset, bit = parse_address_cell(cell, addressing, old_table)
            except ValueError as e:
                problems.append(ColumnProblem("address", str(e)))
            else:
                if addressing == "modicon":
                    ref = to_modicon(table, offset, bit)
                    values["table"] = None
                    values["address"] = int(ref) if ref.isdigit() and not ref.startswith("0") else ref
                else:
                    keep_implicit = table == "holding" and existing is not None and "table" not in existing
                    values["table"] = None if keep_implicit else table
                    values["address"] = offset if bit is None else f"{offset}.{bit}"
        type_ = row.get("type", "").lower()
        if type_ and type_ not in MODBUS_TYPES:
            close = difflib.get_close_matches(type_, MODBUS_TYPES, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            problems.append(
                ColumnProblem("type", f"{row['type']!r} is not a Modbus type{hint}: {', '.join(MODBUS_TYPES)}")
            )
        values["type"] = type_ or None
        order = row.get("byte_order", "").upper()
        if order and order not in BYTE_ORDERS:
            choices = ", ".join(BYTE_ORDERS)
            problems.append(ColumnProblem("byte_order", f"{row['byte_order']!r} is not one of {choices}"))
        values["byte_order"] = order or None
        numbers, bad = number_cells(row, ("scale", "offset"))
        values.update(numbers)
        problems += bad
        if problems:
            return problems
        return PointPlacement(("points",), merged_point(existing, values))

    def example_point(self, kind: str, n: int) -> dict[str, str] | None:
        if kind == "discrete":
            return {"address": f"1{n + 1:04d}", "type": "bool"}
        return {"address": f"4{2 * n + 1:04d}", "type": "float32", "byte_order": "ABCD"}

    def restart_key(self, config: SourceConfig) -> str:
        from adapters.modbus.transport import transport_spec

        return transport_spec(cast(ModbusConfig, config)).key


MODBUS = ModbusSpec()
