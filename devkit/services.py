"""Real servers as child processes: Mosquitto, InfluxDB 1.x and VictoriaMetrics.

Used by ``hazardgw demo`` and by the integration tests (``tests/conftest.py``), so this
module has no test-framework imports and only uses the standard library.

Every server:

* runs as a child process on a loopback port (``free_port()`` unless given), with all its
  config, data and a log file (stdout + stderr of the child) inside ``workdir``;
* ``start(timeout)`` blocks until the server is ready and raises :class:`ServiceError`
  with the tail of the log if the process exits or the timeout passes;
* ``stop()`` sends SIGTERM to the child's process group, then SIGKILL after a grace
  period, and reaps it; it is idempotent. ``kill()`` is an immediate SIGKILL (fault
  injection). ``restart()`` reuses the same ports and data directory;
* does not outlive its parent: it runs in its own process group, gets
  ``PR_SET_PDEATHSIG=SIGKILL`` (Linux, when started from the main thread; the signal is
  tied to the starting *thread*), and an ``atexit`` hook stops whatever is still running.

HTTP calls go through :mod:`urllib` with proxies disabled (an ``http_proxy`` variable must
not capture 127.0.0.1). Config file paths are written unquoted into ``mosquitto.conf``, so
``workdir`` must not contain whitespace.
"""

from __future__ import annotations

import atexit
import base64
import contextlib
import ctypes
import ctypes.util
import hashlib
import http.client
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import weakref
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Self

__all__ = [
    "Influxd",
    "Mosquitto",
    "ServiceError",
    "TlsFiles",
    "VictoriaMetrics",
    "find_binary",
    "free_port",
    "make_password_file",
    "make_test_pki",
]

HOST = "127.0.0.1"


class ServiceError(RuntimeError):
    """A server binary is missing, failed to start, or answered an HTTP call with an error."""


# --------------------------------------------------------------------------- helpers

_issued_ports: set[int] = set()
_ports_lock = threading.Lock()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (bind to port 0 and ask the kernel).

    Never returns the same port twice in one process, so servers started back to back do
    not get each other's port. The port can still be taken by someone else before the
    server binds it; the server classes retry with fresh ports when that happens.
    """
    with _ports_lock:
        while True:
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
                s.bind((HOST, 0))
                port: int = s.getsockname()[1]
            if port not in _issued_ports:
                _issued_ports.add(port)
                return port


def find_binary(name: str, *fallbacks: str) -> str:
    """Absolute path of ``name`` from PATH or one of ``fallbacks``; ServiceError if missing."""
    found = shutil.which(name)
    if found:
        return found
    for candidate in fallbacks:
        if os.path.isfile(candidate) and os.access(candidate, os.X_OK):
            return candidate
    where = ", ".join(["PATH", *fallbacks])
    raise ServiceError(f"{name} binary not found (looked in {where}); install it or pass binary=")


_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _http(
    method: str,
    url: str,
    *,
    params: Mapping[str, str | list[str]] | None = None,
    data: bytes | None = None,
    form: Mapping[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    timeout: float = 10.0,
) -> tuple[int, bytes]:
    """One HTTP request; returns (status, body) for any status (HTTP errors are not raised)."""
    if params:
        url = f"{url}?{urllib.parse.urlencode(params, doseq=True)}"
    headers: dict[str, str] = {}
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    if auth is not None:
        token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with _NO_PROXY_OPENER.open(request, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _lines_body(lines: str | bytes | Iterable[str]) -> bytes:
    if isinstance(lines, bytes):
        return lines
    if isinstance(lines, str):
        return lines.encode()
    return "\n".join(lines).encode()


# ------------------------------------------------------------ child process lifetime

_PR_SET_PDEATHSIG = 1
_libc: ctypes.CDLL | None = None
with contextlib.suppress(OSError, TypeError):
    _libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _child_setup(parent_pid: int, die_with_parent: bool) -> None:
    """Runs in the forked child before exec (keep it tiny: no locks, no allocation-heavy work)."""
    if die_with_parent and _libc is not None:
        _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent_pid:  # the parent died before prctl took effect
            os._exit(1)


_running: weakref.WeakSet[ServerProcess] = weakref.WeakSet()


@atexit.register
def _stop_all() -> None:
    for server in list(_running):
        with contextlib.suppress(Exception):
            server.stop(grace=5.0)


class ServerProcess(ABC):
    """Base class: one server binary run as a child process inside ``workdir``.

    Subclasses set ``name`` and ``binary_name``, implement ``_args()``, ``_is_ready()`` and optionally
    ``_prepare()`` (write config files) and ``_after_ready()`` (e.g. create users).
    """

    name: ClassVar[str] = "server"
    #: binary looked up in PATH, then in ``binary_fallbacks`` (/usr/sbin is not in every PATH)
    binary_name: ClassVar[str] = ""
    binary_fallbacks: ClassVar[tuple[str, ...]] = ()
    ready_poll_interval: ClassVar[float] = 0.05

    def __init__(self, workdir: Path, port: int | None = None, *, binary: str | None = None) -> None:
        self.workdir = Path(workdir).resolve()
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._auto_ports = port is None
        self._port = port if port is not None else free_port()
        self._binary = binary
        self._proc: subprocess.Popen[bytes] | None = None
        self._log_offset = 0

    # -- subclass hooks
    @abstractmethod
    def _args(self) -> list[str]:
        """Command-line arguments after the binary."""

    @abstractmethod
    def _is_ready(self) -> bool:
        """Implemented by each subclass."""

    def _prepare(self) -> None:  # noqa: B027 - optional hook
        """Write config files before each start (called again by restart)."""

    def _after_ready(self) -> None:  # noqa: B027 - optional hook
        """Runs once the server is ready, before start() returns."""

    def _repick_ports(self) -> None:
        """Pick fresh ports after 'address already in use' (only when ports were not given)."""
        self._port = free_port()

    # -- public API
    @property
    def host(self) -> str:
        return HOST

    @property
    def port(self) -> int:
        return self._port

    @property
    def log_path(self) -> Path:
        """stdout and stderr of the child, appended across restarts."""
        return self.workdir / f"{self.name}.log"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def is_running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def log_tail(self, lines: int = 40, *, since_start: bool = False) -> str:
        """Last ``lines`` lines of the log (only this run's if ``since_start``)."""
        try:
            with self.log_path.open("rb") as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                begin = self._log_offset if since_start else 0
                begin = max(begin, size - 64 * 1024)
                f.seek(begin)
                text = f.read().decode(errors="replace")
        except FileNotFoundError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def start(self, timeout: float = 20.0) -> Self:
        """Start the server and wait until it is ready; no-op if it is already running."""
        if self.is_running:
            return self
        attempts = 3 if self._auto_ports else 1
        for attempt in range(attempts):
            try:
                self._start_once(timeout)
                return self
            except ServiceError:
                in_use = "address already in use" in self.log_tail(since_start=True).lower()
                if not in_use or attempt == attempts - 1:
                    raise
                self._repick_ports()
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> None:
        self._prepare()
        argv = [self.binary, *self._args()]
        with self.log_path.open("ab") as log:
            self._log_offset = log.tell()
            die_with_parent = threading.current_thread() is threading.main_thread()
            parent_pid = os.getpid()
            self._proc = subprocess.Popen(
                argv,
                cwd=self.workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                process_group=0,
                preexec_fn=lambda: _child_setup(parent_pid, die_with_parent),
            )
        _running.add(self)
        deadline = time.monotonic() + timeout
        while True:
            code = self._proc.poll()
            if code is not None:
                _running.discard(self)
                raise ServiceError(
                    f"{self.name} exited with code {code} during start-up "
                    f"({' '.join(argv)}); log {self.log_path}:\n{self.log_tail(since_start=True)}"
                )
            if self._probe():
                break
            if time.monotonic() > deadline:
                self.kill()
                raise ServiceError(
                    f"{self.name} not ready after {timeout}s ({' '.join(argv)}); "
                    f"log {self.log_path}:\n{self.log_tail(since_start=True)}"
                )
            time.sleep(self.ready_poll_interval)
        try:
            self._after_ready()
        except BaseException:
            self.kill()
            raise

    def _probe(self) -> bool:
        try:
            return self._is_ready()
        except (OSError, http.client.HTTPException):  # not listening yet / half-started
            return False

    def stop(self, grace: float = 10.0) -> None:
        """SIGTERM the process group, SIGKILL after ``grace`` seconds, reap. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                self._signal(signal.SIGKILL)
                proc.wait()
        _running.discard(self)

    def kill(self) -> None:
        """SIGKILL the server right away (crash simulation) and reap it. Idempotent."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            self._signal(signal.SIGKILL)
            proc.wait()
        _running.discard(self)

    def restart(self, timeout: float = 20.0, *, kill: bool = False) -> Self:
        """Stop (or kill) and start again on the same port(s) with the same data directory."""
        if kill:
            self.kill()
        else:
            self.stop()
        self._auto_ports = False  # clients know the old port: never move it
        return self.start(timeout)

    def _signal(self, sig: signal.Signals) -> None:
        # Only called while the child is un-reaped, so its pid (== pgid) cannot be reused.
        assert self._proc is not None
        try:
            os.killpg(self._proc.pid, sig)
        except ProcessLookupError:
            pass
        except PermissionError:
            self._proc.send_signal(sig)

    @property
    def binary(self) -> str:
        """Path of the server binary; ServiceError if it is not installed."""
        if self._binary is None:
            return find_binary(self.binary_name, *self.binary_fallbacks)
        if not (os.path.isfile(self._binary) and os.access(self._binary, os.X_OK)):
            raise ServiceError(f"{self.name} binary {self._binary!r} does not exist or is not executable")
        return self._binary

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        state = f"pid={self.pid}" if self.is_running else "stopped"
        return f"<{type(self).__name__} {self.host}:{self.port} {state} {self.workdir}>"


# ------------------------------------------------------------------------------ TLS


@dataclass(frozen=True, slots=True)
class TlsFiles:
    """PEM files of a test PKI: a CA, a server cert/key and a client cert/key."""

    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path


def _openssl(*args: str, cwd: Path) -> None:
    binary = find_binary("openssl", "/usr/bin/openssl")
    result = subprocess.run([binary, *args], cwd=cwd, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise ServiceError(f"openssl {' '.join(args)} failed:\n{result.stderr.strip()}")


def make_test_pki(
    directory: Path,
    *,
    hosts: Iterable[str] = ("127.0.0.1", "localhost"),
    client_cn: str = "hazardgw-test-client",
    days: int = 3650,
) -> TlsFiles:
    """Generate a CA, a server certificate for ``hosts`` (subjectAltName) and a client cert.

    Uses the ``openssl`` command line (ECDSA P-256 keys, fast to generate). Files:
    ``ca.crt ca.key server.crt server.key client.crt client.key`` in ``directory``.
    """
    d = Path(directory).resolve()
    d.mkdir(parents=True, exist_ok=True)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    _openssl(
        "req", "-x509", *key, "-keyout", "ca.key", "-out", "ca.crt", "-days", str(days),
        "-subj", "/CN=hazardgw test CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=d,
    )  # fmt: skip
    san = ",".join(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)
    leaf = "basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\n"
    specs = {
        "server": ("/CN=hazardgw test server", f"{leaf}extendedKeyUsage=serverAuth\nsubjectAltName={san}\n"),
        "client": (f"/CN={client_cn}", f"{leaf}extendedKeyUsage=clientAuth\n"),
    }
    for name, (subject, extensions) in specs.items():
        (d / f"{name}.ext").write_text(extensions)
        _openssl("req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject, cwd=d)
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-set_serial", f"0x{secrets.token_hex(16)}", "-days", str(days),
            "-extfile", f"{name}.ext", "-out", f"{name}.crt",
            cwd=d,
        )  # fmt: skip
        (d / f"{name}.csr").unlink()
    for k in ("ca.key", "server.key", "client.key"):
        (d / k).chmod(0o600)
    return TlsFiles(
        ca=d / "ca.crt",
        server_cert=d / "server.crt",
        server_key=d / "server.key",
        client_cert=d / "client.crt",
        client_key=d / "client.key",
    )


def _is_ip(host: str) -> bool:
    try:
        socket.inet_pton(socket.AF_INET6 if ":" in host else socket.AF_INET, host)
    except OSError:
        return False
    return True


# ------------------------------------------------------------------------- Mosquitto


def make_password_file(path: Path, users: Mapping[str, str], *, use_tool: bool = True) -> Path:
    """Write a mosquitto password file for ``users`` ({username: password}).

    Uses ``mosquitto_passwd -b`` (``-c`` for the first user) when it is installed and
    ``use_tool``. Otherwise writes the ``$7$`` format mosquitto 2.x writes itself
    (PBKDF2-HMAC-SHA512, 101 iterations, 12-byte salt, base64), which mosquitto >= 2.0
    reads (tested against 2.0.11); 1.x brokers need the tool.
    """
    path = Path(path)
    tool: str | None = None
    if use_tool:
        with contextlib.suppress(ServiceError):
            tool = find_binary("mosquitto_passwd", "/usr/bin/mosquitto_passwd")
    if tool is None:
        lines = []
        for user, password in users.items():
            salt = os.urandom(12)
            digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, 101)
            b64 = base64.b64encode
            lines.append(f"{user}:$7$101${b64(salt).decode()}${b64(digest).decode()}\n")
        path.write_text("".join(lines))
    else:
        path.unlink(missing_ok=True)
        for i, (user, password) in enumerate(users.items()):
            args = [tool, "-b", *(["-c"] if i == 0 else []), str(path), user, password]
            result = subprocess.run(args, capture_output=True, text=True, check=False)
            if result.returncode != 0:
                raise ServiceError(f"mosquitto_passwd failed for {user!r}: {result.stderr.strip()}")
    path.chmod(0o600)
    return path


_MOSQUITTO_RUNNING = re.compile(r"mosquitto version \S+ running")


class Mosquitto(ServerProcess):
    """Eclipse Mosquitto 2.x broker.

    ``mosquitto.conf`` (rewritten on every start) has a plain listener on ``port`` and,
    with ``tls``, a second TLS listener on ``tls_port`` using the CA/server cert/key and
    ``require_certificate`` (client certificates signed by the CA). With
    ``password_file`` anonymous clients are refused on *every* listener
    (``allow_anonymous false``, global settings, no ``per_listener_settings``); without
    it ``allow_anonymous true``. Persistence goes to ``workdir/mosquitto.db`` (saved on
    SIGTERM and every ``autosave_interval``, default 1800 s: a ``kill()`` loses what was
    not saved, pass ``extra_config="autosave_interval 1"`` to narrow that window).

    Found on the real broker (2.0.11, Debian): run as root it drops privileges to the
    ``mosquitto`` user unless the config says ``user root`` (written when euid is 0),
    and then cannot save its db in a root-owned workdir ("Permission denied"); with
    ``user root`` it only warns "should not be run as root". Logging goes to stderr, which is the log
    file. A TLS client without a certificate is dropped during the handshake ("peer did
    not return a certificate"). Readiness: the log says "mosquitto version X running",
    printed once every listener is bound (a bind failure exits with "Address already in
    use" instead).
    """

    name = "mosquitto"
    binary_name = "mosquitto"
    binary_fallbacks = ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto")

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        tls: TlsFiles | None = None,
        tls_port: int | None = None,
        password_file: Path | None = None,
        persistence: bool = True,
        require_certificate: bool = True,
        extra_config: str = "",
        binary: str | None = None,
    ) -> None:
        super().__init__(workdir, port, binary=binary)
        self.tls = tls
        self._tls_port = (tls_port or free_port()) if tls is not None else None
        self._auto_ports = self._auto_ports and (tls is None or tls_port is None)
        self.password_file = Path(password_file).resolve() if password_file is not None else None
        self.persistence = persistence
        self.require_certificate = require_certificate
        self.extra_config = extra_config

    @property
    def config_path(self) -> Path:
        return self.workdir / "mosquitto.conf"

    @property
    def tls_port(self) -> int | None:
        return self._tls_port

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def tls_url(self) -> str:
        if self._tls_port is None:
            raise ServiceError("this Mosquitto has no TLS listener (pass tls=)")
        return f"mqtts://{self.host}:{self._tls_port}"

    def _repick_ports(self) -> None:
        self._port = free_port()
        if self._tls_port is not None:
            self._tls_port = free_port()

    def config_text(self) -> str:
        lines = ["# written by devkit.services.Mosquitto; rewritten on every start"]
        if os.geteuid() == 0:
            lines.append("user root")
        lines += [
            "log_dest stderr",
            "log_timestamp true",
            "log_timestamp_format %Y-%m-%dT%H:%M:%S",
            f"persistence {'true' if self.persistence else 'false'}",
            # mosquitto's default (1000) silently drops QoS 1 messages queued for a
            # subscriber that falls behind for a moment; a gateway must not lose them
            "max_queued_messages 1000000",
        ]
        if self.persistence:
            lines += [f"persistence_location {self.workdir}/", "persistence_file mosquitto.db"]
        if self.password_file is not None:
            lines += ["allow_anonymous false", f"password_file {self.password_file}"]
        else:
            lines.append("allow_anonymous true")
        lines += ["", f"listener {self.port} {HOST}"]
        if self.tls is not None:
            lines += [
                "",
                f"listener {self._tls_port} {HOST}",
                f"cafile {self.tls.ca}",
                f"certfile {self.tls.server_cert}",
                f"keyfile {self.tls.server_key}",
                f"require_certificate {'true' if self.require_certificate else 'false'}",
            ]
        if self.extra_config:
            lines += ["", self.extra_config]
        return "\n".join(lines) + "\n"

    def _prepare(self) -> None:
        paths = [self.workdir, self.password_file]
        if self.tls is not None:
            paths += [self.tls.ca, self.tls.server_cert, self.tls.server_key]
        for path in paths:
            if path is not None and any(c.isspace() for c in str(path)):
                raise ServiceError(f"mosquitto.conf cannot hold a path with whitespace: {str(path)!r}")
        self.config_path.write_text(self.config_text())

    def _args(self) -> list[str]:
        return ["-c", str(self.config_path)]

    def _is_ready(self) -> bool:
        # "mosquitto version X running" is printed after every listener is bound; a bind
        # failure exits instead. (Probing the ports would only add noise to the log.)
        return _MOSQUITTO_RUNNING.search(self.log_tail(lines=200, since_start=True)) is not None


class Amqtt(ServerProcess):
    """amqtt (PyPI ``amqtt``, asyncio), a second MQTT 3.1.1 broker implementation for the
    MQTT source tests: QoS 0/1/2, retained messages, persistent sessions, anonymous access.

    Its config (``amqtt.yaml``) binds one TCP listener to 127.0.0.1:port with the default
    plugins except the $SYS publisher. The binary is the ``amqtt`` script installed beside
    the running interpreter (requirements-dev.lock). Readiness: the port accepts a TCP
    connection (amqtt logs nothing reliable at start-up). Found on 0.12.1: no MQTT 5, and
    state (sessions, retained messages) lives in memory only, so a restart forgets them.
    """

    name = "amqtt"
    binary_name = "amqtt"

    def __init__(self, workdir: Path, port: int | None = None, *, binary: str | None = None) -> None:
        import sys

        super().__init__(workdir, port, binary=binary or str(Path(sys.executable).parent / "amqtt"))

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    @property
    def config_path(self) -> Path:
        return self.workdir / "amqtt.yaml"

    def _prepare(self) -> None:
        self.config_path.write_text(
            "# written by devkit.services.Amqtt; rewritten on every start\n"
            f"listeners:\n  default:\n    type: tcp\n    bind: {HOST}:{self.port}\n"
            "plugins:\n  amqtt.plugins.authentication.AnonymousAuthPlugin:\n    allow_anonymous: true\n"
        )

    def _args(self) -> list[str]:
        return ["-c", str(self.config_path)]

    def _is_ready(self) -> bool:
        with socket.create_connection((HOST, self.port), timeout=0.5):
            return True


# --------------------------------------------------------------------------- InfluxDB


class Influxd(ServerProcess):
    """InfluxDB 1.x (Debian ships 1.6.7: no ``/api/v2/write``, InfluxQL only).

    ``influxdb.conf`` keeps meta/data/wal in ``workdir``, binds HTTP to 127.0.0.1:port and
    the RPC/backup service (top-level ``bind-address``, default 8088) to another free
    loopback port; the ``_internal`` monitor store, query log and HTTP access log are
    off. With ``auth`` the admin user is created right after the first start (1.x lets
    the first admin user be created without credentials) and every helper sends it.

    Found on the real binary (1.6.7, Debian): the phone-home key is ``reporting-enabled``
    (a Debian patch, default false); upstream's ``reporting-disabled`` is an unknown key,
    and unknown keys are silently ignored, so both are written. ``/ping`` answers 204
    without credentials even with auth on. With auth on and no user yet, any other
    query gets 403 "create admin user first"; a write or query without credentials gets
    401 "unable to parse authentication credentials", with wrong ones 401 "authorization
    failed". ``/query`` accepts POST for every statement (GET only for SELECT/SHOW;
    GET CREATE DATABASE works with a deprecation warning); ``epoch=ns`` returns integer
    ns timestamps, and ns written with ``precision=ns`` come back exactly.
    Logs go to stderr (the log file). SIGTERM shuts down in about a second.
    """

    name = "influxd"
    binary_name = "influxd"
    binary_fallbacks = ("/usr/bin/influxd", "/usr/local/bin/influxd")

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        auth: tuple[str, str] | None = None,
        rpc_port: int | None = None,
        binary: str | None = None,
    ) -> None:
        super().__init__(workdir, port, binary=binary)
        self.auth = auth
        self._auto_ports = self._auto_ports and rpc_port is None
        self._rpc_port = rpc_port or free_port()

    @property
    def config_path(self) -> Path:
        return self.workdir / "influxdb.conf"

    @property
    def rpc_port(self) -> int:
        """The RPC/backup listener (top-level ``bind-address``), also on 127.0.0.1."""
        return self._rpc_port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _repick_ports(self) -> None:
        self._port = free_port()
        self._rpc_port = free_port()

    def config_text(self) -> str:
        w = self.workdir
        return f"""\
# written by devkit.services.Influxd; rewritten on every start
reporting-disabled = true
reporting-enabled = false
bind-address = "{HOST}:{self.rpc_port}"

[meta]
  dir = "{w}/meta"

[data]
  dir = "{w}/data"
  wal-dir = "{w}/wal"
  query-log-enabled = false

[monitor]
  store-enabled = false

[subscriber]
  enabled = false

[http]
  enabled = true
  bind-address = "{HOST}:{self.port}"
  auth-enabled = {"true" if self.auth else "false"}
  log-enabled = false
  pprof-enabled = false

[logging]
  level = "info"
  suppress-logo = true
"""

    def _prepare(self) -> None:
        self.config_path.write_text(self.config_text())

    def _args(self) -> list[str]:
        return ["run", "-config", str(self.config_path)]

    def _is_ready(self) -> bool:
        status, _ = _http("GET", f"{self.url}/ping", timeout=1.0)
        return status == 204

    def _after_ready(self) -> None:
        if self.auth is None:
            return
        user, password = self.auth
        stmt = f"CREATE USER {_ident(user)} WITH PASSWORD {_string(password)} WITH ALL PRIVILEGES"
        status, body = _http("POST", f"{self.url}/query", form={"q": stmt})
        if status == 200:
            return
        # An admin exists already (restart, reused workdir): check our credentials work.
        status, body = _http("POST", f"{self.url}/query", form={"q": "SHOW USERS"}, auth=self.auth)
        if status != 200:
            raise ServiceError(f"influxd auth: cannot create or use admin user {user!r}: {body.decode()}")

    # -- helpers (all use self.auth)
    def query(self, db: str | None, influxql: str) -> dict[str, Any]:
        """POST /query (``epoch=ns``) and return the parsed JSON.

        Raises ServiceError on an HTTP error; statement errors stay in the result
        (``results[i]["error"]``).
        """
        form = {"q": influxql, "epoch": "ns"}
        if db is not None:
            form["db"] = db
        status, body = _http("POST", f"{self.url}/query", form=form, auth=self.auth)
        if status != 200:
            raise ServiceError(f"influxd query {influxql!r} -> HTTP {status}: {body.decode(errors='replace')}")
        result: dict[str, Any] = json.loads(body)
        return result

    def select(self, db: str, influxql: str) -> list[dict[str, Any]]:
        """Rows of the first statement as dicts (columns plus GROUP BY tags); raises on error."""
        statement = self.query(db, influxql)["results"][0]
        if "error" in statement:
            raise ServiceError(f"influxd query {influxql!r}: {statement['error']}")
        rows: list[dict[str, Any]] = []
        for series in statement.get("series", []):
            tags = series.get("tags", {})
            for values in series["values"]:
                row = dict(zip(series["columns"], values, strict=True))
                rows.append({"measurement": series["name"], **tags, **row})
        return rows

    def create_database(self, name: str) -> None:
        self._statement(None, f"CREATE DATABASE {_ident(name)}")

    def drop_database(self, name: str) -> None:
        self._statement(None, f"DROP DATABASE {_ident(name)}")

    def write(self, db: str, lines: str | bytes | Iterable[str], *, precision: str = "ns") -> None:
        """POST line protocol to /write; raises ServiceError unless the server answers 204."""
        status, body = _http(
            "POST",
            f"{self.url}/write",
            params={"db": db, "precision": precision},
            data=_lines_body(lines),
            auth=self.auth,
        )
        if status != 204:
            raise ServiceError(f"influxd write -> HTTP {status}: {body.decode(errors='replace')}")

    def _statement(self, db: str | None, influxql: str) -> None:
        for statement in self.query(db, influxql)["results"]:
            if "error" in statement:
                raise ServiceError(f"influxd {influxql!r}: {statement['error']}")


def _ident(name: str) -> str:
    """InfluxQL double-quoted identifier."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _string(value: str) -> str:
    """InfluxQL single-quoted string literal."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


# -------------------------------------------------------------------- VictoriaMetrics


class VictoriaMetrics(ServerProcess):
    """Single-node VictoriaMetrics (Debian ships 1.79).

    Flags: ``-retentionPeriod=100y`` (old test timestamps are kept),
    ``-search.disableCache`` and ``-search.latencyOffset=0s`` (fresh points are visible
    to queries), ``-http.maxGracefulShutdownDuration=1s`` (SIGTERM otherwise waits up to
    7 s for idle keep-alive connections), ``-loggerLevel=WARN`` (quiet). 1.79 has no
    ``-inmemoryDataFlushInterval`` (unknown flags make it exit).

    Found on the real binary (1.79):

    * InfluxDB line protocol is accepted on ``/write``, ``/api/v2/write`` and
      ``/influx/write`` (204). Series are named ``<measurement>_<field>``; tags become
      labels; ``/write?db=X`` adds a label ``db="X"``, ``/api/v2/write?bucket=&org=``
      adds nothing.
    * String fields are NOT ignored: a numeric string (``s="12.5"``) is stored as
      12.5, any other string (``quality="good"``, ``""``) as **0**; booleans as 1/0.
    * Storage is millisecond precision: ``precision=ns`` is honoured for parsing but
      the timestamp is cut to ms (``...123456789`` ns -> ``...123`` ms in export).
    * A malformed line is skipped and only logged; the request still answers 204.
    * Ingested rows are buffered: a *new* series may take up to ~10 s to appear in
      ``/api/v1/export``. ``/internal/force_flush`` (present in 1.79, answers 200) makes
      it visible within about 0.5 s; :meth:`export` calls it first. A poll with
      :func:`wait_for` is still needed.
    * Readiness: ``GET /health`` answers 200 "OK".
    """

    name = "victoria-metrics"
    binary_name = "victoria-metrics"
    binary_fallbacks = ("/usr/bin/victoria-metrics", "/usr/local/bin/victoria-metrics")

    def __init__(
        self,
        workdir: Path,
        port: int | None = None,
        *,
        extra_args: Sequence[str] = (),
        binary: str | None = None,
    ) -> None:
        super().__init__(workdir, port, binary=binary)
        self.extra_args = list(extra_args)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def data_path(self) -> Path:
        return self.workdir / "data"

    def _args(self) -> list[str]:
        return [
            f"-httpListenAddr={HOST}:{self.port}",
            f"-storageDataPath={self.data_path}",
            "-retentionPeriod=100y",
            "-search.disableCache",
            "-search.latencyOffset=0s",
            "-http.maxGracefulShutdownDuration=1s",
            "-loggerLevel=WARN",
            *self.extra_args,
        ]

    def _is_ready(self) -> bool:
        status, _ = _http("GET", f"{self.url}/health", timeout=1.0)
        return status == 200

    def flush(self) -> None:
        """GET /internal/force_flush: make buffered rows searchable now."""
        status, body = _http("GET", f"{self.url}/internal/force_flush")
        if status != 200:
            raise ServiceError(f"victoria-metrics force_flush -> HTTP {status}: {body.decode(errors='replace')}")

    def export(
        self, match: str, *, start: str | None = None, end: str | None = None, flush: bool = True
    ) -> list[dict[str, Any]]:
        """Series matching the selector (``/api/v1/export``), one dict per series:
        ``{"metric": {"__name__": ..., labels}, "values": [...], "timestamps": [ms, ...]}``."""
        if flush:
            self.flush()
        params: dict[str, str | list[str]] = {"match[]": [match]}
        if start is not None:
            params["start"] = start
        if end is not None:
            params["end"] = end
        status, body = _http("GET", f"{self.url}/api/v1/export", params=params)
        if status != 200:
            raise ServiceError(f"victoria-metrics export -> HTTP {status}: {body.decode(errors='replace')}")
        return [json.loads(line) for line in body.splitlines() if line.strip()]

    def query(self, promql: str, *, time_: str | None = None) -> dict[str, Any]:
        """Instant query (``/api/v1/query``); returns the parsed JSON response."""
        params: dict[str, str | list[str]] = {"query": promql}
        if time_ is not None:
            params["time"] = time_
        status, body = _http("GET", f"{self.url}/api/v1/query", params=params)
        if status != 200:
            raise ServiceError(f"victoria-metrics query -> HTTP {status}: {body.decode(errors='replace')}")
        result: dict[str, Any] = json.loads(body)
        return result

    def write(self, lines: str | bytes | Iterable[str], *, precision: str = "ns") -> None:
        """POST InfluxDB line protocol to /api/v2/write."""
        status, body = _http(
            "POST", f"{self.url}/api/v2/write", params={"precision": precision}, data=_lines_body(lines)
        )
        if status != 204:
            raise ServiceError(f"victoria-metrics write -> HTTP {status}: {body.decode(errors='replace')}")
