"""Config model of the MQTT source type (``type: mqtt``).

Registered in ``adapters/registry.py``; the keys are documented in README.md beside this
file.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import replace
from functools import cached_property
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, SecretStr, field_validator, model_validator

from adapters.mqtt.jsonpath import compile_path
from gateway.core.config import CommLink, CommUnit, Duration, Id, Model, Size, SourceConfig

Format = Literal["json", "native", "records", "sparkplug_b"]
_BINDING = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
SPARKPLUG_NAMESPACE = "spBv1.0"


class TopicPattern:
    """A subscription's ``topic`` with named wildcard levels: ``plant/{device}/telemetry`` is the
    MQTT filter ``plant/+/telemetry`` whose second level is called ``device``."""

    __slots__ = ("filter", "names", "unnamed")

    def __init__(self, text: str) -> None:
        levels = text.split("/")
        out: list[str] = []
        names: list[tuple[int, str]] = []
        unnamed = False
        for i, level in enumerate(levels):
            m = _BINDING.fullmatch(level)
            if m:
                if any(n == m.group(1) for _, n in names):
                    raise ValueError(f"topic {text!r}: {{{m.group(1)}}} is named twice")
                names.append((i, m.group(1)))
                out.append("+")
                continue
            if "{" in level or "}" in level:
                raise ValueError(f"topic {text!r}: a {{name}} must fill a whole level (letters, digits, _)")
            if ("#" in level and (level != "#" or i != len(levels) - 1)) or ("+" in level and level != "+"):
                raise ValueError(f"invalid topic filter {text!r}: '+' must fill a level, '#' only at the end")
            unnamed = unnamed or level in ("+", "#")
            out.append(level)
        self.filter = "/".join(out)
        self.names: tuple[tuple[int, str], ...] = tuple(names)
        self.unnamed = unnamed  # a '+' or '#' that no point can select on

    @property
    def wildcard(self) -> bool:
        return bool(self.names) or self.unnamed

    def values(self, topic: str) -> tuple[str, ...]:
        """The named levels' values in ``topic`` (which matches :attr:`filter`)."""
        levels = topic.split("/")
        return tuple(levels[i] for i, _ in self.names)


class MqttPoint(Model):
    """One tag. ``json``: ``path``; ``records``: ``key`` (the record's tag field); ``sparkplug_b``:
    ``edge_node``, ``device`` (absent: a node metric), ``metric``. ``match`` selects named topic levels."""

    tag: Id
    path: str | None = Field(default=None, description="json: JSON path of the value, e.g. $.pressure")
    ts_path: str | None = None
    quality_path: str | None = None
    key: str | int | None = Field(default=None, description="records: the value of tag_path that means this tag")
    edge_node: str | None = None
    device: str | None = None
    metric: str | None = None
    match: dict[str, str] = Field(default_factory=dict, description="named topic levels, {device: gds7}")
    scale: float = 1.0
    offset: float = 0.0

    @field_validator("path", "ts_path", "quality_path")
    @classmethod
    def _json_path(cls, v: str | None) -> str | None:
        if v is not None:
            compile_path(v)
        return v


class MqttSubscription(Model):
    topic: str = Field(min_length=1, description="MQTT filter; {name} levels are '+' that points can match")
    qos: Literal[0, 1, 2] = 1
    format: Format = "json"
    points: list[MqttPoint] = Field(default_factory=list)
    ts_unit: Literal["auto", "s", "ms", "us", "ns"] = "auto"
    single_publisher: bool = Field(
        default=False, description="the wildcard levels are known to carry one publisher: points need no match"
    )
    ack: Literal["commit", "receipt"] = Field(
        default="commit", description="QoS 1/2: acknowledge after the readings are committed, or on receipt"
    )
    # value and quality rules
    states: dict[str, float] = Field(default_factory=dict, description="words of discrete values, {ON: 1, OFF: 0}")
    decimal_comma: bool = False
    quality_map: dict[str, Literal["good", "uncertain", "stale", "comm", "bad"]] = Field(default_factory=dict)
    # records
    each: str | None = None
    tag_path: str | None = None
    value_path: str | None = None
    values_path: str | None = None
    ts_path: str | None = None
    quality_path: str | None = None
    # sparkplug_b
    rebirth: bool = Field(default=False, description="sparkplug_b: send the Rebirth NCMD on a sequence gap")

    @field_validator("quality_map", mode="before")
    @classmethod
    def _quality_keys(cls, v: object) -> object:
        if isinstance(v, dict):
            return {quality_key(k): q for k, q in v.items()}
        return v

    @field_validator("states", mode="before")
    @classmethod
    def _state_keys(cls, v: object) -> object:
        if isinstance(v, dict):
            return {str(k).strip().casefold(): s for k, s in v.items()}
        return v

    @field_validator("each")
    @classmethod
    def _each(cls, v: str | None) -> str | None:
        if v is not None:
            compile_path(v, multi=True)
        return v

    @field_validator("tag_path", "value_path", "values_path", "ts_path", "quality_path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None:
            compile_path(v)
        return v

    @cached_property
    def pattern(self) -> TopicPattern:
        return TopicPattern(self.topic)

    @property
    def filter(self) -> str:
        """The MQTT topic filter subscribed to."""
        return self.pattern.filter

    @model_validator(mode="after")
    def _check(self) -> MqttSubscription:
        pat = TopicPattern(self.topic)  # raises on bad syntax
        names = {n for _, n in pat.names}
        fmt = self.format
        for i, p in enumerate(self.points):
            where = f"points[{i}] ({p.tag})"
            unknown = set(p.match) - names
            if unknown:
                raise ValueError(f"{where}: match names {sorted(unknown)} that are not {{levels}} of topic "
                                 f"{self.topic!r}")
            given = {k for k in ("path", "key", "edge_node", "device", "metric") if getattr(p, k) is not None}
            need = {"json": {"path"}, "records": {"key"}, "sparkplug_b": {"edge_node", "metric"}}.get(fmt, set())
            allowed = need | ({"device"} if fmt == "sparkplug_b" else set())
            if not need <= given:
                raise ValueError(f"{where}: format {fmt} points need {', '.join(sorted(need))}")
            if given - allowed:
                raise ValueError(f"{where}: {', '.join(sorted(given - allowed))} not used by format {fmt}")
            if fmt != "json" and (p.ts_path or p.quality_path):
                raise ValueError(f"{where}: ts_path/quality_path of a point are for format json; "
                                 "records set them on the subscription")
        rec_keys = ("each", "tag_path", "value_path", "values_path", "ts_path", "quality_path")
        if fmt == "json" and not self.points:
            raise ValueError("format json needs points (tag + JSON path)")
        if fmt == "native" and self.points:
            raise ValueError("format native carries tags in the payload; remove points")
        if fmt != "records" and any(getattr(self, k) is not None for k in rec_keys):
            raise ValueError(f"{', '.join(k for k in rec_keys if getattr(self, k) is not None)}: only for "
                             "format records")
        if fmt == "records":
            if self.each is None:
                raise ValueError("format records needs each (the JSON path of the records, e.g. $.data[*])")
            if self.values_path is not None:
                if self.tag_path is not None or self.value_path is not None:
                    raise ValueError("records: give either values_path (an object of tag: value) or "
                                     "tag_path + value_path")
            elif self.tag_path is None or self.value_path is None:
                raise ValueError("format records needs tag_path and value_path (or values_path)")
        if fmt == "sparkplug_b":
            levels = self.topic.split("/")
            if levels[0] != SPARKPLUG_NAMESPACE or len(levels) < 2 or levels[1] in ("+", "#") or "{" in levels[1]:
                raise ValueError(f"format sparkplug_b: topic must be {SPARKPLUG_NAMESPACE}/<group>/... with the "
                                 f"group spelled out, e.g. {SPARKPLUG_NAMESPACE}/plant1/#")
            if pat.names:
                raise ValueError("format sparkplug_b: points name edge_node and device; no {levels} in the topic")
            keys = [(p.edge_node, p.device, p.metric) for p in self.points]
            dup = {k for k in keys if keys.count(k) > 1}
            if dup:
                raise ValueError(f"sparkplug_b: metric {sorted(dup, key=str)[0]} is bound twice")
        elif self.rebirth:
            raise ValueError("rebirth: only for format sparkplug_b")
        return self

    def binding_problems(self) -> Iterator[tuple[int, str]]:
        """(point index, message) for points that a wildcard topic could feed from several publishers."""
        if self.single_publisher or self.format in ("native", "sparkplug_b"):
            return
        pat = TopicPattern(self.topic)
        if not pat.wildcard:
            return
        names = [n for _, n in pat.names]
        for i, p in enumerate(self.points):
            missing = [n for n in names if n not in p.match]
            if pat.unnamed:
                yield i, (f"topic {self.topic!r} has a '+' or '#' level no point can select on, so several "
                          f"publishers would feed tag {p.tag} in turn: name the level, e.g. "
                          f"plant/{{device}}/telemetry with match: {{device: ...}}, or say single_publisher: true")
            elif missing:
                yield i, (f"tag {p.tag} is fed by every publisher on {self.topic!r}: add match: "
                          f"{{{', '.join(f'{n}: ...' for n in missing)}}} or say single_publisher: true on the "
                          "subscription")

    def comm_unit(self, p: MqttPoint) -> str:
        """The publisher a point's tag depends on (see :meth:`MqttSource.comm_units`)."""
        if self.format == "sparkplug_b":
            group = self.topic.split("/")[1]
            unit = f"{SPARKPLUG_NAMESPACE}/{group}/{p.edge_node}"
            return f"{unit}/{p.device}" if p.device is not None else unit
        levels = self.topic.split("/")
        for i, name in self.pattern.names:
            levels[i] = p.match.get(name, "+")
        return "/".join(levels)


def quality_key(raw: object) -> str:
    """The lookup key of a quality code: integers (and integral floats) as digits, words case-folded."""
    if isinstance(raw, bool):
        return str(raw).casefold()
    if isinstance(raw, float) and raw.is_integer():
        return str(int(raw))
    return str(raw).strip().casefold()


class MqttSource(SourceConfig):
    type: Literal["mqtt"]
    url: str = Field(pattern=r"^mqtts?://[^/]+(:\d+)?/?$")
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    tls_insecure: bool = False
    protocol: Literal["3.1.1", "5"] = "3.1.1"
    keepalive: Duration = 30.0
    persistent_session: bool = True
    session_expiry: Duration = Field(
        default=86400.0, description="MQTT 5: how long the broker keeps a persistent session while we are away"
    )
    reconnect_min: Duration = 0.5
    reconnect_max: Duration = 30.0
    max_payload: Size = 1024 * 1024
    queue_size: int = Field(default=10000, ge=10, description="messages buffered between broker and decoder")
    timezone: str | None = Field(default=None, description="IANA zone of payload times without an offset")
    subscriptions: list[MqttSubscription] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        if v is not None:
            try:
                ZoneInfo(v)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {v!r}: use an IANA name such as Asia/Shanghai") from None
        return v

    @model_validator(mode="after")
    def _check(self) -> MqttSource:
        tls = self.url.startswith("mqtts://")
        if not tls:
            given = [k for k in ("ca", "cert", "key") if getattr(self, k) is not None]
            if self.tls_insecure:
                given.append("tls_insecure")
            if given:
                raise ValueError(f"{', '.join(given)} need an mqtts:// url")
        if self.key is not None and self.cert is None:
            raise ValueError("key needs cert (the client certificate)")
        if self.password is not None and self.username is None:
            raise ValueError("password needs username (MQTT sends no password without a user name)")
        if not 1 <= self.keepalive <= 65535:
            raise ValueError("keepalive must be 1s..65535s")
        if not 0 < self.reconnect_min <= self.reconnect_max:
            raise ValueError("need 0 < reconnect_min <= reconnect_max")
        if self.session_expiry > 0xFFFFFFFE:
            raise ValueError("session_expiry must be below 136 years")
        return self

    def point_tags(self) -> Iterator[str]:
        return (p.tag for sub in self.subscriptions for p in sub.points)

    def point_addresses(self) -> dict[str, str]:
        """``plant/gds7/telemetry $.gt101``: the topic (named levels filled in from ``match``) and
        the JSON path / record key / Sparkplug metric of each point."""
        out: dict[str, str] = {}
        for sub in self.subscriptions:
            for p in sub.points:
                if sub.format == "sparkplug_b":
                    what = f"metric {p.metric}"
                elif sub.format == "records":
                    what = f"{sub.tag_path or sub.values_path} = {p.key}"
                else:
                    what = p.path or ""
                if p.scale != 1.0 or p.offset != 0.0:
                    what += f" x{p.scale:g}{p.offset:+g}"
                out.setdefault(p.tag, f"{sub.comm_unit(p)} {what}".strip())
        return out

    def publishers(self) -> dict[str, str]:
        """``{tag: publisher}``: the publisher each bound tag depends on. Sparkplug B:
        ``spBv1.0/{group}/{edge_node}[/{device}]`` (NDEATH / DDEATH turn exactly these to
        ``comm``); json/records points: the subscription's topic with the point's ``match``
        filled in (``plant/gds7/telemetry``), or the topic filter itself for an exact topic or a
        ``single_publisher`` subscription. Tags named only by payloads (``native``, ``records``
        without points) are not listed."""
        out: dict[str, str] = {}
        for sub in self.subscriptions:
            for p in sub.points:
                out.setdefault(p.tag, sub.comm_unit(p))
        return out

    def comm_units(self) -> list[CommUnit]:
        """One unit per publisher (:meth:`publishers`), sharing the broker connection as their
        :class:`CommLink`: a lost broker reads as one COMM alarm for the source, a silent device
        as one for that device. With one publisher the unit is the source itself. Sparkplug
        units report ``comm`` (deaths); json/records units show a loss only as ``stale``
        readings (their tags need ``stale_after``). The tags ``native`` payloads name go to the
        broker connection."""
        native = any(sub.format == "native" for sub in self.subscriptions)
        by_pub: dict[str, list[str]] = {}
        for tag, pub in self.publishers().items():
            by_pub.setdefault(pub, []).append(tag)
        if len(by_pub) <= 1:
            unit = super().comm_units()[0]
            sparkplug = any(pub.startswith(SPARKPLUG_NAMESPACE + "/") for pub in by_pub)
            return [replace(unit, carries_unbound=native, reports_comm=sparkplug)]
        link = CommLink(id=self.id, name=self.name or self.id)
        units = [
            CommUnit(id=f"{self.id}.{pub.replace('/', '.')}", source=self.id, tags=tuple(tags), name=pub,
                     link=link, reports_comm=pub.startswith(SPARKPLUG_NAMESPACE + "/"))
            for pub, tags in by_pub.items()
        ]
        if native:
            units.append(CommUnit(id=f"{self.id}.native", source=self.id, tags=(), name=f"{self.name or self.id} "
                                  "(native)", link=link, reports_comm=False, carries_unbound=True))
        return units
