"""The server fixtures work against the real binaries (mosquitto, influxd 1.6, victoria-metrics)."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import threading
import time
from pathlib import Path

import aiomqtt
import httpx
import paho.mqtt.client as paho
import pytest
from helpers import (
    INFLUX_PASSWORD,
    INFLUX_USER,
    MQTT_PASSWORD,
    MQTT_USER,
    async_wait_for,
    wait_for,
)

from devkit.services import (
    Influxd,
    Mosquitto,
    ServiceError,
    TlsFiles,
    VictoriaMetrics,
    find_binary,
    free_port,
    make_password_file,
)

TS_NS = 1_732_300_000_123_456_789  # 2024-11-22T18:26:40.123456789Z


def _tool(name: str) -> str:
    try:
        return find_binary(name, f"/usr/bin/{name}")
    except ServiceError as exc:
        pytest.fail(str(exc), pytrace=False)


def mosquitto_pub(
    port: int, topic: str, message: str, *args: str, retain: bool = False
) -> subprocess.CompletedProcess[str]:
    argv = [_tool("mosquitto_pub"), "-h", "127.0.0.1", "-p", str(port), "-t", topic, "-m", message, "-q", "1"]
    if retain:
        argv.append("-r")
    return subprocess.run([*argv, *args], capture_output=True, text=True, timeout=30, check=False)


def tls_args(pki: TlsFiles, *, cert: bool = True, password: str = MQTT_PASSWORD) -> list[str]:
    args = ["--cafile", str(pki.ca), "-u", MQTT_USER, "-P", password]
    if cert:
        args += ["--cert", str(pki.client_cert), "--key", str(pki.client_key)]
    return args


class Subscriber:
    """A paho client in its own network thread that records received payloads."""

    def __init__(self, port: int, topic: str, **credentials: str) -> None:
        self.messages: list[tuple[str, bytes, bool]] = []
        self.subscribed = threading.Event()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2)
        if credentials:
            self.client.username_pw_set(credentials["username"], credentials["password"])
        self.client.on_connect = lambda c, _u, _f, _rc, _p: c.subscribe(topic, qos=1)
        self.client.on_subscribe = lambda _c, _u, _m, _rc, _p: self.subscribed.set()
        self.client.on_message = lambda _c, _u, msg: self.messages.append((msg.topic, msg.payload, msg.retain))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


# ------------------------------------------------------------------------- Mosquitto


def test_mosquitto_pub_sub(mosquitto: Mosquitto) -> None:
    assert mosquitto.url == f"mqtt://127.0.0.1:{mosquitto.port}"
    sub = Subscriber(mosquitto.port, "plant/+/telemetry")
    try:
        wait_for(sub.subscribed.is_set, desc="SUBACK")
        result = mosquitto_pub(mosquitto.port, "plant/t1/telemetry", '{"pressure": 1.25}')
        assert result.returncode == 0, result.stderr
        wait_for(lambda: sub.messages, desc="message delivered to the subscriber")
        assert sub.messages == [("plant/t1/telemetry", b'{"pressure": 1.25}', False)]
    finally:
        sub.close()


async def test_mosquitto_aiomqtt_roundtrip(mosquitto: Mosquitto) -> None:
    async with aiomqtt.Client("127.0.0.1", mosquitto.port) as client:
        await client.subscribe("a/b", qos=1)
        await client.publish("a/b", b"42", qos=1)
        async with asyncio.timeout(10):
            message = await anext(aiter(client.messages))
    assert (str(message.topic), message.payload) == ("a/b", b"42")


def test_mosquitto_kill_restart_keeps_port_and_retained(mosquitto: Mosquitto) -> None:
    port = mosquitto.port
    assert mosquitto_pub(port, "state/x", "retained-1", retain=True).returncode == 0
    mosquitto.restart()  # graceful: mosquitto saves its in-memory db on SIGTERM
    assert mosquitto.port == port and mosquitto.is_running

    mosquitto.kill()
    assert not mosquitto.is_running
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    mosquitto.kill()  # idempotent
    mosquitto.stop()

    mosquitto.start()
    assert mosquitto.port == port and mosquitto.is_running
    sub = Subscriber(port, "state/#")
    try:
        wait_for(lambda: sub.messages, desc="retained message after restart")
        assert sub.messages == [("state/x", b"retained-1", True)]
    finally:
        sub.close()


def test_mosquitto_tls_requires_client_certificate(mosquitto_tls: Mosquitto, test_pki: TlsFiles) -> None:
    tls_port = mosquitto_tls.tls_port
    assert tls_port is not None
    assert mosquitto_tls.tls_url == f"mqtts://127.0.0.1:{tls_port}"

    no_cert = mosquitto_pub(tls_port, "t", "x", *tls_args(test_pki, cert=False))
    assert no_cert.returncode != 0
    wait_for(lambda: "peer did not return a certificate" in mosquitto_tls.log_tail(), desc="TLS rejection logged")

    with_cert = mosquitto_pub(tls_port, "t", "x", *tls_args(test_pki))
    assert with_cert.returncode == 0, with_cert.stderr

    wrong_password = mosquitto_pub(tls_port, "t", "x", *tls_args(test_pki, password="wrong"))
    assert wrong_password.returncode != 0
    assert "not authorised" in (wrong_password.stdout + wrong_password.stderr).lower()

    # The password file applies to the plain listener too.
    assert mosquitto_pub(mosquitto_tls.port, "t", "x").returncode != 0
    assert mosquitto_pub(mosquitto_tls.port, "t", "x", "-u", MQTT_USER, "-P", MQTT_PASSWORD).returncode == 0


async def test_mosquitto_tls_python_client(mosquitto_tls: Mosquitto, test_pki: TlsFiles) -> None:
    """Python's ssl verifies the server cert by its IP SAN and presents the client cert."""
    assert mosquitto_tls.tls_port is not None
    tls = aiomqtt.TLSParameters(
        ca_certs=str(test_pki.ca), certfile=str(test_pki.client_cert), keyfile=str(test_pki.client_key)
    )
    async with aiomqtt.Client(
        "127.0.0.1", mosquitto_tls.tls_port, username=MQTT_USER, password=MQTT_PASSWORD, tls_params=tls
    ) as client:
        await client.subscribe("secure/#", qos=1)
        await client.publish("secure/1", b"ok", qos=1)
        async with asyncio.timeout(10):
            message = await anext(aiter(client.messages))
    assert message.payload == b"ok"


def test_python_password_file_works_with_broker(tmp_path: Path) -> None:
    password_file = make_password_file(tmp_path / "pw", {"alice": "s3cr:et", "bob": "x"}, use_tool=False)
    with Mosquitto(tmp_path / "mq", password_file=password_file) as broker:
        assert mosquitto_pub(broker.port, "t", "x", "-u", "alice", "-P", "s3cr:et").returncode == 0
        assert mosquitto_pub(broker.port, "t", "x", "-u", "bob", "-P", "x").returncode == 0
        assert mosquitto_pub(broker.port, "t", "x", "-u", "alice", "-P", "nope").returncode != 0


def test_start_failure_reports_log_tail(tmp_path: Path) -> None:
    broker = Mosquitto(tmp_path, extra_config="no_such_option 1")
    with pytest.raises(ServiceError, match=r"(?s)exited with code.*no_such_option"):
        broker.start()
    assert not broker.is_running
    broker.stop()  # idempotent after a failed start

    with pytest.raises(ServiceError, match="does not exist"):
        Mosquitto(tmp_path, binary="/nonexistent/mosquitto").start()
    with pytest.raises(ServiceError, match="not found"):
        find_binary("hazardgw-no-such-binary")


def test_free_port_is_unique_and_bindable() -> None:
    ports = {free_port() for _ in range(50)}
    assert len(ports) == 50
    with socket.socket() as s:
        s.bind(("127.0.0.1", ports.pop()))


# --------------------------------------------------------------------------- InfluxDB


def test_influxd_write_and_query_exact_ns(influxd: Influxd, influx_db: str) -> None:
    assert influxd.url == f"http://127.0.0.1:{influxd.port}"
    line = f'reading,site=S1,tag=GT-101 value=1.5,quality="good" {TS_NS}'
    response = httpx.post(f"{influxd.url}/write", params={"db": influx_db, "precision": "ns"}, content=line)
    assert response.status_code == 204, response.text

    # TAG is an InfluxQL keyword: the schema's `tag` tag key must be double-quoted.
    result = influxd.query(influx_db, 'SELECT value, quality, "tag" FROM reading')
    series = result["results"][0]["series"][0]
    assert series["values"] == [[TS_NS, 1.5, "good", "GT-101"]]
    with pytest.raises(ServiceError, match="found TAG"):
        influxd.query(influx_db, "SELECT value, tag FROM reading")
    assert influxd.select(influx_db, "SELECT * FROM reading") == [
        {"measurement": "reading", "time": TS_NS, "quality": "good", "site": "S1", "tag": "GT-101", "value": 1.5}
    ]


def test_influx_db_is_unique_per_test(influxd: Influxd, influx_db: str) -> None:
    names = [row["name"] for row in influxd.select(influx_db, "SHOW DATABASES")]
    assert influx_db in names
    assert influxd.select(influx_db, "SHOW MEASUREMENTS") == []


def test_influxd_auth_rejects_anonymous_write(influxd_auth: Influxd, influx_auth_db: str) -> None:
    line = f"m v=1 {TS_NS}"
    url = f"{influxd_auth.url}/write"
    params = {"db": influx_auth_db, "precision": "ns"}

    anonymous = httpx.post(url, params=params, content=line)
    assert anonymous.status_code == 401
    wrong = httpx.post(url, params={**params, "u": INFLUX_USER, "p": "wrong"}, content=line)
    assert wrong.status_code == 401

    assert httpx.post(url, params={**params, "u": INFLUX_USER, "p": INFLUX_PASSWORD}, content=line).status_code == 204
    basic = httpx.post(url, params=params, content=f"m v=2 {TS_NS + 1}", auth=(INFLUX_USER, INFLUX_PASSWORD))
    assert basic.status_code == 204
    assert [r["v"] for r in influxd_auth.select(influx_auth_db, "SELECT v FROM m")] == [1.0, 2.0]
    assert httpx.get(f"{influxd_auth.url}/ping").status_code == 204  # /ping needs no credentials


def test_influxd_kill_restart_keeps_data_and_port(tmp_path: Path) -> None:
    with Influxd(tmp_path, auth=("root", "it's secret")) as server:
        port = server.port
        server.create_database("db")
        server.write("db", f"m v=7 {TS_NS}")
        server.kill()
        assert not server.is_running
        server.start()  # WAL replay; the admin user already exists
        assert server.port == port
        assert server.select("db", "SELECT v FROM m") == [{"measurement": "m", "time": TS_NS, "v": 7.0}]
    assert not server.is_running


def test_shared_server_fixture_restarts_after_a_kill(influxd_server: Influxd, request: pytest.FixtureRequest) -> None:
    influxd_server.kill()
    server = request.getfixturevalue("influxd")
    assert server is influxd_server and server.is_running


# -------------------------------------------------------------------- VictoriaMetrics


def test_victoria_accepts_influx_v2_write(victoria: VictoriaMetrics) -> None:
    line = f"reading,site=S1,tag=GT-101 value=1.5 {TS_NS}"
    response = httpx.post(
        f"{victoria.url}/api/v2/write",
        params={"bucket": "x", "org": "y", "precision": "ns"},
        content=line,
    )
    assert response.status_code == 204, response.text
    series = wait_for(lambda: victoria.export('reading_value{tag="GT-101",site="S1"}'), desc="series in export")
    assert series == [
        {
            "metric": {"__name__": "reading_value", "site": "S1", "tag": "GT-101"},
            "values": [1.5],
            "timestamps": [TS_NS // 1_000_000],  # VictoriaMetrics stores milliseconds
        }
    ]


def test_victoria_line_protocol_quirks(victoria: VictoriaMetrics) -> None:
    """The behaviour documented on VictoriaMetrics: string fields, db label, bad lines."""
    ts = TS_NS + 1_000_000_000
    lines = f'quirk,tag=A value=2.5,quality="good",num="12.5",flag=true {ts}\nthis is not line protocol'
    assert httpx.post(f"{victoria.url}/write", params={"db": "hz", "precision": "ns"}, content=lines).status_code == 204
    series = wait_for(lambda: len(got := victoria.export('{__name__=~"quirk_.*"}')) == 4 and got, desc="4 series")
    by_name = {s["metric"]["__name__"]: s for s in series}
    assert {name: s["values"] for name, s in by_name.items()} == {
        "quirk_value": [2.5],
        "quirk_quality": [0],  # non-numeric string -> 0, not ignored
        "quirk_num": [12.5],  # numeric string -> number
        "quirk_flag": [1],
    }
    assert all(s["metric"] == {"__name__": s["metric"]["__name__"], "db": "hz", "tag": "A"} for s in series)
    assert wait_for(lambda: "cannot unmarshal InfluxDB line" in victoria.log_tail(), desc="bad line logged")


def test_victoria_query_sees_fresh_points(victoria: VictoriaMetrics) -> None:
    now_ns = time.time_ns()
    victoria.write(f"fresh,tag=B value=42 {now_ns}")

    def instant() -> list[object]:
        victoria.flush()
        result: list[object] = victoria.query("fresh_value")["data"]["result"]
        return result

    assert wait_for(instant, desc="fresh point in instant query")[0] == {
        "metric": {"__name__": "fresh_value", "tag": "B"},
        "value": [pytest.approx(now_ns / 1e9, abs=60), "42"],
    }


# ----------------------------------------------------------------------------- helpers


def test_wait_for_returns_value_and_describes_timeout() -> None:
    calls = iter([0, None, [], "ready"])
    assert wait_for(lambda: next(calls), timeout=2, interval=0.001) == "ready"

    with pytest.raises(AssertionError, match=r"timed out after 0\.1s .* waiting for the moon; last result: False"):
        wait_for(lambda: False, timeout=0.1, desc="the moon")

    def boom() -> bool:
        raise ConnectionRefusedError("nope")

    with pytest.raises(AssertionError, match=r"boom.*ConnectionRefusedError") as info:
        wait_for(boom, timeout=0.1)
    assert isinstance(info.value.__cause__, ConnectionRefusedError)


async def test_async_wait_for_awaits_coroutines() -> None:
    state = {"n": 0}

    async def bump() -> int | None:
        state["n"] += 1
        return state["n"] if state["n"] >= 3 else None

    assert await async_wait_for(bump, timeout=2, interval=0.001) == 3
    assert await async_wait_for(lambda: "sync ok", timeout=1) == "sync ok"
    with pytest.raises(AssertionError, match="never"):
        await async_wait_for(lambda: 0, timeout=0.05, desc="never")
