"""End to end: the adapter against real pymodbus servers on loopback (no mocks).

The servers are :class:`devkit.simulator.modbus.ModbusPlantServer`: MBAP framing
for ``modbus_tcp``, RTU framing over TCP for ``framer: rtu`` and ``socket://`` sources,
and a pymodbus serial server behind a pty pair for a real serial port.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
import pty
import socket
import time
import tty
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import pytest
from helpers import async_wait_for

from adapters.modbus import build as modbus_build
from adapters.modbus.adapter import ModbusSourceAdapter
from adapters.modbus.build import build_modbus_sources
from adapters.modbus.config import ModbusRtuSource, ModbusTcpSource
from adapters.modbus.points import PointCodec
from devkit.simulator.modbus import ModbusPlantServer
from gateway.core.config import Tag
from gateway.core.metrics import Metrics
from gateway.core.models import Quality, Reading
from gateway.core.sources import SourceContext

ModbusSource = ModbusTcpSource | ModbusRtuSource


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def tcp_source(sid: str, port: int, points: list[dict[str, Any]], **kw: Any) -> ModbusTcpSource:
    data = {
        "id": sid,
        "type": "modbus_tcp",
        "host": "127.0.0.1",
        "port": port,
        "poll_interval": 0.1,
        "timeout": 0.3,
        "backoff_max": 1.0,
        "points": points,
        **kw,
    }
    return ModbusTcpSource.model_validate(data)


def rtu_socket_source(sid: str, port: int, points: list[dict[str, Any]], **kw: Any) -> ModbusRtuSource:
    data = {
        "id": sid,
        "type": "modbus_rtu",
        "port": f"socket://127.0.0.1:{port}",
        "poll_interval": 0.1,
        "timeout": 0.3,
        "backoff_max": 1.0,
        "points": points,
        **kw,
    }
    return ModbusRtuSource.model_validate(data)


@dataclass
class Collector:
    """The pipeline stand-in: keeps every batch with the wall time it arrived."""

    batches: list[tuple[int, list[Reading]]] = field(default_factory=list)
    delay: float = 0.0
    in_emit: int = 0
    max_in_emit: int = 0

    async def emit(self, batch: Sequence[Reading]) -> None:
        self.in_emit += 1
        self.max_in_emit = max(self.max_in_emit, self.in_emit)
        try:
            self.batches.append((time.time_ns(), list(batch)))
            if self.delay:
                await asyncio.sleep(self.delay)
        finally:
            self.in_emit -= 1

    def latest(self, tag: str) -> Reading | None:
        for _, batch in reversed(self.batches):
            for r in batch:
                if r.tag == tag:
                    return r
        return None

    def batches_with(self, tag: str) -> list[tuple[int, list[Reading]]]:
        return [(t, b) for t, b in self.batches if any(r.tag == tag for r in b)]

    def is_(self, tag: str, quality: str, value: float | None = None, approx: float = 1e-9) -> bool:
        r = self.latest(tag)
        if r is None or r.quality != quality:
            return False
        if value is None:
            return True
        return r.value is not None and abs(r.value - value) <= approx * max(1.0, abs(value))


@dataclass
class Rig:
    server: ModbusPlantServer
    adapters: list[ModbusSourceAdapter]
    out: Collector
    metrics: Metrics

    def adapter(self, sid: str) -> ModbusSourceAdapter:
        return next(a for a in self.adapters if a.id == sid)

    def sample(self, name: str, **labels: str) -> float:
        return self.metrics.registry.get_sample_value(name, labels) or 0.0


@contextlib.asynccontextmanager
async def rig(
    sources: list[ModbusSource],
    tags: dict[str, Tag] | None = None,
    *,
    serial_ports: dict[str, str] | None = None,
    before_start: Any = None,
) -> AsyncIterator[Rig]:
    tags = tags or {}
    server = ModbusPlantServer(sources, tags, serial_ports=serial_ports)
    if before_start is not None:
        before_start(server)
    await server.start()
    out = Collector()
    metrics = Metrics()
    adapters = build_modbus_sources(sources, SourceContext(emit=out.emit, metrics=metrics, tags=tags))
    try:
        for a in adapters:
            await a.start()
        yield Rig(server, adapters, out, metrics)  # type: ignore[arg-type]
    finally:
        for a in adapters:
            await a.stop()
        await server.stop()


# ---------------------------------------------------------------------- values, framings

NUMERIC = {
    "int16": -12345,
    "uint16": 54321,
    "int32": -2_000_000_123,
    "uint32": 4_000_000_123,
    "int64": -(2**40) - 3,
    "uint64": 2**50 + 7,
    "float32": -3.25,
    "float64": 1234.5678,
}
SIZES = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "int64": 4, "uint64": 4, "float32": 2, "float64": 4}


def all_type_points() -> tuple[list[dict[str, Any]], dict[str, tuple[float, str]]]:
    """Every type x byte order in holding registers, plus the other tables; -> (points, expected)."""
    points: list[dict[str, Any]] = []
    expected: dict[str, tuple[float, str]] = {}
    addr = 0
    for type_, value in NUMERIC.items():
        for order in ("ABCD", "CDAB", "BADC", "DCBA"):
            tag = f"{type_}-{order}"
            points.append({"tag": tag, "address": addr, "type": type_, "byte_order": order})
            expected[tag] = (float(value), Quality.GOOD)
            addr += SIZES[type_]
    points += [
        {"tag": "scaled", "table": "input", "address": 7, "type": "int16", "scale": 0.1, "offset": -50},
        {"tag": "ranged", "table": "input", "address": 9, "type": "uint16"},
        {"tag": "text", "address": 200, "type": "string", "length": 4, "byte_order": "BADC"},
        {"tag": "bit3", "address": "210.3", "type": "bool"},
        {"tag": "bit4", "address": "210.4", "type": "bool"},
        {"tag": "coil0", "table": "coil", "address": 0, "type": "bool"},
        {"tag": "coil9", "table": "coil", "address": 9, "type": "bool"},
        {"tag": "di17", "table": "discrete", "address": 17, "type": "bool"},
    ]
    expected.update(
        {
            "scaled": (-62.3, Quality.GOOD),
            "ranged": (120.0, Quality.UNCERTAIN),
            "text": (-7.5, Quality.GOOD),
            "bit3": (1.0, Quality.GOOD),
            "bit4": (0.0, Quality.GOOD),
            "coil0": (1.0, Quality.GOOD),
            "coil9": (0.0, Quality.GOOD),
            "di17": (1.0, Quality.GOOD),
        }
    )
    return points, expected


@pytest.mark.parametrize("framing", ["modbus_tcp", "rtu_over_tcp", "rtu_socket_url"])
async def test_every_type_and_table_arrives_with_value_and_quality(framing: str) -> None:
    port = free_port()
    points, expected = all_type_points()
    if framing == "modbus_tcp":
        src: ModbusSource = tcp_source("dev", port, points, device_id=7)
    elif framing == "rtu_over_tcp":
        src = tcp_source("dev", port, points, device_id=7, framer="rtu")
    else:
        src = rtu_socket_source("dev", port, points, device_id=7)
    tags = {"ranged": Tag(id="ranged", range=(0, 100)), "scaled": Tag(id="scaled", range=(-100, 100))}
    async with rig([src], tags) as r:
        for tag, (value, _) in expected.items():
            r.server.set_value(tag, value)
        await async_wait_for(
            lambda: all(r.out.is_(t, q, v) for t, (v, q) in expected.items()),
            timeout=10,
            desc="every point decoded with its expected value and quality",
        )
        # one batch per cycle, one reading per point, all with the cycle's timestamp
        _, batch = r.out.batches[-1]
        assert sorted(x.tag for x in batch) == sorted(expected)
        assert len({x.ts for x in batch}) == 1
        # planned once: 1 holding block for the 32 typed points (+ string/bit blocks), 1 input, 1 coil, 1 discrete
        assert r.adapter("dev").health()["requests"] == [
            "holding@0+80",
            "holding@200+11",
            "input@7+3",
            "coil@0+10",
            "discrete@17+1",
        ]
        # read-only: only read function codes ever reached the device
        assert r.server.function_codes_seen() <= {1, 2, 3, 4}
        assert r.server.function_codes_seen() == {1, 2, 3, 4}
        # values change between polls
        r.server.set_value("float32-CDAB", 99.5)
        await async_wait_for(lambda: r.out.is_("float32-CDAB", Quality.GOOD, 99.5), timeout=5)
        assert r.sample("hazardgw_readings_in_total", source="dev") >= len(expected)
        assert r.adapter("dev").health()["ok"] is True


async def test_serial_rtu_through_a_pty_pair() -> None:
    """The real serial code path: pymodbus' serial client and server on two ptys joined by a relay."""
    m1, s1 = pty.openpty()
    m2, s2 = pty.openpty()
    for fd in (s1, s2):
        tty.setraw(fd)
    gw_port, sim_port = os.ttyname(s1), os.ttyname(s2)
    loop = asyncio.get_running_loop()

    def pump(src: int, dst: int) -> None:
        with contextlib.suppress(OSError):
            os.write(dst, os.read(src, 4096))

    loop.add_reader(m1, pump, m1, m2)
    loop.add_reader(m2, pump, m2, m1)
    src = ModbusRtuSource.model_validate(
        {
            "id": "rs485",
            "type": "modbus_rtu",
            "port": gw_port,
            "baudrate": 38400,
            "parity": "N",
            "device_id": 5,
            "poll_interval": 0.1,
            "timeout": 0.3,
            "points": [
                {"tag": "FT-1", "address": 3, "type": "int32", "byte_order": "BADC"},
                {"tag": "FT-1.RUN", "table": "coil", "address": 2, "type": "bool"},
            ],
        }
    )
    try:
        async with rig([src], serial_ports={gw_port: sim_port}) as r:
            r.server.set_value("FT-1", -70000)
            r.server.set_value("FT-1.RUN", True)
            await async_wait_for(
                lambda: r.out.is_("FT-1", Quality.GOOD, -70000) and r.out.is_("FT-1.RUN", Quality.GOOD, 1.0),
                timeout=10,
            )
            h = r.adapter("rs485").health()
            assert h["transport"] == f"{gw_port} (38400 8N1, RTU)" and h["connected"] is True
    finally:
        loop.remove_reader(m1)
        loop.remove_reader(m2)
        for fd in (m1, s1, m2, s2):
            os.close(fd)


# ---------------------------------------------------------------------- fault isolation


async def test_dead_device_on_shared_bus_does_not_slow_the_healthy_one(caplog: pytest.LogCaptureFixture) -> None:
    """Two RS-485 devices behind one serial device server (RTU over TCP)."""
    caplog.set_level(logging.INFO, logger="adapters.modbus")
    port = free_port()
    interval, dead_timeout = 0.2, 0.15
    pts = [
        {"tag": "{d}-A", "address": 0, "type": "float32"},
        {"tag": "{d}-B", "table": "input", "address": 0, "type": "uint16"},
        {"tag": "{d}-C", "table": "coil", "address": 0, "type": "bool"},
    ]

    def mk(d: str, dev_id: int) -> ModbusRtuSource:
        return rtu_socket_source(
            d,
            port,
            [{**p, "tag": str(p["tag"]).format(d=d)} for p in pts],
            device_id=dev_id,
            poll_interval=interval,
            timeout=dead_timeout,
            backoff_max=0.8,
        )

    healthy, dead = mk("ok", 1), mk("dead", 2)
    async with rig([healthy, dead]) as r:
        assert r.adapter("ok").bus is r.adapter("dead").bus, "one endpoint, one bus"
        r.server.set_value("ok-A", 1.5)
        r.server.set_value("dead-A", 2.5)
        await async_wait_for(lambda: r.out.is_("ok-A", Quality.GOOD, 1.5) and r.out.is_("dead-A", Quality.GOOD, 2.5))

        r.server.set_silent("dead")
        await async_wait_for(lambda: r.out.is_("dead-A", Quality.COMM), timeout=5)
        assert r.out.latest("dead-A").value is None  # type: ignore[union-attr]
        assert r.out.is_("dead-B", Quality.COMM) and r.out.is_("dead-C", Quality.COMM)
        dead_requests_before = sum(r.server.requests("dead").values())
        start_batches = len(r.out.batches_with("ok-A"))
        t0 = time.monotonic()
        n = 12
        await async_wait_for(lambda: len(r.out.batches_with("ok-A")) >= start_batches + n, timeout=n * interval * 3)
        elapsed = time.monotonic() - t0
        window = r.out.batches_with("ok-A")[start_batches:]
        # the healthy device keeps its rate (12 polls take ~2.4 s) ...
        assert elapsed <= n * interval * 1.3 + 0.2, f"healthy polls slowed down: {n} polls took {elapsed:.2f} s"
        # ... every one of its polls is good and took at most one dead timeout longer than normal
        assert all(x.quality == Quality.GOOD for _, b in window for x in b)
        durations = [(emit_ns - b[0].ts) / 1e9 for emit_ns, b in window]
        assert max(durations) <= dead_timeout + 0.1, f"a healthy poll waited {max(durations):.3f} s"
        # the dead device backs off: fewer requests than its polls in the window
        dead_polls = len([b for _, b in r.out.batches_with("dead-A")[-n:]])
        dead_requests = sum(r.server.requests("dead").values()) - dead_requests_before
        assert dead_requests < dead_polls, (dead_requests, dead_polls)
        assert r.adapter("dead").health()["device"]["state"] in ("backoff", "comm")
        assert r.sample("hazardgw_modbus_device_up", source="dead") == 0
        assert r.sample("hazardgw_modbus_requests_total", source="dead", result="timeout") >= 2

        r.server.set_silent("dead", False)
        await async_wait_for(lambda: r.out.is_("dead-A", Quality.GOOD, 2.5), timeout=5)
        assert r.adapter("dead").health()["device"]["state"] == "ok"
    down = [m for m in caplog.messages if "not answering" in m]
    back = [m for m in caplog.messages if "answers again" in m]
    assert len(down) == 1 and len(back) == 1, caplog.messages


async def test_exception_response_marks_only_its_points_bad() -> None:
    port = free_port()
    src = tcp_source(
        "x",
        port,
        [
            {"tag": "H1", "address": 0, "type": "uint16"},
            {"tag": "H2", "address": 1, "type": "uint16"},
            {"tag": "I1", "table": "input", "address": 0, "type": "uint16"},
            {"tag": "I2", "table": "input", "address": 4, "type": "uint16"},
            {"tag": "C1", "table": "coil", "address": 0, "type": "bool"},
        ],
    )
    async with rig([src]) as r:
        for tag, v in (("H1", 11), ("H2", 12), ("I1", 21), ("I2", 22), ("C1", 1)):
            r.server.set_value(tag, v)
        await async_wait_for(lambda: r.out.is_("I2", Quality.GOOD, 22))
        r.server.set_exception("x", 6, table="input")  # device busy, only for input registers
        await async_wait_for(lambda: r.out.is_("I1", Quality.BAD) and r.out.is_("I2", Quality.BAD))
        _, last = r.out.batches[-1]
        got = {x.tag: x for x in last}
        assert got["I1"].value is None and got["I2"].value is None
        assert (got["H1"].value, got["H1"].quality) == (11, Quality.GOOD)
        assert (got["H2"].value, got["H2"].quality) == (12, Quality.GOOD)
        assert (got["C1"].value, got["C1"].quality) == (1, Quality.GOOD)
        assert r.adapter("x").health()["exceptions"] == {"input@0+5": 6}
        assert r.adapter("x").health()["splits"] == 0  # busy does not split
        assert r.sample("hazardgw_modbus_exceptions_total", source="x", code="6") >= 1
        assert r.adapter("x").health()["device"]["state"] == "ok"  # it answered

        # a gateway saying "target device did not answer" (11) is a comm failure
        r.server.set_exception("x", None)
        r.server.set_exception("x", 11)
        await async_wait_for(lambda: all(r.out.is_(t, Quality.COMM) for t in ("H1", "H2", "I1", "I2", "C1")))
        r.server.set_exception("x", None)
        await async_wait_for(lambda: all(r.out.is_(t, Quality.GOOD) for t in ("H1", "H2", "I1", "I2", "C1")))
        assert r.adapter("x").health()["exceptions"] == {}


async def test_illegal_address_inside_a_merged_block_splits_and_is_remembered() -> None:
    port = free_port()
    src = tcp_source(
        "x",
        port,
        [
            {"tag": "P0", "address": 0, "type": "float32"},
            {"tag": "P2", "address": 2, "type": "uint16"},
            {"tag": "P6", "address": 6, "type": "uint16"},  # its own register is unmapped
            {"tag": "P8", "address": 8, "type": "float32"},
            {"tag": "P20", "address": 20, "type": "uint16"},  # register 12 (a hole) is unmapped
        ],
    )

    def unmap(server: ModbusPlantServer) -> None:
        server.set_invalid("x", "holding", [6, 12])
        for tag in ("P0", "P2", "P8", "P20"):
            server.set_value(tag, 3.0)

    async with rig([src], before_start=unmap) as r:
        await async_wait_for(lambda: len(r.out.batches) >= 1)
        # the very first cycle already delivers every readable point
        first = {x.tag: x for x in r.out.batches[0][1]}
        assert {t: first[t].quality for t in first} == {
            "P0": Quality.GOOD,
            "P2": Quality.GOOD,
            "P6": Quality.BAD,
            "P8": Quality.GOOD,
            "P20": Quality.GOOD,
        }
        assert first["P0"].value == 3.0 and first["P6"].value is None
        h = r.adapter("x").health()
        plan, splits = h["requests"], h["splits"]
        assert plan == ["holding@0+3", "holding@6+1", "holding@8+2", "holding@20+1"]
        assert splits == 3
        polls = h["polls"]
        await async_wait_for(lambda: r.adapter("x").health()["polls"] >= polls + 5)
        h = r.adapter("x").health()
        assert (h["requests"], h["splits"]) == (plan, splits), "the split is remembered, not redone"
        assert h["exceptions"] == {"holding@6+1": 2}
        assert r.sample("hazardgw_modbus_request_splits_total", source="x") == 3
        assert all(r.out.is_(t, Quality.GOOD, 3.0) for t in ("P0", "P2", "P8", "P20"))


async def test_reconnects_after_a_server_restart(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="adapters.modbus")
    port = free_port()
    src = tcp_source("x", port, [{"tag": "PT", "address": 0, "type": "float32"}])
    async with rig([src]) as r:
        r.server.set_value("PT", 1.25)
        await async_wait_for(lambda: r.out.is_("PT", Quality.GOOD, 1.25))
        await r.server.stop()
        await async_wait_for(lambda: r.out.is_("PT", Quality.COMM), timeout=5)
        assert r.out.latest("PT").value is None  # type: ignore[union-attr]
        await async_wait_for(lambda: r.adapter("x").health()["bus"]["connect_failures"] >= 2, timeout=5)
        assert r.adapter("x").health()["connected"] is False
        r.server.set_value("PT", 2.5)
        await r.server.start()
        await async_wait_for(lambda: r.out.is_("PT", Quality.GOOD, 2.5), timeout=5)
        h = r.adapter("x").health()
        assert h["connected"] is True and h["bus"]["connects"] == 2
        assert r.sample("hazardgw_source_connected", source="x") == 1
    lost = [m for m in caplog.messages if "connection lost" in m]
    failed = [m for m in caplog.messages if "cannot connect" in m]
    again = [m for m in caplog.messages if "connected again" in m]
    assert (len(lost), len(failed), len(again)) == (1, 0, 1), caplog.messages


async def test_unreachable_endpoint_at_start_is_retried_with_backoff(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="adapters.modbus")
    port = free_port()
    src = tcp_source("x", port, [{"tag": "PT", "address": 0, "type": "uint16"}], backoff_max=0.5)
    server = ModbusPlantServer([src])
    out = Collector()
    metrics = Metrics()
    (adapter,) = build_modbus_sources([src], SourceContext(emit=out.emit, metrics=metrics, tags={}))
    await adapter.start()
    try:
        await async_wait_for(lambda: out.is_("PT", Quality.COMM))
        await async_wait_for(lambda: adapter.health()["bus"]["connect_failures"] >= 3, timeout=5)
        attempts = adapter.health()["bus"]["connect_failures"]
        polls = adapter.health()["polls"]
        assert attempts < polls, "connects are backed off, not tried every poll"
        server.set_value("PT", 42)
        await server.start()
        await async_wait_for(lambda: out.is_("PT", Quality.GOOD, 42), timeout=5)
    finally:
        await adapter.stop()
        await server.stop()
    assert len([m for m in caplog.messages if "cannot connect" in m]) == 1, caplog.messages


# ---------------------------------------------------------------------- detector semantics


async def test_current_loop_fault_band() -> None:
    port = free_port()
    src = tcp_source(
        "x",
        port,
        [
            {"tag": "GT", "address": 0, "type": "uint16", "current_loop": {"raw_4ma": 4000, "raw_20ma": 20000}},
        ],
    )
    tags = {"GT": Tag(id="GT", kind="combustible_gas", gas="CH4", unit="%LEL", range=(0, 100))}
    async with rig([src], tags) as r:
        for ma, value, quality in [
            (12.0, 50.0, Quality.GOOD),
            (2.0, -12.5, Quality.BAD),
            (3.9, -0.625, Quality.UNCERTAIN),
            (20.0, 100.0, Quality.GOOD),
            (21.0, 106.25, Quality.BAD),
            (4.0, 0.0, Quality.GOOD),
        ]:
            r.server.set_current("GT", ma)
            await async_wait_for(lambda v=value, q=quality: r.out.is_("GT", q, v), desc=f"{ma} mA -> {value} {quality}")
        r.server.set_value("GT", 25.0)
        await async_wait_for(lambda: r.out.is_("GT", Quality.GOOD, 25.0))


async def test_fault_point_link() -> None:
    port = free_port()
    src = tcp_source(
        "x",
        port,
        [
            {"tag": "GT", "address": 0, "type": "float32", "fault": "GT.FAULT"},
            {"tag": "GT.FAULT", "table": "discrete", "address": 0, "type": "bool"},
            {"tag": "PT", "address": 2, "type": "uint16", "fault": "PT.OK", "fault_state": False},
            {"tag": "PT.OK", "address": "10.2", "type": "bool"},  # a "healthy" bit in a status register
        ],
    )
    tags = {"GT": Tag(id="GT", range=(0, 10))}
    async with rig([src], tags) as r:
        r.server.set_value("GT", 1.0)
        r.server.set_value("PT", 7)
        await async_wait_for(lambda: r.out.is_("GT", Quality.GOOD, 1.0) and r.out.is_("PT", Quality.GOOD, 7))
        assert r.out.is_("GT.FAULT", Quality.GOOD, 0.0) and r.out.is_("PT.OK", Quality.GOOD, 1.0)

        r.server.set_fault("GT")
        await async_wait_for(lambda: r.out.is_("GT", Quality.BAD, 1.0))  # value kept, quality bad
        assert r.out.is_("GT.FAULT", Quality.GOOD, 1.0) and r.out.is_("PT", Quality.GOOD, 7)

        r.server.set_fault("PT")  # clears the healthy bit
        await async_wait_for(lambda: r.out.is_("PT", Quality.BAD, 7) and r.out.is_("PT.OK", Quality.GOOD, 0.0))

        r.server.set_fault("GT", False)
        r.server.set_fault("PT", False)
        await async_wait_for(lambda: r.out.is_("GT", Quality.GOOD, 1.0) and r.out.is_("PT", Quality.GOOD, 7))

        # the fault point cannot be read: the detector is no longer known healthy
        r.server.set_exception("x", 4, table="discrete")
        await async_wait_for(lambda: r.out.is_("GT", Quality.UNCERTAIN, 1.0) and r.out.is_("GT.FAULT", Quality.BAD))
        assert r.out.is_("PT", Quality.GOOD, 7)


async def test_wrong_register_count_is_a_counted_decode_error() -> None:
    port = free_port()
    src = tcp_source(
        "x",
        port,
        [
            {"tag": "A", "address": 0, "type": "float32"},
            {"tag": "B", "address": 2, "type": "uint16"},
            {"tag": "C", "table": "coil", "address": 0, "type": "bool"},
        ],
    )
    async with rig([src]) as r:
        r.server.set_value("A", 1.5)
        r.server.set_value("B", 2)
        r.server.set_value("C", True)
        await async_wait_for(lambda: r.out.is_("A", Quality.GOOD, 1.5))
        r.server.set_short_response("x")  # answers 2 registers when asked for 3
        await async_wait_for(lambda: r.out.is_("A", Quality.BAD) and r.out.is_("B", Quality.BAD))
        assert r.out.latest("A").value is None  # type: ignore[union-attr]
        assert r.out.is_("C", Quality.GOOD, 1.0)
        errors = r.sample("hazardgw_decode_errors_total", source="x", where="holding@0+3", reason="register_count")
        assert errors >= 1
        r.server.set_short_response("x", False)
        await async_wait_for(lambda: r.out.is_("A", Quality.GOOD, 1.5) and r.out.is_("B", Quality.GOOD, 2))
        assert r.adapter("x").health()["device"]["state"] == "ok"


async def test_nan_from_device_is_bad_and_counted() -> None:
    port = free_port()
    src = tcp_source("x", port, [{"tag": "A", "address": 0, "type": "float32"}])
    async with rig([src]) as r:
        r.server.set_raw("A", float("nan"))
        await async_wait_for(lambda: r.out.is_("A", Quality.BAD))
        assert r.out.latest("A").value is None  # type: ignore[union-attr]
        assert r.sample("hazardgw_decode_errors_total", source="x", where="A", reason="not_finite") >= 1


# ---------------------------------------------------------------------- scheduling


async def test_overrunning_polls_are_counted_and_never_stack() -> None:
    port = free_port()
    interval = 0.1
    src = tcp_source("x", port, [{"tag": "A", "address": 0, "type": "uint16"}], poll_interval=interval)
    async with rig([src]) as r:
        await async_wait_for(lambda: len(r.out.batches) >= 3)
        r.out.delay = 0.35  # backpressure: the pipeline takes 3.5 intervals per batch
        start = len(r.out.batches)
        await async_wait_for(lambda: len(r.out.batches) >= start + 4, timeout=5)
        slow = [b[0].ts for _, b in r.out.batches[start:]]
        gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(slow)]
        assert min(gaps) >= 0.3, f"polls bunched up after backpressure: {gaps}"
        h = r.adapter("x").health()
        assert h["late_polls"] >= 3 and h["skipped_polls"] >= 6
        assert r.sample("hazardgw_modbus_polls_late_total", source="x") == h["late_polls"]
        assert r.sample("hazardgw_modbus_polls_skipped_total", source="x") == h["skipped_polls"]
        assert r.out.max_in_emit == 1

        r.out.delay = 0.0
        resume = len(r.out.batches)
        await async_wait_for(lambda: len(r.out.batches) >= resume + 6, timeout=5)
        fast = [b[0].ts for _, b in r.out.batches[resume + 1 :]]
        gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(fast)]
        # back on the grid: no burst of queued polls catching up
        assert min(gaps) >= interval * 0.5, f"a burst of stacked polls: {gaps}"
        assert max(gaps) <= interval * 2.5
        assert r.sample("hazardgw_modbus_poll_lateness_seconds_count", source="x") == r.adapter("x").health()["polls"]


async def test_sources_started_together_are_spread_over_the_interval(monkeypatch: pytest.MonkeyPatch) -> None:
    """Four endpoints started at once, at most 2 polled in the same instant: each polls at once
    (readings right after start), then sources 0 and 2 at the start of the interval, 1 and 3
    half an interval later (issue 23: 50 endpoints in step were late by each other's answers)."""
    monkeypatch.setattr(modbus_build, "SPREAD_GROUP", 2)
    interval, n = 0.4, 4
    srcs = [tcp_source(f"s{i}", free_port(), [{"tag": f"T{i}", "address": 0, "type": "uint16"}],
                       poll_interval=interval) for i in range(n)]
    t0 = time.time_ns()
    async with rig(srcs) as r:
        await async_wait_for(lambda: all(len(r.out.batches_with(f"T{i}")) >= 4 for i in range(n)), timeout=10)
    starts = {i: [b[0].ts for _, b in r.out.batches_with(f"T{i}")] for i in range(n)}
    for i in range(n):
        assert (starts[i][0] - t0) / 1e9 < 1.0, f"s{i}: first poll not at start"
        first_gap = (starts[i][1] - starts[i][0]) / 1e9
        assert first_gap <= interval + 0.1, f"s{i}: {first_gap:.3f} s to its second poll"
        gaps = [(b - a) / 1e9 for a, b in itertools.pairwise(starts[i][1:])]
        assert all(abs(g - interval) < 0.1 for g in gaps), f"s{i} off its grid: {gaps}"
    for i in range(1, n):  # later polls: two groups, half an interval apart
        offset = ((starts[i][2] - starts[0][2]) / 1e9 + 0.05) % interval - 0.05
        want = (i % 2) * interval / 2
        assert abs(offset - want) < 0.05, f"s{i} at {offset:.3f} s after s0, want {want:.3f}"


async def test_stop_ends_polling_even_when_a_cancellation_is_swallowed() -> None:
    """Python 3.11's asyncio.wait_for (used inside pymodbus) can swallow a cancellation;
    stop() must still end the poll task instead of hanging the gateway's shutdown."""
    port = free_port()
    src = tcp_source("x", port, [{"tag": "A", "address": 0, "type": "uint16"}], poll_interval=0.05)
    server = ModbusPlantServer([src])
    await server.start()
    entered = asyncio.Event()
    swallowed = 0

    async def emit(batch: Sequence[Reading]) -> None:
        nonlocal swallowed
        entered.set()
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            swallowed += 1  # swallowed on purpose: the task goes on as if nothing happened

    (adapter,) = build_modbus_sources([src], SourceContext(emit=emit, metrics=Metrics(), tags={}))
    await adapter.start()
    poll_task = next(t for t in asyncio.all_tasks() if t.get_name() == "modbus:x")
    try:
        await asyncio.wait_for(entered.wait(), 5)
        # asyncio.wait, not wait_for: wait_for would cancel a hanging stop() and so end the test
        stopping = asyncio.create_task(adapter.stop())
        done, _ = await asyncio.wait({stopping}, timeout=3)
        assert stopping in done, "stop() hangs after a swallowed cancellation"
        assert poll_task.done()
        assert swallowed == 1
        assert adapter.health()["running"] is False
        polls = adapter.poller.polls
        await asyncio.sleep(0.2)  # several poll intervals: a poller still alive would poll again
        assert adapter.poller.polls == polls
        assert adapter.bus.connected is False
    finally:
        poll_task.cancel()
        await adapter.stop()
        await server.stop()


async def test_a_crashing_poll_is_logged_once_and_polling_goes_on(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Fault injection: a bug in decoding (not a device problem) must not end polling."""
    calls = 0
    evaluate = PointCodec.evaluate

    def flaky(self: PointCodec, values: Sequence[int] | Sequence[bool], offset: int) -> tuple[float | None, str]:
        nonlocal calls
        calls += 1
        if calls <= 3:
            raise RuntimeError("injected bug")
        return evaluate(self, values, offset)

    monkeypatch.setattr(PointCodec, "evaluate", flaky)
    port = free_port()
    src = tcp_source("x", port, [{"tag": "A", "address": 0, "type": "uint16"}])
    async with rig([src]) as r:
        r.server.set_value("A", 9)
        await async_wait_for(lambda: r.out.is_("A", Quality.GOOD, 9))
        assert r.adapter("x").poller.crashes == 3
        assert r.adapter("x").health()["running"] is True
    crashes = [rec for rec in caplog.records if "poll failed" in rec.getMessage()]
    assert len(crashes) == 1 and crashes[0].exc_info is not None  # once, with the traceback


async def test_different_buses_poll_concurrently() -> None:
    """Two endpoints, each with a silent device: neither waits for the other's timeouts."""
    p1, p2 = free_port(), free_port()
    a = tcp_source("a", p1, [{"tag": "A", "address": 0, "type": "uint16"}], timeout=0.4, poll_interval=0.2)
    a_dead = tcp_source(
        "a-dead", p1, [{"tag": "AD", "address": 0, "type": "uint16"}], device_id=2, timeout=0.4, poll_interval=0.2
    )
    b = tcp_source("b", p2, [{"tag": "B", "address": 0, "type": "uint16"}], poll_interval=0.2)
    async with rig([a, a_dead, b]) as r:
        assert r.adapter("a").bus is r.adapter("a-dead").bus and r.adapter("a").bus is not r.adapter("b").bus
        r.server.set_value("B", 5)
        r.server.set_silent("a-dead")
        await async_wait_for(lambda: r.out.is_("AD", Quality.COMM) and r.out.is_("B", Quality.GOOD, 5))
        start = len(r.out.batches_with("B"))
        await async_wait_for(lambda: len(r.out.batches_with("B")) >= start + 5)
        window = r.out.batches_with("B")[start:]
        durations = [(t - batch[0].ts) / 1e9 for t, batch in window]
        assert max(durations) < 0.2, f"bus b waited for bus a: {durations}"
