"""HTTPS for the API and console (issue 25 item 1): ``api.tls``, mutual TLS, ``hazardgw check``
on the certificate files, ``hazardgw tls self-signed``.

Certificates come from ``openssl`` (devkit.services.make_test_pki and the openssl command
line here), not from the code under test, except where ``tls self-signed`` itself is tested
(and then checked with ``openssl``). Clients verify the server against the test CA.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import ssl
import subprocess
import sys
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from helpers import async_wait_for
from test_api_support import H_OPERATOR, H_VIEWER, site

from devkit.services import TlsFiles, make_test_pki
from gateway.core.yamlsrc import SourceMap
from gateway.supervisor import Gateway
from gateway.validate import api_problems, validate_text

ROOT = Path(__file__).resolve().parents[1]


def tls_site(tmp_path: Path, pki: TlsFiles, *, client_ca: bool = False, **api: Any) -> Any:
    tls: dict[str, Any] = {"cert": str(pki.server_cert), "key": str(pki.server_key)}
    if client_ca:
        tls["client_ca"] = str(pki.ca)
    return site(tmp_path / "store", api={"tls": tls, "public_url": "https://127.0.0.1:8443", **api})


@asynccontextmanager
async def serving(config: Any) -> AsyncIterator[Gateway]:
    gw = Gateway(config)
    await gw.start()
    try:
        yield gw
    finally:
        await gw.stop()


def client_ctx(pki: TlsFiles, *, cert: bool = False) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca))
    if cert:
        ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return ctx


def handshake(port: int, ctx: ssl.SSLContext, host: str = "127.0.0.1") -> tuple[str | None, Any]:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw, \
            ctx.wrap_socket(raw, server_hostname=host) as s:
        return s.version(), s.cipher()


async def test_https_with_a_certificate_the_client_verifies(tmp_path: Path, test_pki: TlsFiles) -> None:
    async with serving(tls_site(tmp_path, test_pki)) as gw:
        api = gw.api
        assert api is not None and api.url is not None and api.url.startswith("https://127.0.0.1:")
        async with httpx.AsyncClient(verify=client_ctx(test_pki), base_url=api.url) as c:
            r = await c.get("/api/health")
            assert r.status_code == 200 and r.json()["components"]["api"]["tls"] is True
            r = await c.get("/api/tags", headers=H_VIEWER)
            assert r.status_code == 200
            r = await c.get("/")  # the console over HTTPS too
            assert r.status_code == 200 and "text/html" in r.headers["content-type"]
        # a client that does not trust the test CA refuses the server
        async with httpx.AsyncClient(verify=ssl.create_default_context(), base_url=api.url) as c:
            with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
                await c.get("/api/health")
        port = api.port
        assert port is not None
        version, cipher = handshake(port, client_ctx(test_pki))
        assert version in ("TLSv1.2", "TLSv1.3")
        # TLS 1.2 offers only forward-secret AEAD suites
        old = client_ctx(test_pki)
        old.maximum_version = ssl.TLSVersion.TLSv1_2
        version, cipher = handshake(port, old)
        assert version == "TLSv1.2" and cipher[0].startswith("ECDHE-") and ("GCM" in cipher[0] or "CHACHA" in cipher[0])
        weak = client_ctx(test_pki)
        weak.maximum_version = ssl.TLSVersion.TLSv1_2
        weak.set_ciphers("AES128-SHA:AES256-SHA:AES128-SHA256")  # no forward secrecy, CBC
        with pytest.raises(ssl.SSLError):
            handshake(port, weak)
        legacy = client_ctx(test_pki)
        with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            legacy.minimum_version = legacy.maximum_version = ssl.TLSVersion.TLSv1_1
        legacy.set_ciphers("ALL:@SECLEVEL=0")
        with pytest.raises(ssl.SSLError):
            handshake(port, legacy)


async def test_plain_http_is_refused_on_the_tls_port(tmp_path: Path, test_pki: TlsFiles) -> None:
    async with serving(tls_site(tmp_path, test_pki)) as gw:
        assert gw.api is not None and gw.api.port is not None
        port = gw.api.port
        async with httpx.AsyncClient(timeout=5) as c:
            with pytest.raises(httpx.HTTPError):
                await c.get(f"http://127.0.0.1:{port}/api/health")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as s:  # nothing served in clear text
            s.sendall(b"GET /api/health HTTP/1.1\r\nHost: x\r\n\r\n")
            data = b""
            try:
                while chunk := s.recv(4096):
                    data += chunk
            except ConnectionResetError:
                pass
            assert b"HTTP/1.1 200" not in data and b"components" not in data
        registry = gw.api.ctx.metrics.registry
        await async_wait_for(lambda: registry.get_sample_value("hazardgw_api_tls_failures_total") == 2, timeout=5)
        async with httpx.AsyncClient(verify=client_ctx(test_pki)) as c:  # and HTTPS still works
            assert (await c.get(f"https://127.0.0.1:{port}/api/health")).status_code == 200


async def test_mutual_tls_needs_a_client_certificate_from_the_ca(tmp_path: Path, test_pki: TlsFiles) -> None:
    other = make_test_pki(tmp_path / "other-pki", client_cn="stranger")  # a client cert from another CA
    async with serving(tls_site(tmp_path, test_pki, client_ca=True)) as gw:
        assert gw.api is not None and gw.api.url is not None
        url = gw.api.url
        async with httpx.AsyncClient(verify=client_ctx(test_pki, cert=True), base_url=url) as c:
            assert (await c.get("/api/tags", headers=H_VIEWER)).status_code == 200
            r = await c.post("/api/alarms/GT-101%2Fhh/ack", headers=H_OPERATOR)  # the token still decides the role
            assert r.status_code == 409  # (nothing to acknowledge), not 401/403
        for ctx in (client_ctx(test_pki), _with_cert(client_ctx(test_pki), other)):
            async with httpx.AsyncClient(verify=ctx, base_url=url) as c:
                with pytest.raises(httpx.HTTPError):
                    r = await c.get("/api/health")
                    r.raise_for_status()


def _with_cert(ctx: ssl.SSLContext, pki: TlsFiles) -> ssl.SSLContext:
    ctx.load_cert_chain(str(pki.client_cert), str(pki.client_key))
    return ctx


async def test_tls_files_that_cannot_be_loaded_leave_the_gateway_running(tmp_path: Path, test_pki: TlsFiles) -> None:
    cfg = site(tmp_path / "store", api={"tls": {"cert": str(tmp_path / "missing.crt"), "key": str(test_pki.server_key)},
                                        "public_url": "https://127.0.0.1:8443"})
    async with serving(cfg) as gw:
        assert gw.api is not None
        h = gw.health()
        assert h["components"]["api"]["ok"] is False
        assert "cannot load api.tls" in h["components"]["api"]["error"]
        assert h["components"]["alarms"]["ok"] is True  # alarms do not depend on the console


# ----------------------------------------------------------------------------- hazardgw check


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _check(tmp_path: Path, api: dict[str, Any], now: dt.datetime | None = None) -> list[tuple[str, str, str]]:
    text = yaml.safe_dump({"site": {"code": "S", "name": "S"}, "api": api, "store": {"path": str(tmp_path / "s")}})
    result = validate_text(text, "site.yaml", env={})
    if now is not None and result.config is not None:
        problems = api_problems(result.config, SourceMap(), now=now)
    else:
        problems = [p for p in result.problems if p.path[:1] == ("api",)]
    return [(".".join(str(x) for x in p.path), p.severity, p.message) for p in problems]


def test_check_validates_the_certificate_files(tmp_path: Path, test_pki: TlsFiles) -> None:
    good = {"listen": "0.0.0.0:8443", "public_url": "https://127.0.0.1:8443",
            "tls": {"cert": str(test_pki.server_cert), "key": str(test_pki.server_key)}}
    assert _check(tmp_path, good) == []  # and TLS silences the clear-text warning

    missing = {**good, "tls": {"cert": str(tmp_path / "nope.crt"), "key": str(test_pki.server_key)}}
    [(path, sev, msg)] = _check(tmp_path, missing)
    assert (path, sev) == ("api.tls.cert", "error") and "cannot read" in msg

    not_pem = tmp_path / "junk.crt"
    not_pem.write_text("hello\n")
    [(path, sev, msg)] = _check(tmp_path, {**good, "tls": {"cert": str(not_pem), "key": str(test_pki.server_key)}})
    assert (path, sev) == ("api.tls.cert", "error") and "PEM" in msg

    wrong_key = {**good, "tls": {"cert": str(test_pki.server_cert), "key": str(test_pki.client_key)}}
    [(path, sev, msg)] = _check(tmp_path, wrong_key)
    assert (path, sev) == ("api.tls.key", "error") and "does not belong" in msg

    # expiry judged at a chosen moment: 20 days before the end warns, after the end warns louder
    result = validate_text(yaml.safe_dump({"site": {"code": "S", "name": "S"}, "api": good}), env={})
    assert result.config is not None
    from cryptography import x509

    end = x509.load_pem_x509_certificate(test_pki.server_cert.read_bytes()).not_valid_after_utc
    [(path, sev, msg)] = _check(tmp_path, good, now=end - dt.timedelta(days=20))
    assert (path, sev) == ("api.tls.cert", "warning") and "expires on" in msg and "in 20 days" in msg
    [(path, sev, msg)] = _check(tmp_path, good, now=end + dt.timedelta(days=1))
    assert (path, sev) == ("api.tls.cert", "warning") and "expired on" in msg
    assert _check(tmp_path, good, now=end - dt.timedelta(days=31)) == []

    # an openssl certificate valid for 10 days warns today; a key others can read warns
    _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "10",
             "-subj", "/CN=short", "-addext", "subjectAltName=DNS:gw.example.cn", "-keyout", "short.key",
             "-out", "short.crt", cwd=tmp_path)
    (tmp_path / "short.key").chmod(0o644)
    short = {**good, "public_url": "https://gw.example.cn",
             "tls": {"cert": str(tmp_path / "short.crt"), "key": str(tmp_path / "short.key")}}
    found = _check(tmp_path, short)
    assert ("api.tls.cert", "warning") in [(p, s) for p, s, _ in found]
    assert any(p == "api.tls.key" and s == "warning" and "0644" in m for p, s, m in found)
    # a public_url host the certificate does not name warns (phones would refuse the links)
    found = _check(tmp_path, {**short, "public_url": "https://other.example.cn"})
    assert any("other.example.cn" in m and "names" in m for _, _, m in found)


def test_check_warns_about_clear_text_on_the_network_and_needs_https_links(tmp_path: Path,
                                                                          test_pki: TlsFiles) -> None:
    [(path, sev, msg)] = [f for f in _check(tmp_path, {"listen": "0.0.0.0:8080", "public_url": "http://gw:8080"})]
    assert (path, sev) == ("api.listen", "warning") and "clear text" in msg and "api.tls" in msg
    assert _check(tmp_path, {"listen": "127.0.0.1:8080", "public_url": "http://127.0.0.1:8080"}) == []
    assert _check(tmp_path, {"listen": "[::1]:8080", "public_url": "http://[::1]:8080"}) == []
    # with TLS, one-tap acknowledge links must be https:// (the port speaks only HTTPS)
    tls = {"cert": str(test_pki.server_cert), "key": str(test_pki.server_key)}
    text = yaml.safe_dump({"site": {"code": "S", "name": "S"},
                           "api": {"listen": "0.0.0.0:8443", "public_url": "http://gw:8443", "tls": tls}})
    result = validate_text(text, env={})
    assert result.config is None and any("https://" in e for e in result.format_errors())


# ----------------------------------------------------------------------------- tls self-signed


def test_tls_self_signed_makes_a_certificate_clients_can_trust(tmp_path: Path) -> None:
    out = tmp_path / "tls"
    run = subprocess.run([sys.executable, "-m", "gateway.cli", "tls", "self-signed", "--host", "localhost",
                          "--host", "127.0.0.1", "--out", str(out)], cwd=ROOT, capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    assert "SHA-256 fingerprint" in run.stdout and "public_url: https://localhost" in run.stdout
    cert, key = out / "api.crt", out / "api.key"
    assert key.stat().st_mode & 0o777 == 0o600
    text = subprocess.run(["openssl", "x509", "-in", str(cert), "-noout", "-text"], capture_output=True,
                          text=True, check=True).stdout
    assert "DNS:localhost" in text and "IP Address:127.0.0.1" in text and "prime256v1" in text
    assert subprocess.run(["openssl", "verify", "-CAfile", str(cert), str(cert)], capture_output=True).returncode == 0
    again = subprocess.run([sys.executable, "-m", "gateway.cli", "tls", "self-signed", "--host", "x", "--out",
                            str(out)], cwd=ROOT, capture_output=True, text=True)
    assert again.returncode == 2 and "--force" in again.stderr  # never overwrites a key silently

    cfg = site(tmp_path / "store", api={"tls": {"cert": str(cert), "key": str(key)},
                                        "public_url": "https://localhost:8443"})

    async def serve_and_get() -> int:
        async with serving(cfg) as gw:
            assert gw.api is not None and gw.api.port is not None
            ctx = ssl.create_default_context(cafile=str(cert))
            async with httpx.AsyncClient(verify=ctx) as c:
                return (await c.get(f"https://localhost:{gw.api.port}/api/health")).status_code

    assert asyncio.run(serve_and_get()) == 200
