"""Grafana dashboards follow `notification.language`: a Chinese site gets Chinese titles, rows,
descriptions, legends, table columns and value texts (checked structurally on the export);
`language: en` keeps the English dashboards."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from test_grafana_support import demo_config, panels

from gateway.config import Config
from gateway.grafana.export import build_site
from gateway.grafana.texts import COLUMNS, EVENT_TEXT, STATE_TEXT, TEXTS, Texts

CJK = re.compile(r"[\u4e00-\u9fff]")
USER_TEXT = {"$tag_tag", "$tag_component"}  # Grafana series names (tag ids), not texts


def _with_language(lang: str) -> Config:
    c = demo_config()
    return c.model_copy(update={"notification": c.notification.model_copy(update={"language": lang})})


def _texts(d: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(what, text) of everything a person reads on a dashboard, our texts only."""
    yield "dashboard", d["title"]
    yield "dashboard description", d.get("description", "")
    for a in d["annotations"]["list"]:
        yield "annotation", a["name"]
    for p in panels(d):
        yield "title", p["title"]
        if p.get("description"):
            yield "description", p["description"]
        for t in p.get("targets", []):
            if t.get("alias") and t["alias"] not in USER_TEXT:
                yield "legend", t["alias"]
        for o in p.get("fieldConfig", {}).get("overrides", []):
            for prop in o["properties"]:
                if prop["id"] == "displayName" and o["matcher"]["options"] in COLUMNS["zh"]:
                    yield "column", prop["value"]


def _english_phrases() -> set[str]:
    out: set[str] = set()
    for v in TEXTS["en"].values():
        out |= {w for w in re.split(r"[^A-Za-z ]+", v) if len(w.strip()) >= 10}
    out = {w.strip() for w in out if "hazardgw" not in w and "alerting" not in w}  # names of commands and files
    return out | {"P1 emergency", "P2 high", "P3 low", "no data", "no alarm", "online"}


def test_a_chinese_site_gets_chinese_dashboards() -> None:
    config = _with_language("zh")
    site = build_site(config)
    english = _english_phrases()
    seen = 0
    for d in site.dashboards:
        for what, text in _texts(d):
            seen += 1
            assert CJK.search(text), f"{d['title']}: {what} {text!r} has no Chinese"
            bad = [w for w in english if w in text]
            assert not bad, f"{d['title']}: {what} {text!r} contains English {bad}"
    assert seen > 100

    (ov,) = [d for d in site.dashboards if "overview" in d["tags"]]
    assert ov["title"].endswith("— 总览")
    by_title = {p["title"]: p for p in panels(ov)}
    active = by_title["活动报警（按优先级）"]
    assert [t["alias"] for t in active["targets"]] == ["一级(紧急)", "二级(重要)", "三级(一般)"]
    status = by_title["危险源状态 红/橙/黄/蓝"]
    texts = {r["text"] for m in status["fieldConfig"]["defaults"]["mappings"] for r in m["options"].values()}
    assert texts == {"蓝色", "黄色", "橙色", "红色"}

    # tables: every column titled in Chinese, states and events spelled out
    (alarms,) = [d for d in site.dashboards if "alarms" in d["tags"]]
    history = next(p for p in panels(alarms) if p["title"] == "报警历史")
    overrides = {o["matcher"]["options"]: o["properties"] for o in history["fieldConfig"]["overrides"]}
    for col in ("Time", "hs", "tag", "condition", "priority", "event", "state", "value", "limit", "by"):
        assert overrides[col][0] == {"id": "displayName", "value": COLUMNS["zh"][col]}, col
    state_map = next(p["value"] for p in overrides["state"] if p["id"] == "mappings")[0]["options"]
    assert {k: v["text"] for k, v in state_map.items()} == {k: STATE_TEXT["zh"][k] for k in state_map}
    event_map = next(p["value"] for p in overrides["event"] if p["id"] == "mappings")[0]["options"]
    assert event_map["raised"]["text"] == EVENT_TEXT["zh"]["raised"] == "报警"

    # a hazard source's gas panel: kind, unit and limits in Chinese
    (hs1,) = [d for d in site.dashboards if "hs:HS-001" in d["tags"]]
    cl2 = next(p for p in panels(hs1) if p["title"].startswith("Cl2"))
    assert re.fullmatch(r"Cl2（有毒气体） \[mg/m3\] — 高高 [\d.]+，高 [\d.]+", cl2["title"]), cl2["title"]
    assert "气体检测" in [p["title"] for p in hs1["panels"] if p["type"] == "row"]


def test_an_english_site_keeps_english_dashboards() -> None:
    site = build_site(_with_language("en"))
    (ov,) = [d for d in site.dashboards if "overview" in d["tags"]]
    titles = [p["title"] for p in panels(ov)]
    assert "Active alarms by priority" in titles and "Data online rate" in titles
    assert ov["title"].endswith("— overview")
    for d in site.dashboards:
        for p in panels(d):
            for o in p.get("fieldConfig", {}).get("overrides", []):
                assert not any(prop["id"] == "displayName" and CJK.search(str(prop["value"]))
                               for prop in o["properties"] if o["matcher"]["options"] in COLUMNS["zh"])
    assert Texts("fr").lang == "zh"  # anything else: the default language
