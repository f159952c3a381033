"""Push texts in Chinese and English: one alarm, or a flood summary.

A push carries the site, the hazard source (name and code), the tag's 位号 and name, the
condition, the value with its unit, the limit, the priority, the raise time in the site's
time zone and the one-tap acknowledge link. The language is the person's ``language``, else
``notification.language``. ``notification.templates.{zh,en}.{title,body}`` replace the
built-in texts; their ``{placeholders}`` are ``gateway.config.TEMPLATE_FIELDS`` (checked when
the config loads).

SMS and voice templates are approved by the provider; the gateway fills their variables
(:meth:`Templates.sms_fields`: site, hazard source, tag, condition, value, limit, priority,
time in a short form such as ``3月2日 10:00:05``, ... see providers/base.py ``FIELDS``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from zoneinfo import ZoneInfo

from alerting.comm import comm_descriptions, comm_summary
from alerting.notify.records import AlarmInfo
from gateway.core.config import TEMPLATE_FIELDS, SiteConfig

CONDITION_TEXT: Final = {
    "zh": {
        "hh": "高高报",
        "h": "高报",
        "l": "低报",
        "ll": "低低报",
        "roc": "变化率报警",
        "stale": "数据中断",
        "bad": "仪表故障",
        "frozen": "数据冻结",
        "discrete": "开关量报警",
        "vote": "表决报警",
        "comm": "通讯中断",
    },
    "en": {
        "hh": "HIGH-HIGH",
        "h": "HIGH",
        "l": "LOW",
        "ll": "LOW-LOW",
        "roc": "rate of change",
        "stale": "no data",
        "bad": "instrument fault",
        "frozen": "frozen value",
        "discrete": "discrete alarm",
        "vote": "voting alarm",
        "comm": "communication lost",
    },
}
PRIORITY_TEXT: Final = {
    "zh": {1: "一级(紧急)", 2: "二级(重要)", 3: "三级(一般)"},
    "en": {1: "P1 emergency", 2: "P2 high", 3: "P3 low"},
}
STATE_TEXT: Final = {
    "zh": {"UNACK": "报警未确认", "ACKED": "已确认", "RTNUN": "已恢复未确认", "NORM": "已恢复正常"},
    "en": {
        "UNACK": "active, unacknowledged",
        "ACKED": "acknowledged",
        "RTNUN": "returned, unacknowledged",
        "NORM": "normal",
    },
}
PRIORITY_SHORT_ZH: Final = {1: "一级", 2: "二级", 3: "三级"}
NOTIFY_TYPE: Final = {1: "failure", 2: "warning", 3: "info"}  # apprise NotifyType by priority

DEFAULT: Final = {
    "zh": {
        "title": "【{priority_text}】{hs_name} {tag} {condition_text}",
        "body": (
            "{escalation}{site}\n"
            "危险源：{hs_name}（{hs}）\n"
            "位号：{tag} {tag_name}\n"
            "报警：{condition_text}{message}\n"
            "数值：{value}（报警值 {limit}）\n"
            "优先级：{priority_text}\n"
            "时间：{time}\n"
            "状态：{state_text}\n"
            "一键确认：{link}"
        ),
    },
    "en": {
        "title": "[{priority_text}] {hs_name} {tag} {condition_text}",
        "body": (
            "{escalation}{site}\n"
            "Hazard source: {hs_name} ({hs})\n"
            "Tag: {tag} {tag_name}\n"
            "Alarm: {condition_text}{message}\n"
            "Value: {value} (limit {limit})\n"
            "Priority: {priority_text}\n"
            "Time: {time}\n"
            "State: {state_text}\n"
            "Acknowledge: {link}"
        ),
    },
}
ESCALATION_TEXT: Final = {
    "zh": "【升级第{step}级】报警 {minutes} 分钟未确认\n",
    "en": "[ESCALATION step {step}] unacknowledged for {minutes} min\n",
}
REALARM_TEXT: Final = {"zh": "【再次报警】", "en": "[RE-ALARM] "}
SUMMARY_MAX_LINKS: Final = 10


def _sms_fields() -> tuple[str, ...]:
    """The SMS/voice template fields (alerting/notify/providers/base.py). Imported here, not at
    the top: the providers subclass apprise's plugin base, and apprise is loaded only by a site
    that pushes (issue 23)."""
    from alerting.notify.providers import FIELDS

    return FIELDS


@dataclass(frozen=True, slots=True)
class TagText:
    name: str
    unit: str
    per: float | None  # ROC rate unit, seconds
    members: int | None  # vote size


def fmt_number(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:.6g}"


class Templates:
    """Renders pushes for one site config (built once)."""

    def __init__(self, config: SiteConfig) -> None:
        self.site = config.site.name
        self.site_code = config.site.code
        self.tz = ZoneInfo(config.site.timezone)
        self.default_language = config.notification.language
        self.hs_names = {h.code: h.name for h in config.hazard_sources}
        self.tags: dict[str, TagText] = {}
        for t in config.tags:
            per = t.alarms.roc.per if t.alarms.roc is not None else None
            self.tags[t.id] = TagText(t.name, t.unit, per, None)
        for v in config.votes:
            self.tags[v.id] = TagText(v.name, "", None, len(v.tags))
        self.custom = {lang: tpl for lang, tpl in config.notification.templates.items()}
        self.comm = comm_descriptions(config)  # COMM alarm tag -> what it covers

    # ------------------------------------------------------------------ fields
    def time_text(self, ns: int) -> str:
        t = dt.datetime.fromtimestamp(ns / 1e9, self.tz)
        off = t.strftime("%z")
        return f"{t:%Y-%m-%d %H:%M:%S} (UTC{off[:3]}:{off[3:]})"

    def value_texts(self, info: AlarmInfo, lang: str) -> tuple[str, str]:
        """(value, limit) as shown to a person, with units."""
        tt = self.tags.get(info.tag, TagText("", "", None, None))
        unit = f" {tt.unit}" if tt.unit else ""
        c = info.condition
        if c == "roc":
            per = tt.per or 60.0
            per_text = {1.0: "s", 60.0: "min", 3600.0: "h"}.get(per, f"{per:g}s")
            u = f" {tt.unit}/{per_text}" if tt.unit else f"/{per_text}"
            return fmt_number(info.value) + u, fmt_number(info.limit) + u
        if c == "vote":
            n = f"/{tt.members}" if tt.members else ""
            word = "台探测器动作" if lang == "zh" else " detectors tripped"
            return f"{fmt_number(info.value)}{n}{word}", f"k={fmt_number(info.limit)}"
        if c == "stale":
            sec = "秒" if lang == "zh" else " s"
            return ("无数据" if lang == "zh" else "no data"), f"{fmt_number(info.limit)}{sec}"
        if c == "bad":
            return ("故障" if lang == "zh" else "fault"), "—"
        if c == "comm":
            count = int(self.comm.get(info.tag, {}).get("tags") or 0)
            return (f"{count} 个位号无数据" if lang == "zh" else f"{count} tags without data"), "—"
        if c == "discrete":
            return fmt_number(info.value), "—"
        return fmt_number(info.value) + unit, fmt_number(info.limit) + unit

    def comm_name(self, tag: str) -> str:
        """The name people know a lost source by (GDS-B), else its id."""
        d = self.comm.get(tag)
        return str(d.get("name") or tag) if d else tag

    def comm_text(self, tag: str, lang: str) -> str:
        d = self.comm.get(tag)
        if d is None:
            return "—"
        return comm_summary(d, lang)

    def fields(
        self,
        info: AlarmInfo,
        lang: str,
        *,
        link: str = "",
        step: int = 0,
        elapsed: float = 0.0,
        realarm: bool = False,
        state: str | None = None,
        person: str = "",
    ) -> dict[str, str]:
        lang = lang if lang in DEFAULT else "zh"
        tt = self.tags.get(info.tag)
        value, limit = self.value_texts(info, lang)
        escalation = ""
        if step > 0:
            escalation = ESCALATION_TEXT[lang].format(step=step, minutes=f"{elapsed / 60:.0f}")
        if realarm:
            escalation = REALARM_TEXT[lang] + escalation
        st = state or "UNACK"
        message = info.message
        tag_text, tag_name = info.tag, tt.name if tt is not None else ""
        if info.condition == "comm":  # root cause: "GDS-B 通讯中断：36 个探测器，重大危险源 HS-001、HS-002"
            tag_text = self.comm_name(info.tag)
            tag_name = "" if tag_text == info.tag else info.tag
            message = self.comm_text(info.tag, lang)
        f = {
            "site": self.site,
            "site_code": self.site_code,
            "hs": info.hs or "—",
            "hs_name": self.hs_names.get(info.hs or "", info.hs or ""),
            "tag": tag_text,
            "tag_name": tag_name,
            "condition": info.condition,
            "condition_text": CONDITION_TEXT[lang].get(info.condition, info.condition),
            "priority": str(info.priority),
            "priority_text": PRIORITY_TEXT[lang].get(info.priority, str(info.priority)),
            "value": value,
            "limit": limit,
            "unit": tt.unit if tt is not None else "",
            "time": self.time_text(info.ts),
            "state": st,
            "state_text": STATE_TEXT[lang].get(st, st),
            "link": link,
            "step": str(step),
            "escalation": escalation,
            "person": person,
            "message": (("：" if lang == "zh" else ": ") + message) if message else "",
        }
        assert set(f) == set(TEMPLATE_FIELDS)
        return f

    def _texts(self, lang: str) -> tuple[str, str]:
        d = DEFAULT[lang]
        c = self.custom.get(lang)  # type: ignore[call-overload]
        title = c.title if c is not None and c.title else d["title"]
        body = c.body if c is not None and c.body else d["body"]
        return title, body

    def short_time(self, ns: int, lang: str) -> str:
        t = dt.datetime.fromtimestamp(ns / 1e9, self.tz)
        return f"{t.month}月{t.day}日 {t:%H:%M:%S}" if lang == "zh" else f"{t:%m-%d %H:%M:%S}"

    def sms_fields(
        self,
        info: AlarmInfo,
        lang: str | None,
        *,
        step: int = 0,
        state: str | None = None,
        person: str = "",
        link: str = "",
    ) -> dict[str, str]:
        """Template variables of an SMS / voice push (short values: SMS variables are limited)."""
        lang = lang if lang in DEFAULT else self.default_language
        f = self.fields(info, lang, link=link, step=step, state=state, person=person)
        out = {
            "site": f["site"],
            "site_code": f["site_code"],
            "hs": f["hs_name"] or f["hs"],
            "hs_code": f["hs"],
            "tag": f["tag"],
            "tag_name": f["tag_name"],
            "condition": f["condition_text"],
            "value": f["value"],
            "limit": f["limit"],
            "priority": f["priority_text"],
            "time": self.short_time(info.ts, lang),
            "state": f["state_text"],
            "step": f["step"],
            "person": person,
            "link": link,
        }
        assert tuple(out) == _sms_fields()
        return out

    def summary_sms_fields(
        self, items: Sequence[AlarmInfo], lang: str | None, wall: int, *, person: str = "", link: str = ""
    ) -> dict[str, str]:
        """Template variables of a flood summary sent by SMS / voice."""
        lang = lang if lang in DEFAULT else self.default_language
        n = len(items)
        prio = min((i.priority for i in items), default=3)
        hss = {self.hs_names.get(i.hs or "", i.hs or "") for i in items}
        zh = lang == "zh"
        one_hs = next(iter(hss)) if len(hss) == 1 else ("多个危险源" if zh else "several hazard sources")
        out = {
            "site": self.site,
            "site_code": self.site_code,
            "hs": one_hs,
            "hs_code": "—",
            "tag": f"{n}条报警" if zh else f"{n} alarms",
            "tag_name": "",
            "condition": "报警泛滥" if zh else "alarm flood",
            "value": str(n),
            "limit": "—",
            "priority": PRIORITY_TEXT[lang].get(prio, str(prio)),
            "time": self.short_time(wall, lang),
            "state": STATE_TEXT[lang]["UNACK"],
            "step": "0",
            "person": person,
            "link": link,
        }
        assert tuple(out) == _sms_fields()
        return out

    # ------------------------------------------------------------------ pushes
    def alarm(self, info: AlarmInfo, lang: str | None, **kw: object) -> tuple[str, str]:
        """(title, body) of one alarm push."""
        lang = lang if lang in DEFAULT else self.default_language
        f = self.fields(info, lang, **kw)  # type: ignore[arg-type]
        title, body = self._texts(lang)
        return title.format_map(f).strip(), body.format_map(f).strip()

    def summary(
        self, items: Sequence[tuple[AlarmInfo, str]], lang: str | None, console: str, window_s: float
    ) -> tuple[str, str]:
        """(title, body) of a flood summary: ``items`` are (alarm, ack link), newest last."""
        lang = lang if lang in DEFAULT else self.default_language
        n = len(items)
        counts = {p: sum(1 for i, _ in items if i.priority == p) for p in (1, 2, 3)}
        mins = f"{window_s / 60:g}"
        if lang == "zh":
            title = f"【报警泛滥】{self.site}：{n} 条报警待确认"
            head = f"{self.site} 报警泛滥（近 {mins} 分钟汇总）：二级 {counts[2]} 条，三级 {counts[3]} 条"
            more = "另有 {k} 条，请在值班台查看：{console}"
        else:
            title = f"[ALARM FLOOD] {self.site}: {n} alarms to acknowledge"
            head = f"{self.site} alarm flood (summary of {mins} min): P2 {counts[2]}, P3 {counts[3]}"
            more = "{k} more, see the duty console: {console}"
        lines = [head]
        # root causes first: a lost source reads as one line naming what it cut off
        ordered = sorted(enumerate(items), key=lambda ix: (ix[1][0].condition != "comm", ix[0]))
        for i, (_, (info, link)) in enumerate(ordered):
            if i >= SUMMARY_MAX_LINKS:
                lines.append(more.format(k=n - SUMMARY_MAX_LINKS, console=console))
                break
            value, limit = self.value_texts(info, lang)
            t = dt.datetime.fromtimestamp(info.ts / 1e9, self.tz)
            cond = CONDITION_TEXT[lang].get(info.condition, info.condition)
            hs = self.hs_names.get(info.hs or "", info.hs or "")
            if info.condition == "comm":
                sep = "：" if lang == "zh" else ": "
                what = self.comm_text(info.tag, lang)
                prio = PRIORITY_SHORT_ZH.get(info.priority, "") if lang == "zh" else f"P{info.priority}"
                lines.append(f"{t:%H:%M:%S} {prio} {self.comm_name(info.tag)} {cond}{sep}{what} {link}")
                continue
            if lang == "zh":
                prio = PRIORITY_SHORT_ZH.get(info.priority, str(info.priority))
                lines.append(f"{t:%H:%M:%S} {prio} {hs} {info.tag} {cond} {value}（报警值 {limit}） {link}")
            else:
                lines.append(f"{t:%H:%M:%S} P{info.priority} {hs} {info.tag} {cond} {value} / {limit} {link}")
        return title, "\n".join(lines)
