"""Detector upkeep pieces on their own, with explicit clocks: test mode and its records, expiry and
restarts, calibration due dates, the in-use rate (投用率) and its persistence, the Modbus/MQTT
point addresses and raw words.

A real alarm engine (tests/test_alarm_support.py ``Harness``) is the test mode's listener, as
in the gateway; the upkeep store is a real SQLite file in a temp dir.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from helpers import async_wait_for
from test_alarm_support import FakeClock, Harness, make_config

from devkit.services import free_port
from devkit.simulator.modbus import ModbusPlantServer
from gateway.config import Config
from gateway.core.metrics import Metrics
from gateway.core.models import Reading
from gateway.upkeep.calibration import Calibrations, check_problems, state_of
from gateway.upkeep.inuse import InUseRate
from gateway.upkeep.store import UpkeepStore
from gateway.upkeep.testmode import MAX_DURATION, StoreUnavailable, TestMode, TestModeError, default_levels
from gateway.validate import validate_text

S = 1_000_000_000


def _gas(tag: str, hs: str = "HS-1", **extra: Any) -> dict[str, Any]:
    return {"id": tag, "kind": "toxic_gas", "gas": "Cl2", "unit": "mg/m3", "hazard_source": hs, "range": [0, 10],
            "alarms": {"h": {"limit": 1.0, "priority": 2}, "hh": {"limit": 2.0, "priority": 1}}, **extra}


def _config(store: Path, *extra: dict[str, Any], sources: list[dict[str, Any]] | None = None) -> Config:
    tags = [_gas("GT-1"), _gas("GT-2"), {"id": "O2-1", "kind": "oxygen", "unit": "%VOL", "hazard_source": "HS-3",
                                         "alarms": {"l": {"limit": 19.5}, "h": {"limit": 23.5}}},
            {"id": "PT-1", "kind": "pressure", "unit": "MPa", "hazard_source": "HS-3"}, *extra]
    return make_config(tags, store=str(store), sources=sources or [
        {"id": "gds", "type": "modbus_tcp", "host": "127.0.0.1", "port": 1502, "poll_interval": "1s",
         "points": [{"tag": "GT-1", "address": 0, "type": "float32"},
                    {"tag": "GT-2", "address": 2, "type": "float32"}]},
    ])


class Rig:
    """An engine on a fake clock + a test mode on the same clocks, wired as the supervisor wires them."""

    def __init__(self, store: Path, config: Config | None = None, clock: FakeClock | None = None) -> None:
        self.config = config or _config(store)
        self.h = Harness(self.config, clock=clock)
        self.clock = self.h.clock
        self.tm = TestMode(self.config, UpkeepStore(store), clock=self.clock, wall=self.clock.wall)
        self.tm.listeners = [("alarms", self.h.engine.set_tests)]
        self.h.engine.subscribe(self.tm.on_alarm_event)

    def feed(self, tag: str, value: float) -> None:
        r = [Reading(tag, value, self.clock.wall(), "good")]
        self.h.engine.on_readings(r)
        self.tm.on_readings(r)

    async def start(self) -> Rig:
        await self.tm.load()
        await self.tm.start()
        return self

    async def stop(self) -> None:
        await self.tm.stop()


# ----------------------------------------------------------------------------- test mode


def test_default_levels_follow_the_direction_gas_drives_the_detector(tmp_path: Path) -> None:
    tags = _config(tmp_path).tag_map()
    assert default_levels(tags["GT-1"]) == ("h", "hh")
    assert default_levels(tags["O2-1"]) == ("l",)  # oxygen: the low limits (deficiency)
    assert default_levels(tags["PT-1"]) == ()


async def test_bump_test_records_levels_time_to_alarm_peak_and_who(tmp_path: Path) -> None:
    rig = await Rig(tmp_path).start()
    try:
        (rec,), skipped = await rig.tm.begin(["GT-1"], 3600, "zhao", comment="50 ppm Cl2 bottle")
        assert skipped == [] and rec.levels == ("h", "hh") and rec.by == "zhao" and rec.id is not None
        assert rig.h.engine.testing == {"GT-1"}
        rig.clock.advance(12)
        rig.feed("GT-1", 1.4)  # H after 12 s
        rig.clock.advance(8)
        rig.feed("GT-1", 3.1)  # HH after 20 s, peak 3.1
        rig.feed("GT-1", 0.2)
        assert all(e.test for e in rig.h.events)
        rig.clock.advance(10)
        (done,) = await rig.tm.end(["GT-1"], "li")
        assert (done.ended_by, done.end_reason, done.result) == ("li", "ended", "pass")
        assert (done.seconds_to("h"), done.seconds_to("hh"), done.first_alarm_s) == (12.0, 20.0, 12.0)
        assert (done.peak, done.low) == (3.1, 0.2)
        assert rig.h.engine.testing == frozenset()
        # the record is in the store, as the report and GET /api/tests read it
        (row,) = await rig.tm.records(None, None)
        assert row.to_dict() == done.to_dict()
        assert row.to_dict()["reached"]["hh"]["after_s"] == 20.0
    finally:
        await rig.stop()


async def test_refusals(tmp_path: Path) -> None:
    rig = await Rig(tmp_path).start()
    try:
        for tags, duration, status in ((["GT-9"], 60, 404), (["GT-1"], MAX_DURATION + 1, 400), (["GT-1"], 0, 400),
                                       ([], 60, 400)):
            with pytest.raises(TestModeError) as e:
                await rig.tm.begin(tags, duration, "zhao")
            assert e.value.status == status
        await rig.tm.begin(["GT-1"], 60, "zhao")
        with pytest.raises(TestModeError, match="already in test") as e:
            await rig.tm.begin(["GT-1"], 60, "li")
        assert e.value.status == 409
        with pytest.raises(TestModeError) as e:
            await rig.tm.end(["GT-2"], "li")
        assert e.value.status == 409
        # a whole source: the tag already in test is skipped, the other starts
        started, skipped = await rig.tm.begin(None, 600, "li", source="gds")
        assert [r.tag for r in started] == ["GT-2"] and skipped == [("GT-1", "already in test")]
        assert [r.source for r in started] == ["gds"]
        ended = await rig.tm.end(None, "li", source="gds")
        assert sorted(r.tag for r in ended) == ["GT-1", "GT-2"]
    finally:
        await rig.stop()


async def test_expiry_ends_the_test_and_raises_a_still_present_alarm_as_real(tmp_path: Path) -> None:
    rig = await Rig(tmp_path).start()
    try:
        (rec,), _ = await rig.tm.begin(["GT-1"], 600, "zhao")
        rig.feed("GT-1", 2.6)  # gas applied, still there when the test runs out
        assert [(e.alarm, e.event, e.test) for e in rig.h.events] == [("GT-1/hh", "raised", True),
                                                                      ("GT-1/h", "raised", True)]
        rig.clock.advance(599)
        assert await rig.tm.tick() == []
        rig.h.events.clear()
        rig.clock.advance(1)
        (done,) = await rig.tm.tick()
        assert (done.end_reason, done.ended_by, done.ended) == ("expired", "system", rec.until)
        got = [(e.alarm, e.event, e.test) for e in rig.h.events]
        assert got == [("GT-1/hh", "test_ended", True), ("GT-1/hh", "raised", False),
                       ("GT-1/h", "test_ended", True), ("GT-1/h", "raised", False)]
        assert rig.h.engine.status("HS-1").counts == (1, 1, 0)
    finally:
        await rig.stop()


async def test_a_restart_neither_ends_nor_extends_a_test(tmp_path: Path) -> None:
    clock = FakeClock()
    rig = await Rig(tmp_path, clock=clock).start()
    (rec,), _ = await rig.tm.begin(["GT-1"], 600, "zhao")
    rig.feed("GT-1", 1.5)
    await rig.stop()
    # 100 s later a new gateway (new monotonic clock, same wall) resumes it with 500 s left
    clock2 = FakeClock(50.0)
    since = [100]
    clock2.wall = lambda: rec.started + since[0] * S  # type: ignore[method-assign]
    rig2 = Rig(tmp_path, clock=clock2)
    await rig2.start()
    try:
        assert set(rig2.tm.active) == {"GT-1"} and rig2.h.engine.testing == {"GT-1"}
        assert rig2.tm.active["GT-1"].reached.keys() == {"h"}  # the progress was saved at stop
        clock2.advance(499)
        assert await rig2.tm.tick() == []
        clock2.advance(1)
        since[0] = 600
        (done,) = await rig2.tm.tick()
        assert done.ended == rec.until
    finally:
        await rig2.stop()


async def test_a_test_that_expired_while_the_gateway_was_down_ends_at_its_expiry(tmp_path: Path) -> None:
    rig = await Rig(tmp_path).start()
    (rec,), _ = await rig.tm.begin(["GT-1"], 60, "zhao")
    await rig.stop()
    clock = FakeClock()
    clock.wall = lambda: rec.until + 3600 * S  # type: ignore[method-assign]
    rig2 = Rig(tmp_path, clock=clock)
    await rig2.tm.load()
    assert rig2.h.engine.testing == {"GT-1"}  # still in test until everything downstream has started
    await rig2.tm.start()
    try:
        assert rig2.tm.active == {} and rig2.h.engine.testing == frozenset()
        (row,) = await rig2.tm.records(None, None)
        assert (row.end_reason, row.ended) == ("expired", rec.until)
    finally:
        await rig2.stop()


def _block_store(db: Path) -> None:
    """Put a directory where the store's file was: it cannot be opened (for root too, unlike modes)."""
    for f in db.parent.glob(db.name + "*"):
        f.unlink()
    db.mkdir()


async def test_store_failure_starts_nothing(tmp_path: Path) -> None:
    rig = await Rig(tmp_path).start()
    db = tmp_path / "upkeep.sqlite3"
    try:
        rig.tm.store.close()
        _block_store(db)
        with pytest.raises(StoreUnavailable):
            await rig.tm.begin(["GT-1"], 60, "zhao")
        assert rig.tm.active == {} and rig.h.engine.testing == frozenset()
    finally:
        db.rmdir()
        await rig.stop()


# ----------------------------------------------------------------------------- calibration


def test_calibration_due_and_overdue_from_config_and_records(tmp_path: Path) -> None:
    cfg = _config(tmp_path, _gas("GT-3", calibration={"last": "2025-12-01", "interval": "365d"}),
                  _gas("GT-4", calibration={"last": "2025-11-01", "interval": "365d"}),
                  _gas("GT-5", calibration={"last": "2025-11-15", "interval": "180d"}))
    on = dt.date(2026, 11, 20)
    tags = cfg.tag_map()
    s3 = state_of(tags["GT-3"], None, on)
    assert (s3.status, s3.due, s3.days_left, s3.source) == ("due", dt.date(2026, 12, 1), 11, "config")
    assert state_of(tags["GT-4"], None, on).status == "overdue"
    assert state_of(tags["GT-1"], None, on).status == "none"
    # check warns with the path of the entry
    found = {p.path[1]: p for p in check_problems(cfg, on)}
    assert set(found) == {4, 5, 6} and all(p.severity == "warning" for p in found.values())
    assert "calibration due on 2026-12-01 (in 11 days" in found[4].message
    assert "calibration overdue: it was due on 2026-11-01" in found[5].message


async def test_recorded_calibration_supersedes_the_config(tmp_path: Path) -> None:
    cfg = _config(tmp_path, _gas("GT-3", calibration={"last": "2025-01-10"}))
    store = UpkeepStore(tmp_path)
    store.open()
    wall = int(dt.datetime(2026, 11, 20, 9, tzinfo=dt.UTC).timestamp()) * S
    cal = Calibrations(cfg, store, wall=lambda: wall)
    await cal.load()
    assert cal.overdue() == {"GT-3"}
    s = await cal.record("GT-3", "zhao", date=dt.date(2026, 11, 19), interval_s=180 * 86400.0, comment="cert 42")
    assert (s.status, s.last, s.due, s.source, s.by) == ("ok", dt.date(2026, 11, 19), dt.date(2027, 5, 18), "record",
                                                          "zhao")
    assert cal.overdue() == set()
    with pytest.raises(ValueError, match="future"):
        await cal.record("GT-3", "zhao", date=dt.date(2026, 12, 1))
    with pytest.raises(LookupError):
        await cal.record("nope", "zhao")
    # a new Calibrations (a restart) reads it back
    cal2 = Calibrations(cfg, store, wall=lambda: wall)
    await cal2.load()
    assert cal2.states()["GT-3"].source == "record" and cal2.overdue() == set()
    store.close()


def test_check_reports_calibration_warnings_with_their_line(tmp_path: Path) -> None:
    text = f"""
site: {{code: S1, name: site}}
store: {{path: {tmp_path}}}
tags:
  - id: GT-1
    kind: toxic_gas
    gas: Cl2
    calibration: {{last: 2020-01-01, interval: 365d}}
"""
    res = validate_text(text)
    assert res.config is not None
    (w,) = [p for p in res.warnings if "calibration" in p.message]
    assert w.line == 8 and "overdue: it was due on 2020-12-31" in w.message  # 2020 is a leap year
    bad = validate_text(text.replace("365d", "0s"))
    assert any("interval must be 1d..10 years" in p.message for p in bad.errors)


# ----------------------------------------------------------------------------- in-use rate (投用率)


def test_in_use_rate_counts_quality_test_out_of_service_and_overdue(tmp_path: Path) -> None:
    cfg = _config(tmp_path, _gas("GT-3", hs="HS-3"))
    now = [1_800_000_000.0]
    latest = {t: Reading(t, 0.0, 0, "good") for t in ("GT-1", "GT-2", "GT-3", "O2-1")}
    testing: set[str] = set()
    oos: set[str] = set()
    overdue: set[str] = set()
    m = Metrics()
    iu = InUseRate(cfg, m, latest=latest, testing=lambda: frozenset(testing), out_of_service=lambda: oos,
                   overdue=lambda: overdue, clock=lambda: now[0])
    iu.sample()
    for _ in range(30):  # 5 minutes all in service
        now[0] += 10
        iu.sample()
    r = iu.rates()
    assert r["site"] == {"hour": 1.0, "day": 1.0, "tags": 4, "in_service": 4}
    assert r["hazard_sources"]["HS-1"]["tags"] == 2 and r["not_in_service"] == {}
    # 5 minutes with GT-1 in test, GT-2 overdue, GT-3 out of service, O2-1 bad
    testing.add("GT-1")
    overdue.add("GT-2")
    oos.add("GT-3")
    latest["O2-1"] = Reading("O2-1", None, 0, "bad")
    for _ in range(30):
        now[0] += 10
        iu.sample()
    r = iu.rates()
    assert r["site"]["hour"] == 0.5 and r["site"]["in_service"] == 0
    assert r["hazard_sources"]["HS-1"]["hour"] == 0.5
    assert r["not_in_service"] == {"GT-1": ["test"], "GT-2": ["calibration_overdue"], "GT-3": ["out_of_service"],
                                   "O2-1": ["quality"]}
    reg = m.registry
    assert reg.get_sample_value("hazardgw_inuse_rate", {"scope": "site", "id": "TESTSITE", "window": "1h"}) == 0.5
    assert reg.get_sample_value("hazardgw_inuse_tags", {"scope": "hazard_source", "id": "HS-1",
                                                         "state": "total"}) == 2


async def test_in_use_rate_survives_a_restart_and_counts_the_downtime_as_not_in_use(tmp_path: Path) -> None:
    cfg = _config(tmp_path)
    now = [1_800_000_000.0]
    latest = {t: Reading(t, 0.0, 0, "good") for t in ("GT-1", "GT-2", "O2-1")}
    path = tmp_path / "inuse.json"

    def make() -> InUseRate:
        return InUseRate(cfg, None, path=path, latest=latest, testing=frozenset, out_of_service=set, overdue=set,
                         clock=lambda: now[0])

    iu = make()
    await iu.load()
    for _ in range(90):  # 15 minutes in service
        now[0] += 10
        iu.sample()
    await iu.save()
    assert path.stat().st_mode & 0o777 == 0o600
    assert json.loads(path.read_bytes())["version"] == 1
    now[0] += 15 * 60  # down for 15 minutes
    iu2 = make()
    await iu2.load()
    assert iu2.rates()["site"]["hour"] == pytest.approx(0.5, abs=0.01)
    path.write_text("{not json")
    iu3 = make()
    await iu3.load()
    assert iu3.load_error is not None and iu3.rates()["site"]["hour"] is None


# ----------------------------------------------------------------------------- point addresses, raw words


def test_point_addresses_of_modbus_and_mqtt() -> None:
    cfg = Config.model_validate({
        "site": {"code": "S", "name": "S"},
        "sources": [
            {"id": "gds", "type": "modbus_tcp", "host": "10.0.0.5", "device_id": 3, "byte_order": "CDAB", "points": [
                {"tag": "GT-1", "table": "holding", "address": 0, "type": "float32"},
                {"tag": "XV-1", "table": "holding", "address": "40.3", "type": "bool"},
                {"tag": "F-1", "table": "discrete", "address": 7, "type": "bool"}]},
            {"id": "mq", "type": "mqtt", "url": "mqtt://127.0.0.1:1883", "subscriptions": [
                {"topic": "plant/{dev}/telemetry", "points": [
                    {"tag": "GT-2", "path": "$.gt2", "match": {"dev": "gds7"}, "scale": 0.1}]}]},
        ],
        "tags": [{"id": t} for t in ("GT-1", "XV-1", "F-1", "GT-2")],
    })
    where = {t: w for s in cfg.sources for t, w in s.point_addresses().items()}
    assert where == {
        "GT-1": "holding:0 (40001) float32 CDAB, unit 3",
        "XV-1": "holding:40.3 (40041.3) bool, unit 3",
        "F-1": "discrete:7 (10008), unit 3",
        "GT-2": "plant/gds7/telemetry $.gt2 x0.1+0",
    }


async def test_modbus_adapter_gives_the_register_words_of_its_last_answer(tmp_path: Path) -> None:
    port = free_port()
    cfg = _config(tmp_path, sources=[{"id": "gds", "type": "modbus_tcp", "host": "127.0.0.1", "port": port,
                                      "poll_interval": "100ms", "timeout": "300ms", "points": [
                                          {"tag": "GT-1", "address": 0, "type": "float32"},
                                          {"tag": "GT-2", "table": "discrete", "address": 0, "type": "bool"}]}])
    plant = ModbusPlantServer([*cfg.sources], cfg.tag_map())
    await plant.start()
    from adapters.registry import build_sources
    from gateway.core.sources import RawPoints, SourceContext

    async def emit(batch: Any) -> None:
        return None

    (adapter,) = build_sources(cfg.sources, SourceContext(emit=emit, metrics=Metrics(), tags=cfg.tag_map()))
    try:
        plant.set_value("GT-1", 20.0)  # float32 20.0 = 0x41A0 0x0000
        plant.set_value("GT-2", 1.0)
        assert isinstance(adapter, RawPoints) and adapter.raw_points() == {}
        await adapter.start()
        raw = await async_wait_for(lambda: adapter.raw_points().get("GT-1") and adapter.raw_points(), timeout=10)
        assert raw["GT-1"].text == "0x41A0 0x0000" and raw["GT-1"].words == (0x41A0, 0)
        assert raw["GT-2"].text == "1" and raw["GT-1"].ts is not None
    finally:
        await adapter.stop()
        await plant.stop()
