"""Every InfluxQL query of the exported dashboards, run against a real influxd with demo data.

The demo site's readings, alarm events and self metrics are written with the gateway's
own line builders (``reading_prefixes``/``reading_line``, ``alarm_line``,
``SelfMetricsWriter``), so a drift between what the gateway writes and what the
dashboards read fails here. Grafana's macros are replaced the way Grafana's InfluxDB
backend does (``$timeFilter`` -> ``time >= <ms>ms and time <= <ms>ms``, ``$__interval`` ->
the panel's interval) before each query runs.
"""

from __future__ import annotations

import re
import time
from collections import defaultdict
from dataclasses import replace
from typing import Any

import pytest
from test_grafana_support import all_queries, demo_config, gateway_lines, panels

from alerting.events import AlarmEvent, alarm_line
from devkit.services import Influxd
from gateway.config import Config
from gateway.core.config import GAS_KINDS
from gateway.core.lineprotocol import reading_line
from gateway.grafana.export import build_site
from gateway.grafana.influxql import expand_macros
from gateway.grafana.texts import Texts
from gateway.sinks.influx import reading_prefixes

T = Texts("zh")  # the demo site is Chinese (notification.language defaults to zh)

S = 1_000_000_000
MINUTE = 60 * S
STATUS = {"HS-001": 3, "HS-002": 1}  # red, yellow
ACTIVE = (1, 1, 0)
CONNECTED = {"gds-1": 1, "rtu-tank": 1, "gds-2": 0, "plant-mqtt": 1}
COMM_TAG = "GT-105"  # goes silent (quality comm) for the last 6 minutes


def _value(config: Config, tag_id: str, i: int) -> float:
    t = config.tag_map()[tag_id]
    if t.kind == "discrete":
        return float(i % 2)
    lo, hi = t.range or (0.0, 100.0)
    return lo + (hi - lo) * (0.2 + 0.01 * (i % 10))


def _event(seq: int, tag: str, hs: str, cond: str, prio: int, event: str, state: str, ts: int,
           value: float, limit: float, occurrence: int, user: str | None = None) -> AlarmEvent:
    return AlarmEvent(seq=seq, event=event, alarm=f"{tag}/{cond}", tag=tag, condition=cond, priority=prio,
                      state=state, prev_state="", active=state in ("UNACK", "ACKED"), occurrence=occurrence,
                      value=value, limit=limit, ts=ts, wall=ts, hs=hs, user=user)


def _events(now: int) -> list[AlarmEvent]:
    return [
        _event(1, "GT-101", "HS-001", "h", 2, "raised", "UNACK", now - 20 * MINUTE, 1.2, 1.0, 1),
        _event(2, "GT-101", "HS-001", "h", 2, "acked", "ACKED", now - 19 * MINUTE, 1.2, 1.0, 1, "zhao"),
        _event(3, "GT-102", "HS-001", "hh", 1, "raised", "UNACK", now - 18 * MINUTE, 2.5, 2.0, 2),
        _event(4, "GT-102", "HS-001", "hh", 1, "cleared", "RTNUN", now - 17 * MINUTE, 0.5, 2.0, 2),
        _event(5, "GT-102", "HS-001", "hh", 1, "acked", "NORM", now - 16 * MINUTE, 0.5, 2.0, 2, "zhao"),
        _event(6, "GT-201", "HS-002", "hh", 1, "raised", "UNACK", now - 10 * MINUTE, 45.0, 40.0, 3),
        _event(7, "GT-201", "HS-002", "hh", 1, "realarmed", "UNACK", now - 5 * MINUTE, 47.0, 40.0, 3),
        # a bump test of GT-103 (test mode): in the history, never in the current alarms or the KPI panels
        replace(_event(8, "GT-103", "HS-001", "h", 2, "raised", "UNACK", now - 4 * MINUTE, 1.5, 1.0, 4), test=True),
    ]


@pytest.fixture(scope="module")
def site() -> tuple[Config, list[dict[str, Any]]]:
    config = demo_config()
    return config, build_site(config).dashboards


@pytest.fixture
def loaded(influxd: Influxd, influx_db: str, site: tuple[Config, list[dict[str, Any]]]) -> dict[str, Any]:
    config, _ = site
    now = time.time_ns()
    prefixes = reading_prefixes(config)
    lines: list[str] = []
    n = 90  # one reading per 10 s for 15 minutes
    for i in range(n):
        ts = now - (n - i) * 10 * S
        for tag_id, prefix in prefixes.items():
            quality = "comm" if tag_id == COMM_TAG and ts > now - 6 * MINUTE else "good"
            value = None if quality == "comm" else _value(config, tag_id, i)
            lines.append(reading_line(prefix, value, quality, ts))
    lines += [alarm_line(e, config.site.code) for e in _events(now)]
    for k in range(30):
        lines += gateway_lines(config, now - k * 10 * S, status=STATUS, active=ACTIVE, connected=CONNECTED)
    influxd.write(influx_db, lines)
    return {"now": now}


def _run(influxd: Influxd, db: str, query: str, now: int, interval: str) -> list[dict[str, Any]]:
    time_filter = f"time >= {(now - 3600 * S) // 1_000_000}ms and time <= {(now + 60 * S) // 1_000_000}ms"
    return influxd.select(db, expand_macros(query, time_filter, interval))


def test_every_dashboard_query_returns_series(
    influxd: Influxd, influx_db: str, site: tuple[Config, list[dict[str, Any]]], loaded: dict[str, Any]
) -> None:
    _config, dashboards = site
    ran = 0
    for d in dashboards:
        for p in panels(d):
            for t in p.get("targets", []):
                rows = _run(influxd, influx_db, t["query"], loaded["now"], p.get("interval") or "10s")
                assert rows, f"{d['title']} / {p['title']}: no series for {t['query']}"
                ran += 1
        for q in all_queries(d)[-1:]:  # the annotation query
            rows = _run(influxd, influx_db, q, loaded["now"], "10s")
            assert rows, f"{d['title']} annotation: no rows for {q}"
            ran += 1
    assert ran > 30


def _panel(dashboards: list[dict[str, Any]], dash_tag: str, title: str) -> dict[str, Any]:
    (d,) = [d for d in dashboards if dash_tag in d["tags"]]
    (p,) = [p for p in panels(d) if p["title"] == title and p["type"] != "row"]
    return p


def test_query_results_match_the_demo_data(
    influxd: Influxd, influx_db: str, site: tuple[Config, list[dict[str, Any]]], loaded: dict[str, Any]
) -> None:
    config, dashboards = site
    now = loaded["now"]

    def run(p: dict[str, Any], target: int = 0) -> list[dict[str, Any]]:
        return _run(influxd, influx_db, p["targets"][target]["query"], now, p.get("interval") or "10s")

    # hazard-source status per source, from the gateway measurement
    status = _panel(dashboards, "overview", T("status"))
    for i, hs in enumerate(config.hazard_sources):
        (row,) = run(status, i)
        assert row["status"] == STATUS[hs.code]

    # active alarms by priority
    active = _panel(dashboards, "overview", T("active"))
    assert [run(active, i)[0][f"P{i + 1}"] for i in range(3)] == list(ACTIVE)

    # current alarms: last state != NORM (GT-102/hh went back to NORM)
    current = run(_panel(dashboards, "overview", T("current")))
    assert {(r["tag"], r["condition"], r["state"]) for r in current} == {
        ("GT-101", "h", "ACKED"), ("GT-201", "hh", "UNACK")}
    hs2_current = run(_panel(dashboards, "hs:HS-002", T("current")))
    assert {r["tag"] for r in hs2_current} == {"GT-201"}

    # alarm history, newest first, per hazard source
    history = run(_panel(dashboards, "alarms", T("history")))
    assert [r["seq"] for r in history] == [8, 7, 6, 5, 4, 3, 2, 1]
    hs1_history = run(_panel(dashboards, "hs:HS-001", T("history")))
    assert {r["hs"] for r in hs1_history} == {"HS-001"} and len(hs1_history) == 6

    # annunciations: raised + realarmed
    rate = run(_panel(dashboards, "alarms", T("rate", per=T("per_min", n=10), n=10)))
    assert sum(r["annunciations"] for r in rate) == 4
    counts = run(_panel(dashboards, "alarms", T("bad_actors")))
    assert {(r["tag"], r["condition"]): r["annunciations"] for r in counts} == {
        ("GT-101", "h"): 1, ("GT-102", "hh"): 1, ("GT-201", "hh"): 2}

    # alarm KPIs (gateway.alarmkpi gauges via the self metrics): per_10min is KPIS[1] -> 1.0 in both windows
    kpi = _panel(dashboards, "alarms", T("kpi_per_10min"))
    assert [run(kpi, i)[0][w] for i, w in enumerate(("24h", "30d"))] == [1.0, 1.0]

    # data online rate: HS-002 all tags good; HS-001 loses one of 21 tags for the last 6 min
    online = _panel(dashboards, "overview", T("online"))
    hs_index = {hs.code: i for i, hs in enumerate(config.hazard_sources)}
    rates: dict[str, list[float]] = defaultdict(list)
    for code, i in hs_index.items():
        rates[code] = [r["online"] for r in run(online, i) if r["online"]]
    n_hs1 = sum(1 for t in config.tags if t.hazard_source == "HS-001")
    assert max(rates["HS-002"]) == 100
    assert max(rates["HS-001"]) == 100
    assert any(abs(v - 100 * (n_hs1 - 1) / n_hs1) < 1e-9 for v in rates["HS-001"]), rates["HS-001"]

    # gas detector in-use rate beside it (gateway.upkeep.inuse via the self metrics): GT-101 in test
    in_use = _panel(dashboards, "overview", T("in_use"))
    gas = [t for t in config.tags if t.kind in GAS_KINDS]
    assert [t["alias"] for t in in_use["targets"]] == [T("site_all"), *(f"{h.code} {h.name}" for h in
                                                                         config.hazard_sources)]
    got = [run(in_use, i)[0]["in_use"] for i in range(len(in_use["targets"]))]
    n_site, n_hs1 = len(gas), sum(1 for t in gas if t.hazard_source == "HS-001")
    assert got == pytest.approx([100 * (n_site - 1) / n_site, 100 * (n_hs1 - 1) / n_hs1, 100.0], abs=0.01)  # 4 decimals
    series = _panel(dashboards, "overview", T("in_use_now"))
    assert [r["in_use"] for r in run(series, 2) if r["in_use"] is not None][-1] == pytest.approx(100.0)

    # connection uptime per data source
    conn = run(_panel(dashboards, "overview", T("uptime")))
    by_comp: dict[str, set[float]] = defaultdict(set)
    for r in conn:
        if r["connected"] is not None:
            by_comp[r["component"]].add(r["connected"])
    assert by_comp == {f"source:{s}": {100.0 * up} for s, up in CONNECTED.items()}

    # a gas panel returns one series per detector of the group, good values only
    (hs1,) = [d for d in dashboards if "hs:HS-001" in d["tags"]]
    (cl2,) = [p for p in panels(hs1) if p["title"].startswith("Cl2")]
    rows = run(cl2)
    assert {r["tag"] for r in rows if r["value"] is not None} == {f"GT-10{i}" for i in range(1, 7)}
    recent = [r for r in rows if r["tag"] == COMM_TAG and r["time"] > now - 5 * MINUTE]
    assert recent and all(r["value"] is None for r in recent)  # comm readings leave a gap, never a value

    # current values table: every tag of the source, with its quality
    values = run(_panel(dashboards, "hs:HS-001", T("current_values")))
    assert {r["tag"] for r in values} == {t.id for t in config.tags if t.hazard_source == "HS-001"}
    assert {r["quality"] for r in values if r["tag"] == COMM_TAG} == {"comm"}


def test_tags_without_a_hazard_source_are_on_the_overview(influxd: Influxd, influx_db: str) -> None:
    base = demo_config()
    loose = {"FT-101", "TT-202"}
    config = base.model_copy(update={"tags": [
        t.model_copy(update={"hazard_source": None}) if t.id in loose else t for t in base.tags]})
    (overview,) = [d for d in build_site(config).dashboards if "overview" in d["tags"]]
    titles = [p["title"] for p in panels(overview)]
    start = titles.index(T("row_loose"))
    loose_panels = [p for p in list(panels(overview))[start + 1:] if p["type"] == "timeseries"][:2]
    assert {r for p in loose_panels for r in re.findall(r"\"tag\" = '([^']+)'", p["targets"][0]["query"])} == loose

    now = time.time_ns()
    prefixes = reading_prefixes(config)
    assert "hs=" not in prefixes["FT-101"]  # the gateway writes no hs tag for them
    lines = [reading_line(prefixes[t], 1.0 + i, "good", now - (30 - i) * 10 * S) for t in loose for i in range(30)]
    influxd.write(influx_db, lines)
    online = next(p for p in panels(overview) if p["title"] == T("online") and p["type"] != "row")
    (target,) = [t for t in online["targets"] if t["alias"] == T("no_hs")]
    rows = _run(influxd, influx_db, target["query"], now, "1m")
    assert max(r["online"] for r in rows) == 100
    for p in loose_panels:
        assert _run(influxd, influx_db, p["targets"][0]["query"], now, "10s")
