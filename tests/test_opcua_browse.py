"""`hazardgw opcua browse` and `hazardgw probe opcua` against a real server (child process):
the variables listed with type, value, status, EURange and unit, the tag-list CSV, and
that the browse result feeds a config that `check` accepts."""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from opcua_support import ChildServer, write_site

from devkit.services import free_port
from gateway.cli import main
from gateway.validate import validate_text


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("browse")
    port = free_port()
    url = f"opc.tcp://127.0.0.1:{port}"
    points = [
        {"tag": "TT-101", "path": "Objects/Plant/V101/TT101"},
        {"tag": "PT-101", "path": "Objects/Plant/V101/PT101"},
        {"tag": "XS-101", "path": "Objects/Plant/V101/XS101"},
        {"tag": "LT-201", "path": "Objects/Plant/V201/LT201"},
        {"tag": "FT-9", "node": "ns=2;s=Utility.FT9"},
    ]
    tags: list[dict[str, Any]] = [
        {"id": "TT-101", "kind": "temperature", "unit": "°C", "range": [-20, 120]},
        {"id": "PT-101", "kind": "pressure", "unit": "MPa", "range": [0, 2.5]},
        {"id": "XS-101", "kind": "discrete"},
        {"id": "LT-201", "kind": "level", "unit": "m", "range": [0, 12]},
        {"id": "FT-9", "kind": "flow"},
    ]
    site = write_site(tmp / "dcs.yaml", [{"id": "dcs", "type": "opcua", "url": url, "security": {"policy": "None"},
                                          "points": points}], tags)
    srv = ChildServer(site, every=3600)  # values set once: (tick + point index) % 50, booleans % 2
    srv.start()
    try:
        yield url
    finally:
        srv.stop()


def test_browse_lists_variables_and_writes_a_tag_list(server: str, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "tags.csv"
    assert main(["opcua", "browse", server, "--root", "Objects/Plant", "--out", str(out), "--source", "dcs"]) == 0
    text = capsys.readouterr()
    lines = text.out.splitlines()
    assert lines[0].split() == ["NODE", "PATH", "TYPE", "VALUE", "STATUS", "EURANGE", "UNIT"]
    row = next(line for line in lines if "Objects/Plant/V101/TT101" in line).split()
    assert row[0] == "ns=2;s=Objects/Plant/V101/TT101" and row[2:] == ["Double", "0", "Good", "-20..120", "°C"]
    assert any("Objects/Plant/V101/XS101" in line and "Boolean" in line for line in lines)
    assert not any("EURange" in line or "Utility.FT9" in line for line in lines[1:])  # properties; outside root
    assert "4 variables below Objects/Plant" in text.err

    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = {r["id"]: r for r in csv.DictReader(raw.decode("utf-8-sig").splitlines())}
    assert set(rows) == {"V101.TT101", "V101.PT101", "V101.XS101", "V201.LT201"}
    assert rows["V101.TT101"]["node"] == "ns=2;s=Objects/Plant/V101/TT101"
    assert (rows["V101.TT101"]["unit"], rows["V101.TT101"]["range_lo"], rows["V101.TT101"]["range_hi"]) == \
        ("°C", "-20", "120")
    assert rows["V101.XS101"]["kind"] == "discrete" and rows["V101.PT101"]["kind"] == "analog"
    assert {r["source"] for r in rows.values()} == {"dcs"}

    # the browse result is a working address list: a config built from it passes check
    doc = {"site": {"code": "91320000TEST0001X", "name": "t"},
           "sources": [{"id": "dcs", "type": "opcua", "url": server, "security": {"policy": "None"},
                        "points": [{"tag": r["id"], "node": r["node"]} for r in rows.values()]}],
           "tags": [{"id": r["id"], "kind": r["kind"]} for r in rows.values()]}
    v = validate_text(yaml.safe_dump(doc), "from-browse.yaml", {})
    assert not v.errors, v.format_errors()


def test_browse_errors_are_one_line(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["opcua", "browse", server, "--root", "Objects/Nowhere"]) == 2
    assert capsys.readouterr().err.strip() == "error: --root Objects/Nowhere: no 'Nowhere' below Objects"
    port = free_port()
    assert main(["opcua", "browse", f"opc.tcp://127.0.0.1:{port}", "--timeout", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: cannot connect to opc.tcp://127.0.0.1:{port}: connection refused")


def test_probe_reads_nodes_and_paths_once(server: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["probe", "opcua", server, "ns=2;s=Utility.FT9", "Objects/Plant/V101/XS101"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("ns=2;s=Utility.FT9: ns=2;s=Utility.FT9 value=4 variant=Double datatype=Double "
                             "status=Good")
    assert out[1].startswith("Objects/Plant/V101/XS101: ns=2;s=Objects/Plant/V101/XS101 value=False "
                             "variant=Boolean datatype=Boolean status=Good")
    assert main(["probe", "opcua", server, "Objects/Plant/V999"]) == 1
    assert capsys.readouterr().out.strip() == "Objects/Plant/V999: no 'V999' below Objects/Plant"
