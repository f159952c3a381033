"""The whole gateway on a DCS-like OPC UA server with security on: a config validated like
`hazardgw run` does (password from ${ENV}), the source built through the registry, values
into the live state, an HH alarm from an OPC UA value, the session lost (comm feeds the
bad alarm like a dead Modbus device) and the server back (values and recovery)."""

from __future__ import annotations

from pathlib import Path

import yaml
from helpers import async_wait_for

from adapters.opcua.certs import make_certificate, make_client_cert
from devkit.services import free_port
from devkit.simulator.opcua import OpcuaPlantServer
from gateway.core.models import Quality
from gateway.supervisor import Gateway
from gateway.validate import validate_text


async def test_gateway_reads_a_secured_dcs_and_survives_its_outage(tmp_path: Path) -> None:
    client = make_client_cert(tmp_path / "gw", "urn:test:hazardgw", hostname="127.0.0.1")
    der, key = make_certificate("urn:test:dcs", hostname="127.0.0.1", server=True)
    (tmp_path / "dcs.der").write_bytes(der)
    (tmp_path / "dcs.pem").write_bytes(key)
    port = free_port()
    doc = {
        "site": {"code": "91320000TEST0001X", "name": "t"},
        "hazard_sources": [{"code": "HS-1", "name": "tank farm", "grade": 2}],
        "sources": [{
            "id": "dcs", "type": "opcua", "url": f"opc.tcp://127.0.0.1:{port}",
            "security": {"policy": "Basic256Sha256", "mode": "SignAndEncrypt", "cert": str(client.cert_der),
                         "key": str(client.key_pem), "server_cert": str(tmp_path / "dcs.der")},
            "username": "hazardgw", "password": "${OPCUA_PASSWORD}", "interval": "200ms", "timeout": "1s",
            "points": [{"tag": "PT-101", "path": "Objects/Plant/V101/PT101"},
                       {"tag": "XS-101", "node": "ns=2;s=V101.XS101"}],
        }],
        "tags": [
            {"id": "PT-101", "hazard_source": "HS-1", "kind": "pressure", "unit": "MPa", "range": [0, 2.5],
             "alarms": {"h": {"limit": 1.6}, "hh": {"limit": 2.0, "priority": 1}}},
            {"id": "XS-101", "hazard_source": "HS-1", "kind": "discrete", "alarms": {"bad": {"priority": 1}}},
        ],
        "api": {"enabled": False},
        "store": {"path": str(tmp_path / "store")},
    }
    v = validate_text(yaml.safe_dump(doc), "site.yaml", {"OPCUA_PASSWORD": "dcs-pass"})
    assert v.config is not None, v.format_errors()
    assert not [w for w in v.warnings if w.path[:1] == ("sources",)]  # secured and pinned: nothing to warn
    sim = OpcuaPlantServer(v.config.sources, v.config.tag_map(),  # type: ignore[arg-type]
                           certificate=tmp_path / "dcs.der", private_key=tmp_path / "dcs.pem",
                           trusted_certs=[client.cert_der.read_bytes()])
    await sim.start()
    gw = Gateway(v.config)
    await gw.start()
    try:
        await sim.set_value("PT-101", 1.2)
        await sim.set_value("XS-101", True)
        latest = gw.live.latest
        await async_wait_for(lambda: (r := latest.get("PT-101")) is not None and r.value == 1.2
                             and latest["XS-101"].value == 1.0, timeout=15, desc="values in the live state")
        await sim.set_value("PT-101", 2.2)
        await async_wait_for(lambda: {a.id for a in gw.alarms.active()} >= {"PT-101/hh", "PT-101/h"}, timeout=10)

        await sim.pause()  # the DCS goes away: every point comm, the session's COMM alarm comes in
        await async_wait_for(lambda: latest["PT-101"].quality == Quality.COMM
                             and latest["XS-101"].quality == Quality.COMM, timeout=10)
        await async_wait_for(lambda: "dcs/comm" in {a.id for a in gw.alarms.active()}, timeout=10)
        # the tag's own bad alarm is suppressed by design under it (one fault, one alarm)
        await async_wait_for(lambda: "XS-101/bad" in {a.id for a in gw.alarms.suppressed()}, timeout=10)
        assert gw.health()["components"]["source:dcs"]["connected"] is False

        await sim.set_value("PT-101", 1.0)
        await sim.resume()
        await async_wait_for(lambda: latest["PT-101"].quality == Quality.GOOD and latest["PT-101"].value == 1.0,
                             timeout=10, desc="values again after the outage")
        await async_wait_for(lambda: not {"dcs/comm", "XS-101/bad"} & {a.id for a in gw.alarms.active() if a.active},
                             timeout=10)
        assert sim.writes == 0
    finally:
        await gw.stop()
        await sim.stop()
