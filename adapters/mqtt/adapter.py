"""The MQTT source adapter: broker connection, subscriptions, routing, decode, emit.

One task per source runs a connect -> subscribe -> consume loop. Each connection attempt
uses a fresh ``aiomqtt.Client`` (the maintainers' advice; a reused client does not reset
its CONNACK state after an unexpected disconnect). Between attempts it waits a capped
exponential backoff (:class:`gateway.core.backoff.Backoff`: ``reconnect_min`` doubling up
to ``reconnect_max``, +-20 % jitter); the delay resets after a connection has
stayed up for ``reconnect_max``, so a broker that accepts and then drops us (for example
another client with the same client id) is not hammered.

Messages that arrive together are decoded into one batch (up to ``MAX_BATCH`` readings)
and handed to ``ctx.emit`` once; while ``emit`` waits, the incoming queue fills to
``queue_size`` and reading from the socket pauses (:mod:`adapters.mqtt.flow`), so memory
stays bounded and the broker holds what we have not read.

Acknowledgements: QoS 1 and 2 messages are acknowledged by the adapter (paho's manual
acks, :class:`adapters.mqtt.flow.ManualAcks`), per batch, in arrival order, by one acker
task per connection: after ``emit`` the batch takes a ticket from ``ctx.durable`` and is
acknowledged when the pipeline says its readings are committed to the InfluxDB spool (or,
without one, evaluated by the alarm engine). A commit that fails or takes longer than
``ACK_WAIT`` does not hold acknowledgements back (the alarm engine has seen the readings;
a stalled broker would blind it): they go out, counted as ``acked_uncommitted``.
Subscriptions with ``ack: receipt`` are acknowledged once decoded (still in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import aiomqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from adapters.mqtt import flow
from adapters.mqtt.config import MqttSource
from adapters.mqtt.payload import Decoder, Problem, make_decoder
from adapters.mqtt.sparkplug import SparkplugDecoder, rebirth_request
from adapters.mqtt.topics import TopicRouter
from gateway.core.backoff import Backoff
from gateway.core.models import Reading
from gateway.core.ratelog import RateLimitedLog
from gateway.core.sources import SourceContext
from gateway.core.tls import load_client_context

log = logging.getLogger(__name__)

MAX_BATCH = 5000  # readings per emit when messages are coalesced
CONNECT_TIMEOUT = 10.0  # s, CONNACK / SUBACK wait
STOP_TIMEOUT = 5.0  # s, for stop() to hand over what is already queued
ACK_WAIT = 5.0  # s, longest wait for the commit of a batch before acknowledging it anyway


class _Route(NamedTuple):
    where: str  # the subscription's topic as configured: the `where` label of decode_errors
    decoder: Decoder
    sub_id: int  # MQTT 5 subscription identifier of its filter (1-based)
    after_commit: bool  # ack: commit


class _Acker:
    """Sends a connection's acknowledgements in arrival order, each batch once it is committed."""

    def __init__(self, adapter: MqttAdapter, acks: flow.ManualAcks) -> None:
        self._adapter = adapter
        self._acks = acks
        self._q: deque[tuple[int | None, list[tuple[int, int]]]] = deque()
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self.pending = 0
        self._task = asyncio.create_task(self._run(), name=f"mqtt-acks:{adapter.id}")

    def push(self, ticket: int | None, mids: list[tuple[int, int]]) -> None:
        self._q.append((ticket, mids))
        self.pending += len(mids)
        self._idle.clear()
        self._wake.set()

    async def _run(self) -> None:
        a = self._adapter
        durable = a.ctx.durable
        q = self._q
        while True:
            if not q:
                self._idle.set()
                self._wake.clear()
                await self._wake.wait()
                continue
            ticket, mids = q[0]
            if ticket is not None and durable is not None and not await durable.wait(ticket, ACK_WAIT):
                a.acked_uncommitted += len(mids)
                a._rlog.warning("uncommitted", "mqtt %s: readings not committed to the spool within %.0f s "
                                "(disk slow or failing?): acknowledged anyway, the alarm engine has them",
                                a.id, ACK_WAIT)
            q.popleft()
            ack = self._acks.ack
            for mid, qos in mids:
                ack(mid, qos)
            self.pending -= len(mids)
            a.acked += len(mids)

    async def drain(self, within: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), within)

    async def close(self) -> None:
        """Stop; what is not acknowledged yet the broker sends again (persistent session)."""
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self._q.clear()
        self.pending = 0


def _describe(e: BaseException | None) -> str:
    if e is None:
        return "disconnected"
    text = f"{type(e).__name__}: {e}"
    if e.__cause__ is not None:
        text += f" ({type(e.__cause__).__name__}: {e.__cause__})"
    return text


class MqttAdapter:
    """A ``type: mqtt`` source (see README.md in this folder)."""

    def __init__(self, cfg: MqttSource, ctx: SourceContext) -> None:
        self.cfg = cfg
        self.ctx = ctx
        self.id = cfg.id
        u = urlsplit(cfg.url)
        self.tls = u.scheme == "mqtts"
        self.host = u.hostname or "localhost"
        self.port = u.port or (8883 if self.tls else 1883)
        self.client_id = cfg.client_id or f"hazardgw-{cfg.id}"
        self.v5 = cfg.protocol == "5"

        # one broker subscription per distinct filter (highest QoS asked for); a route per subscription
        self._filters: dict[str, int] = {}
        for sub in cfg.subscriptions:
            self._filters[sub.filter] = max(sub.qos, self._filters.get(sub.filter, 0))
        filter_ids = {f: i + 1 for i, f in enumerate(self._filters)}
        routes = []
        self._sparkplug: list[SparkplugDecoder] = []
        for sub in cfg.subscriptions:
            decoder = make_decoder(sub, ctx.tags, cfg.max_payload, cfg.timezone)
            if isinstance(decoder, SparkplugDecoder):
                self._sparkplug.append(decoder)
            routes.append((sub.filter, _Route(sub.topic, decoder, filter_ids[sub.filter], sub.ack == "commit")))
        self._router: TopicRouter[_Route] = TopicRouter(routes)

        m = ctx.metrics
        self._m_readings = m.readings_in.labels(cfg.id)
        self._m_connected = m.source_connected.labels(cfg.id)
        self._m_connected.set(0)
        self._m_errors: dict[tuple[str, str], Any] = {}
        self._rlog = RateLimitedLog(log, interval=30.0)

        self._task: asyncio.Task[None] | None = None
        self._stop: asyncio.Future[None] | None = None
        self._stopping = False
        self._queue: flow.FlowQueue | None = None
        self._gate: flow.ReadGate | None = None
        self._acker: _Acker | None = None
        self._connecting = False
        self._batch_commit = False  # the batch being decoded has readings of an ack: commit subscription
        self._rebirths: list[tuple[str, str]] = []  # Sparkplug B nodes to ask for a birth
        # state for health()
        self.connected = False
        self.connected_since: float | None = None  # wall clock
        self.last_message: float | None = None  # wall clock
        self.last_error: str | None = None
        self.failed_subscriptions: list[str] = []
        self.messages = 0
        self.readings = 0
        self.problems = 0
        self.unrouted = 0
        self.reconnects = 0
        self.dropped = 0
        self.pauses = 0
        self.queue_peak = 0
        self.lost_on_stop = 0
        self.acked = 0
        self.acked_uncommitted = 0
        self.rebirths = 0

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        if self._task is not None:
            return
        self._stopping = False
        self._stop = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._run(), name=f"mqtt:{self.id}")

    async def stop(self) -> None:
        """Stop reading, hand what is already queued to ``emit``, disconnect cleanly. Idempotent."""
        task = self._task
        if task is None:
            return
        self._stopping = True
        if self._stop is not None and not self._stop.done():
            self._stop.set_result(None)
        if self._gate is not None:
            self._gate.pause(count=False)  # unread QoS 1 messages stay with the broker (persistent session)
        if self._connecting:
            task.cancel()  # nothing received yet: do not wait for a CONNACK that may never come
        else:
            try:
                await asyncio.wait_for(asyncio.shield(task), STOP_TIMEOUT)
            except TimeoutError:
                log.warning("mqtt %s: stop timed out after %.0f s (emit blocked?); cancelling", self.id,
                            STOP_TIMEOUT)
                task.cancel()
            except asyncio.CancelledError:
                if not task.done():
                    raise  # stop() itself was cancelled
        with contextlib.suppress(asyncio.CancelledError):
            await task
        self._task = None
        self._set_connected(False)

    def health(self) -> dict[str, Any]:
        q = self._queue
        return {
            "ok": self.connected and not self.failed_subscriptions,
            "connected": self.connected,
            "broker": f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}",
            "client_id": self.client_id,
            "connected_since": self.connected_since,
            "last_message": self.last_message,
            "last_error": self.last_error,
            "failed_subscriptions": list(self.failed_subscriptions),
            "messages": self.messages,
            "readings": self.readings,
            "decode_errors": self.problems,
            "unrouted": self.unrouted,
            "reconnects": self.reconnects,
            "queue": q.qsize() if q is not None else 0,
            "queue_peak": max(self.queue_peak, q.peak if q is not None else 0),
            "paused": self._gate.paused if self._gate is not None else False,
            "pauses": self.pauses + (self._gate.pauses if self._gate is not None else 0),
            "dropped": self.dropped + (q.dropped if q is not None else 0),
            "acked": self.acked,
            "unacked": self._acker.pending if self._acker is not None else 0,
            "acked_uncommitted": self.acked_uncommitted,
            "rebirths": self.rebirths,
        }

    # ------------------------------------------------------------------ connection loop

    async def _run(self) -> None:
        backoff = Backoff(self.cfg.reconnect_min, self.cfg.reconnect_max)
        outage_since: float | None = time.monotonic()  # not connected yet
        was_connected = False
        assert self._stop is not None
        while not self._stopping:
            up_at: float | None = None
            error: BaseException | None = None
            client: aiomqtt.Client | None = None
            queue: flow.FlowQueue | None = None
            acks: flow.ManualAcks | None = None
            try:
                client, queue, acks = await self._make_client()
                self._connecting = True
                async with client:
                    self._connecting = False
                    up_at = time.monotonic()
                    self._gate = gate = flow.ReadGate(client)
                    gate.install()
                    queue.on_high = gate.pause
                    queue.on_low = gate.resume
                    if not self._stopping:
                        await self._subscribe(client)
                        self._set_connected(True)
                        if was_connected or backoff.attempts:
                            log.info("mqtt %s: connected to %s:%d after %.1f s", self.id, self.host, self.port,
                                     up_at - (outage_since or up_at))
                        else:
                            log.info("mqtt %s: connected to %s:%d as %s", self.id, self.host, self.port,
                                     self.client_id)
                        outage_since = None
                        was_connected = True
                        self._acker = _Acker(self, acks)
                        try:
                            await self._consume(client, queue, gate)
                            # stopping: acknowledge what was handed over before saying goodbye
                            await self._acker.drain(STOP_TIMEOUT)
                        finally:
                            await self._acker.close()
                            self._acker = None
            except asyncio.CancelledError:
                self._connecting = False
                self._queue = None
                if queue is not None and queue.qsize():
                    self.lost_on_stop += queue.qsize()
                    log.warning("mqtt %s: %d received messages not delivered (stop timed out)", self.id,
                                queue.qsize())
                if client is not None and up_at is None:
                    flow.abandon(client)
                self._set_connected(False)
                raise
            except (aiomqtt.MqttError, OSError, ssl.SSLError, ValueError) as e:
                self._connecting = False
                error = e
            except Exception as e:  # a bug: log it with a traceback, but keep the source alive
                self._connecting = False
                error = e
                log.exception("mqtt %s: unexpected error; reconnecting", self.id)
            finally:
                if self._gate is not None:
                    self.pauses += self._gate.pauses
                    self._gate = None
                if queue is not None:
                    queue.on_high = queue.on_low = None
            self._set_connected(False)
            if queue is not None:
                await self._leftovers(queue)
                self.dropped += queue.dropped
                self.queue_peak = max(self.queue_peak, queue.peak)
                self._queue = None
            if self._stopping:
                break
            self.last_error = _describe(error)
            now = time.monotonic()
            if up_at is not None and now - up_at >= self.cfg.reconnect_max:
                backoff.reset()
            if outage_since is None:  # we were connected: log the loss once
                outage_since = now
                self.reconnects += 1
                log.warning("mqtt %s: lost connection to %s:%d (%s); reconnecting", self.id, self.host, self.port,
                            self.last_error)
            elif backoff.attempts == 0:
                log.warning("mqtt %s: cannot connect to %s:%d (%s); retrying every %g..%g s", self.id,
                            self.host, self.port, self.last_error, self.cfg.reconnect_min, self.cfg.reconnect_max)
            else:
                log.debug("mqtt %s: connect attempt %d failed: %s", self.id, backoff.attempts + 1, self.last_error)
            delay = backoff.next_delay()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(self._stop), delay)

    async def _make_client(self) -> tuple[aiomqtt.Client, flow.FlowQueue, flow.ManualAcks]:
        cfg = self.cfg
        n = cfg.queue_size
        queue = flow.FlowQueue(maxsize=n + max(n, 1024), high=n, low=n // 2)
        self._queue = queue
        kw: dict[str, Any] = {}
        if self.tls:
            kw["tls_context"] = await load_client_context(cfg.ca, cfg.cert, cfg.key, insecure=cfg.tls_insecure)
        if cfg.username is not None:
            kw["username"] = cfg.username
            kw["password"] = cfg.password.get_secret_value() if cfg.password is not None else None
        if self.v5:
            props = Properties(PacketTypes.CONNECT)
            props.SessionExpiryInterval = int(cfg.session_expiry) if cfg.persistent_session else 0
            kw.update(protocol=aiomqtt.ProtocolVersion.V5, clean_start=not cfg.persistent_session, properties=props)
        else:
            kw.update(protocol=aiomqtt.ProtocolVersion.V311, clean_session=not cfg.persistent_session)
        client = aiomqtt.Client(
            self.host,
            self.port,
            identifier=self.client_id,
            keepalive=max(1, round(cfg.keepalive)),
            timeout=CONNECT_TIMEOUT,
            queue_type=flow.queue_factory(queue),
            max_queued_incoming_messages=queue.maxsize,
            **kw,
        )
        flow.fail_fast_connect(client)
        return client, queue, flow.ManualAcks(client)

    async def _subscribe(self, client: aiomqtt.Client) -> None:
        failed: list[str] = []
        for i, (topic, qos) in enumerate(self._filters.items()):
            if self.v5:
                props = Properties(PacketTypes.SUBSCRIBE)
                props.SubscriptionIdentifier = i + 1
                codes = await client.subscribe(topic, options=SubscribeOptions(qos=qos), properties=props)
            else:
                codes = await client.subscribe(topic, qos)
            code = codes[0] if codes else None
            value = getattr(code, "value", code)
            if value is None or value >= 0x80:
                failed.append(topic)
                log.error("mqtt %s: broker refused subscription %r (%s)", self.id, topic, code)
            elif value < qos:
                log.warning("mqtt %s: broker granted QoS %s for %r (asked %d)", self.id, value, topic, qos)
        self.failed_subscriptions = failed

    def _set_connected(self, up: bool) -> None:
        if up != self.connected:
            self.connected = up
            self.connected_since = time.time() if up else None
            self._m_connected.set(1 if up else 0)

    # ------------------------------------------------------------------ messages

    async def _consume(self, client: aiomqtt.Client, queue: flow.FlowQueue, gate: flow.ReadGate) -> None:
        assert self._stop is not None and self._acker is not None
        stop = self._stop
        decode = self._decode
        acker = self._acker
        durable = self.ctx.durable
        while True:
            if stop.done() and not gate.paused:
                gate.pause(count=False)  # stopping: take what is queued, read nothing more
            item = await flow.next_item(client, queue, stop)
            if item is None:
                return
            mids: list[tuple[int, int]] = []
            self._batch_commit = False
            batch = decode(item, mids)
            while len(batch) < MAX_BATCH and queue.qsize():
                batch.extend(decode(queue.get_nowait(), mids))
            if batch:
                await self._emit(batch)
            if mids:
                acker.push(durable.ticket() if durable is not None and self._batch_commit else None, mids)
            if self._rebirths:
                await self._send_rebirths(client)

    async def _leftovers(self, queue: flow.FlowQueue) -> None:
        """Messages still queued when a connection ends: deliver them. They are not acknowledged
        (with a persistent session the broker sends them again: a duplicate is the same
        series and timestamp), but a clean session would not resend them."""
        while queue.qsize():
            batch: list[Reading] = []
            while len(batch) < MAX_BATCH and queue.qsize():
                batch.extend(self._decode(queue.get_nowait(), None))
            if batch:
                await self._emit(batch)

    async def _send_rebirths(self, client: aiomqtt.Client) -> None:
        """Sparkplug B: the Rebirth NCMD to nodes with a sequence gap or unknown aliases
        (``rebirth: true`` only; the one message this source publishes)."""
        todo, self._rebirths = self._rebirths, []
        for group, edge in dict.fromkeys(todo):
            topic = f"spBv1.0/{group}/NCMD/{edge}"
            try:
                await client.publish(topic, rebirth_request(time.time_ns() // 1_000_000), qos=0)
            except aiomqtt.MqttError as e:
                self._rlog.warning(f"rebirth\0{edge}", "mqtt %s: Rebirth request to %s failed: %s", self.id, topic, e)
                continue
            self.rebirths += 1
            self._rlog.log(logging.INFO, f"rebirth\0{edge}", "mqtt %s: asked Sparkplug node %s/%s to rebirth "
                           "(sequence gap or unknown alias)", self.id, group, edge)

    def _decode(self, item: flow.Item, mids: list[tuple[int, int]] | None) -> list[Reading]:
        recv_ns, msg = item
        self.messages += 1
        if mids is not None and msg.qos:
            mids.append((msg.mid, msg.qos))
        topic = msg.topic.value
        routes: Sequence[_Route] = self._router.route(topic)
        props = msg.properties
        if props is not None:
            # MQTT 5 brokers send one copy per matching subscription, tagged with its identifier:
            # decode each copy only for the subscriptions it was sent for (and not for a copy sent
            # for a subscription left in a persistent session by an earlier configuration)
            ids = getattr(props, "SubscriptionIdentifier", None)
            if ids:
                routes = [r for r in routes if r.sub_id in ids]
        if not routes:
            self.unrouted += 1
            self._rlog.log(logging.INFO, "unrouted", "mqtt %s: message on %r matches no subscription "
                           "(left from an earlier configuration in a persistent session?)", self.id, topic)
            return []
        payload = msg.payload
        if not isinstance(payload, bytes):  # paho gives bytes; be safe with bytearray/str
            payload = payload.encode() if isinstance(payload, str) else bytes(payload or b"")
        retained = bool(msg.retain)
        if len(routes) == 1:
            r = routes[0]
            out, problems = r.decoder.decode(payload, recv_ns, retained, topic)
            if problems:
                self._count(r.where, topic, problems)
            if out and r.after_commit:
                self._batch_commit = True
        else:
            out = []
            for r in routes:
                readings, problems = r.decoder.decode(payload, recv_ns, retained, topic)
                if problems:
                    self._count(r.where, topic, problems)
                if readings and r.after_commit:
                    self._batch_commit = True
                out.extend(readings)
        if self._sparkplug:
            for d in self._sparkplug:
                if d.rebirth_requests:
                    self._rebirths.extend(d.rebirth_requests)
                    d.rebirth_requests.clear()
        return out

    def _count(self, where: str, topic: str, problems: Sequence[Problem]) -> None:
        self.problems += len(problems)
        for p in problems:
            key = (where, p.reason)
            child = self._m_errors.get(key)
            if child is None:
                child = self._m_errors[key] = self.ctx.metrics.decode_errors.labels(self.id, where, p.reason)
            child.inc()
            self._rlog.warning(f"{where}\0{p.reason}", "mqtt %s: %s on %r (subscription %r): %s",
                               self.id, p.reason, topic, where, p.detail)

    async def _emit(self, batch: list[Reading]) -> None:
        self.last_message = time.time()
        try:
            await self.ctx.emit(batch)
        except asyncio.CancelledError:
            raise
        except Exception:
            self.dropped += len(batch)
            self._rlog.log(logging.ERROR, "emit", "mqtt %s: emit failed; %d readings dropped", self.id, len(batch))
            return
        self.readings += len(batch)
        self._m_readings.inc(len(batch))
