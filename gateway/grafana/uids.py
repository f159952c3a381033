"""Stable Grafana uids: derived from the site code and the hazard-source code only.

A re-export (or a push) of the same site therefore addresses the same dashboards,
folder and data source, and Grafana updates them instead of creating copies; renaming a
hazard source or editing tags changes titles and panels, never uids.

Scheme (Grafana allows up to 40 characters of ``[A-Za-z0-9_-]``)::

    folder       hgw-<site8>
    datasource   hgw-<site8>-influx
    overview     hgw-<site8>-overview
    alarms       hgw-<site8>-alarms
    hazard src   hgw-<site8>-hs-<slug12>-<hash6>

``<site8>`` is the first 8 hex digits of SHA-256 of the site code; ``<slug12>`` is the
hazard-source code lower-cased with other characters folded to ``-`` (readable in URLs),
and ``<hash6>`` is a hash of the exact site and source codes, so codes that slug alike
(``HS-001`` and ``hs_001``) still get distinct uids.
"""

from __future__ import annotations

import hashlib
import re

MAX_UID = 40


def _h(*parts: str, n: int) -> str:
    return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:n]


def site_key(site_code: str) -> str:
    return _h("site", site_code, n=8)


def folder_uid(site_code: str) -> str:
    return f"hgw-{site_key(site_code)}"


def datasource_uid(site_code: str) -> str:
    return f"hgw-{site_key(site_code)}-influx"


def overview_uid(site_code: str) -> str:
    return f"hgw-{site_key(site_code)}-overview"


def alarms_uid(site_code: str) -> str:
    return f"hgw-{site_key(site_code)}-alarms"


def slug(text: str, n: int = 12) -> str:
    s = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return s[:n].strip("-") or "x"


def hazard_source_uid(site_code: str, hs_code: str) -> str:
    uid = f"hgw-{site_key(site_code)}-hs-{slug(hs_code)}-{_h('hs', site_code, hs_code, n=6)}"
    assert len(uid) <= MAX_UID, uid
    return uid
