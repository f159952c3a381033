"""``hazardgw report tests``: the commissioning report (联调测试/标定记录) of loop checks and bump tests.

For the commissioning engineer and the inspector: per tag, whether it was tested in the
period, when, by whom, which alarm levels its test reached and how long after the test began
(the time to alarm), pass or fail, and its calibration due date. Tags that were not tested
come first (the list of what is still to do), then failed ones, then passed ones. Below:
every test of the period, the calibrations due or overdue, and lines to sign.

Data: the test records of ``{store.path}/upkeep.sqlite3`` (gateway/upkeep/store.py), written
by the gateway's test mode (``POST /api/tags/{id}/test``); calibrations from the config and
the records. A test *passes* when every alarm level it was to verify (``levels``: by default
the tag's limit alarms in the direction gas drives it, h and hh; oxygen l and ll) was raised
during the test. Listed: every tag with an alarm level to verify, and every tag tested.
"""

from __future__ import annotations

import argparse
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from gateway.core.config import GAS_KINDS, SiteConfig, Tag
from gateway.reports.common import Lang, Period, between, fmt_duration, fmt_time, header_facts, word
from gateway.reports.document import Cell, KeyValues, Paragraph, Report, Table
from gateway.upkeep.calibration import CalibrationState, state_of, today
from gateway.upkeep.store import FILENAME, CalibrationRecord, TestRecord, UpkeepStore
from gateway.upkeep.testmode import default_levels

T: dict[str, dict[str, str]] = {
    "title": {"zh": "可燃有毒气体检测报警系统联调测试报告", "en": "Gas detection loop check and bump test report"},
    "summary": {"zh": "汇总", "en": "Summary"},
    "n_tags": {"zh": "需测试位号（有报警设定值）", "en": "Tags to test (with alarm levels)"},
    "n_tested": {"zh": "已测试", "en": "Tested"},
    "n_passed": {"zh": "合格", "en": "Passed"},
    "n_failed": {"zh": "不合格", "en": "Failed"},
    "n_untested": {"zh": "未测试", "en": "Not tested"},
    "n_detectors": {"zh": "其中气体探测器", "en": "of which gas detectors"},
    "n_cal_due": {"zh": "30 天内到期需检定", "en": "Calibration due within 30 days"},
    "n_cal_overdue": {"zh": "检定已过期", "en": "Calibration overdue"},
    "per_tag": {"zh": "逐点测试结果（未测试的位号列在最前）", "en": "Result per tag (untested tags first)"},
    "tag": {"zh": "位号", "en": "Tag"},
    "tag_name": {"zh": "位号 / 名称", "en": "Tag / name"},
    "tested_by": {"zh": "测试时间 / 测试人", "en": "Tested / by"},
    "name": {"zh": "名称", "en": "Name"},
    "hs": {"zh": "危险源", "en": "Hazard source"},
    "where": {"zh": "来源 / 地址", "en": "Source / address"},
    "tested": {"zh": "测试时间", "en": "Tested"},
    "by": {"zh": "测试人", "en": "By"},
    "levels": {"zh": "报警级别（达到用时）", "en": "Alarm levels (time to reach)"},
    "first": {"zh": "报警用时", "en": "Time to alarm"},
    "peak": {"zh": "峰值", "en": "Peak"},
    "result": {"zh": "结论", "en": "Result"},
    "tests_n": {"zh": "次数", "en": "Tests"},
    "calibration": {"zh": "检定", "en": "Calibration"},
    "pass": {"zh": "合格", "en": "pass"},
    "fail": {"zh": "不合格", "en": "fail"},
    "none": {"zh": "无报警级别", "en": "no level"},
    "running": {"zh": "测试中", "en": "running"},
    "untested": {"zh": "未测试", "en": "not tested"},
    "not_reached": {"zh": "未达到", "en": "not reached"},
    "all_tests": {"zh": "全部测试记录", "en": "Every test"},
    "started": {"zh": "开始", "en": "Started"},
    "ended": {"zh": "结束", "en": "Ended"},
    "duration": {"zh": "时长", "en": "Duration"},
    "comment": {"zh": "备注", "en": "Comment"},
    "end_ended": {"zh": "{by} 结束", "en": "ended by {by}"},
    "end_expired": {"zh": "到时自动结束", "en": "expired"},
    "end_removed": {"zh": "位号已移除", "en": "tag removed"},
    "cal_list": {"zh": "检定到期与过期（30 天内）", "en": "Calibrations due (within 30 days) and overdue"},
    "last": {"zh": "上次检定", "en": "Last"},
    "due": {"zh": "到期日", "en": "Due"},
    "status": {"zh": "状态", "en": "Status"},
    "cal_ok": {"zh": "正常", "en": "ok"},
    "cal_due": {"zh": "即将到期", "en": "due"},
    "cal_overdue": {"zh": "已过期", "en": "overdue"},
    "cal_none": {"zh": "无记录", "en": "no record"},
    "days": {"zh": "{n} 天", "en": "{n} days"},
    "overdue_days": {"zh": "过期 {n} 天", "en": "{n} days overdue"},
    "none_period": {"zh": "本期无", "en": "none in this period"},
    "store": {"zh": "测试记录 {f}", "en": "test records {f}"},
    "signatures": {"zh": "签字", "en": "Signatures"},
    "sign_tester": {"zh": "测试人", "en": "Tested by"},
    "sign_operator": {"zh": "值班人员（控制室）", "en": "Duty officer (control room)"},
    "sign_checker": {"zh": "审核人", "en": "Checked by"},
    "sign_date": {"zh": "日期", "en": "Date"},
    "definitions": {"zh": "说明", "en": "Notes"},
    "definitions_text": {
        "zh": "测试在网关的测试模式下进行：测试期间该位号的报警照常判断并在值班台显示（标记“测试”）、记入报警日志，"
              "但不推送到手机、不作为报警上报监管平台。报警用时 = 从进入测试模式到该级别报警发出（含报警延时）的时间。"
              "合格 = 要验证的全部报警级别（默认：可燃、有毒气体为高报 H 与高高报 HH，氧气为低报 L 与低低报 LL）"
              "均在测试中发出。峰值为测试期间读到的最高有效值。检定周期依 JJG 693 及企业规定。",
        "en": "Tests run in the gateway's test mode: during a test the tag's alarms are evaluated and shown on the "
              "duty console (marked TEST) and journaled as usual, but not pushed to phones nor reported to the "
              "regulator's platform as alarms. Time to alarm = from the start of test mode to the raise of the "
              "level's alarm (on-delay included). Pass = every level to verify (default: H and HH for combustible "
              "and toxic gas, L and LL for oxygen) was raised during the test. Peak = the highest usable value read "
              "during the test. Calibration intervals per JJG 693 and the site's rules.",
    },
}


def t(key: str, lang: Lang, **kw: Any) -> str:
    text = T[key][lang]
    return text.format(**kw) if kw else text


_RESULT_STATUS = {"pass": "ok", "fail": "bad", "running": "warn", "none": ""}
_CAL_STATUS = {"ok": "ok", "due": "warn", "overdue": "bad", "none": ""}


def _levels_text(r: TestRecord, lang: Lang, *, plain: bool = False) -> str:
    """``H 14 秒；HH 31 秒`` (reached, with the time from the start), ``HH 未达到``; ``plain``: the
    levels alone (a tag not tested yet)."""
    if plain:
        return " ".join(c.upper() for c in r.levels) or "—"
    parts = []
    for c in r.levels:
        s = r.seconds_to(c)
        name = c.upper()
        parts.append(f"{name} {fmt_duration(s, lang)}" if s is not None else f"{name} {t('not_reached', lang)}")
    extra = [c for c in r.reached if c not in r.levels]
    for c in extra:
        parts.append(f"{c.upper()} {fmt_duration(r.seconds_to(c), lang)}")
    return ("；" if lang == "zh" else "; ").join(parts) or "—"


def _num(v: float | None, unit: str) -> str:
    return "—" if v is None else f"{v:.4g} {unit}".strip()


def _cal_cell(s: CalibrationState | None, lang: Lang) -> Cell:
    if s is None or s.status == "none":
        return Cell(t("cal_none", lang), "")
    label = t(f"cal_{s.status}", lang)
    return Cell(f"{label}\n{s.due}" if s.due else label, _CAL_STATUS[s.status], "lines")  # type: ignore[arg-type]


def _tag_cell(x: Tag) -> Cell:
    return Cell(f"{x.id}\n{x.name}" if x.name else x.id, "", "lines")


def _end_text(r: TestRecord, lang: Lang, tz: ZoneInfo) -> str:
    if r.ended is None:
        return t("running", lang)
    reason = t(f"end_{r.end_reason or 'ended'}", lang, by=r.ended_by or "—")
    return f"{fmt_time(r.ended, tz)} {reason}"


def wanted(tag: Tag) -> bool:
    return bool(default_levels(tag))


def build(
    config: SiteConfig,
    tests: list[TestRecord],
    calibrations: dict[str, CalibrationRecord],
    period: Period,
    lang: Lang,
    *,
    data: str,
    now_ns: int,
    where: dict[str, str] | None = None,
) -> Report:
    """The commissioning report of ``period`` from the test records (UpkeepStore.tests)."""
    tz = ZoneInfo(config.site.timezone)
    where = where or {}
    r = Report(t("title", lang), lang, header_facts(config, period, lang, data, now_ns), footer=word("footer", lang))
    by_tag: dict[str, list[TestRecord]] = {}
    for rec in tests:
        by_tag.setdefault(rec.tag, []).append(rec)
    day = today(config.site.timezone, now_ns)
    cal = {x.id: state_of(x, calibrations.get(x.id), day) for x in config.tags}
    listed = [x for x in config.tags if wanted(x) or x.id in by_tag]

    def order(x: Tag) -> tuple[int, str, str]:
        recs = by_tag.get(x.id)
        if not recs:
            rank = 0
        else:
            res = recs[-1].result
            rank = 1 if res == "fail" else 2 if res == "running" else 3
        return rank, x.hazard_source or "~", x.id

    rows: list[list[str | Cell]] = []
    counts = {"tested": 0, "passed": 0, "failed": 0, "untested": 0}
    for x in sorted(listed, key=order):
        recs = by_tag.get(x.id, [])
        if not recs:
            counts["untested"] += 1
            rows.append([_tag_cell(x), x.hazard_source or "—", where.get(x.id, "—"), "—",
                         _levels_text(TestRecord(x.id, 0, 0, "", default_levels(x)), lang, plain=True), "—",
                         Cell(t("untested", lang), "bad", "nowrap"), "0", _cal_cell(cal.get(x.id), lang)])
            continue
        last = recs[-1]
        counts["tested"] += 1
        if last.result == "pass":
            counts["passed"] += 1
        elif last.result == "fail":
            counts["failed"] += 1
        res = last.result
        rows.append([
            _tag_cell(x), x.hazard_source or "—", where.get(x.id, "—"),
            Cell(f"{fmt_time(last.started, tz, seconds=False)}\n{last.by}", "", "lines"), _levels_text(last, lang),
            fmt_duration(last.first_alarm_s, lang),
            Cell(t(res, lang), _RESULT_STATUS[res], "nowrap"),  # type: ignore[arg-type]
            str(len(recs)), _cal_cell(cal.get(x.id), lang),
        ])
    detectors = sum(1 for x in listed if x.kind in GAS_KINDS)
    due = [x for x in config.tags if cal[x.id].status in ("due", "overdue")]
    r.add(KeyValues(t("summary", lang), [
        (t("n_tags", lang), f"{len(listed)}（{t('n_detectors', lang)} {detectors}）" if lang == "zh"
         else f"{len(listed)} ({t('n_detectors', lang)} {detectors})"),
        (t("n_tested", lang), str(counts["tested"])),
        (t("n_passed", lang), Cell(str(counts["passed"]), "ok" if counts["passed"] else "")),
        (t("n_failed", lang), Cell(str(counts["failed"]), "bad" if counts["failed"] else "ok")),
        (t("n_untested", lang), Cell(str(counts["untested"]), "bad" if counts["untested"] else "ok")),
        (t("n_cal_due", lang), Cell(str(sum(1 for x in due if cal[x.id].status == "due")),
                                    "warn" if any(cal[x.id].status == "due" for x in due) else "ok")),
        (t("n_cal_overdue", lang), Cell(str(sum(1 for x in due if cal[x.id].status == "overdue")),
                                        "bad" if any(cal[x.id].status == "overdue" for x in due) else "ok")),
    ], key="summary"))
    r.add(Table(t("per_tag", lang),
                [t("tag_name", lang), t("hs", lang), t("where", lang), t("tested_by", lang), t("levels", lang),
                 t("first", lang), t("result", lang), t("tests_n", lang), t("calibration", lang)],
                rows, empty=t("none_period", lang), numeric=(7,), key="tags"))
    all_rows: list[list[str | Cell]] = []
    units = {x.id: x.unit for x in config.tags}
    for rec in tests:
        res = rec.result
        end = rec.ended if rec.ended is not None else now_ns
        all_rows.append([
            fmt_time(rec.started, tz), rec.tag, rec.by, fmt_duration((end - rec.started) / 1e9, lang),
            _levels_text(rec, lang), _num(rec.peak, units.get(rec.tag, "")),
            Cell(t(res, lang), _RESULT_STATUS[res]), _end_text(rec, lang, tz), rec.comment or "",  # type: ignore[arg-type]
        ])
    r.add(Table(t("all_tests", lang),
                [t("started", lang), t("tag", lang), t("by", lang), t("duration", lang), t("levels", lang),
                 t("peak", lang), t("result", lang), t("ended", lang), t("comment", lang)],
                all_rows, empty=t("none_period", lang), key="tests"))
    cal_rows: list[list[str | Cell]] = []
    for x in sorted(due, key=lambda x: (cal[x.id].due or day, x.id)):
        s = cal[x.id]
        left = s.days_left or 0
        cal_rows.append([x.id, x.name, x.hazard_source or "—", str(s.last), str(s.due),
                         Cell(t("overdue_days", lang, n=-left) if left < 0 else t("days", lang, n=left),
                              _CAL_STATUS[s.status])])  # type: ignore[arg-type]
    r.add(Table(t("cal_list", lang), [t("tag", lang), t("name", lang), t("hs", lang), t("last", lang),
                                       t("due", lang), t("status", lang)],
                cal_rows, empty=t("none_period", lang), key="calibration"))
    r.add(KeyValues(t("signatures", lang), [(t("sign_tester", lang), ""), (t("sign_operator", lang), ""),
                                            (t("sign_checker", lang), ""), (t("sign_date", lang), "")],
                    key="signatures"))
    r.add(Paragraph(t("definitions_text", lang), title=t("definitions", lang)))
    return r


# ----------------------------------------------------------------------------- command


def add_command(sub: Any) -> None:
    """``hazardgw report tests`` (added to the ``report`` group by gateway/reports/cli.py)."""
    p = sub.add_parser("tests", help="commissioning report: loop checks / bump tests per tag, untested tags first, "
                       "calibration due dates")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--from", dest="start", required=True, help="first day (or ISO time), site time: 2026-11-01")
    p.add_argument("--to", dest="end", required=True, help="last day (included) or ISO time: 2026-11-30")
    p.add_argument("-o", "--output", required=True, help="report.html (printable, A4) or report.csv")
    p.add_argument("--lang", choices=("zh", "en"), default=None, help="default: notification.language")
    p.add_argument("--store", default=None, help=f"upkeep records (default: {{store.path}}/{FILENAME})")
    p.set_defaults(func=cmd_tests)


def cmd_tests(args: argparse.Namespace) -> int:
    from gateway.reports.cli import EXIT_CONFIG, EXIT_DATA, EXIT_OK, load_config

    config = load_config(args.config)
    if config is None:
        return EXIT_CONFIG
    try:
        period = between(args.start, args.end, config.site.timezone)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    out = Path(args.output)
    if out.suffix.lower() not in (".html", ".htm", ".csv"):
        print(f"error: {out.name}: write the report as .html or .csv", file=sys.stderr)
        return EXIT_CONFIG
    lang: Lang = args.lang or config.notification.language
    path = Path(args.store) if args.store else Path(config.store.path) / FILENAME
    if not path.is_file():
        print(f"error: no test records at {path} (use --store)", file=sys.stderr)
        return EXIT_DATA
    store = UpkeepStore(path)
    try:
        tests = store.tests(since_ns=period.start, until_ns=period.end)
        cals = store.latest_calibrations()
    except sqlite3.Error as e:
        print(f"error: test records {path}: {e}", file=sys.stderr)
        return EXIT_DATA
    where: dict[str, str] = {}
    for s in config.sources:
        addrs = s.point_addresses()
        for tag in s.point_tags():
            where.setdefault(tag, f"{s.id} {addrs[tag]}" if tag in addrs else s.id)
    from gateway.reports.document import write

    report = build(config, tests, cals, period, lang, data=t("store", lang, f=str(path)), now_ns=time.time_ns(),
                   where=where)
    write(report, out)
    print(f"{out}: {t('title', lang)} {period.label}, {len(tests)} tests")
    return EXIT_OK
