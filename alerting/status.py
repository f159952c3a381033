"""Hazard-source status 红/橙/黄/蓝 (red/orange/yellow/blue) from active alarms and grade.

The default rule (``alarming.status_rule: default``), in order:

1. **red 红** when ``p1_red_count`` (default 2) or more priority-1 alarms of the source are
   active, whatever its grade: two emergency alarms at once (e.g. two detectors of one tank
   farm) are treated as a confirmed event;
2. otherwise the worst active priority picks a column of the grade's row:

   ======  ==========  ==========  ==========
   grade   priority 1  priority 2  priority 3
   ======  ==========  ==========  ==========
   一级 1   red 红      orange 橙   yellow 黄
   二级 2   red 红      orange 橙   yellow 黄
   三级 3   orange 橙   yellow 黄   blue 蓝
   四级 4   orange 橙   yellow 黄   blue 蓝
   ======  ==========  ==========  ==========

3. **blue 蓝** (``normal``) with no active alarm.

"Active" means the condition is active and the alarm is UNACK, ACKED or SHLVD:
acknowledging or shelving an alarm does not make the hazard go away, while an alarm that
returned (RTNUN, latched ACKED), is suppressed by design (DSUPR, e.g. unit shut down) or
out of service (OOSRV) does not count. BAD and STALE alarms count with their priority: a
blind detector is a hazard too.

Configure the matrix, the normal colour and the red count under
``alarming.status_rule`` (see gateway.config.StatusRule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from gateway.core.config import StatusRule

ZH: Final = {"red": "红", "orange": "橙", "yellow": "黄", "blue": "蓝"}
RANK: Final = {"blue": 0, "yellow": 1, "orange": 2, "red": 3}  # for the Prometheus gauge

DEFAULT_RULE: Final = StatusRule()


@dataclass(frozen=True, slots=True)
class HazardStatus:
    code: str
    grade: int | None
    status: str  # red | orange | yellow | blue
    counts: tuple[int, int, int]  # active alarms of priority 1, 2, 3

    @property
    def zh(self) -> str:
        return ZH[self.status]


def evaluate(rule: StatusRule, grade: int | None, counts: tuple[int, int, int]) -> str:
    """Status colour for a source of ``grade`` with ``counts`` active alarms by priority."""
    p1, p2, p3 = counts
    if rule.p1_red_count and p1 >= rule.p1_red_count:
        return "red"
    row = rule.matrix.get(grade if grade is not None else 4, rule.matrix[4])
    if p1:
        return row[0]
    if p2:
        return row[1]
    if p3:
        return row[2]
    return rule.normal
