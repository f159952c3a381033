"""One bus: a connection (TCP socket or serial port) shared by every device on it.

Requests are strictly serialized by a FIFO lock, so the sources sharing a bus interleave
request by request and none can monopolize it. Each request carries its own device's
timeout; a silent device costs the others exactly that timeout, never more (the poller
stops a device's cycle at its first timeout). The bus owns connecting: it connects on
first use, notices a lost connection on the next request and reconnects with capped
exponential backoff (:class:`gateway.core.backoff.Backoff`). Transitions are logged once,
never per poll.

The bus only ever sends read function codes 1-4: :meth:`read` is its one request method.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from enum import IntEnum
from typing import Any, NamedTuple

from pymodbus.client import AsyncModbusSerialClient, AsyncModbusTcpClient
from pymodbus.exceptions import ConnectionException, ModbusException, ModbusIOException

from adapters.modbus.frames import FrameInspector
from adapters.modbus.metrics import ModbusMetrics
from adapters.modbus.planner import BIT_TABLES, FUNCTION_CODES
from adapters.modbus.transport import TransportSpec, make_client
from gateway.core.backoff import Backoff

log = logging.getLogger("adapters.modbus")

# Exception codes 10/11: a gateway reports that the device behind it did not answer.
GATEWAY_CODES = frozenset({10, 11})
# Reconnect a TCP bus after this many unanswered requests in a row (no device answered).
RECONNECT_AFTER_TIMEOUTS = 3
CONNECT_BACKOFF_MIN = 0.5


class Outcome(IntEnum):
    OK = 0
    EXCEPTION = 1  # the device answered with an exception code
    TIMEOUT = 2  # no answer within the device's timeout
    NOT_CONNECTED = 3  # the bus is down (connecting, or waiting out its backoff)
    BAD_RESPONSE = 4  # an answer that does not fit the request (count, function code, framing)
    DROPPED = 5  # the device closed the connection while the request was outstanding


class ReadResult(NamedTuple):
    outcome: Outcome
    values: Sequence[int] | Sequence[bool] = ()
    code: int = 0  # Modbus exception code for EXCEPTION
    detail: str = ""
    # for BAD_RESPONSE: register_count | function_code | pymodbus (an answer that does not fit),
    # or garbage | transaction_id | length | device_id | crc (bytes came, but no answer: ``garbled``)
    reason: str = ""
    garbled: bool = False  # BAD_RESPONSE without any usable answer: it cost the full timeout

    @property
    def silent(self) -> bool:
        """No usable answer within the timeout (silence, garbage, or the connection dropped)."""
        return self.outcome in (Outcome.TIMEOUT, Outcome.DROPPED) or self.garbled


class ModbusBus:
    def __init__(
        self,
        spec: TransportSpec,
        metrics: ModbusMetrics,
        *,
        connect_timeout: float = 3.0,
        backoff_max: float = 30.0,
        inter_frame_delay: float = 0.0,
    ) -> None:
        self.spec = spec
        self.key = spec.key
        self._mm = metrics
        self.connect_timeout = connect_timeout
        self.backoff_max = max(backoff_max, CONNECT_BACKOFF_MIN)
        self.inter_frame_delay = max(inter_frame_delay, spec.min_frame_gap())
        self._lock = asyncio.Lock()
        self._client: AsyncModbusTcpClient | AsyncModbusSerialClient | None = None
        self._inspector = FrameInspector(spec.framer)
        self._users = 0
        self._closed = False
        self._quiet_until = 0.0
        self._next_attempt = 0.0
        self._reconnect = Backoff(CONNECT_BACKOFF_MIN, self.backoff_max)  # .attempts: failed connects in a row
        self._consecutive_timeouts = 0
        self._ever_connected = False
        self._down_logged = False
        self.last_error = ""
        self.requests = 0
        self.connects = 0
        self._gauge = metrics.bus_connected.labels(self.key)
        self._gauge.set(0)

    # ------------------------------------------------------------------ lifecycle
    def attach(self) -> None:
        self._users += 1
        self._closed = False

    async def detach(self) -> None:
        """One user stopped; the connection closes with the last one."""
        self._users = max(0, self._users - 1)
        if self._users == 0:
            await self.close()

    async def close(self) -> None:
        self._closed = True
        async with self._lock:
            self._drop_client()
            self._gauge.set(0)

    @property
    def connected(self) -> bool:
        c = self._client
        return c is not None and c.connected

    def health(self) -> dict[str, Any]:
        return {
            "bus": self.key,
            "transport": self.spec.describe(),
            "connected": self.connected,
            "connects": self.connects,
            "connect_failures": self._reconnect.attempts,
            "requests": self.requests,
            "last_error": self.last_error or None,
        }

    # ------------------------------------------------------------------ requests
    async def read(
        self,
        table: str,
        start: int,
        count: int,
        device_id: int,
        timeout: float,  # noqa: ASYNC109
    ) -> ReadResult:
        """Read ``count`` registers/bits of ``table``. Never raises for I/O problems.

        ``timeout`` is the device's own answer timeout; it starts when the request is sent,
        not while waiting for the bus, so it cannot be an ``asyncio.timeout`` around the call.
        """
        fc = FUNCTION_CODES[table]
        async with self._lock:
            if self._closed:
                return ReadResult(Outcome.NOT_CONNECTED, detail="bus closed")
            if not await self._ensure_connected():
                return ReadResult(Outcome.NOT_CONNECTED, detail=self.last_error)
            loop = asyncio.get_running_loop()
            wait = self._quiet_until - loop.time()
            if wait > 0:
                await asyncio.sleep(wait)
            client = self._client
            assert client is not None
            self.requests += 1
            self._inspector.begin(device_id, fc, 2 * count if table not in BIT_TABLES else (count + 7) // 8)
            try:
                async with asyncio.timeout(timeout):
                    if fc == 3:
                        rr = await client.read_holding_registers(start, count=count, device_id=device_id)
                    elif fc == 4:
                        rr = await client.read_input_registers(start, count=count, device_id=device_id)
                    elif fc == 1:
                        rr = await client.read_coils(start, count=count, device_id=device_id)
                    else:
                        rr = await client.read_discrete_inputs(start, count=count, device_id=device_id)
            except (TimeoutError, ModbusIOException):
                # ModbusIOException: pymodbus' own response timer (a backstop) fired first.
                return self._no_answer(client, timeout)
            except ConnectionException as e:
                self.last_error = f"connection: {e}"
                self._drop_client()
                return ReadResult(Outcome.NOT_CONNECTED, detail=self.last_error)
            except ModbusException as e:
                return ReadResult(Outcome.BAD_RESPONSE, detail=f"pymodbus: {e}", reason="pymodbus")
            finally:
                self._inspector.expect = None
                self._quiet_until = loop.time() + self.inter_frame_delay
            self._consecutive_timeouts = 0

        if rr.isError():
            code = int(getattr(rr, "exception_code", 0) or 0)
            return ReadResult(Outcome.EXCEPTION, code=code, detail=f"exception code {code}")
        if rr.function_code != fc:
            return ReadResult(
                Outcome.BAD_RESPONSE,
                detail=f"answer has function code {rr.function_code}, sent {fc}",
                reason="function_code",
            )
        if table in BIT_TABLES:
            bits = rr.bits
            if len(bits) < count or len(bits) - count >= 8:
                return ReadResult(
                    Outcome.BAD_RESPONSE, detail=f"expected {count} bits, got {len(bits)}", reason="register_count"
                )
            return ReadResult(Outcome.OK, bits[:count] if len(bits) != count else bits)
        regs = rr.registers
        if len(regs) != count:
            return ReadResult(
                Outcome.BAD_RESPONSE, detail=f"expected {count} registers, got {len(regs)}", reason="register_count"
            )
        return ReadResult(Outcome.OK, regs)

    def _no_answer(self, client: AsyncModbusTcpClient | AsyncModbusSerialClient, timeout: float) -> ReadResult:
        """The request ended without an answer: the device closed the connection, sent
        something that is no answer (garbage, another transaction, a wrong length), or
        stayed silent."""
        if not client.connected:
            self.last_error = "the device closed the connection during a request"
            self._drop_client()
            return ReadResult(Outcome.DROPPED, detail=self.last_error)
        explained = self._inspector.explain()
        if explained is not None:
            reason, detail = explained
            self._consecutive_timeouts = 0  # something answers on this connection
            return ReadResult(Outcome.BAD_RESPONSE, detail=detail, reason=reason, garbled=True)
        return self._timed_out(timeout)

    def _timed_out(self, timeout: float) -> ReadResult:
        self._consecutive_timeouts += 1
        detail = f"no answer within {timeout:g} s"
        if self.spec.kind == "tcp" and self._consecutive_timeouts >= RECONNECT_AFTER_TIMEOUTS and self._client:
            # Nobody on this connection answers: a half-open socket (NAT, device server
            # reboot) looks exactly like this. Reconnect; a dead device among live ones
            # never gets here because the live ones reset the count.
            log.warning(
                "%s: %d requests in a row unanswered; reconnecting", self.spec.describe(), self._consecutive_timeouts
            )
            self._drop_client()
            self._consecutive_timeouts = 0
        return ReadResult(Outcome.TIMEOUT, detail=detail)

    # ------------------------------------------------------------------ connection
    def _drop_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            except Exception:  # pragma: no cover - closing must never fail the caller
                log.debug("closing %s failed", self.key, exc_info=True)
            self._client = None
            self._gauge.set(0)

    async def _ensure_connected(self) -> bool:
        c = self._client
        if c is not None and c.connected:
            return True
        loop = asyncio.get_running_loop()
        if c is not None:
            self._drop_client()
            self.last_error = "connection lost"
            if not self._down_logged:
                log.warning("%s: connection lost; reconnecting", self.spec.describe())
                self._down_logged = True
            self._next_attempt = 0.0  # first reconnect attempt right away
        now = loop.time()
        if now < self._next_attempt:
            return False
        client = make_client(self.spec, self.connect_timeout, name=self.key, trace_packet=self._inspector.trace)
        error = ""
        try:
            ok = await client.connect()
        except Exception as e:  # pyserial raises SerialException (an OSError) and friends
            ok, error = False, f"{type(e).__name__}: {e}"
        if ok and client.connected:
            self._client = client
            self.connects += 1
            self._mm.connects.labels(self.key, "ok").inc()
            self._gauge.set(1)
            if self._down_logged or self._reconnect.attempts:
                log.info(
                    "%s: connected again after %d failed attempt(s)", self.spec.describe(), self._reconnect.attempts
                )
            elif not self._ever_connected:
                log.info("%s: connected", self.spec.describe())
            self._ever_connected = True
            self._down_logged = False
            self._reconnect.reset()
            self._consecutive_timeouts = 0
            self.last_error = ""
            return True
        try:
            client.close()
        except Exception:  # pragma: no cover
            log.debug("closing failed client %s", self.key, exc_info=True)
        self._mm.connects.labels(self.key, "failed").inc()
        self._next_attempt = loop.time() + self._reconnect.next_delay()
        self.last_error = f"cannot connect: {error or 'refused or timed out'}"
        if not self._down_logged:
            log.warning(
                "%s: %s; retrying with backoff up to %g s", self.spec.describe(), self.last_error, self.backoff_max
            )
            self._down_logged = True
        return False
