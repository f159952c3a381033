"""TCP (or TLS) transport of the ``mapped`` profile: JSON frames with a delimiter.

Each message is the envelope JSON (body encrypted by the :class:`~gateway.uplink.mapped.Sealer`)
followed by the mapping's ``tcp.delimiter`` (``@@`` for Jiangsu), on one persistent
connection. A delimiter inside the JSON (only possible in a string: a tag name with "@@")
is written with a ``\\uXXXX`` escape of one of its characters, so it never ends a frame
early. Frames from the platform use the same delimiter and are read all the time by one
task, so a request (``requests.meta``) is seen while the gateway is idle too.

Acknowledgement (``tcp.ack``): with ``match: dataId`` a message counts as delivered when a
frame arrives whose ``dataId`` equals the message's (in any order; ``ok:`` if given must
match too, else the platform rejected it); up to ``max_inflight`` messages are written
ahead. A rejection, no ack within ``timeout``, a closed connection or a frame over
``max_frame`` bytes raise :class:`TransportError`; the connection is then closed and the
core re-sends the same messages (same dataId) after reconnecting (with backoff). With
``match: null`` a message counts as delivered once written to the socket (weaker:
``hazardgw check`` warns).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from gateway.core.ratelog import RateLimitedLog
from gateway.uplink.connection import hand_request, open_stream, reason, tcp_endpoint, tls_context, wait_closed
from gateway.uplink.mapping import Mapping, TcpSpec, dotted, escape_char, matches, request_kind
from gateway.uplink.profile import Message, Transport, TransportError

if TYPE_CHECKING:
    from gateway.core.config import Uplink
    from gateway.uplink.mapped import Sealer

log = logging.getLogger(__name__)


def escape_frame(text: str, delimiter: str, char: str) -> str:
    """``text`` with ``char`` written as a JSON ``\\uXXXX`` escape where the delimiter occurs
    (``char`` only occurs inside JSON strings, see :func:`gateway.uplink.mapping.escape_char`)."""
    if delimiter not in text:
        return text
    if char == "\n":
        return text.replace("\n", "\\n")
    return text.replace(char, f"\\u{ord(char):04x}")


class FrameReader:
    """Splits a byte stream into delimited frames of at most ``max_frame`` bytes."""

    def __init__(self, reader: asyncio.StreamReader, delimiter: bytes, max_frame: int) -> None:
        self.reader = reader
        self.delimiter = delimiter
        self.max_frame = max_frame
        self.buf = bytearray()

    async def next(self) -> bytes:
        """The next frame (without the delimiter). IncompleteReadError at EOF, ValueError when
        a frame grows past ``max_frame``."""
        d = self.delimiter
        while True:
            i = self.buf.find(d)
            if i >= 0:
                frame = bytes(self.buf[:i])
                del self.buf[: i + len(d)]
                return frame
            if len(self.buf) > self.max_frame:
                raise ValueError(f"a frame longer than {self.max_frame} bytes without the delimiter")
            chunk = await self.reader.read(65536)
            if not chunk:
                raise asyncio.IncompleteReadError(bytes(self.buf), None)
            self.buf += chunk


class DelimitedTcpTransport(Transport):
    def __init__(self, uplink: Uplink, mapping: Mapping, sealer: Sealer) -> None:
        assert mapping.tcp is not None
        self.uplink = uplink
        self.spec: TcpSpec = mapping.tcp
        self.requests = mapping.spec.requests
        self.sealer = sealer
        self.tls, self.host, self.port = tcp_endpoint(uplink.url)
        self.delimiter = self.spec.delimiter
        self._escape = escape_char(self.delimiter) or self.delimiter[0]
        self._writer: asyncio.StreamWriter | None = None
        self._reader_task: asyncio.Task[None] | None = None
        self._pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self._closed_why: str | None = None
        self._rlog = RateLimitedLog(log, 60.0)
        self.frames_in = 0
        self.unmatched = 0
        self.requests_seen = 0

    def describe(self) -> str:
        scheme = "tls" if self.tls else "tcp"
        return f"{scheme}://{self.host}:{self.port} ({self.sealer.cipher.name}, {self.delimiter!r} frames)"

    @property
    def connected(self) -> bool:
        w, t = self._writer, self._reader_task
        return w is not None and not w.is_closing() and t is not None and not t.done()

    async def connect(self) -> None:
        await self.close()
        ctx = await tls_context(self.uplink) if self.tls else None
        reader, writer = await open_stream(self.host, self.port, ctx, self.describe())
        self._writer = writer
        self._closed_why = None
        frames = FrameReader(reader, self.delimiter.encode("utf-8"), self.spec.max_frame)
        self._reader_task = asyncio.create_task(self._read(frames), name="uplink-tcp-reader")

    async def _read(self, frames: FrameReader) -> None:
        """Read frames until the connection ends: acks resolve their message, requests are
        handed to the core, anything else is counted and logged (rate limited)."""
        try:
            while True:
                raw = await frames.next()
                self.frames_in += 1
                try:
                    doc = json.loads(raw.decode("utf-8"))
                except (UnicodeDecodeError, json.JSONDecodeError):
                    self.unmatched += 1
                    self._rlog.warning("bad-frame", "uplink: a frame from %s is not JSON (%d bytes)",
                                       self.describe(), len(raw))
                    continue
                self._dispatch(doc)
        except asyncio.IncompleteReadError:
            self._closed_why = "connection closed by the platform"
        except ValueError as e:
            self._closed_why = f"bad frame from the platform: {e}"
        except OSError as e:
            self._closed_why = f"connection lost: {str(e) or type(e).__name__}"
        finally:
            why = self._closed_why or "connection closed"
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(TransportError(why))
            w = self._writer
            if w is not None:
                w.close()

    def _dispatch(self, doc: Any) -> None:
        match = self.spec.ack.match
        if match is not None and isinstance(doc, dict):
            key = doc.get(match)
            fut = self._pending.get(key) if isinstance(key, str) else None
            if fut is not None:
                if not fut.done():
                    fut.set_result(doc)
                return
        kind = request_kind(self.requests, doc)
        if kind is not None:
            hand_request(self, kind)
            return
        self.unmatched += 1
        self._rlog.warning("unmatched", "uplink: a frame from %s matches no pending message nor request "
                           "(%d so far)", self.describe(), self.unmatched)

    async def send(self, messages: Sequence[Message]) -> None:
        if not self.connected:
            raise TransportError(self._closed_why or "not connected")
        try:
            await self._send(messages)
        except BaseException:  # also cancelled: acks may be outstanding, the connection's state is unknown
            await self.close()
            raise

    async def _send(self, messages: Sequence[Message]) -> None:
        writer = self._writer
        assert writer is not None
        match = self.spec.ack.match
        delim = self.delimiter
        window: list[tuple[str, asyncio.Future[dict[str, Any]]]] = []
        loop = asyncio.get_running_loop()
        for m in messages:
            try:
                doc, text = self.sealer.seal(m.payload)
            except (ValueError, KeyError, TypeError) as e:
                raise TransportError(f"{m.topic} message not sent: {e}") from None
            frame = (escape_frame(text, delim, self._escape) + delim).encode("utf-8")
            if len(frame) > self.spec.max_frame:
                raise TransportError(f"{m.topic} message of {len(frame)} bytes is larger than tcp.max_frame")
            if match is not None:
                key = doc.get(match) if isinstance(doc, dict) else None
                if not isinstance(key, str):
                    raise TransportError(f"{m.topic} message has no {match} to match the acknowledgement")
                fut: asyncio.Future[dict[str, Any]] = loop.create_future()
                self._pending[key] = fut
                window.append((key, fut))
            writer.write(frame)
            if len(window) >= self.spec.max_inflight:
                await self._wait(window[:1], writer)
                del window[0]
        await self._wait(window, writer)

    async def _wait(self, window: list[tuple[str, asyncio.Future[dict[str, Any]]]],
                    writer: asyncio.StreamWriter) -> None:
        """Flush, then wait for the acks of ``window`` (any order)."""
        ack = self.spec.ack
        try:
            async with asyncio.timeout(ack.timeout):
                await writer.drain()
                for key, fut in window:
                    doc = await fut
                    self._pending.pop(key, None)
                    if ack.ok is not None and not matches(ack.ok, doc):
                        got = dotted(doc, ack.ok.field)
                        raise TransportError(f"the platform rejected message {key}: {ack.ok.field}="
                                             f"{str(got)[:40]}{reason(doc)}")
        except TimeoutError:
            n = sum(1 for _, f in window if not f.done())
            raise TransportError(f"no acknowledgement for {n} message(s) within {ack.timeout:g} s") from None
        except OSError as e:
            raise TransportError(f"connection lost: {str(e) or type(e).__name__}") from None
        finally:
            for key, fut in window:
                if self._pending.get(key) is fut:
                    del self._pending[key]
                _settle(fut)

    async def close(self) -> None:
        writer, self._writer = self._writer, None
        task, self._reader_task = self._reader_task, None
        if writer is not None:
            writer.close()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        for fut in self._pending.values():
            _settle(fut)
        self._pending.clear()
        if writer is not None:
            await wait_closed(writer)


def _settle(fut: asyncio.Future[Any]) -> None:
    """Cancel a future nobody will wait for, or mark its exception retrieved."""
    if not fut.done():
        fut.cancel()
    elif not fut.cancelled():
        fut.exception()
