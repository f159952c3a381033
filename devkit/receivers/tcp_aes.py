"""A reference platform receiver for the ``tcp-aes`` profile (tests, and people writing the
platform side). The wire format is described in :mod:`gateway.uplink.tcp_aes`.

Per connection: the first frame must be the login (seq 0); then every frame is checked
(version, key id, enterprise code if configured, seq = previous + 1, known type), decrypted
with the header as associated data, recorded in :attr:`AesTcpPlatform.received` and acked
``{"ack":seq,"ok":true}``; a frame that fails a check is acked ``ok:false`` with the reason.

Knobs for tests: ``refuse_login`` (answer every login ``ok:false``), ``reject_types``
(ack frames of these types ``ok:false``), ``drop_after`` (when a connection gets its Nth data
frame, the frame is recorded, then the connection is closed without acking it; one-shot:
the knob goes back to None).

    platform = AesTcpPlatform(key, username="gw", password="pw")
    port = await platform.start()
    ...
    await platform.stop()
"""

from __future__ import annotations

import asyncio
import json
import ssl
from dataclasses import dataclass
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from devkit.receivers.stream import StreamPlatform
from gateway.uplink.tcp_aes import DEFAULT_KEY_ID, VERSION, FrameError, encode_frame, open_envelope, read_frame

TYPES = frozenset({"realtime", "alarm", "heartbeat", "meta"})


@dataclass(frozen=True)
class Received:
    """One accepted frame: its envelope type and seq, and the decrypted payload."""

    type: str
    seq: int
    payload: dict[str, Any]


class AesTcpPlatform(StreamPlatform):
    def __init__(
        self, key: bytes, *, key_id: str = DEFAULT_KEY_ID, ent: str | None = None, username: str | None = None,
        password: str | None = None, ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        super().__init__(ssl_context)
        self._aead = AESGCM(key)
        self.key_id = key_id
        self.ent = ent  # None: accept any enterprise code
        self.username = username  # None: no credential check
        self.password = password
        self.received: list[Received] = []
        self.errors: list[str] = []  # reasons sent in ok:false acks (and logins refused)
        self.logins = 0  # successful logins
        self.refuse_login = False
        self.reject_types: set[str] = set()
        self.drop_after: int | None = None

    def msg_ids(self) -> list[str | None]:
        """The msgIds received, duplicates removed (first arrival order): what a platform keeps
        (None for a message without one)."""
        return list(dict.fromkeys(r.payload.get("msgId") for r in self.received))

    # ------------------------------------------------------------------ connection
    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._frames(reader, writer)
        except FrameError as e:  # the gateway broke the framing: record why, drop the connection
            self.errors.append(f"frame: {e}")

    async def _frames(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        error = self._login_error(await read_frame(reader))
        await self._ack(writer, 0, error)
        if error is not None:
            return
        self.logins += 1
        seq = 0
        while True:
            env = await read_frame(reader)
            seq += 1
            error, payload = self._open(env, seq)
            if error is None:
                self.received.append(Received(env["type"], seq, payload))
            if self.drop_after is not None and seq >= self.drop_after:
                self.drop_after = None
                return  # close without acking
            await self._ack(writer, env.get("seq"), error)

    async def _ack(self, writer: asyncio.StreamWriter, seq: Any, error: str | None) -> None:
        ack: dict[str, Any] = {"ack": seq, "ok": error is None}
        if error is not None:
            ack["error"] = error
            self.errors.append(error)
        writer.write(encode_frame(ack))
        await writer.drain()

    # ------------------------------------------------------------------ checks
    def _header_error(self, env: dict[str, Any], seq: int) -> str | None:
        if env.get("ver") != VERSION:
            return f"unsupported version {env.get('ver')!r}"
        if str(env.get("kid")) != self.key_id:
            return f"unknown key id {env.get('kid')!r}"
        if self.ent is not None and env.get("ent") != self.ent:
            return f"unknown enterprise {env.get('ent')!r}"
        if env.get("seq") != seq:
            return f"expected seq {seq}, got {env.get('seq')!r}"
        return None

    def _decrypt(self, env: dict[str, Any]) -> tuple[str | None, dict[str, Any]]:
        try:
            doc = json.loads(open_envelope(self._aead, env))
        except InvalidTag:
            return "cannot decrypt: wrong key, or the header or data was changed", {}
        except (KeyError, TypeError, ValueError):
            return "malformed envelope", {}
        if not isinstance(doc, dict):
            return "payload is not a JSON object", {}
        return None, doc

    def _login_error(self, env: dict[str, Any]) -> str | None:
        if env.get("type") != "login":
            return "the first frame must be the login"
        error = self._header_error(env, 0)
        creds: dict[str, Any] = {}
        if error is None:
            error, creds = self._decrypt(env)
        if error is None and self.refuse_login:
            error = "login refused"
        if error is None and self.username is not None and (
            creds.get("username") != self.username or creds.get("password") != self.password
        ):
            error = "bad username or password"
        return error

    def _open(self, env: dict[str, Any], seq: int) -> tuple[str | None, dict[str, Any]]:
        error = self._header_error(env, seq)
        if error is None and env.get("type") not in TYPES:
            error = f"unknown type {env.get('type')!r}"
        if error is not None:
            return error, {}
        error, doc = self._decrypt(env)
        if error is None and env["type"] in self.reject_types:
            error = f"type {env['type']} rejected"
        return error, doc
