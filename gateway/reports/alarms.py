"""``hazardgw report alarms``: the monthly alarm report (月度报警报告).

For a safety manager and an auditor: the alarm system KPIs of the month against the EEMUA 191
/ ISA-18.2 benchmarks (alerting/kpi.py computes them from the alarm journal), the daily
annunciation rate, the bad actors (top 10, chattering, fleeting, standing), the stale
acknowledgements, and every priority-1 alarm with its acknowledgement and disposition (处置).
"""

from __future__ import annotations

import argparse
import datetime as dt
import sqlite3
import sys
import time
from pathlib import Path
from typing import Any, cast
from zoneinfo import ZoneInfo

from alerting.comm import comm_descriptions
from alerting.journal import Journal
from alerting.kpi import AlarmCount, AlarmKpis, KpiSettings, compute
from gateway.core.config import SiteConfig
from gateway.reports.common import (
    NS,
    Lang,
    Period,
    fmt_duration,
    fmt_pct,
    fmt_time,
    header_facts,
    journal_file,
    month,
    word,
)
from gateway.reports.document import BarChart, Cell, Paragraph, Report, Status, Table

T: dict[str, dict[str, str]] = {
    "title": {"zh": "报警系统月度报告", "en": "Monthly alarm report"},
    "kpis": {"zh": "报警系统绩效指标（对照 EEMUA 191 / ISA-18.2）",
             "en": "Alarm system KPIs (vs EEMUA 191 / ISA-18.2)"},
    "kpi": {"zh": "指标", "en": "KPI"},
    "value": {"zh": "本月", "en": "This month"},
    "target": {"zh": "基准", "en": "Benchmark"},
    "status": {"zh": "评价", "en": "Status"},
    "ok": {"zh": "达标", "en": "met"},
    "warn": {"zh": "可接受上限内", "en": "within the manageable limit"},
    "bad": {"zh": "未达标", "en": "not met"},
    "none": {"zh": "无数据", "en": "no data"},
    "annunciations": {"zh": "报警总数（含再报警）", "en": "Annunciated alarms (incl. re-alarms)"},
    "per_day": {"zh": "日均报警数", "en": "Alarms per day (average)"},
    "per_10min": {"zh": "每 10 分钟平均报警数", "en": "Alarms per 10 minutes (average)"},
    "peak_10min": {"zh": "10 分钟峰值报警数", "en": "Peak alarms in 10 minutes"},
    "flood_pct": {"zh": "报警泛滥时段占比（10 分钟内 > {n} 条）", "en": "Periods in flood (> {n} in 10 min)"},
    "top10_pct": {"zh": "前 10 个最频繁报警占比", "en": "Share of the 10 most frequent alarms"},
    "chattering": {"zh": "抖动报警（个）", "en": "Chattering alarms"},
    "fleeting": {"zh": "瞬时报警（个，{s} 秒内恢复）", "en": "Fleeting alarms (back within {s} s)"},
    "standing": {"zh": "长时报警（持续 > 24 小时）", "en": "Standing alarms (active > 24 h)"},
    "p1_pct": {"zh": "一级报警占比", "en": "Priority 1 share"},
    "priorities": {"zh": "优先级分布 一级 / 二级 / 三级", "en": "Priority distribution P1 / P2 / P3"},
    "stale_acks": {"zh": "超时未确认（> {m} 分钟）", "en": "Stale acknowledgements (> {m} min)"},
    "ack": {"zh": "确认用时 中位数 / 90%", "en": "Time to acknowledge p50 / p90"},
    "ack_p1": {"zh": "一级报警确认用时 中位数 / 90%", "en": "Time to acknowledge, priority 1, p50 / p90"},
    "disposition_pct": {"zh": "处置闭环率", "en": "Disposition completion rate (处置闭环率)"},
    "disposition_p1": {"zh": "一级报警处置闭环率", "en": "Disposition completion rate, priority 1"},
    "rate_chart": {"zh": "每日报警数", "en": "Annunciated alarms per day"},
    "rate_limit": {"zh": "EEMUA 可接受上限 288/日", "en": "EEMUA manageable 288/day"},
    "top10": {"zh": "最频繁的 10 个报警（坏角色）", "en": "Top 10 most frequent alarms (bad actors)"},
    "chatter_list": {"zh": "抖动报警", "en": "Chattering alarms"},
    "fleeting_list": {"zh": "瞬时报警", "en": "Fleeting alarms"},
    "standing_list": {"zh": "长时报警（持续 > 24 小时）", "en": "Standing alarms (active > 24 h)"},
    "stale_list": {"zh": "超时未确认的报警", "en": "Stale acknowledgements"},
    "p1_list": {"zh": "一级（紧急）报警及确认、处置记录",
                "en": "Every priority 1 alarm with acknowledgement and disposition"},
    "rank": {"zh": "序号", "en": "#"},
    "alarm": {"zh": "报警", "en": "Alarm"},
    "name": {"zh": "名称", "en": "Name"},
    "hs": {"zh": "危险源", "en": "Hazard source"},
    "priority": {"zh": "优先级", "en": "Priority"},
    "count": {"zh": "次数", "en": "Count"},
    "share": {"zh": "占比", "en": "Share"},
    "raised": {"zh": "报警时间", "en": "Raised"},
    "active_for": {"zh": "持续时间", "en": "Active for"},
    "unacked_for": {"zh": "未确认时长", "en": "Unacknowledged for"},
    "acked": {"zh": "确认", "en": "Acknowledged"},
    "ack_time": {"zh": "确认用时", "en": "Time to ack"},
    "cleared": {"zh": "恢复时间", "en": "Cleared"},
    "value_limit": {"zh": "数值 / 报警值", "en": "Value / limit"},
    "disposition": {"zh": "处置（原因；措施；处置人；结果）", "en": "Disposition (cause; action; handler; result)"},
    "not_acked": {"zh": "未确认", "en": "not acknowledged"},
    "not_disposed": {"zh": "未处置", "en": "no disposition"},
    "by": {"zh": "由", "en": "by"},
    "none_month": {"zh": "本月无", "en": "none this month"},
    "journal": {"zh": "报警日志 {f}", "en": "alarm journal {f}"},
    "pruned": {
        "zh": "注意：报警日志最早的记录为 {t}，此前的报警已按 alarming.journal_retention 清理，本报告不完整。"
              "月度报告需要保留至少 62 天（例如 journal_retention: 62d）。",
        "en": "Note: the alarm journal starts at {t}; older alarms were pruned (alarming.journal_retention), so this "
              "report is incomplete. Monthly reports need at least 62 days (e.g. journal_retention: 62d).",
    },
    "definitions": {"zh": "指标定义", "en": "Definitions"},
    "definitions_text": {
        "zh": "报警数 = 报警发出（raised）与再报警（realarmed）事件；"
              "10 分钟时段从月初起固定划分；报警泛滥 = 一个时段内超过 {n} 条；"
              "抖动 = 同一报警 {c} 次发出在 {w} 秒内；瞬时 = 报警后 {s} 秒内自行恢复；"
              "长时 = 持续报警超过 24 小时；超时未确认 = 报警后超过 {m} 分钟未确认；"
              "确认用时 = 首次确认 − 报警发出（网关时钟）；"
              "处置闭环率 = 本月报警中已记录处置（原因、措施、处置人、结果）的比例。"
              "基准：EEMUA 191（平均 ≤ 1 条/10 分钟为很可能可接受，"
              "≤ 2 条为最大可管理；长时报警 < 10），ISA-18.2（峰值 ≤ 10 条/10 分钟，"
              "泛滥时段 < 1 %，前 10 报警 ≤ 5 %，抖动与瞬时报警 0，长时报警 < 5，"
              "优先级约 5 % / 15 % / 80 %）；处置闭环 100 % 与无超时未确认为企业闭环管理要求。",
        "en": "Alarms = raised and re-alarmed events; 10-minute periods are fixed from the start of the month; a flood "
              "= more than {n} in one period; chattering = one alarm raised {c} times within {w} s; fleeting = back to "
              "normal within {s} s of the raise; standing = active more than 24 h; stale acknowledgement = not "
              "acknowledged within {m} min; time to acknowledge = first acknowledgement - raise (gateway clock); "
              "disposition completion rate = share of the month's alarms with a recorded disposition (cause, action, "
              "handler, result). Benchmarks: EEMUA 191 (average ≤ 1 per 10 min very likely acceptable, ≤ 2 maximum "
              "manageable; standing < 10), ISA-18.2 (peak ≤ 10 per 10 min, floods < 1 % of periods, top 10 ≤ 5 % of "
              "the load, no chattering or fleeting alarms, standing < 5, priorities about 5 % / 15 % / 80 %); 100 % "
              "disposition and no stale acknowledgement are the site's closed-loop rule.",
    },
}


def t(key: str, lang: Lang, **kw: Any) -> str:
    text = T[key][lang]
    return text.format(**kw) if kw else text


class Names:
    """Tag names, hazard-source names and COMM source names for the tables."""

    def __init__(self, config: SiteConfig) -> None:
        self.tags = {x.id: x for x in config.tags}
        self.votes = {v.id: v.name for v in config.votes}
        self.hs = {h.code: h.name for h in config.hazard_sources}
        self.comm = comm_descriptions(config)

    def name(self, tag: str, condition: str) -> str:
        if condition == "comm":
            d = self.comm.get(tag)
            return str(d["name"]) if d else tag
        if condition == "vote":
            return self.votes.get(tag, "")
        x = self.tags.get(tag)
        return x.name if x is not None else ""

    def unit(self, tag: str) -> str:
        x = self.tags.get(tag)
        return x.unit if x is not None else ""


def _status_cell(status: str, lang: Lang) -> Cell:
    if status in ("ok", "warn", "bad"):
        return Cell(t(status, lang), cast(Status, status))
    return Cell(t("none", lang))


def _bench_text(kpi: str, lang: Lang) -> str:
    zh = lang == "zh"
    return {
        "per_10min": "≤ 1（很可能可接受）；≤ 2（最大可管理）" if zh
        else "≤ 1 (very likely acceptable); ≤ 2 (max manageable)",
        "peak_10min": "≤ 10",
        "flood_pct": "< 1 %",
        "top10_pct": "≤ 5 %",
        "chattering": "0",
        "fleeting": "0",
        "standing": "< 5（ISA）；< 10（EEMUA）" if zh else "< 5 (ISA); < 10 (EEMUA)",
        "p1_pct": "≈ 5 %",
        "stale_acks": "0",
        "disposition_pct": "100 %",
    }.get(kpi, "")


def _kpi_table(k: AlarmKpis, lang: Lang, days: float, tz: ZoneInfo) -> Table:
    st = {b.kpi: status for b, _, status in k.judged()}
    s = k.settings
    total = k.annunciations
    v = k.values()
    rows: list[list[str | Cell]] = [
        [t("annunciations", lang), str(total), "", Cell("")],
        [t("per_day", lang), f"{total / days:.1f}" if days else "—", "≤ 144 / ≤ 288", Cell("")],
        [t("per_10min", lang), f"{k.per_10min:.2f}", _bench_text("per_10min", lang),
         _status_cell(st["per_10min"], lang)],
        [t("peak_10min", lang), f"{k.peak_10min}" + (f"（{fmt_time(k.peak_at, tz, seconds=False)}）"
                                                      if lang == "zh" and k.peak_at else
                                                      f" ({fmt_time(k.peak_at, tz, seconds=False)})"
                                                      if k.peak_at else ""),
         _bench_text("peak_10min", lang), _status_cell(st["peak_10min"], lang)],
        [t("flood_pct", lang, n=s.flood_count), f"{fmt_pct(k.flood_pct)} ({k.flood_periods}/{k.periods})",
         _bench_text("flood_pct", lang), _status_cell(st["flood_pct"], lang)],
        [t("top10_pct", lang), fmt_pct(k.top10_pct), _bench_text("top10_pct", lang),
         _status_cell(st["top10_pct"], lang)],
        [t("chattering", lang), str(len(k.chattering)), "0", _status_cell(st["chattering"], lang)],
        [t("fleeting", lang, s=f"{s.fleeting:g}"), str(len(k.fleeting)), "0", _status_cell(st["fleeting"], lang)],
        [t("standing", lang), str(len(k.standing)), _bench_text("standing", lang), _status_cell(st["standing"], lang)],
        [t("priorities", lang), " / ".join(fmt_pct(v[f"p{p}_pct"]) for p in (1, 2, 3)), "≈ 5 % / 15 % / 80 %",
         _status_cell(st["p1_pct"], lang)],
        [t("stale_acks", lang, m=f"{s.stale_ack / 60:g}"), str(len(k.stale_acks)), "0",
         _status_cell(st["stale_acks"], lang)],
        [t("ack", lang), f"{fmt_duration(k.ack_p50, lang)} / {fmt_duration(k.ack_p90, lang)}", "—", Cell("")],
        [t("ack_p1", lang), f"{fmt_duration(k.ack_p1_p50, lang)} / {fmt_duration(k.ack_p1_p90, lang)}", "—",
         Cell("")],
        [t("disposition_pct", lang), f"{fmt_pct(k.disposition_pct)} ({k.disposed}/{k.occurrences})", "100 %",
         _status_cell(st["disposition_pct"], lang)],
        [t("disposition_p1", lang),
         f"{fmt_pct(100.0 * k.p1_disposed / k.p1_occurrences if k.p1_occurrences else None)} "
         f"({k.p1_disposed}/{k.p1_occurrences})", "100 %",
         _status_cell("ok" if k.p1_disposed == k.p1_occurrences and k.p1_occurrences
                      else ("none" if not k.p1_occurrences else "bad"), lang)],
    ]
    return Table(t("kpis", lang), [t("kpi", lang), t("value", lang), t("target", lang), t("status", lang)],
                 rows, numeric=(1,), key="kpis")


def _counts(title: str, items: list[AlarmCount], names: Names, lang: Lang, key: str, *, share: bool) -> Table:
    cols = [t("rank", lang), t("alarm", lang), t("name", lang), t("hs", lang), t("priority", lang), t("count", lang)]
    if share:
        cols.append(t("share", lang))
    rows: list[list[str | Cell]] = []
    for i, c in enumerate(items, 1):
        row: list[str | Cell] = [str(i), c.alarm, names.name(c.tag, c.condition), c.hs or "—", f"P{c.priority}",
                                 str(c.count)]
        if share:
            row.append(fmt_pct(c.pct))
        rows.append(row)
    return Table(title, cols, rows, empty=t("none_month", lang), numeric=(0, 5, 6), key=key)


def _p1_table(k: AlarmKpis, names: Names, lang: Lang, tz: ZoneInfo) -> Table:
    rows: list[list[str | Cell]] = []
    for o in k.p1:
        acked = o.get("acked_wall")
        ack = (f"{fmt_time(acked, tz)} {t('by', lang)} {o.get('acked_by') or '—'}" if acked is not None
               else Cell(t("not_acked", lang), "bad"))
        ack_s = (int(acked) - int(o["raised_wall"])) / NS if acked is not None else None
        unit = names.unit(str(o["tag"]))
        value = o.get("value")
        limit = o.get("limit_value")
        vl = f"{_num(value)} / {_num(limit)} {unit}".strip() if o["condition"] not in ("bad", "stale", "comm") else "—"
        if o.get("disposed_wall") is not None:
            disp: str | Cell = "；".join(str(o.get(x) or "—") for x in ("cause", "action", "handler", "result")) \
                if lang == "zh" else "; ".join(str(o.get(x) or "—") for x in ("cause", "action", "handler", "result"))
        else:
            disp = Cell(t("not_disposed", lang), "bad")
        rows.append([
            fmt_time(int(o["raised_wall"]), tz), str(o["alarm"]), names.name(str(o["tag"]), str(o["condition"])),
            str(o.get("hs") or "—"), vl, ack, fmt_duration(ack_s, lang),
            fmt_time(o.get("cleared_ts"), tz) if o.get("cleared_ts") is not None else "—", disp,
        ])
    cols = [t("raised", lang), t("alarm", lang), t("name", lang), t("hs", lang), t("value_limit", lang),
            t("acked", lang), t("ack_time", lang), t("cleared", lang), t("disposition", lang)]
    return Table(t("p1_list", lang), cols, rows, empty=t("none_month", lang), key="p1")


def _num(v: Any) -> str:
    return "—" if v is None else f"{float(v):.6g}"


def build(
    config: SiteConfig,
    annunciations: list[dict[str, Any]],
    occurrences: list[dict[str, Any]],
    period: Period,
    lang: Lang,
    *,
    data: str,
    now_ns: int,
    oldest_ns: int | None = None,
) -> Report:
    """The monthly alarm report of ``period`` from the journal rows (Journal.kpi_rows)."""
    tz = ZoneInfo(config.site.timezone)
    k = compute(annunciations, occurrences, period.start, period.end, KpiSettings.from_config(config), now=now_ns)
    names = Names(config)
    r = Report(t("title", lang), lang, header_facts(config, period, lang, data, now_ns), footer=word("footer", lang))
    if oldest_ns is not None and oldest_ns > period.start:
        r.add(Paragraph(t("pruned", lang, t=fmt_time(oldest_ns, tz)), cls="warning"))
    days = (period.end - period.start) / (86400 * NS)
    r.add(_kpi_table(k, lang, days, tz))

    # annunciations per day, with EEMUA's "maximum manageable" 288/day
    labels: list[str] = []
    values: list[float] = []
    d0 = dt.datetime.fromtimestamp(period.start / NS, tz)
    n_days = max(1, round(days))
    per_day = [0] * n_days
    for ev in annunciations:
        w = int(ev["wall_ns"])
        if period.start <= w < period.end and ev.get("event") in ("raised", "realarmed"):
            i = min(n_days - 1, int((dt.datetime.fromtimestamp(w / NS, tz).date() - d0.date()).days))
            per_day[i] += 1
    for i in range(n_days):
        labels.append(f"{(d0 + dt.timedelta(days=i)).day}")
        values.append(float(per_day[i]))
    r.add(BarChart(t("rate_chart", lang), labels, values, limit=288.0, limit_label=t("rate_limit", lang),
                   key="per-day"))

    r.add(_counts(t("top10", lang), k.top10, names, lang, "top10", share=True))
    r.add(_counts(t("chatter_list", lang), k.chattering, names, lang, "chattering", share=False))
    r.add(_counts(t("fleeting_list", lang), k.fleeting, names, lang, "fleeting", share=False))
    r.add(Table(
        t("standing_list", lang),
        [t("alarm", lang), t("name", lang), t("hs", lang), t("priority", lang), t("raised", lang),
         t("active_for", lang)],
        [[str(s["alarm"]), names.name(*str(s["alarm"]).split("/", 1)) if "/" in str(s["alarm"]) else "",
          str(s.get("hs") or "—"), f"P{s['priority']}", fmt_time(int(s["raised_wall"]), tz),
          fmt_duration(float(s["active_s"]), lang)] for s in k.standing],
        empty=t("none_month", lang), key="standing",
    ))
    r.add(Table(
        t("stale_list", lang),
        [t("alarm", lang), t("name", lang), t("hs", lang), t("priority", lang), t("raised", lang),
         t("unacked_for", lang)],
        [[str(s["alarm"]), names.name(*str(s["alarm"]).rsplit("/", 1)), str(s.get("hs") or "—"), f"P{s['priority']}",
          fmt_time(int(s["raised_wall"]), tz),
          fmt_duration(float(s["unacked_s"]), lang) + ("" if s.get("acked_wall") else f" ({t('not_acked', lang)})")]
         for s in k.stale_acks],
        empty=t("none_month", lang), key="stale-acks",
    ))
    r.add(_p1_table(k, names, lang, tz))
    s = k.settings
    r.add(Paragraph(t("definitions_text", lang, n=s.flood_count, c=s.chatter_cycles, w=f"{s.chatter_window:g}",
                      s=f"{s.fleeting:g}", m=f"{s.stale_ack / 60:g}"), title=t("definitions", lang)))
    return r


# ----------------------------------------------------------------------------- command


def add_command(sub: Any) -> None:
    """``hazardgw report alarms`` (added to the ``report`` group by gateway/reports/cli.py)."""
    p = sub.add_parser("alarms", help="monthly alarm report: KPIs vs EEMUA 191, bad actors, every P1 alarm")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--month", required=True, help="calendar month in the site's time zone, e.g. 2026-11")
    p.add_argument("-o", "--output", required=True, help="report.html (printable, A4) or report.csv")
    p.add_argument("--lang", choices=("zh", "en"), default=None, help="default: notification.language")
    p.add_argument("--journal", default=None, help="alarm journal file (default: {store.path}/alarm-journal.sqlite3)")
    p.set_defaults(func=cmd_alarms)


def cmd_alarms(args: argparse.Namespace) -> int:
    from gateway.reports.cli import EXIT_CONFIG, EXIT_DATA, EXIT_OK, load_config

    config = load_config(args.config)
    if config is None:
        return EXIT_CONFIG
    try:
        period = month(args.month, config.site.timezone)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_CONFIG
    out = Path(args.output)
    if out.suffix.lower() not in (".html", ".htm", ".csv"):
        print(f"error: {out.name}: write the report as .html or .csv", file=sys.stderr)
        return EXIT_CONFIG
    lang: Lang = args.lang or config.notification.language
    path = journal_file(config, args.journal)
    if not path.is_file():
        print(f"error: no alarm journal at {path} (use --journal)", file=sys.stderr)
        return EXIT_DATA
    journal = Journal(path)
    try:
        ann, occ = journal.kpi_rows(period.start, period.end)
        oldest = journal.oldest_event_wall()
    except sqlite3.Error as e:
        print(f"error: alarm journal {path}: {e}", file=sys.stderr)
        return EXIT_DATA
    from gateway.reports.document import write

    report = build(config, ann, occ, period, lang, data=t("journal", lang, f=str(path)), now_ns=time.time_ns(),
                   oldest_ns=oldest)
    write(report, out)
    print(f"{out}: {t('title', lang)} {period.label}, {len(ann)} alarms, {len(occ)} occurrences")
    return EXIT_OK
