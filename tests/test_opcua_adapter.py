"""The OPC UA adapter against a real asyncua server in the test's event loop.

Data types and status codes, timestamps, subscribe and poll, re-assertion of unchanged
values, browse paths, comm on a lost connection and recovery, learned batch sizes, and
read-only operation (the server counts every service the adapter calls).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import time
from typing import Any

import pytest
from helpers import async_wait_for
from opcua_support import make_adapter, running, source, tag_table

from devkit.services import free_port
from devkit.simulator.opcua import MUTATING, OpcuaPlantServer
from gateway.core.metrics import Metrics
from gateway.core.models import Quality

# tag -> (variant type served, value set, status, expected value, expected quality)
CASES: dict[str, tuple[str, Any, str, float | None, str]] = {
    "B": ("Boolean", True, "Good", 1.0, Quality.GOOD),
    "B0": ("Boolean", False, "Good", 0.0, Quality.GOOD),
    "SB": ("SByte", -5, "Good", -5.0, Quality.GOOD),
    "BY": ("Byte", 200, "Good", 200.0, Quality.GOOD),
    "I16": ("Int16", -300, "Good", -300.0, Quality.GOOD),
    "U16": ("UInt16", 60000, "Good", 60000.0, Quality.GOOD),
    "I32": ("Int32", -70000, "Good", -70000.0, Quality.GOOD),
    "U32": ("UInt32", 4_000_000_000, "Good", 4e9, Quality.GOOD),
    "I64": ("Int64", -(2**40), "Good", -(2.0**40), Quality.GOOD),
    "U64": ("UInt64", 2**50, "Good", 2.0**50, Quality.GOOD),
    "F": ("Float", 1.5, "Good", 1.5, Quality.GOOD),
    "D": ("Double", 2.25, "Good", 2.25, Quality.GOOD),
    "DI": ("Int16", 1, "Good", 1.0, Quality.GOOD),  # a number for a discrete tag: 0/1
    "RNG": ("Double", 20.0, "Good", 20.0, Quality.UNCERTAIN),  # outside the tag's range
    "UNC": ("Double", 3.0, "UncertainLastUsableValue", 3.0, Quality.UNCERTAIN),
    "BAD": ("Double", 4.0, "BadSensorFailure", None, Quality.BAD),
    "STR": ("String", "12.5", "Good", None, Quality.BAD),  # a string where a number is expected
    "BA": ("Boolean", True, "Good", None, Quality.BAD),  # Boolean for an analog tag
    "DI5": ("Int16", 5, "Good", None, Quality.BAD),  # not 0/1 for a discrete tag
    "NAN": ("Double", math.nan, "Good", None, Quality.BAD),
    "DT": ("DateTime", dt.datetime(2024, 1, 1, tzinfo=dt.UTC), "Good", None, Quality.BAD),
}
DISCRETE = {"B", "B0", "DI", "DI5"}


def _tags() -> dict[str, Any]:
    specs: dict[str, dict[str, Any]] = {}
    for t in CASES:
        specs[t] = {"kind": "discrete"} if t in DISCRETE else {"kind": "analog"}
    specs["RNG"]["range"] = [0, 10]
    specs["TS"] = {"kind": "analog"}
    specs["NOTS"] = {"kind": "analog"}
    return tag_table(specs)


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_types_statuses_and_timestamps(mode: str) -> None:
    port = free_port()
    tags = _tags()
    points = [{"tag": t, "node": f"ns=2;s=T.{t}"} for t in tags]
    cfg = source(port, points, mode=mode)
    types = {t: c[0] for t, c in CASES.items()}
    metrics = Metrics()
    async with OpcuaPlantServer([cfg], tags, types=types) as sim:
        for t, (_vt, value, status, _v, _q) in CASES.items():
            await sim.set_value(t, value, status=status)
        server_ts = dt.datetime(2030, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)
        await sim.set_value("TS", 7.0, source_ts=None, server_ts=server_ts)
        await sim.set_value("NOTS", 8.0, source_ts=None, server_ts=None)
        adapter, col = make_adapter(cfg, tags, metrics)
        t0 = time.time_ns()
        async with running(adapter):

            def matches() -> bool:
                for t, (_vt, _value, _status, v, q) in CASES.items():
                    r = col.last(t)
                    if r is None or r.quality != q or r.value != v:
                        return False
                return col.last("TS") is not None and col.last("NOTS") is not None

            await async_wait_for(matches, timeout=10, desc=f"every case mapped ({mode})")
            ts = col.of("TS")[0]
            assert ts.value == 7.0 and ts.ts == 1893553445123456000  # ServerTimestamp without a SourceTimestamp
            nots = col.of("NOTS")[0]
            assert nots.value == 8.0 and t0 <= nots.ts <= time.time_ns()  # receipt time
        # neither the start (first connect still running) nor the stop said comm: no false bad alarms
        # at a start or a reload
        assert Quality.COMM not in {r.quality for r in col.readings}
        problems = adapter.health()["problems"]
        assert {"type_mismatch", "not_discrete", "not_finite"} <= set(problems)
        counted = {s.labels["reason"]: s.value for m in metrics.registry.collect()
                   if m.name == "hazardgw_decode_errors" for s in m.samples if s.name.endswith("_total")}
        assert counted["type_mismatch"] >= 3  # String, Boolean for analog, DateTime
        assert sim.writes == 0 and not set(MUTATING) & set(sim.calls)


async def test_steady_values_are_reasserted_each_interval_with_confirmation_time() -> None:
    port = free_port()
    tags = tag_table({"TT": {"kind": "temperature", "range": [0, 100]}})
    cfg = source(port, [{"tag": "TT", "path": "Objects/Plant/V101/TT"}], interval=0.2)
    async with OpcuaPlantServer([cfg], tags) as sim:
        changed_at = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=30)
        await sim.set_value("TT", 25.0, source_ts=changed_at)
        adapter, col = make_adapter(cfg, tags)
        async with running(adapter):
            await async_wait_for(lambda: len(col.of("TT")) >= 6, timeout=10, desc="six readings")
            rs = col.of("TT")
            # the change itself carries its SourceTimestamp; the re-assertions the time the
            # server confirmed the value (a publish response), each later than the one before
            assert rs[0].ts == int(changed_at.timestamp() * 1_000_000) * 1000
            assert all(r.value == 25.0 and r.quality == Quality.GOOD for r in rs)
            later = [r.ts for r in rs[1:]]
            assert later == sorted(later) and later[0] > rs[0].ts + 29 * 10**9
            assert len(set(later)) >= len(later) - 1
            m = col.mark()
            new_ts = dt.datetime.now(dt.UTC)
            await sim.set_value("TT", 26.5, source_ts=new_ts)
            await async_wait_for(lambda: any(r.value == 26.5 for r in col.since(m, "TT")), timeout=5)
            first = next(r for r in col.since(m, "TT") if r.value == 26.5)
            assert first.ts == int(new_ts.timestamp() * 1_000_000) * 1000
            # one reading per interval: about 5 per second, not more
            n0 = len(col.of("TT"))
            t0 = time.monotonic()
            await async_wait_for(lambda: time.monotonic() - t0 > 1.0)
            assert 3 <= len(col.of("TT")) - n0 <= 8
            assert adapter.health()["subscriptions"][0]["keepalive_count"] == 1
        assert sim.writes == 0


async def test_browse_paths_namespaces_and_unresolved_points(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    served = source(port, [
        {"tag": "PT", "path": "Objects/Plant/V101/PT101"},
        {"tag": "TT", "path": "Objects/Plant/V101/3:TT101"},
        {"tag": "X2", "path": "Objects/Plant/2:X"},
        {"tag": "X3", "path": "Objects/Plant/3:X"},
        {"tag": "N", "node": "nsu=urn:dcs:plant;s=Tank.Level"},
    ])
    tags = tag_table({t: {"kind": "level", "range": [0, 100]} for t in
                      ("PT", "TT", "X2", "X3", "AMBIG", "MISSING", "UNKNOWN", "N")})
    cfg = source(port, [
        {"tag": "PT", "path": "/Root/Objects/Plant/V101/PT101"},
        {"tag": "TT", "path": "Objects/Plant/V101/TT101"},
        {"tag": "X3", "path": "Objects/Plant/3:X"},
        {"tag": "AMBIG", "path": "Objects/Plant/X"},
        {"tag": "MISSING", "path": "Objects/Plant/V102/PT101"},
        {"tag": "UNKNOWN", "node": "ns=2;s=No.Such.Node"},
        {"tag": "N", "node": "nsu=urn:dcs:plant;s=Tank.Level"},
    ])
    caplog.set_level(logging.INFO, logger="adapters.opcua")
    async with OpcuaPlantServer([served], tags) as sim:
        for t, v in (("PT", 1.0), ("TT", 2.0), ("X2", 3.0), ("X3", 4.0), ("N", 5.0)):
            await sim.set_value(t, v)
        adapter, col = make_adapter(cfg, tags)
        async with running(adapter):
            await async_wait_for(
                lambda: [(col.last(t) or (0, None))[1] for t in ("PT", "TT", "X3", "N")] == [1.0, 2.0, 4.0, 5.0],
                timeout=10, desc="values of the resolved paths")
            def all_bad() -> bool:
                return all((r := col.last(t)) is not None and r.quality == Quality.BAD
                           for t in ("AMBIG", "MISSING", "UNKNOWN"))

            await async_wait_for(all_bad)
            h = adapter.health()
            assert h["unresolved_points"] == 3 and not h["ok"]
            assert "2 nodes named 'X'" in h["unresolved"]["AMBIG"]
            assert h["unresolved"]["MISSING"] == "no 'V102' below Objects/Plant"
            assert "BadNodeIdUnknown" in h["unresolved"]["UNKNOWN"]
            # bad points keep reporting bad once per interval (no stale, no silence)
            m = col.mark()
            await async_wait_for(lambda: len(col.since(m, "MISSING")) >= 3, timeout=5)
            assert all(r.quality == Quality.BAD and r.value is None for r in col.since(m, "MISSING"))
    logged = [r.getMessage() for r in caplog.records if "have no node" in r.getMessage()]
    assert len(logged) == 1 and "3 points" in logged[0]
    assert sim.calls["browse"] <= 6  # level by level, every node browsed once


async def test_lost_connection_reads_comm_and_values_return(caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    tags = tag_table({"A": {"kind": "pressure"}, "B": {"kind": "discrete"}})
    cfg = source(port, [{"tag": "A", "node": "ns=2;s=A"}, {"tag": "B", "node": "ns=2;i=1001"}], timeout=0.5)
    caplog.set_level(logging.INFO, logger="adapters.opcua")
    async with OpcuaPlantServer([cfg], tags) as sim:
        await sim.set_value("A", 1.25)
        await sim.set_value("B", True)
        adapter, col = make_adapter(cfg, tags)
        async with running(adapter):
            await async_wait_for(lambda: (col.last("A") or (0, 0))[1] == 1.25, timeout=10)
            await sim.pause()
            t_lost = time.monotonic()
            await async_wait_for(lambda: all((r := col.last(t)) is not None and r.quality == Quality.COMM
                                             and r.value is None for t in ("A", "B")), timeout=10)
            assert time.monotonic() - t_lost < 5
            assert not adapter.health()["connected"]
            m = col.mark()
            await async_wait_for(lambda: len(col.since(m, "A")) >= 3, timeout=5)  # comm every interval
            assert {r.quality for r in col.since(m)} == {Quality.COMM}
            await sim.set_value("A", 2.5)
            await sim.resume()
            t_back = time.monotonic()
            await async_wait_for(lambda: (col.last("A") or (0, 0))[1] == 2.5 and col.last("B") == col.last("B")
                                 and (col.last("B") or (0, 0, 0, ""))[3] == Quality.GOOD, timeout=10)
            assert time.monotonic() - t_back < 10
            assert adapter.health()["session_losses"] == 1
        assert sim.writes == 0
    msgs = [r.getMessage() for r in caplog.records]
    assert sum("lost the session" in m for m in msgs) == 1
    assert sum("connected again" in m for m in msgs) == 1
    assert not [r for r in caplog.records if r.name.startswith("asyncua") and r.levelno >= logging.WARNING]


@pytest.mark.parametrize("mode", ["subscribe", "poll"])
async def test_small_server_limits_are_learned(mode: str, caplog: pytest.LogCaptureFixture) -> None:
    port = free_port()
    names = [f"T{k:02d}" for k in range(13)]
    tags = tag_table({t: {"kind": "level"} for t in names})
    cfg = source(port, [{"tag": t, "path": f"Objects/Plant/{t}/LT"} for t in names], mode=mode,
                 max_items_per_subscription=10)
    caplog.set_level(logging.INFO, logger="adapters.opcua")
    limits = {"read": 3, "browse": 2, "monitored_items": 4, "items_per_subscription": 5}
    async with OpcuaPlantServer([cfg], tags, limits=limits) as sim:
        for k, t in enumerate(names):
            await sim.set_value(t, float(k))
        adapter, col = make_adapter(cfg, tags)
        async with running(adapter):
            await async_wait_for(lambda: all((r := col.last(t)) is not None and r.value == float(k)
                                             and r.quality == Quality.GOOD for k, t in enumerate(names)),
                                 timeout=15, desc="all 13 values")
            h = adapter.health()
        assert h["batch_sizes"]["browse"] <= 2
        if mode == "subscribe":
            assert h["batch_sizes"]["monitored_items"] <= 4
            assert h["items_per_subscription"] == 5
            assert [s["items"] for s in h["subscriptions"]] == [5, 5, 3]
        else:
            assert h["batch_sizes"]["read"] <= 3
        assert sim.writes == 0
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "using batches of" in text
    if mode == "subscribe":
        assert "takes 5 monitored items per subscription" in text


async def test_plant_simulator_serves_opcua_points() -> None:
    """`hazardgw simulate`: the plant builds the OPC UA devices from the registry and shows frames."""
    from devkit.simulator.plant import Frame, Plant
    from devkit.simulator.scenarios import Effects
    from gateway.config import Config

    port = free_port()
    config = Config.model_validate({
        "site": {"code": "91320000TEST0001X", "name": "t"},
        "sources": [{"id": "dcs", "type": "opcua", "url": f"opc.tcp://127.0.0.1:{port}",
                     "security": {"policy": "None"}, "interval": "200ms",
                     "points": [{"tag": "PT-1", "path": "Objects/Plant/PT1"}, {"tag": "XS-1", "node": "ns=3;i=7"}]}],
        "tags": [{"id": "PT-1", "kind": "pressure", "unit": "MPa", "range": [0, 2]},
                 {"id": "XS-1", "kind": "discrete"}],
    })
    plant = Plant(config)
    [device] = plant.build_devices()
    await device.start()
    try:
        await device.show(Frame({"PT-1": 1.125, "XS-1": 1.0}), int(time.time() * 1000))
        adapter, col = make_adapter(config.sources[0], config.tag_map())  # type: ignore[arg-type]
        async with running(adapter):
            await async_wait_for(lambda: (col.last("PT-1") or (0, 0))[1] == 1.125
                                 and (col.last("XS-1") or (0, 0))[1] == 1.0, timeout=10)
            # a scenario's silent detector: the DCS reports it lost (BadNoCommunication) -> bad
            await device.show(Frame({"PT-1": 1.5, "XS-1": 1.0}, Effects(silent_tags={"PT-1"})), int(time.time() * 1000))
            await async_wait_for(lambda: (r := col.last("PT-1")) is not None and r.quality == Quality.BAD, timeout=10)
            # a silent source stops listening -> comm for its points; then it answers again
            await device.show(Frame({"PT-1": 1.5, "XS-1": 1.0}, Effects(silent_sources={"dcs"})), 0)
            await async_wait_for(lambda: (r := col.last("XS-1")) is not None and r.quality == Quality.COMM, timeout=10)
            await device.show(Frame({"PT-1": 1.25, "XS-1": 0.0}), int(time.time() * 1000))
            await async_wait_for(lambda: (col.last("PT-1") or (0, 0))[1] == 1.25
                                 and (col.last("XS-1") or (0, 0))[1] == 0.0, timeout=10)
    finally:
        await device.stop()
