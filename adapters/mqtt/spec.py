"""The MQTT entry of the source-type registry (``mqtt``).

Importing this module costs only the config models; aiomqtt is imported when an MQTT
source is built.
"""

from __future__ import annotations

import re
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
    number_cells,
    point_cells,
)
from gateway.core.yamlsrc import Path_

SPARKPLUG = "spBv1.0"
_NAMED = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)\}$")


def _fill(topic: str, match: Any) -> str:
    """``plant/{device}/telemetry`` with ``{device: gds7}`` -> ``plant/gds7/telemetry``."""
    if not isinstance(match, dict) or not match:
        return topic
    out = []
    for level in topic.split("/"):
        m = _NAMED.match(level)
        out.append(str(match.get(m.group(1), level)) if m else level)
    return "/".join(out)


def _subscription_for(subs: list[Any], topic: str) -> tuple[int, str, dict[str, str]] | None:
    """(index, format, match) of the subscription a row's topic belongs to: one whose topic is
    exactly it; else one whose named levels it fills (match = those levels); else, for a
    Sparkplug topic, the sparkplug_b subscription of its group."""
    for j, sub in enumerate(subs):
        if isinstance(sub, dict) and sub.get("topic") == topic:
            return j, str(sub.get("format", "json")), {}
    levels = topic.split("/")
    for j, sub in enumerate(subs):
        if not isinstance(sub, dict) or not isinstance(sub.get("topic"), str) or "{" not in sub["topic"]:
            continue
        pattern = sub["topic"].split("/")
        if len(pattern) != len(levels):
            continue
        match: dict[str, str] = {}
        for want, got in zip(pattern, levels, strict=True):
            m = _NAMED.match(want)
            if m:
                match[m.group(1)] = got
            elif want != got:
                break
        else:
            return j, str(sub.get("format", "json")), match
    if levels[0] == SPARKPLUG and len(levels) >= 2:
        for j, sub in enumerate(subs):
            if (isinstance(sub, dict) and sub.get("format") == "sparkplug_b"
                    and str(sub.get("topic", "")).split("/")[1:2] == [levels[1]]):
                return j, "sparkplug_b", {}
    return None


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
    # A row names the publisher in ``topic`` and what selects the value within its payloads in
    # ``path``; the subscription's format says how ``path`` reads:
    #   json        topic = the subscription's topic, its {name} levels filled with the point's
    #               ``match`` (plant/gds7/telemetry for plant/{device}/telemetry); path = JSON path
    #   records     the same topic; path = the record key (``key``) that means this tag
    #   sparkplug_b topic = spBv1.0/<group>/<edge_node>[/<device>]; path = the metric name
    # A topic no subscription takes gets a new ``format: json`` subscription.
    def export_rows(self, source: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, str]]]:
        subs = source.get("subscriptions")
        for sub in subs if isinstance(subs, list) else []:
            if not isinstance(sub, dict) or not isinstance(sub.get("points"), list):
                continue
            topic, fmt = str(sub.get("topic", "")), sub.get("format", "json")
            for p in sub["points"]:
                if not isinstance(p, dict) or not isinstance(p.get("tag"), str):
                    continue
                if fmt == "sparkplug_b":
                    group = topic.split("/")[1] if topic.count("/") >= 1 else ""
                    node = "/".join(str(x) for x in (p.get("edge_node"), p.get("device")) if x is not None)
                    cells = {"topic": f"{SPARKPLUG}/{group}/{node}", "path": str(p.get("metric", ""))}
                else:
                    select = p.get("key") if fmt == "records" else p.get("path")
                    if select is None:
                        continue
                    cells = {"topic": _fill(topic, p.get("match")), "path": str(select)}
                cells.update(point_cells(p, ("scale", "offset")))
                yield p["tag"], cells

    def import_point(
        self, source: MutableMapping[str, Any], row: Mapping[str, str], existing: Mapping[str, Any] | None
    ) -> PointPlacement | list[ColumnProblem]:
        problems: list[ColumnProblem] = []
        topic, path = row.get("topic", ""), row.get("path", "")
        if not topic:
            problems.append(ColumnProblem("topic", "an MQTT point needs the topic its payloads arrive on"))
        if not path:
            problems.append(ColumnProblem("path", "an MQTT point needs what selects its value: a JSON path "
                                                  "(e.g. $.lel), a record key or a Sparkplug metric name"))
        values: dict[str, Any] = {"tag": row["id"]}
        numbers, bad = number_cells(row, ("scale", "offset"))
        values.update(numbers)
        problems += bad
        if problems:
            return problems
        subs = source.get("subscriptions")
        subs = subs if isinstance(subs, list) else []
        where = _subscription_for(subs, topic)
        j: int | None = None
        fmt, match = "json", dict[str, str]()
        if where is not None:
            j, fmt, match = where
        if fmt == "native":
            return [ColumnProblem("topic", f"subscription {topic!r} is format native (its payloads name "
                                           "their tags); a point needs a json subscription")]
        if fmt == "sparkplug_b":
            levels = topic.split("/")
            if len(levels) not in (3, 4) or not all(levels[2:]):
                return [ColumnProblem("topic", "a Sparkplug B point is written spBv1.0/<group>/<edge_node>"
                                               "[/<device>]")]
            values.update(edge_node=levels[2], device=levels[3] if len(levels) == 4 else None, metric=path,
                          path=None, key=None, match=None)
        elif fmt == "records":
            old = existing.get("key") if existing else None
            record_key: str | int = int(path) if isinstance(old, int) and path.lstrip("-").isdigit() else path
            values.update(key=record_key, path=None, match=match or None)
        else:
            from adapters.mqtt.jsonpath import compile_path

            try:
                compile_path(path)
            except ValueError as e:
                return [ColumnProblem("path", str(e))]
            values.update(path=path, key=None, match=match or None)
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
