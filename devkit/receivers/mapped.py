"""What every reference receiver of the ``mapped`` uplink profile does with one message:
check the envelope, decrypt the body, find which message of the mapping it is, validate the
body against that message's JSON Schema (derived from the mapping's templates), record it.

Used by :mod:`devkit.receivers.delimited_tcp` and :mod:`devkit.receivers.http`; an
integrator can point them at a mapping file to see what the gateway will send.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import jsonschema_rs

from gateway.core.config import Uplink
from gateway.uplink.ciphers import CipherError
from gateway.uplink.mapped import Sealer, cipher_of
from gateway.uplink.mapping import Mapping, MessageSpec, load_mapping

DRAFT = "https://json-schema.org/draft/2020-12/schema"


@dataclass(frozen=True)
class Received:
    """One accepted message."""

    kind: str  # realtime alarm meta heartbeat
    service: str | None
    path: str
    msg_id: str | None
    envelope: dict[str, Any]  # as on the wire (body encrypted)
    body: Any  # decrypted


class MappedReceiver:
    """Decrypts and validates messages of one mapping with the gateway's options (key, IV...)."""

    def __init__(self, mapping: str | Mapping, options: dict[str, Any]) -> None:
        self.mapping = load_mapping(mapping) if isinstance(mapping, str) else mapping
        up = Uplink(profile="mapped", url="tcp://receiver:1", mapping=self.mapping.file, options=options)
        self.sealer = Sealer(self.mapping, cipher_of(self.mapping, up))
        envelope_schema = dict(self.mapping.envelope_schema)
        if self.sealer.cipher.encrypts and self.mapping.body_path:
            envelope_schema = _replace(envelope_schema, self.mapping.body_path, {"type": "string"})
        self._envelope = jsonschema_rs.validator_for({"$schema": DRAFT, **envelope_schema})
        self._bodies: dict[tuple[str, int], Any] = {
            (m.kind, m.index): jsonschema_rs.validator_for({"$schema": DRAFT, **m.body_schema()})
            for ms in self.mapping.messages.values() for m in ms}
        self.received: list[Received] = []
        self.errors: list[str] = []
        self.reject_kinds: set[str] = set()

    def handle(self, text: str | bytes, path: str = "") -> tuple[Received | None, str | None]:
        """(what was accepted, or None with the reason). Records either."""
        received, error = self._check(text, path)
        if error is None and received is not None and received.kind in self.reject_kinds:
            error = f"{received.kind} rejected"
        if error is not None:
            self.errors.append(error)
        elif received is not None:
            self.received.append(received)
        return received, error

    def _check(self, text: str | bytes, path: str) -> tuple[Received | None, str | None]:
        try:
            env = json.loads(text)
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None, "not JSON"
        problems = [e.message for e in self._envelope.iter_errors(env)]
        if problems:
            return None, f"envelope: {'; '.join(problems)[:300]}"
        spec = self.mapping.identify(env, path) if isinstance(env, dict) else None
        if spec is None:
            return None, f"no message of mapping {self.mapping.name} has this service/path ({path or '/'})"
        try:
            body = self.sealer.open(env)
        except (CipherError, UnicodeDecodeError, json.JSONDecodeError) as e:
            return None, f"cannot decrypt: {e}" if isinstance(e, CipherError) else "cannot decrypt: not JSON inside"
        problems = [f"{'/'.join(map(str, e.instance_path))}: {e.message}"
                    for e in self._bodies[(spec.kind, spec.index)].iter_errors(body)]
        if problems:
            return None, f"{spec.kind} body: {'; '.join(problems)[:400]}"
        return Received(spec.kind, spec.service, path, self.mapping.id_of(env, body, spec), env, body), None

    def of(self, kind: str) -> list[Received]:
        return [r for r in self.received if r.kind == kind]

    def unique(self, kind: str | None = None) -> list[Received]:
        """Received messages without re-sent duplicates (by message id), in arrival order."""
        seen: set[str | None] = set()
        out = []
        for r in self.received:
            if r.msg_id in seen and r.msg_id is not None:
                continue
            seen.add(r.msg_id)
            if kind is None or r.kind == kind:
                out.append(r)
        return out

    def spec_of(self, r: Received) -> MessageSpec | None:
        return self.mapping.identify(r.envelope, r.path)


def _replace(schema: dict[str, Any], path: tuple[str | int | float, ...], new: dict[str, Any]) -> dict[str, Any]:
    """``schema`` with the property at ``path`` replaced (object schemas only)."""
    if not path:
        return new
    out = dict(schema)
    props = dict(out.get("properties", {}))
    props[str(path[0])] = _replace(props.get(str(path[0]), {}), path[1:], new)
    out["properties"] = props
    return out
