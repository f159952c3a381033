"""The OpenAPI schema is valid, and schemathesis finds no 5xx on any generated input.

The gateway (with alarms raised, so ids in the schema's examples exist) runs with its API on
a real uvicorn in a background thread with its own event loop, since schemathesis calls the
API synchronously. ``/api/events`` is left out: it streams forever (tests/test_api_sse.py).
Examples are bounded so the run stays well under a minute.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from helpers import async_wait_for
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from test_api_support import H_OPERATOR, reading, site

from gateway.supervisor import Gateway


class Background:
    """A started gateway in its own thread and event loop."""

    def __init__(self, store: Path) -> None:
        self.store = store
        self.url = ""
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._main, name="api-schema-gateway", daemon=True)

    def __enter__(self) -> Background:
        self._thread.start()
        assert self.ready.wait(20), "gateway did not start"
        if self.error is not None:
            raise self.error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(20)
        assert not self._thread.is_alive()

    def _main(self) -> None:
        asyncio.run(self._run())

    async def _run(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        gw = Gateway(site(self.store))
        try:
            await gw.start()
            await gw.pipeline.emit([reading("GT-101", 2.5), reading("PT-201", 1.5), reading("AI/7", 95.0)])
            await async_wait_for(gw.alarms.active, timeout=5, desc="alarms raised")
            assert gw.api is not None and gw.api.url is not None
            self.url = gw.api.url
        except BaseException as e:
            self.error = e
            self.ready.set()
            await gw.stop()
            return
        self.ready.set()
        try:
            await self._stop.wait()
        finally:
            await gw.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Background]:
    with Background(tmp_path_factory.mktemp("schema-store")) as bg:
        yield bg


@pytest.fixture(scope="module")
def api_schema(server: Background) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{server.url}/openapi.json").exclude(path="/api/events")


def test_openapi_schema_is_valid_and_complete(api_schema: schemathesis.BaseSchema) -> None:
    api_schema.validate()  # against the OpenAPI 3.1 meta-schema; raises on any violation
    raw = api_schema.raw_schema
    paths = set(raw["paths"])
    assert {
        "/api/health", "/api/tags", "/api/tags/{tag}", "/api/alarms", "/api/alarms/history",
        "/api/alarms/{id}/ack", "/api/alarms/{id}/shelve", "/api/alarms/{id}/unshelve", "/api/alarms/{id}/dispose",
        "/api/events", "/api/online", "/metrics", "/", "/api/alarms/ack", "/api/kpi",
    } <= paths
    assert raw["components"]["securitySchemes"]["token"] == {
        "type": "http", "scheme": "bearer", "description": raw["components"]["securitySchemes"]["token"]["description"],
    }
    assert "security" not in raw["paths"]["/api/health"]["get"]  # open on purpose
    assert raw["paths"]["/api/alarms/{id}/ack"]["post"]["security"] == [{"token": []}]


OPERATIONS = [
    ("GET", "/api/health"), ("GET", "/api/tags"), ("GET", "/api/tags/{tag}"), ("GET", "/api/alarms"),
    ("GET", "/api/alarms/history"), ("POST", "/api/alarms/{id}/ack"), ("POST", "/api/alarms/{id}/shelve"),
    ("POST", "/api/alarms/{id}/unshelve"), ("POST", "/api/alarms/{id}/dispose"), ("GET", "/api/online"),
    ("GET", "/metrics"), ("GET", "/"), ("POST", "/api/alarms/ack"), ("GET", "/api/kpi"),
]


CASES = [(m, p, mode) for m, p in OPERATIONS for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
         if mode == GenerationMode.POSITIVE or p not in ("/api/health", "/metrics", "/")]  # nothing to make invalid


@pytest.mark.parametrize(("method", "path", "mode"), CASES, ids=[f"{m} {p} {mode.value}" for m, p, mode in CASES])
def test_no_server_errors_on_generated_requests(
    api_schema: schemathesis.BaseSchema, method: str, path: str, mode: GenerationMode
) -> None:
    """Schemathesis-generated requests (schema-valid and schema-violating) never get a 5xx.

    An operator token reaches every handler (a missing or wrong one would stop at auth).
    (schemathesis' own pytest loader does not work with pytest 9, so the operation's
    hypothesis strategy is driven here directly.)
    """
    op = api_schema[path][method]
    calls: list[int] = []

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=100, deadline=None, suppress_health_check=list(HealthCheck), database=None)
    def run(case: schemathesis.Case) -> None:
        response = case.call_and_validate(headers=H_OPERATOR, checks=[not_a_server_error], timeout=10)
        calls.append(response.status_code)

    run()
    assert calls, "no request was generated"
