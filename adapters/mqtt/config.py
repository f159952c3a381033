"""Config model of the MQTT source type (``type: mqtt``).

Registered in ``adapters/registry.py``; the keys are documented in README.md beside this
file.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from typing import Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from adapters.mqtt.jsonpath import compile_path
from gateway.core.config import CommUnit, Duration, Id, Model, Size, SourceConfig


class MqttPoint(Model):
    tag: Id
    path: str = Field(description="JSON path of the value, e.g. $.pressure or $.data[0].v")
    ts_path: str | None = None
    quality_path: str | None = None
    scale: float = 1.0
    offset: float = 0.0

    @field_validator("path", "ts_path", "quality_path")
    @classmethod
    def _json_path(cls, v: str | None) -> str | None:
        if v is not None:
            compile_path(v)
        return v


class MqttSubscription(Model):
    topic: str = Field(min_length=1)
    qos: Literal[0, 1] = 1
    format: Literal["json", "native"] = "json"
    points: list[MqttPoint] = Field(default_factory=list)
    ts_unit: Literal["auto", "s", "ms", "us", "ns"] = "auto"

    @model_validator(mode="after")
    def _check(self) -> MqttSubscription:
        t = self.topic
        for i, level in enumerate(t.split("/")):
            if ("#" in level and (level != "#" or i != len(t.split("/")) - 1)) or ("+" in level and level != "+"):
                raise ValueError(f"invalid topic filter {t!r}: '+' must fill a level, '#' only at the end")
        if self.format == "json" and not self.points:
            raise ValueError("format json needs points (tag + JSON path)")
        if self.format == "native" and self.points:
            raise ValueError("format native carries tags in the payload; remove points")
        return self


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
    subscriptions: list[MqttSubscription] = Field(min_length=1)

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

    def comm_units(self) -> list[CommUnit]:
        """One unit: the broker connection; it carries the tags ``native`` payloads name. A
        lost connection shows only as ``stale`` readings (tags need ``stale_after``)."""
        native = any(sub.format == "native" for sub in self.subscriptions)
        return [replace(u, carries_unbound=native) for u in super().comm_units()]
