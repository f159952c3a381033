"""Config model of the OPC UA source type (``type: opcua``).

Registered in ``adapters/registry.py``; the keys are documented in README.md beside this
file. Checks that read files or need warnings (security ``None``, an unpinned server
certificate) are in :mod:`adapters.opcua.checks`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from adapters.opcua.nodeids import parse_browse_path, parse_node_id
from gateway.core.config import Duration, Id, Model, SourceConfig

Policy = Literal["None", "Basic256Sha256", "Aes128Sha256RsaOaep"]
SECURE_POLICIES = ("Basic256Sha256", "Aes128Sha256RsaOaep")


class OpcuaSecurity(Model):
    """``{policy: None}`` must be written out: no security is never a default."""

    policy: Policy = Field(description="None | Basic256Sha256 | Aes128Sha256RsaOaep")
    mode: Literal["Sign", "SignAndEncrypt"] | None = Field(
        default=None, description="message security mode; default SignAndEncrypt (not with policy None)"
    )
    cert: str | None = Field(default=None, description="client certificate (DER or PEM file)")
    key: str | None = Field(default=None, description="client private key (PEM or DER file)")
    server_cert: str | None = Field(default=None, description="the server's certificate, pinned (DER or PEM)")

    @model_validator(mode="after")
    def _check(self) -> OpcuaSecurity:
        given = [k for k in ("mode", "cert", "key", "server_cert") if getattr(self, k) is not None]
        if self.policy == "None":
            if given:
                raise ValueError(f"policy None takes no {', '.join(given)} (or choose Basic256Sha256)")
            return self
        missing = [k for k in ("cert", "key") if getattr(self, k) is None]
        if missing:
            raise ValueError(
                f"policy {self.policy} needs {' and '.join(missing)} (the client certificate and its key; "
                "`hazardgw opcua make-cert` creates a pair)"
            )
        return self

    @property
    def secure(self) -> bool:
        return self.policy != "None"

    @property
    def message_mode(self) -> str:
        """``None``, ``Sign`` or ``SignAndEncrypt``."""
        return "None" if not self.secure else (self.mode or "SignAndEncrypt")


class OpcuaPoint(Model):
    tag: Id
    node: str | None = Field(default=None, description="node id, e.g. ns=2;s=V101.TT101.PV")
    path: str | None = Field(default=None, description="browse path from Root, e.g. Objects/Plant/V101/PT101")

    @field_validator("node")
    @classmethod
    def _node(cls, v: str | None) -> str | None:
        if v is not None:
            parse_node_id(v)
        return v

    @field_validator("path")
    @classmethod
    def _path(cls, v: str | None) -> str | None:
        if v is not None:
            parse_browse_path(v)
        return v

    @model_validator(mode="after")
    def _one(self) -> OpcuaPoint:
        if (self.node is None) == (self.path is None):
            raise ValueError("a point has exactly one of node (a node id) or path (a browse path)")
        return self


class OpcuaSource(SourceConfig):
    type: Literal["opcua"]
    url: str = Field(pattern=r"^opc\.tcp://(\[[0-9a-fA-F:.]+\]|[^\s/:\[\]]+)(:\d{1,5})?(/\S*)?$")
    security: OpcuaSecurity = Field(default=None, validate_default=True)
    username: str | None = Field(default=None, min_length=1)
    password: SecretStr | None = Field(default=None, validate_default=True)
    mode: Literal["subscribe", "poll"] = "subscribe"
    interval: Duration = Field(default=1.0, description="publishing/sampling interval, or the poll interval")
    timeout: Duration = Field(default=5.0, description="per request; also the connection watchdog period")
    max_items_per_subscription: int = Field(default=1000, ge=1, le=100_000)
    points: list[OpcuaPoint] = Field(min_length=1)

    @field_validator("url")
    @classmethod
    def _port(cls, v: str) -> str:
        host = v[len("opc.tcp://"):].split("/", 1)[0]
        port = host.rsplit(":", 1)[1] if ":" in host and not host.endswith("]") else None
        if port is not None and not 1 <= int(port) <= 65535:
            raise ValueError("port must be 1..65535")
        return v

    @field_validator("security", mode="before")
    @classmethod
    def _security(cls, v: object) -> object:
        if v is None:
            raise ValueError(
                "security is required: {policy: Basic256Sha256, mode: SignAndEncrypt, cert: ..., key: ..., "
                "server_cert: ...}, or {policy: None} written out to run without security (check then warns)"
            )
        return v

    @field_validator("password")
    @classmethod
    def _password(cls, v: SecretStr | None, info: ValidationInfo) -> SecretStr | None:
        user = info.data.get("username")
        if v is not None and user is None:
            raise ValueError("password needs username")
        if v is None and user is not None:
            raise ValueError("username needs password (from ${ENV}, e.g. password: \"${OPCUA_PASSWORD}\")")
        return v

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: float) -> float:
        if not 0.05 <= v <= 3600:
            raise ValueError("interval must be 50ms..1h")
        return v

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, v: float) -> float:
        if not 0.1 <= v <= 300:
            raise ValueError("timeout must be 100ms..5min")
        return v

    def point_tags(self) -> Iterator[str]:
        return (p.tag for p in self.points)

    def point_addresses(self) -> dict[str, str]:
        """``ns=2;s=V101.TT101.PV`` or ``path Objects/Plant/V101/PT101``: the node id, or the
        browse path resolved at connect."""
        return {p.tag: p.node if p.node is not None else f"path {p.path}" for p in self.points}

    @property
    def expected_interval(self) -> float:
        """``interval`` in both modes. A subscription reports changes only, so in subscribe
        mode the adapter re-asserts every unchanged value once per interval while the
        server's publish responses (data or keep-alive) show the subscription alive: the
        stale watcher and the online rate see one reading per interval, as from a poll."""
        return float(self.interval)
