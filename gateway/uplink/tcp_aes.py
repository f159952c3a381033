"""The ``tcp-aes`` profile: the generic JSON documents in an AES-256-GCM envelope over TCP/TLS.

Many provincial platforms take a plain TCP (or TLS) connection carrying length-prefixed
frames with an encrypted JSON envelope. This profile is also the worked example of adding
a platform format (gateway/uplink/PROFILES.md): it subclasses :class:`GenericProfile` to
reuse its documents and overrides only :meth:`~AesTcpProfile.topic`,
:meth:`~AesTcpProfile.transport` and :meth:`~AesTcpProfile.check`.

Wire format (both directions)::

    frame = 4-byte big-endian length N (N <= 16 MiB) + N bytes of UTF-8 JSON (one object)

Gateway -> platform, one frame per message::

    {"ver":1, "type":"realtime"|"alarm"|"heartbeat"|"meta", "ent":<site.code>,
     "seq":<1, 2, ... per connection>, "ts":<epoch ms when framed>, "kid":<options.key_id>,
     "nonce":<base64 of 12 random bytes>,
     "data":<base64 of AES-256-GCM(key, nonce, payload UTF-8, ad) = ciphertext + 16-byte tag>}

    ad (associated data, authenticated, not sent) = f"{ent}|{type}|{seq}" in UTF-8

The payload is the generic profile's JSON document (with its ``msgId``). The first frame
on a connection is the login, ``"type":"login"``, ``"seq":0``, its ``data`` the encrypted
``{"username":..,"password":..}`` (``uplink.username`` / ``uplink.password``, null if
unset). Platform -> gateway, plain JSON::

    {"ack":<seq>, "ok":true}                     accepted (login: seq 0)
    {"ack":<seq>, "ok":false, "error":"..."}     refused / rejected

Acks come in seq order. A refused login, a rejected frame (``ok:false``), an ack out of
order, no ack within ``options.ack_timeout`` or a lost connection raise
:class:`TransportError`: the core reconnects and sends the same messages again (same
payloads and msgIds; new seq, ts and nonce), so the platform deduplicates by ``msgId``.
Up to ``options.max_inflight`` frames are written before their acks are read.

Options (``uplink.options``): ``key`` (required: the 32-byte AES key as 64 hex digits or
base64; write ``key: ${UPLINK_AES_KEY}`` so it is not in the file), ``key_id`` (sent as
``kid``, default "1"), ``ack_timeout`` (seconds, default 10), ``max_inflight`` (default
32), and the generic profile's ``max_items`` and ``alarm_events``. Random 96-bit nonces:
rotate the key well before 2^32 messages.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import os
import re
import struct
import time
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from gateway.uplink.connection import open_stream, port_of, tcp_endpoint, tls_context, wait_closed
from gateway.uplink.generic import GenericProfile, dumps
from gateway.uplink.profile import Message, Transport, TransportError

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.core.config import Uplink

VERSION = 1
MAX_FRAME = 16 * 1024 * 1024
NONCE_BYTES = 12
DEFAULT_KEY_ID = "1"
DEFAULT_MAX_INFLIGHT = 32
_HEX_KEY = re.compile(r"[0-9a-fA-F]{64}")
_LENGTH = struct.Struct(">I")


# --------------------------------------------------------------------------- wire format


class FrameError(Exception):
    """A frame that breaks the wire format (too big, not a JSON object...)."""


def parse_key(text: object) -> bytes:
    """The 32-byte key from 64 hex digits or base64. The error never contains the key."""
    if not isinstance(text, str):
        raise ValueError("options.key must be a string: 64 hex digits or base64 of 32 bytes")
    s = text.strip()
    if _HEX_KEY.fullmatch(s):
        return bytes.fromhex(s)
    try:
        key = base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise ValueError("options.key must be a 32-byte AES-256 key: 64 hex digits or base64 of 32 bytes")
    return key


def associated_data(ent: str, msg_type: str, seq: int) -> bytes:
    return f"{ent}|{msg_type}|{seq}".encode()


def seal(aead: AESGCM, *, ent: str, msg_type: str, seq: int, kid: str, payload: str) -> dict[str, Any]:
    """The envelope of one message (``payload`` is the plain one-line JSON)."""
    nonce = os.urandom(NONCE_BYTES)
    data = aead.encrypt(nonce, payload.encode("utf-8"), associated_data(ent, msg_type, seq))
    return {"ver": VERSION, "type": msg_type, "ent": ent, "seq": seq, "ts": time.time_ns() // 1_000_000,
            "kid": kid, "nonce": base64.b64encode(nonce).decode("ascii"),
            "data": base64.b64encode(data).decode("ascii")}


def open_envelope(aead: AESGCM, env: dict[str, Any]) -> str:
    """The plain payload of an envelope; raises ``cryptography.exceptions.InvalidTag`` when the
    key is wrong or the header (ent, type, seq) or data was changed, ValueError when malformed."""
    nonce = base64.b64decode(env["nonce"], validate=True)
    data = base64.b64decode(env["data"], validate=True)
    ad = associated_data(str(env["ent"]), str(env["type"]), int(env["seq"]))
    return aead.decrypt(nonce, data, ad).decode("utf-8")


def encode_frame(obj: dict[str, Any]) -> bytes:
    body = dumps(obj).encode("utf-8")
    if len(body) > MAX_FRAME:
        raise FrameError(f"frame of {len(body)} bytes is larger than the {MAX_FRAME} byte maximum")
    return _LENGTH.pack(len(body)) + body


async def read_frame(reader: asyncio.StreamReader) -> dict[str, Any]:
    """The next frame's JSON object. IncompleteReadError when the peer closed."""
    (n,) = _LENGTH.unpack(await reader.readexactly(_LENGTH.size))
    if n > MAX_FRAME:
        raise FrameError(f"frame of {n} bytes announced, larger than the {MAX_FRAME} byte maximum")
    try:
        obj = json.loads(await reader.readexactly(n))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FrameError(f"frame is not JSON: {e}") from None
    if not isinstance(obj, dict):
        raise FrameError("frame is not a JSON object")
    return obj


# --------------------------------------------------------------------------- transport


class AesTcpTransport(Transport):
    """Frames, encrypts and sends messages; one connection, acks read in order."""

    def __init__(
        self, uplink: Uplink, *, ent: str, key: bytes, key_id: str = DEFAULT_KEY_ID, ack_timeout: float = 10.0,
        max_inflight: int = DEFAULT_MAX_INFLIGHT,
    ) -> None:
        self.uplink = uplink
        self.tls, self.host, self.port = tcp_endpoint(uplink.url)
        self.ent = ent
        self.key_id = key_id
        self.ack_timeout = ack_timeout
        self.max_inflight = max_inflight
        self._aead = AESGCM(key)
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None
        self._seq = 0

    def describe(self) -> str:
        return f"{'tls' if self.tls else 'tcp'}://{self.host}:{self.port} (AES-256-GCM, key id {self.key_id})"

    @property
    def connected(self) -> bool:
        w, r = self._writer, self._reader
        return w is not None and r is not None and not w.is_closing() and not r.at_eof()

    async def connect(self) -> None:
        await self.close()
        ctx = await tls_context(self.uplink) if self.tls else None
        reader, writer = await open_stream(self.host, self.port, ctx, self.describe())
        self._reader, self._writer, self._seq = reader, writer, 0
        pw = self.uplink.password
        login = dumps({"username": self.uplink.username, "password": pw.get_secret_value() if pw else None})
        try:
            writer.write(encode_frame(self._envelope("login", 0, login)))
            ack = await self._ack(0)
        except BaseException:
            self._abort()
            raise
        if not ack.get("ok"):
            await self.close()
            raise TransportError(f"login refused by {self.describe()}: {_error_text(ack)}")

    def _envelope(self, msg_type: str, seq: int, payload: str) -> dict[str, Any]:
        return seal(self._aead, ent=self.ent, msg_type=msg_type, seq=seq, kid=self.key_id, payload=payload)

    async def _ack(self, seq: int) -> dict[str, Any]:
        """Flush what was written, then read the next ack, which must be for ``seq``."""
        reader, writer = self._reader, self._writer
        if reader is None or writer is None:
            raise TransportError("not connected")
        try:
            async with asyncio.timeout(self.ack_timeout):
                await writer.drain()
                ack = await read_frame(reader)
        except TimeoutError:
            raise TransportError(f"no ack for frame {seq} within {self.ack_timeout:g} s") from None
        except asyncio.IncompleteReadError:
            raise TransportError(f"connection closed by the platform before the ack of frame {seq}") from None
        except OSError as e:
            why = str(e) or type(e).__name__
            raise TransportError(f"connection lost before the ack of frame {seq}: {why}") from None
        except FrameError as e:
            raise TransportError(f"bad frame from the platform: {e}") from None
        got = ack.get("ack")
        if got != seq or isinstance(got, bool):
            raise TransportError(f"ack out of order: expected {seq}, got {str(got)[:40]}")
        return ack

    async def send(self, messages: Sequence[Message]) -> None:
        if not self.connected:
            raise TransportError("not connected")
        try:
            await self._send(messages)
        except BaseException:  # also cancelled: acks may be outstanding, the connection's state is unknown
            self._abort()
            raise

    async def _send(self, messages: Sequence[Message]) -> None:
        writer = self._writer
        assert writer is not None
        pending: deque[int] = deque()
        todo = iter(messages)
        more = True
        while more or pending:
            while more and len(pending) < self.max_inflight:
                m = next(todo, None)
                if m is None:
                    more = False
                    break
                self._seq += 1
                try:
                    frame = encode_frame(self._envelope(m.topic, self._seq, m.payload))
                except FrameError as e:
                    raise TransportError(f"{m.topic} message not sent: {e}") from None
                writer.write(frame)
                pending.append(self._seq)
            if pending:
                seq = pending.popleft()
                ack = await self._ack(seq)
                if not ack.get("ok"):
                    raise TransportError(f"the platform rejected frame {seq}: {_error_text(ack)}")

    def _abort(self) -> None:
        writer, self._writer, self._reader = self._writer, None, None
        if writer is not None:
            writer.close()

    async def close(self) -> None:
        writer = self._writer
        self._abort()
        if writer is not None:
            await wait_closed(writer)


def _error_text(ack: dict[str, Any]) -> str:
    return str(ack.get("error") or "no reason given")[:200]


# --------------------------------------------------------------------------- profile


class AesTcpProfile(GenericProfile):
    """The generic documents, one envelope per message; the channel is the envelope's type."""

    name = "tcp-aes"

    def __init__(self, config: Config, uplink: Uplink) -> None:
        super().__init__(config, uplink)
        opts = uplink.options
        self.key = parse_key(opts.get("key"))
        self.key_id = str(opts.get("key_id", DEFAULT_KEY_ID))
        self.max_inflight = int(opts.get("max_inflight", DEFAULT_MAX_INFLIGHT))

    def __repr__(self) -> str:
        return f"<{type(self).__name__} key id {self.key_id}>"  # never the key

    @classmethod
    def check(cls, uplink: Uplink) -> list[str]:
        problems: list[str] = []
        u = urlsplit(uplink.url)
        if u.scheme not in ("tcp", "tls"):
            problems.append(f"profile {uplink.profile} sends over TCP: url must be tcp:// or tls://")
        else:
            if port_of(u) is None:
                problems.append(f"profile {uplink.profile}: url needs a port (tcp://host:port or tls://host:port)")
        opts = dict(uplink.options)
        if "keepalive" in opts:  # an MQTT setting: this transport has none
            opts.pop("keepalive")
            problems.append(f"unknown option 'keepalive' for profile {uplink.profile}")
        # the generic options (max_items, alarm_events, ack_timeout) are checked by GenericProfile
        problems += super().check_options(opts)
        if "key" not in opts:
            problems.append("options.key is required: the AES-256 key, e.g. key: ${UPLINK_AES_KEY}")
        else:
            try:
                parse_key(opts.pop("key"))
            except ValueError as e:
                problems.append(str(e))
        kid = opts.pop("key_id", DEFAULT_KEY_ID)
        if not isinstance(kid, str | int) or isinstance(kid, bool) or str(kid) == "":
            problems.append(f"options.key_id must be a non-empty string, got {kid!r}")
        mi = opts.pop("max_inflight", DEFAULT_MAX_INFLIGHT)
        if not isinstance(mi, int) or isinstance(mi, bool) or mi < 1:
            problems.append(f"options.max_inflight must be a positive integer, got {mi!r}")
        problems += [f"unknown option {k!r} for profile {uplink.profile}" for k in opts]
        return problems

    def topic(self, channel: str) -> str:
        return channel  # realtime / alarm / heartbeat / meta: the envelope's "type"

    def transport(self) -> Transport:
        return AesTcpTransport(self.uplink, ent=self.site.code, key=self.key, key_id=self.key_id,
                               ack_timeout=self.ack_timeout, max_inflight=self.max_inflight)
