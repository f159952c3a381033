"""What every request passes before the app sees it, and the hop to the gateway's loop.

:class:`Guard` (ASGI middleware; on the API's own loop when the server runs it in its
thread, gateway/api/server.py), in this order:

1. **Lockout** (gateway/api/lockout.py): a request that carries a credential (every
   ``/api/`` route but the public ones, and one-tap ``/ack/`` links) from an address that
   is locked out gets **429** ``locked_out`` with ``Retry-After``, after
   ``ApiSettings.locked_delay`` (0.25 s), so a client that keeps guessing asks at most 4
   times a second per connection instead of as fast as the API answers.
2. **Authentication from the headers, before any body is read** (issue 20 finding 2):
   every ``/api/`` request except :data:`PUBLIC` (and CORS preflights) needs a valid,
   unexpired bearer token, else **401**; an invalid token counts towards the lockout;
   invalid and expired tokens are audited. The :class:`~gateway.api.auth.Principal` is put
   in the request scope for the role dependencies.
3. **Body limits**: a ``Content-Length`` over the route's limit gets **413** at once; a
   body is then read here, counted while it streams (**413** as soon as it passes the
   limit, chunked or not) and bounded in time (**408** after ``body_timeout``), and only a
   complete body within the limit is handed on. The limit is ``api.limits.max_body``
   (64 KiB), or more for a path registered with :func:`allow_body`. Rejected requests
   close the connection (their body is never read).
4. **Audit** (gateway/api/audit.py): every request with a method other than GET, HEAD or
   OPTIONS that reached the app is recorded with its outcome, generically: a route added
   later is audited without code of its own. A 403 from ``/ack/`` (a forged or tampered
   link) counts towards the lockout and is audited as ``invalid_link``.

:class:`LoopHop` runs the rest of the app (routing, validation, the handlers, the alarm
engine) on the gateway's event loop: the engine and the live state are not thread-safe,
and this keeps every handler exactly as it would be on a single loop. At most
``concurrency`` requests are handed over at once (until their response starts), so a burst
of API requests queues on the API's loop, not on the gateway's.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.api.audit import AUDIT_KEY, default_target
from gateway.api.auth import PRINCIPAL_KEY, Principal, bearer_token
from gateway.api.errors import CODES
from gateway.api.middleware import redact_path

if TYPE_CHECKING:
    from gateway.api.context import ApiContext

#: /api/ routes that need no token (open on purpose, see README.md)
PUBLIC: Final = frozenset({"/api/health"})
SAFE_METHODS: Final = frozenset({"GET", "HEAD", "OPTIONS"})


def _header(scope: Scope, name: bytes) -> bytes | None:
    for k, v in scope.get("headers", ()):
        if k == name:
            return bytes(v)
    return None


def allow_body(ctx: ApiContext, path_prefix: str, max_bytes: int) -> None:
    """Let requests under ``path_prefix`` carry bodies up to ``max_bytes`` (default: api.limits.max_body)."""
    ctx.body_limits[path_prefix] = max_bytes


def _json_reply(status: int, code: str, detail: str, headers: dict[str, str] | None = None,
                *, close: bool = False) -> tuple[Message, Message]:
    body = json.dumps({"error": code, "detail": detail}).encode()
    hs = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    hs += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    if close:
        hs.append((b"connection", b"close"))
    return ({"type": "http.response.start", "status": status, "headers": hs},
            {"type": "http.response.body", "body": body, "more_body": False})


class _BodyError(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class Guard:
    def __init__(self, app: ASGIApp, ctx: ApiContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        ctx = self.ctx
        method: str = scope["method"]
        path: str = scope["path"]
        client = scope["client"][0] if scope.get("client") else "?"
        needs_token = path.startswith("/api/") and path not in PUBLIC and method != "OPTIONS"
        is_link = path.startswith("/ack/")
        has_body = _has_body(scope)

        async def reply(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
            start, body = _json_reply(status, code, detail, headers, close=has_body)
            await send(start)
            await send(body)

        if needs_token or is_link:
            left = ctx.lockout.locked(client)
            if left is not None:
                ctx.metrics.auth_failures.labels("locked").inc()
                await asyncio.sleep(ctx.settings.locked_delay)  # a guesser waits, the API does not
                secs = max(1, math.ceil(left))
                await reply(429, "locked_out", f"too many authentication failures from {client}; "
                            f"try again in {secs} s", {"Retry-After": str(secs)})
                return
        principal: Principal | None = None
        if needs_token:
            raw = _header(scope, b"authorization")
            result = ctx.auth.check(bearer_token(raw.decode("latin-1")) if raw is not None else None)
            if result.principal is None:
                assert result.failure is not None
                ctx.metrics.auth_failures.labels(result.failure).inc()
                if result.failure != "missing":
                    self._failure(client, result.failure, method, path, counts=result.failure == "invalid")
                await reply(401, "unauthorized", result.detail, {"WWW-Authenticate": "Bearer"})
                return
            principal = result.principal
            scope[PRINCIPAL_KEY] = principal

        if has_body:
            limit = ctx.body_limit(path)
            length = _content_length(scope)
            if length is not None and length > limit:
                ctx.metrics.body_rejected.labels("too_large").inc()
                await reply(413, "too_large", f"request body over {limit} bytes")
                return
            try:
                body = await self._read_body(receive, limit)
            except _BodyError as e:
                if e.status == 413:
                    ctx.metrics.body_rejected.labels("too_large").inc()
                    await reply(413, "too_large", f"request body over {limit} bytes")
                elif e.status == 408:
                    ctx.metrics.request_timeouts.labels("body").inc()
                    await reply(408, "timeout", f"request body not complete within "
                                f"{ctx.limits.body_timeout:g} s")
                return  # 0: the client went away
            receive = _replay(body, receive)

        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                if is_link and status == 403:
                    # counted before the client can see the answer: its next guess already
                    # meets the lockout this one may have started
                    self._failure(client, "invalid_link", method, path, counts=True)
            await send(message)

        try:
            await self.app(scope, receive, send_status)
        finally:
            if method not in SAFE_METHODS and not (is_link and status == 403):
                self._audit_request(scope, client, principal, status)

    async def _read_body(self, receive: Receive, limit: int) -> bytes:
        chunks: list[bytes] = []
        n = 0
        try:
            async with asyncio.timeout(self.ctx.limits.body_timeout):
                while True:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        raise _BodyError(0)
                    chunk = message.get("body", b"")
                    n += len(chunk)
                    if n > limit:
                        raise _BodyError(413)
                    chunks.append(chunk)
                    if not message.get("more_body", False):
                        return b"".join(chunks)
        except TimeoutError:
            raise _BodyError(408) from None

    def _failure(self, client: str, reason: str, method: str, path: str, *, counts: bool) -> None:
        ctx = self.ctx
        if reason == "invalid_link":
            ctx.metrics.auth_failures.labels("invalid_link").inc()
        ctx.audit.record("auth_failure", client=client, user=None, method=method, route=_route_text(path),
                         target=None, status=401 if reason != "invalid_link" else 403, result=reason)
        if reason == "invalid":
            ctx.ratelog.warning(f"invalid-token:{client}", "API request with an invalid token from %s", client)
        if counts and ctx.lockout.failure(client):
            ctx.metrics.lockouts.inc()
            ctx.audit.record("lockout", client=client, user=None, method=method, route=_route_text(path),
                             target=None, status=429, result="locked_out")
            ctx.ratelog.warning(f"lockout:{client}", "API: %s locked out for %g s after %d authentication failures",
                                client, ctx.lockout.cooldown, ctx.lockout.failures)

    def _audit_request(self, scope: Scope, client: str, principal: Principal | None, status: int) -> None:
        info: dict[str, Any] = scope.get(AUDIT_KEY) or {}
        route = scope.get("route")
        template = getattr(route, "path_format", None) or _route_text(scope["path"])
        target = info["target"] if "target" in info else default_target(scope.get("path_params"))
        user = info.get("user") or (principal.name if principal is not None else None)
        result = "ok" if 0 < status < 400 else CODES.get(status, "error" if status else "no_response")
        self.ctx.audit.record("request", client=client, user=user, method=scope["method"], route=template,
                              target=target, status=status, result=result)


def _route_text(path: str) -> str:
    """A path for the audit log when no route matched: secrets redacted, bounded."""
    return redact_path(path)[:200]


def _has_body(scope: Scope) -> bool:
    length = _content_length(scope)
    if length is not None:
        return length > 0
    return _header(scope, b"transfer-encoding") is not None


def _content_length(scope: Scope) -> int | None:
    raw = _header(scope, b"content-length")
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:  # h11 rejects a malformed Content-Length before we get here
        return None


def _replay(body: bytes, receive: Receive) -> Receive:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class LoopHop:
    """Runs an ASGI app on ``loop`` (the gateway's) for requests arriving on another loop
    (the API's), at most ``concurrency`` at a time until their response starts."""

    def __init__(self, loop: asyncio.AbstractEventLoop, concurrency: int) -> None:
        self.loop = loop
        self.concurrency = concurrency
        self._gate: asyncio.Semaphore | None = None  # made on the API loop at first use

    async def run(self, app: ASGIApp, scope: Scope, receive: Receive, send: Send) -> None:
        here = asyncio.get_running_loop()
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.concurrency)
        gate = self._gate
        await gate.acquire()
        held = True

        def release() -> None:
            nonlocal held
            if held:
                held = False
                gate.release()

        async def send_here(message: Message) -> None:
            if message["type"] == "http.response.start":
                release()  # the work on the gateway's loop is done; streaming may go on
            await send(message)

        def across(coro: Awaitable[Any], loop: asyncio.AbstractEventLoop) -> asyncio.Future[Any]:
            return asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))  # type: ignore[arg-type]

        async def receive_there() -> Message:
            result: Message = await across(receive(), here)
            return result

        async def send_there(message: Message) -> None:
            await across(send_here(message), here)

        try:
            await across(app(scope, receive_there, send_there), self.loop)
        finally:
            release()


class Hop:
    """ASGI middleware: hands the request to ``ctx.hop`` (set by the server while it runs the
    API on its own loop); without one, or on the gateway's loop already, calls on directly."""

    def __init__(self, app: ASGIApp, ctx: ApiContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        hop: LoopHop | None = self.ctx.hop
        if hop is None or scope["type"] != "http" or hop.loop is asyncio.get_running_loop():
            await self.app(scope, receive, send)
            return
        await hop.run(self.app, scope, receive, send)

