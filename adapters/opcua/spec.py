"""The OPC UA entry of the source-type registry (``opcua``).

Importing this module costs only the config models; asyncua is imported when an OPC UA
source is built (and by the ``hazardgw opcua`` commands when they run).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any, ClassVar, cast

from adapters.opcua.config import OpcuaSource
from adapters.opcua.nodeids import parse_browse_path, parse_node_id
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
    point_cells,
)
from gateway.core.yamlsrc import Path_


class OpcuaSpec(SourceSpec):
    models = (OpcuaSource,)
    simulator = "devkit.simulator.opcua"
    commands = "adapters.opcua.cli"

    def build(self, configs: Sequence[SourceConfig], ctx: SourceContext) -> list[SourceAdapter]:
        from adapters.opcua.adapter import OpcuaAdapter

        return [OpcuaAdapter(cast(OpcuaSource, c), ctx) for c in configs]

    def raw_points(self, source: Mapping[str, Any]) -> Iterator[tuple[Path_, Mapping[str, Any]]]:
        return listed_points(source)

    def check(self, configs: Sequence[SourceConfig], tags: Mapping[str, Tag]) -> list[SourceProblem]:
        from adapters.opcua.checks import check_opcua_sources

        return check_opcua_sources(cast(Sequence[OpcuaSource], configs))

    # ------------------------------------------------------------------ tag lists
    # A row binds its tag by ``node`` (a node id) or by ``path`` (a browse path, resolved at
    # connect), exactly one of them: the same rule as a point in the config.
    point_columns: ClassVar[tuple[str, ...]] = ("node", "path")

    def export_rows(self, source: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, str]]]:
        for _, p in self.raw_points(source):
            if not isinstance(p.get("tag"), str):
                continue
            yield p["tag"], point_cells(p, ("node", "path"))

    def import_point(
        self, source: MutableMapping[str, Any], row: Mapping[str, str], existing: Mapping[str, Any] | None
    ) -> PointPlacement | list[ColumnProblem]:
        node, path = row.get("node", ""), row.get("path", "")
        if bool(node) == bool(path):
            return [ColumnProblem("node", "an OPC UA point needs exactly one of node (a node id such as "
                                          "ns=2;s=V101.TT101.PV) or path (a browse path such as "
                                          "Objects/Plant/V101/PT101)")]
        try:
            if node:
                parse_node_id(node)
            else:
                parse_browse_path(path)
        except ValueError as e:
            return [ColumnProblem("node" if node else "path", str(e))]
        values = {"tag": row["id"], "node": node or None, "path": path or None}
        return PointPlacement(("points",), merged_point(existing, values))

    def example_point(self, kind: str, n: int) -> dict[str, str] | None:
        return {"node": f"ns=2;s=Plant.{kind}_{n}.PV"}


OPCUA = OpcuaSpec()
