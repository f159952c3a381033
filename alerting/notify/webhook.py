"""``json://`` and ``jsons://`` pushes sent on the event loop over kept-alive connections.

Through apprise, every push is a fresh plugin object, a hop to apprise's worker thread and a
``requests`` call that opens a new connection: 3-5 ms for a webhook on the same machine, and
two thread hand-offs that wait for the interpreter lock while the gateway is busy with
readings (issue 23: the tail of the alarm push latency). For apprise's JSON webhook this
module sends the very request apprise would send, with aiohttp on the gateway's own loop and
a connection kept open per host (idle ones closed after ``KEEPALIVE`` seconds).

What stays apprise's: the URL is parsed and validated by apprise's ``NotifyJSON`` (the same
object ``check_url`` and ``mask_url`` see), and the title and body go through the plugin's
own preparation (``_build_send_calls``: tidying, length caps, overflow); only the HTTP
request is made here, exactly as ``NotifyJSON.send`` makes it: method, ``schema://host[:port]
/path``, ``-param`` query arguments, ``User-Agent`` and ``Content-Type`` then the ``+Header``
overrides, basic auth for ``user:password@``, the ``{version, title, message, attachments,
type}`` document with the ``:key`` extras (renamed, removed or added), serialised by
``json.dumps`` as apprise does; certificate verification (``verify=``), redirects
(``redirects=``) and the connect/read timeouts (``cto=``, ``rto=``) as the URL says.
tests/test_notify_webhook.py sends the same pushes through apprise and through this module
to one receiver and compares what arrives.

Everything else goes to apprise as before: other schemes, a URL or push this module does not
cover (a method without a body, a text apprise would split or cut, attachments), or anything
apprise's preparation raises. An attempt is one request, never retried here (the outbox fails
over and retries; a retry on a dropped connection could deliver a push twice).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import urlencode

import aiohttp
from yarl import URL

log = logging.getLogger(__name__)

SCHEMES: Final = frozenset({"json", "jsons"})
BODY_METHODS: Final = frozenset({"POST", "PUT", "PATCH"})
KEEPALIVE: Final = 10.0  # s an idle connection is kept (well under the usual server's 60 s or more)
MAX_TARGETS: Final = 1024  # parsed URLs remembered (the site's notify URLs; bounded anyway)


@dataclass(frozen=True, slots=True)
class Target:
    """One ``json://`` URL, parsed by apprise; ``plugin`` prepares title and body."""

    plugin: Any  # apprise.plugins.custom_json.NotifyJSON
    method: str
    url: str  # with the query
    headers: dict[str, str]  # with Authorization for user:password@
    verify: bool
    redirects: bool
    connect_timeout: float
    read_timeout: float
    extras: dict[str, str]
    version: str


def _scheme(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else ""


def parse(url: str) -> Target | None:
    """The request apprise's JSON plugin would make for ``url``, or None (not a ``json://`` URL
    this module sends: apprise does)."""
    if _scheme(url) not in SCHEMES:
        return None
    from apprise.plugins.custom_json import NotifyJSON

    try:
        results = NotifyJSON.parse_url(url)
        if not results:
            return None
        p = NotifyJSON(**results)
    except Exception:  # apprise refuses it: apprise's own path reports why
        return None
    if p.method not in BODY_METHODS or not p.enabled:
        return None
    headers = {"User-Agent": p.app_id, "Content-Type": "application/json", **p.headers}
    if p.user:
        if not isinstance(p.password, str):  # requests would send the password "None": apprise's path
            return None
        try:  # requests encodes basic auth as latin-1
            headers["Authorization"] = aiohttp.encode_basic_auth(p.user, p.password, encoding="latin1")
        except UnicodeEncodeError:
            return None
    try:  # http.client refuses other header values: apprise's path reports it
        for k, v in headers.items():
            k.encode("latin-1")
            str(v).encode("latin-1")
    except UnicodeEncodeError:
        return None
    target = f"{'https' if p.secure else 'http'}://{p.host}"
    if isinstance(p.port, int):
        target += f":{p.port}"
    target += p.fullpath
    if p.params:  # as requests encodes ``params=`` (urlencode: spaces as '+')
        target += "?" + urlencode(list(p.params.items()), doseq=True)
    return Target(
        plugin=p,
        method=p.method,
        url=target,
        headers=headers,
        verify=bool(p.verify_certificate),
        redirects=bool(p.redirects),
        connect_timeout=float(p.socket_connect_timeout),
        read_timeout=float(p.socket_read_timeout),
        extras=dict(p.payload_extras),
        version=p.json_version,
    )


def document(t: Target, title: str, body: str, notify_type: str) -> bytes | None:
    """The body apprise would send (``NotifyJSON.send``), or None when apprise would not send
    exactly one request with this title and body (it splits, cuts or refuses)."""
    try:
        calls = list(t.plugin._build_send_calls(body=body, title=title, notify_type=notify_type))
    except Exception:
        return None
    if len(calls) != 1 or calls[0].get("attach"):
        return None
    c = calls[0]
    ntype = c.get("notify_type")
    payload: dict[str, Any] = {
        "version": t.version,
        "title": c.get("title", ""),
        "message": c.get("body", ""),
        "attachments": [],
        "type": getattr(ntype, "value", ntype),
    }
    for key, value in t.extras.items():
        if key in payload:
            if not value:
                del payload[key]
            else:
                payload[value] = payload.pop(key)
        else:
            payload[key] = value
    return json.dumps(payload).encode("latin-1")  # json.dumps escapes non-ASCII: pure ASCII


class Webhooks:
    """Parsed targets (cached) and one aiohttp session on the running loop, made on first use."""

    def __init__(self) -> None:
        self._targets: dict[str, Target | None] = {}
        self._session: aiohttp.ClientSession | None = None

    def target(self, url: str) -> Target | None:
        if _scheme(url) not in SCHEMES:
            return None
        if url not in self._targets:
            if len(self._targets) >= MAX_TARGETS:
                self._targets.clear()
            self._targets[url] = parse(url)
        return self._targets[url]

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(keepalive_timeout=KEEPALIVE, limit=64), auto_decompress=False
            )
        return self._session

    async def send(self, t: Target, data: bytes, limit: float) -> str | None:
        """One request; None when the webhook answered 2xx, else what went wrong (without the
        URL: the caller scrubs and names the channel)."""
        tm = aiohttp.ClientTimeout(total=limit, sock_connect=t.connect_timeout, sock_read=t.read_timeout)
        try:
            async with self._sess().request(
                t.method, URL(t.url, encoded=True), data=data, headers=t.headers,
                ssl=t.verify, allow_redirects=t.redirects, timeout=tm,  # True: default verification
            ) as resp:
                await resp.read()
                if 200 <= resp.status < 300:
                    return None
                reason = t.plugin.http_response_code_lookup(resp.status)
                return f"failure: Failed to send JSON {t.method} notification: {reason}{', ' if reason else ''}" \
                       f"error={resp.status}."
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            return f"failure: A Connection error occurred sending JSON notification: {type(e).__name__}: {e}"

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
