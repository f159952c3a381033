"""HTTP(S) transport of the ``mapped`` profile: one POST per message, in order.

The URL is ``uplink.url`` + the message's ``path:`` from the mapping; the body is the
envelope JSON with the body encrypted (:class:`~gateway.uplink.mapped.Sealer`); headers
come from the mapping's ``http.headers`` (secret options such as ``appsecret`` are
rendered into them here, in memory only). A message counts as delivered when the status is
one of ``http.success.status`` and, if ``http.success.body`` is given, the JSON response
has that field with one of the listed values. Anything else (another status, a rejecting
body, no answer within ``http.timeout``, a refused connection) raises
:class:`~gateway.uplink.profile.TransportError`: the core keeps the message and its
successors and sends them again after reconnecting (backoff), in the same order with the
same message ids.

``connect()`` opens the client session and checks that the platform's port accepts a TCP
connection, so an unreachable platform waits with backoff instead of failing every send.
TLS (``https://``) uses ``uplink.ca`` / ``uplink.cert`` / ``uplink.key`` like the other
transports. A response body (at most 1 MiB is read) matching ``requests.meta`` asks for
the point registration again.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiohttp

from gateway.uplink.connection import hand_request, open_stream, reason, tls_context, wait_closed
from gateway.uplink.mapping import Mapping, dotted, matches, request_kind
from gateway.uplink.profile import Message, Transport, TransportError

if TYPE_CHECKING:
    from gateway.core.config import Uplink
    from gateway.uplink.mapped import Sealer

MAX_RESPONSE = 1024 * 1024


class HttpTransport(Transport):
    def __init__(self, uplink: Uplink, mapping: Mapping, sealer: Sealer, headers: dict[str, str]) -> None:
        assert mapping.http is not None
        self.uplink = uplink
        self.spec = mapping.http
        self.requests = mapping.spec.requests
        self.sealer = sealer
        self._headers = headers  # may hold secrets: never logged, never in describe()
        u = urlsplit(uplink.url)
        self.tls = u.scheme == "https"
        self.host = u.hostname or "localhost"
        self.port = u.port or (443 if self.tls else 80)
        self.base = uplink.url.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._ok = False
        self.requests_seen = 0

    def __repr__(self) -> str:
        return f"<HttpTransport {self.describe()}>"

    def describe(self) -> str:
        u = urlsplit(self.uplink.url)
        return f"{u.scheme}://{self.host}:{self.port}{u.path} ({self.sealer.cipher.name})"

    @property
    def connected(self) -> bool:
        s = self._session
        return s is not None and not s.closed and self._ok

    async def connect(self) -> None:
        await self.close()
        ctx = await tls_context(self.uplink) if self.tls else None
        # is the platform there at all? (else: backoff in the core, not a failed send per message)
        _, writer = await open_stream(self.host, self.port, None, self.describe())
        writer.close()
        await wait_closed(writer)
        connector = aiohttp.TCPConnector(ssl=ctx if ctx is not None else False, limit=1)
        self._session = aiohttp.ClientSession(connector=connector,
                                              timeout=aiohttp.ClientTimeout(total=self.spec.timeout))
        self._ok = True

    async def send(self, messages: Sequence[Message]) -> None:
        session = self._session
        if session is None or session.closed or not self._ok:
            raise TransportError("not connected")
        try:
            for m in messages:
                await self._post(session, m)
        except BaseException:
            self._ok = False
            raise

    async def _post(self, session: aiohttp.ClientSession, m: Message) -> None:
        path = m.topic.rpartition("/")[0]  # the profile's topic is "<path>/<kind>"
        try:
            _, text = self.sealer.seal(m.payload)
        except (ValueError, KeyError, TypeError) as e:
            raise TransportError(f"{m.topic} message not sent: {e}") from None
        url = self.base + path
        try:
            async with session.request(self.spec.method, url, data=text.encode("utf-8"),
                                       headers=self._headers) as resp:
                status = resp.status
                raw = await resp.content.read(MAX_RESPONSE)
        except TimeoutError:
            raise TransportError(f"no answer from {url} within {self.spec.timeout:g} s") from None
        except (aiohttp.ClientError, OSError) as e:
            raise TransportError(f"POST {url} failed: {str(e) or type(e).__name__}") from None
        doc: Any = None
        with contextlib.suppress(UnicodeDecodeError, json.JSONDecodeError):
            doc = json.loads(raw.decode("utf-8")) if raw else None
        self._requests(doc)
        if status not in self.spec.success.status:
            raise TransportError(f"POST {path or '/'}: the platform answered HTTP {status}{reason(doc)}")
        rule = self.spec.success.body
        if rule is not None and not matches(rule, doc):
            got = dotted(doc, rule.field) if isinstance(doc, dict) else "(not JSON)"
            raise TransportError(f"POST {path or '/'}: the platform rejected it: {rule.field}={str(got)[:40]}"
                                 f"{reason(doc)}")

    def _requests(self, doc: Any) -> None:
        kind = request_kind(self.requests, doc) if doc is not None else None
        if kind is not None:
            hand_request(self, kind)

    async def close(self) -> None:
        session, self._session = self._session, None
        self._ok = False
        if session is not None:
            with contextlib.suppress(Exception):
                await session.close()
