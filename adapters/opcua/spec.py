"""The OPC UA entry of the source-type registry (``opcua``).

Importing this module costs only the config models; asyncua is imported when an OPC UA
source is built (and by the ``hazardgw opcua`` commands when they run).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

from adapters.opcua.config import OpcuaSource
from gateway.core.config import SourceConfig, Tag
from gateway.core.sources import SourceAdapter, SourceContext, SourceProblem, SourceSpec
from gateway.core.yamlsrc import Path_


class OpcuaSpec(SourceSpec):
    models = (OpcuaSource,)
    simulator = "devkit.simulator.opcua"
    commands = "adapters.opcua.cli"

    def build(self, configs: Sequence[SourceConfig], ctx: SourceContext) -> list[SourceAdapter]:
        from adapters.opcua.adapter import OpcuaAdapter

        return [OpcuaAdapter(cast(OpcuaSource, c), ctx) for c in configs]

    def raw_points(self, source: Mapping[str, Any]) -> Iterator[tuple[Path_, Mapping[str, Any]]]:
        points = source.get("points")
        if isinstance(points, list):
            for k, p in enumerate(points):
                if isinstance(p, dict):
                    yield ("points", k), p

    def check(self, configs: Sequence[SourceConfig], tags: Mapping[str, Tag]) -> list[SourceProblem]:
        from adapters.opcua.checks import check_opcua_sources

        return check_opcua_sources(cast(Sequence[OpcuaSource], configs))


OPCUA = OpcuaSpec()
