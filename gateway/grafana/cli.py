"""``hazardgw grafana export|push`` (wired into :mod:`gateway.cli` by ``add_parser``)."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

EXIT_OK = 0
EXIT_CONFIG = 2
EXIT_PUSH = 1


def add_parser(sub: Any) -> None:
    """Add the ``grafana`` subcommand to ``hazardgw``'s subparsers."""
    g = sub.add_parser("grafana", help="Grafana dashboards as code: export provisioning files or push via the API")
    gsub = g.add_subparsers(dest="grafana_cmd", required=True)

    e = gsub.add_parser("export", help="write data source + dashboard provisioning files for a site")
    e.add_argument("-c", "--config", required=True)
    e.add_argument("--out", required=True, help="directory (Grafana's provisioning layout: datasources/, dashboards/)")
    _common(e)
    e.add_argument(
        "--provisioning-root",
        default=None,
        help="where Grafana sees --out (dashboard provider path); default /etc/grafana/provisioning",
    )
    e.set_defaults(func=cmd_export)

    p = gsub.add_parser("push", help="upload data source and dashboards to a running Grafana (idempotent, by uid)")
    p.add_argument("-c", "--config", required=True)
    p.add_argument("--url", required=True, help="Grafana base URL, e.g. http://127.0.0.1:3000")
    p.add_argument(
        "--token",
        default=os.environ.get("GRAFANA_TOKEN"),
        help="service account token (default: $GRAFANA_TOKEN; keeps it out of the process list)",
    )
    p.add_argument("--out", default=None, help="also write the provisioning files here")
    p.add_argument("--timeout", type=float, default=10.0, help="seconds per HTTP request")
    _common(p)
    p.set_defaults(func=cmd_push)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--datasource-url",
        default=None,
        help="InfluxDB URL as Grafana reaches it (default: influx.url of the config)",
    )


def _load(path: str) -> Any:
    from gateway.validate import validate_file

    result = validate_file(path)
    if result.config is None:
        for err in result.format_errors():
            print(f"error: {err}", file=sys.stderr)
        return None
    if result.config.influx is None:
        print(f"error: {path}: no influx section: the dashboards read InfluxDB", file=sys.stderr)
        return None
    return result.config


def cmd_export(args: argparse.Namespace) -> int:
    from gateway.grafana.export import DEFAULT_PROVISIONING_ROOT, export

    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    result = export(
        config,
        args.out,
        config_path=args.config,
        datasource_url=args.datasource_url,
        provisioning_root=args.provisioning_root or DEFAULT_PROVISIONING_ROOT,
    )
    print(f"datasource {result.site.datasource.uid}: {result.datasource_file}")
    print(f"dashboard provider (folder {result.site.folder_title!r}): {result.provider_file}")
    for d, path in zip(result.site.dashboards, result.dashboard_files, strict=True):
        print(f"dashboard {d['uid']} {d['title']!r}: {path}")
    for path in result.removed:
        print(f"removed stale dashboard file {path}")
    print(f"{len(result.written)} file(s) written, {len(result.dashboard_files) + 2 - len(result.written)} unchanged")
    return EXIT_OK


def cmd_push(args: argparse.Namespace) -> int:
    from gateway.grafana.export import build_site, write_site
    from gateway.grafana.push import PushError, connect, push_site

    if not args.token:
        print("error: --token (or GRAFANA_TOKEN) is required", file=sys.stderr)
        return EXIT_CONFIG
    config = _load(args.config)
    if config is None:
        return EXIT_CONFIG
    site = build_site(config, config_path=args.config, datasource_url=args.datasource_url)
    if args.out:
        write_site(site, args.out)
    try:
        report = push_site(site, connect(args.url, args.token, timeout=args.timeout))
    except PushError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_PUSH
    for line in report.lines():
        print(line)
    return EXIT_OK
