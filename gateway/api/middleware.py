"""Small ASGI middlewares: an access log that cannot leak secrets, and security headers.

Access log: one line per request on the ``gateway.api.access`` logger: method, path,
status and duration; never headers (so never ``Authorization``), never a query string,
and one-tap acknowledge links (``/ack/<signed token>``) are logged as ``/ack/***``.
Reads that succeed are logged at DEBUG (a console and a Prometheus scraper would
otherwise fill the log); operator actions (POST etc.) and errors at INFO; refusals (401,
408, 413, 429, 503: what a flood produces) at most once per status every 10 s, with the
number left out. Logged paths are escaped by the log formatter (gateway/core/logsafe.py). uvicorn's own
access log is switched off (see server.py). Each request is also counted in
``hazardgw_api_requests_total{method,route,status}`` with the route *template* as label.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.core.ratelog import RateLimitedLog

log = logging.getLogger("gateway.api.access")

_ACK = re.compile(r"^(/ack/)[^/]+")


def redact_path(path: str) -> str:
    """``path`` with secrets in it (one-tap acknowledge tokens) replaced by ``***``."""
    return _ACK.sub(r"\1***", path)


_FORMAT = '%s "%s %s" %s %.1f ms'
#: refusals of the guard and the limits: logged at most once per status per 10 s (with a count)
REFUSALS = frozenset({401, 408, 413, 429, 503})


class AccessLog:
    def __init__(self, app: ASGIApp, metrics: Any) -> None:
        self.app = app
        self.metrics = metrics
        self._refusals = RateLimitedLog(log, 10.0)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.monotonic()
        status = 0

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            method = scope.get("method", "?")
            route = scope.get("route")
            template = getattr(route, "path", None) or ("static" if scope["path"].startswith("/static/") else "other")
            self.metrics.requests.labels(method, template, str(status or 0)).inc()
            level = logging.DEBUG if method in ("GET", "HEAD") and 0 < status < 400 else logging.INFO
            if log.isEnabledFor(level):
                client = scope.get("client")
                args = (client[0] if client else "-", method, redact_path(scope["path"]), status or "-",
                        (time.monotonic() - start) * 1000)
                if status in REFUSALS:  # an attack makes thousands a second: one line per status per 10 s
                    self._refusals.log(level, f"refused:{status}", _FORMAT, *args)
                else:
                    log.log(level, _FORMAT, *args)


_HEADERS = [
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
]
_CSP = (
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    b"connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


class SecurityHeaders:
    """nosniff, no framing (the console has acknowledge buttons), no referrer; a strict CSP on the console.

    The CSP (no inline script or style, same origin only) is set on the console's own pages
    (``/`` and ``/static/``) only, so pages added by extra routers keep their own rules.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        console = scope["path"] == "/" or scope["path"].startswith("/static/")

        async def send_wrapper(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                headers.extend(h for h in _HEADERS if h[0] not in present)
                ctype = next((v for k, v in headers if k.lower() == b"content-type"), b"")
                if console and ctype.startswith(b"text/html") and b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", _CSP))
                if console and b"cache-control" not in present:  # revalidate (ETag): no stale console after an upgrade
                    headers.append((b"cache-control", b"no-cache"))
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_wrapper)
