"""Helpers (no tests) shared by tests/test_grafana_*.py: load the demo site, walk exported dashboards,
take InfluxQL queries apart, and produce demo data with the gateway's own writers."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.config import Config
from gateway.validate import load_config

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "config" / "demo-site.yaml"


def demo_config() -> Config:
    return load_config(DEMO, env={})


def panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Every panel, rows' nested panels included."""
    for p in dashboard.get("panels", []):
        yield p
        yield from p.get("panels", [])


def targets(dashboard: dict[str, Any]) -> Iterator[tuple[dict[str, Any], dict[str, Any]]]:
    """(panel, target) for every query target of every panel."""
    for p in panels(dashboard):
        for t in p.get("targets", []):
            yield p, t


def annotation_queries(dashboard: dict[str, Any]) -> list[str]:
    out = []
    for a in dashboard["annotations"]["list"]:
        if a.get("datasource", {}).get("type") == "influxdb":
            out.append(a["target"]["query"])
    return out


def all_queries(dashboard: dict[str, Any]) -> list[str]:
    return [t["query"] for _p, t in targets(dashboard)] + annotation_queries(dashboard)


_STRING = re.compile(r"'(?:[^'\\]|\\.)*'")
_IDENT = re.compile(r'"(?:[^"\\]|\\.)*"')


def measurements(query: str) -> set[str]:
    """Measurements named after FROM (subqueries included)."""
    return set(re.findall(r'FROM (?:"[^"]*"\.)?"([^"]+)"', query))


def tag_values(query: str, key: str) -> set[str]:
    """Values compared to tag ``key`` with ``"key" = '...'``."""
    return {m.replace("\\'", "'") for m in re.findall(rf"\"{re.escape(key)}\" = '((?:[^'\\\\]|\\\\.)*)'", query)}


def selected_fields(query: str) -> set[str]:
    """Fields read by aggregate calls (``last("x")``) and plain selections (``SELECT "a", "b"``)."""
    fields = set(re.findall(r'\w+\("([^"]+)"\)', query))
    for m in re.finditer(r'SELECT ((?:"[^"]+"(?:, )?)+) FROM', query):
        fields |= set(re.findall(r'"([^"]+)"', m.group(1)))
    return fields


def bare_words(query: str) -> str:
    """The query with string literals and quoted identifiers blanked out."""
    return _IDENT.sub('""', _STRING.sub("''", query))


# --------------------------------------------------------------------------- demo data


def gateway_lines(config: Config, ts_ns: int, *, status: dict[str, int], active: tuple[int, int, int],
                  connected: dict[str, int]) -> list[str]:
    """``gateway`` lines as the gateway writes them (gateway.selfmetrics over the real collectors)."""
    from alerting.metrics import AlarmMetrics
    from gateway.core.metrics import Metrics
    from gateway.selfmetrics import SelfMetricsWriter

    metrics = Metrics()
    alarm_metrics = AlarmMetrics(metrics.registry)
    for hs, rank in status.items():
        alarm_metrics.hs_status.labels(hs).set(rank)
    for prio, n in zip((1, 2, 3), active, strict=True):
        alarm_metrics.active_children[prio].set(n)
    for source, up in connected.items():
        metrics.source_connected.labels(source).set(up)
    from gateway.alarmkpi import KPIS, WINDOWS, KpiMetrics

    kpi = KpiMetrics(metrics.registry)  # the alarm KPI gauges (gateway.alarmkpi), with a value each
    for window in WINDOWS:
        for i, name in enumerate(KPIS):
            kpi.kpi.labels(name, window).set(float(i))
    in_use_rate(config, metrics, ts_ns)
    writer = SelfMetricsWriter(config.site.code, metrics, sink=None, wall=lambda: ts_ns)  # type: ignore[arg-type]
    return writer.snapshot()


IN_TEST = "GT-101"  # the in-use gauges of gateway_lines: this detector is in test, every other one in service


def in_use_rate(config: Config, metrics: Any, ts_ns: int) -> Any:
    """The real in-use rate collector (gateway.upkeep.inuse) over one minute of samples with every gas
    detector good and :data:`IN_TEST` in test mode."""
    from gateway.core.models import Reading
    from gateway.upkeep.inuse import InUseRate

    now = ts_ns / 1e9
    latest = {t.id: Reading(t.id, 1.0, ts_ns, "good") for t in config.tags}
    rate = InUseRate(config, metrics, latest=latest, testing=lambda: frozenset({IN_TEST}), out_of_service=set,
                     overdue=set, clock=lambda: now)
    for k in range(7, -1, -1):
        rate.sample(now - 10 * k)
    return rate


def gateway_field_names(config: Config) -> set[str]:
    """Every field key the gateway writes to ``gateway`` for this site's hazard sources and sources."""
    lines = gateway_lines(
        config, 1, status={hs.code: 0 for hs in config.hazard_sources}, active=(0, 0, 0),
        connected={s.id: 1 for s in config.sources},
    )
    names: set[str] = set()
    for ln in lines:
        fields = ln.split(" ")[1]
        names |= {kv.split("=")[0] for kv in fields.split(",")}
    return names
