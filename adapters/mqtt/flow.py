"""Flow control between the broker socket and the decoder: the only module touching aiomqtt internals
(with gateway/core/mqttclient.py, the connection helpers it shares with the uplink).

aiomqtt 2.5 hands every incoming PUBLISH to an ``asyncio.Queue`` from inside the socket
reader callback; when that queue is full it *discards* the message, after paho has
already sent PUBACK for QoS 1. That is silent data loss, so the queue must never fill.
Instead, this module stops reading the socket before it does:

* :class:`FlowQueue` (passed to aiomqtt as ``queue_type``) stamps each message with its
  receive time, calls ``on_high`` when ``high`` messages wait and ``on_low`` once the
  consumer has taken it down to ``low``.
* :class:`ReadGate` takes over the paho socket's reader: it reads several packets per
  event-loop wake-up (aiomqtt reads one, which halves the rate for small messages) and
  pauses/resumes reading (``loop.remove_reader`` / ``add_reader``). paho reads exactly
  the bytes of one MQTT packet at a time and leaves the rest in the kernel, so a paused
  socket means TCP flow control: the broker holds further messages (QoS 1 ones stay
  unacknowledged in the session) instead of this process buffering them. The reader
  checks the pause before every packet, so the queue stops at ``high``; aiomqtt's hard
  limit still has headroom above it, and :attr:`FlowQueue.dropped` counts if it is ever
  reached.

While paused, no PINGRESP is read either: if the consumer stays blocked for more than
about 1.5 x keepalive, paho drops the connection and the adapter reconnects (a stalled
pipeline, not a normal condition).

Internals used (aiomqtt 2.5.x, paho-mqtt 2.x): ``Client._client`` (the paho client),
``Client._disconnected`` (future set when the connection ends), ``Client._connected``
(future set on CONNACK, see :func:`~gateway.core.mqttclient.fail_fast_connect`, which the
uplink's MQTT transport shares), and the shape of aiomqtt's socket reader callback, which
:meth:`ReadGate._on_readable` reproduces. The
backpressure and reconnect integration tests fail if these change.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import aiomqtt

# shared with the uplink's MQTT transport, so they live in the core; re-exported here
from gateway.core.mqttclient import disconnected as disconnected
from gateway.core.mqttclient import fail_fast_connect as fail_fast_connect

if TYPE_CHECKING:
    from paho.mqtt.client import SocketLike

Item = tuple[int, aiomqtt.Message]  # (receive time ns, message)


class FlowQueue(asyncio.Queue[Any]):
    """aiomqtt's incoming queue: items become ``(recv_ns, message)``; high/low water callbacks."""

    def __init__(self, maxsize: int, high: int, low: int) -> None:
        super().__init__(maxsize=maxsize)
        self.high = high
        self.low = low
        self.on_high: Callable[[], None] | None = None
        self.on_low: Callable[[], None] | None = None
        self.dropped = 0  # messages aiomqtt discarded because the hard limit was hit
        self.peak = 0

    def put_nowait(self, item: Any) -> None:
        if self.full():
            self.dropped += 1  # aiomqtt catches QueueFull and logs a warning
        super().put_nowait(item)

    def _put(self, item: Any) -> None:  # called by put_nowait, in the socket reader callback
        super()._put((time.time_ns(), item))
        n = self.qsize()
        if n > self.peak:
            self.peak = n
        if n >= self.high and self.on_high is not None:
            self.on_high()

    def _get(self) -> Any:
        item = super()._get()
        if self.qsize() <= self.low and self.on_low is not None:
            self.on_low()
        return item


def queue_factory(queue: FlowQueue) -> type[asyncio.Queue[aiomqtt.Message]]:
    """What to pass as aiomqtt's ``queue_type`` so that it uses ``queue`` (aiomqtt calls it with ``maxsize=``)."""

    def make(maxsize: int = 0) -> FlowQueue:
        return queue

    return make  # type: ignore[return-value]


MAX_PACKETS_PER_WAKEUP = 256


def _more_to_read(sock: Any) -> bool:
    """Are there bytes waiting in the kernel (or already decrypted by TLS)?"""
    if hasattr(sock, "pending") and sock.pending() > 0:
        return True
    try:
        # the raw socket, also for an SSLSocket (whose recv() takes no flags): encrypted bytes count too
        socket.socket.recv(sock, 1, socket.MSG_PEEK | socket.MSG_DONTWAIT)
    except (BlockingIOError, InterruptedError):
        return False
    except OSError:
        return True  # let paho's read see the error
    return True  # data, or EOF (paho's read notices the close)


class ReadGate:
    """Owns the read side of one connected aiomqtt client: batched reads, pause and resume.

    :meth:`install` replaces aiomqtt's socket reader (one MQTT packet per event-loop
    wake-up) with one that reads up to ``MAX_PACKETS_PER_WAKEUP`` packets while data is
    waiting: for small messages the event loop round trip per packet is what limits the
    rate otherwise.
    """

    def __init__(self, client: aiomqtt.Client) -> None:
        self._client = client
        self._paho = client._client
        self._loop = asyncio.get_running_loop()
        self._paused_sock: SocketLike | None = None
        self.pauses = 0

    @property
    def paused(self) -> bool:
        return self._paused_sock is not None

    def install(self) -> None:
        sock = self._paho.socket()
        if sock is None or sock.fileno() < 0 or self._paused_sock is not None:
            return
        self._loop.remove_reader(sock.fileno())
        self._loop.add_reader(sock.fileno(), self._on_readable)
        self._loop.call_soon(self._on_readable)  # bytes TLS decrypted already never wake the selector

    def pause(self, count: bool = True) -> None:
        """Stop reading; ``count`` it in ``pauses`` (flow control) unless it is for stopping."""
        if self._paused_sock is not None:
            return
        sock = self._paho.socket()
        if sock is None or sock.fileno() < 0:
            return
        self._loop.remove_reader(sock.fileno())
        self._paused_sock = sock
        self.pauses += count

    def resume(self) -> None:
        sock = self._paused_sock
        if sock is None:
            return
        self._paused_sock = None
        if self._paho.socket() is not sock or sock.fileno() < 0:
            return  # that connection is gone; a new one has its own reader
        self._loop.add_reader(sock.fileno(), self._on_readable)
        self._loop.call_soon(self._on_readable)

    def _on_readable(self) -> None:
        # aiomqtt's reader callback, reading while data is waiting and stopping when paused
        paho = self._paho
        try:
            for _ in range(MAX_PACKETS_PER_WAKEUP):
                if self._paused_sock is not None:
                    return
                paho.loop_read()
                sock = paho.socket()
                if sock is None or not _more_to_read(sock):
                    return
        except Exception as exc:
            fut = self._client._disconnected
            if not fut.done():
                fut.set_exception(exc)


async def next_item(client: aiomqtt.Client, queue: FlowQueue, stop: asyncio.Future[None]) -> Item | None:
    """The next message; ``None`` once ``stop`` is set; raises ``MqttError`` when the connection ends.

    Unlike ``client.messages`` this creates no task while messages are waiting, and it
    can be interrupted by ``stop`` without losing a message already taken off the queue.
    """
    if queue.qsize():
        return queue.get_nowait()
    disc = client._disconnected
    if stop.done():
        return None
    if disc.done():
        raise aiomqtt.MqttError("Disconnected during message iteration") from disc.exception()
    get = asyncio.ensure_future(queue.get())
    try:
        await asyncio.wait((get, disc, stop), return_when=asyncio.FIRST_COMPLETED)
    except asyncio.CancelledError:
        get.cancel()
        raise
    if get.done() and not get.cancelled():
        return get.result()
    get.cancel()
    if disc.done():
        raise aiomqtt.MqttError("Disconnected during message iteration") from disc.exception()
    return None


def abandon(client: aiomqtt.Client) -> None:
    """Best-effort close of a connection whose context was never entered or was cancelled mid-way."""
    # best effort: if this fails too, the socket closes when the client is collected
    with contextlib.suppress(Exception):
        client._client.disconnect()
