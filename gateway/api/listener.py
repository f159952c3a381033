"""The API's own accept loop and HTTP protocol: bounded connections, timeouts, TLS.

uvicorn's server accepts every connection the kernel hands it and keeps a connection that
sends nothing, or a request head one byte a minute, forever; on ``EMFILE`` asyncio logs a
traceback per attempt. Here (issue 20):

* :class:`Listener` accepts at most ``accept_rate`` connections a second (a burst of up to
  a tenth of a second's worth); beyond that it leaves them in the kernel's backlog for a moment.
  A flood of connections then costs the API thread a bounded amount of work: an API thread
  making system calls without pause would keep the interpreter lock from the gateway's
  loop (a thread that releases the lock for a few microseconds and takes it back wins
  against a waiting thread almost every time; measured: 0.2-0.5 s of loop lag under a
  20,000 connections/s flood without the cap). It accepts at most ``max_connections``
  connections at once (the smaller of
  ``api.limits.connections`` and the file-descriptor share, gateway/core/fds.py) and
  ``per_client`` from one address. A connection over either limit is accepted and closed at
  once with a reset (no TIME_WAIT left behind), counted in
  ``hazardgw_api_connections_refused_total{reason}``; nothing is logged per connection.
  ``EMFILE``/``ENFILE``/``ENOBUFS``/``ENOMEM`` on accept stop accepting for half a second
  and are logged at most once a minute (``RateLimitedLog``), never with a traceback.
* TLS (``api.tls``): the handshake runs here, bounded by ``header_timeout``; failures
  (plain HTTP on the HTTPS port, no client certificate under mutual TLS) are counted in
  ``hazardgw_api_tls_failures_total`` and close the connection.
* :class:`Protocol` (uvicorn's h11 protocol) closes a connection whose request head is not
  complete ``header_timeout`` seconds after the connection was made or the previous
  response was sent (``hazardgw_api_request_timeouts_total{phase="header"}``); an idle
  kept-alive connection is closed after ``idle_timeout`` (uvicorn's keep-alive timeout).
  Request heads are limited to 16 KiB (h11). uvicorn's access log is off (ours redacts).

Everything here runs on the API's event loop (gateway/api/server.py), not the gateway's.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import struct
import time
from collections.abc import Callable
from typing import Any

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from gateway.core.ratelog import RateLimitedLog

log = logging.getLogger(__name__)

ACCEPT_BATCH = 64  # accepts per readiness event, so one burst cannot monopolise the API loop
ACCEPT_PAUSE = 0.5  # s without accepting after EMFILE and friends
_RESOURCE_ERRORS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)
_LINGER_RESET = struct.pack("ii", 1, 0)


class Slot:
    """One accepted connection's place in the limits; released exactly once."""

    __slots__ = ("host", "listener", "released")

    def __init__(self, listener: Listener, host: str) -> None:
        self.listener = listener
        self.host = host
        self.released = False

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.listener._release(self.host)


class Listener:
    """Accepts connections on ``sock`` for ``make_protocol(slot)`` within the limits.

    Has ``close()`` and ``wait_closed()`` like an ``asyncio.Server`` (uvicorn's shutdown
    calls them)."""

    def __init__(
        self,
        sock: socket.socket,
        make_protocol: Callable[[Slot], asyncio.Protocol],
        *,
        max_connections: int,
        per_client: int,
        handshake_timeout: float,
        ssl_context: ssl.SSLContext | None,
        metrics: Any,
        accept_rate: float = 500.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.sock = sock
        self.make_protocol = make_protocol
        self.max_connections = max_connections
        self.per_client = per_client
        self.handshake_timeout = handshake_timeout
        self.ssl_context = ssl_context
        self.metrics = metrics
        self.accept_rate = accept_rate
        self._clock = clock
        self._tokens = float(ACCEPT_BATCH)  # accepts allowed now (token bucket)
        self._refilled = clock()
        self.active = 0
        self.by_host: dict[str, int] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._accepting = False
        self._closed = False
        self._pause: asyncio.TimerHandle | None = None
        self._handshakes: set[asyncio.Task[None]] = set()  # connections being set up
        self._ratelog = RateLimitedLog(log, 60.0)
        self._refused = {r: metrics.connections_refused.labels(r) for r in ("limit", "per_client", "accept_error")}

    # ------------------------------------------------------------------ asyncio.Server-like
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.sock.setblocking(False)
        self.sock.listen(min(4096, max(128, self.max_connections)))
        self._resume()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._stop_accepting()
        if self._pause is not None:
            self._pause.cancel()
        for t in self._handshakes:
            t.cancel()
        self.sock.close()

    async def wait_closed(self) -> None:
        if self._handshakes:
            await asyncio.gather(*self._handshakes, return_exceptions=True)

    # ------------------------------------------------------------------ accepting
    def _resume(self) -> None:
        self._pause = None
        if self._closed or self._accepting or self._loop is None:
            return
        self._loop.add_reader(self.sock.fileno(), self._on_readable)
        self._accepting = True

    def _stop_accepting(self) -> None:
        if self._accepting and self._loop is not None:
            self._loop.remove_reader(self.sock.fileno())
            self._accepting = False

    def _on_readable(self) -> None:
        now = self._clock()
        burst = max(ACCEPT_BATCH, self.accept_rate / 10)  # at most 0.1 s worth saved up: short busy spells
        self._tokens = min(burst, self._tokens + (now - self._refilled) * self.accept_rate)
        self._refilled = now
        n = min(ACCEPT_BATCH, int(self._tokens))
        if n < 1:  # over the accept rate: leave them in the kernel's backlog for a moment
            self._stop_accepting()
            assert self._loop is not None
            self._pause = self._loop.call_later((1.0 - self._tokens) / self.accept_rate, self._resume)
            return
        for _ in range(n):
            self._tokens -= 1
            try:
                conn, addr = self.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue
            except OSError as e:
                self._refused["accept_error"].inc()
                if e.errno in _RESOURCE_ERRORS:
                    self._ratelog.error(
                        "resources", "API accept failed: %s (%d connections open, at most %d); not accepting "
                        "for %.1f s", e.strerror or e, self.active, self.max_connections, ACCEPT_PAUSE,
                    )
                    self._stop_accepting()
                    assert self._loop is not None
                    self._pause = self._loop.call_later(ACCEPT_PAUSE, self._resume)
                else:
                    self._ratelog.warning(f"accept:{e.errno}", "API accept failed: %s", e)
                return
            host = str(addr[0]) if isinstance(addr, tuple) else "?"
            if self.active >= self.max_connections:
                self._refuse(conn, "limit")
                continue
            if self.by_host.get(host, 0) >= self.per_client:
                self._refuse(conn, "per_client")
                continue
            self.active += 1
            self.by_host[host] = self.by_host.get(host, 0) + 1
            self.metrics.connections.set(self.active)
            slot = Slot(self, host)
            assert self._loop is not None
            task = self._loop.create_task(self._connect(conn, slot))
            self._handshakes.add(task)
            task.add_done_callback(self._handshakes.discard)

    def _refuse(self, conn: socket.socket, reason: str) -> None:
        self._refused[reason].inc()
        try:
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _LINGER_RESET)
        except OSError:
            pass
        conn.close()

    async def _connect(self, conn: socket.socket, slot: Slot) -> None:
        """The loop's transport (TLS: after the handshake) and the HTTP protocol for ``conn``."""
        assert self._loop is not None
        try:
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is None:
                await self._loop.connect_accepted_socket(lambda: self.make_protocol(slot), conn)
            else:
                await self._loop.connect_accepted_socket(
                    lambda: self.make_protocol(slot), conn, ssl=self.ssl_context,
                    ssl_handshake_timeout=self.handshake_timeout, ssl_shutdown_timeout=self.handshake_timeout,
                )
        except asyncio.CancelledError:
            slot.release()
            conn.close()
            raise
        except (OSError, TimeoutError, ssl.SSLError) as e:  # plain HTTP, no client cert, too slow, reset
            slot.release()
            conn.close()
            if self.ssl_context is None:
                return
            self.metrics.tls_failures.inc()
            self._ratelog.log(logging.INFO, "handshake", "API TLS handshake failed from %s: %s", slot.host,
                              getattr(e, "reason", None) or type(e).__name__)

    def _release(self, host: str) -> None:
        self.active -= 1
        n = self.by_host.get(host, 0) - 1
        if n > 0:
            self.by_host[host] = n
        else:
            self.by_host.pop(host, None)
        self.metrics.connections.set(self.active)


class Protocol(H11Protocol):
    """uvicorn's h11 protocol with a request-head timeout, its slot released on close, and no
    uvicorn access log (``middleware.AccessLog`` logs without secrets)."""

    def __init__(self, *args: Any, slot: Slot, header_timeout: float, metrics: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.access_log = False
        self._slot = slot
        self._header_timeout = header_timeout
        self._header_timer: asyncio.TimerHandle | None = None
        self._metrics = metrics

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        try:
            super().connection_lost(exc)
        finally:
            self._slot.release()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self._header_timer is not None and self.conn.their_state is not h11.IDLE:
            self._disarm()  # the request head is complete

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing() and self.conn.their_state is h11.IDLE:
            self._arm()  # the next request's head has header_timeout from now

    def _arm(self) -> None:
        self._disarm()
        self._header_timer = self.loop.call_later(self._header_timeout, self._on_header_timeout)

    def _disarm(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _on_header_timeout(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        self._metrics.request_timeouts.labels("header").inc()
        self.transport.close()
