"""Loss of monitoring in the alarm engine: one COMM alarm per lost source unit (explicit clocks).

A gas controller with 36 detectors stops answering: one COMM alarm, its 36 BAD alarms
suppressed under it; recovery clears it; a detector that stays lost raises its own alarm
after the hold. A device on a shared bus vs the whole bus. MQTT tags lost by staleness.
Restart. Priorities and hazard-source status.
"""

from __future__ import annotations

from typing import Any

from alerting import AlarmEngine, AlarmEvent
from alerting import states as S
from gateway.config import Config
from gateway.core.metrics import Metrics
from gateway.core.models import Reading

T0 = 1_732_300_000_000_000_000


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def detectors(prefix: str, n: int) -> list[dict[str, Any]]:
    return [
        {"id": f"{prefix}{i:02d}", "kind": "combustible_gas", "gas": "CH4", "unit": "%LEL", "range": [0, 100],
         "hazard_source": "HS-001" if i % 2 else "HS-002",
         "alarms": {"hh": {"limit": 50, "priority": 1}, "h": {"limit": 25, "priority": 2}}}
        for i in range(1, n + 1)
    ]


def modbus(sid: str, tags: list[str], port: int = 5020, device_id: int = 1, **kw: Any) -> dict[str, Any]:
    return {"id": sid, "type": "modbus_tcp", "host": "10.0.0.5", "port": port, "device_id": device_id,
            "poll_interval": "1s", "points": [{"tag": t, "address": 2 * i, "type": "float32"}
                                             for i, t in enumerate(tags)], **kw}


def site(sources: list[dict[str, Any]], tags: list[dict[str, Any]], **extra: Any) -> Config:
    return Config.model_validate({
        "site": {"code": "S", "name": "S"},
        "hazard_sources": [{"code": "HS-001", "name": "Tank farm", "grade": 1},
                           {"code": "HS-002", "name": "Spheres", "grade": 2}],
        "sources": sources,
        "tags": tags,
        "api": {"enabled": False},
        **extra,
    })


def engine(cfg: Config, clock: Clock) -> tuple[AlarmEngine, list[AlarmEvent]]:
    e = AlarmEngine(cfg, Metrics(), None, clock=clock, wall=lambda: T0 + int(clock.t * 1e9))
    events: list[AlarmEvent] = []
    e.subscribe(events.append)
    return e, events


def feed(e: AlarmEngine, tags: list[str], quality: str, value: float | None = 1.0) -> None:
    e.on_readings([Reading(t, value if quality in ("good", "uncertain") else None, T0, quality) for t in tags])


def raised(events: list[AlarmEvent]) -> list[str]:
    return [ev.alarm for ev in events if ev.event in ("raised", "realarmed")]


GDS = [f"GT-{i:02d}" for i in range(1, 37)]


def gds_site(**extra: Any) -> Config:
    return site([modbus("gds-b", GDS, name="GDS-B")], detectors("GT-", 36), **extra)


def test_lost_controller_raises_one_comm_alarm_and_suppresses_its_36_detectors() -> None:
    clock = Clock()
    e, events = engine(gds_site(), clock)
    feed(e, GDS, "good")
    assert events == []
    feed(e, GDS, "comm")  # the controller stops answering: every point reads comm in one poll
    assert raised(events) == ["gds-b/comm"]
    comm = e.get("gds-b/comm")
    assert (comm.state, comm.priority, comm.source) == (S.UNACK, 1, "gds-b")  # a lost gas detector makes it P1
    assert comm.comm is not None and (comm.comm["tags"], comm.comm["detectors"]) == (36, 36)
    assert comm.comm["hazard_sources"] == ["HS-001", "HS-002"] and comm.hazard_sources == ("HS-001", "HS-002")
    sup = [ev for ev in events if ev.event == "suppressed"]
    assert sorted(ev.alarm for ev in sup) == sorted(f"{t}/bad" for t in GDS)
    assert all(ev.data == {"parent": "gds-b/comm"} and ev.state == S.DSUPR for ev in sup)
    assert {v.id for v in e.active()} == {"gds-b/comm"}
    assert all(e.get(f"{t}/bad").parent == "gds-b/comm" for t in GDS)
    # status: the COMM alarm counts in both hazard sources with priority 1 (grade 1 and 2 -> red)
    assert {c: s.status for c, s in e.statuses().items()} == {"HS-001": "red", "HS-002": "red"}
    # the flood counter saw one annunciation, not 37
    assert not e.flood
    # polls go on reading comm: nothing new
    n = len(events)
    for _ in range(5):
        clock.t += 1.0
        feed(e, GDS, "comm")
        e.tick()
    assert len(events) == n

    # recovery: the COMM alarm returns, the children go back to NORM, nothing else raises
    clock.t += 1.0
    feed(e, GDS, "good")
    assert e.get("gds-b/comm").state == S.RTNUN
    assert all(e.get(f"{t}/bad").state == S.NORM for t in GDS)
    assert raised(events) == ["gds-b/comm"]
    assert [ev.comment for ev in events if ev.event == "unsuppressed"][:1] == ["GT-01: reports again"]
    assert {c: s.status for c, s in e.statuses().items()} == {"HS-001": "blue", "HS-002": "blue"}


def test_detector_still_lost_after_recovery_raises_its_own_alarm_after_the_hold() -> None:
    clock = Clock()
    e, events = engine(gds_site(), clock)
    feed(e, GDS, "good")
    feed(e, GDS, "comm")
    clock.t += 10.0
    feed(e, GDS[1:], "good")  # the controller is back but GT-01 still reads comm
    assert e.get("gds-b/comm").state == S.RTNUN
    assert e.get("GT-01/bad").state == S.DSUPR  # given time to report
    hold = 2.0  # 2 poll intervals: the default hold of a 1 s Modbus device
    clock.t += hold - 0.1
    e.tick()
    assert e.get("GT-01/bad").state == S.DSUPR
    clock.t += 0.2
    e.tick()
    a = e.get("GT-01/bad")
    assert (a.state, a.parent) == (S.UNACK, None)
    assert raised(events) == ["gds-b/comm", "GT-01/bad"]


def test_tag_gone_bad_while_its_source_is_healthy_alarms_as_before() -> None:
    clock = Clock()
    e, events = engine(gds_site(), clock)
    feed(e, GDS, "good")
    feed(e, ["GT-07"], "bad")  # detector fault reported by the controller: no loss
    assert raised(events) == ["GT-07/bad"]
    assert e.get("gds-b/comm").state == S.NORM


def test_partial_comm_waits_for_the_hold_then_alarms_on_its_own() -> None:
    clock = Clock()
    e, events = engine(gds_site(), clock)
    feed(e, GDS, "good")
    feed(e, GDS[:10], "comm")  # the device timed out half way through a cycle
    assert raised(events) == []
    clock.t += 1.0
    feed(e, GDS, "comm")  # next cycle: all comm -> the unit is lost, the 10 held ones go under it
    assert raised(events) == ["gds-b/comm"]
    assert len([ev for ev in events if ev.event == "suppressed"]) == 36

    # another time: only some stay lost (a real partial loss): each alarms after the hold
    clock.t += 1.0
    feed(e, GDS, "good")
    events.clear()
    feed(e, GDS[:3], "comm")
    clock.t += 1.0
    e.tick()
    assert raised(events) == []
    clock.t += 1.5
    e.tick()
    assert sorted(raised(events)) == ["GT-01/bad", "GT-02/bad", "GT-03/bad"]
    assert e.get("gds-b/comm").state == S.RTNUN  # from before; not raised again


def test_comm_alarm_covers_tags_without_alarms_and_takes_their_priority() -> None:
    """DCS tags with no alarm of their own are still covered: losing them is a COMM alarm."""
    tags: list[dict[str, Any]] = [{"id": "PT-1", "kind": "pressure", "unit": "MPa", "hazard_source": "HS-001"},
            {"id": "TT-1", "kind": "temperature", "unit": "°C", "hazard_source": "HS-001",
             "alarms": {"h": {"limit": 50, "priority": 3}}},
            {"id": "FT-9", "kind": "flow", "unit": "m3/h"}]
    clock = Clock()
    e, events = engine(site([modbus("dcs", ["PT-1", "TT-1", "FT-9"])], tags), clock)
    assert e.get("dcs/comm").priority == 3  # the highest among the alarms it covers
    feed(e, ["PT-1", "TT-1", "FT-9"], "comm")
    assert raised(events) == ["dcs/comm"]
    assert e.statuses()["HS-001"].counts == (0, 0, 1)
    # no alarm at all on a hazard-source tag: 2 (the implicit BAD/STALE priority)
    e2, _ = engine(site([modbus("dcs", ["PT-1"])], tags[:1]), clock)
    assert e2.get("dcs/comm").priority == 2


SHARED = ["A-1", "A-2", "B-1", "B-2", "C-1"]


def bus_site() -> Config:
    tags = [{"id": t, "kind": "pressure", "unit": "MPa", "hazard_source": "HS-001",
             "alarms": {"h": {"limit": 5}, "bad": {"priority": 2}}} for t in SHARED]
    return site([modbus("dev-a", ["A-1", "A-2"], device_id=1), modbus("dev-b", ["B-1", "B-2"], device_id=2),
                 modbus("dev-c", ["C-1"], device_id=3)], tags)


def test_device_on_a_shared_bus_raises_its_own_comm_after_the_hold() -> None:
    clock = Clock()
    e, events = engine(bus_site(), clock)
    assert "modbus:10.0.0.5:5020/comm" in {v.id for v in e.alarms()}
    feed(e, SHARED, "good")
    feed(e, ["B-1", "B-2"], "comm")  # one device on the bus stops answering
    assert raised(events) == []  # waits: is the whole bus going?
    clock.t += 1.0
    feed(e, ["A-1", "A-2", "C-1"], "good")
    e.tick()
    clock.t += 1.1
    e.tick()
    assert raised(events) == ["dev-b/comm"]
    assert e.get("B-1/bad").parent == "dev-b/comm"
    assert e.get("modbus:10.0.0.5:5020/comm").state == S.NORM


def test_whole_bus_down_raises_one_alarm_for_the_bus() -> None:
    clock = Clock()
    e, events = engine(bus_site(), clock)
    feed(e, SHARED, "good")
    # the bus goes down: each device's poller reports comm in its own cycle
    feed(e, ["A-1", "A-2"], "comm")
    clock.t += 0.4
    feed(e, ["B-1", "B-2"], "comm")
    clock.t += 0.4
    feed(e, ["C-1"], "comm")
    assert raised(events) == ["modbus:10.0.0.5:5020/comm"]
    bus = e.get("modbus:10.0.0.5:5020/comm")
    assert bus.comm is not None and bus.comm["units"] == ["dev-a", "dev-b", "dev-c"] and bus.comm["tags"] == 5
    assert {e.get(f"dev-{x}/comm").parent for x in "abc"} == {"modbus:10.0.0.5:5020/comm"}
    assert {e.get(f"{t}/bad").parent for t in SHARED} == {"dev-a/comm", "dev-b/comm", "dev-c/comm"}
    clock.t += 30
    e.tick()
    assert raised(events) == ["modbus:10.0.0.5:5020/comm"]
    # the bus is back but dev-c stays silent: after the hold, dev-c raises its own COMM alarm
    feed(e, ["A-1", "A-2", "B-1", "B-2"], "good")
    assert e.get("modbus:10.0.0.5:5020/comm").state == S.RTNUN
    clock.t += 2.1
    e.tick()
    assert raised(events) == ["modbus:10.0.0.5:5020/comm", "dev-c/comm"]
    assert e.get("C-1/bad").state == S.DSUPR  # still explained by dev-c


def test_mqtt_broker_loss_shows_as_stale_and_raises_one_comm_alarm() -> None:
    tags: list[dict[str, Any]] = [
        {"id": f"WT-{i}", "kind": "combustible_gas", "gas": "CH4", "unit": "%LEL", "range": [0, 100],
         "hazard_source": "HS-002", "stale_after": "30s"} for i in range(1, 5)]
    tags.append({"id": "XX-1", "kind": "analog"})  # no stale_after: cannot show a loss, not watched
    src = {"id": "wireless", "type": "mqtt", "url": "mqtt://10.0.0.9",
           "subscriptions": [{"topic": "w/#", "points": [{"tag": t["id"], "path": f"$.{t['id']}"} for t in tags]}]}
    clock = Clock()
    e, events = engine(site([src], tags), clock)
    feed(e, [t["id"] for t in tags], "good")
    for t in ["WT-1", "WT-2", "WT-3", "WT-4"]:  # messages came at different moments
        clock.t += 2.0
        feed(e, [t], "good")
    clock.t += 25.0  # the broker connection is gone: they go stale one after the other
    e.tick()
    assert e.get("WT-1/stale").active and raised(events) == []  # WT-1 is stale: held, waiting for the unit
    for _ in range(6):
        clock.t += 1.0
        e.tick()
    assert raised(events) == ["wireless/comm"]
    assert sorted(ev.alarm for ev in events if ev.event == "suppressed") == [f"WT-{i}/stale" for i in range(1, 5)]


def test_restart_keeps_the_comm_alarm_and_does_not_clear_it_on_partial_knowledge() -> None:
    clock = Clock()
    cfg = gds_site()
    e, _ = engine(cfg, clock)
    feed(e, GDS, "comm")
    snaps = {a.key: a.persist() for a in e._alarms.values()}
    e2, ev2 = engine(cfg, clock)
    from alerting.journal import Restored

    e2.restore(Restored(alarms=snaps, max_seq=100, max_occurrence=10))
    assert e2.get("gds-b/comm").state == S.UNACK and e2.get("GT-01/bad").parent == "gds-b/comm"
    feed(e2, GDS[:5], "comm")  # the first polls after the restart: nothing decided yet, nothing changes
    assert ev2 == []
    feed(e2, GDS[5:], "comm")
    assert ev2 == []
    feed(e2, GDS, "good")
    assert [ev.event for ev in ev2 if ev.alarm == "gds-b/comm"] == ["cleared"]
    assert e2.get("GT-01/bad").state == S.NORM


def test_comm_alarms_can_be_disabled() -> None:
    clock = Clock()
    e, events = engine(gds_site(alarming={"comm": {"enabled": False}}), clock)
    feed(e, GDS, "comm")
    assert len(raised(events)) == 36


def test_comm_on_delay() -> None:
    clock = Clock()
    e, events = engine(gds_site(alarming={"comm": {"on_delay": "5s"}}), clock)
    feed(e, GDS, "comm")
    assert raised(events) == []
    for _ in range(4):  # the controller stays silent, polled every second
        clock.t += 1.0
        feed(e, GDS, "comm")
        e.tick()
        assert raised(events) == []  # the children wait for the parent (hold 2 s + the 5 s on-delay)
    clock.t += 1.0
    e.tick()
    assert raised(events) == ["gds-b/comm"]
    assert len([ev for ev in events if ev.event == "suppressed"]) == 36


def test_vote_tripped_only_by_lost_detectors_is_explained_by_the_comm_alarm() -> None:
    votes = [{"id": "VOTE-1", "tags": ["GT-01", "GT-02", "GT-03"], "k": 2, "condition": "h", "priority": 1}]
    clock = Clock()
    e, events = engine(gds_site(votes=votes), clock)
    feed(e, GDS, "good", 1.0)
    feed(e, GDS, "comm")
    assert raised(events) == ["gds-b/comm"]
    assert e.get("VOTE-1/vote").parent == "gds-b/comm"
    feed(e, GDS, "good", 1.0)
    assert e.get("VOTE-1/vote").state == S.NORM

    # one detector really in alarm, one lost: still fewer than k real trips -> explained by the loss
    events.clear()
    feed(e, ["GT-01"], "good", 30.0)  # H (25)
    feed(e, GDS, "comm")
    assert raised(events) == ["GT-01/h", "gds-b/comm"]
    assert e.get("VOTE-1/vote").state == S.DSUPR and e.get("GT-01/h").state == S.UNACK  # H kept through the loss
    # two detectors in alarm before the loss: the vote is real, raised, and stays raised through the loss
    feed(e, GDS, "good", 1.0)
    e.ack("GT-01/h", "zhao")
    events.clear()
    feed(e, ["GT-01", "GT-02"], "good", 30.0)
    assert "VOTE-1/vote" in raised(events)
    feed(e, GDS, "comm")
    assert e.get("VOTE-1/vote").state == S.UNACK


def test_push_texts_summarise_by_root_cause() -> None:
    from alerting.notify.records import AlarmInfo
    from alerting.notify.templates import Templates

    cfg = gds_site()
    t = Templates(cfg)
    comm = AlarmInfo(7, "gds-b/comm", "gds-b", "comm", 1, "HS-001", 36.0, None, T0)
    title, body = t.alarm(comm, "zh")
    assert title == "【一级(紧急)】Tank farm GDS-B 通讯中断"
    assert "位号：GDS-B gds-b" in body and "报警：通讯中断：36 个探测器，重大危险源 HS-001、HS-002" in body
    title, body = t.alarm(comm, "en")
    assert title == "[P1 emergency] Tank farm GDS-B communication lost"
    assert "Alarm: communication lost: 36 detectors, major hazard sources HS-001, HS-002" in body
    # a flood summary puts the root cause first, in words
    h = AlarmInfo(8, "PT-9/h", "PT-9", "h", 2, "HS-001", 5.0, 4.0, T0)
    _, text = t.summary([(h, "L1"), (comm, "L2")], "zh", "http://gw/", 60)
    lines = text.splitlines()
    assert lines[1].endswith(" 一级 GDS-B 通讯中断：36 个探测器，重大危险源 HS-001、HS-002 L2")
    assert "PT-9" in lines[2]
    fields = t.sms_fields(comm, "zh")
    assert (fields["tag"], fields["condition"], fields["value"]) == ("GDS-B", "通讯中断", "36 个位号无数据")
