"""A catch-all aiohttp server on a loopback port: what the dev kit's HTTP stand-ins share (SMS
and voice provider stand-ins, the reference HTTP uplink receiver, the demo's phones) and the
benchmarks' webhook receiver."""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

from aiohttp import web

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def serve(
    handler: Handler, host: str = "127.0.0.1", port: int = 0, *, ssl_context: ssl.SSLContext | None = None,
    client_max_size: int = 1024 * 1024,
) -> tuple[web.AppRunner, int]:
    """Serve every method and path with ``handler``; (the runner, to ``cleanup()`` on stop, and
    the bound port: port 0 asks for a free one)."""
    app = web.Application(client_max_size=client_max_size)
    app.router.add_route("*", "/{tail:.*}", handler)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port, ssl_context=ssl_context)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    return runner, site.port
