"""Publishes simulated values on the config's MQTT subscriptions.

The simulator module of the MQTT source spec (``traits`` and ``build`` at the end
implement the contract in :mod:`devkit.simulator`).

* ``json`` subscriptions: one document per tick and publisher -- the points sharing a
  ``match`` -- on the subscription's topic with the named levels filled from that ``match``
  (other ``+`` and ``#`` filled with ``sim``), with each point's value at its JSON path and
  the epoch-ms timestamp at its ``ts_path``. Paths of the form ``$.a.b`` are supported here.
* ``native`` subscriptions: one bulk array per tick with every tag that no point of any
  source binds, ``[{"tag": ..., "v": ..., "ts": epoch_ms}]``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import aiomqtt

from adapters.mqtt.config import MqttPoint, MqttSource, MqttSubscription
from devkit.simulator import SimulatedDevice, SourceTraits
from gateway.core.config import SiteConfig, SourceConfig

if TYPE_CHECKING:
    from devkit.simulator.plant import Frame

log = logging.getLogger(__name__)


def concrete_topic(topic_filter: str, match: Mapping[str, str] | None = None) -> str:
    """A topic matching ``topic_filter`` (named levels ``{name}`` from ``match``, other wildcards ``sim``)."""
    out = []
    for level in topic_filter.split("/"):
        if level.startswith("{") and level.endswith("}"):
            out.append((match or {}).get(level[1:-1], "sim"))
        else:
            out.append("sim" if level in ("+", "#") else level)
    return "/".join(out)


def _keys(path: str) -> list[str] | None:
    if not path.startswith("$."):
        return None
    keys = path[2:].split(".")
    return keys if all(k and "[" not in k for k in keys) else None


def set_path(doc: dict[str, Any], path: str, value: Any) -> bool:
    keys = _keys(path)
    if keys is None:
        return False
    cur = doc
    for k in keys[:-1]:
        cur = cur.setdefault(k, {})
        if not isinstance(cur, dict):
            return False
    cur[keys[-1]] = value
    return True


@dataclass
class Feed:
    source: MqttSource
    sub: MqttSubscription
    topic: str
    points: Sequence[MqttPoint] = ()  # json: the points of this publisher


def _feeds(source: MqttSource, sub: MqttSubscription) -> list[Feed]:
    if sub.format != "json":
        return [Feed(source, sub, concrete_topic(sub.topic))]
    groups: dict[tuple[tuple[str, str], ...], list[MqttPoint]] = {}
    for p in sub.points:
        groups.setdefault(tuple(sorted(p.match.items())), []).append(p)
    return [Feed(source, sub, concrete_topic(sub.topic, dict(m)), pts) for m, pts in groups.items()]


class MqttPublisher:
    """One client per MQTT source: ``sources``, or every MQTT source of the config."""

    def __init__(self, config: SiteConfig, sources: Sequence[MqttSource] | None = None) -> None:
        self.config = config
        bound = set(config.source_of_tag())
        self.unbound = [t.id for t in config.tags if t.id not in bound]
        if sources is None:
            sources = [s for s in config.sources if isinstance(s, MqttSource)]
        self.feeds = [f for s in sources for sub in s.subscriptions for f in _feeds(s, sub)
                      if sub.format in ("json", "native")]
        self._clients: dict[str, aiomqtt.Client] = {}
        self.published = 0
        self.errors = 0

    async def start(self) -> None:
        for s in {f.source.id: f.source for f in self.feeds}.values():
            u = urlsplit(s.url)
            tls = None
            if u.scheme == "mqtts":
                tls = aiomqtt.TLSParameters(ca_certs=s.ca, certfile=s.cert, keyfile=s.key)
            client = aiomqtt.Client(
                u.hostname or "127.0.0.1",
                u.port or (8883 if u.scheme == "mqtts" else 1883),
                identifier=f"hazardgw-sim-{s.id}",
                username=s.username,
                password=s.password.get_secret_value() if s.password else None,
                tls_params=tls,
            )
            await client.__aenter__()
            self._clients[s.id] = client

    async def stop(self) -> None:
        for c in self._clients.values():
            try:
                await c.__aexit__(None, None, None)
            except aiomqtt.MqttError:
                pass
        self._clients.clear()

    async def show(self, frame: Frame, ts_ms: int) -> None:
        """One plant frame: publish it, without the frame's silent tags and sources."""
        await self.publish(frame.values, ts_ms, frame.effects.silent_tags, frame.effects.silent_sources)

    async def publish(
        self,
        values: Mapping[str, float | None],
        ts_ms: int,
        silent: Set[str],
        silent_sources: Set[str] = frozenset(),
    ) -> None:
        for f in self.feeds:
            client = self._clients.get(f.source.id)
            if client is None or f.source.id in silent_sources:
                continue
            if f.sub.format == "json":
                doc: dict[str, Any] = {}
                for p in f.points:
                    assert p.path is not None
                    v = values.get(p.tag)
                    if v is None or p.tag in silent:
                        continue
                    raw = (v - p.offset) / p.scale if p.scale else v
                    set_path(doc, p.path, round(raw, 6))
                    if p.ts_path:
                        set_path(doc, p.ts_path, ts_ms)
                if not doc:
                    continue
                payload = json.dumps(doc, separators=(",", ":"))
            else:
                items = [
                    {"tag": t, "v": round(v, 6), "ts": ts_ms}
                    for t in self.unbound
                    if (v := values.get(t)) is not None and t not in silent
                ]
                if not items:
                    continue
                payload = json.dumps(items, separators=(",", ":"), ensure_ascii=False)
            try:
                await client.publish(f.topic, payload, qos=f.sub.qos)
                self.published += 1
            except aiomqtt.MqttError as e:
                self.errors += 1
                if self.errors in (1, 10, 100) or self.errors % 1000 == 0:
                    log.warning("simulator publish to %s failed (%d so far): %s", f.topic, self.errors, e)


# ---------------------------------------------------------------------- simulator contract


def traits(configs: Sequence[SourceConfig]) -> SourceTraits:
    """Every tag a point binds can be left out of the published documents on its own."""
    return SourceTraits(silenceable_tags=frozenset(t for cfg in configs for t in cfg.point_tags()))


def build(configs: Sequence[SourceConfig], site: SiteConfig) -> list[SimulatedDevice]:
    return [MqttPublisher(site, cast(Sequence[MqttSource], configs))]
