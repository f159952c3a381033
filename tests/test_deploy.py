"""deploy/: the systemd unit (systemd-analyze, offline), Dockerfile, docker-compose stack,
Mosquitto config and the InfluxDB init script. No Docker engine here: the compose and
Dockerfile checks read the files; everything that can run locally does (systemd-analyze,
mosquitto with the stack's config, the init script with a stand-in ``influx``, the
image's HEALTHCHECK command against a local /api/health, the export with the stack's
arguments)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from devkit.services import find_binary, free_port
from gateway.grafana.export import export
from gateway.validate import validate_file

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
UNIT = DEPLOY / "hazardgw.service"
SYSTEMD_ANALYZE = "/usr/bin/systemd-analyze"


# --------------------------------------------------------------------------- systemd


def unit_entries(text: str) -> dict[str, list[str]]:
    """Key -> values of a unit file (keys may repeat; comments and sections dropped)."""
    out: dict[str, list[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


@pytest.fixture(scope="module")
def systemd_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An offline root for ``systemd-analyze --root``: the host's unit library, our unit, and a
    stand-in executable at the unit's ExecStart path (verify checks that it exists)."""
    root = tmp_path_factory.mktemp("sysroot")
    shutil.copytree("/usr/lib/systemd/system", root / "usr/lib/systemd/system", symlinks=True)
    (root / "etc/systemd/system").mkdir(parents=True)
    shutil.copy(UNIT, root / "etc/systemd/system/hazardgw.service")
    for exe in {shlex.split(v)[0] for k in ("ExecStart", "ExecStartPre") for v in unit_entries(UNIT.read_text())[k]}:
        stub = root / exe.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        stub.write_text("#!/bin/sh\nexit 0\n")
        stub.chmod(0o755)
    return root


def _analyze(*args: str) -> subprocess.CompletedProcess[str]:
    assert os.access(SYSTEMD_ANALYZE, os.X_OK), f"{SYSTEMD_ANALYZE} is missing (Debian package systemd)"
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "notice", "SYSTEMD_COLORS": "0", "SYSTEMD_PAGER": ""}
    return subprocess.run([SYSTEMD_ANALYZE, *args], capture_output=True, text=True, env=env, timeout=60, check=False)


def test_systemd_analyze_verify_is_clean(systemd_root: Path) -> None:
    r = _analyze("verify", f"--root={systemd_root}", "--man=no", "hazardgw.service")
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "" and r.stderr.strip() == "", r.stdout + r.stderr


def test_systemd_analyze_verify_catches_mistakes(systemd_root: Path, tmp_path: Path) -> None:
    """Negative control: the same invocation reports a typo and a missing executable."""
    broken = systemd_root / "etc/systemd/system/hazardgw-broken.service"
    broken.write_text(UNIT.read_text().replace("ProtectSystem=strict", "ProtectSytem=strict")
                      .replace("/opt/hazardgw/current/hazardgw run", "/opt/nowhere/hazardgw run"))
    try:
        r = _analyze("verify", f"--root={systemd_root}", "--man=no", "hazardgw-broken.service")
    finally:
        broken.unlink()
    assert "Unknown key 'ProtectSytem'" in r.stderr, r.stderr
    assert "/opt/nowhere/hazardgw is not executable" in r.stderr, r.stderr
    assert r.returncode != 0


def test_systemd_security_exposure_is_low(systemd_root: Path) -> None:
    r = _analyze("security", "--offline=yes", f"--root={systemd_root}", "--threshold=25", "--no-pager",
                 "hazardgw.service")
    m = re.search(r"Overall exposure level for hazardgw\.service: (\d+\.\d+)", r.stdout + r.stderr)
    assert m, r.stdout + r.stderr
    assert float(m.group(1)) <= 2.5, r.stdout
    assert r.returncode == 0, r.stdout + r.stderr


def test_unit_hardening_and_service_keys() -> None:
    e = unit_entries(UNIT.read_text())

    def one(key: str) -> str:
        assert len(e.get(key, [])) == 1, f"{key}: {e.get(key)}"
        return e[key][0]

    assert one("Type") == "notify" and one("WatchdogSec") == "30s" and one("NotifyAccess") == "main"
    assert one("Restart") == "always" and one("StartLimitIntervalSec") == "0"
    # a static user made by the installers (packaging/install.sh, the .deb): no DynamicUser=
    assert "DynamicUser" not in e and one("User") == "hazardgw" and one("Group") == "hazardgw"
    # store.path is private to the service user (issue 21)
    assert one("StateDirectoryMode") == "0700" and one("UMask") == "0077"
    assert one("SupplementaryGroups") == "dialout"
    assert one("StateDirectory") == "hazardgw"
    for key, value in {"ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
                       "NoNewPrivileges": "yes", "RestrictSUIDSGID": "yes", "ProtectKernelTunables": "yes",
                       "ProtectKernelModules": "yes", "ProtectControlGroups": "yes", "LockPersonality": "yes",
                       "RestrictNamespaces": "yes", "SystemCallArchitectures": "native"}.items():
        assert one(key) == value, key
    assert one("CapabilityBoundingSet") == "" and one("AmbientCapabilities") == ""
    assert one("RestrictAddressFamilies").split() == ["AF_INET", "AF_INET6", "AF_UNIX"]
    assert shlex.split(one("ExecStart")) == ["/opt/hazardgw/current/hazardgw", "run", "-c", "/etc/hazardgw/site.yaml"]
    assert shlex.split(one("ExecStartPre")) == ["/opt/hazardgw/current/hazardgw", "check", "-c",
                                                "/etc/hazardgw/site.yaml"]
    assert e["DeviceAllow"] == ["char-ttyS rw", "char-ttyUSB rw", "char-ttyACM rw"]


# --------------------------------------------------------------------------- docker compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text())
    return data


def _mounts(service: dict[str, Any]) -> dict[str, str]:
    """container path -> source (host path or volume name) of a service's short-syntax volumes."""
    out = {}
    for v in service.get("volumes", []):
        parts = v.split(":")
        source = parts[0] if not v.startswith("${") else v[: v.index("}") + 1]
        target = v[len(source) + 1:].split(":")[0]
        out[target] = source
    return out


def _option(cmd: list[str], name: str) -> str:
    return cmd[cmd.index(name) + 1]


def test_compose_stack_services_and_files(compose: dict[str, Any]) -> None:
    svc = compose["services"]
    assert {"mosquitto", "influxdb", "grafana", "hazardgw", "grafana-export"} <= set(svc)
    assert svc["influxdb"]["image"].startswith("influxdb:2")
    assert svc["mosquitto"]["image"].startswith("eclipse-mosquitto:2")
    assert svc["grafana"]["image"].startswith("grafana/grafana:11")
    for name in ("hazardgw", "grafana-export"):
        build = svc[name]["build"]
        assert (DEPLOY / build["context"] / build["dockerfile"]).resolve() == DEPLOY / "Dockerfile"
        assert svc[name]["read_only"] is True and svc[name]["cap_drop"] == ["ALL"]
    # every host path mounted exists, relative to deploy/
    for name, s in svc.items():
        for target, source in _mounts(s).items():
            if source.startswith("${HAZARDGW_CONFIG:-"):
                source = source.removeprefix("${HAZARDGW_CONFIG:-").rstrip("}")
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source} -> {target}"
            else:
                assert source in compose["volumes"], f"{name}: undeclared volume {source}"
    assert _mounts(svc["mosquitto"])["/mosquitto/config/mosquitto.conf"] == "./mosquitto.conf"
    assert _mounts(svc["influxdb"])["/docker-entrypoint-initdb.d"] == "./influxdb-init"
    # published ports stay on loopback
    for s in svc.values():
        for port in s.get("ports", []):
            assert port.startswith("127.0.0.1:"), port
    # start order
    assert svc["grafana"]["depends_on"]["grafana-export"]["condition"] == "service_completed_successfully"
    assert svc["hazardgw"]["depends_on"]["influxdb"]["condition"] == "service_healthy"
    assert svc["hazardgw"]["command"] == ["run", "-c", "/etc/hazardgw/site.yaml"]


def test_compose_grafana_reads_what_the_export_writes(compose: dict[str, Any], tmp_path: Path) -> None:
    svc = compose["services"]
    cmd = svc["grafana-export"]["command"]
    assert cmd[:2] == ["grafana", "export"]
    out_in_container = _option(cmd, "--out")
    prov_root = _option(cmd, "--provisioning-root")
    export_mounts, grafana_mounts = _mounts(svc["grafana-export"]), _mounts(svc["grafana"])
    volume = export_mounts[out_in_container]
    assert grafana_mounts[prov_root] == volume  # same volume: export's --out is Grafana's provisioning dir
    assert any(v.startswith(f"{volume}:{prov_root}:ro") for v in svc["grafana"]["volumes"])
    # the Dockerfile creates --out owned by the image's user (a new named volume copies it)
    assert out_in_container in (DEPLOY / "Dockerfile").read_text()

    # run the export with the stack's arguments, --out mapped to a temp dir
    env = {"INFLUX_TOKEN": "compose-token"}
    result = validate_file(DEPLOY / "compose-site.yaml", env=env)
    assert result.config is not None, result.format_errors()
    exported = export(result.config, tmp_path, config_path=DEPLOY / "compose-site.yaml",
                      datasource_url=_option(cmd, "--datasource-url"), provisioning_root=prov_root)
    provider = yaml.safe_load(exported.provider_file.read_text())["providers"][0]
    dash_path = Path(provider["options"]["path"])
    assert dash_path.is_relative_to(prov_root)
    assert sorted((tmp_path / dash_path.relative_to(prov_root)).glob("*.json")) == sorted(exported.dashboard_files)
    assert exported.datasource_file.parent == tmp_path / "datasources"
    assert exported.provider_file.parent == tmp_path / "dashboards"
    (ds,) = yaml.safe_load(exported.datasource_file.read_text())["datasources"]
    assert ds["url"] == "http://influxdb:8086"
    # Grafana expands $__env{INFLUX_TOKEN}: the stack must give Grafana that variable
    assert ds["secureJsonData"]["httpHeaderValue1"] == "Token $__env{INFLUX_TOKEN}"
    assert "INFLUX_TOKEN" in svc["grafana"]["environment"]
    assert "compose-token" not in exported.datasource_file.read_text()


def test_compose_site_matches_the_influxdb_setup(compose: dict[str, Any]) -> None:
    result = validate_file(DEPLOY / "compose-site.yaml", env={"INFLUX_TOKEN": "t"})
    assert result.config is not None and not result.errors, result.format_errors()
    cfg = result.config
    assert cfg.influx is not None and cfg.influx.api == "v2"
    env = compose["services"]["influxdb"]["environment"]
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    assert env["DOCKER_INFLUXDB_INIT_BUCKET"] == cfg.influx.bucket
    assert env["DOCKER_INFLUXDB_INIT_ORG"] == cfg.influx.org
    assert cfg.influx.url == "http://influxdb:8086"
    (mqtt,) = cfg.sources
    assert mqtt.url == "mqtt://mosquitto:1883"  # type: ignore[union-attr]
    # secrets only by reference
    for name in ("mosquitto", "influxdb", "grafana", "hazardgw"):
        for k, v in (compose["services"][name].get("environment") or {}).items():
            if any(w in k for w in ("TOKEN", "PASSWORD")):
                assert str(v).startswith("${"), (name, k, v)


def test_influxdb_init_script_maps_the_bucket_for_influxql(tmp_path: Path) -> None:
    script = DEPLOY / "influxdb-init" / "10-dbrp.sh"
    assert os.access(script, os.X_OK)
    subprocess.run(["sh", "-n", str(script)], check=True)
    fake = tmp_path / "bin" / "influx"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > {tmp_path}/args\n')
    fake.chmod(0o755)
    env = {"PATH": f"{fake.parent}:/usr/bin:/bin", "DOCKER_INFLUXDB_INIT_ORG": "hazardgw",
           "DOCKER_INFLUXDB_INIT_BUCKET": "hazard", "DOCKER_INFLUXDB_INIT_BUCKET_ID": "0123456789abcdef"}
    subprocess.run([str(script)], check=True, env=env, timeout=10)
    args = (tmp_path / "args").read_text().split()
    assert args[:3] == ["v1", "dbrp", "create"]
    opts = dict(zip(args[3::2], args[4::2], strict=False))
    assert opts["--bucket-id"] == "0123456789abcdef" and opts["--db"] == "hazard" and opts["--rp"] == "autogen"
    assert opts["--org"] == "hazardgw" and "--default" in args
    # without the variables the setup provides, the script fails instead of mapping nothing
    bad = subprocess.run([str(script)], env={"PATH": env["PATH"]}, capture_output=True, timeout=10, check=False)
    assert bad.returncode != 0


# --------------------------------------------------------------------------- Dockerfile


def _instructions(text: str) -> list[tuple[str, str]]:
    joined = re.sub(r"\\\n", " ", text)
    out = []
    for line in joined.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            word, _, rest = line.partition(" ")
            out.append((word.upper(), rest.strip()))
    return out


def test_dockerfile_is_slim_pinned_and_non_root() -> None:
    ins = _instructions((DEPLOY / "Dockerfile").read_text())
    froms = [a for k, a in ins if k == "FROM"]
    assert froms and all(f.startswith("python:3.11-slim") for f in froms)
    runs = " ".join(a for k, a in ins if k == "RUN")
    assert "pip install -r /src/requirements.lock" in runs and "--no-deps" in runs
    copies = [a.split() for k, a in ins if k == "COPY"]
    for args in copies:
        if not args[0].startswith("--from"):
            for src in args[:-1]:
                assert (ROOT / src).exists(), src
    (user,) = [a for k, a in ins if k == "USER"]
    assert user.split(":")[0] not in ("root", "0")
    # the last stage switches to the user before ENTRYPOINT
    order = [k for k, _ in ins]
    assert order.index("USER") > len(order) - 1 - order[::-1].index("FROM")
    assert [a for k, a in ins if k == "ENTRYPOINT"] == ['["hazardgw"]']
    ignore = [ln.strip() for ln in (DEPLOY / "Dockerfile.dockerignore").read_text().splitlines()
              if ln.strip() and not ln.startswith("#")]
    assert ignore[0] == "**"  # everything out, then only what the image needs back in
    assert {"!requirements.lock", "!pyproject.toml", "!README.md", "!gateway/**", "!adapters/**",
            "!alerting/**"} <= set(ignore)


class _Health(BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:
        code = 200 if self.path == "/api/health" and type(self).status == 200 else type(self).status
        body = b'{"status": "ok"}' if code == 200 else b'{"detail": "internal error"}'
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def health_server() -> Iterator[tuple[str, type[_Health]]]:
    handler = type("Health", (_Health,), {})
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/api/health", handler
    finally:
        server.shutdown()
        server.server_close()


def test_dockerfile_healthcheck_command_asks_api_health(health_server: tuple[str, type[_Health]]) -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    (hc,) = [a for k, a in _instructions(text) if k == "HEALTHCHECK"]
    exec_form = hc[hc.index("CMD") + 3:].strip()
    argv = yaml.safe_load(exec_form)  # JSON exec form
    assert argv[0] == "python" and argv[1] == "-c"
    default_url = re.search(r"HAZARDGW_HEALTH_URL=(\S+)", text)
    assert default_url and default_url.group(1).endswith(":8080/api/health")
    url, handler = health_server
    env = {**os.environ, "HAZARDGW_HEALTH_URL": url, "no_proxy": "*", "NO_PROXY": "*"}
    ok = subprocess.run([sys.executable, "-c", argv[2]], env=env, capture_output=True, timeout=15, check=False)
    assert ok.returncode == 0, ok.stderr
    handler.status = 500  # the API answers but fails
    bad = subprocess.run([sys.executable, "-c", argv[2]], env=env, capture_output=True, timeout=15, check=False)
    assert bad.returncode != 0
    refused = {**env, "HAZARDGW_HEALTH_URL": f"http://127.0.0.1:{free_port()}/api/health"}  # nothing listens
    down = subprocess.run([sys.executable, "-c", argv[2]], env=refused, capture_output=True, timeout=15, check=False)
    assert down.returncode != 0


# --------------------------------------------------------------------------- Mosquitto


def test_mosquitto_conf_raises_the_queue_and_runs(tmp_path: Path) -> None:
    text = (DEPLOY / "mosquitto.conf").read_text()
    settings = {ln.split()[0]: ln.split(None, 1)[1] for ln in text.splitlines() if ln.strip() and ln[0] != "#"}
    assert int(settings["max_queued_messages"]) >= 100_000  # default 1000 silently drops QoS 1
    assert settings["persistence"] == "true" and settings["listener"] == "1883"

    # the real broker accepts every directive (it exits on an unknown one)
    port = free_port()
    local = text.replace("listener 1883", f"listener {port} 127.0.0.1").replace("/mosquitto/data/", f"{tmp_path}/")
    if os.geteuid() == 0:
        local = "user root\n" + local
    path = tmp_path / "mosquitto.conf"
    path.write_text(local)
    proc = subprocess.Popen([find_binary("mosquitto", "/usr/sbin/mosquitto"), "-c", str(path)],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 10
        while True:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                assert time.monotonic() < deadline, "mosquitto did not listen"
                time.sleep(0.05)
    finally:
        proc.terminate()
        try:
            out, _ = proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
    assert "Error" not in out, out
