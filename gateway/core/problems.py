"""A problem found in a site config: where (path and line), what, and how bad.

Every check (schema, cross-references, source types, the uplink profile, GB/T 50493 set
points, notification) reports :class:`Problem` values, so ``hazardgw check``, ``run`` and a
reload print and decide on them the same way (``gateway/validate.py``).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

from gateway.core.yamlsrc import Path_

Severity = Literal["error", "warning", "info"]


def format_path(path: Iterable[str | int | float]) -> str:
    """``("tags", 3, "alarms", "hh")`` -> ``tags[3].alarms.hh``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


@dataclass(frozen=True)
class Problem:
    path: Path_
    line: int | None
    message: str
    severity: Severity = "error"
    file: str | None = None  # another file the path and line are in (an uplink mapping); None: the config

    def format(self, filename: str) -> str:
        """``file:line: path: message`` (the line or path left out when unknown); ``file`` is
        the problem's own file when set, else ``filename`` (the config)."""
        filename = self.file or filename
        where = f"{filename}:{self.line}" if self.line else filename
        p = format_path(self.path)
        return f"{where}: {p}: {self.message}" if p else f"{where}: {self.message}"


@dataclass(frozen=True)
class Finding:
    """A problem before its line is known (checks that work on the validated model)."""

    path: Path_
    message: str
    severity: Severity = "error"
