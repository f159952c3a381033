"""Interoperability: the OPC UA adapter and browse against node-opcua, a server we did not
write (devkit/interop/node-opcua, installed by `make interop` from its lock file).

node-opcua states small operation limits (read 4, browse 3, monitored items 5 per call)
and enforces them with BadTooManyOperations; it keeps a value on Bad items; it generates
its own certificate (pinned here) and checks user names itself.
"""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from helpers import async_wait_for
from opcua_support import ROOT, make_adapter, running, source, tag_table

from adapters.opcua.certs import make_client_cert
from devkit.services import free_port
from gateway.core.models import Quality

INTEROP = ROOT / "devkit" / "interop" / "node-opcua"

POINTS = [
    {"tag": "TT", "path": "Objects/Plant/TT101"},
    {"tag": "PT", "node": "ns=1;s=Plant.PT101"},
    {"tag": "LT", "path": "Objects/Plant/LT101"},
    {"tag": "XS", "node": "ns=1;s=Plant.XS101"},
    {"tag": "AI", "path": "Objects/Plant/AI101"},
    {"tag": "TAG", "path": "Objects/Plant/TAG"},
    {"tag": "NONE", "path": "Objects/Plant/NotThere"},
]
TAGS = tag_table({"TT": {"kind": "temperature"}, "PT": {"kind": "pressure"}, "LT": {"kind": "level"},
                  "XS": {"kind": "discrete"}, "AI": {"kind": "analog"}, "TAG": {"kind": "analog"},
                  "NONE": {"kind": "analog"}})


@dataclass
class NodeServer:
    url: str
    cert: Path


@pytest.fixture(scope="module")
def node_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeServer]:
    node = shutil.which("node")
    assert node, "Node.js is needed for the node-opcua interoperability test"
    assert (INTEROP / "node_modules" / "node-opcua-server").is_dir(), \
        "node-opcua is not installed: run `make interop` (npm ci in devkit/interop/node-opcua)"
    tmp = tmp_path_factory.mktemp("node-opcua")
    cert = tmp / "server.der"
    for _attempt in range(5):  # node-opcua listens on every interface: a port free on loopback may be taken
        port = free_port()
        proc = subprocess.Popen([node, "server.js", str(port), str(tmp), str(cert)], cwd=INTEROP,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        while line and not line.startswith("ready"):  # node-opcua's own notices come first
            line = proc.stdout.readline()
        if line.startswith("ready"):
            break
        err = proc.stderr.read() if proc.stderr else ""
        proc.wait(10)
        assert "EADDRINUSE" in err, f"node-opcua did not start: {line!r} {err[-2000:]}"
    else:
        raise AssertionError("node-opcua found no free port in 5 attempts")
    try:
        yield NodeServer(f"opc.tcp://127.0.0.1:{port}", cert)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def _expect(col: Any) -> bool:
    def q(t: str) -> str | None:
        r = col.last(t)
        return None if r is None else r.quality

    return (q("TT") == q("PT") == q("LT") == q("XS") == Quality.GOOD
            and col.last("XS").value == 1.0 and q("AI") == q("TAG") == q("NONE") == Quality.BAD)


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_values_types_and_limits_against_node_opcua(node_server: NodeServer, mode: str,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    port = int(node_server.url.rsplit(":", 1)[1])
    cfg = source(port, POINTS, mode=mode, interval=0.2, timeout=2.0)
    adapter, col = make_adapter(cfg, TAGS)
    async with running(adapter):
        await async_wait_for(lambda: _expect(col), timeout=15, desc=f"values from node-opcua ({mode})")
        # the ramp moves: later values differ (changes arrive, not only re-assertions)
        await async_wait_for(lambda: len({r.value for r in col.of("TT") if r.quality == Quality.GOOD}) >= 3,
                             timeout=5)
        ai = col.last("AI")
        assert ai is not None and ai.value is None  # node-opcua keeps a value on the Bad item; we never pass it on
        h = adapter.health()
        # the limits node-opcua states were read first: no request was refused
        assert h["batch_sizes"] == {"read": 4, "browse": 3, "monitored_items": 5}
        assert h["unresolved"] == {"NONE": "no 'NotThere' below Objects/Plant"}
        assert h["problems"]["type_mismatch"] >= 1
        if mode == "subscribe":
            # XS101 never changes: node-opcua's publish responses confirm it once per interval
            n0 = len(col.of("XS"))
            t0 = time.monotonic()
            await async_wait_for(lambda: time.monotonic() - t0 > 1.0)
            assert 3 <= len(col.of("XS")) - n0 <= 8
    assert "BadTooManyOperations" not in caplog.text


@pytest.mark.asyncio
async def test_signed_and_encrypted_session_with_pinned_node_opcua_certificate(
    node_server: NodeServer, tmp_path: Path
) -> None:
    client = make_client_cert(tmp_path, "urn:test:hazardgw", hostname="127.0.0.1")
    port = int(node_server.url.rsplit(":", 1)[1])
    security = {"policy": "Basic256Sha256", "mode": "SignAndEncrypt", "cert": str(client.cert_der),
                "key": str(client.key_pem), "server_cert": str(node_server.cert)}
    cfg = source(port, POINTS[:4], security=security, username="operator", password="op-secret", timeout=3.0)
    adapter, col = make_adapter(cfg, TAGS)
    async with running(adapter):
        await async_wait_for(lambda: all((r := col.last(t)) is not None and r.quality == Quality.GOOD
                                         for t in ("TT", "PT", "LT", "XS")), timeout=20)
        assert adapter.health()["security"] == "Basic256Sha256/SignAndEncrypt"
    wrong = source(port, POINTS[:1], security=security, username="operator", password="nope", timeout=3.0)
    adapter, col = make_adapter(wrong, TAGS)
    async with running(adapter):
        await async_wait_for(lambda: adapter.health()["last_error"], timeout=20)
        assert "server refused user 'operator'" in adapter.health()["last_error"]
        assert not any(r.quality == Quality.GOOD for r in col.readings)


def test_browse_against_node_opcua(node_server: NodeServer, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    from gateway.cli import main

    out = tmp_path / "tags.csv"
    assert main(["opcua", "browse", node_server.url, "--root", "Objects/Plant", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "ns=1;s=Plant.AI101" in text and "BadSensorFailure" in text
    rows = out.read_text(encoding="utf-8-sig").splitlines()
    assert len(rows) == 1 + 5  # header + the numeric and Boolean variables (not the String)
