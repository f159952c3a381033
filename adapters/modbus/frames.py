"""What came back when no usable answer did: the received bytes checked against the request.

pymodbus silently skips a Modbus TCP frame with another transaction id, waits forever for
the rest of a frame whose length field is too large, and on a frame it cannot decode
raises inside asyncio's ``data_received`` (a traceback in the log and the connection
closed). The bus therefore looks at every received byte stream first
(:class:`FrameInspector`, through pymodbus' ``trace_packet`` hook): a frame that cannot be
the answer is kept from pymodbus and its reason recorded, so a request that ends without
an answer is reported as a *bad response* with the reason (``transaction_id``,
``length``, ``garbage``, ``device_id``, ``function_code``, ``crc``) instead of a timeout.

Pure functions and a small state object; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

# A frame longer than this is not a Modbus frame (MBAP length field: unit id + PDU <= 254).
MAX_MBAP_LENGTH = 254


@dataclass(frozen=True, slots=True)
class Expect:
    """The request an answer must match."""

    tid: int  # Modbus TCP transaction id (0 for RTU framing)
    device_id: int
    function_code: int
    byte_count: int  # data bytes a full answer carries (2 per register, 1 per 8 bits)


@dataclass(frozen=True, slots=True)
class Verdict:
    """``keep``: the bytes to hand to pymodbus; ``reason``/``detail``: why some were dropped."""

    keep: bytes
    reason: str = ""
    detail: str = ""


def _hex(data: bytes, limit: int = 16) -> str:
    s = data[:limit].hex(" ")
    return s + (" ..." if len(data) > limit else "")


def check_mbap(data: bytes, expect: Expect) -> Verdict:
    """Check a Modbus TCP receive buffer against ``expect``.

    Frames of another transaction (a late answer to an earlier request) or another unit
    are skipped; a buffer that does not parse as MBAP at all is dropped whole. Returns the
    bytes from the first frame that can be the answer (or an incomplete tail, kept to wait
    for the rest)."""
    pos = 0
    reason = detail = ""
    while pos < len(data):
        rest = data[pos:]
        if len(rest) < 8:
            return Verdict(rest, reason, detail)  # wait for more (a complete header + function code)
        tid = int.from_bytes(rest[0:2], "big")
        pid = int.from_bytes(rest[2:4], "big")
        length = int.from_bytes(rest[4:6], "big")
        uid = rest[6]
        fc = rest[7]
        if pid != 0:
            return Verdict(b"", "garbage", f"not a Modbus TCP frame (protocol id {pid:#06x}): {_hex(rest)}")
        if not 2 <= length <= MAX_MBAP_LENGTH:
            return Verdict(b"", "length", f"MBAP length field {length} out of 2..{MAX_MBAP_LENGTH}: {_hex(rest)}")
        total = 6 + length
        if tid != expect.tid:
            if len(rest) < total:
                return Verdict(b"", "transaction_id", f"transaction id {tid}, expected {expect.tid}")
            reason, detail = "transaction_id", f"transaction id {tid}, expected {expect.tid}"
            pos += total
            continue
        if expect.device_id and uid != expect.device_id:
            if len(rest) < total:
                return Verdict(b"", "device_id", f"answer from device id {uid}, asked {expect.device_id}")
            reason, detail = "device_id", f"answer from device id {uid}, asked {expect.device_id}"
            pos += total
            continue
        problem = _check_pdu(rest[7:total] if len(rest) >= total else rest[7:], fc, length - 1, expect)
        if problem:
            return Verdict(b"", *problem)
        return Verdict(rest, reason, detail)  # complete or still arriving: pymodbus takes it from here
    return Verdict(b"", reason, detail)


def _check_pdu(pdu: bytes, fc: int, pdu_len: int, expect: Expect) -> tuple[str, str] | None:
    """A read answer's PDU (function code first) against the MBAP length and the request.

    ``pdu`` may be incomplete (still arriving); ``pdu_len`` is what the header announces."""
    if fc == expect.function_code | 0x80:
        if pdu_len != 2:
            return "length", f"exception answer with MBAP length {pdu_len + 1}, expected 3"
        return None
    if fc != expect.function_code:
        return "function_code", f"answer has function code {fc}, sent {expect.function_code}"
    if pdu_len < 2:
        return "length", f"MBAP length {pdu_len + 1} too short for a read answer"
    if len(pdu) >= 2:
        byte_count = pdu[1]
        if byte_count + 2 != pdu_len:
            return "length", f"byte count {byte_count} does not match the MBAP length {pdu_len + 1}"
    return None


def explain_rtu(data: bytes, expect: Expect) -> tuple[str, str]:
    """Why bytes received on an RTU line were no answer (pymodbus hunts past garbage itself)."""
    from pymodbus.framer.rtu import FramerRTU

    if data and expect.device_id and data[0] != expect.device_id:
        return "device_id", f"answer from device id {data[0]}, asked {expect.device_id}: {_hex(data)}"
    if len(data) >= 2 and data[1] not in (expect.function_code, expect.function_code | 0x80):
        return "function_code", f"answer has function code {data[1]}, sent {expect.function_code}: {_hex(data)}"
    need = 5 + expect.byte_count if len(data) >= 2 and data[1] == expect.function_code else 5
    if len(data) < need:
        return "length", f"{len(data)} byte(s) of a {need}-byte answer: {_hex(data)}"
    crc = int.from_bytes(data[need - 2 : need], "big")
    if not FramerRTU.check_CRC(data[: need - 2], crc):
        return "crc", f"CRC mismatch: {_hex(data)}"
    return "garbage", f"unreadable answer: {_hex(data)}"


class FrameInspector:
    """Sits in pymodbus' ``trace_packet`` hook of one client: sees what is sent and received."""

    def __init__(self, framer: str) -> None:
        self.framer = framer  # "socket" or "rtu"
        self.expect: Expect | None = None
        self.received = b""  # what arrived for the current request (bounded: pymodbus' buffer)
        self.reason = ""
        self.detail = ""

    def begin(self, device_id: int, function_code: int, byte_count: int) -> None:
        self.expect = Expect(0, device_id, function_code, byte_count)
        self.received = b""
        self.reason = self.detail = ""

    def trace(self, sending: bool, data: bytes) -> bytes:
        if sending:
            if self.expect is not None and self.framer == "socket" and len(data) >= 2:
                e = self.expect
                self.expect = Expect(int.from_bytes(data[0:2], "big"), e.device_id, e.function_code, e.byte_count)
            return data
        if self.expect is None:
            return b""  # nothing is awaited: a late answer (or garbage) must not reach the decoder
        self.received = data[-512:]
        if self.framer != "socket":
            return data
        verdict = check_mbap(data, self.expect)
        if verdict.reason:
            self.reason, self.detail = verdict.reason, verdict.detail
        return verdict.keep

    def explain(self) -> tuple[str, str] | None:
        """(reason, detail) when bytes arrived but no answer came of them; None for silence."""
        if self.reason:
            return self.reason, self.detail
        if not self.received or self.expect is None:
            return None
        if self.framer == "socket":
            need = 6 + int.from_bytes(self.received[4:6], "big") if len(self.received) >= 6 else 8
            return "length", f"{len(self.received)} byte(s) of a {need}-byte frame arrived: {_hex(self.received)}"
        return explain_rtu(self.received, self.expect)
