"""json:// pushes sent by alerting/notify/webhook.py (on the loop, kept-alive connections) are the
requests apprise's own JSON plugin sends: the same pushes through both, to one real receiver,
compared byte for byte (method, path and query, body, the headers that matter)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from alerting.notify.channels import Channels, apprise_module
from alerting.notify.webhook import parse
from gateway.core.tls import self_signed


@dataclass
class Req:
    method: str
    path_qs: str
    body: bytes
    headers: dict[str, str]
    peer: Any


class Rx:
    def __init__(self, status: int = 200) -> None:
        self.reqs: list[Req] = []
        self.status = status
        self.port = 0
        self._runner: web.AppRunner | None = None

    async def start(self, ctx: ssl.SSLContext | None = None) -> Rx:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ctx)
        await site.start()
        assert site._server is not None
        self.port = site._server.sockets[0].getsockname()[1]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        keep = ("Content-Type", "User-Agent", "Authorization", "X-Token", "X-Site")
        self.reqs.append(Req(request.method, request.raw_path, body,
                             {k: v for k, v in request.headers.items() if k in keep},
                             request.transport.get_extra_info("peername") if request.transport else None))
        return web.Response(status=self.status, text="ok")


@pytest.fixture
async def rx() -> AsyncIterator[Rx]:
    r = await Rx().start()
    yield r
    await r.stop()


async def via_apprise(url: str, title: str, body: str, notify_type: str) -> bool:
    ap = apprise_module().Apprise()
    assert ap.add(url)
    return bool(await ap.async_notify(body=body, title=title, notify_type=notify_type))


PUSHES = [
    ("【P1】GT-101 氯气 高高报", "GT-101 北侧氯气探测器 12.5 mg/m³ ≥ 10\n确认: https://gw/ack/x.y", "failure"),
    ("  title with spaces  ", 'body "quoted" \\ and trailing spaces   \n\n', "warning"),
    ("", "only a body", "info"),
    ("t", "x" * 5000, "success"),
    ("T" * 300, "y" * 40_000, "info"),  # beyond the plugin's title and body lengths: apprise's rules apply
]
URLS = [
    "json://127.0.0.1:{port}/duty",
    "json://zhao:pa%20ss%3Aw@127.0.0.1:{port}/hooks/abc?method=PUT",
    "json://127.0.0.1:{port}/x/y?+X-Token=abc&+X-Site=plant%201&-q=a%20b&-n=1&:type=kind&:title=&:extra=1",
    "json://127.0.0.1:{port}/p?method=PATCH&:message=text&cto=2&rto=3",
]


@pytest.mark.parametrize("url", URLS)
async def test_the_same_request_as_apprise(rx: Rx, url: str) -> None:
    u = url.format(port=rx.port)
    assert parse(u) is not None
    ch = Channels(timeout=5.0)
    try:
        for title, body, kind in PUSHES:
            assert await via_apprise(u, title, body, kind)
            res = await ch.send(u, title, body, kind)
            assert res.ok, res.error
    finally:
        await ch.close()
    assert len(rx.reqs) == 2 * len(PUSHES)
    for a, b in zip(rx.reqs[0::2], rx.reqs[1::2], strict=True):
        assert (b.method, b.path_qs, b.body, b.headers) == (a.method, a.path_qs, a.body, a.headers)
    ours = rx.reqs[1::2]
    assert len({r.peer for r in ours}) == 1  # one kept-alive connection for every push


async def test_what_it_does_not_cover_goes_through_apprise(rx: Rx) -> None:
    for url in (f"json://127.0.0.1:{rx.port}/g?method=GET", f"json://zhao@127.0.0.1:{rx.port}/nopass",
                f"json://127.0.0.1:{rx.port}/h?+X-Site=%E5%8E%82"):
        assert parse(url) is None
    assert parse("xml://127.0.0.1/x") is None and parse("json://") is None
    ch = Channels(timeout=5.0)
    try:
        res = await ch.send(f"json://127.0.0.1:{rx.port}/g?method=GET", "t", "b", "info")
        assert res.ok
    finally:
        await ch.close()
    assert [r.method for r in rx.reqs] == ["GET"]


async def test_a_refusal_or_no_answer_is_a_failed_attempt_without_secrets() -> None:
    bad = await Rx(status=500).start()
    ch = Channels(timeout=2.0)
    try:
        res = await ch.send(f"json://zhao:S3cretPassw0rd@127.0.0.1:{bad.port}/hooks/T0kenT0kenT0ken", "t", "b")
        assert not res.ok and res.error is not None and "error=500" in res.error
        port = bad.port
        await bad.stop()
        res = await ch.send(f"json://zhao:S3cretPassw0rd@127.0.0.1:{port}/hooks/T0kenT0kenT0ken", "t", "b")
        assert not res.ok and res.error is not None and "Connection error" in res.error
        assert "S3cretPassw0rd" not in res.error and "T0kenT0kenT0ken" not in res.error
    finally:
        await ch.close()
        await bad.stop()


async def test_jsons_verifies_the_certificate_unless_the_url_says_verify_no(tmp_path: Path) -> None:
    cert = self_signed(["127.0.0.1"])
    (tmp_path / "c.pem").write_bytes(cert.cert_pem)
    (tmp_path / "k.pem").write_bytes(cert.key_pem)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(tmp_path / "c.pem", tmp_path / "k.pem")
    r = await Rx().start(ctx)
    ch = Channels(timeout=5.0)
    try:
        refused = await ch.send(f"jsons://127.0.0.1:{r.port}/s", "t", "b")
        assert not refused.ok  # self-signed: not trusted
        assert await via_apprise(f"jsons://127.0.0.1:{r.port}/s?verify=no", "t", "b", "info")
        res = await ch.send(f"jsons://127.0.0.1:{r.port}/s?verify=no", "t", "b")
        assert res.ok, res.error
        assert [q.body for q in r.reqs[-1:]] == [r.reqs[0].body]
    finally:
        await ch.close()
        await r.stop()
