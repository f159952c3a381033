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

Acknowledgements (:class:`ManualAcks`): aiomqtt 2.5.1 has no manual-ack API (its
``Client`` neither takes paho's ``manual_ack`` nor exposes ``ack``), so this module turns on
paho's ``manual_ack_set(True)`` on the paho client and the adapter sends each QoS 1 PUBACK
itself, after the readings are committed. For QoS 2, paho sends PUBREC on receipt and
delivers the message only at PUBREL (it holds it in memory in between: a crash then loses a
message the broker considers delivered). :class:`ManualAcks` therefore delivers a QoS 2
message on PUBLISH and holds back the PUBREC until the commit (MQTT's "method B": the
broker sends the PUBLISH again after a reconnect until it has the PUBREC), and answers
every PUBREL with PUBCOMP. A message may thus arrive twice after a crash; readings are
idempotent (same series and timestamp), so none is lost and none is doubled in InfluxDB.

Internals used (aiomqtt 2.5.x, paho-mqtt 2.x): ``Client._client`` (the paho client),
``Client._disconnected`` (future set when the connection ends), ``Client._connected``
(future set on CONNACK, see :func:`~gateway.core.mqttclient.fail_fast_connect`, which the
uplink's MQTT transport shares), the shape of aiomqtt's socket reader callback, which
:meth:`ReadGate._on_readable` reproduces, and for acknowledgements paho's
``manual_ack_set``/``ack``, ``_handle_publish``, ``_handle_pubrel``, ``_send_pubrec``,
``_send_pubcomp``, ``_in_messages``, ``_in_packet`` and ``_handle_on_message``. The
backpressure, reconnect, QoS 2 and kill -9 integration tests fail if these change.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
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
_QUICKACK = getattr(socket, "TCP_QUICKACK", None)  # Linux


def quick_ack(sock: Any) -> None:
    """Acknowledge what was read at once instead of up to 40 ms later (Linux delayed ACK).

    A broker that does not set TCP_NODELAY (mosquitto's default, ``set_tcp_nodelay false``)
    holds a small PUBLISH under Nagle's algorithm until its previous segment to us is
    acknowledged; with our delayed ACK that put 20-45 ms on an alarm reading arriving right
    after background traffic (issue 23, measured). Linux clears the flag again by itself, so
    it is set after every read (one setsockopt per wake-up, not per packet); setting it also
    sends an ACK that is due."""
    if _QUICKACK is None:
        return
    with contextlib.suppress(OSError, AttributeError, ValueError):
        sock.setsockopt(socket.IPPROTO_TCP, _QUICKACK, 1)


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
    rate otherwise. After each wake-up's reads it acknowledges them at once
    (:func:`quick_ack`).
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
        if self._paho.socket() is not sock or sock is None or sock.fileno() < 0:
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
                if sock is None:
                    return
                if not _more_to_read(sock):
                    quick_ack(sock)
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
    """Close a connection whose context was never entered or was cancelled mid-way (e.g. stop()
    while the broker has not sent CONNACK), without an error log or a traceback."""
    paho = client._client
    if client._connected.done() and not client._connected.exception():
        with contextlib.suppress(Exception):
            paho.disconnect()  # connected: say goodbye; the socket closes when the client is collected
    else:
        # no CONNACK: nothing to say. Close the socket after any writer registration paho's
        # connect scheduled on the loop (call_soon keeps their order), so none meets a closed fd.
        with contextlib.suppress(Exception):
            asyncio.get_running_loop().call_soon(paho._sock_close)
    # the connect/disconnect futures may hold an exception nobody will await: mark it
    # retrieved, or asyncio logs "Future exception was never retrieved" with a traceback
    for fut in (client._connected, client._disconnected):
        if fut.done() and not fut.cancelled():
            fut.exception()


class ManualAcks:
    """QoS 1 and 2 acknowledgements sent by the adapter (see the module docstring).

    Install on a fresh client before it connects (a persistent session's backlog arrives
    right after CONNACK). :meth:`ack` must be called once per QoS 1/2 message, in the order
    the messages arrived (MQTT 4.6), and only on the connection the message came on."""

    def __init__(self, client: aiomqtt.Client) -> None:
        paho = client._client
        self._paho = paho
        paho.manual_ack_set(True)
        handle_publish = paho._handle_publish
        handle_pubrel = paho._handle_pubrel
        self._send_pubrec = send_pubrec = paho._send_pubrec
        send_pubcomp = paho._send_pubcomp
        deferring = False

        def pubrec_later(mid: int) -> Any:
            if deferring:
                return 0  # MQTT_ERR_SUCCESS: sent by ack() after the commit
            return send_pubrec(mid)

        def on_publish() -> Any:
            nonlocal deferring
            deferring = True
            try:
                rc = handle_publish()
            finally:
                deferring = False
            held = paho._in_messages
            if held:  # a QoS 2 message paho keeps for PUBREL: deliver it now instead
                with paho._in_message_mutex:
                    msgs = list(held.values())
                    held.clear()
                for m in msgs:
                    paho._handle_on_message(m)
            return rc

        def on_pubrel() -> Any:
            rc = handle_pubrel()
            packet = paho._in_packet["packet"]
            if len(packet) >= 2:
                send_pubcomp(struct.unpack("!H", bytes(packet[:2]))[0])
            return rc

        paho._send_pubrec = pubrec_later  # type: ignore[method-assign]
        paho._handle_publish = on_publish  # type: ignore[method-assign]
        paho._handle_pubrel = on_pubrel  # type: ignore[method-assign]

    def ack(self, mid: int, qos: int) -> None:
        """PUBACK (QoS 1) or PUBREC (QoS 2) for one message; a closed connection ignores it."""
        if qos == 1:
            self._paho.ack(mid, 1)
        elif qos == 2:
            self._send_pubrec(mid)
