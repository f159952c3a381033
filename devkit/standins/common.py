"""The HTTP server plumbing the stand-ins share (aiohttp on a free loopback port)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Self

from aiohttp import web

from devkit.webapp import serve


@dataclass
class Call:
    """One request as the stand-in saw it."""

    action: str
    key_id: str | None
    phones: list[str]
    params: Any  # Alibaba: dict of template variables; Tencent: list in order
    code: str  # what the stand-in answered
    fields: dict[str, Any] = field(default_factory=dict)  # the request's parameters
    at: float = field(default_factory=time.monotonic)


class StandinServer:
    """Base: start/stop an aiohttp app with one catch-all handler ``handle``."""

    def __init__(self, keys: dict[str, str], *, max_skew: float = 900.0) -> None:
        self.keys = dict(keys)
        self.max_skew = max_skew
        self.calls: list[Call] = []
        self.answer: dict[str, str] = {}  # phone (as sent) -> error code to answer
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._nonces: set[str] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> Self:
        self._runner, self.port = await serve(self.handle)
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def handle(self, request: web.Request) -> web.Response:
        raise NotImplementedError

    def by_action(self, action: str, code: str | None = None) -> list[Call]:
        return [c for c in self.calls if c.action == action and (code is None or c.code == code)]
