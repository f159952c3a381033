"""The MQTT entry of the source-type registry (``mqtt``).

Importing this module costs only the config models; aiomqtt is imported when an MQTT
source is built.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, cast

from pydantic import ValidationError

from adapters.mqtt.config import MqttSource, MqttSubscription
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


MQTT = MqttSpec()
