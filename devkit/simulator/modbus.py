"""Modbus devices for the plant simulator and the tests: real pymodbus 3.16 servers.

The simulator module of the Modbus source spec (``traits`` and ``build`` at the end
implement the contract in :mod:`devkit.simulator`).

:class:`ModbusPlantServer` serves every point of a list of Modbus source configs: one
server per endpoint (``host:port``), MBAP framing for ``modbus_tcp`` sources and RTU
framing for ``framer: rtu`` and ``socket://`` RTU sources, with one device per device id.
Sources on a real serial port are served only when ``serial_ports`` maps their port to
the port the simulator should open (e.g. the other end of a virtual null-modem pair).

Engineering values go in with :meth:`ModbusPlantServer.set_value`, which inverts the
point's type, byte order, scale/offset and 4-20 mA mapping, so the adapter reading it back
gets the same value. Fault injection for tests: silent devices, exception answers,
illegal addresses, short (wrong register count) answers.

Built on pymodbus' ``SimDevice``/``SimData`` API (``ModbusServerContext`` is deprecated in
3.16): each table is one contiguous block spanning its points, so gaps between points
read as 0 like on most real devices; the device's ``action`` hook copies the current
values into the answer and injects exceptions; the server's ``trace_pdu`` hook silences
devices and shortens answers.
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, cast

from pymodbus.constants import ExcCodes
from pymodbus.framer import FramerType
from pymodbus.pdu import ModbusPDU
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from adapters.modbus.config import ModbusPoint, ModbusRtuSource, ModbusTcpSource
from adapters.modbus.encoder import (
    encode_number,
    encode_string,
    milliamps_to_raw,
    set_bit,
    unscale,
    value_to_milliamps,
)
from adapters.modbus.logs import install_log_filter
from adapters.modbus.planner import BIT_TABLES
from adapters.modbus.transport import TransportSpec, transport_spec
from devkit.simulator import FaultPoint, SimulatedDevice, SourceTraits
from gateway.core.config import SiteConfig, SourceConfig, Tag

if TYPE_CHECKING:
    from devkit.simulator.plant import Frame

log = logging.getLogger(__name__)

ModbusSource = ModbusTcpSource | ModbusRtuSource
_FC_TABLE = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}
_TABLE_INDEX = {"coil": 0, "discrete": 1, "holding": 2, "input": 3}  # SimDevice tuple order


@dataclass
class _Rule:
    table: str | None  # None: every table
    lo: int
    hi: int  # exclusive
    code: int

    def hits(self, table: str, lo: int, hi: int) -> bool:
        return (self.table is None or self.table == table) and lo < self.hi and self.lo < hi


@dataclass
class _Device:
    endpoint: str
    device_id: int
    sources: list[str] = field(default_factory=list)
    tables: dict[str, dict[int, int]] = field(
        default_factory=lambda: {"holding": {}, "input": {}, "coil": {}, "discrete": {}}
    )
    extent: dict[str, tuple[int, int]] = field(default_factory=dict)  # table -> [lo, hi)
    silent: bool = False
    short: bool = False
    rules: list[_Rule] = field(default_factory=list)
    requests: Counter[int] = field(default_factory=Counter)  # function code -> count

    @property
    def key(self) -> str:
        return f"{self.endpoint}/{self.device_id}"

    def cover(self, table: str, lo: int, hi: int) -> None:
        old = self.extent.get(table)
        self.extent[table] = (lo, hi) if old is None else (min(old[0], lo), max(old[1], hi))


@dataclass
class _Endpoint:
    spec: TransportSpec
    serve_port: str | None = None  # serial: the port the simulator opens
    devices: dict[int, _Device] = field(default_factory=dict)
    server: ModbusTcpServer | ModbusSerialServer | None = None


@dataclass
class _PointRef:
    device: _Device
    point: ModbusPoint
    order: str
    tag: Tag | None


class ModbusPlantServer:
    """Serves the points of ``sources``; ``tags`` gives ranges for 4-20 mA points."""

    def __init__(
        self,
        sources: Sequence[ModbusSource],
        tags: Mapping[str, Tag] | None = None,
        *,
        serial_ports: Mapping[str, str] | None = None,
    ) -> None:
        self._tags = dict(tags or {})
        self._endpoints: dict[str, _Endpoint] = {}
        self._points: dict[str, _PointRef] = {}
        self._by_source: dict[str, _Device] = {}
        self._fault_state: dict[str, bool] = {}  # fault point tag -> state that means "fault"
        self._running = False
        self._silenced: set[str] = set()  # sources silenced by the plant (show)
        serial_ports = dict(serial_ports or {})
        for cfg in sources:
            spec = transport_spec(cfg)
            ep = self._endpoints.get(spec.key)
            if ep is None:
                serve = serial_ports.get(spec.device) if spec.kind == "serial" else None
                ep = self._endpoints[spec.key] = _Endpoint(spec, serve)
            elif ep.spec.framer != spec.framer:
                raise ValueError(f"sources on {spec.key} disagree on the framing")
            dev = ep.devices.get(cfg.device_id)
            if dev is None:
                dev = ep.devices[cfg.device_id] = _Device(spec.key, cfg.device_id)
            dev.sources.append(cfg.id)
            self._by_source[cfg.id] = dev
            for p in cfg.points:
                self._points[p.tag] = _PointRef(dev, p, p.byte_order or cfg.byte_order, self._tags.get(p.tag))
                if p.table in BIT_TABLES:
                    dev.cover(p.table, p.register, p.register + 1)
                else:
                    dev.cover(p.table, p.register, p.register + p.count)
                if p.fault:
                    self._fault_state[p.fault] = p.fault_state
        for tag in self._points:  # fault points start healthy
            if tag in self._fault_state:
                self.set_value(tag, not self._fault_state[tag])

    # ------------------------------------------------------------------ lifecycle
    @property
    def endpoints(self) -> list[str]:
        return list(self._endpoints)

    def device_keys(self) -> list[str]:
        return [d.key for ep in self._endpoints.values() for d in ep.devices.values()]

    async def start(self) -> None:
        if self._running:
            return
        install_log_filter()  # pymodbus' server records: debug level, one line
        started: list[ModbusTcpServer | ModbusSerialServer] = []
        try:
            for ep in self._endpoints.values():
                server = self._make_server(ep)
                if server is None:
                    continue
                await server.serve_forever(background=True)
                ep.server = server
                started.append(server)
        except BaseException:
            for s in started:
                with contextlib.suppress(Exception):
                    await s.shutdown()
            raise
        self._running = True

    async def stop(self) -> None:
        for ep in self._endpoints.values():
            server, ep.server = ep.server, None
            if server is not None:
                with contextlib.suppress(Exception):
                    await server.shutdown()
        self._running = False

    async def __aenter__(self) -> ModbusPlantServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _make_server(self, ep: _Endpoint) -> ModbusTcpServer | ModbusSerialServer | None:
        devices = [self._sim_device(d) for d in ep.devices.values()]
        # pymodbus annotates trace_pdu as returning a PDU; its request handler takes None as "no answer"
        trace = partial(self._trace_pdu, ep)
        spec = ep.spec
        framer = FramerType.RTU if spec.framer == "rtu" else FramerType.SOCKET
        if spec.kind == "tcp":
            return ModbusTcpServer(
                devices,
                framer=framer,
                address=(spec.host, spec.port),
                ignore_missing_devices=True,
                trace_pdu=trace,  # type: ignore[arg-type]
            )
        if ep.serve_port is None:
            log.warning("not serving %s: no simulator port mapped for serial port %s", ep.spec.key, spec.device)
            return None
        return ModbusSerialServer(
            devices,
            framer=framer,
            port=ep.serve_port,
            baudrate=spec.baudrate,
            parity=spec.parity,
            stopbits=spec.stopbits,
            bytesize=spec.bytesize,
            ignore_missing_devices=True,
            trace_pdu=trace,  # type: ignore[arg-type]
        )

    def _sim_device(self, dev: _Device) -> SimDevice:
        blocks: list[list[SimData]] = [[], [], [], []]
        for table, idx in _TABLE_INDEX.items():
            ext = dev.extent.get(table)
            bits = table in BIT_TABLES
            if ext is None:  # pymodbus needs every block non-empty: one unmapped cell
                blocks[idx].append(
                    SimData(0, values=[False] * 16, datatype=DataType.BITS)
                    if bits
                    else SimData(0, datatype=DataType.INVALID)
                )
                continue
            lo, hi = ext
            if bits:
                blocks[idx].append(SimData(lo, values=[False] * (hi - lo), datatype=DataType.BITS))
            else:
                blocks[idx].append(SimData(lo, values=[0] * (hi - lo), datatype=DataType.REGISTERS))
        return SimDevice(
            id=dev.device_id,
            simdata=(blocks[0], blocks[1], blocks[2], blocks[3]),
            use_bit_addressing=True,
            action=partial(self._action, dev),
        )

    # ------------------------------------------------------------------ pymodbus hooks
    def _trace_pdu(self, ep: _Endpoint, sending: bool, pdu: ModbusPDU) -> ModbusPDU | None:
        dev = ep.devices.get(pdu.dev_id)
        if sending:
            if dev is not None and dev.short and not pdu.isError() and len(pdu.registers) > 1:
                pdu.registers = list(pdu.registers)[:-1]
            return pdu
        if dev is None:
            return None  # unknown id: no answer, like on RS-485
        dev.requests[pdu.function_code] += 1
        if dev.silent:
            return None  # like a device that is off: no answer at all
        return pdu

    async def _action(
        self,
        dev: _Device,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        table = _FC_TABLE.get(function_code)
        if set_values is not None or table is None:
            return ExcCodes.ILLEGAL_FUNCTION  # the plant is read-only, like the gateway
        if table in BIT_TABLES:
            # pymodbus hands bit blocks over as packed registers: ``count`` registers from
            # register address//16 (so rules match with 16-bit resolution at the end).
            first_reg = address // 16
            lo, hi = address, (first_reg + count) * 16
        else:
            lo, hi = address, address + count
        for rule in dev.rules:
            if rule.hits(table, lo, hi):
                return ExcCodes(rule.code)
        values = dev.tables[table]
        if table in BIT_TABLES:
            for r in range(first_reg, first_reg + count):
                word = 0
                base = r * 16
                for b in range(16):
                    if values.get(base + b):
                        word |= 1 << b
                registers[r - start_address] = word
        else:
            for a in range(lo, hi):
                registers[a - start_address] = values.get(a, 0)
        return None

    # ------------------------------------------------------------------ values
    def has_tag(self, tag: str) -> bool:
        return tag in self._points

    async def show(self, frame: Frame, ts_ms: int) -> None:
        """One plant frame: every value of a tag served here, and the sources the frame
        silences stop answering (until a frame leaves them out). Tags cannot be left out
        one by one: a polled device answers with its whole register block."""
        for tag, v in frame.values.items():
            if v is not None and tag in self._points:
                self.set_value(tag, v)
        silent = frame.effects.silent_sources & self._by_source.keys()
        for sid in silent - self._silenced:
            self.set_silent(sid, True)
        for sid in self._silenced - silent:
            self.set_silent(sid, False)
        self._silenced = silent

    def _ref(self, tag: str) -> _PointRef:
        try:
            return self._points[tag]
        except KeyError:
            raise KeyError(f"no Modbus point for tag {tag!r}") from None

    def set_value(self, tag: str, value: float | bool | str) -> None:
        """Put an engineering value into the point's registers (inverse of the adapter)."""
        ref = self._ref(tag)
        p = ref.point
        if p.type == "bool":
            self._set_bool(ref, bool(value))
            return
        if p.type == "string":
            text = value if isinstance(value, str) else format(float(value), "g")
            self._write(ref, encode_string(text, p.count, ref.order))
            return
        v = float(value)
        if p.current_loop is not None:
            rng = ref.tag.range if ref.tag else None
            if rng is None:
                raise ValueError(f"{tag}: a 4-20 mA point needs its tag's range")
            raw = milliamps_to_raw(value_to_milliamps(v, rng), p.current_loop)
        else:
            raw = unscale(v, p.scale, p.offset)
        self.set_raw(tag, raw)

    def set_raw(self, tag: str, raw: float) -> None:
        """Put a raw number (before scale/offset/4-20 mA) into a numeric point."""
        ref = self._ref(tag)
        if ref.point.type in ("bool", "string"):
            raise ValueError(f"{tag}: set_raw needs a numeric point")
        if not math.isfinite(raw) and ref.point.type not in ("float32", "float64"):
            raise ValueError(f"{tag}: {raw!r} does not fit {ref.point.type}")
        self._write(ref, encode_number(raw, ref.point.type, ref.order))

    def set_current(self, tag: str, milliamps: float) -> None:
        """Drive a 4-20 mA point's loop current directly (e.g. 2.0 for a wire break)."""
        ref = self._ref(tag)
        if ref.point.current_loop is None:
            raise ValueError(f"{tag} has no current_loop")
        self.set_raw(tag, milliamps_to_raw(milliamps, ref.point.current_loop))

    def set_fault(self, tag: str, active: bool = True) -> None:
        """Set a detector's fault point (``tag`` = the detector or the fault point itself)."""
        ref = self._ref(tag)
        if ref.point.fault:
            fault_tag, state = ref.point.fault, ref.point.fault_state
        else:
            fault_tag, state = tag, self._fault_state.get(tag, True)
        self.set_value(fault_tag, state if active else not state)

    def requests_served(self) -> int:
        """Requests received so far by every device (all function codes; benchmarks count polls)."""
        return sum(sum(d.requests.values()) for ep in self._endpoints.values() for d in ep.devices.values())

    def register_values(self, key: str, table: str, start: int, count: int) -> list[int]:
        """What the device would answer (for tests)."""
        dev = self._one_device(key)
        return [int(dev.tables[table].get(a, 0)) for a in range(start, start + count)]

    def _set_bool(self, ref: _PointRef, state: bool) -> None:
        p = ref.point
        table = ref.device.tables[p.table]
        if p.table in BIT_TABLES:
            table[p.register] = int(state)
        else:
            table[p.register] = set_bit(table.get(p.register, 0), p.bit or 0, state, ref.order)

    def _write(self, ref: _PointRef, regs: Iterable[int]) -> None:
        table = ref.device.tables[ref.point.table]
        for i, r in enumerate(regs):
            table[ref.point.register + i] = r

    # ------------------------------------------------------------------ fault injection
    def _devices(self, key: str) -> list[_Device]:
        """A source id, a device key (``tcp://host:port/3``) or an endpoint key -> devices."""
        if key in self._by_source:
            return [self._by_source[key]]
        if key in self._endpoints:
            return list(self._endpoints[key].devices.values())
        found = [d for ep in self._endpoints.values() for d in ep.devices.values() if d.key == key]
        if not found:
            raise KeyError(f"no simulated device, source or endpoint {key!r}")
        return found

    def _one_device(self, key: str) -> _Device:
        devs = self._devices(key)
        if len(devs) != 1:
            raise KeyError(f"{key!r} names {len(devs)} devices; use a source id or device key")
        return devs[0]

    def set_silent(self, key: str, silent: bool = True) -> None:
        """Make a device (or every device of an endpoint) stop answering, or answer again."""
        for d in self._devices(key):
            d.silent = silent

    def set_exception(
        self, key: str, code: int | None, table: str | None = None, start: int = 0, count: int = 65536
    ) -> None:
        """Answer reads overlapping ``table[start:start+count]`` with exception ``code``.

        ``code=None`` removes the device's exception rules (invalid addresses included).
        """
        for d in self._devices(key):
            if code is None:
                d.rules.clear()
            else:
                d.rules.append(_Rule(table, start, start + count, int(ExcCodes(code))))

    def set_invalid(self, key: str, table: str, addresses: Iterable[int]) -> None:
        """Make addresses unmapped: reads touching them get "illegal data address" (2)."""
        for d in self._devices(key):
            for a in addresses:
                d.rules.append(_Rule(table, a, a + 1, int(ExcCodes.ILLEGAL_ADDRESS)))

    def set_short_response(self, key: str, short: bool = True) -> None:
        """Answer register reads with one register fewer than asked (a broken device)."""
        for d in self._devices(key):
            d.short = short

    def requests(self, key: str) -> dict[int, int]:
        """Requests received by device(s), by function code (silent devices count too)."""
        total: Counter[int] = Counter()
        for d in self._devices(key):
            total.update(d.requests)
        return dict(total)

    def function_codes_seen(self) -> set[int]:
        return {fc for ep in self._endpoints.values() for d in ep.devices.values() for fc in d.requests}

    def status(self) -> dict[str, Any]:
        return {
            d.key: {
                "sources": d.sources,
                "silent": d.silent,
                "short": d.short,
                "rules": len(d.rules),
                "requests": sum(d.requests.values()),
            }
            for ep in self._endpoints.values()
            for d in ep.devices.values()
        }


# ---------------------------------------------------------------------- simulator contract


def traits(configs: Sequence[SourceConfig]) -> SourceTraits:
    """Fault status points of the detectors (``fault:`` on a point); no single tag can be left out."""
    return SourceTraits(
        fault_points={
            p.fault: FaultPoint(p.tag, p.fault_state)
            for cfg in cast(Sequence[ModbusSource], configs)
            for p in cfg.points
            if p.fault
        }
    )


def build(configs: Sequence[SourceConfig], site: SiteConfig) -> list[SimulatedDevice]:
    """One server set for all the Modbus sources: sources sharing an endpoint share a server."""
    return [ModbusPlantServer(cast(Sequence[ModbusSource], configs), site.tag_map())]
