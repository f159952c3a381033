"""Reference platform for ``mapped`` uplinks over TCP with a delimiter (jiangsu-tcp).

Reads delimited frames, checks and decrypts each (:class:`~devkit.receivers.mapped.MappedReceiver`)
and answers with a frame ``{<ack.match>: <the message's id>, <ok.field>: <first ok value>,
"msg": "success"}`` (or a failing ``ok`` value and the reason), so the gateway's
acknowledgement rule is exercised as the mapping declares it.

Knobs for tests: ``drop_after = N`` (record the Nth frame of a connection, then close it
without answering; one-shot), ``reject_kinds`` (answer those with the failing value),
:meth:`request` (send every connection the mapping's ``requests.meta`` frame).

    platform = DelimitedTcpPlatform("jiangsu-tcp", options)
    port = await platform.start()
    ...
    await platform.stop()
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from typing import Any

from devkit.receivers.mapped import MappedReceiver
from devkit.receivers.stream import StreamPlatform
from gateway.uplink.delimited import FrameReader
from gateway.uplink.generic import dumps
from gateway.uplink.mapping import Mapping

FAIL = "-1"


class DelimitedTcpPlatform(MappedReceiver, StreamPlatform):
    def __init__(self, mapping: str | Mapping, options: dict[str, Any], *,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        MappedReceiver.__init__(self, mapping, options)
        StreamPlatform.__init__(self, ssl_context)
        tcp = self.mapping.tcp
        assert tcp is not None, f"mapping {self.mapping.name} has no tcp: section"
        self.tcp = tcp
        self.delimiter = tcp.delimiter.encode("utf-8")
        self.drop_after: int | None = None
        self.connections = 0
        self.frame_errors: list[str] = []

    async def request(self, kind: str = "meta") -> int:
        """Send the mapping's request frame for ``kind`` to every connection; how many got it."""
        rule = self.mapping.spec.requests[kind]  # type: ignore[index]
        frame = dumps({rule.field: rule.in_[0]}).encode("utf-8") + self.delimiter
        for w in list(self._writers):
            w.write(frame)
            await w.drain()
        return len(self._writers)

    async def _session(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        frames = FrameReader(reader, self.delimiter, self.tcp.max_frame)
        n = 0
        try:
            while True:
                raw = await frames.next()
                n += 1
                received, error = self.handle(raw)
                if self.drop_after is not None and n >= self.drop_after:
                    self.drop_after = None
                    return  # close without answering
                writer.write(self._answer(raw, received, error))
                await writer.drain()
        except ValueError as e:  # the gateway broke the framing: record why, drop the connection
            self.frame_errors.append(str(e))

    def _answer(self, raw: bytes, received: Any, error: str | None) -> bytes:
        ack = self.tcp.ack
        if ack.match is None:
            return b""
        msg_id = received.envelope.get(ack.match) if received is not None else _field(raw, ack.match)
        doc: dict[str, Any] = {ack.match: msg_id}
        if ack.ok is not None:
            doc[ack.ok.field] = ack.ok.in_[0] if error is None else FAIL
        doc["msg"] = "success" if error is None else error
        return dumps(doc).encode("utf-8") + self.delimiter


def _field(raw: bytes, name: str) -> Any:
    import json

    with contextlib.suppress(ValueError, AttributeError):
        return json.loads(raw).get(name)
    return None
