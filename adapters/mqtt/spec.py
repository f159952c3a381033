"""The MQTT entry of the source-type registry (``mqtt``).

Importing this module costs only the config models; aiomqtt is imported when an MQTT
source is built.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, MutableMapping, Sequence
from typing import Any, cast

from pydantic import ValidationError

from adapters.mqtt.config import MqttSource, MqttSubscription
from gateway.core.config import SourceConfig
from gateway.core.sources import (
    ColumnProblem,
    PointPlacement,
    SourceAdapter,
    SourceContext,
    SourceSpec,
    merged_point,
    number_cell,
)
from gateway.core.yamlsrc import Path_


class MqttSpec(SourceSpec):
    models = (MqttSource,)
    simulator = "devkit.simulator.mqtt"
    commands = "adapters.mqtt.cli"
    point_columns = ("topic", "path", "scale", "offset")

    def build(self, configs: Sequence[SourceConfig], ctx: SourceContext) -> list[SourceAdapter]:
        from adapters.mqtt.adapter import MqttAdapter

        return [MqttAdapter(cast(MqttSource, c), ctx) for c in configs]

    def raw_points(self, source: Mapping[str, Any]) -> Iterator[tuple[Path_, Mapping[str, Any]]]:
        subs = source.get("subscriptions")
        for j, sub in enumerate(subs if isinstance(subs, list) else []):
            if isinstance(sub, dict) and isinstance(sub.get("points"), list):
                for k, p in enumerate(sub["points"]):
                    if isinstance(p, dict):
                        yield ("subscriptions", j, "points", k), p

    def check_raw(self, source: Mapping[str, Any]) -> Iterator[tuple[Path_, str]]:
        """A point in a wildcard subscription must select its publisher (``match`` on named
        topic levels) unless the subscription says ``single_publisher: true``: otherwise two
        devices on ``plant/+/telemetry`` feed the same tag in turn."""
        subs = source.get("subscriptions")
        for j, sub in enumerate(subs if isinstance(subs, list) else []):
            if not isinstance(sub, dict):
                continue
            try:
                model = MqttSubscription.model_validate(sub)
            except ValidationError:
                continue  # the schema reports it
            for k, msg in model.binding_problems():
                yield ("subscriptions", j, "points", k), msg

    def carries_unbound_tags(self, source: Mapping[str, Any]) -> bool:
        """``native`` payloads, and ``records`` without points, name tags of the table themselves."""
        subs = source.get("subscriptions")
        if not isinstance(subs, list):
            return False
        return any(isinstance(s, dict) and (s.get("format") == "native" or (
            s.get("format") == "records" and not s.get("points"))) for s in subs)


    # ------------------------------------------------------------------ tag lists
    # A row is a point of the subscription whose ``topic`` equals the row's topic (a new json
    # subscription is added for a new topic) with the row's JSON ``path``. Point kinds other
    # than JSON paths (topic bindings, Sparkplug metrics) export no rows until their hooks say
    # how they are written in a row.
    def export_rows(self, source: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, str]]]:
        subs = source.get("subscriptions")
        for sub in subs if isinstance(subs, list) else []:
            if not isinstance(sub, dict) or not isinstance(sub.get("points"), list):
                continue
            for p in sub["points"]:
                if not isinstance(p, dict) or not isinstance(p.get("tag"), str) or "path" not in p:
                    continue
                cells = {"topic": str(sub.get("topic", "")), "path": str(p["path"])}
                for key in ("scale", "offset"):
                    if p.get(key) is not None:
                        cells[key] = str(p[key])
                yield p["tag"], cells

    def import_point(
        self, source: MutableMapping[str, Any], row: Mapping[str, str], existing: Mapping[str, Any] | None
    ) -> PointPlacement | list[ColumnProblem]:
        from adapters.mqtt.jsonpath import compile_path

        problems: list[ColumnProblem] = []
        topic, path = row.get("topic", ""), row.get("path", "")
        if not topic:
            problems.append(ColumnProblem("topic", "an MQTT point needs the topic its payloads arrive on"))
        if not path:
            problems.append(ColumnProblem("path", "an MQTT point needs the JSON path of its value (e.g. $.lel)"))
        else:
            try:
                compile_path(path)
            except ValueError as e:
                problems.append(ColumnProblem("path", str(e)))
        values: dict[str, Any] = {"tag": row["id"], "path": path}
        for key in ("scale", "offset"):
            text = row.get(key, "")
            try:
                values[key] = number_cell(text) if text else None
            except ValueError:
                problems.append(ColumnProblem(key, f"{text!r} is not a number"))
        subs = source.get("subscriptions")
        subs = subs if isinstance(subs, list) else []
        j = next((i for i, s in enumerate(subs) if isinstance(s, dict) and s.get("topic") == topic), None)
        if topic and j is not None and subs[j].get("format") == "native":
            problems.append(ColumnProblem("topic", f"subscription {topic!r} is format native (its payloads name "
                                                   "their tags); a point needs a json subscription"))
        if problems:
            return problems
        if j is None:
            subs.append({"topic": topic, "format": "json", "points": []})
            source["subscriptions"] = subs
            j = len(subs) - 1
        elif not isinstance(subs[j].get("points"), list):
            subs[j]["points"] = []
        return PointPlacement(("subscriptions", j, "points"), merged_point(existing, values))

    def example_point(self, kind: str, n: int) -> dict[str, str] | None:
        return {"topic": "plant/area-1/telemetry", "path": f"$.{kind}_{n}"}


MQTT = MqttSpec()
