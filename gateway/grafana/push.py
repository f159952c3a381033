"""``hazardgw grafana push``: upload a site's data source and dashboards with grafana-client.

Idempotent, keyed by uid (:mod:`gateway.grafana.uids`), so pushing twice changes nothing
but dashboard versions:

1. ``GET /api/health`` (fails early on a wrong URL);
2. folder per site: ``GET /api/folders/{uid}``, then ``POST /api/folders`` if missing or
   ``PUT /api/folders/{uid}`` if the title changed;
3. data source: ``GET /api/datasources/uid/{uid}``, then ``POST /api/datasources`` if
   missing, else ``PUT /api/datasources/uid/{uid}`` (the real secret from the config goes
   into ``secureJsonData`` here; it is never written to a file);
4. every dashboard: ``POST /api/dashboards/db`` with ``folderUid`` and ``overwrite: true``.

Authentication: a service-account token (``Authorization: Bearer``), role Editor or
better, plus data-source write permission (Admin) for step 3. A data source or dashboard
provisioned from files is read-only through the API: use export or push for a Grafana,
not both.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from grafana_client import GrafanaApi
from grafana_client.client import GrafanaClientError

from gateway.grafana.export import SiteExport

log = logging.getLogger(__name__)


class PushError(RuntimeError):
    """Grafana refused a step; the message names the step and Grafana's answer."""


@dataclass
class PushReport:
    folder: str = ""  # created | updated | unchanged
    datasource: str = ""  # created | updated
    dashboards: dict[str, str] = field(default_factory=dict)  # uid -> Grafana's status ("success")

    def lines(self) -> list[str]:
        out = [f"folder: {self.folder}", f"datasource: {self.datasource}"]
        out += [f"dashboard {uid}: {status}" for uid, status in self.dashboards.items()]
        return out


def _missing(exc: GrafanaClientError) -> bool:
    return exc.status_code == 404


def _fail(step: str, exc: Exception) -> PushError:
    detail = getattr(exc, "response", None) or exc
    return PushError(f"grafana push: {step}: {getattr(exc, 'status_code', '')} {detail}".replace("  ", " "))


def connect(url: str, token: str, *, timeout: float = 10.0) -> GrafanaApi:
    return GrafanaApi.from_url(url, credential=token, timeout=timeout)


def push_site(site: SiteExport, api: GrafanaApi) -> PushReport:
    report = PushReport()
    try:
        api.health.check()
    except Exception as exc:
        raise _fail("health check", exc) from exc
    _push_folder(site, api, report)
    _push_datasource(site, api, report)
    for d in site.dashboards:
        body: dict[str, Any] = {
            "dashboard": {**d, "id": None},
            "folderUid": site.folder_uid,
            "overwrite": True,
            "message": "hazardgw grafana push",
        }
        try:
            answer = api.dashboard.update_dashboard(body)
        except Exception as exc:
            raise _fail(f"dashboard {d['uid']}", exc) from exc
        report.dashboards[d["uid"]] = str(answer.get("status", "ok")) if isinstance(answer, dict) else "ok"
    return report


def _push_folder(site: SiteExport, api: GrafanaApi, report: PushReport) -> None:
    uid, title = site.folder_uid, site.folder_title
    try:
        existing = api.folder.get_folder(uid)
    except GrafanaClientError as exc:
        if not _missing(exc):
            raise _fail("folder lookup", exc) from exc
        existing = None
    try:
        if existing is None:
            api.folder.create_folder(title, uid=uid)
            report.folder = "created"
        elif existing.get("title") != title:
            api.folder.update_folder(uid, title=title, overwrite=True)
            report.folder = "updated"
        else:
            report.folder = "unchanged"
    except GrafanaClientError as exc:
        raise _fail("folder", exc) from exc


def _push_datasource(site: SiteExport, api: GrafanaApi, report: PushReport) -> None:
    payload = site.datasource.api_payload()
    uid = payload["uid"]
    try:
        api.datasource.get_datasource_by_uid(uid)
        exists = True
    except GrafanaClientError as exc:
        if not _missing(exc):
            raise _fail("datasource lookup", exc) from exc
        exists = False
    try:
        if exists:
            api.datasource.update_datasource_by_uid(uid, payload)
            report.datasource = "updated"
        else:
            api.datasource.create_datasource(payload)
            report.datasource = "created"
    except GrafanaClientError as exc:
        hint = ""
        if exc.status_code == 409:
            hint = f" (a data source named {payload['name']!r} with another uid exists: rename or delete it)"
        elif exc.status_code == 403:
            hint = " (read-only: provisioned from a file? use export or push, not both; or the token lacks Admin)"
        raise PushError(f"grafana push: datasource: {exc.status_code} {exc.response}{hint}") from exc
