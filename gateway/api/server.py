"""``ApiServer``: the API as a gateway component, uvicorn in the gateway's own event loop.

* It gets its data from a :class:`~gateway.api.facade.GatewayFacade`; the supervisor
  subscribes ``hub.on_alarm_event`` to the alarm engine and ``trends`` to the pipeline.
* ``start()`` starts the event hub, binds ``api.listen`` (port 0 picks a free port, see
  ``port``/``url``) and returns once uvicorn accepts connections.
* If the address cannot be bound (port taken, address not on this host) the gateway does
  **not** fail: alarms, pushes and storage must keep running without the console. The
  error is logged, ``health()`` turns not-ok (gateway status ``degraded``), and binding is
  retried every ``retry_interval`` seconds.
* ``stop()`` ends every SSE stream, stops uvicorn (open connections get
  ``graceful_timeout`` seconds) and the hub.

uvicorn is run without its signal handlers (the gateway owns SIGINT/SIGTERM), without its
logging setup and without its access log (``middleware.AccessLog`` logs requests without
headers or secrets; uvicorn's would log one-tap acknowledge tokens in paths), with the
lifespan off (this component starts the hub itself, so a failing startup can never reach
uvicorn's ``sys.exit``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import Generator, Iterable
from typing import Any

import uvicorn
from fastapi import APIRouter
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.api.app import build_app, context_of
from gateway.api.context import ApiSettings
from gateway.api.facade import GatewayFacade
from gateway.api.sse import EventHub
from gateway.api.trends import RecentValues

log = logging.getLogger(__name__)


def parse_listen(listen: str) -> tuple[str, int]:
    """``host:port`` or ``[v6]:port`` -> (host, port)."""
    host, _, port = listen.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError(f"api.listen must be host:port, got {listen!r}")
    return host, int(port)


class _QuietH11(H11Protocol):
    """h11 without uvicorn's access log (it logs full paths; ours redacts secrets).

    uvicorn decides per connection from ``logging.getLogger("uvicorn.access").hasHandlers()``;
    switching it off here needs no change to global logging state.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.access_log = False


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = asyncio.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()

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
        self.app = build_app(gw, extra_routers, settings=settings)
        ctx = context_of(self.app)
        # for the supervisor's wiring: alarm events to the hub, readings to the trends
        self.hub: EventHub = ctx.hub
        self.trends: RecentValues = ctx.trends
        self.retry_interval = retry_interval
        self.graceful_timeout = graceful_timeout
        self.port: int | None = None  # the bound port (differs from the requested one for port 0)
        self.error: str | None = None
        self._server: _Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._retry: asyncio.Task[None] | None = None

    @property
    def url(self) -> str | None:
        if self.port is None:
            return None
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def listening(self) -> bool:
        return self._server is not None and self._server.started and self._task is not None and not self._task.done()

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await context_of(self.app).start()
        try:
            sock = self._bind()
        except OSError as e:
            self.error = f"cannot listen on {self.listen}: {e}"
            log.error("API %s; alarms keep running, retrying every %g s", self.error, self.retry_interval)
            self._retry = asyncio.create_task(self._retry_bind(), name="api-bind-retry")
            return
        await self._serve(sock)

    async def stop(self) -> None:
        if self._retry is not None:
            self._retry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._retry
            self._retry = None
        ctx = context_of(self.app)
        ctx.hub.close_clients()
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            try:
                await asyncio.wait_for(asyncio.shield(self._task), self.graceful_timeout + 2.0)
            except TimeoutError:
                self._task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await self._task
            except Exception:
                log.exception("API server failed while stopping")
        self._server = None
        self._task = None
        self.port = None
        await ctx.stop()

    def health(self) -> dict[str, Any]:
        hub = context_of(self.app).hub.health()
        return {
            "ok": self.listening and hub["ok"],
            "listen": self.listen,
            "url": self.url,
            "error": self.error,
            "sse_clients": hub["clients"],
            "sse_dropped": hub["dropped"],
        }

    # ------------------------------------------------------------------ internals
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

    async def _serve(self, sock: socket.socket) -> None:
        config = uvicorn.Config(
            self.app,
            lifespan="off",
            log_config=None,  # keep the gateway's logging as it is
            access_log=True,  # False would reconfigure the global "uvicorn.access" logger; see _QuietH11
            http=_QuietH11,
            ws="none",
            server_header=False,
            proxy_headers=False,
            # uvicorn annotates int but hands it to asyncio.wait_for (seconds, float is fine)
            timeout_graceful_shutdown=self.graceful_timeout,  # type: ignore[arg-type]
        )
        server = _Server(config)
        self._server = server
        self._task = asyncio.create_task(server.serve(sockets=[sock]), name="api-uvicorn")
        ready = asyncio.create_task(server.ready.wait())
        await asyncio.wait({self._task, ready}, return_when=asyncio.FIRST_COMPLETED)
        ready.cancel()
        if not server.ready.is_set():  # pragma: no cover - startup with a bound socket does not fail in practice
            exc = self._task.exception()
            sock.close()
            self.error = f"uvicorn did not start: {exc!r}"
            log.error("API %s", self.error)
            return
        self.port = sock.getsockname()[1]
        self.error = None
        log.info("API and duty console listening on %s", self.url)

    async def _retry_bind(self) -> None:
        while True:
            await asyncio.sleep(self.retry_interval)
            try:
                sock = self._bind()
            except OSError:
                continue
            await self._serve(sock)
            return
