"""aiomqtt connection helpers shared by the MQTT source (adapters/mqtt) and the uplink's MQTT transport.

They touch aiomqtt 2.5.x internals (``Client._client``, ``Client._connected``,
``Client._disconnected``); the rest of those internals is confined to
``adapters/mqtt/flow.py``. The MQTT reconnect and TLS integration tests fail if these change.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiomqtt


def fail_fast_connect(client: aiomqtt.Client) -> None:
    """Fail the CONNACK wait as soon as the connection closes, not after the full timeout.

    aiomqtt ignores a disconnect that happens before CONNACK (for example a broker that
    rejects our TLS client certificate after a TLS 1.3 handshake, or closes on a bad
    CONNECT), so ``__aenter__`` would wait its whole timeout.
    """
    paho = client._client
    original = paho.on_disconnect

    def on_disconnect(*args: Any) -> None:
        fut = client._connected
        if not fut.done():
            reason = args[3] if len(args) > 3 else "?"
            fut.set_exception(aiomqtt.MqttError(f"connection closed before CONNACK ({reason})"))
        if original is not None:
            original(*args)

    paho.on_disconnect = on_disconnect


def disconnected(client: aiomqtt.Client) -> asyncio.Future[None]:
    """The future aiomqtt completes when this connection ends."""
    return client._disconnected
