"""`hazardgw grafana push` against a local HTTP server that plays Grafana's API and records requests."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from test_grafana_support import DEMO, demo_config

from devkit.services import free_port
from gateway.cli import main
from gateway.grafana import uids

TOKEN = "glsa_test_token_0123456789"
SECRET = "influx-s3cr3t-for-push"
BODY = web.RequestKey("body", object)


@dataclass
class FakeGrafana:
    """Just enough of Grafana's HTTP API for push: health, folders, data sources, dashboards."""

    token: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    folders: dict[str, dict[str, Any]] = field(default_factory=dict)
    datasources: dict[str, dict[str, Any]] = field(default_factory=dict)
    dashboards: dict[str, dict[str, Any]] = field(default_factory=dict)
    url: str = ""

    @web.middleware
    async def record(self, request: web.Request, handler: Any) -> web.StreamResponse:
        body = await request.json() if request.can_read_body else None
        self.requests.append({"method": request.method, "path": request.path,
                              "auth": request.headers.get("Authorization"), "json": body})
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"message": "invalid API key"}, status=401)
        request[BODY] = body
        response: web.StreamResponse = await handler(request)
        return response

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self.record])
        app.router.add_get("/api/health", self.health)
        app.router.add_get("/api/folders/{uid}", self.get_folder)
        app.router.add_post("/api/folders", self.create_folder)
        app.router.add_put("/api/folders/{uid}", self.update_folder)
        app.router.add_get("/api/datasources/uid/{uid}", self.get_datasource)
        app.router.add_post("/api/datasources", self.create_datasource)
        app.router.add_put("/api/datasources/uid/{uid}", self.update_datasource)
        app.router.add_post("/api/dashboards/db", self.save_dashboard)
        return app

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"database": "ok", "version": "11.6.0"})

    async def get_folder(self, request: web.Request) -> web.Response:
        f = self.folders.get(request.match_info["uid"])
        return web.json_response(f) if f else web.json_response({"message": "folder not found"}, status=404)

    async def create_folder(self, request: web.Request) -> web.Response:
        body = request[BODY]
        if body["uid"] in self.folders:
            return web.json_response({"message": "a folder with the same uid already exists"}, status=409)
        self.folders[body["uid"]] = {"uid": body["uid"], "title": body["title"], "version": 1}
        return web.json_response(self.folders[body["uid"]])

    async def update_folder(self, request: web.Request) -> web.Response:
        f = self.folders[request.match_info["uid"]]
        f.update(title=request[BODY]["title"], version=f["version"] + 1)
        return web.json_response(f)

    async def get_datasource(self, request: web.Request) -> web.Response:
        ds = self.datasources.get(request.match_info["uid"])
        return web.json_response(ds) if ds else web.json_response({"message": "Data source not found"}, status=404)

    async def create_datasource(self, request: web.Request) -> web.Response:
        body = request[BODY]
        if any(d["name"] == body["name"] for d in self.datasources.values()):
            return web.json_response({"message": "data source with the same name already exists"}, status=409)
        self.datasources[body["uid"]] = {**body, "id": len(self.datasources) + 1, "version": 1}
        return web.json_response({"datasource": self.datasources[body["uid"]], "message": "Datasource added"})

    async def update_datasource(self, request: web.Request) -> web.Response:
        uid = request.match_info["uid"]
        old = self.datasources[uid]
        self.datasources[uid] = {**request[BODY], "id": old["id"], "version": old["version"] + 1}
        return web.json_response({"datasource": self.datasources[uid], "message": "Datasource updated"})

    async def save_dashboard(self, request: web.Request) -> web.Response:
        body = request[BODY]
        dash = body["dashboard"]
        folder = body.get("folderUid")
        if folder not in self.folders:
            return web.json_response({"message": "folder not found"}, status=400)
        old = self.dashboards.get(dash["uid"])
        if old is not None and not body.get("overwrite"):
            return web.json_response({"status": "version-mismatch"}, status=412)
        version = old["version"] + 1 if old else 1
        self.dashboards[dash["uid"]] = {"dashboard": dash, "folderUid": folder, "version": version}
        return web.json_response({"status": "success", "uid": dash["uid"], "version": version})

    def calls(self, start: int = 0) -> list[tuple[str, str]]:
        return [(r["method"], r["path"]) for r in self.requests[start:]]


@pytest.fixture
async def grafana() -> AsyncIterator[FakeGrafana]:
    fake = FakeGrafana(TOKEN)
    runner = web.AppRunner(fake.app())
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    fake.url = f"http://127.0.0.1:{port}"
    try:
        yield fake
    finally:
        await runner.cleanup()


@pytest.fixture
def site_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The demo site with an InfluxDB 2 token taken from the environment."""
    text = DEMO.read_text(encoding="utf-8")
    start, end = text.index("\ninflux:"), text.index("\napi:")
    influx = ("\ninflux:\n  url: http://127.0.0.1:8086\n  api: v2\n  org: demo\n  bucket: hazard\n"
              "  token: ${PUSH_INFLUX_TOKEN}\n")
    path = tmp_path / "site.yaml"
    path.write_text(text[:start] + influx + text[end:], encoding="utf-8")
    monkeypatch.setenv("PUSH_INFLUX_TOKEN", SECRET)
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    return path


def _replace_in(path: Path, old: str, new: str) -> None:
    path.write_text(path.read_text(encoding="utf-8").replace(old, new), encoding="utf-8")


async def _push(*argv: str) -> int:
    return await asyncio.to_thread(main, ["grafana", "push", *argv])


async def test_push_creates_then_updates_idempotently(
    grafana: FakeGrafana, site_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = demo_config()
    folder_uid = uids.folder_uid(config.site.code)
    ds_uid = uids.datasource_uid(config.site.code)
    out = tmp_path / "prov"

    assert await _push("-c", str(site_file), "--url", grafana.url, "--token", TOKEN, "--out", str(out)) == 0
    assert "folder: created" in capsys.readouterr().out
    assert all(r["auth"] == f"Bearer {TOKEN}" for r in grafana.requests)
    calls = grafana.calls()
    assert calls[:5] == [
        ("GET", "/api/health"),
        ("GET", f"/api/folders/{folder_uid}"),
        ("POST", "/api/folders"),
        ("GET", f"/api/datasources/uid/{ds_uid}"),
        ("POST", "/api/datasources"),
    ]
    assert calls[5:] == [("POST", "/api/dashboards/db")] * 4
    assert grafana.folders[folder_uid]["title"] == f"{config.site.name} ({config.site.code})"

    ds = grafana.datasources[ds_uid]
    assert ds["type"] == "influxdb" and ds["access"] == "proxy" and ds["jsonData"]["version"] == "InfluxQL"
    assert ds["jsonData"]["dbName"] == "hazard" and ds["jsonData"]["httpHeaderName1"] == "Authorization"
    assert ds["secureJsonData"] == {"httpHeaderValue1": f"Token {SECRET}"}  # the real secret, over the API only

    # the dashboards Grafana got are exactly the exported files, in the site folder, by uid
    exported = {p.stem: json.loads(p.read_text()) for p in out.rglob("hgw-*.json")}
    assert set(grafana.dashboards) == set(exported) and len(exported) == 4
    for uid, saved in grafana.dashboards.items():
        assert saved["folderUid"] == folder_uid and saved["version"] == 1
        assert saved["dashboard"] == {**exported[uid], "id": None}
    for f in out.rglob("*"):
        if f.is_file():
            assert SECRET not in f.read_text(encoding="utf-8")
    first = len(grafana.requests)

    # second push: nothing is created again; the data source is updated by uid, dashboards overwritten
    assert await _push("-c", str(site_file), "--url", grafana.url, "--token", TOKEN) == 0
    printed = capsys.readouterr().out
    assert "folder: unchanged" in printed and "datasource: updated" in printed
    assert grafana.calls(first) == [
        ("GET", "/api/health"),
        ("GET", f"/api/folders/{folder_uid}"),
        ("GET", f"/api/datasources/uid/{ds_uid}"),
        ("PUT", f"/api/datasources/uid/{ds_uid}"),
        *[("POST", "/api/dashboards/db")] * 4,
    ]
    assert all(r["json"]["overwrite"] is True for r in grafana.requests if r["path"] == "/api/dashboards/db")
    assert len(grafana.folders) == 1 and len(grafana.datasources) == 1 and len(grafana.dashboards) == 4
    assert {d["version"] for d in grafana.dashboards.values()} == {2}
    assert grafana.datasources[ds_uid]["version"] == 2

    # a renamed site renames its folder in place (same uid)
    _replace_in(site_file, f'name: "{config.site.name}"', 'name: "Renamed Chemical Co."')
    mark = len(grafana.requests)
    assert await _push("-c", str(site_file), "--url", grafana.url, "--token", TOKEN) == 0
    assert ("PUT", f"/api/folders/{folder_uid}") in grafana.calls(mark)
    assert grafana.folders[folder_uid]["title"].startswith("Renamed Chemical Co.")
    assert len(grafana.folders) == 1 and len(grafana.dashboards) == 4


async def test_push_reports_a_wrong_token(
    grafana: FakeGrafana, site_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert await _push("-c", str(site_file), "--url", grafana.url, "--token", "wrong") == 1
    err = capsys.readouterr().err
    assert "health check" in err and "401" in err
    assert grafana.calls() == [("GET", "/api/health")]
    assert not grafana.dashboards


async def test_push_names_a_datasource_name_clash(
    grafana: FakeGrafana, site_file: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = demo_config()
    grafana.datasources["manual"] = {"uid": "manual", "name": f"hazardgw {config.site.code}", "id": 9, "version": 1}
    assert await _push("-c", str(site_file), "--url", grafana.url, "--token", TOKEN) == 1
    err = capsys.readouterr().err
    assert "409" in err and "another uid" in err
    assert not grafana.dashboards


def test_push_needs_a_token(
    site_file: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("GRAFANA_TOKEN", raising=False)
    assert main(["grafana", "push", "-c", str(site_file), "--url", "http://127.0.0.1:9"]) == 2
    assert "--token" in capsys.readouterr().err
