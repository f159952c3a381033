"""``GET /api/events``: alarm events at once, readings throttled per tag, slow clients dropped.

Real uvicorn on port 0, real TCP clients: an httpx stream for a well-behaved console and a
raw socket that stops reading for a stalled one.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import math
import socket
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from helpers import async_wait_for
from test_api_support import H_VIEWER, VIEWER, reading, site, sse_events

from gateway.api import ApiServer, ApiSettings
from gateway.supervisor import Gateway

Received = list[tuple[float, str, Any]]


@contextlib.asynccontextmanager
async def running(tmp_path: Path, settings: ApiSettings, n_extra: int = 0) -> AsyncIterator[tuple[Gateway, ApiServer]]:
    extra = [{"id": f"T{i:04d}", "kind": "analog", "unit": "%", "range": [0, 100], "stale_after": "1h"}
             for i in range(n_extra)]
    gw = Gateway(site(tmp_path / "store", extra_tags=extra), api_settings=settings)  # api.listen 127.0.0.1:0
    assert gw.api is not None
    srv = gw.api
    await gw.start()  # starts the API last, wired to the engine and the pipeline by the supervisor
    try:
        yield gw, srv
    finally:
        await srv.stop()
        await gw.stop()


async def consume(url: str, out: Received, connected: asyncio.Event) -> None:
    async with httpx.AsyncClient(timeout=None) as c, c.stream("GET", f"{url}/api/events", headers=H_VIEWER) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        async for event, data in sse_events(r):
            out.append((time.monotonic(), event, data))
            connected.set()


@contextlib.asynccontextmanager
async def console(url: str) -> AsyncIterator[Received]:
    out: Received = []
    connected = asyncio.Event()
    task = asyncio.create_task(consume(url, out, connected))
    await asyncio.wait_for(connected.wait(), 5)
    try:
        yield out
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_alarm_events_arrive_at_once_and_readings_are_throttled(tmp_path: Path) -> None:
    async with running(tmp_path, ApiSettings()) as (gw, srv), console(srv.url or "") as got:  # interval 1 s
        assert got[0][1] == "snapshot"
        snap = got[0][2]
        assert [t["id"] for t in snap["tags"]] == ["GT-101", "PT-201", "AI/7"]
        assert {h["code"]: h["status"] for h in snap["hazard_sources"]} == {"HS-001": "blue", "HS-002": "blue"}
        assert snap["alarms"] == [] and any(p["id"] == "GT-101/hh" and p["latch"] for p in snap["points"])

        start = time.monotonic()
        t_alarm = 0.0
        values = [round(0.50 + i * 0.01, 2) for i in range(50)]
        for i, v in enumerate(values):  # PT-201 every 40 ms for 2 s: 25 readings a second
            await gw.pipeline.emit([reading("PT-201", v)])
            if i == 25:
                t_alarm = time.monotonic()
                await gw.pipeline.emit([reading("GT-101", 2.5)])
            await asyncio.sleep(0.04)

        def last_pt201() -> float | None:
            vals = [r["value"] for _, e, d in got if e == "readings" for r in d["readings"] if r["tag"] == "PT-201"]
            return vals[-1] if vals else None

        await async_wait_for(lambda: last_pt201() == values[-1], timeout=5, desc="the latest PT-201 value")
        elapsed = time.monotonic() - start

    # the alarm: raised events for HH and H, immediately (well under the 1 s reading period), then the colour
    alarms = [(t, d) for t, e, d in got if e == "alarm"]
    assert [(d["alarm"], d["event"], d["state"]) for _, d in alarms] == [
        ("GT-101/hh", "raised", "UNACK"), ("GT-101/h", "raised", "UNACK")]
    assert alarms[0][0] - t_alarm < 0.25, f"alarm took {alarms[0][0] - t_alarm:.3f} s"
    status = next(d for _, e, d in got if e == "status")
    assert {h["code"]: h["status"] for h in status["hazard_sources"]}["HS-001"] == "red"

    # readings: one message per second at most, each tag at most once per message, latest value wins
    readings = [(t, d["readings"]) for t, e, d in got if e == "readings"]
    assert 2 <= len(readings) <= math.ceil(elapsed) + 1, [len(r) for _, r in readings]
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(readings)]
    assert all(g > 0.7 for g in gaps), gaps
    for _, rs in readings:
        tags = [r["tag"] for r in rs]
        assert len(tags) == len(set(tags))
    pt = [r["value"] for _, rs in readings for r in rs if r["tag"] == "PT-201"]
    assert len(pt) <= len(readings) < len(values) / 5  # 50 readings became a handful
    assert pt == sorted(pt) and pt[-1] == values[-1]


async def test_slow_client_is_dropped_without_blocking_the_pipeline(tmp_path: Path) -> None:
    settings = ApiSettings(sse_interval=0.02, sse_max_queue=8)  # 1000 tags every 20 ms: ~4 MB/s per client
    async with running(tmp_path, settings, n_extra=1000) as (gw, srv):
        assert srv.port is not None
        hub = srv.app.state.hazardgw.hub
        async with console(srv.url or "") as good:
            # a client that connects and then never reads
            slow = socket.socket()
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            slow.connect(("127.0.0.1", srv.port))
            slow.sendall(f"GET /api/events HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {VIEWER}\r\n\r\n".encode())
            await async_wait_for(lambda: hub.clients == 2, timeout=5, desc="both clients connected")

            worst = 0.0
            emitted = 0
            t_drop: float | None = None
            deadline = time.monotonic() + 20
            i = 0
            while time.monotonic() < deadline:
                batch = [reading(f"T{k:04d}", float((i + k) % 100)) for k in range(1000)]
                t0 = time.monotonic()
                await gw.pipeline.emit(batch)
                worst = max(worst, time.monotonic() - t0)
                emitted += len(batch)
                i += 1
                if t_drop is None and hub.dropped:
                    t_drop = time.monotonic()
                if t_drop is not None and time.monotonic() - t_drop > 0.5:
                    break
                await asyncio.sleep(0.01)
            assert t_drop is not None, "the stalled client was never dropped"
            await async_wait_for(lambda: gw.pipeline.dispatched >= emitted, timeout=5, desc="pipeline drained")

            # the pipeline never waited on the stalled client, the good one kept getting readings
            assert worst < 0.25, f"emit blocked for {worst:.3f} s"
            assert hub.dropped == 1 and hub.clients == 1
            after = [t for t, e, _ in good if e == "readings" and t > t_drop]
            assert len(after) >= 3
            metrics = (await httpx.AsyncClient().get(f"{srv.url}/metrics")).text
            assert 'hazardgw_api_sse_dropped_total{reason="slow"} 1.0' in metrics
            assert "hazardgw_api_sse_clients 1.0" in metrics

            # and the server closed the stalled connection: reading it now ends in EOF
            def drain() -> int:
                slow.settimeout(10)
                n = 0
                while chunk := slow.recv(1 << 20):
                    n += len(chunk)
                return n

            try:
                received = await asyncio.to_thread(drain)
            finally:
                slow.close()
            assert received > 0


async def test_client_limit_gives_503(tmp_path: Path) -> None:
    async with running(tmp_path, ApiSettings(sse_max_clients=1)) as (_gw, srv), console(srv.url or ""):
        async with httpx.AsyncClient() as c:
            r = await c.get(f"{srv.url}/api/events", headers=H_VIEWER)
        assert r.status_code == 503 and r.json()["error"] == "too_many_clients"
        assert r.headers["retry-after"] == "10"


@pytest.mark.parametrize("reading_client", [True, False], ids=["reading", "stalled"])
async def test_stopping_the_server_ends_streams_promptly(tmp_path: Path, reading_client: bool) -> None:
    async with running(tmp_path, ApiSettings(sse_interval=0.05)) as (gw, srv):
        url = srv.url or ""
        ended = asyncio.Event()
        slow: socket.socket | None = None

        async def watch() -> None:
            got: Received = []
            with contextlib.suppress(httpx.HTTPError):
                await consume(url, got, asyncio.Event())
            ended.set()

        task = asyncio.create_task(watch()) if reading_client else None
        if not reading_client:
            slow = socket.create_connection(("127.0.0.1", srv.port or 0))
            slow.sendall(f"GET /api/events HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {VIEWER}\r\n\r\n".encode())
        hub = srv.app.state.hazardgw.hub
        await async_wait_for(lambda: hub.clients == 1, timeout=5)
        await gw.pipeline.emit([reading("PT-201", 1.0)])
        t0 = time.monotonic()
        await srv.stop()
        assert time.monotonic() - t0 < 6
        assert not srv.listening and hub.clients == 0
        if task is not None:
            await asyncio.wait_for(ended.wait(), 5)
            await task
        if slow is not None:
            slow.close()
