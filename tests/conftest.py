"""Fixtures that run real servers (devkit.services) for the integration tests.

* ``mosquitto``        function scope: a fresh anonymous broker per test (kill/restart freely).
* ``amqtt``            function scope: a fresh amqtt broker (a second MQTT 3.1.1 implementation).
* ``mosquitto_tls``    function scope: plain + TLS listener (``.tls_port``, ``.tls_url``) using
                       ``test_pki``, client certificates required, user gw/secret required on
                       both listeners (``helpers.MQTT_USER`` / ``MQTT_PASSWORD``).
* ``test_pki``         session scope: ``TlsFiles`` (CA, server cert for 127.0.0.1/localhost,
                       client cert).
* ``influxd``          InfluxDB 1.x shared by the session, no auth. Per test, use ``influx_db``
                       (a fresh, uniquely named database, dropped afterwards).
* ``influxd_auth``     InfluxDB 1.x with auth on, admin ``helpers.INFLUX_USER`` /
                       ``INFLUX_PASSWORD`` (the helpers send it); ``influx_auth_db`` gives a database.
* ``victoria``         VictoriaMetrics shared by the session.

The shared servers are started once (``*_server`` fixtures, session scope); the
function-scoped ``influxd`` / ``influxd_auth`` / ``victoria`` start them again if an earlier
test killed or stopped them, so fault-injection tests need not clean up. A missing
binary or a server that does not come up fails the test (never skips) with the server's
log tail.
"""

from __future__ import annotations

import contextlib
import re
import uuid
from collections.abc import Callable, Iterator
from typing import TypeVar

import pytest
from helpers import INFLUX_PASSWORD, INFLUX_USER, MQTT_PASSWORD, MQTT_USER

from devkit.services import (
    Amqtt,
    Influxd,
    Mosquitto,
    ServerProcess,
    ServiceError,
    TlsFiles,
    VictoriaMetrics,
    make_password_file,
    make_test_pki,
)

T = TypeVar("T")
S = TypeVar("S", bound=ServerProcess)


def _or_fail(what: str, make: Callable[[], T]) -> T:
    """``make()``, turning a ServiceError (missing binary, failed start) into a test failure."""
    try:
        return make()
    except ServiceError as exc:
        error = str(exc)
    pytest.fail(f"{what}: {error}", pytrace=False)


def _started(server: S) -> S:
    """Start ``server`` (no-op if running) or fail the test with a clear message."""
    return _or_fail(f"cannot start {server.name} for this test", server.start)


def _unique_db_name(request: pytest.FixtureRequest) -> str:
    base = re.sub(r"\W+", "_", request.node.name).strip("_")[:40]
    return f"t_{base}_{uuid.uuid4().hex[:8]}"


# ------------------------------------------------------------------------------ TLS


@pytest.fixture(scope="session")
def test_pki(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    directory = tmp_path_factory.mktemp("pki")
    return _or_fail("cannot create the test PKI", lambda: make_test_pki(directory))


# ------------------------------------------------------------------------- Mosquitto


@pytest.fixture
def mosquitto(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mosquitto]:
    server = Mosquitto(tmp_path_factory.mktemp("mosquitto"))
    try:
        yield _started(server)
    finally:
        server.stop()


@pytest.fixture
def amqtt(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Amqtt]:
    server = Amqtt(tmp_path_factory.mktemp("amqtt"))
    try:
        yield _started(server)
    finally:
        server.stop()


@pytest.fixture
def mosquitto_tls(tmp_path_factory: pytest.TempPathFactory, test_pki: TlsFiles) -> Iterator[Mosquitto]:
    workdir = tmp_path_factory.mktemp("mosquitto_tls")
    password_file = _or_fail(
        "cannot create the mosquitto password file",
        lambda: make_password_file(workdir / "passwd", {MQTT_USER: MQTT_PASSWORD}),
    )
    server = Mosquitto(workdir, tls=test_pki, password_file=password_file, require_certificate=True)
    try:
        yield _started(server)
    finally:
        server.stop()


# --------------------------------------------------------------------------- InfluxDB


@pytest.fixture(scope="session")
def influxd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    server = Influxd(tmp_path_factory.mktemp("influxd"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def influxd(influxd_server: Influxd) -> Influxd:
    return _started(influxd_server)


@pytest.fixture
def influx_db(influxd: Influxd, request: pytest.FixtureRequest) -> Iterator[str]:
    """Name of a fresh database on ``influxd``, unique to this test."""
    name = _unique_db_name(request)
    influxd.create_database(name)
    yield name
    if influxd.is_running:
        with contextlib.suppress(ServiceError, OSError):  # cleanup only
            influxd.drop_database(name)


@pytest.fixture(scope="session")
def influxd_auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Influxd]:
    server = Influxd(tmp_path_factory.mktemp("influxd_auth"), auth=(INFLUX_USER, INFLUX_PASSWORD))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def influxd_auth(influxd_auth_server: Influxd) -> Influxd:
    return _started(influxd_auth_server)


@pytest.fixture
def influx_auth_db(influxd_auth: Influxd, request: pytest.FixtureRequest) -> Iterator[str]:
    """Name of a fresh database on ``influxd_auth``, unique to this test."""
    name = _unique_db_name(request)
    influxd_auth.create_database(name)
    yield name
    if influxd_auth.is_running:
        with contextlib.suppress(ServiceError, OSError):  # cleanup only
            influxd_auth.drop_database(name)


# -------------------------------------------------------------------- VictoriaMetrics


@pytest.fixture(scope="session")
def victoria_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    server = VictoriaMetrics(tmp_path_factory.mktemp("victoria"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def victoria(victoria_server: VictoriaMetrics) -> VictoriaMetrics:
    return _started(victoria_server)
