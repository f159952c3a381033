"""Modbus against stacks the project did not write, and against devices that misbehave.

* A hand-scripted Modbus TCP server (asyncio, below) that answers with garbage, another
  transaction id, a wrong MBAP length, or stays silent / closes the connection on reads
  larger than it supports: the findings of the interoperability tests (issue 20, item 6).
* pyModbusTCP's server (a different implementation than the pymodbus the adapter uses),
  addressed with unit id 255 as the Modbus TCP guide recommends for devices addressed
  directly over TCP.
* pymodbus' own log records: routed to debug level, one line.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import struct
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers import async_wait_for
from pydantic import ValidationError
from test_modbus_e2e import Collector, free_port, rtu_socket_source, tcp_source

from adapters.modbus.adapter import ModbusSourceAdapter
from adapters.modbus.build import build_modbus_sources
from adapters.modbus.config import ModbusTcpSource
from adapters.modbus.logs import install_log_filter
from devkit.simulator.modbus import ModbusPlantServer
from gateway.core.metrics import Metrics
from gateway.core.models import Quality
from gateway.core.sources import SourceContext


def register_value(address: int) -> int:
    return 1000 + address


@dataclass
class ScriptedServer:
    """A Modbus TCP server written for misbehaving on purpose (reads of fc 3/4 only).

    ``mode``: ok | garbage | tid | longlen | shortlen. ``max_read``: reads of more
    registers get no answer (``on_large="silent"``) or a closed connection ("close").
    Registers hold ``1000 + address``.
    """

    mode: str = "ok"
    max_read: int = 125
    on_large: str = "silent"
    sizes: Counter[int] = field(default_factory=Counter)  # register counts asked
    unit_ids: Counter[int] = field(default_factory=Counter)
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)

    async def _serve(self, r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        try:
            while True:
                tid, _pid, length, uid = struct.unpack(">HHHB", await r.readexactly(7))
                pdu = await r.readexactly(length - 1)
                fc, start, count = struct.unpack(">BHH", pdu[:5])
                self.sizes[count] += 1
                self.unit_ids[uid] += 1
                if count > self.max_read:
                    if self.on_large == "close":
                        w.close()
                        return
                    continue  # silent
                body = bytes([fc, 2 * count]) + b"".join(
                    struct.pack(">H", register_value(a)) for a in range(start, start + count)
                )
                w.write(self._frame(tid, uid, body))
                await w.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            w.close()

    def _frame(self, tid: int, uid: int, body: bytes) -> bytes:
        if self.mode == "garbage":
            return b"\xde\xad\xbe\xef" * 4
        if self.mode == "tid":
            return struct.pack(">HHHB", (tid + 7) & 0xFFFF, 0, len(body) + 1, uid) + body
        if self.mode == "longlen":  # announces 5 bytes more than it sends
            return struct.pack(">HHHB", tid, 0, len(body) + 6, uid) + body
        if self.mode == "shortlen":  # announces one byte less than it sends
            return struct.pack(">HHHB", tid, 0, len(body), uid) + body
        return struct.pack(">HHHB", tid, 0, len(body) + 1, uid) + body


@dataclass
class Run:
    adapter: ModbusSourceAdapter
    out: Collector
    metrics: Metrics

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@contextlib.asynccontextmanager
async def polling(src: ModbusTcpSource) -> AsyncIterator[Run]:
    out, metrics = Collector(), Metrics()
    (adapter,) = build_modbus_sources([src], SourceContext(emit=out.emit, metrics=metrics, tags={}))
    await adapter.start()
    try:
        yield Run(adapter, out, metrics)  # type: ignore[arg-type]
    finally:
        await adapter.stop()


@contextlib.asynccontextmanager
async def scripted(**kw: Any) -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer(**kw)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()


THREE = [{"tag": f"R{i}", "address": i, "type": "uint16"} for i in range(3)]

REASONS = {"garbage": "garbage", "tid": "transaction_id", "longlen": "length", "shortlen": "length"}


@pytest.mark.parametrize("mode", list(REASONS))
async def test_garbled_answers_are_bad_responses_logged_once_per_device(
    mode: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with scripted(mode=mode) as server:
        src = tcp_source("dev", server.port, THREE, timeout=0.2, poll_interval=0.1, backoff_max=0.3)
        async with polling(src) as run:
            reason = REASONS[mode]
            await async_wait_for(
                lambda: run.sample("hazardgw_modbus_bad_responses_total", source="dev", reason=reason) >= 3, timeout=10
            )
            assert run.sample("hazardgw_modbus_requests_total", source="dev", result="timeout") == 0
            assert run.sample("hazardgw_modbus_requests_total", source="dev", result="bad_response") >= 3
            assert run.out.is_("R0", Quality.COMM)
            health = run.adapter.health()
            assert reason in health["device"]["bad_answers"], health
            server.mode = "ok"
            await async_wait_for(lambda: run.out.is_("R2", Quality.GOOD, register_value(2)), timeout=10)
    bad = [m for m in caplog.messages if "sends bad answers" in m]
    assert len(bad) == 1 and f"({reason})" in bad[0], bad
    assert len([m for m in caplog.messages if "answers correctly again" in m]) == 1
    # pymodbus never saw a frame it would choke on (no traceback from asyncio), and its own
    # records (raw frames) stayed below the log level
    assert not [r for r in caplog.records if r.name == "asyncio"], [r.getMessage() for r in caplog.records]
    assert not [r for r in caplog.records if r.name.startswith("pymodbus")], [r.getMessage() for r in caplog.records]


async def test_a_late_answer_of_an_earlier_transaction_is_skipped_not_an_error() -> None:
    """A frame of another transaction followed by the right one in the same stream: the right
    one is the answer (pymodbus would otherwise be handed the stale frame first)."""

    class LateThenRight(ScriptedServer):
        def _frame(self, tid: int, uid: int, body: bytes) -> bytes:
            good = struct.pack(">HHHB", tid, 0, len(body) + 1, uid) + body
            stale = struct.pack(">HHHB", (tid - 1) & 0xFFFF, 0, len(body) + 1, uid) + body[:-2] + b"\x00\x00"
            return stale + good

    server = LateThenRight()
    await server.start()
    try:
        async with polling(tcp_source("dev", server.port, THREE, timeout=0.3)) as run:
            await async_wait_for(lambda: run.out.is_("R2", Quality.GOOD, register_value(2)), timeout=10)
            assert run.sample("hazardgw_modbus_bad_responses_total", source="dev", reason="transaction_id") == 0
    finally:
        await server.stop()


def test_pymodbus_records_are_debug_lines_only_when_debugging(caplog: pytest.LogCaptureFixture) -> None:
    from pymodbus.logging import Log

    install_log_filter()
    caplog.set_level(logging.INFO)
    Log.error("ERROR: request ask for transaction_id={} but got id={}, Skipping.", 1, 8)
    assert not [r for r in caplog.records if r.name.startswith("pymodbus")]
    caplog.clear()
    caplog.set_level(logging.DEBUG)
    logging.getLogger("pymodbus.logging").error("frame trouble\n>>>>> recv: 0xde 0xad")
    recs = [r for r in caplog.records if r.name.startswith("pymodbus")]
    assert len(recs) == 1
    assert recs[0].levelno == logging.DEBUG and "\n" not in recs[0].getMessage()
    assert "\\n>>>>> recv: 0xde 0xad" in recs[0].getMessage()


@pytest.mark.parametrize("on_large", ["silent", "close"])
async def test_request_size_is_halved_until_the_device_answers_and_kept(
    on_large: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="adapters.modbus")
    points = [{"tag": f"R{a}", "address": a, "type": "uint16"} for a in range(0, 100, 3)]  # one read of 98
    async with scripted(max_read=30, on_large=on_large) as server:
        src = tcp_source("dev", server.port, points, timeout=0.2, poll_interval=0.1, backoff_max=0.5)
        async with polling(src) as run:
            await async_wait_for(
                lambda: all(run.out.is_(p["tag"], Quality.GOOD, register_value(p["address"])) for p in points),
                timeout=15,
            )
            health = run.adapter.health()
            learned = health["learned_limits"]["registers"]
            assert 15 <= learned <= 30, health
            assert all(int(label.rsplit("+", 1)[1]) <= 30 for label in health["requests"]), health["requests"]
            asked_large = sum(n for size, n in server.sizes.items() if size > 30)
            polls = run.adapter.poller.polls
            await async_wait_for(lambda: run.adapter.poller.polls >= polls + 5, timeout=10)
            # kept: no more large reads after learning
            assert sum(n for size, n in server.sizes.items() if size > 30) == asked_large
    msgs = [m for m in caplog.messages if "set max_registers:" in m]
    assert len(msgs) == 1 and f"max_registers: {learned}" in msgs[0], caplog.messages


async def test_a_dead_device_is_not_mistaken_for_a_picky_one(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="adapters.modbus")
    points = [{"tag": f"R{a}", "address": a, "type": "uint16"} for a in range(0, 40, 4)]
    async with scripted(max_read=0) as server:  # answers nothing
        src = tcp_source("dev", server.port, points, timeout=0.1, poll_interval=0.05, backoff_max=0.3)
        async with polling(src) as run:
            await async_wait_for(lambda: any("not a request size problem" in m for m in caplog.messages), timeout=15)
            health = run.adapter.health()
            assert health["learned_limits"] == {} and health["requests"] == ["holding@0+37"], health
            assert run.out.is_("R0", Quality.COMM)
            server.max_read = 125
            await async_wait_for(lambda: run.out.is_("R36", Quality.GOOD, register_value(36)), timeout=10)
            assert run.adapter.health()["requests"] == ["holding@0+37"]


async def test_one_lost_answer_does_not_shrink_requests() -> None:
    points = [{"tag": f"R{a}", "address": a, "type": "uint16"} for a in range(0, 40, 4)]

    class LosesOne(ScriptedServer):
        lost = False

        def _frame(self, tid: int, uid: int, body: bytes) -> bytes:
            if sum(self.sizes.values()) == 3 and not self.lost:
                self.lost = True
                return b""
            return super()._frame(tid, uid, body)

    server = LosesOne()
    await server.start()
    try:
        async with polling(tcp_source("dev", server.port, points, timeout=0.2, poll_interval=0.05)) as run:
            await async_wait_for(lambda: server.lost and sum(server.sizes.values()) >= 8, timeout=10)
            assert run.adapter.health()["requests"] == ["holding@0+37"]
            assert run.sample("hazardgw_modbus_requests_total", source="dev", result="timeout") == 1
    finally:
        await server.stop()


# ---------------------------------------------------------------------- unit ids 0-255


def test_unit_ids_0_to_255_over_tcp_1_to_247_on_a_serial_line() -> None:
    for uid in (0, 247, 255):
        assert tcp_source("t", 502, THREE, device_id=uid).device_id == uid
    with pytest.raises(ValidationError, match="less than or equal to 255"):
        tcp_source("t", 502, THREE, device_id=256)
    for uid in (0, 248, 255):
        with pytest.raises(ValidationError, match=r"1\.\.247"):
            rtu_socket_source("r", 4001, THREE, device_id=uid)


async def test_unit_id_255_against_pymodbus_server() -> None:
    port = free_port()
    src = tcp_source("dev", port, [{"tag": "A", "address": 7, "type": "float32"}], device_id=255)
    server = ModbusPlantServer([src], {})
    server.set_value("A", 21.5)
    await server.start()
    try:
        async with polling(src) as run:
            await async_wait_for(lambda: run.out.is_("A", Quality.GOOD, 21.5), timeout=10)
    finally:
        await server.stop()


async def test_against_pymodbustcp_server_with_unit_id_255() -> None:
    """pyModbusTCP's server (its own MBAP code, in a thread) answers the adapter."""
    from pyModbusTCP.server import DataBank, ModbusServer

    port = free_port()
    bank = DataBank(h_regs_size=200, i_regs_size=200, coils_size=64, d_inputs_size=64)
    server = ModbusServer(host="127.0.0.1", port=port, no_block=True, data_bank=bank)
    bank.set_holding_registers(10, [0x41AC, 0x0000, 0x1234])  # float32 21.5, then 4660
    bank.set_input_registers(3, [65535])
    bank.set_coils(5, [True])
    server.start()
    try:
        points = [
            {"tag": "F", "address": 10, "type": "float32"},
            {"tag": "U", "address": 12, "type": "uint16"},
            {"tag": "I", "table": "input", "address": 3, "type": "int16"},
            {"tag": "C", "table": "coil", "address": 5, "type": "bool"},
        ]
        async with polling(tcp_source("dev", port, points, device_id=255)) as run:
            await async_wait_for(
                lambda: run.out.is_("F", Quality.GOOD, 21.5)
                and run.out.is_("U", Quality.GOOD, 4660)
                and run.out.is_("I", Quality.GOOD, -1)
                and run.out.is_("C", Quality.GOOD, 1.0),
                timeout=10,
            )
            assert run.sample("hazardgw_modbus_bad_responses_total", source="dev", reason="transaction_id") == 0
    finally:
        server.stop()


def test_frame_checks() -> None:
    from adapters.modbus.frames import Expect, FrameInspector, check_mbap

    e = Expect(tid=5, device_id=1, function_code=3, byte_count=4)
    good = struct.pack(">HHHB", 5, 0, 7, 1) + bytes([3, 4, 0, 1, 0, 2])
    stale = struct.pack(">HHHB", 4, 0, 7, 1) + bytes([3, 4, 0, 9, 0, 9])
    assert check_mbap(good, e).keep == good and not check_mbap(good, e).reason
    v = check_mbap(stale + good, e)
    assert v.keep == good and v.reason == "transaction_id"  # skipped, the right one kept
    assert check_mbap(good[:9], e).keep == good[:9]  # incomplete: wait for the rest
    assert check_mbap(b"\xde\xad\xbe\xef" * 3, e).reason == "garbage"
    assert check_mbap(struct.pack(">HHHB", 5, 0, 300, 1) + b"\x03", e).reason == "length"
    assert not check_mbap(struct.pack(">HHHB", 5, 0, 3, 1) + bytes([0x83, 2]), e).reason  # exception answer
    assert check_mbap(struct.pack(">HHHB", 5, 0, 7, 1) + bytes([4, 4, 0, 1, 0, 2]), e).reason == "function_code"
    insp = FrameInspector("socket")
    assert insp.trace(False, good) == b""  # nothing awaited: dropped
    insp.begin(1, 3, 4)
    insp.trace(True, struct.pack(">HHHB", 5, 0, 6, 1) + bytes([3, 0, 0, 0, 2]))
    assert insp.trace(False, good) == good and insp.reason == ""
    assert insp.trace(False, stale) == b"" and insp.explain() == ("transaction_id", "transaction id 4, expected 5")
