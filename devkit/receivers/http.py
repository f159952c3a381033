"""Reference platform for ``mapped`` uplinks over HTTP (mem-http-sm4): an aiohttp server.

Every request on any path: the headers the mapping renders must be present with the
expected values (``headers=``, e.g. ``{"appsecret": ...}``: else HTTP 401), the body is
checked and decrypted (:class:`~devkit.receivers.mapped.MappedReceiver`) and answered
HTTP 200 with ``{<success field>: <first success value>, "msg": "success"}``, or with a
failing value and the reason (HTTP 200 too: the gateway must read the body).

``prefix`` is the path of ``uplink.url`` (the mapping's message paths follow it).
Knobs for tests: ``reject_kinds``, ``status`` (answer every request with this HTTP status
instead), :meth:`request` (the next answer carries the mapping's ``requests.meta`` field).
"""

from __future__ import annotations

import ssl
from typing import Any

from aiohttp import web

from devkit.receivers.mapped import MappedReceiver
from devkit.webapp import serve
from gateway.uplink.mapping import Mapping

FAIL = -1


class HttpPlatform(MappedReceiver):
    def __init__(self, mapping: str | Mapping, options: dict[str, Any], *, headers: dict[str, str] | None = None,
                 prefix: str = "", ssl_context: ssl.SSLContext | None = None) -> None:
        super().__init__(mapping, options)
        http = self.mapping.http
        assert http is not None, f"mapping {self.mapping.name} has no http: section"
        self.http = http
        self.headers = headers or {}
        self.prefix = prefix.rstrip("/")  # the path of uplink.url: message paths follow it
        self.ssl_context = ssl_context
        self.status: int | None = None
        self.requests = 0
        self.unauthorized = 0
        self._ask: str | None = None
        self.port: int | None = None
        self._runner: web.AppRunner | None = None

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> int:
        self._runner, self.port = await serve(self._handle, host, port, ssl_context=self.ssl_context,
                                              client_max_size=16 * 1024 * 1024)
        return self.port

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def request(self, kind: str = "meta") -> None:
        self._ask = kind

    async def _handle(self, request: web.Request) -> web.Response:
        self.requests += 1
        if self.status is not None:
            return web.json_response({"msg": "unavailable"}, status=self.status)
        for k, v in self.headers.items():
            if request.headers.get(k) != v:
                self.unauthorized += 1
                self.errors.append(f"header {k} missing or wrong")
                return web.json_response({"msg": f"header {k} missing or wrong"}, status=401)
        if request.method != self.http.method:
            return web.json_response({"msg": "method"}, status=405)
        raw = await request.read()
        path = request.path
        if self.prefix and path.startswith(self.prefix + "/"):
            path = path[len(self.prefix):]
        _, error = self.handle(raw, path)
        rule = self.http.success.body
        doc: dict[str, Any] = {}
        if rule is not None:
            doc[rule.field] = rule.in_[0] if error is None else FAIL
        doc["msg"] = "success" if error is None else error
        if self._ask is not None:
            r = self.mapping.spec.requests[self._ask]  # type: ignore[index]
            doc[r.field] = r.in_[0]
            self._ask = None
        return web.json_response(doc, status=self.http.success.status[0])
