"""Where a Modbus source's bytes go: one :class:`TransportSpec` per physical connection.

Sources that name the same TCP endpoint (a Modbus TCP gateway, or a serial device server
carrying RTU frames) or the same serial port share one spec, hence one bus.

``socket://host:port`` RTU sources are served by pymodbus' *TCP* client with the RTU
framer, which is the same byte stream. pymodbus' serial client would route the URL
through pyserial's ``socket://`` handler, whose connect is a blocking
``socket.create_connection`` (up to 5 s per attempt against an unreachable device
server) that would freeze the whole event loop, every other source included.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.framer import FramerType

from adapters.modbus.config import ModbusRtuSource, ModbusTcpSource
from adapters.modbus.logs import install_log_filter

ModbusSource = ModbusTcpSource | ModbusRtuSource

_SOCKET_URL = re.compile(r"^socket://(?P<host>\[[0-9a-fA-F:.]+\]|[^:/\s]+):(?P<port>\d{1,5})/?$")


@dataclass(frozen=True, slots=True)
class TransportSpec:
    """One connection: a TCP endpoint (MBAP or RTU framing) or a local serial port."""

    kind: Literal["tcp", "serial"]
    framer: Literal["socket", "rtu"]
    host: str = ""
    port: int = 0
    device: str = ""  # serial port path
    baudrate: int = 9600
    parity: str = "N"
    stopbits: int = 1
    bytesize: int = 8

    @property
    def key(self) -> str:
        """Identity of the physical connection; equal keys share one bus."""
        return f"tcp://{self.host}:{self.port}" if self.kind == "tcp" else f"serial://{self.device}"

    @property
    def settings(self) -> tuple[object, ...]:
        """What must agree between sources sharing the key."""
        if self.kind == "tcp":
            return (self.framer,)
        return (self.baudrate, self.parity, self.stopbits, self.bytesize)

    def describe(self) -> str:
        if self.kind == "tcp":
            return f"{self.host}:{self.port} ({'RTU over TCP' if self.framer == 'rtu' else 'Modbus TCP'})"
        return f"{self.device} ({self.baudrate} {self.bytesize}{self.parity}{self.stopbits}, RTU)"

    def char_time(self) -> float:
        """Seconds per character on a serial line (start + data + parity + stop bits)."""
        bits = 1 + self.bytesize + (0 if self.parity == "N" else 1) + self.stopbits
        return bits / self.baudrate

    def min_frame_gap(self) -> float:
        """The RTU inter-frame silence: 3.5 characters, fixed 1.75 ms above 19200 baud."""
        if self.kind != "serial":
            return 0.0
        return 0.00175 if self.baudrate > 19200 else 3.5 * self.char_time()


def parse_socket_url(url: str) -> tuple[str, int] | None:
    """``socket://host:port`` -> (host, port); None for a device path."""
    m = _SOCKET_URL.match(url)
    if not m:
        return None
    port = int(m.group("port"))
    if not 1 <= port <= 65535:
        return None
    return m.group("host").strip("[]"), port


def transport_spec(cfg: ModbusSource) -> TransportSpec:
    if isinstance(cfg, ModbusTcpSource):
        return TransportSpec(kind="tcp", framer=cfg.framer, host=cfg.host, port=cfg.port)
    if cfg.port.startswith("socket://"):
        hp = parse_socket_url(cfg.port)
        if hp is None:
            raise ValueError(f"source {cfg.id}: port {cfg.port!r} must look like socket://host:port")
        return TransportSpec(kind="tcp", framer="rtu", host=hp[0], port=hp[1])
    return TransportSpec(
        kind="serial",
        framer="rtu",
        device=cfg.port,
        baudrate=cfg.baudrate,
        parity=cfg.parity,
        stopbits=cfg.stopbits,
        bytesize=cfg.bytesize,
    )


def group_by_transport(cfgs: Sequence[ModbusSource]) -> dict[str, tuple[TransportSpec, list[ModbusSource]]]:
    """Sources grouped by physical connection. Contradicting settings raise ValueError."""
    out: dict[str, tuple[TransportSpec, list[ModbusSource]]] = {}
    for cfg in cfgs:
        spec = transport_spec(cfg)
        if spec.key in out:
            first_spec, members = out[spec.key]
            if first_spec.settings != spec.settings:
                raise ValueError(
                    f"sources {members[0].id!r} and {cfg.id!r} share {spec.key} but disagree on its settings "
                    f"({first_spec.describe()} vs {spec.describe()})"
                )
            members.append(cfg)
        else:
            out[spec.key] = (spec, [cfg])
    return out


def make_client(
    spec: TransportSpec, timeout: float, name: str, trace_packet: Callable[[bool, bytes], bytes] | None = None
) -> AsyncModbusTcpClient | AsyncModbusSerialClient:
    """A pymodbus 3.16 async client with its own retries and auto-reconnect switched off.

    The bus does retries, per-device timeouts and reconnect backoff itself, so pymodbus
    must neither retry (it would multiply a dead device's delay) nor reconnect behind the
    bus' back. ``timeout`` only bounds connecting and is a backstop for responses.
    ``trace_packet`` sees (and may filter) every byte stream sent and received
    (:mod:`adapters.modbus.frames`). pymodbus' own log records go to debug level
    (:mod:`adapters.modbus.logs`).
    """
    install_log_filter()
    framer = FramerType.RTU if spec.framer == "rtu" else FramerType.SOCKET
    client: AsyncModbusTcpClient | AsyncModbusSerialClient
    if spec.kind == "tcp":
        client = AsyncModbusTcpClient(
            spec.host,
            port=spec.port,
            framer=framer,
            name=name,
            timeout=timeout,
            retries=0,
            reconnect_delay=0,
            trace_packet=trace_packet,
        )
    else:
        client = AsyncModbusSerialClient(
            spec.device,
            framer=framer,
            baudrate=spec.baudrate,
            parity=spec.parity,
            stopbits=spec.stopbits,
            bytesize=spec.bytesize,
            name=name,
            timeout=timeout,
            retries=0,
            reconnect_delay=0,
            trace_packet=trace_packet,
        )
    # pymodbus closes the connection after retries+3 unanswered requests in a row; on a
    # shared bus that would punish the healthy devices for a dead one. The bus decides.
    client.set_max_no_responses(1_000_000)
    return client
