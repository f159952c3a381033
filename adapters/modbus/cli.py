"""``hazardgw probe modbus``: read a device once, for commissioning (read-only).

Reads through the adapter's own bus (:class:`adapters.modbus.bus.ModbusBus`: the same
framing checks, timeouts and bad-answer reasons as the gateway) and prints every register
raw (hex, decimal) with its decodings, so the right type and byte order can be picked by
eye; ``--scan-ids`` lists the device ids that answer. Only read function codes (1-4) are
ever sent. Exit 0 on success, 1 on connection failure, timeout or an exception answer (one
clear line on stderr), 2 on usage errors.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import re
import sys
import time
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qs, urlsplit

EXCEPTION_NAMES = {
    1: "ILLEGAL FUNCTION",
    2: "ILLEGAL DATA ADDRESS",
    3: "ILLEGAL DATA VALUE",
    4: "SERVER DEVICE FAILURE",
    5: "ACKNOWLEDGE",
    6: "SERVER DEVICE BUSY",
    8: "MEMORY PARITY ERROR",
    10: "GATEWAY PATH UNAVAILABLE",
    11: "GATEWAY TARGET DEVICE FAILED TO RESPOND",
}
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2
ORDERS = ("ABCD", "CDAB", "BADC", "DCBA")


class UsageError(ValueError):
    pass


def parse_url(url: str) -> Any:
    """``tcp://host:502``, ``rtu+tcp://host:4001`` (RTU framing over TCP, a serial device
    server), ``rtu:///dev/ttyUSB0?baudrate=9600&parity=N&stopbits=1&bytesize=8`` ->
    :class:`adapters.modbus.transport.TransportSpec`."""
    from adapters.modbus.transport import TransportSpec

    u = urlsplit(url)
    q = {k: v[-1] for k, v in parse_qs(u.query).items()}
    if u.scheme in ("tcp", "modbus", "rtu+tcp", "rtu-over-tcp"):
        if not u.hostname:
            raise UsageError(f"{url!r}: no host (tcp://host:502)")
        return TransportSpec(
            kind="tcp", framer="socket" if u.scheme in ("tcp", "modbus") else "rtu", host=u.hostname,
            port=u.port or 502,
        )
    if u.scheme == "rtu":
        device = u.path or u.netloc
        if not device:
            raise UsageError(f"{url!r}: no serial port (rtu:///dev/ttyUSB0?baudrate=9600&parity=N)")
        try:
            parity = q.get("parity", "N").upper()
            if parity not in ("N", "E", "O"):
                raise ValueError(f"parity {parity!r} (N, E or O)")
            return TransportSpec(
                kind="serial", framer="rtu", device=device, baudrate=int(q.get("baudrate", 9600)), parity=parity,
                stopbits=int(q.get("stopbits", 1)), bytesize=int(q.get("bytesize", 8)),
            )
        except ValueError as e:
            raise UsageError(f"{url!r}: {e}") from None
    raise UsageError(f"{url!r}: use tcp://host:502, rtu+tcp://host:4001 or rtu:///dev/ttyUSB0?baudrate=9600")


def parse_ids(text: str) -> list[int]:
    """``1-247``, ``1,3,255``, ``0-10,255`` -> sorted unique ids 0..255."""
    out: set[int] = set()
    for part in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?", part)
        if not m:
            raise UsageError(f"--scan-ids {text!r}: use e.g. 1-247 or 1,2,255")
        lo, hi = int(m.group(1)), int(m.group(2) or m.group(1))
        if not 0 <= lo <= hi <= 255:
            raise UsageError(f"--scan-ids {text!r}: ids are 0..255, low-high")
        out.update(range(lo, hi + 1))
    return sorted(out)


def exception_text(code: int) -> str:
    return f"exception {code} ({EXCEPTION_NAMES.get(code, 'unknown exception code')})"


def register_lines(start: int, regs: Sequence[int], table: str) -> list[str]:
    """Each register raw and as 16-bit numbers; each pair as 32-bit numbers in all four orders."""
    from adapters.modbus.addressing import to_modicon
    from adapters.modbus.decoder import decode_number

    out = [f"{'offset':>6}  {'modicon':>7}  {'hex':>6}  {'uint16':>6}  {'int16':>6}  {'uint16 BA':>9}  {'int16 BA':>8}"]
    for i, r in enumerate(regs):
        a = start + i
        ref = to_modicon(table, a)
        out.append(
            f"{a:>6}  {ref:>7}  0x{r:04X}  {r:>6}  {int(decode_number([r], 'int16', 'ABCD')):>6}  "
            f"{int(decode_number([r], 'uint16', 'BADC')):>9}  {int(decode_number([r], 'int16', 'BADC')):>8}"
        )
    if len(regs) >= 2:
        out.append("")
        out.append(f"{'pair':>11}  {'order':<5}  {'float32':>14}  {'int32':>11}  {'uint32':>10}")
        for i in range(len(regs) - 1):
            pair = regs[i : i + 2]
            for order in ORDERS:
                f = decode_number(pair, "float32", order)
                ftext = f"{f:.7g}" if f == f and abs(f) != float("inf") else str(f)
                out.append(
                    f"{start + i:>5}-{start + i + 1:<5}  {order:<5}  {ftext:>14}  "
                    f"{int(decode_number(pair, 'int32', order)):>11}  {int(decode_number(pair, 'uint32', order)):>10}"
                )
    return out


def bit_lines(start: int, bits: Sequence[bool], table: str) -> list[str]:
    from adapters.modbus.addressing import to_modicon

    return [f"{start + i:>6}  {to_modicon(table, start + i):>7}  {int(b)}" for i, b in enumerate(bits)]


async def _probe(args: argparse.Namespace) -> int:
    from adapters.modbus.bus import GATEWAY_CODES, ModbusBus, Outcome
    from adapters.modbus.logs import install_log_filter
    from adapters.modbus.metrics import modbus_metrics
    from adapters.modbus.planner import BIT_TABLES
    from adapters.modbus.spec import parse_address_cell
    from gateway.core.metrics import Metrics

    install_log_filter()
    if not logging.getLogger().isEnabledFor(logging.DEBUG):
        # the bus' connection log lines are for the daemon; the probe prints its own one line
        logging.getLogger("adapters.modbus").setLevel(logging.ERROR)
    try:
        spec = parse_url(args.url)
        table, address, bit = parse_address_cell(args.address, None, args.table)
        if bit is not None:
            raise UsageError("--address: give a register, not a bit")
        ids = parse_ids(args.scan_ids) if args.scan_ids else None
        if not 1 <= args.count <= (2000 if table in BIT_TABLES else 125):
            raise UsageError(f"--count {args.count}: 1..125 registers or 1..2000 bits per read")
        if not 0 <= args.device_id <= 255:
            raise UsageError(f"--device-id {args.device_id}: 0..255")
    except (UsageError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USAGE
    bus = ModbusBus(spec, modbus_metrics(Metrics()), connect_timeout=max(2.0, args.timeout), backoff_max=0.5)
    bus.attach()
    try:
        if ids is not None:
            return await _scan(bus, spec, table, address, ids, args)
        r = await bus.read(table, address, args.count, args.device_id, args.timeout)
        where = f"device {args.device_id} at {spec.describe()}"
        if r.outcome is Outcome.OK:
            print(f"{table} {address}..{address + args.count - 1} from {where}:")
            lines = (bit_lines if table in BIT_TABLES else register_lines)(address, r.values, table)  # type: ignore[arg-type]
            print("\n".join(lines))
            return EXIT_OK
        if r.outcome is Outcome.EXCEPTION:
            what = " (a gateway: the device behind it did not answer)" if r.code in GATEWAY_CODES else ""
            print(f"error: {where} answered {table}@{address}+{args.count} with {exception_text(r.code)}{what}",
                  file=sys.stderr)
        elif r.outcome is Outcome.NOT_CONNECTED:
            print(f"error: cannot connect to {spec.describe()}: {r.detail or 'refused or timed out'}", file=sys.stderr)
        elif r.outcome is Outcome.BAD_RESPONSE:
            print(f"error: bad answer from {where} ({r.reason}): {r.detail}", file=sys.stderr)
        else:
            print(f"error: no answer from {where} within {args.timeout:g} s ({r.detail})", file=sys.stderr)
        return EXIT_FAILED
    finally:
        await bus.close()


async def _scan(bus: Any, spec: Any, table: str, address: int, ids: list[int], args: argparse.Namespace) -> int:
    from adapters.modbus.bus import GATEWAY_CODES, Outcome

    deadline = time.monotonic() + args.max_time
    found: list[str] = []
    asked = 0
    for uid in ids:
        if time.monotonic() >= deadline:
            print(f"scan stopped after {args.max_time:g} s (--max-time) before id {uid}", file=sys.stderr)
            break
        r = await bus.read(table, address, 1, uid, args.scan_timeout)
        asked += 1
        if r.outcome is Outcome.NOT_CONNECTED:
            print(f"error: cannot connect to {spec.describe()}: {r.detail or 'refused or timed out'}", file=sys.stderr)
            return EXIT_FAILED
        if r.outcome is Outcome.OK:
            found.append(f"{uid}")
        elif r.outcome is Outcome.EXCEPTION and r.code not in GATEWAY_CODES:
            found.append(f"{uid} ({exception_text(r.code)} for {table}@{address})")
        elif r.outcome is Outcome.BAD_RESPONSE and not r.garbled:
            found.append(f"{uid} (bad answer: {r.reason})")
    print(f"asked {asked} device id(s) at {spec.describe()} ({table}@{address}, {args.scan_timeout:g} s each)")
    if not found:
        print("error: no device id answered", file=sys.stderr)
        return EXIT_FAILED
    print("answering: " + ", ".join(found))
    return EXIT_OK


def cmd_probe(args: argparse.Namespace) -> int:
    return asyncio.run(_probe(args))


def add_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser],
                 probe: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = probe.add_parser(
        "modbus",
        help="read registers once and print every decoding (read-only)",
        description="Read-only: sends function codes 1-4 only.",
    )
    p.add_argument("url", help="tcp://host:502, rtu+tcp://host:4001 (RTU over TCP), "
                   "rtu:///dev/ttyUSB0?baudrate=9600&parity=N&stopbits=1&bytesize=8")
    p.add_argument("--device-id", type=int, default=1, help="unit id 0..255 (default 1)")
    p.add_argument("--table", choices=("holding", "input", "coil", "discrete"), default="holding")
    p.add_argument("--address", default="0",
                   help="0-based offset in --table, or a Modicon reference (40001) that implies the table")
    p.add_argument("--count", type=int, default=10, help="registers (1..125) or bits (1..2000)")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds to wait for the answer")
    p.add_argument("--scan-ids", default=None, help="list the device ids that answer, e.g. 1-247")
    p.add_argument("--scan-timeout", type=float, default=0.2, help="seconds per id while scanning")
    p.add_argument("--max-time", type=float, default=60.0, help="stop a scan after this many seconds")
    p.set_defaults(func=cmd_probe)
