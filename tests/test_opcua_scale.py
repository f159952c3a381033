"""The OPC UA adapter against a server in a child process: 5,000 items over several
subscriptions, and a server killed and restarted (values again within 10 s, browse paths
resolved anew: the restarted server gives the path variables other node ids)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

from helpers import async_wait_for
from opcua_support import ChildServer, make_adapter, running, write_site

from adapters.opcua.config import OpcuaSource
from devkit.services import free_port
from gateway.core.models import Quality
from gateway.validate import load_config


def _points(n_nodes: int, n_paths: int, per_folder: int = 20) -> list[dict[str, str]]:
    pts = [{"tag": f"P{k:04d}", "node": f"ns=2;s=Plant.P{k:04d}"} for k in range(n_nodes)]
    pts += [{"tag": f"Q{k:04d}", "path": f"Objects/Plant/Unit{k // per_folder:03d}/Q{k:04d}"}
            for k in range(n_paths)]
    return pts


def _site(tmp: Path, port: int, points: list[dict[str, str]], **kw: object) -> Path:
    src = {"id": "dcs", "type": "opcua", "url": f"opc.tcp://127.0.0.1:{port}", "security": {"policy": "None"},
           "points": points, **kw}
    return write_site(tmp / "site.yaml", [src], [{"id": p["tag"], "kind": "level"} for p in points])


async def test_5000_items_over_subscriptions(tmp_path: Path) -> None:
    port = free_port()
    site = _site(tmp_path, port, _points(4800, 200), interval="1s", timeout="5s", max_items_per_subscription=1000)
    config = load_config(site)
    cfg = config.sources[0]
    assert isinstance(cfg, OpcuaSource)
    server = ChildServer(site, every=1.0)
    server.start()
    try:
        adapter, col = make_adapter(cfg, config.tag_map())
        t0 = time.monotonic()
        async with running(adapter):
            await async_wait_for(lambda: len({r.tag for r in col.readings if r.quality == Quality.GOOD}) == 5000,
                                 timeout=30, interval=0.2, desc="a good value for each of 5,000 items")
            took = time.monotonic() - t0
            h = adapter.health()
            assert [s["items"] for s in h["subscriptions"]] == [1000] * 5
            assert h["unresolved_points"] == 0 and h["ok"]
            # every item keeps reporting (changes, and re-assertions between them)
            mark = col.mark()
            await async_wait_for(lambda: len(col.readings) - mark >= 2 * 5000, timeout=10, interval=0.2)
            per_tag: dict[str, int] = {}
            for r in col.readings[mark:]:
                per_tag[r.tag] = per_tag.get(r.tag, 0) + 1
            assert len(per_tag) == 5000
        assert took < 30
    finally:
        server.stop()


async def test_server_restart_values_flow_again_within_10_s(tmp_path: Path) -> None:
    port = free_port()
    site = _site(tmp_path, port, _points(10, 10, per_folder=5), interval="500ms", timeout="1s")
    config = load_config(site)
    cfg = config.sources[0]
    assert isinstance(cfg, OpcuaSource)
    tags = [p.tag for p in cfg.points]
    server = ChildServer(site, every=0.5)
    server.start()
    try:
        adapter, col = make_adapter(cfg, config.tag_map())
        async with running(adapter):
            await async_wait_for(lambda: all((r := col.last(t)) is not None and r.quality == Quality.GOOD
                                             for t in tags), timeout=15, desc="values before the restart")
            assert server.proc is not None
            server.proc.send_signal(signal.SIGKILL)
            server.proc.wait(10)
            await async_wait_for(lambda: all((r := col.last(t)) is not None and r.quality == Quality.COMM
                                             for t in tags), timeout=10, desc="comm for every point")
            # back with the path variables under other node ids: the old ones are gone
            server.extra = ["--path-id-prefix", "restarted:"]
            ready = server.start()
            ready_ns = time.time_ns()
            await async_wait_for(lambda: all((r := col.last(t)) is not None and r.quality == Quality.GOOD
                                             and r.ts >= ready_ns - 10**9 for t in tags),
                                 timeout=10, desc="every value again within 10 s of the server being back")
            back = time.monotonic() - ready
            h = adapter.health()
            assert h["session_losses"] == 1 and h["unresolved_points"] == 0
        assert back < 10
    finally:
        server.stop()
