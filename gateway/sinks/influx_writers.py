"""HTTP writers for InfluxDB: one request per batch, errors classified for the batcher.

* ``V2Writer``: influxdb-client's async API, ``/api/v2/write`` (InfluxDB 1.8+, 2.x, 3.x,
  and anything else that speaks it, such as VictoriaMetrics).
* ``V1Writer``: aiohttp ``POST /write`` for InfluxDB 1.x (Debian's 1.6.7 has no v2 API).

A writer raises :class:`RetryableWriteError` for what may succeed later (5xx, timeouts,
connection errors, auth and missing-database errors, which an operator fixes while the
data waits) and :class:`RejectedWriteError` for a batch the server refused as invalid
(4xx parse/partial-write errors): retrying that forever would block every later batch.
"""

from __future__ import annotations

import asyncio
import re
from typing import Protocol

import aiohttp

from gateway.core.config import Influx

_PARTIAL_LINE = re.compile(r"unable to parse '(.*?)': ", re.S)


class RetryableWriteError(Exception):
    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status  # 0: no HTTP answer (refused, timeout, reset)

    @property
    def server_down(self) -> bool:
        """No answer or a 5xx: worth probing with a cheap ping while backing off (an auth
        or missing-database error is not: the server is up and would refuse again)."""
        return self.status == 0 or self.status >= 500


class RejectedWriteError(Exception):
    def __init__(self, message: str, status: int, line: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.line = line


class TooLargeError(Exception):
    """413: the batcher splits the batch and tries the halves."""


class Writer(Protocol):
    async def write(self, body: bytes) -> None: ...
    async def ping(self) -> bool: ...
    async def close(self) -> None: ...


PING_TIMEOUT = 2.0


def _classify(status: int, text: str) -> Exception:
    if status == 413:
        return TooLargeError(text)
    if status == 0 or status >= 500 or status in (401, 403, 404, 408, 429):
        return RetryableWriteError(f"HTTP {status}: {text[:300]}", status)
    m = _PARTIAL_LINE.search(text)
    return RejectedWriteError(f"HTTP {status}: {text[:500]}", status, m.group(1) if m else None)


class V1Writer:
    def __init__(self, cfg: Influx) -> None:
        self.cfg = cfg
        self._session: aiohttp.ClientSession | None = None
        params = {"db": cfg.bucket, "precision": "ns"}
        if cfg.retention_policy:
            params["rp"] = cfg.retention_policy
        self._params = params
        self._url = cfg.url.rstrip("/") + "/write"
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if cfg.username:
            self._headers["Authorization"] = aiohttp.encode_basic_auth(
                cfg.username, cfg.password.get_secret_value() if cfg.password else ""
            )
        elif cfg.token:
            self._headers["Authorization"] = f"Token {cfg.token.get_secret_value()}"

    def _sess(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.cfg.timeout),
                connector=aiohttp.TCPConnector(ssl=self.cfg.verify_ssl, limit=4),  # True: default verification
            )
        return self._session

    async def write(self, body: bytes) -> None:
        try:
            async with self._sess().post(
                self._url, params=self._params, data=body, headers=self._headers
            ) as resp:
                if resp.status == 204 or resp.status == 200:
                    return
                text = await resp.text(errors="replace")
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise RetryableWriteError(f"{type(e).__name__}: {e}") from None
        raise _classify(resp.status, text)

    async def ping(self) -> bool:
        """GET /ping (no auth needed): True when the server answers 204."""
        try:
            async with self._sess().get(
                self._url[: -len("/write")] + "/ping", timeout=aiohttp.ClientTimeout(total=PING_TIMEOUT)
            ) as resp:
                return resp.status in (200, 204)
        except (TimeoutError, aiohttp.ClientError, OSError):
            return False

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class V2Writer:
    def __init__(self, cfg: Influx) -> None:
        from influxdb_client import WritePrecision
        from influxdb_client.client.influxdb_client_async import InfluxDBClientAsync

        self.cfg = cfg
        token = cfg.token.get_secret_value() if cfg.token else None
        if token is None and cfg.username:  # InfluxDB 1.8 compatibility: "user:password"
            token = f"{cfg.username}:{cfg.password.get_secret_value() if cfg.password else ''}"
        self._client_factory = lambda: InfluxDBClientAsync(
            url=cfg.url,
            token=token or "",
            org=cfg.org or "-",
            timeout=int(cfg.timeout * 1000),
            verify_ssl=cfg.verify_ssl,
        )
        self._client: InfluxDBClientAsync | None = None
        self._precision = WritePrecision.NS

    async def write(self, body: bytes) -> None:
        from influxdb_client.rest import ApiException

        if self._client is None:
            self._client = self._client_factory()
        try:
            # influxdb-client annotates write_precision as a WritePrecision, but its values are the str
            # constants of that class (WritePrecision.NS == "ns", also its own default)
            await self._client.write_api().write(
                bucket=self.cfg.bucket, org=self.cfg.org or "-", record=body,
                write_precision=self._precision,  # type: ignore[arg-type]
            )
        except ApiException as e:
            raise _classify(int(e.status or 0), str(e.body or e.reason or "")) from None
        except (TimeoutError, aiohttp.ClientError, OSError) as e:
            raise RetryableWriteError(f"{type(e).__name__}: {e}") from None

    async def ping(self) -> bool:
        """influxdb-client's ``/ping``: True when the server answers."""
        if self._client is None:
            self._client = self._client_factory()
        try:
            return bool(await asyncio.wait_for(self._client.ping(), PING_TIMEOUT))
        except Exception:  # any failure only means "not back yet"
            return False

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None


def make_writer(cfg: Influx) -> Writer:
    return V1Writer(cfg) if cfg.api == "v1" else V2Writer(cfg)
