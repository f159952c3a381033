"""The MQTT entry of the source-type registry (``mqtt``).

Importing this module costs only the config models; aiomqtt is imported when an MQTT
source is built.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

from adapters.mqtt.config import MqttSource
from gateway.core.config import SourceConfig
from gateway.core.sources import SourceAdapter, SourceContext, SourceSpec
from gateway.core.yamlsrc import Path_


class MqttSpec(SourceSpec):
    models = (MqttSource,)
    simulator = "devkit.simulator.mqtt"

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

    def carries_unbound_tags(self, source: Mapping[str, Any]) -> bool:
        subs = source.get("subscriptions")
        return any(isinstance(s, dict) and s.get("format") == "native" for s in subs if isinstance(subs, list)) \
            if isinstance(subs, list) else False


MQTT = MqttSpec()
