"""The tag-list columns, their Chinese headers, and the values they take."""

from __future__ import annotations

import re

from gateway.core.config import TAG_KINDS
from gateway.core.sources import POINT_COLUMNS

LIMITS = ("ll", "l", "h", "hh")
PRIORITY_COLUMNS = tuple(f"{c}_priority" for c in LIMITS)
#: default priority of a limit alarm a tag list creates (HH/LL 1, H/L 2)
DEFAULT_PRIORITY = {"hh": 1, "ll": 1, "h": 2, "l": 2}
TAG_COLUMNS = ("id", "name", "hazard_source", "kind", "gas", "unit", "range_lo", "range_hi", *LIMITS)
#: optional tag columns after the fixed ones: ``stale_after`` (a duration; what a tag of a
#: source that reports only when it likes — MQTT — needs so its loss raises an alarm)
EXTRA_TAG_COLUMNS = ("stale_after",)
#: every column, in the order an export writes them
COLUMNS: tuple[str, ...] = (*TAG_COLUMNS, "source", *POINT_COLUMNS, *PRIORITY_COLUMNS, *EXTRA_TAG_COLUMNS)

CHINESE = {
    "位号": "id",
    "名称": "name",
    "重大危险源": "hazard_source",
    "类型": "kind",
    "介质": "gas",
    "单位": "unit",
    "量程下限": "range_lo",
    "量程上限": "range_hi",
    "低低报": "ll",
    "低报": "l",
    "高报": "h",
    "高高报": "hh",
    "数据源": "source",
    "地址": "address",
    "数据类型": "type",
    "字节序": "byte_order",
    "系数": "scale",
    "偏移": "offset",
    "节点": "node",
    "主题": "topic",
    "路径": "path",
    "数据超时": "stale_after",
    "低低报优先级": "ll_priority",
    "低报优先级": "l_priority",
    "高报优先级": "h_priority",
    "高高报优先级": "hh_priority",
}
KIND_NAMES = {
    "可燃气体": "combustible_gas",
    "有毒气体": "toxic_gas",
    "有毒有害气体": "toxic_gas",
    "氧气": "oxygen",
    "压力": "pressure",
    "温度": "temperature",
    "液位": "level",
    "流量": "flow",
    "开关量": "discrete",
    "模拟量": "analog",
}
assert set(KIND_NAMES.values()) <= set(TAG_KINDS)

_PARTS = re.compile(r"[()（）\[\]【】/]")


def header_column(cell: str) -> str | None:
    """A header cell -> its column: ``hh``, ``高高报``, ``HH (高高报)``, ``高高报(hh)`` ..."""
    text = cell.replace("\ufeff", "").strip()
    for part in [text, *_PARTS.split(text)]:
        p = part.strip().lower().replace(" ", "_")
        if p in COLUMNS:
            return p
        if part.strip() in CHINESE:
            return CHINESE[part.strip()]
    return None


def kind_value(text: str) -> str:
    """``可燃气体`` / ``Combustible_Gas`` -> ``combustible_gas`` (others as given, lower case)."""
    t = text.strip()
    return KIND_NAMES.get(t, t.lower())
