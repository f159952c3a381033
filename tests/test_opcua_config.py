"""OPC UA configuration: the schema, `hazardgw check` (errors and warnings through the
source spec), node id and browse path syntax, certificate files, the sample config, the
registry entry (one folder plus one line) and the CSV the browse writes."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import pytest
import yaml

from adapters.opcua.certs import make_certificate, make_client_cert
from adapters.opcua.config import OpcuaSource
from adapters.opcua.nodeids import parse_browse_path, parse_node_id
from adapters.opcua.tagcsv import COLUMNS, TagRow, write_tag_csv
from adapters.registry import SPEC_BY_TYPE
from gateway.core.intervals import expected_intervals, stale_limits
from gateway.validate import validate_text

ROOT = Path(__file__).resolve().parent.parent
SAMPLE = ROOT / "adapters" / "opcua" / "sample.yaml"
SITE = {"code": "91320000TEST0001X", "name": "t"}


def _check(sources: list[dict[str, Any]], tags: list[str] | None = None, env: dict[str, str] | None = None) -> Any:
    names = tags or sorted({p["tag"] for s in sources for p in s.get("points", [])})
    doc = {"site": SITE, "sources": sources, "tags": [{"id": t, "kind": "pressure", "unit": "MPa"} for t in names]}
    return validate_text(yaml.safe_dump(doc), "site.yaml", env or {})


def _src(**kw: Any) -> dict[str, Any]:
    return {"id": "dcs", "type": "opcua", "url": "opc.tcp://10.0.0.5:4840", "security": {"policy": "None"},
            "points": [{"tag": "PT", "node": "ns=2;s=PT"}], **kw}


def _messages(v: Any, severity: str = "error") -> list[str]:
    return [f"{'.'.join(str(x) for x in p.path)}: {p.message}" for p in v.problems
            if p.severity == severity and p.path[:1] == ("sources",)]


@pytest.mark.parametrize(("text", "expect"), [
    ("ns=2;s=V101.TT101.PV", ("s", "V101.TT101.PV", 2, None)),
    ("i=85", ("i", "85", 0, None)),
    ("ns=3;i=0040101", ("i", "40101", 3, None)),
    ("nsu=urn:dcs:plant;s=A;B", ("s", "A;B", 0, "urn:dcs:plant")),
    ("ns=1;g=72962b91-fa75-4ae6-8d28-b404dc7daf63", ("g", "72962b91-fa75-4ae6-8d28-b404dc7daf63", 1, None)),
    ("ns=1;b=M/RbKBsRVkePCePcx24oRA==", ("b", "M/RbKBsRVkePCePcx24oRA==", 1, None)),
])
def test_node_ids_parse(text: str, expect: tuple[str, str, int, str | None]) -> None:
    ref = parse_node_id(text)
    assert (ref.kind, ref.ident, ref.ns, ref.nsu) == expect


@pytest.mark.parametrize("text", ["", "V101.TT101", "ns=2;x=1", "ns=70000;i=1", "ns=2;i=-1", "i=99999999999",
                                  "ns=2;s=", "ns=2;g=not-a-guid", "ns=2;b=***", "ns=2", "nsu=;i=1"])
def test_bad_node_ids_are_refused(text: str) -> None:
    with pytest.raises(ValueError):
        parse_node_id(text)


def test_browse_paths_parse() -> None:
    els = parse_browse_path("/Root/Objects/Plant/2:V101/PT101")
    assert [(e.name, e.ns) for e in els] == [("Objects", None), ("Plant", None), ("V101", 2), ("PT101", None)]
    for bad in ("", "Objects//X", "/"):
        with pytest.raises(ValueError):
            parse_browse_path(bad)


def test_schema_errors_are_reported_together_with_their_paths() -> None:
    v = _check([
        {"id": "a", "type": "opcua", "url": "opc.tcp://h:4840", "points": [{"tag": "A", "node": "i=1", "path": "X"}]},
        _src(id="b", url="http://h:4840", points=[{"tag": "B", "node": "ns=2;q=1"}]),
        _src(id="c", username="u", mode="push", interval="0s", points=[{"tag": "C", "path": "Objects//C"}]),
        _src(id="d", security={"policy": "None", "mode": "Sign"}, points=[{"tag": "D", "node": "i=2"}]),
        _src(id="e", security={"policy": "Basic256Sha256"}, points=[{"tag": "E", "node": "i=3"}]),
        _src(id="f", max_items_per_subscription=0, timeout="10m", points=[{"tag": "F", "node": "i=4"}]),
    ])
    msgs = "\n".join(_messages(v))
    assert "sources.0.security: security is required" in msgs and "{policy: None} written out" in msgs
    assert "sources.0.points.0: a point has exactly one of node (a node id) or path (a browse path)" in msgs
    assert "sources.1.url" in msgs and "sources.1.points.0.node: node id 'ns=2;q=1'" in msgs
    assert "sources.2.password: username needs password" in msgs
    assert "sources.2.mode" in msgs and "sources.2.interval: interval must be 50ms..1h" in msgs
    assert "sources.2.points.0.path: browse path 'Objects//C': empty element" in msgs
    assert "sources.3.security: policy None takes no mode" in msgs
    assert "sources.4.security: policy Basic256Sha256 needs cert and key" in msgs
    assert "sources.5.max_items_per_subscription" in msgs and "sources.5.timeout: timeout must be" in msgs
    assert v.config is None


def test_no_security_runs_but_check_warns() -> None:
    v = _check([_src(username="op", password="${PW}")], env={"PW": "secret"})
    assert not v.errors
    [w] = _messages(v, "warning")
    assert w.startswith("sources.0.security.policy: security policy None: values and the password travel")
    assert v.config is not None


def test_certificate_files_are_checked(tmp_path: Path) -> None:
    good = make_client_cert(tmp_path / "good", "urn:t:gw", hostname="127.0.0.1")
    other = make_client_cert(tmp_path / "other", "urn:t:other", hostname="127.0.0.1")
    der, _key = make_certificate("urn:t:server", hostname="127.0.0.1", server=True)
    (tmp_path / "server.der").write_bytes(der)
    (tmp_path / "junk.pem").write_text("not a key")

    def sec(cert: Path | str, key: Path | str, server: Path | str | None = None) -> dict[str, Any]:
        s: dict[str, Any] = {"policy": "Basic256Sha256", "mode": "SignAndEncrypt", "cert": str(cert), "key": str(key)}
        if server is not None:
            s["server_cert"] = str(server)
        return s

    ok = _check([_src(security=sec(good.cert_der, good.key_pem, tmp_path / "server.der"))])
    assert not ok.errors and not _messages(ok, "warning")
    unpinned = _check([_src(security=sec(good.cert_pem, good.key_pem))])
    assert not unpinned.errors
    assert "server_cert not given" in _messages(unpinned, "warning")[0]
    bad = _check([
        _src(id="a", security=sec(tmp_path / "missing.der", good.key_pem), points=[{"tag": "A", "node": "i=1"}]),
        _src(id="b", security=sec(good.cert_der, other.key_pem, tmp_path / "junk.pem"),
             points=[{"tag": "B", "node": "i=2"}]),
        _src(id="c", security=sec(good.cert_der, tmp_path / "junk.pem"), points=[{"tag": "C", "node": "i=3"}]),
    ])
    msgs = "\n".join(_messages(bad))
    assert "sources.0.security.cert: cannot read" in msgs and "No such file" in msgs
    assert f"sources.1.security.key: {other.key_pem} is not the key of {good.cert_der}" in msgs
    assert "sources.1.security.server_cert:" in msgs and "is not an X.509 certificate" in msgs
    assert "sources.2.security.key:" in msgs and "is not an unencrypted private key" in msgs


def test_sample_config_validates(tmp_path: Path) -> None:
    data = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    # the sample names files under /etc/hazardgw: put real ones there for the check
    made = make_client_cert(tmp_path, "urn:plant-a:hazardgw", hostname="127.0.0.1")
    der, _ = make_certificate("urn:dcs-a", hostname="10.0.0.5", server=True)
    (tmp_path / "dcs-a.der").write_bytes(der)
    sec = data["sources"][0]["security"]
    sec.update(cert=str(made.cert_der), key=str(made.key_pem), server_cert=str(tmp_path / "dcs-a.der"))
    data["site"] = SITE
    v = validate_text(yaml.safe_dump(data, allow_unicode=True), "sample.yaml", {"OPCUA_PASSWORD": "x"})
    assert not v.errors, v.format_errors()
    assert [w.split(": ")[1] for w in _messages(v, "warning")] == ["security policy None"]
    assert v.config is not None
    srcs = [s for s in v.config.sources if isinstance(s, OpcuaSource)]
    assert [s.mode for s in srcs] == ["subscribe", "poll"]


def test_expected_interval_is_the_interval_in_both_modes() -> None:
    v = _check([_src(interval="2s"), _src(id="p", mode="poll", interval="500ms", points=[{"tag": "Q", "node": "i=9"}])])
    assert v.config is not None
    assert stale_limits(v.config) == {"PT": 6.0, "Q": 1.5}
    assert {t: e for t, (_s, _h, e) in expected_intervals(v.config, 10.0).items()} == {"PT": 2.0, "Q": 0.5}


def test_registered_with_simulator_and_commands() -> None:
    spec = SPEC_BY_TYPE["opcua"]
    assert spec.simulator == "devkit.simulator.opcua" and spec.commands == "adapters.opcua.cli"
    registry = (ROOT / "adapters" / "registry.py").read_text()
    assert registry.count("OPCUA") == 2  # imported once, listed once
    for f in (ROOT / "gateway").rglob("*.py"):
        text = f.read_text(encoding="utf-8")
        assert "adapters.opcua" not in text and "asyncua" not in text, f


def test_tag_csv_has_the_tag_list_columns_and_a_bom(tmp_path: Path) -> None:
    out = tmp_path / "tags.csv"
    write_tag_csv(out, [TagRow(id="V101.PT101", name="压力", unit="MPa", range_lo=0, range_hi=2.5, source="dcs",
                               node="ns=2;s=V101.PT101"), TagRow(id="V101.XS1", kind="discrete", node="i=5")])
    raw = out.read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(raw.decode("utf-8-sig").splitlines()))
    assert tuple(rows[0]) == COLUMNS
    assert COLUMNS == ("id", "name", "hazard_source", "kind", "gas", "unit", "range_lo", "range_hi", "ll", "l", "h",
                       "hh", "source", "address", "type", "byte_order", "scale", "offset", "node", "topic", "path")
    assert rows[0]["name"] == "压力" and rows[0]["range_hi"] == "2.5" and rows[0]["node"] == "ns=2;s=V101.PT101"
    assert rows[1]["kind"] == "discrete" and rows[1]["range_lo"] == ""


def test_the_point_table_shows_where_each_tag_is_read() -> None:
    src = OpcuaSource.model_validate({"id": "dcs", "type": "opcua", "url": "opc.tcp://10.0.0.5:4840",
                                      "security": {"policy": "None"},
                                      "points": [{"tag": "TT-101", "node": "ns=2;s=V101.TT101.PV"},
                                                 {"tag": "PT-101", "path": "Objects/Plant/V101/PT101"}]})
    assert src.point_addresses() == {"TT-101": "ns=2;s=V101.TT101.PV", "PT-101": "path Objects/Plant/V101/PT101"}
