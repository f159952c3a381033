"""InfluxQL text for the dashboards, and the Grafana query object that carries it.

Every identifier is double-quoted (``tag`` is an InfluxQL keyword: ``WHERE tag = 'x'`` is
HTTP 400) and every tag value is a single-quoted string literal. Queries use only the
Grafana macros in :data:`MACROS`, which Grafana's InfluxDB backend replaces before it sends
the query; tests substitute them the same way (:func:`expand_macros`) and run the result
against a real influxd.

grafana-foundation-sdk ships no InfluxDB query type, so :class:`InfluxQLQuery` is one: a
``cog`` ``Dataquery`` variant (raw InfluxQL, ``rawQuery: true``) with a fluent
:class:`InfluxQL` builder that the SDK's panel builders accept like their own.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Literal, Self

from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.models import dashboard

#: Grafana macros our queries use (replaced by Grafana's InfluxDB backend).
MACROS = ("$timeFilter", "$__interval")

ResultFormat = Literal["time_series", "table"]


def ident(name: str) -> str:
    """A double-quoted InfluxQL identifier (measurement, tag key, field key, alias)."""
    return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'


def literal(value: str) -> str:
    """A single-quoted InfluxQL string literal (tag values, string field values)."""
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def eq(key: str, value: str) -> str:
    """``"key" = 'value'``; an empty value matches series without that tag."""
    return f"{ident(key)} = {literal(value)}"


def any_of(key: str, values: Iterable[str]) -> str:
    """``("key" = 'a' OR "key" = 'b')``: explicit equalities, index friendly, no regex escaping."""
    parts = [eq(key, v) for v in values]
    if not parts:
        raise ValueError(f"any_of({key!r}) needs at least one value")
    return parts[0] if len(parts) == 1 else "(" + " OR ".join(parts) + ")"


def where(*conditions: str) -> str:
    return " AND ".join(c for c in conditions if c)


def expand_macros(query: str, time_filter: str, interval: str) -> str:
    """Replace the Grafana macros the way Grafana does (for tests and for ``--print-queries``)."""
    out = query.replace("$timeFilter", time_filter).replace("$__interval", interval)
    left = re.findall(r"\$\w+", out)
    if left:
        raise ValueError(f"unexpanded macro(s) {left} in {query!r}")
    return out


class InfluxQLQuery(cogvariants.Dataquery):
    """A raw InfluxQL target of Grafana's InfluxDB data source (InfluxQL mode)."""

    def __init__(
        self,
        ref_id: str = "A",
        query: str = "",
        datasource: dashboard.DataSourceRef | None = None,
        result_format: ResultFormat = "time_series",
        alias: str | None = None,
        hide: bool = False,
    ) -> None:
        self.ref_id = ref_id
        self.query = query
        self.datasource = datasource
        self.result_format: ResultFormat = result_format
        self.alias = alias
        self.hide = hide

    def to_json(self) -> dict[str, object]:
        payload: dict[str, object] = {
            "refId": self.ref_id,
            "query": self.query,
            "rawQuery": True,
            "resultFormat": self.result_format,
        }
        if self.datasource is not None:
            payload["datasource"] = self.datasource
        if self.alias:
            payload["alias"] = self.alias
        if self.hide:
            payload["hide"] = True
        return payload


class InfluxQL(cogbuilder.Builder[InfluxQLQuery]):
    """Builder of :class:`InfluxQLQuery`, in the SDK's fluent style."""

    def __init__(self, query: str) -> None:
        self._internal = InfluxQLQuery(query=query)

    def build(self) -> InfluxQLQuery:
        return self._internal

    def ref_id(self, ref_id: str) -> Self:
        self._internal.ref_id = ref_id
        return self

    def datasource(self, ref: dashboard.DataSourceRef) -> Self:
        self._internal.datasource = ref
        return self

    def table(self) -> Self:
        self._internal.result_format = "table"
        return self

    def alias(self, alias: str) -> Self:
        """Series name; ``$tag_<key>`` inserts a GROUP BY tag's value."""
        self._internal.alias = alias
        return self


def ref_ids() -> Iterable[str]:
    """A, B, ..., Z, AA, AB, ... (Grafana's refId sequence)."""
    n = 0
    while True:
        s, k = "", n
        while True:
            s = chr(ord("A") + k % 26) + s
            k = k // 26 - 1
            if k < 0:
                break
        yield s
        n += 1


# --------------------------------------------------------------------------- query texts
# Each function returns one InfluxQL statement over the schema of docs/influxdb.md.


class Queries:
    """The dashboards' queries for one site (``rp`` qualifies measurements when set)."""

    def __init__(self, site: str, retention_policy: str | None = None) -> None:
        self.site = site
        self.rp = retention_policy

    def m(self, measurement: str) -> str:
        return f"{ident(self.rp)}.{ident(measurement)}" if self.rp else ident(measurement)

    def _site(self) -> str:
        return eq("site", self.site)

    # -- readings
    def tag_series(self, tags: Sequence[str], agg: str) -> str:
        """One series per tag (alias ``$tag_tag``), good/uncertain values only."""
        return (
            f"SELECT {agg}({ident('value')}) AS {ident('value')} FROM {self.m('reading')} "
            f"WHERE {where(self._site(), any_of('tag', tags), _usable())} AND $timeFilter "
            f"GROUP BY time($__interval), {ident('tag')} fill(null)"
        )

    def current_values(self, hs: str) -> str:
        """Last value and quality of every tag of a hazard source (table)."""
        return (
            f"SELECT last({ident('value')}) AS {ident('value')}, last({ident('quality')}) AS {ident('quality')} "
            f"FROM {self.m('reading')} WHERE {where(self._site(), eq('hs', hs))} AND $timeFilter "
            f"GROUP BY {ident('tag')}, {ident('kind')}, {ident('unit')}"
        )

    def online_rate(self, hs: str, n_tags: int) -> str:
        """Percent of the source's tags with at least one good/uncertain value per interval."""
        inner = (
            f"SELECT last({ident('value')}) AS {ident('v')} FROM {self.m('reading')} "
            f"WHERE {where(self._site(), eq('hs', hs), _usable())} AND $timeFilter "
            f"GROUP BY time($__interval), {ident('tag')}"
        )
        return (
            f"SELECT count({ident('v')}) * 100 / {int(n_tags)} AS {ident('online')} FROM ({inner}) "
            f"WHERE $timeFilter GROUP BY time($__interval)"
        )

    # -- gateway self metrics (gateway.selfmetrics: component + field names)
    def hs_status(self, hs: str) -> str:
        field = f"hazard_source_status_{hs}"
        return (
            f"SELECT last({ident(field)}) AS {ident('status')} FROM {self.m('gateway')} "
            f"WHERE {where(self._site(), eq('component', 'hazard'))} AND $timeFilter"
        )

    def active_by_priority(self, priority: int, *, series: bool = False) -> str:
        field = ident(f"alarms_active_{int(priority)}")
        base = f"FROM {self.m('gateway')} WHERE {where(self._site(), eq('component', 'alarms'))} AND $timeFilter"
        if series:
            return f"SELECT max({field}) AS {ident(f'P{priority}')} {base} GROUP BY time($__interval) fill(previous)"
        return f"SELECT last({field}) AS {ident(f'P{priority}')} {base}"

    def source_connected(self) -> str:
        """Percent of time each data source (Modbus/MQTT connection) was connected."""
        return (
            f"SELECT mean({ident('source_connected')}) * 100 AS {ident('connected')} FROM {self.m('gateway')} "
            f"WHERE {self._site()} AND {ident('component')} =~ /^source:/ AND $timeFilter "
            f"GROUP BY time($__interval), {ident('component')} fill(null)"
        )

    def in_use_rate(self, ident_: str, scope: str, window: str = "1h", *, series: bool = False) -> str:
        """In-use rate of gas detectors (投用率) in percent, written by gateway.upkeep.inuse via the self
        metrics (``component=inuse``, field ``inuse_rate_<id>_<scope>_<window>``)."""
        field = ident(f"inuse_rate_{ident_}_{scope}_{window}")
        base = f"FROM {self.m('gateway')} WHERE {where(self._site(), eq('component', 'inuse'))} AND $timeFilter"
        if series:
            return f"SELECT last({field}) * 100 AS {ident('in_use')} {base} GROUP BY time($__interval) fill(previous)"
        return f"SELECT last({field}) * 100 AS {ident('in_use')} {base}"

    def alarm_kpi(self, kpi: str, window: str, *, series: bool = False) -> str:
        """An alarm KPI over a rolling ``window`` (24h, 30d), written by gateway.alarmkpi via the
        self metrics (``component=alarm``, field ``alarm_kpi_<kpi>_<window>``)."""
        field = ident(f"alarm_kpi_{kpi}_{window}")
        base = f"FROM {self.m('gateway')} WHERE {where(self._site(), eq('component', 'alarm'))} AND $timeFilter"
        if series:
            return f"SELECT last({field}) AS {ident(kpi)} {base} GROUP BY time($__interval) fill(previous)"
        return f"SELECT last({field}) AS {ident(window)} {base}"

    # -- alarms
    def alarm_history(self, hs: str | None = None, limit: int = 1000) -> str:
        cond = where(self._site(), eq("hs", hs) if hs is not None else "")
        cols = ", ".join(ident(c) for c in _ALARM_COLUMNS)
        return (
            f"SELECT {cols} FROM {self.m('alarm')} WHERE {cond} AND $timeFilter "
            f"ORDER BY time DESC LIMIT {int(limit)}"
        )

    def current_alarms(self, hs: str | None = None, lookback: str = "30d") -> str:
        """Alarms whose last event left them in a state other than NORM (journal lookback); test
        alarms (test mode) left out: the console shows them, marked TEST."""
        cond = where(self._site(), eq("hs", hs) if hs is not None else "", _not_test())
        keys = ", ".join(ident(k) for k in ("hs", "tag", "condition", "priority"))
        lasts = ", ".join(f"last({ident(f)}) AS {ident(f)}" for f in ("state", "event", "value", "limit", "by"))
        inner = (
            f"SELECT {lasts} FROM {self.m('alarm')} WHERE {cond} AND time > now() - {lookback} GROUP BY {keys}"
        )
        cols = ", ".join(ident(f) for f in ("state", "event", "value", "limit", "by"))
        return f"SELECT {cols} FROM ({inner}) WHERE {ident('state')} != 'NORM' GROUP BY {keys}"

    def alarm_counts(self) -> str:
        """Annunciations per alarm over the range (bad actors, ISA-18.2 KPI); test alarms left out."""
        return (
            f"SELECT count({ident('seq')}) AS {ident('annunciations')} FROM {self.m('alarm')} "
            f"WHERE {where(self._site(), _annunciated(), _not_test())} AND $timeFilter "
            f"GROUP BY {ident('hs')}, {ident('tag')}, {ident('condition')}, {ident('priority')}"
        )

    def alarm_rate(self, window: str = "600s") -> str:
        """Annunciations per ``window`` (flood KPI: more than ``flood_count`` per ``flood_window``); test
        alarms left out."""
        return (
            f"SELECT count({ident('seq')}) AS {ident('annunciations')} FROM {self.m('alarm')} "
            f"WHERE {where(self._site(), _annunciated(), _not_test())} AND $timeFilter GROUP BY time({window}) fill(0)"
        )

    def alarm_annotations(self, hs: str | None = None) -> str:
        cond = where(self._site(), eq("hs", hs) if hs is not None else "", _annunciated())
        cols = ", ".join(ident(c) for c in ("tag", "condition", "priority", "event", "state", "value", "limit"))
        return f"SELECT {cols} FROM {self.m('alarm')} WHERE {cond} AND $timeFilter"


_ALARM_COLUMNS = ("hs", "tag", "condition", "priority", "event", "state", "value", "limit", "by", "seq", "occurrence")


def _usable() -> str:
    return any_of("quality", ("good", "uncertain"))


def _annunciated() -> str:
    return any_of("event", ("raised", "realarmed"))


def _not_test() -> str:
    """Not an event of a test occurrence (test mode writes the tag ``test=true``; other events have no
    such tag, which InfluxQL compares as the empty string)."""
    return f"{ident('test')} != {literal('true')}"


def annotation_columns() -> Mapping[str, str]:
    """Column roles of :meth:`Queries.alarm_annotations` for Grafana's InfluxQL annotations."""
    return {"textColumn": "tag", "tagsColumn": "condition,priority,event,state,value,limit"}
