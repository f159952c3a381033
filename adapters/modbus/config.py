"""Config model of the Modbus TCP and RTU source types (``type: modbus_tcp`` / ``modbus_rtu``).

Registered in ``adapters/registry.py``; the keys are documented in README.md beside this
file. Checks that need more than one source (a shared bus) or the tag table are in
:func:`adapters.modbus.check_modbus_sources`.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from dataclasses import replace
from typing import Annotated, Literal

from pydantic import BeforeValidator, Field, field_validator, model_validator

from adapters.modbus.addressing import modicon_suggestion, parse_modicon, to_modicon
from gateway.core.config import CommLink, CommUnit, Duration, Id, Model, SourceConfig

BYTE_ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")
ByteOrder = Literal["ABCD", "CDAB", "BADC", "DCBA"]
ModbusType = Literal[
    "int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64", "bool", "string"
]
_REGISTERS = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2, "int64": 4, "uint64": 4,
              "float64": 4, "bool": 1}


class CurrentLoop(Model):
    """4-20 mA mapping: raw counts at 4 and 20 mA -> the tag's engineering ``range``."""

    raw_4ma: float
    raw_20ma: float
    fault_below_ma: float = 3.8
    fault_above_ma: float = 20.5

    @model_validator(mode="after")
    def _check(self) -> CurrentLoop:
        if self.raw_4ma == self.raw_20ma:
            raise ValueError("raw_4ma and raw_20ma must differ")
        if not self.fault_below_ma < self.fault_above_ma:
            raise ValueError("fault_below_ma must be below fault_above_ma")
        return self


class AddressProblem(str):
    """Put in place of a raw ``address`` by the source's addressing check, so the problem is
    reported at the point's ``address`` (the source's validator cannot raise there)."""


def _address_text(v: object) -> str:
    if isinstance(v, AddressProblem):
        raise ValueError(str(v))
    if isinstance(v, bool) or not isinstance(v, int | str):
        raise ValueError(f"address must be an integer or 'register.bit' (e.g. 40.3), got {v!r}")
    return str(v).strip()


class ModbusPoint(Model):
    tag: Id
    table: Literal["holding", "input", "coil", "discrete"] = "holding"
    address: Annotated[str, BeforeValidator(_address_text)] = Field(
        description="register/bit address; 'N.B' selects bit B of register N"
    )
    type: ModbusType = "uint16"
    byte_order: ByteOrder | None = None
    length: int | None = Field(default=None, ge=1, le=125, description="registers, for type string")
    scale: float = 1.0
    offset: float = 0.0
    current_loop: CurrentLoop | None = None
    fault: Id | None = Field(default=None, description="tag of a status point that makes this one bad")
    fault_state: bool = True

    @property
    def register(self) -> int:
        return int(str(self.address).split(".")[0])

    @property
    def bit(self) -> int | None:
        s = str(self.address)
        return int(s.split(".")[1]) if "." in s else None

    @property
    def count(self) -> int:
        if self.table in ("coil", "discrete"):
            return 1
        if self.type == "string":
            return self.length or 1
        return _REGISTERS[self.type]

    @model_validator(mode="after")
    def _check(self) -> ModbusPoint:
        s = str(self.address)
        if not re.fullmatch(r"\d+(\.\d+)?", s):
            raise ValueError(f"address must be an integer or 'register.bit', got {self.address!r}")
        reg = int(s.split(".")[0])
        if reg > 65535:
            raise ValueError("address must be 0..65535")
        if "." in s:
            if int(s.split(".")[1]) > 15:
                raise ValueError("bit must be 0..15")
            if self.type != "bool":
                raise ValueError("'register.bit' addresses need type bool")
            if self.table in ("coil", "discrete"):
                raise ValueError("'register.bit' addresses are for holding/input registers")
        if self.table in ("coil", "discrete") and self.type != "bool":
            raise ValueError(f"{self.table} points are type bool")
        if self.type == "bool" and self.table in ("holding", "input") and "." not in s:
            raise ValueError("a bool in a register needs 'register.bit' addressing, e.g. 10.3")
        if self.type == "string" and not self.length:
            raise ValueError("type string needs length (registers)")
        if self.current_loop and self.type in ("bool", "string"):
            raise ValueError("current_loop needs a numeric type")
        if self.current_loop and (self.scale != 1.0 or self.offset != 0.0):
            raise ValueError("current_loop maps raw counts onto the tag's range; leave scale/offset at 1/0")
        return self


def _resolve_addresses(data: object) -> object:
    """``addressing: modicon``: each point's ``address`` is a Modicon reference, rewritten to
    ``table`` + 0-based offset before the points are validated. Default addressing: an
    address that looks like a Modicon reference of its table is refused with the fix.
    ``addressing: offset`` (said explicitly) takes every address as a protocol offset."""
    if not isinstance(data, dict) or not isinstance(data.get("points"), list):
        return data
    mode = data.get("addressing")
    if mode not in (None, "modicon"):
        return data
    points: list[object] = []
    for p in data["points"]:
        a = p.get("address") if isinstance(p, dict) else None
        if isinstance(a, bool) or not isinstance(a, int | str):
            points.append(p)
            continue
        assert isinstance(p, dict)
        text = str(a).strip()
        if mode == "modicon":
            try:
                table, offset, bit = parse_modicon(text)
            except ValueError as e:
                points.append({**p, "address": AddressProblem(f"{e} (the source says addressing: modicon)")})
                continue
            if "table" in p and p["table"] != table:
                problem = f"{text} is a {table} reference (addressing: modicon), but table says {p['table']}"
                points.append({**p, "address": AddressProblem(f"{problem}: leave table out")})
                continue
            points.append({**p, "table": table, "address": f"{offset}" if bit is None else f"{offset}.{bit}"})
            continue
        m = re.fullmatch(r"(\d+)(?:\.(\d+))?", text)
        table = p.get("table", "holding")
        if m and isinstance(table, str):
            reg, bit_text = int(m.group(1)), m.group(2)
            hint = modicon_suggestion(table, reg, int(bit_text) if bit_text else None)
            if hint is None and reg > 65535:
                try:
                    ref_table, offset, _ = parse_modicon(m.group(1))
                except ValueError:
                    pass
                else:
                    hint = (
                        f"address {reg} is beyond 65535; it looks like a 6-digit Modicon reference ({ref_table} "
                        f"offset {offset}): write `addressing: modicon` on the source, or table {ref_table} and the "
                        f"0-based offset {offset}"
                    )
            if hint is not None:
                points.append({**p, "address": AddressProblem(hint)})
                continue
        points.append(p)
    return {**data, "points": points}


class ModbusCommon(SourceConfig):
    device_id: int = Field(default=1, ge=0, le=255, description="unit id; 1..247 on a serial line")
    addressing: Literal["offset", "modicon"] | None = Field(
        default=None,
        description="offset: addresses are 0-based protocol offsets (default; one that looks like a Modicon "
        "reference is an error unless offset is said explicitly); modicon: 40001-style references, table implied",
    )
    poll_interval: Duration = 1.0
    timeout: Duration = 1.0
    retries: int = Field(default=0, ge=0, le=5)
    byte_order: ByteOrder = "ABCD"
    max_gap: int = Field(default=16, ge=0, le=124, description="registers/bits bridged when merging reads")
    max_registers: int = Field(default=125, ge=1, le=125)
    max_bits: int = Field(default=2000, ge=1, le=2000)
    inter_frame_delay: Duration = 0.0
    backoff_max: Duration = Field(default=30.0, gt=0, description="longest wait before retrying a failed device")
    points: list[ModbusPoint] = Field(min_length=1)

    _addresses = model_validator(mode="before")(_resolve_addresses)

    @field_validator("poll_interval", "timeout")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be > 0")
        return v

    @model_validator(mode="after")
    def _point_sizes(self) -> ModbusCommon:
        for p in self.points:
            if p.table in ("holding", "input") and p.count > self.max_registers:
                raise ValueError(
                    f"point {p.tag} needs {p.count} registers, more than max_registers={self.max_registers}"
                )
        return self

    def point_tags(self) -> Iterator[str]:
        return (p.tag for p in self.points)

    def point_addresses(self) -> dict[str, str]:
        """``holding:0 (40001) float32 ABCD, unit 1``: table and 0-based offset, the Modicon
        reference, type and byte order (registers), the device's unit id."""
        out: dict[str, str] = {}
        for p in self.points:
            text = f"{p.table}:{p.address}"
            with contextlib.suppress(KeyError, ValueError):
                text += f" ({to_modicon(p.table, p.register, p.bit)})"
            if p.table in ("holding", "input"):
                text += f" {p.type}"
                if p.count > 1 and p.type != "string":
                    text += f" {p.byte_order or self.byte_order}"
            out.setdefault(p.tag, f"{text}, unit {self.device_id}")
        return out

    @property
    def expected_interval(self) -> float:
        return float(self.poll_interval)

    def bus(self) -> CommLink:
        """The connection this device shares with the other entries naming the same endpoint."""
        raise NotImplementedError

    def comm_units(self) -> list[CommUnit]:
        """One unit per entry (one device), linked to its bus: a device that stops answering
        raises its own COMM alarm, a bus that goes down (every device on it) raises one."""
        return [replace(u, link=self.bus()) for u in super().comm_units()]


class ModbusTcpSource(ModbusCommon):
    type: Literal["modbus_tcp"]
    host: str
    port: int = Field(default=502, ge=1, le=65535)
    framer: Literal["socket", "rtu"] = Field(default="socket", description="rtu = RTU over TCP")

    def bus(self) -> CommLink:
        return CommLink(f"modbus:{self.host}:{self.port}", f"Modbus {self.host}:{self.port}")


class ModbusRtuSource(ModbusCommon):
    type: Literal["modbus_rtu"]
    port: str = Field(description="/dev/ttyUSB0, or socket://host:port for a serial device server")
    baudrate: int = Field(default=9600, gt=0)
    parity: Literal["N", "E", "O"] = "N"
    stopbits: Literal[1, 2] = 1
    bytesize: Literal[7, 8] = 8

    @field_validator("device_id")
    @classmethod
    def _serial_address(cls, v: int) -> int:
        if not 1 <= v <= 247:
            raise ValueError(
                f"device_id {v}: a serial line addresses devices 1..247 (0 is broadcast, which never answers "
                "a read; 248..255 are reserved)"
            )
        return v

    @field_validator("port")
    @classmethod
    def _port(cls, v: str) -> str:
        if v.startswith("socket://"):
            m = re.fullmatch(r"socket://(\[[0-9a-fA-F:.]+\]|[^:/\s]+):(\d{1,5})/?", v)
            if not m or not 1 <= int(m.group(2)) <= 65535:
                raise ValueError(f"expected socket://host:port (port 1..65535), got {v!r}")
        if not v.strip():
            raise ValueError("port must name a serial device or socket://host:port")
        return v

    def bus(self) -> CommLink:
        where = self.port.removeprefix("socket://").rstrip("/")
        return CommLink(f"modbus:{where}", f"Modbus RTU {where}")
