"""The tcp-aes uplink profile: AES-256-GCM envelopes over TCP/TLS against the reference receiver.

The transport and profile are driven directly (no Gateway): messages built by the profile
from a small config go to a real :class:`AesTcpPlatform` on a loopback port.
"""

from __future__ import annotations

import asyncio
import base64
import json
import ssl
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from helpers import async_wait_for

from alerting.events import AlarmEvent
from devkit.receivers.tcp_aes import AesTcpPlatform
from devkit.services import TlsFiles, free_port
from gateway.config import Config
from gateway.core.config import Uplink
from gateway.core.models import now_ns
from gateway.uplink.profile import Heartbeat, Message, TagValue, Transport, TransportError, resolve_profile
from gateway.uplink.tcp_aes import (
    MAX_FRAME,
    AesTcpProfile,
    AesTcpTransport,
    FrameError,
    encode_frame,
    read_frame,
    seal,
)
from gateway.validate import validate_text

SITE = "91430900DEMO0001XX"
KEY = bytes(range(100, 132))
KEY_HEX = KEY.hex()
KEY_B64 = base64.b64encode(KEY).decode()
USER = "gw-uplink"
PASSWORD = "Pw-0f-the-uplink"


def make_config(port: int, *, key: str = KEY_HEX, **kw: Any) -> Config:
    result = validate_text(config_text(port, **kw), "site.yaml", {"UPLINK_AES_KEY": key})
    assert result.config is not None, result.format_errors()
    return result.config


def config_text(port: int, *, scheme: str = "tcp", password: str = PASSWORD, options: dict[str, Any] | None = None,
                tls: TlsFiles | None = None) -> str:
    """A tiny site with a tcp-aes uplink whose key comes from ${UPLINK_AES_KEY}."""
    opts = {"key": "${UPLINK_AES_KEY}", "key_id": "k7", **(options or {})}
    pki = f"ca: {tls.ca}\n  cert: {tls.client_cert}\n  key: {tls.client_key}\n" if tls else ""
    return textwrap.dedent(f"""\
        site: {{code: "{SITE}", name: "上游化工"}}
        hazard_sources:
          - {{code: HS-001, name: 液氯储罐区, grade: 1, responsible: {{principal: zhang}}}}
        people:
          - {{id: zhang, name: 张三, phone: "13800000001"}}
        tags:
          - {{id: GT-101, name: 液氯泄漏检测, hazard_source: HS-001, kind: toxic_gas, gas: Cl2, unit: mg/m3,
             range: [0, 10], alarms: {{h: {{limit: 1.0}}, hh: {{limit: 2.0}}}}}}
        uplink:
          profile: tcp-aes
          url: {scheme}://127.0.0.1:{port}
          username: {USER}
          password: "{password}"
          options: {json.dumps(opts)}
        """) + (f"  {pki}" if pki else "")


def profile_of(config: Config) -> AesTcpProfile:
    assert config.uplink is not None
    cls = resolve_profile(config.uplink.profile)
    assert cls is AesTcpProfile
    return AesTcpProfile(config, config.uplink)


def tag_values(n: int) -> list[TagValue]:
    t = now_ns()
    return [TagValue("GT-101", "液氯泄漏检测", "HS-001", "toxic_gas", "mg/m3", 0.1 * i, "good", t + i, "normal")
            for i in range(n)]


def all_types(profile: AesTcpProfile) -> list[Message]:
    t = now_ns()
    event = AlarmEvent(seq=5, event="raised", alarm="GT-101/h", tag="GT-101", condition="h", priority=2,
                       state="unack_active", prev_state="normal", active=True, occurrence=1, value=1.4, limit=1.0,
                       ts=t, wall=t, hs="HS-001")
    hb = Heartbeat(ts=t, status="ok", uptime_s=12.5, components={"uplink": True}, sources={},
                   hazard_sources={"HS-001": {"hour": 1.0, "day": 0.99, "status": "online"}}, backlog=0,
                   active_alarms=1)
    return [*profile.meta(t), *profile.realtime(tag_values(1), t), *profile.alarm(event, "H"),
            *profile.heartbeat(hb)]


def msg_ids(messages: list[Message]) -> list[str]:
    return [json.loads(m.payload)["msgId"] for m in messages]


Factory = Callable[..., Awaitable[AesTcpPlatform]]


@pytest.fixture
async def platforms() -> AsyncIterator[Factory]:
    """Starts reference receivers on free loopback ports; stops them after the test."""
    started: list[AesTcpPlatform] = []

    async def start(key: bytes = KEY, **kw: Any) -> AesTcpPlatform:
        p = AesTcpPlatform(key, key_id="k7", ent=SITE, username=USER, password=PASSWORD, **kw)
        await p.start("127.0.0.1", free_port())
        started.append(p)
        return p

    yield start
    for p in started:
        await p.stop()


@pytest.fixture
async def closing() -> AsyncIterator[list[Transport]]:
    transports: list[Transport] = []
    yield transports
    for t in transports:
        await t.close()


async def connected_transport(profile: AesTcpProfile, closing: list[Transport]) -> AesTcpTransport:
    t = profile.transport()
    assert isinstance(t, AesTcpTransport)
    closing.append(t)
    await t.connect()
    assert t.connected
    return t


# --------------------------------------------------------------------------- delivery


async def test_all_four_types_round_trip(platforms: Factory, closing: list[Transport]) -> None:
    platform = await platforms()
    profile = profile_of(make_config(platform.port))
    messages = all_types(profile)
    assert [m.topic for m in messages] == ["meta", "realtime", "alarm", "heartbeat"]
    assert [m.priority for m in messages] == [True, False, True, False]
    transport = await connected_transport(profile, closing)
    await transport.send(messages)
    assert platform.logins == 1
    assert [(r.type, r.seq) for r in platform.received] == [
        ("meta", 1), ("realtime", 2), ("alarm", 3), ("heartbeat", 4)]
    assert [r.payload for r in platform.received] == [json.loads(m.payload) for m in messages]
    assert platform.received[0].payload["hazardSources"][0]["hazardName"] == "液氯储罐区"
    assert platform.received[2].payload["alarmStatus"] == "H"
    # seq continues on the connection, restarts on a new one
    await transport.send(profile.realtime(tag_values(1), now_ns()))
    assert platform.received[-1].seq == 5
    await transport.connect()
    await transport.send(profile.realtime(tag_values(1), now_ns()))
    assert platform.received[-1].seq == 1
    assert platform.logins == 2
    assert platform.errors == []


async def test_backlog_is_pipelined_in_order(platforms: Factory, closing: list[Transport]) -> None:
    platform = await platforms()
    profile = profile_of(make_config(platform.port, options={"max_items": 1, "max_inflight": 8}))
    assert profile.max_items == 1 and profile.max_inflight == 8
    messages = profile.realtime(tag_values(300), now_ns())
    assert len(messages) == 300
    transport = await connected_transport(profile, closing)
    await transport.send(messages)
    assert platform.msg_ids() == msg_ids(messages)
    assert [r.seq for r in platform.received] == list(range(1, 301))


async def test_dropped_connection_then_resend_delivers_all(
    platforms: Factory, closing: list[Transport]
) -> None:
    platform = await platforms()
    profile = profile_of(make_config(platform.port, options={"max_items": 1, "max_inflight": 4}))
    messages = profile.realtime(tag_values(10), now_ns())
    transport = await connected_transport(profile, closing)
    platform.drop_after = 3
    with pytest.raises(TransportError, match=r"(closed by the platform|connection lost) before the ack of frame"):
        await transport.send(messages)
    assert not transport.connected
    with pytest.raises(TransportError, match="not connected"):
        await transport.send(messages)
    # frame 3 reached the platform but its ack was lost: the re-send duplicates it
    assert len(platform.received) == 3
    await transport.connect()
    await transport.send(messages)
    assert len(platform.received) == 13
    assert platform.msg_ids() == msg_ids(messages)
    assert platform.logins == 2


async def test_rejected_frame_is_a_transport_error(platforms: Factory, closing: list[Transport]) -> None:
    platform = await platforms()
    platform.reject_types = {"alarm"}
    profile = profile_of(make_config(platform.port))
    transport = await connected_transport(profile, closing)
    with pytest.raises(TransportError, match=r"rejected frame 3: type alarm rejected"):
        await transport.send(all_types(profile))
    assert not transport.connected
    assert [r.type for r in platform.received][:2] == ["meta", "realtime"]
    assert "alarm" not in [r.type for r in platform.received]


# --------------------------------------------------------------------------- login and keys


async def test_wrong_password_is_refused_without_leaking_it(
    platforms: Factory, closing: list[Transport]
) -> None:
    platform = await platforms()
    profile = profile_of(make_config(platform.port, password="Not-the-Pw-42"))
    transport = profile.transport()
    closing.append(transport)
    with pytest.raises(TransportError, match="login refused") as exc:
        await transport.connect()
    text = str(exc.value)
    assert "bad username or password" in text
    assert "Not-the-Pw-42" not in text and PASSWORD not in text and KEY_HEX not in text
    assert not transport.connected
    assert platform.logins == 0


async def test_refused_login_knob(platforms: Factory, closing: list[Transport]) -> None:
    platform = await platforms()
    platform.refuse_login = True
    transport = profile_of(make_config(platform.port)).transport()
    closing.append(transport)
    with pytest.raises(TransportError, match=r"login refused.*login refused"):
        await transport.connect()
    platform.refuse_login = False
    await transport.connect()
    assert transport.connected and platform.logins == 1


async def test_wrong_key_cannot_be_decrypted(platforms: Factory, closing: list[Transport]) -> None:
    platform = await platforms(key=bytes(32))
    transport = profile_of(make_config(platform.port)).transport()
    closing.append(transport)
    with pytest.raises(TransportError, match="cannot decrypt") as exc:
        await transport.connect()
    assert KEY_HEX not in str(exc.value) and KEY_B64 not in str(exc.value)
    assert platform.errors == ["cannot decrypt: wrong key, or the header or data was changed"]
    assert platform.logins == 0


async def test_base64_key_is_the_same_key(platforms: Factory, closing: list[Transport]) -> None:
    platform = await platforms()
    profile = profile_of(make_config(platform.port, key=KEY_B64))
    assert profile.key == KEY
    transport = await connected_transport(profile, closing)
    await transport.send(all_types(profile)[:1])
    assert [r.type for r in platform.received] == ["meta"]


@pytest.mark.parametrize("field,value", [("type", "realtime"), ("ent", "91430900OTHER001XX")])
async def test_tampered_header_is_rejected(platforms: Factory, field: str, value: str) -> None:
    platform = await platforms()
    platform.ent = None  # accept any enterprise code: only the AD can catch a changed ent
    profile = profile_of(make_config(platform.port))
    aead = profile.transport()._aead  # type: ignore[attr-defined]
    reader, writer = await asyncio.open_connection("127.0.0.1", platform.port)
    try:
        login = json.dumps({"username": USER, "password": PASSWORD})
        writer.write(encode_frame(seal(aead, ent=SITE, msg_type="login", seq=0, kid="k7", payload=login)))
        assert (await read_frame(reader)) == {"ack": 0, "ok": True}
        alarm = profile.alarm(all_types_event(), "H")[0]
        env = seal(aead, ent=SITE, msg_type="alarm", seq=1, kid="k7", payload=alarm.payload)
        env[field] = value
        writer.write(encode_frame(env))
        ack = await read_frame(reader)
        assert ack["ack"] == 1 and ack["ok"] is False and "cannot decrypt" in ack["error"]
        # the untouched envelope is accepted
        writer.write(encode_frame(seal(aead, ent=SITE, msg_type="alarm", seq=2, kid="k7", payload=alarm.payload)))
        assert (await read_frame(reader)) == {"ack": 2, "ok": True}
    finally:
        writer.close()
    assert [r.seq for r in platform.received] == [2]


def all_types_event() -> AlarmEvent:
    t = now_ns()
    return AlarmEvent(seq=9, event="raised", alarm="GT-101/hh", tag="GT-101", condition="hh", priority=1,
                      state="unack_active", prev_state="normal", active=True, occurrence=2, value=2.5, limit=2.0,
                      ts=t, wall=t, hs="HS-001")


# --------------------------------------------------------------------------- misbehaving platforms


async def raw_platform(
    answer: Callable[[dict[str, Any]], dict[str, Any] | None], closed: list[int] | None = None
) -> tuple[asyncio.Server, int]:
    """A platform that accepts any login and answers each data frame with ``answer(env)``;
    appends the number of data frames it read to ``closed`` when the gateway closes."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        frames = 0
        try:
            await read_frame(reader)
            writer.write(encode_frame({"ack": 0, "ok": True}))
            while True:
                reply = answer(await read_frame(reader))
                frames += 1
                if reply is not None:
                    writer.write(encode_frame(reply))
        except (asyncio.IncompleteReadError, OSError):
            if closed is not None:
                closed.append(frames)
        finally:
            writer.close()

    port = free_port()
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    return server, port


@pytest.mark.parametrize(
    "answer,error",
    [
        (lambda env: None, "no ack for frame 1 within 0.3 s"),
        (lambda env: {"ack": env["seq"] + 1, "ok": True}, "ack out of order: expected 1, got 2"),
        (lambda env: {"ack": True, "ok": True}, "ack out of order: expected 1, got True"),
    ],
)
async def test_missing_or_misordered_ack(
    answer: Callable[[dict[str, Any]], dict[str, Any] | None], error: str, closing: list[Transport]
) -> None:
    server, port = await raw_platform(answer)
    try:
        profile = profile_of(make_config(port, options={"ack_timeout": 0.3}))
        transport = await connected_transport(profile, closing)
        with pytest.raises(TransportError) as exc:
            await transport.send(all_types(profile))
        assert str(exc.value) == error
        assert not transport.connected
    finally:
        server.close()


async def test_at_most_max_inflight_frames_unacknowledged(closing: list[Transport]) -> None:
    seen: list[int] = []
    closed: list[int] = []
    server, port = await raw_platform(lambda env: seen.append(env["seq"]), closed)  # never acks
    try:
        profile = profile_of(make_config(port, options={"max_inflight": 3, "max_items": 1, "ack_timeout": 0.3}))
        transport = await connected_transport(profile, closing)
        with pytest.raises(TransportError, match="no ack for frame 1"):
            await transport.send(profile.realtime(tag_values(10), now_ns()))
        await async_wait_for(lambda: closed, desc="the platform sees the gateway close")
        assert seen == [1, 2, 3]  # everything the gateway wrote before it gave up
    finally:
        server.close()


async def test_cancelled_send_drops_the_connection(closing: list[Transport]) -> None:
    seen: list[int] = []
    server, port = await raw_platform(lambda env: seen.append(env["seq"]))  # never acks
    try:
        profile = profile_of(make_config(port))
        transport = await connected_transport(profile, closing)
        task = asyncio.create_task(transport.send(all_types(profile)))
        await async_wait_for(lambda: len(seen) == 4, desc="the platform has all four frames")
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not transport.connected  # its unread acks would confuse the next send
    finally:
        server.close()


async def test_connection_refused_is_a_transport_error(closing: list[Transport]) -> None:
    transport = profile_of(make_config(free_port())).transport()
    closing.append(transport)
    with pytest.raises(TransportError, match=r"cannot connect to tcp://127\.0\.0\.1") as exc:
        await transport.connect()
    assert KEY_HEX not in str(exc.value) and PASSWORD not in str(exc.value)


async def test_oversized_frame_is_refused() -> None:
    reader = asyncio.StreamReader()
    reader.feed_data((MAX_FRAME + 1).to_bytes(4, "big") + b"{}")
    with pytest.raises(FrameError, match="larger than"):
        await read_frame(reader)
    reader = asyncio.StreamReader()
    reader.feed_data((2).to_bytes(4, "big") + b"[]")
    with pytest.raises(FrameError, match="not a JSON object"):
        await read_frame(reader)
    with pytest.raises(FrameError, match="larger than"):
        encode_frame({"data": "x" * MAX_FRAME})


# --------------------------------------------------------------------------- config and secrets


def uplink(url: str = "tcp://platform.example:7000", **options: Any) -> Uplink:
    return Uplink(profile="tcp-aes", url=url, password="pw", options={"key": KEY_HEX, **options})


def test_check_accepts_a_good_config() -> None:
    assert AesTcpProfile.check(uplink()) == []
    assert AesTcpProfile.check(uplink("tls://platform.example:7000", key=KEY_B64, key_id="2", ack_timeout=5,
                                      max_inflight=1, max_items=200, alarm_events=["raised", "cleared"])) == []


@pytest.mark.parametrize(
    "up,problem",
    [
        (uplink("mqtt://platform.example:1883"), "url must be tcp:// or tls://"),
        (uplink("tcp://platform.example"), "url needs a port"),
        (uplink(key=KEY_HEX[:-2]), "options.key must be a 32-byte AES-256 key"),
        (uplink(key=base64.b64encode(KEY[:16]).decode()), "options.key must be a 32-byte AES-256 key"),
        (uplink(key=1234), "options.key must be a string"),
        (Uplink(profile="tcp-aes", url="tcp://h:1", options={}), "options.key is required"),
        (uplink(keepalive=30), "unknown option 'keepalive' for profile tcp-aes"),
        (uplink(max_inflight=0), "options.max_inflight must be a positive integer"),
        (uplink(key_id=""), "options.key_id must be a non-empty string"),
        (uplink(ack_timeout=-1), "options.ack_timeout must be a positive number"),
        (uplink(max_items=0), "options.max_items must be a positive integer"),
    ],
)
def test_check_problems(up: Uplink, problem: str) -> None:
    problems = AesTcpProfile.check(up)
    assert len(problems) == 1 and problem in problems[0], problems
    assert KEY_HEX[:-2] not in problems[0]


def test_hazardgw_check_reports_a_bad_key_without_showing_it() -> None:
    bad = KEY_HEX[:-4] + "zzzz"
    result = validate_text(config_text(7000, options={"max_inflight": 0}), "site.yaml", {"UPLINK_AES_KEY": bad})
    text = "\n".join(result.format_errors())
    assert result.config is None
    assert "options.key must be a 32-byte AES-256 key" in text and "options.max_inflight" in text, text
    assert bad not in text and KEY_HEX[:16] not in text


def test_describe_and_repr_hold_no_secrets() -> None:
    profile = profile_of(make_config(7000, scheme="tls"))
    transport = profile.transport()
    assert transport.describe() == "tls://127.0.0.1:7000 (AES-256-GCM, key id k7)"
    for text in (transport.describe(), repr(profile), repr(transport)):
        assert KEY_HEX not in text and KEY_B64 not in text and PASSWORD not in text


# --------------------------------------------------------------------------- TLS


def server_tls(pki: TlsFiles) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(pki.ca))
    ctx.load_cert_chain(pki.server_cert, pki.server_key)
    ctx.verify_mode = ssl.CERT_REQUIRED  # client certificate required
    return ctx


async def test_tls_round_trip(platforms: Factory, closing: list[Transport], test_pki: TlsFiles) -> None:
    platform = await platforms(ssl_context=server_tls(test_pki))
    profile = profile_of(make_config(platform.port, scheme="tls", tls=test_pki))
    transport = await connected_transport(profile, closing)
    messages = all_types(profile)
    await transport.send(messages)
    assert platform.msg_ids() == msg_ids(messages)
    # the platform closes the connection: the transport notices, the next send fails
    await platform.stop()
    await async_wait_for(lambda: not transport.connected, desc="transport sees the closed connection")
    with pytest.raises(TransportError):
        await transport.send(messages)


async def test_tls_without_the_ca_fails_verification(
    platforms: Factory, closing: list[Transport], test_pki: TlsFiles
) -> None:
    platform = await platforms(ssl_context=server_tls(test_pki))
    profile = profile_of(make_config(platform.port, scheme="tls"))  # no ca: the system trust store
    transport = profile.transport()
    closing.append(transport)
    with pytest.raises(TransportError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify failed"):
        await transport.connect()
    assert platform.logins == 0
