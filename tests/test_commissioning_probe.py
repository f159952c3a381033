"""Modicon addressing against a Modbus stack the project did not write (pyModbusTCP), and the
probe tools run as the real ``hazardgw`` command against pymodbus, pyModbusTCP and mosquitto."""

from __future__ import annotations

import asyncio
import json
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any

import paho.mqtt.client as paho
import pytest
from helpers import async_wait_for
from pyModbusTCP.server import DataBank, ModbusServer
from test_modbus_e2e import Collector, free_port, tcp_source

from adapters.modbus.build import build_modbus_sources
from devkit.services import Mosquitto
from devkit.simulator.modbus import ModbusPlantServer
from gateway.core.metrics import Metrics
from gateway.core.models import Quality
from gateway.core.sources import SourceContext
from gateway.validate import validate_text

HAZARDGW = [sys.executable, "-m", "gateway.cli"]


@pytest.fixture
def bank_server() -> Iterator[tuple[int, DataBank]]:
    port = free_port()
    bank = DataBank(h_regs_size=200, i_regs_size=200, coils_size=64, d_inputs_size=64)
    server = ModbusServer(host="127.0.0.1", port=port, no_block=True, data_bank=bank)
    bank.set_holding_registers(0, [111])
    bank.set_holding_registers(10, [0x41AC, 0x0000])  # float32 21.5 (ABCD)
    bank.set_holding_registers(40, [0b1000])  # bit 3
    bank.set_input_registers(4, [222])
    bank.set_coils(16, [True])
    bank.set_discrete_inputs(9, [True])
    server.start()
    try:
        yield port, bank
    finally:
        server.stop()


SITE = """\
site: {{code: X, name: X}}
sources:
  - id: dev
    type: modbus_tcp
    host: 127.0.0.1
    port: {port}
    addressing: modicon
    poll_interval: 0.1
    points:
      - {{tag: H1, address: 40001}}
      - {{tag: F, address: 40011, type: float32}}
      - {{tag: B3, address: 40041.3, type: bool}}
      - {{tag: I5, address: 30005, type: int16}}
      - {{tag: C17, address: 00017, type: bool}}
      - {{tag: D10, address: 100010, type: bool}}
tags:
  - {{id: H1}}
  - {{id: F}}
  - {{id: B3, kind: discrete}}
  - {{id: I5}}
  - {{id: C17, kind: discrete}}
  - {{id: D10, kind: discrete}}
"""


async def test_modicon_addresses_read_the_right_registers(bank_server: tuple[int, DataBank]) -> None:
    port, _ = bank_server
    v = validate_text(SITE.format(port=port), "site.yaml")
    assert v.config is not None, v.format_errors()
    (src,) = v.config.sources
    out = Collector()
    (adapter,) = build_modbus_sources([src], SourceContext(emit=out.emit, metrics=Metrics(), tags={}))  # type: ignore[list-item]
    await adapter.start()
    try:
        expect = {"H1": 111, "F": 21.5, "B3": 1.0, "I5": 222, "C17": 1.0, "D10": 1.0}
        await async_wait_for(lambda: all(out.is_(t, Quality.GOOD, x) for t, x in expect.items()), timeout=10)
        assert sorted(adapter.health()["requests"]) == sorted(
            ["holding@0+12", "holding@40+1", "input@4+1", "coil@16+1", "discrete@9+1"]
        )
    finally:
        await adapter.stop()


def test_an_offset_that_looks_like_a_modicon_reference_is_refused_with_the_fix() -> None:
    text = SITE.format(port=502).replace("    addressing: modicon\n", "")
    v = validate_text(text, "site.yaml")
    msgs = v.format_errors()
    assert any(
        "site.yaml:9: sources[0].points[0].address: address 40001 in table holding looks like a Modicon reference "
        "(holding register 1 = protocol offset 0); write `addressing: modicon` on the source, or the 0-based offset 0"
        in m for m in msgs
    ), msgs
    assert any("sources[0].points[1].address: address 40011 in table holding" in m for m in msgs), msgs
    assert not any("points[3]" in m for m in msgs), msgs  # holding offset 30005: not a holding reference
    ok = validate_text(text.replace("    poll_interval", "    addressing: offset\n    poll_interval"), "s.yaml")
    assert not [m for m in ok.format_errors() if "Modicon" in m], ok.format_errors()


# ---------------------------------------------------------------------- probe modbus


async def hazardgw(*args: str, limit: float = 60) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *HAZARDGW, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), limit)
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


async def test_probe_modbus_prints_every_decoding(bank_server: tuple[int, DataBank]) -> None:
    port, _ = bank_server
    code, out, err = await hazardgw("probe", "modbus", f"tcp://127.0.0.1:{port}", "--address", "40011", "--count", "2",
                                    "--device-id", "255")
    assert code == 0, err
    assert "holding 10..11 from device 255" in out
    lines = out.splitlines()
    reg = next(line for line in lines if line.split()[:2] == ["10", "40011"])
    assert reg.split()[2:4] == ["0x41AC", "16812"]
    abcd = next(line for line in lines if "10-11" in line and "ABCD" in line)
    assert abcd.split()[2:] == ["21.5", "1101791232", "1101791232"]
    cdab = next(line for line in lines if "10-11" in line and "CDAB" in line)
    assert cdab.split()[3:] == ["16812", "16812"]
    assert {line.split()[1] for line in lines if line.startswith("   10-11")} == {"ABCD", "CDAB", "BADC", "DCBA"}
    code, out, err = await hazardgw("probe", "modbus", f"tcp://127.0.0.1:{port}", "--table", "coil", "--address",
                                    "16", "--count", "2")
    assert code == 0, err
    assert [line.split() for line in out.splitlines()[1:]] == [["16", "00017", "1"], ["17", "00018", "0"]]


async def test_probe_modbus_exception_and_connection_errors_are_one_line(bank_server: tuple[int, DataBank]) -> None:
    port, _ = bank_server
    code, out, err = await hazardgw("probe", "modbus", f"tcp://127.0.0.1:{port}", "--address", "190", "--count", "20")
    assert code == 1 and out == ""
    assert err.strip().splitlines() == [
        f"error: device 1 at 127.0.0.1:{port} (Modbus TCP) answered holding@190+20 with exception 2 "
        "(ILLEGAL DATA ADDRESS)"
    ], err
    closed = free_port()
    code, _, err = await hazardgw("probe", "modbus", f"tcp://127.0.0.1:{closed}", "--timeout", "0.5")
    assert code == 1 and err.startswith(f"error: cannot connect to 127.0.0.1:{closed} (Modbus TCP)"), err
    assert len(err.strip().splitlines()) == 1, err
    code, _, err = await hazardgw("probe", "modbus", "udp://x")
    assert code == 2 and "use tcp://host:502" in err


@pytest.fixture
def mute_server() -> Iterator[int]:
    """Accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    conns: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        sock.settimeout(0.2)
        while not stop.is_set():
            try:
                conns.append(sock.accept()[0])
            except OSError:
                continue

    t = threading.Thread(target=accept, daemon=True)
    t.start()
    try:
        yield int(sock.getsockname()[1])
    finally:
        stop.set()
        t.join(2)
        for c in conns:
            c.close()
        sock.close()


async def test_probe_modbus_timeout(mute_server: int) -> None:
    code, out, err = await hazardgw("probe", "modbus", f"tcp://127.0.0.1:{mute_server}", "--timeout", "0.3")
    assert code == 1 and out == ""
    assert err.strip() == f"error: no answer from device 1 at 127.0.0.1:{mute_server} (Modbus TCP) within 0.3 s " \
        "(no answer within 0.3 s)", err


async def test_probe_modbus_scan_ids_finds_the_devices_in_bounded_time() -> None:
    port = free_port()
    srcs = [tcp_source(f"d{i}", port, [{"tag": f"T{i}", "address": 0}], device_id=i, framer="rtu") for i in (2, 5)]
    server = ModbusPlantServer(srcs, {})
    await server.start()
    try:
        code, out, err = await hazardgw("probe", "modbus", f"rtu+tcp://127.0.0.1:{port}", "--scan-ids", "1-20",
                                        "--scan-timeout", "0.1")
        assert code == 0, err
        assert "answering: 2, 5" in out and "asked 20 device id(s)" in out
        code, out, err = await hazardgw("probe", "modbus", f"rtu+tcp://127.0.0.1:{port}", "--scan-ids", "1-247",
                                        "--scan-timeout", "0.1", "--max-time", "1.5")
        assert code == 0, err
        assert "scan stopped after 1.5 s (--max-time)" in err and "answering: 2, 5" in out
    finally:
        await server.stop()


# ---------------------------------------------------------------------- probe mqtt


async def test_probe_mqtt_lists_topics_rates_and_ready_points(mosquitto: Mosquitto) -> None:
    pub = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="probe-pub")
    pub.connect(mosquitto.host, mosquitto.port)
    pub.loop_start()
    stop = asyncio.Event()

    async def publish() -> None:
        n = 0
        while not stop.is_set():
            payload: dict[str, Any] = {"ts": 1732300000 + n, "lel1": 3.5, "gas": {"h2s": 1}, "ok": True,
                                       "list": [{"v": 2}], "name": "x"}
            pub.publish("plant/area1/telemetry", json.dumps(payload), qos=0)
            pub.publish("plant/area1/status", "online", qos=0)
            n += 1
            await asyncio.sleep(0.1)

    task = asyncio.create_task(publish())
    try:
        code, out, err = await hazardgw("probe", "mqtt", mosquitto.url, "--topic", "plant/#", "--seconds", "2")
    finally:
        stop.set()
        await task
        pub.loop_stop()
        pub.disconnect()
    assert code == 0, err
    assert "plant/area1/telemetry:" in out and "plant/area1/status:" in out
    tele = out.split("plant/area1/telemetry:")[1]
    assert '- {tag: telemetry.lel1, path: "$.lel1"}' in tele
    assert '- {tag: telemetry.gas.h2s, path: "$.gas.h2s"}' in tele
    assert 'path: "$.list[0].v"' in tele and 'path: "$.ts"' in tele and '"$.ok"' not in tele
    assert "(payload is not JSON)" in out.split("plant/area1/status:")[1]
    rate = float(out.split("plant/area1/telemetry: ")[1].split(" message(s), ")[1].split("/s")[0])
    assert 3 <= rate <= 15, out
    # the snippet pastes into a config that validates
    snippet = tele.split("rename the tags):\n")[1].split("\nplant/")[0]
    cfg = "site: {code: X, name: X}\nsources:\n  - id: m\n    type: mqtt\n    url: mqtt://h:1883\n" \
          "    subscriptions:\n" + "\n".join(line[0:] for line in snippet.splitlines()) + "\ntags:\n" + "".join(
              f"  - {{id: {t}}}\n" for t in ("telemetry.ts", "telemetry.lel1", "telemetry.gas.h2s",
                                            "telemetry.list.0.v", "telemetry.list_0_.v"))
    v = validate_text(cfg, "p.yaml")
    assert not [e for e in v.format_errors() if "subscriptions" in e and "unknown tag" not in e], v.format_errors()


async def test_probe_mqtt_errors(mosquitto: Mosquitto) -> None:
    code, _, err = await hazardgw("probe", "mqtt", mosquitto.url, "--topic", "nothing/#", "--seconds", "0.5")
    assert code == 1 and err.strip() == f"error: no message on 'nothing/#' at {mosquitto.url} within 0.5 s"
    closed = free_port()
    code, _, err = await hazardgw("probe", "mqtt", f"mqtt://127.0.0.1:{closed}", "--seconds", "1")
    assert code == 1 and err.startswith(f"error: cannot connect to mqtt://127.0.0.1:{closed}: ")
    assert len(err.strip().splitlines()) == 1


async def test_probe_modbus_over_a_serial_port() -> None:
    """rtu:///dev/...: the CLI's serial path against pymodbus' serial server, through a pty pair."""
    import contextlib
    import os
    import pty
    import tty

    from adapters.modbus.config import ModbusRtuSource

    m1, s1 = pty.openpty()
    m2, s2 = pty.openpty()
    for fd in (s1, s2):
        tty.setraw(fd)
    probe_port, sim_port = os.ttyname(s1), os.ttyname(s2)
    loop = asyncio.get_running_loop()

    def pump(src: int, dst: int) -> None:
        with contextlib.suppress(OSError):
            os.write(dst, os.read(src, 4096))

    loop.add_reader(m1, pump, m1, m2)
    loop.add_reader(m2, pump, m2, m1)
    src = ModbusRtuSource.model_validate({
        "id": "rs485", "type": "modbus_rtu", "port": probe_port, "baudrate": 19200, "parity": "N", "device_id": 7,
        "points": [{"tag": "X", "table": "input", "address": 3, "type": "int32", "byte_order": "CDAB"}],
    })
    server = ModbusPlantServer([src], {}, serial_ports={probe_port: sim_port})
    server.set_value("X", -70000)
    await server.start()
    try:
        code, out, err = await hazardgw("probe", "modbus", f"rtu://{probe_port}?baudrate=19200&parity=N&stopbits=1",
                                        "--device-id", "7", "--address", "30004", "--count", "2")
        assert code == 0, err
        assert f"input 3..4 from device 7 at {probe_port} (19200 8N1, RTU)" in out
        cdab = next(line for line in out.splitlines() if "3-4" in line and "CDAB" in line)
        assert cdab.split()[3] == "-70000", out
    finally:
        await server.stop()
        loop.remove_reader(m1)
        loop.remove_reader(m2)
        for fd in (m1, s1, m2, s2):
            os.close(fd)
