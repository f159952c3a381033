"""Alarm KPIs (ISA-18.2 / EEMUA 191) against a journal with known content, and ``GET /api/kpi``.

One hour (six 10-minute periods) starting at a full hour two days ago (Beijing time; recent
enough that the journal's 30-day retention keeps it), written into a real alarm journal
with the journal's own writer:

* period 0: twelve alarms A-01..A-12 raised 10 s apart (flood: more than 10);
* period 1: CH/h raised three times within 40 s (chattering), each acknowledged after 20 s;
  A-01 re-alarmed;
* period 3: P1/hh (priority 1) raised, acknowledged after 120 s, disposed;
* period 4: F/h raised and back 5 s later (fleeting), never acknowledged;
* S/stale raised 30 h before the hour and still active (standing);
* A-01..A-04 acknowledged after 60, 120, 180, 240 s; A-05..A-12 never (stale acks);
  A-01 disposed.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import httpx
import pytest
from test_api_support import H_VIEWER, site

from alerting import AlarmEvent, Journal
from alerting.kpi import KpiSettings, compute, judge
from gateway.supervisor import Gateway

S = 1_000_000_000
BEIJING = dt.timezone(dt.timedelta(hours=8))
_T0 = (dt.datetime.now(BEIJING) - dt.timedelta(days=2)).replace(minute=0, second=0, microsecond=0)
START = int(_T0.timestamp()) * S
END = START + 3600 * S


class Writer:
    def __init__(self) -> None:
        self.events: list[AlarmEvent] = []
        self.occ = 0

    def ev(self, event: str, alarm: str, occ: int, wall: int, prev: str, state: str, *, prio: int = 2,
           ts: int | None = None, user: str | None = None, data: dict[str, Any] | None = None) -> None:
        tag, cond = alarm.split("/")
        self.events.append(AlarmEvent(
            seq=len(self.events) + 1, event=event, alarm=alarm, tag=tag, condition=cond, priority=prio,
            state=state, prev_state=prev, active=state in ("UNACK", "ACKED"), occurrence=occ, value=1.0,
            limit=1.0, ts=ts if ts is not None else wall, wall=wall, hs="HS-001", user=user, data=data))

    def raised(self, alarm: str, wall: int, prio: int = 2) -> int:
        self.occ += 1
        self.ev("raised", alarm, self.occ, wall, "NORM", "UNACK", prio=prio)
        return self.occ

    def acked(self, alarm: str, occ: int, wall: int, prio: int = 2) -> None:
        self.ev("acked", alarm, occ, wall, "UNACK", "ACKED", prio=prio, user="zhao")

    def disposed(self, alarm: str, occ: int, wall: int, prio: int = 2) -> None:
        self.ev("disposed", alarm, occ, wall, "ACKED", "ACKED", prio=prio, user="zhao",
                data={"cause": "leak at flange", "action": "isolated", "handler": "zhao", "result": "closed"})


def known_journal(store: Path, start: int | None = None) -> Journal:
    t0 = START if start is None else start
    w = Writer()
    w.raised("S/stale", t0 - 30 * 3600 * S)
    occs = {}
    for i in range(1, 13):
        occs[i] = w.raised(f"A-{i:02d}/h", t0 + i * 10 * S)
    for i, after in zip(range(1, 5), (60, 120, 180, 240), strict=True):
        w.acked(f"A-{i:02d}/h", occs[i], t0 + (i * 10 + after) * S)
    w.disposed("A-01/h", occs[1], t0 + 300 * S)
    for j in range(3):  # CH/h: three occurrences within 40 s
        t = t0 + (600 + 20 * j) * S
        o = w.raised("CH/h", t)
        w.acked("CH/h", o, t + 20 * S)
        w.ev("cleared", "CH/h", o, t + 21 * S, "ACKED", "NORM")
    w.ev("realarmed", "A-01/h", occs[1], t0 + 700 * S, "ACKED", "UNACK")
    p1 = w.raised("P1/hh", t0 + 1900 * S, prio=1)
    w.acked("P1/hh", p1, t0 + 2020 * S, prio=1)
    w.disposed("P1/hh", p1, t0 + 2100 * S, prio=1)
    f = w.raised("F/h", t0 + 2410 * S)
    w.ev("cleared", "F/h", f, t0 + 2415 * S, "UNACK", "RTNUN", ts=t0 + 2415 * S)
    j = Journal(store)
    j.open()
    for e in w.events:
        j.submit(e, None)
    j.flush()
    return j


def check_known(k: dict[str, Any]) -> None:
    assert k["annunciations"] == 18 and k["periods"] == 6
    assert k["by_priority"] == {"1": 1, "2": 17, "3": 0}
    assert k["per_10min"] == pytest.approx(3.0)
    assert (k["peak_10min"], k["peak_at"]) == (12, START)
    assert k["flood_periods"] == 1 and k["flood_pct"] == pytest.approx(100 / 6)
    assert [r[1] for r in k["rate"]] == [12, 4, 0, 1, 1, 0]
    assert [(c["alarm"], c["count"]) for c in k["top10"][:2]] == [("CH/h", 3), ("A-01/h", 2)]
    assert len(k["top10"]) == 10 and k["top10_pct"] == pytest.approx(100 * 13 / 18)
    assert [(c["alarm"], c["count"]) for c in k["chattering"]] == [("CH/h", 3)]
    assert [(c["alarm"], c["count"]) for c in k["fleeting"]] == [("F/h", 1)]
    assert [s["alarm"] for s in k["standing"]] == ["S/stale"] and k["standing_at_end"] == 1
    assert sorted(s["alarm"] for s in k["stale_acks"]) == [f"A-{i:02d}/h" for i in range(5, 13)]
    assert k["occurrences"] == 17 and k["acked"] == 8
    assert k["ack_p50"] == pytest.approx(90.0) and k["ack_p90"] == pytest.approx(198.0)
    assert k["ack_p1_p50"] == pytest.approx(120.0) and k["ack_p1_p90"] == pytest.approx(120.0)
    assert k["disposed"] == 2 and k["disposition_pct"] == pytest.approx(100 * 2 / 17)
    assert k["p1_occurrences"] == 1 and k["p1_disposed"] == 1
    (p1,) = k["p1"]
    assert (p1["alarm"], p1["acked_by"], p1["cause"], p1["result"]) == ("P1/hh", "zhao", "leak at flange", "closed")
    status = {b["kpi"]: b["status"] for b in k["benchmarks"]}
    assert status["per_10min"] == "bad" and status["peak_10min"] == "bad" and status["flood_pct"] == "bad"
    assert status["chattering"] == "bad" and status["standing"] == "ok" and status["disposition_pct"] == "bad"


def test_kpis_of_a_journal_with_known_content(tmp_path: Path) -> None:
    j = known_journal(tmp_path)
    ann, occ = j.kpi_rows(START, END)
    k = compute(ann, occ, START, END, KpiSettings(), now=END + 60 * S)
    check_known(k.to_dict())
    # an empty period: zero rates, no ack times, no disposition rate (nothing to close)
    e = compute([], [], END, END + 3600 * S).to_dict()
    assert (e["annunciations"], e["per_10min"], e["ack_p50"], e["disposition_pct"]) == (0, 0.0, None, None)


def test_benchmark_judgement() -> None:
    from alerting.kpi import BENCHMARKS

    per = next(b for b in BENCHMARKS if b.kpi == "per_10min")
    assert [judge(per, v) for v in (0.5, 1.0, 1.5, 2.0, 2.5, None)] == ["ok", "ok", "warn", "warn", "bad", "none"]
    disp = next(b for b in BENCHMARKS if b.kpi == "disposition_pct")
    assert [judge(disp, v) for v in (100.0, 99.0)] == ["ok", "bad"]


async def test_api_kpi_route_serves_the_same_figures(tmp_path: Path) -> None:
    store = tmp_path / "store"
    store.mkdir()
    known_journal(store)  # the gateway opens this journal at start
    gw = Gateway(site(store))
    await gw.start()
    try:
        assert gw.api is not None and gw.api.url is not None
        async with httpx.AsyncClient(base_url=gw.api.url, timeout=10) as c:
            params = {"from": f"{_T0:%Y-%m-%dT%H:%M:%S}", "to": f"{_T0 + dt.timedelta(hours=1):%Y-%m-%dT%H:%M:%S}"}
            # (no offset: site time, Asia/Shanghai)
            r = await c.get("/api/kpi", params=params, headers=H_VIEWER)
            assert r.status_code == 200, r.text
            body = r.json()
            assert (body["start"], body["end"], body["source"]) == (START, END, "journal")
            check_known(body)
            assert (await c.get("/api/kpi", params=params)).status_code == 401
            bad = await c.get("/api/kpi", params={"from": params["to"], "to": params["from"]}, headers=H_VIEWER)
            assert (bad.status_code, bad.json()["error"]) == (400, "bad_request")
            # default: the last 24 hours (the known hour is two days old: nothing in it)
            last = await c.get("/api/kpi", headers=H_VIEWER)
            assert last.status_code == 200 and last.json()["annunciations"] == 0
    finally:
        await gw.stop()


def test_kpi_gauges_for_metrics_and_grafana(tmp_path: Path) -> None:
    from gateway.alarmkpi import AlarmKpiGauges
    from gateway.core.metrics import Metrics

    j = known_journal(tmp_path)
    metrics = Metrics()
    g = AlarmKpiGauges(site(tmp_path), lambda: j, metrics, wall=lambda: END)
    values = g.refresh()
    assert values["24h"]["annunciations"] == 18 and values["24h"]["peak_10min"] == 12
    assert values["24h"]["ack_p50_s"] == pytest.approx(90.0)
    assert values["30d"]["annunciations"] == 19  # the standing alarm was raised 30 h before
    sample = metrics.registry.get_sample_value("hazardgw_alarm_kpi", {"kpi": "per_10min", "window": "24h"})
    assert sample == pytest.approx(18 / 144)
    # no journal: an error in health, nothing raised into the loop
    none = AlarmKpiGauges(site(tmp_path), lambda: None, Metrics())
    with pytest.raises(RuntimeError):
        none.refresh()
