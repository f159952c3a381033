"""`hazardgw grafana export`: the exported JSON checked structurally against the demo site."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from test_grafana_support import (
    DEMO,
    all_queries,
    annotation_queries,
    bare_words,
    demo_config,
    gateway_field_names,
    measurements,
    panels,
    selected_fields,
    tag_values,
    targets,
)

from gateway.cli import main
from gateway.config import Config
from gateway.core.config import GAS_KINDS
from gateway.grafana import uids
from gateway.grafana.export import DEFAULT_PROVISIONING_ROOT, export
from gateway.grafana.groups import PRIORITY_COLORS, group_tags, limits
from gateway.grafana.texts import Texts
from gateway.validate import validate_text

T = Texts("zh")  # the demo site is Chinese (notification.language defaults to zh)

READING_FIELDS = {"value", "quality"}
ALARM_KEYS = {"hs", "tag", "condition", "priority", "event", "state", "value", "limit", "by", "seq", "occurrence"}


@pytest.fixture(scope="module")
def config() -> Config:
    return demo_config()


@pytest.fixture(scope="module")
def exported(config: Config, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[dict[str, Any]]]:
    out = tmp_path_factory.mktemp("grafana")
    result = export(config, out, config_path=DEMO)
    dashboards = [json.loads(p.read_text()) for p in result.dashboard_files]
    return out, dashboards


def _by_tag(dashboards: list[dict[str, Any]], name: str) -> list[dict[str, Any]]:
    return [d for d in dashboards if name in d["tags"]]


def _reading_panels(d: dict[str, Any]) -> list[tuple[dict[str, Any], set[str]]]:
    """(panel, tag ids) of the panels that plot readings of explicit tags."""
    out = []
    for p in panels(d):
        for t in p.get("targets", []):
            if measurements(t["query"]) == {"reading"} and tag_values(t["query"], "tag"):
                out.append((p, tag_values(t["query"], "tag")))
    return out


# --------------------------------------------------------------------------- layout


def test_export_writes_grafana_provisioning_layout(config: Config, exported: tuple[Path, list[dict[str, Any]]]) -> None:
    out, dashboards = exported
    site8 = uids.site_key(config.site.code)
    ds_doc = yaml.safe_load((out / "datasources" / f"hazardgw-{site8}.yaml").read_text())
    prov = yaml.safe_load((out / "dashboards" / f"hazardgw-{site8}.yaml").read_text())
    (ds,) = ds_doc["datasources"]
    assert ds_doc["apiVersion"] == 1
    assert ds["type"] == "influxdb" and ds["jsonData"]["version"] == "InfluxQL"
    assert ds["jsonData"]["dbName"] == config.influx.bucket  # type: ignore[union-attr]
    assert ds["url"] == config.influx.url  # type: ignore[union-attr]
    assert ds["uid"] == uids.datasource_uid(config.site.code)

    (provider,) = prov["providers"]
    assert provider["type"] == "file" and provider["folderUid"] == uids.folder_uid(config.site.code)
    assert provider["allowUiUpdates"] is False
    rel = Path(provider["options"]["path"]).relative_to(DEFAULT_PROVISIONING_ROOT)
    json_files = sorted((out / rel).glob("*.json"))
    assert [p.stem for p in json_files] == sorted(d["uid"] for d in dashboards)

    # dashboards: overview + one per hazard source + alarm history, every query on our data source
    assert len(dashboards) == 2 + len(config.hazard_sources)
    assert len(_by_tag(dashboards, "overview")) == 1 and len(_by_tag(dashboards, "alarms")) == 1
    for hs in config.hazard_sources:
        (d,) = _by_tag(dashboards, f"hs:{hs.code}")
        assert d["uid"] == uids.hazard_source_uid(config.site.code, hs.code)
        assert hs.name in d["title"]
    for d in dashboards:
        assert d["editable"] is False and "id" not in d
        assert d["timezone"] == config.site.timezone
        for p, t in targets(d):
            assert t["datasource"] == {"type": "influxdb", "uid": ds["uid"]}, p["title"]
            assert p["datasource"] == {"type": "influxdb", "uid": ds["uid"]}, p["title"]
            assert t["rawQuery"] is True
        ids = [p["id"] for p in panels(d)]
        assert len(ids) == len(set(ids)), f"duplicate panel ids in {d['title']}"


# --------------------------------------------------------------------------- queries


def test_every_query_names_existing_tags_and_the_right_measurement(
    config: Config, exported: tuple[Path, list[dict[str, Any]]]
) -> None:
    _out, dashboards = exported
    tag_ids = {t.id for t in config.tags}
    hs_codes = {h.code for h in config.hazard_sources}
    gateway_fields = gateway_field_names(config)
    seen_measurements: set[str] = set()
    n = 0
    for d in dashboards:
        for q in all_queries(d):
            n += 1
            ms = measurements(q)
            assert ms and ms <= {"reading", "alarm", "gateway"}, q
            seen_measurements |= ms
            assert tag_values(q, "site") == {config.site.code}, q
            assert tag_values(q, "tag") <= tag_ids, q
            assert tag_values(q, "hs") <= hs_codes | {""}, q
            assert "$timeFilter" in q or "time > now() - 30d" in q, q  # current alarms: fixed lookback
            # `tag` is an InfluxQL keyword: it must only ever appear quoted
            assert not re.search(r"\btag\b", bare_words(q)), q
            fields = selected_fields(q) - {"v"}  # "v": the online-rate subquery's alias
            if ms == {"reading"}:
                assert fields <= READING_FIELDS, q
            elif ms == {"alarm"}:
                assert fields <= ALARM_KEYS, q
            else:
                assert fields <= gateway_fields, (q, fields - gateway_fields)
    assert seen_measurements == {"reading", "alarm", "gateway"}
    assert n > 30


def test_hazard_source_dashboards_plot_every_tag_exactly_once(
    config: Config, exported: tuple[Path, list[dict[str, Any]]]
) -> None:
    _out, dashboards = exported
    for hs in config.hazard_sources:
        (d,) = _by_tag(dashboards, f"hs:{hs.code}")
        plotted = [tag for _p, tags in _reading_panels(d) for tag in tags]
        expected = sorted(t.id for t in config.tags if t.hazard_source == hs.code)
        assert sorted(plotted) == expected
        # per-source queries stay inside the source
        for q in all_queries(d):
            assert tag_values(q, "hs") <= {hs.code}, q
            for tag in tag_values(q, "tag"):
                assert config.tag_map()[tag].hazard_source == hs.code


def test_gas_detectors_are_grouped_by_gas(config: Config, exported: tuple[Path, list[dict[str, Any]]]) -> None:
    _out, dashboards = exported
    tag_map = config.tag_map()
    groups = [tags for d in dashboards for _p, tags in _reading_panels(d) if "overview" not in d["tags"]]
    gas_groups = [g for g in groups if any(tag_map[t].kind in GAS_KINDS for t in g)]
    for g in gas_groups:
        assert len({(tag_map[t].kind, tag_map[t].gas) for t in g}) == 1, f"panel mixes gases: {sorted(g)}"
    assert {f"GT-10{i}" for i in range(1, 7)} in gas_groups  # all Cl2 detectors (same set points) in one panel
    assert {f"GT-20{i}" for i in range(1, 9)} in gas_groups  # all LPG %LEL detectors
    assert {"GT-209"} in gas_groups  # H2S on its own
    assert {"AT-201"} in gas_groups  # oxygen
    # and non-gas tags never share a panel with gas tags
    for g in groups:
        kinds = {tag_map[t].kind in GAS_KINDS for t in g}
        assert len(kinds) == 1


# --------------------------------------------------------------------------- thresholds


def _steps(panel: dict[str, Any]) -> list[tuple[float | None, str]]:
    return [(s["value"], s["color"]) for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"]]


def test_thresholds_equal_the_configured_limits(config: Config, exported: tuple[Path, list[dict[str, Any]]]) -> None:
    _out, dashboards = exported
    tag_map = config.tag_map()
    checked = 0
    for d in dashboards:
        for p, tags in _reading_panels(d):
            if p["type"] != "timeseries":
                assert p["type"] == "state-timeline"
                assert all(tag_map[t].kind == "discrete" for t in tags)
                continue
            steps = _steps(p)
            assert steps[0][0] is None
            drawn = [v for v, _c in steps[1:]]
            for t in tags:
                lims = limits(tag_map[t])
                assert drawn == [lim.value for lim in lims], (p["title"], t)
                # bands beyond a high limit take that alarm's priority colour
                for lim in lims:
                    if lim.name in ("h", "hh"):
                        assert (lim.value, PRIORITY_COLORS[lim.priority]) in steps
                assert tag_map[t].unit in p["title"]
            mode = p["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"]
            assert mode == ("line+area" if drawn else "off")
            checked += 1
    expected = sum(1 for hs in config.hazard_sources
                   for g in group_tags(t for t in config.tags if t.hazard_source == hs.code) if not g.discrete)
    assert checked == expected == 13

    def panel_of(tag: str) -> dict[str, Any]:
        (hit,) = [p for d in dashboards if "overview" not in d["tags"] for p, tags in _reading_panels(d) if tag in tags]
        return hit

    # spot checks against the demo config
    assert _steps(panel_of("GT-101")) == [(None, "transparent"), (1.0, "orange"), (2.0, "red")]
    assert panel_of("GT-101")["fieldConfig"]["defaults"]["unit"] == "conmgm3"
    assert _steps(panel_of("AT-201")) == [(None, "red"), (19.5, "transparent"), (23.5, "orange")]
    assert _steps(panel_of("LT-101")) == [(None, "yellow"), (10.0, "transparent"), (80.0, "orange"), (85.0, "red")]
    assert _steps(panel_of("FT-101")) == [(None, "orange"), (20.0, "transparent")]
    assert panel_of("PT-201")["fieldConfig"]["defaults"]["unit"] == "suffix: MPa"
    # high-only tags aggregate with max (a short HH excursion stays visible zoomed out), low-only with min
    assert "max(\"value\")" in panel_of("GT-101")["targets"][0]["query"]
    assert "min(\"value\")" in panel_of("FT-101")["targets"][0]["query"]


def test_overview_status_online_rate_and_annotations(
    config: Config, exported: tuple[Path, list[dict[str, Any]]]
) -> None:
    _out, dashboards = exported
    (ov,) = _by_tag(dashboards, "overview")
    by_title = {p["title"]: p for p in panels(ov)}
    status = by_title[T("status")]
    assert [f"hazard_source_status_{hs.code}" for hs in config.hazard_sources] == [
        next(iter(selected_fields(t["query"]))) for t in status["targets"]
    ]
    online = by_title[T("online")]
    for hs, t in zip(config.hazard_sources, online["targets"], strict=True):
        n_tags = sum(1 for tag in config.tags if tag.hazard_source == hs.code)
        assert f"* 100 / {n_tags} " in t["query"] and tag_values(t["query"], "hs") == {hs.code}
    for d in dashboards:
        (anno,) = annotation_queries(d)
        assert measurements(anno) == {"alarm"} and tag_values(anno, "event") == {"raised", "realarmed"}


# --------------------------------------------------------------------------- uids


def test_uids_are_stable_across_exports(config: Config, tmp_path: Path) -> None:
    a = export(config, tmp_path / "a", config_path=DEMO)
    b = export(config, tmp_path / "b", config_path=DEMO)
    files_a = sorted(p.relative_to(tmp_path / "a") for p in (tmp_path / "a").rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(tmp_path / "b") for p in (tmp_path / "b").rglob("*") if p.is_file())
    assert files_a == files_b and len(files_a) == 6
    for rel in files_a:
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    again = export(config, tmp_path / "a", config_path=DEMO)
    assert again.written == [] and again.removed == []
    all_uids = [d["uid"] for d in a.site.dashboards] + [a.site.folder_uid, a.site.datasource.uid]
    assert len(set(all_uids)) == len(all_uids)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]{1,40}", u) for u in all_uids)
    assert [d["uid"] for d in a.site.dashboards] == [d["uid"] for d in b.site.dashboards]

    # renaming a hazard source keeps its uid; another site code changes every uid
    renamed = config.model_copy(update={"hazard_sources": [
        hs.model_copy(update={"name": hs.name + " (renamed)"}) for hs in config.hazard_sources]})
    c = export(renamed, tmp_path / "c", config_path=DEMO)
    assert [d["uid"] for d in c.site.dashboards] == [d["uid"] for d in a.site.dashboards]
    assert c.site.dashboards[1]["title"].endswith("(renamed)")
    other = config.model_copy(update={"site": config.site.model_copy(update={"code": "91000000OTHER00001"})})
    o = export(other, tmp_path / "o", config_path=DEMO)
    assert not {d["uid"] for d in o.site.dashboards} & {d["uid"] for d in a.site.dashboards}


def test_codes_that_slug_alike_get_distinct_uids() -> None:
    u1, u2 = uids.hazard_source_uid("S", "HS-001"), uids.hazard_source_uid("S", "hs_001")
    assert u1 != u2 and u1.startswith("hgw-") and len(u1) <= 40
    long_code = uids.hazard_source_uid("S" * 64, "液氯储罐区-" + "X" * 100)
    assert len(long_code) <= 40 and re.fullmatch(r"[a-z0-9-]+", long_code)


def test_a_reexport_removes_dashboards_the_config_no_longer_has(config: Config, tmp_path: Path) -> None:
    first = export(config, tmp_path, config_path=DEMO)
    site_dir = first.dashboard_files[0].parent
    stale = site_dir / "hgw-deadbeef-hs-gone-000000.json"
    stale.write_text("{}")
    foreign = site_dir / "someone-elses.json"
    foreign.write_text("{}")
    second = export(config, tmp_path, config_path=DEMO)
    assert second.removed == [stale] and not stale.exists()
    assert foreign.exists()


# --------------------------------------------------------------------------- secrets


def _demo_with_influx(block: str) -> str:
    text = DEMO.read_text(encoding="utf-8")
    start = text.index("\ninflux:")
    end = text.index("\napi:")
    return text[:start] + "\n" + block.strip() + "\n" + text[end:]


@pytest.mark.parametrize(
    ("block", "expect"),
    [
        (
            "influx:\n  url: http://influx.example:8086\n  api: v2\n  bucket: hazard\n  org: demo\n"
            "  token: ${SITE_INFLUX_TOKEN}\n",
            {"jsonData.httpHeaderName1": "Authorization", "secure.httpHeaderValue1": "Token $__env{SITE_INFLUX_TOKEN}"},
        ),
        (
            "influx:\n  url: http://influx.example:8086\n  api: v1\n  bucket: hazard\n  username: grafana\n"
            "  password: ${SITE_INFLUX_PASSWORD}\n",
            {"user": "grafana", "secure.password": "$__env{SITE_INFLUX_PASSWORD}"},
        ),
        (
            "influx:\n  url: http://influx.example:8086\n  api: v2\n  bucket: hazard\n  org: demo\n"
            "  token: literal-token-in-the-file\n",
            {"secure.httpHeaderValue1": "Token $__env{HAZARDGW_INFLUX_TOKEN}"},
        ),
    ],
)
def test_secrets_never_reach_the_exported_files(tmp_path: Path, block: str, expect: dict[str, str]) -> None:
    secret = "s3cr3t-0123456789abcdef"
    text = _demo_with_influx(block).replace("literal-token-in-the-file", secret)
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    env = {"SITE_INFLUX_TOKEN": secret, "SITE_INFLUX_PASSWORD": secret}
    result = validate_text(text, str(path), env=env)
    assert result.config is not None, result.format_errors()
    out = export(result.config, tmp_path / "out", config_path=path)
    for f in (tmp_path / "out").rglob("*"):
        if f.is_file():
            assert secret not in f.read_text(encoding="utf-8"), f
    (ds,) = yaml.safe_load(out.datasource_file.read_text())["datasources"]
    flat = {"user": ds.get("user")}
    flat |= {f"jsonData.{k}": v for k, v in ds["jsonData"].items()}
    flat |= {f"secure.{k}": v for k, v in ds.get("secureJsonData", {}).items()}
    for k, v in expect.items():
        assert flat[k] == v, (k, ds)
    # the API payload (push) does carry the real secret
    payload = out.site.datasource.api_payload()
    assert secret in json.dumps(payload)


# --------------------------------------------------------------------------- CLI


def test_cli_export_and_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["grafana", "export", "-c", str(DEMO), "--out", str(tmp_path / "o"),
                 "--provisioning-root", "/srv/grafana/prov", "--datasource-url", "http://influxdb:8086"]) == 0
    printed = capsys.readouterr().out
    assert "dashboard hgw-" in printed and "6 file(s) written" in printed
    site8 = uids.site_key(demo_config().site.code)
    prov = yaml.safe_load((tmp_path / "o" / "dashboards" / f"hazardgw-{site8}.yaml").read_text())
    assert prov["providers"][0]["options"]["path"] == f"/srv/grafana/prov/dashboards/hazardgw-{site8}"
    (ds,) = yaml.safe_load((tmp_path / "o" / "datasources" / f"hazardgw-{site8}.yaml").read_text())["datasources"]
    assert ds["url"] == "http://influxdb:8086"

    bad = tmp_path / "bad.yaml"
    bad.write_text("site: {code: X}\n")
    assert main(["grafana", "export", "-c", str(bad), "--out", str(tmp_path / "x")]) == 2
    assert "error:" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()

    no_influx = tmp_path / "no-influx.yaml"
    text = DEMO.read_text(encoding="utf-8")
    no_influx.write_text(text[: text.index("\ninflux:")] + text[text.index("\napi:"):], encoding="utf-8")
    assert main(["grafana", "export", "-c", str(no_influx), "--out", str(tmp_path / "y")]) == 2
    assert "no influx section" in capsys.readouterr().err
