"""MQTT transport for uplink profiles (aiomqtt on paho-mqtt 2).

``mqtt://`` or ``mqtts://`` (TLS with ``uplink.ca``, client certificate ``uplink.cert`` /
``uplink.key``), ``uplink.username`` / ``uplink.password``. :meth:`MqttTransport.send`
publishes a sequence in order and returns when the broker acknowledged every message
(PUBACK, QoS 1; at QoS 0 when paho handed it to the socket). paho sends in call order on
one connection and keeps up to ``max_inflight`` unacknowledged, so a backlog is pipelined
without losing order.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import aiomqtt

from gateway.core import mqttclient
from gateway.uplink.connection import CONNECT_TIMEOUT, tls_context
from gateway.uplink.profile import Message, Transport, TransportError

if TYPE_CHECKING:
    from gateway.config import Config
    from gateway.core.config import Uplink



class MqttTransport(Transport):
    def __init__(
        self, config: Config, uplink: Uplink, *, ack_timeout: float = 10.0, keepalive: float = 30.0,
        max_inflight: int = 100,
    ) -> None:
        self.uplink = uplink
        u = urlsplit(uplink.url)
        self.tls = u.scheme == "mqtts"
        self.host = u.hostname or "localhost"
        self.port = u.port or (8883 if self.tls else 1883)
        self.client_id = uplink.client_id or f"hazardgw-uplink-{config.site.code}"
        self.ack_timeout = ack_timeout
        self.keepalive = keepalive
        self.max_inflight = max_inflight
        self._client: aiomqtt.Client | None = None

    def describe(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def connected(self) -> bool:
        c = self._client
        return c is not None and not mqttclient.disconnected(c).done()

    async def connect(self) -> None:
        await self.close()
        kw: dict[str, Any] = {}
        if self.tls:
            kw["tls_context"] = await tls_context(self.uplink)
        if self.uplink.username is not None:
            kw["username"] = self.uplink.username
            pw = self.uplink.password
            kw["password"] = pw.get_secret_value() if pw is not None else None
        client = aiomqtt.Client(
            self.host, self.port, identifier=self.client_id, keepalive=max(1, round(self.keepalive)),
            timeout=CONNECT_TIMEOUT, protocol=aiomqtt.ProtocolVersion.V311, clean_session=True,
            max_inflight_messages=self.max_inflight, **kw,
        )
        client.pending_calls_threshold = 10_000  # aiomqtt warns above 10: a backlog batch is normal here
        mqttclient.fail_fast_connect(client)
        try:
            await client.__aenter__()
        except (aiomqtt.MqttError, OSError, ssl.SSLError, ValueError) as e:
            raise TransportError(f"cannot connect to {self.describe()}: {e}") from None
        self._client = client

    async def send(self, messages: Sequence[Message]) -> None:
        client = self._client
        if client is None or mqttclient.disconnected(client).done():
            raise TransportError("not connected")
        qos = self.uplink.qos
        # gather starts the publishes in order: paho queues them in that order on the socket
        results = await asyncio.gather(
            *(client.publish(m.topic, m.payload.encode("utf-8"), qos=qos, timeout=self.ack_timeout)
              for m in messages),
            return_exceptions=True,
        )
        errors = [r for r in results if isinstance(r, BaseException)]
        if errors:
            await self.close()
            raise TransportError(f"{len(errors)} of {len(messages)} messages not acknowledged: {errors[0]}")

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.__aexit__(None, None, None), 2.0)
            gone = mqttclient.disconnected(client)
            if gone.done() and not gone.cancelled():
                gone.exception()  # retrieved: the reason was already reported by send()/connect()
