"""``hazardgw report ...`` (wired into :mod:`gateway.cli` by ``add_parser``).

Each report module provides ``add_command(sub)`` adding its subcommand to the ``report``
group; a new report is one line in :data:`REPORTS` (e.g. ``"gateway.reports.tests"`` for the
commissioning report ``hazardgw report tests``). Modules are imported when the parser is
built, so keep their imports cheap.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from gateway.core.config import SiteConfig

EXIT_OK = 0
EXIT_DATA = 1  # the data to report on cannot be read (no journal, unreadable file)
EXIT_CONFIG = 2

#: report modules, one line each (``hazardgw report <name>``)
REPORTS: tuple[str, ...] = (
    "gateway.reports.alarms",
    "gateway.reports.tests",
)


def add_parser(sub: Any) -> None:
    """Add the ``report`` group to ``hazardgw``'s subparsers."""
    r = sub.add_parser("report", help="printable reports (HTML for A4, or CSV) from the gateway's records")
    rsub = r.add_subparsers(dest="report_cmd", required=True)
    for name in REPORTS:
        importlib.import_module(name).add_command(rsub)


def load_config(path: str) -> SiteConfig | None:
    """The site config for a report, checked like ``hazardgw check --offline-secrets``: a
    report reads files, so it runs on a machine without the site's secrets. Errors printed."""
    from gateway.validate import validate_file

    result = validate_file(path, offline_secrets=True)
    if result.config is None:
        for err in result.format_errors():
            print(f"error: {err}", file=sys.stderr)
        return None
    return result.config
