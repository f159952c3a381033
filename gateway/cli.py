"""``hazardgw`` command line (docs/cli.md)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import logging
import os
import signal
import sys
from collections.abc import Collection, Sequence
from pathlib import Path

from gateway.config import Config
from gateway.core import logsafe
from gateway.reports.cli import add_parser as add_report_parser
from gateway.validate import validate_file

EXIT_OK = 0
EXIT_CONFIG = 2
# the scenarios live in devkit (devkit/simulator/scenarios.py), which the parser must not need
SCENARIO_HELP = "a scenario of the plant simulator, e.g. chlorine-leak (an unknown name lists them all)"


LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO), format=LOG_FORMAT)
    # control characters in logged text (tag names, topics, paths from outside) are escaped:
    # one record is one line, nobody can forge one (gateway/core/logsafe.py)
    logsafe.install(logging.getLogger().handlers, LOG_FORMAT)
    # Protocol libraries' own records (pymodbus' raw frames) are routed by their source
    # type's adapter: at debug level only, on one line (adapters/modbus/logs.py).


def install_stop_signals(stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)


def cmd_check(args: argparse.Namespace) -> int:
    """Everything ``run`` and a reload decide on (gateway/validate.py), printed."""
    result = validate_file(args.config, offline_secrets=args.offline_secrets)
    for p in result.infos:
        print(p.message)
    for w in result.format_warnings():
        print(f"warning: {w}", file=sys.stderr)
    errors = result.format_errors()
    for e in errors:
        print(f"error: {e}", file=sys.stderr)
    if result.config is None:
        print(f"{args.config}: {len(errors)} error(s)", file=sys.stderr)
        return EXIT_CONFIG
    cfg = result.config
    print(
        f"{args.config}: OK: site {cfg.site.code} ({cfg.site.name}), {len(cfg.hazard_sources)} hazard sources, "
        f"{len(cfg.sources)} sources, {len(cfg.tags)} tags"
    )
    return EXIT_OK


def _load_or_exit(path: str) -> Config:
    result = validate_file(path)
    if result.config is None:
        for e in result.format_errors():
            print(f"error: {e}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG)
    return result.config


def cmd_run(args: argparse.Namespace) -> int:
    from gateway.runner import run_gateway

    # Defence in depth: every file under store.path is created private by gateway/core/files.py
    # anyway; a umask of 077 also covers files created by libraries and anything forgotten.
    os.umask(0o077)
    return asyncio.run(run_gateway(Path(args.config)))


NO_DEVKIT = (
    "error: `hazardgw {cmd}` needs the development kit (the devkit package), which this install of the "
    "gateway does not have; run it from a source checkout (pip install -e .)"
)


def _devkit_missing(e: ModuleNotFoundError, cmd: str) -> int:
    """Exit code for a command that needs devkit when it is not installed (anything else missing is a bug: raise)."""
    if e.name is None or e.name.split(".")[0] != "devkit":
        raise e
    print(NO_DEVKIT.format(cmd=cmd), file=sys.stderr)
    return EXIT_CONFIG


def _check_scenario(name: str, known: Collection[str]) -> bool:
    if name in known:
        return True
    print(f"error: unknown scenario {name!r}; known: {', '.join(sorted(known))}", file=sys.stderr)
    return False


def cmd_simulate(args: argparse.Namespace) -> int:
    # devkit is dev-only: imported here, never at module level (tests/test_layering.py)
    try:
        from devkit.simulator.plant import run_plant
        from devkit.simulator.scenarios import SCENARIOS
    except ModuleNotFoundError as e:
        return _devkit_missing(e, "simulate")
    if not _check_scenario(args.scenario, SCENARIOS):
        return EXIT_CONFIG
    config = _load_or_exit(args.config)

    async def main() -> None:
        stop = asyncio.Event()
        install_stop_signals(stop)
        await run_plant(config, args.scenario, stop, duration=args.duration, seed=args.seed, speed=args.speed)

    asyncio.run(main())
    return EXIT_OK


def cmd_demo(args: argparse.Namespace) -> int:
    try:
        from devkit.demo import run_demo
        from devkit.simulator.scenarios import SCENARIOS
    except ModuleNotFoundError as e:
        return _devkit_missing(e, "demo")
    if not _check_scenario(args.scenario, SCENARIOS):
        return EXIT_CONFIG
    return asyncio.run(run_demo(Path(args.config), duration=args.duration, scenario=args.scenario,
                                workdir=Path(args.workdir) if args.workdir else None, speed=args.speed))


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hazardgw", description="Major hazard source monitoring gateway")
    p.add_argument("--log-level", default="info", help="debug, info, warning, error")
    sub = p.add_subparsers(dest="cmd", required=True)

    r = sub.add_parser("run", help="run the gateway (daemon)")
    r.add_argument("-c", "--config", required=True)
    r.set_defaults(func=cmd_run)

    c = sub.add_parser("check", help="validate a config; exit 2 on errors")
    c.add_argument("-c", "--config", required=True)
    c.add_argument("--offline-secrets", action="store_true",
                   help="unset ${ENV} secrets are warnings (checked with placeholders), not errors")
    c.set_defaults(func=cmd_check)

    s = sub.add_parser("simulate", help="a plant: Modbus servers and MQTT publishers for the config's points "
                       "(needs the devkit package of a source checkout)")
    s.add_argument("-c", "--config", required=True)
    s.add_argument("--scenario", default="normal", help=SCENARIO_HELP)
    s.add_argument("--duration", type=float, default=None, help="seconds; default: until Ctrl-C")
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--speed", type=float, default=1.0, help="play the scenario's clock this many times faster")
    s.set_defaults(func=cmd_simulate)

    d = sub.add_parser("demo", help="Mosquitto + InfluxDB + simulator + gateway in one, until Ctrl-C "
                       "(needs the devkit package of a source checkout)")
    d.add_argument("-c", "--config", default="config/demo-site.yaml")
    d.add_argument("--duration", type=float, default=None, help="seconds; default: until Ctrl-C")
    d.add_argument("--scenario", default="chlorine-leak", help=SCENARIO_HELP)
    d.add_argument("--workdir", default=None, help="keep server data here instead of a temp dir")
    d.add_argument("--speed", type=float, default=1.0, help="play the scenario's clock this many times faster")
    d.set_defaults(func=cmd_demo)

    from gateway.api import cli as api_cli
    from gateway.grafana.cli import add_parser as add_grafana_parser

    add_grafana_parser(sub)  # hazardgw grafana export|push
    from gateway.taglist.cli import add_parser as add_tags_parser

    add_tags_parser(sub)  # hazardgw tags export|import|template
    add_report_parser(sub)  # hazardgw report alarms|...
    api_cli.add_parser(sub)  # hazardgw tls self-signed, hazardgw token new
    add_source_commands(sub)
    return p


def add_source_commands(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Commands the source types bring (their spec's ``commands`` module): each may add a group
    of its own and a ``hazardgw probe <type>`` subcommand."""
    from adapters.registry import SOURCE_SPECS

    modules = [importlib.import_module(spec.commands) for spec in SOURCE_SPECS if spec.commands]
    if not modules:
        return
    probe = sub.add_parser("probe", help="read a device or broker once, for commissioning (read-only)")
    probe_sub = probe.add_subparsers(dest="probe_type", required=True)
    for module in modules:
        module.add_commands(sub, probe_sub)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
