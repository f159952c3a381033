"""OPC UA security against a real asyncua server: policies and modes with a client
certificate, a pinned server certificate and a user name; the refusals (wrong password,
untrusted client certificate, a server that is not the pinned one) with clear errors,
slow retries and no secret in any log line."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import pytest
from helpers import async_wait_for
from opcua_support import make_adapter, running, source, tag_table

from adapters.opcua.certs import make_certificate, make_client_cert
from devkit.services import free_port
from devkit.simulator.opcua import OpcuaPlantServer
from gateway.core.models import Quality

PASSWORD = "Pa55-w0rd-XYZ"  # a test secret the logs must never show


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    d = tmp_path_factory.mktemp("opcua-pki")
    client = make_client_cert(d / "client", "urn:test:hazardgw", hostname="127.0.0.1")
    other = make_client_cert(d / "other", "urn:test:intruder", hostname="127.0.0.1")
    files: dict[str, Any] = {"client": client, "other": other}
    for name in ("server", "impostor"):
        der, key = make_certificate(f"urn:test:{name}", hostname="127.0.0.1", server=True)
        (d / f"{name}.der").write_bytes(der)
        (d / f"{name}.pem").write_bytes(key)
        files[name] = (d / f"{name}.der", d / f"{name}.pem")
    return files


def _secure(port: int, pki: dict[str, Any], policy: str, mode: str, *, pin: str = "server",
            client: str = "client", password: str = PASSWORD) -> Any:
    c = pki[client]
    return source(port, [{"tag": "PT", "node": "ns=2;s=PT"}], username="operator", password=password,
                  security={"policy": policy, "mode": mode, "cert": str(c.cert_der), "key": str(c.key_pem),
                            "server_cert": str(pki[pin][0])})


def _server(cfg: Any, pki: dict[str, Any], tags: Any, *, cert: str = "server", **kw: Any) -> OpcuaPlantServer:
    return OpcuaPlantServer([cfg], tags, certificate=pki[cert][0], private_key=pki[cert][1],
                            users={"operator": PASSWORD}, trusted_certs=[pki["client"].cert_der.read_bytes()], **kw)


@pytest.mark.parametrize(("policy", "mode"), [("Basic256Sha256", "SignAndEncrypt"), ("Aes128Sha256RsaOaep", "Sign")])
async def test_secure_session_with_client_certificate_pinned_server_and_user(
    pki: dict[str, Any], policy: str, mode: str
) -> None:
    port = free_port()
    tags = tag_table({"PT": {"kind": "pressure", "range": [0, 2]}})
    cfg = _secure(port, pki, policy, mode)
    async with _server(cfg, pki, tags, policies=[(policy, mode)]) as sim:
        await sim.set_value("PT", 1.5)
        adapter, col = make_adapter(cfg, tags)
        async with running(adapter):
            await async_wait_for(lambda: (r := col.last("PT")) is not None and r.value == 1.5
                                 and r.quality == Quality.GOOD, timeout=15)
            h = adapter.health()
            assert h["security"] == f"{policy}/{mode}" and h["connected"]
        assert sim.refused_logins == 0 and sim.writes == 0


async def test_wrong_password_is_a_clear_error_retried_slowly_and_never_logged(
    pki: dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    tags = tag_table({"PT": {"kind": "pressure"}})
    wrong = "Wr0ng-" + PASSWORD
    cfg = _secure(port, pki, "Basic256Sha256", "SignAndEncrypt", password=wrong)
    caplog.set_level(logging.DEBUG)  # every logger, asyncua's included, at its most verbose
    logging.getLogger("asyncua").setLevel(logging.DEBUG)
    try:
        async with _server(cfg, pki, tags) as sim:
            adapter, col = make_adapter(cfg, tags)
            async with running(adapter):
                await async_wait_for(lambda: adapter.health()["last_error"], timeout=15)
                h = adapter.health()
                assert h["last_error"] == ("server refused user 'operator' (BadUserAccessDenied): "
                                           "check username and password")
                await async_wait_for(lambda: (r := col.last("PT")) is not None and r.quality == Quality.COMM,
                                     timeout=5)
                # refused logins are retried every 10 s or more, so a DCS account is not locked by us
                await async_wait_for(lambda: len(col.of("PT")) >= 5, timeout=5)
                assert sim.refused_logins == 1
                health_text = json.dumps(adapter.health())
    finally:
        logging.getLogger("asyncua").setLevel(logging.CRITICAL)
    warnings = [r.getMessage() for r in caplog.records if r.name == "adapters.opcua" and r.levelno == logging.WARNING]
    assert any("BadUserAccessDenied" in m and "check username and password" in m for m in warnings)
    everything = "\n".join(r.getMessage() for r in caplog.records) + caplog.text + health_text
    assert wrong not in everything and PASSWORD not in everything


async def test_untrusted_client_certificate_is_refused(pki: dict[str, Any]) -> None:
    port = free_port()
    tags = tag_table({"PT": {"kind": "pressure"}})
    cfg = _secure(port, pki, "Basic256Sha256", "SignAndEncrypt", client="other")
    async with _server(cfg, pki, tags):
        adapter, col = make_adapter(cfg, tags)
        async with running(adapter):
            await async_wait_for(lambda: adapter.health()["last_error"], timeout=15)
            assert "server refused the connection" in adapter.health()["last_error"]
            assert not any(r.quality == Quality.GOOD for r in col.readings)


async def test_a_server_that_is_not_the_pinned_one_gets_no_session(pki: dict[str, Any]) -> None:
    port = free_port()
    tags = tag_table({"PT": {"kind": "pressure"}})
    cfg = _secure(port, pki, "Basic256Sha256", "SignAndEncrypt")  # pins server.der
    async with _server(cfg, pki, tags, cert="impostor") as sim:
        await sim.set_value("PT", 1.0)
        adapter, col = make_adapter(cfg, tags)
        async with running(adapter):
            await async_wait_for(lambda: adapter.health()["last_error"], timeout=15)
            assert "server_cert" in adapter.health()["last_error"]
            assert not adapter.health()["connected"]
            assert not any(r.quality == Quality.GOOD for r in col.readings)
            await async_wait_for(lambda: (r := col.last("PT")) is not None and r.quality == Quality.COMM, timeout=5)
        # the impostor could not even open a session: no login, no password sent to it
        assert sim.sessions == 0 and sim.refused_logins == 0


def test_make_cert_command_writes_a_usable_pair(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from cryptography import x509

    from adapters.opcua.checks import application_uri
    from gateway.cli import main

    assert main(["opcua", "make-cert", "--out", str(tmp_path / "c"), "--uri", "urn:plant-a:hazardgw"]) == 0
    out = capsys.readouterr().out
    assert "SHA-1 thumbprint" in out
    cert = x509.load_der_x509_certificate((tmp_path / "c" / "opcua-cert.der").read_bytes())
    assert application_uri(cert) == "urn:plant-a:hazardgw"
    assert (tmp_path / "c" / "opcua-key.pem").stat().st_mode & 0o777 == 0o600
    # never overwritten silently
    assert main(["opcua", "make-cert", "--out", str(tmp_path / "c"), "--uri", "urn:x:y"]) == 2
    assert "--force" in capsys.readouterr().err
