"""Connection plumbing the uplink transports share (:mod:`~gateway.uplink.tcp_aes`,
:mod:`~gateway.uplink.delimited`, :mod:`~gateway.uplink.http_transport`,
:mod:`~gateway.uplink.mqtt`): the TLS context from ``uplink.ca`` / ``cert`` / ``key``, the
host and port of a ``tcp://`` / ``tls://`` URL, opening a connection within
:data:`CONNECT_TIMEOUT` and waiting (bounded) for it to close, handing a request read
from the platform to the core, the platform's reason in an answer. Failures are
:class:`~gateway.uplink.profile.TransportError` with a message that never holds a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import SplitResult, urlsplit

from gateway.core.tls import load_client_context
from gateway.uplink.profile import TransportError

if TYPE_CHECKING:
    from gateway.core.config import Uplink

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 10.0
CLOSE_TIMEOUT = 2.0


def port_of(u: SplitResult) -> int | None:
    """The URL's port; None when it has none or it is not a number (for config checks)."""
    try:
        return u.port
    except ValueError:
        return None


def tcp_endpoint(url: str) -> tuple[bool, str, int]:
    """(TLS?, host, port) of a ``tcp://host:port`` or ``tls://host:port`` URL."""
    u = urlsplit(url)
    tls = u.scheme == "tls"
    host = u.hostname or "localhost"
    if u.port is None:
        raise ValueError("uplink.url needs a port: tcp://host:port or tls://host:port")
    return tls, host, u.port


async def tls_context(uplink: Uplink) -> ssl.SSLContext:
    """The client context for ``uplink.ca`` / ``cert`` / ``key``, read off the event loop."""
    try:
        return await load_client_context(uplink.ca, uplink.cert, uplink.key)
    except (OSError, ssl.SSLError) as e:
        raise TransportError(f"TLS settings: {e}") from None


async def open_stream(
    host: str, port: int, ctx: ssl.SSLContext | None, describe: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A TCP (TLS with ``ctx``) connection within :data:`CONNECT_TIMEOUT` (``describe``: the
    platform, for the error message)."""
    try:
        return await asyncio.wait_for(asyncio.open_connection(host, port, ssl=ctx), CONNECT_TIMEOUT)
    except (OSError, ssl.SSLError, TimeoutError) as e:
        raise TransportError(f"cannot connect to {describe}: {str(e) or type(e).__name__}") from None


async def wait_closed(writer: asyncio.StreamWriter) -> None:
    """Wait at most :data:`CLOSE_TIMEOUT` for a closed connection to finish closing."""
    with contextlib.suppress(Exception):
        await asyncio.wait_for(writer.wait_closed(), CLOSE_TIMEOUT)


class Requested(Protocol):
    """A transport that reads requests from the platform."""

    request_handler: Callable[[str], None] | None
    requests_seen: int


def hand_request(transport: Requested, kind: str) -> None:
    """Count a request read from the platform (a frame or an answer matching the mapping's
    ``requests:``, :func:`gateway.uplink.mapping.request_kind`) and hand it to the core; an
    error there is logged, never raised."""
    transport.requests_seen += 1
    if transport.request_handler is not None:
        try:
            transport.request_handler(kind)
        except Exception:
            log.exception("uplink: handling the platform's %s request failed", kind)


def reason(doc: Any) -> str:
    """`` (the platform's reason)`` from an answer's msg/message/error/reason, or ""."""
    if isinstance(doc, dict):
        for k in ("msg", "message", "error", "reason"):
            v = doc.get(k)
            if isinstance(v, str) and v:
                return f" ({v[:160]})"
    return ""
