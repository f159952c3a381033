"""The InfluxDB data source (InfluxQL mode) for a site, from the config's ``influx`` section.

InfluxQL works on all three server generations: 1.x natively, 2.x through a DBRP mapping
(database = bucket, see deploy/README.md) and 3.x through its v1 query API. Credentials:

* ``api: v1`` with ``username``/``password``: Grafana's InfluxQL user and password;
* ``api: v2`` with ``token``: an ``Authorization: Token <token>`` header (2.x, 3.x, and 1.8
  with ``username:password`` as the token).

Secrets never go into exported files. The provisioning file references them as
``$__env{NAME}``, which Grafana expands from its own environment when it reads the file;
``NAME`` is the variable the site config itself uses (``token: ${INFLUX_TOKEN}`` gives
``INFLUX_TOKEN``), else ``HAZARDGW_INFLUX_TOKEN`` / ``HAZARDGW_INFLUX_PASSWORD``. Only
``push`` sends the real secret, over Grafana's HTTP API.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from gateway.config import Config
from gateway.grafana import uids

DEFAULT_TOKEN_ENV = "HAZARDGW_INFLUX_TOKEN"
DEFAULT_PASSWORD_ENV = "HAZARDGW_INFLUX_PASSWORD"
_ENV_REF = re.compile(r"^\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-[^}]*)?\}$")


def secret_env_names(config_path: str | Path | None) -> dict[str, str]:
    """``{"token": NAME, "password": NAME}`` from the raw config's ``influx`` section."""
    names = {"token": DEFAULT_TOKEN_ENV, "password": DEFAULT_PASSWORD_ENV}
    if config_path is None:
        return names
    try:
        raw = yaml.safe_load(Path(config_path).read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return names
    influx = raw.get("influx") if isinstance(raw, dict) else None
    if isinstance(influx, dict):
        for key in names:
            m = _ENV_REF.match(str(influx.get(key) or "").strip())
            if m:
                names[key] = m.group(1)
    return names


@dataclass(frozen=True)
class DataSource:
    name: str
    uid: str
    url: str
    database: str
    api: str
    username: str | None
    token: str | None  # real secrets, only for push
    password: str | None
    env: dict[str, str]
    verify_ssl: bool = True

    @classmethod
    def from_config(cls, config: Config, *, config_path: str | Path | None = None,
                    url: str | None = None) -> DataSource:
        if config.influx is None:
            raise ValueError("the config has no influx section: the dashboards need InfluxDB")
        ix = config.influx
        return cls(
            name=f"hazardgw {config.site.code}",
            uid=uids.datasource_uid(config.site.code),
            url=(url or ix.url).rstrip("/"),
            database=ix.bucket,
            api=ix.api,
            username=ix.username,
            token=ix.token.get_secret_value() if ix.token is not None else None,
            password=ix.password.get_secret_value() if ix.password is not None else None,
            env=secret_env_names(config_path),
            verify_ssl=ix.verify_ssl,
        )

    def _common(self) -> dict[str, Any]:
        json_data: dict[str, Any] = {
            "version": "InfluxQL",
            "dbName": self.database,
            "httpMode": "POST",
            "timeInterval": "1s",
        }
        if not self.verify_ssl:
            json_data["tlsSkipVerify"] = True
        body: dict[str, Any] = {
            "name": self.name,
            "uid": self.uid,
            "type": "influxdb",
            "access": "proxy",
            "url": self.url,
            "isDefault": False,
            "jsonData": json_data,
        }
        if self.use_token:
            json_data["httpHeaderName1"] = "Authorization"
        elif self.username:
            body["user"] = self.username
        return body

    @property
    def use_token(self) -> bool:
        return self.api == "v2" and (self.token is not None or not self.username)

    def _secure(self, token: str | None, password: str | None) -> dict[str, str]:
        if self.use_token and token is not None:
            return {"httpHeaderValue1": f"Token {token}"}
        if not self.use_token and self.username and password is not None:
            return {"password": password}
        return {}

    def provisioning(self) -> dict[str, Any]:
        """The provisioning file (``apiVersion: 1``), secrets as ``$__env{NAME}``."""
        body = self._common()
        body["editable"] = False
        secure = self._secure(
            f"$__env{{{self.env['token']}}}" if self.token is not None or self.use_token else None,
            f"$__env{{{self.env['password']}}}" if self.password is not None else None,
        )
        if secure:
            body["secureJsonData"] = secure
        return {"apiVersion": 1, "datasources": [body]}

    def api_payload(self) -> dict[str, Any]:
        """The body for ``POST /api/datasources`` / ``PUT /api/datasources/uid/{uid}`` (real secrets)."""
        body = self._common()
        secure = self._secure(self.token, self.password)
        if secure:
            body["secureJsonData"] = secure
        return body
