"""bench.common.BulkPublisher: the bulk benchmarks' load generator starts its clock only when
``mosquitto_pub -l`` is connected and reading, and delivers every line of the file."""

from __future__ import annotations

import threading
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from bench.common import BulkPublisher
from devkit.services import Mosquitto, free_port


def test_ready_then_every_line_delivered_in_order(mosquitto: Mosquitto, tmp_path: Path) -> None:
    got: list[bytes] = []
    done = threading.Event()
    subscribed = threading.Event()
    lines = [f'[{{"tag":"TT-{i:04d}","v":{i}.5}}]'.encode() for i in range(500)]

    def on_message(_c: mqtt.Client, _u: object, m: mqtt.MQTTMessage) -> None:
        got.append(m.payload)
        if len(got) == len(lines):
            done.set()

    sub = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    sub.on_message = on_message
    sub.on_subscribe = lambda *_a: subscribed.set()
    sub.connect(mosquitto.host, mosquitto.port)
    sub.subscribe("bench/t", qos=1)
    sub.loop_start()
    try:
        assert subscribed.wait(10)
        payload = tmp_path / "p.txt"
        payload.write_bytes(b"\n".join(lines) + b"\n")
        pub = BulkPublisher(mosquitto.host, mosquitto.port, "bench/t", qos=1)
        pub.wait_ready(timeout=30)
        assert pub.ready()
        assert got == []  # nothing is published before the file is fed
        pub.feed(payload)
        assert pub.wait(timeout=60) == 0
        assert done.wait(30), f"{len(got)} of {len(lines)} lines arrived"
        assert got == lines
    finally:
        sub.loop_stop()
        sub.disconnect()


def test_a_publisher_that_cannot_connect_is_an_error_not_a_hang() -> None:
    pub = BulkPublisher("127.0.0.1", free_port(), "bench/t", qos=1)  # nothing listens there
    with pytest.raises(RuntimeError, match="mosquitto_pub"):
        pub.wait_ready(timeout=30)
    pub.kill()
