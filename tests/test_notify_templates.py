"""Push texts in Chinese and English, custom templates, flood summaries."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError
from test_notify_support import local_ns, site_config

from alerting.notify.records import AlarmInfo
from alerting.notify.templates import SUMMARY_MAX_LINKS, Templates

RAISED = local_ns("2026-03-02 21:07:09")
LINK = "http://127.0.0.1:8080/ack/TOKEN"


def _info(**kw: object) -> AlarmInfo:
    d: dict[str, object] = {
        "occurrence": 5,
        "alarm": "GT-101/hh",
        "tag": "GT-101",
        "condition": "hh",
        "priority": 1,
        "hs": "HS-001",
        "value": 2.35,
        "limit": 2.0,
        "ts": RAISED,
        "message": None,
    }
    d.update(kw)
    return AlarmInfo(**d)  # type: ignore[arg-type]


def test_chinese_push_carries_every_fact(tmp_path: Path) -> None:
    t = Templates(site_config(None, tmp_path))
    title, body = t.alarm(_info(), "zh", link=LINK, state="UNACK", person="赵磊")
    assert title == "【一级(紧急)】液氯储罐区 GT-101 高高报"
    for part in (
        "示范化工有限公司",
        "危险源：液氯储罐区（HS-001）",
        "位号：GT-101 T-101 北侧氯气探测器",
        "数值：2.35 ppm（报警值 2 ppm）",
        "优先级：一级(紧急)",
        "时间：2026-03-02 21:07:09 (UTC+08:00)",  # site time zone, not UTC
        "状态：报警未确认",
        f"一键确认：{LINK}",
    ):
        assert part in body, part
    assert "升级" not in body


def test_english_push_and_escalation_line(tmp_path: Path) -> None:
    t = Templates(site_config(None, tmp_path))
    title, body = t.alarm(
        _info(condition="h", priority=2, value=1.2, limit=1.0), "en", link=LINK, step=1, elapsed=300.0, state="RTNUN"
    )
    assert title == "[P2 high] 液氯储罐区 GT-101 HIGH"
    assert body.startswith("[ESCALATION step 1] unacknowledged for 5 min\n示范化工有限公司")
    for part in (
        "Tag: GT-101 T-101 北侧氯气探测器",
        "Value: 1.2 ppm (limit 1 ppm)",
        "Time: 2026-03-02 21:07:09",
        "State: returned, unacknowledged",
        f"Acknowledge: {LINK}",
    ):
        assert part in body, part


def test_condition_specific_values(tmp_path: Path) -> None:
    tags = [
        {
            "id": "GT-2",
            "name": "H2S",
            "hazard_source": "HS-001",
            "kind": "toxic_gas",
            "gas": "H2S",
            "unit": "ppm",
            "alarms": {"roc": {"limit": 0.5, "per": "1m"}},
        },
    ]
    cfg = site_config(None, tmp_path, tags=tags)
    t = Templates(cfg)
    assert t.value_texts(_info(tag="GT-2", condition="roc", value=0.8, limit=0.5), "en") == (
        "0.8 ppm/min",
        "0.5 ppm/min",
    )
    assert t.value_texts(_info(tag="GT-2", condition="stale", value=None, limit=5.0), "zh") == ("无数据", "5秒")
    assert t.value_texts(_info(tag="GT-2", condition="bad", value=None, limit=None), "en") == ("fault", "—")
    _, body = t.alarm(_info(tag="GT-2", condition="discrete", message="ESD valve closed"), "en", link=LINK)
    assert "Alarm: discrete alarm: ESD valve closed" in body


def test_language_falls_back_to_the_site_default(tmp_path: Path) -> None:
    t = Templates(site_config(None, tmp_path, notification={"language": "en"}))
    title, _ = t.alarm(_info(), None, link=LINK)
    assert title.startswith("[P1 emergency]")


def test_custom_templates_from_the_config(tmp_path: Path) -> None:
    cfg = site_config(
        None,
        tmp_path,
        notification={
            "templates": {
                "zh": {
                    "title": "{site_code} {tag} {priority}",
                    "body": "{tag_name} {value} > {limit} @ {time} -> {link}",
                }
            }
        },
    )
    t = Templates(cfg)
    title, body = t.alarm(_info(), "zh", link=LINK)
    assert title == "91430900DEMO0001XX GT-101 1"
    assert body == f"T-101 北侧氯气探测器 2.35 ppm > 2 ppm @ 2026-03-02 21:07:09 (UTC+08:00) -> {LINK}"
    assert t.alarm(_info(), "en", link=LINK)[0].startswith("[P1 emergency]")  # en keeps the built-in text
    with pytest.raises(ValidationError, match="unknown placeholder"):
        site_config(None, tmp_path, notification={"templates": {"en": {"body": "{tag} {password}"}}})


def test_flood_summary_lists_alarms_with_links(tmp_path: Path) -> None:
    t = Templates(site_config(None, tmp_path))
    items = [
        (
            _info(
                occurrence=i,
                tag=f"PT-{i}",
                alarm=f"PT-{i}/h",
                condition="h",
                priority=2,
                hs="HS-002",
                value=1.5,
                limit=1.0,
            ),
            f"{LINK}{i}",
        )
        for i in range(1, 13)
    ]
    title, body = t.summary(items, "zh", "http://127.0.0.1:8080/", 60.0)
    assert title == "【报警泛滥】示范化工有限公司：12 条报警待确认"
    lines = body.splitlines()
    assert "二级 12 条" in lines[0]
    assert lines[1] == f"21:07:09 二级 LPG spheres PT-1 高报 1.5 MPa（报警值 1 MPa） {LINK}1"
    assert len(lines) == 1 + SUMMARY_MAX_LINKS + 1
    assert lines[-1] == "另有 2 条，请在值班台查看：http://127.0.0.1:8080/"
    title_en, _ = t.summary(items[:2], "en", "http://x/", 60.0)
    assert title_en == "[ALARM FLOOD] 示范化工有限公司: 2 alarms to acknowledge"


def test_sms_fields_are_short_and_chinese(tmp_path: Path) -> None:
    from alerting.notify.providers import FIELDS

    t = Templates(site_config(None, tmp_path))
    f = t.sms_fields(_info(), "zh", step=1, state="UNACK", person="赵磊", link=LINK)
    assert tuple(f) == FIELDS
    assert (f["site"], f["hs"], f["tag"], f["condition"], f["value"], f["limit"], f["priority"], f["time"]) == (
        "示范化工有限公司", "液氯储罐区", "GT-101", "高高报", "2.35 ppm", "2 ppm", "一级(紧急)", "3月2日 21:07:09"
    )
    assert all(len(v) <= 35 for k, v in f.items() if k not in ("link", "tag_name"))
    assert t.sms_fields(_info(), "en")["time"] == "03-02 21:07:09"
    s = t.summary_sms_fields([_info(), _info()], "zh", _info().ts, person="赵磊", link="http://x/")
    assert (s["hs"], s["tag"], s["condition"], s["value"]) == ("液氯储罐区", "2条报警", "报警泛滥", "2")


def test_gb18218_report_line_follows_the_language() -> None:
    from alerting.standards import HazardRisk

    r = HazardRisk("HS-001", "液氯储罐区", 8.0, 1.0, 64.0, 2, 2)
    assert r.format("zh") == (
        "HS-001 液氯储罐区：S = 8.00（构成重大危险源），α = 1，R = 64.0 → 二级；配置为二级（GB 18218-2018 4.2、4.3）"
    )
    assert r.format().startswith("HS-001 液氯储罐区: S = 8.00 (major hazard source)")
