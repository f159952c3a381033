"""``ApiServer``: the API as a gateway component: uvicorn on a thread with its own event loop.

**Why a thread of its own** (issue 20; measured in tests/test_attack_api.py, figures in
README.md "Security"): an asyncio loop runs every ready callback before it looks at its
timers again, in no particular priority. On the gateway's loop, a few thousand API
connections becoming readable at once (a flood, a reconnect storm, TLS handshakes at
~1 ms of CPU each) would queue ahead of the alarm engine, the notifier and the sinks. On
a loop of its own, that work competes only for the interpreter lock, which Python hands
over every 5 ms: the gateway's loop keeps running. So:

* the API's loop (thread ``api-<port>``) accepts connections within the limits, does TLS
  handshakes, parses HTTP, enforces the timeouts, authenticates from the headers, reads
  and bounds bodies, writes the audit log and the access log
  (gateway/api/listener.py, guard.py, middleware.py);
* the gateway's loop runs routing, validation, the handlers and the SSE hub (the alarm
  engine and the live state are not thread-safe); the guard's hop hands over at most
  ``ApiSettings.gateway_concurrency`` requests at a time (guard.py ``LoopHop``).

``ApiSettings(own_thread=False)`` serves on the gateway's loop instead (same code, no hop;
for comparison and for embedding).

* It gets its data from a :class:`~gateway.api.facade.GatewayFacade`; the supervisor
  subscribes ``hub.on_alarm_event`` to the alarm engine and ``trends`` to the pipeline.
* ``start()`` starts the event hub and the audit writer, binds ``api.listen`` (port 0 picks
  a free port, see ``port``/``url``), loads the TLS files (``api.tls``) and returns once
  the server accepts connections.
* If the address cannot be bound (port taken, address not on this host) or the TLS files
  cannot be loaded, the gateway does **not** fail: alarms, pushes and storage must keep
  running without the console. The error is logged, ``health()`` turns not-ok (gateway
  status ``degraded``), and it is retried every ``retry_interval`` seconds.
* ``stop()`` ends every SSE stream, stops uvicorn (open connections get
  ``graceful_timeout`` seconds), the thread, the hub and the audit writer.

uvicorn runs without its signal handlers (the gateway owns SIGINT/SIGTERM), without its
logging setup and access log (``middleware.AccessLog`` logs requests without headers or
secrets), with the lifespan off, and with our accept loop instead of ``create_server``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Generator, Iterable
from typing import Any

import uvicorn
from fastapi import APIRouter

from gateway.api.app import build_app, context_of
from gateway.api.context import ApiSettings
from gateway.api.facade import GatewayFacade
from gateway.api.guard import LoopHop
from gateway.api.listener import Listener, Protocol, Slot
from gateway.api.sse import EventHub
from gateway.api.trends import RecentValues
from gateway.core import fds
from gateway.core.tls import server_context

log = logging.getLogger(__name__)


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    host, _, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"api.listen must be host:port, got {listen!r}")
    return host, int(port)


class _StartError(Exception):
    pass


class _Server(uvicorn.Server):
    """uvicorn with our accept loop (listener.py) on an already bound socket."""

    def __init__(self, config: uvicorn.Config, make_listener: Callable[[Callable[[Slot], asyncio.Protocol]], Listener],
                 protocol_kw: dict[str, Any]) -> None:
        super().__init__(config)
        self.make_listener = make_listener
        self.protocol_kw = protocol_kw
        self.listener: Listener | None = None
        self.ready: concurrent.futures.Future[None] = concurrent.futures.Future()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await self.lifespan.startup()
        loop = asyncio.get_running_loop()
        config = self.config

        def make_protocol(slot: Slot) -> asyncio.Protocol:
            return Protocol(config=config, server_state=self.server_state, app_state=self.lifespan.state,
                            _loop=loop, slot=slot, **self.protocol_kw)

        self.listener = self.make_listener(make_protocol)
        self.listener.start()
        self.servers = [self.listener]  # type: ignore[list-item]  # close() / wait_closed() like asyncio.Server
        self.started = True
        if not self.ready.done():
            self.ready.set_result(None)

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield  # the gateway handles signals


class ApiServer:
    name = "api"

    def __init__(
        self,
        gw: GatewayFacade,
        *,
        listen: str | None = None,
        extra_routers: Iterable[APIRouter] = (),
        settings: ApiSettings | None = None,
        retry_interval: float = 5.0,
        graceful_timeout: float = 3.0,
    ) -> None:
        self.listen = listen or gw.config.api.listen
        self.host, self.requested_port = parse_listen(self.listen)
        self.settings = settings or ApiSettings()
        self.app = build_app(gw, extra_routers, settings=self.settings)
        ctx = context_of(self.app)
        self.ctx = ctx
        self.api = gw.config.api
        # for the supervisor's wiring: alarm events to the hub, readings to the trends
        self.hub: EventHub = ctx.hub
        self.trends: RecentValues = ctx.trends
        self.retry_interval = retry_interval
        self.graceful_timeout = graceful_timeout
        self.port: int | None = None  # the bound port (differs from the requested one for port 0)
        self.max_connections: int | None = None  # api.limits.connections within the descriptor share
        self.error: str | None = None
        self._server: _Server | None = None
        self._done: asyncio.Future[None] | None = None  # the server's run (a task, or the thread's end)
        self._thread: threading.Thread | None = None
        self._retry: asyncio.Task[None] | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.api.tls is not None else "http"

    @property
    def url(self) -> str | None:
        if self.port is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"

    @property
    def listening(self) -> bool:
        return (self.port is not None and self._server is not None and self._server.started
                and self._done is not None and not self._done.done())

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.ctx.start()
        try:
            sock, tls = await self._prepare()
        except _StartError as e:
            self.error = str(e)
            log.error("API %s; alarms keep running, retrying every %g s", self.error, self.retry_interval)
            self._retry = asyncio.create_task(self._retry_start(), name="api-bind-retry")
            return
        await self._serve(sock, tls)

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
            self._retry = None
        self.ctx.hub.close_clients()
        server, done = self._server, self._done
        if server is not None and done is not None:
            server.should_exit = True  # uvicorn polls it every 0.1 s (from any thread)
            try:
                await asyncio.wait_for(asyncio.shield(done), self.graceful_timeout + 2.0)
            except TimeoutError:
                server.force_exit = True
                if isinstance(done, asyncio.Task):
                    done.cancel()
                with contextlib.suppress(BaseException):
                    await asyncio.wait_for(asyncio.shield(done), 2.0)
                if not done.done():
                    log.error("API server did not stop within %.0f s; leaving its thread", self.graceful_timeout + 4)
            except Exception:
                log.exception("API server failed while stopping")
        self._server = None
        self._done = None
        self._thread = None
        self.ctx.hop = None
        self.port = None
        await self.ctx.stop()

    def health(self) -> dict[str, Any]:
        hub = self.ctx.hub.health()
        listener = self._server.listener if self._server is not None else None
        return {
            "ok": self.listening and hub["ok"],
            "listen": self.listen,
            "url": self.url,
            "error": self.error,
            "tls": self.api.tls is not None,
            "thread": self.settings.own_thread,
            "connections": listener.active if listener is not None else 0,
            "max_connections": self.max_connections,
            "sse_clients": hub["clients"],
            "sse_dropped": hub["dropped"],
            "audit": self.ctx.audit.health(),
        }

    # ------------------------------------------------------------------ internals
    async def _prepare(self) -> tuple[socket.socket, ssl.SSLContext | None]:
        """The bound socket and the TLS context (None without ``api.tls``); _StartError says why not."""
        try:
            sock = self._bind()
        except OSError as e:
            raise _StartError(f"cannot listen on {self.listen}: {e}") from e
        tls = self.api.tls
        if tls is None:
            return sock, None
        try:
            return sock, await asyncio.to_thread(server_context, tls.cert, tls.key, tls.client_ca)
        except (OSError, ssl.SSLError, ValueError) as e:
            sock.close()
            raise _StartError(f"cannot load api.tls ({tls.cert}, {tls.key}): {e}") from e

    def _bind(self) -> socket.socket:
        infos = socket.getaddrinfo(self.host, self.requested_port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, addr = infos[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(addr)
            sock.setblocking(False)
        except OSError:
            sock.close()
            raise
        return sock

    async def _serve(self, sock: socket.socket, tls: ssl.SSLContext | None) -> None:
        limits = self.api.limits
        metrics = self.ctx.metrics
        self.max_connections = fds.share(limits.connections, limits.fd_reserve)
        if self.max_connections < limits.connections:
            log.warning("API: at most %d connections (api.limits.connections %d): RLIMIT_NOFILE %d leaves no more "
                        "beside the %d descriptors kept for the rest of the gateway", self.max_connections,
                        limits.connections, fds.nofile_limit(), limits.fd_reserve)
        max_connections = self.max_connections

        def make_listener(make_protocol: Callable[[Slot], asyncio.Protocol]) -> Listener:
            return Listener(sock, make_protocol, max_connections=max_connections, per_client=limits.per_client,
                            handshake_timeout=limits.header_timeout, ssl_context=tls, metrics=metrics,
                            accept_rate=limits.accept_rate)

        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,  # keep the gateway's logging as it is
            access_log=True,  # False would reconfigure the global "uvicorn.access" logger; Protocol turns it off
            http=Protocol,
            ws="none",
            server_header=False,
            proxy_headers=False,
            timeout_keep_alive=limits.idle_timeout,  # type: ignore[arg-type]  # a float works
            h11_max_incomplete_event_size=16 * 1024,
            timeout_graceful_shutdown=self.graceful_timeout,  # type: ignore[arg-type]
        )
        server = _Server(config, make_listener, {"header_timeout": limits.header_timeout, "metrics": metrics})
        self._server = server
        gateway_loop = asyncio.get_running_loop()
        if self.settings.own_thread:
            self.ctx.hop = LoopHop(gateway_loop, self.settings.gateway_concurrency)
            ended: concurrent.futures.Future[None] = concurrent.futures.Future()
            self._thread = threading.Thread(target=_run_in_thread, args=(server, ended), daemon=True,
                                            name=f"api-{sock.getsockname()[1]}")
            self._thread.start()
            self._done = asyncio.wrap_future(ended)
        else:
            self.ctx.hop = None
            self._done = asyncio.ensure_future(server.serve())
        ready = asyncio.wrap_future(server.ready)
        await asyncio.wait({self._done, ready}, return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():  # pragma: no cover - startup with a bound socket does not fail in practice
            ready.cancel()
            exc = self._done.exception() if self._done.done() else None
            sock.close()
            self.error = f"uvicorn did not start: {exc!r}"
            log.error("API %s", self.error)
            return
        self.port = sock.getsockname()[1]
        self.error = None
        log.info("API and duty console listening on %s (%s; at most %d connections, %d per client)", self.url,
                 "own thread and event loop" if self.settings.own_thread else "gateway's event loop",
                 max_connections, limits.per_client)

    async def _retry_start(self) -> None:
        while True:
            await asyncio.sleep(self.retry_interval)
            try:
                sock, tls = await self._prepare()
            except _StartError as e:
                self.error = str(e)
                continue
            await self._serve(sock, tls)
            return


def _run_in_thread(server: _Server, ended: concurrent.futures.Future[None]) -> None:
    """The API thread: a fresh event loop running uvicorn until it is told to exit."""
    try:
        asyncio.run(server.serve())
    except BaseException as e:
        if not server.ready.done():
            server.ready.set_exception(e)
        ended.set_exception(e)
        log.error("API thread ended with an error: %r", e)
    else:
        ended.set_result(None)
