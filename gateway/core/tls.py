"""Client-side TLS contexts from config file paths (MQTT sources, uplink transports)."""

from __future__ import annotations

import asyncio
import ssl


def client_context(ca: str | None, cert: str | None = None, key: str | None = None, *,
                   insecure: bool = False) -> ssl.SSLContext:
    """Verify the server against ``ca`` (None: the system's trust store); present the client
    certificate ``cert``/``key`` if given. ``insecure`` turns verification off (tests only).
    Reads files: call it off the event loop (:func:`load_client_context`)."""
    ctx = ssl.create_default_context(cafile=ca)
    if cert is not None:
        ctx.load_cert_chain(cert, key)
    if insecure:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def load_client_context(ca: str | None, cert: str | None = None, key: str | None = None, *,
                              insecure: bool = False) -> ssl.SSLContext:
    """:func:`client_context` in a thread, so reading the files never blocks the loop."""
    return await asyncio.to_thread(client_context, ca, cert, key, insecure=insecure)
