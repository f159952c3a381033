"""The site's Grafana dashboards, built with grafana-foundation-sdk from a site config.

* **overview** (one per site): hazard-source status 红/橙/黄/蓝, active alarms by priority,
  current alarms, data online rate per hazard source, beside it the in-use rate of gas
  detectors (投用率) for the site and per hazard source, connection uptime per data source,
  alarm annotations.
* **hazard source** (one per ``hazard_sources[]`` entry): status, online rate, current
  values and alarms, then one row per tag kind with a time-series panel per tag group
  (gas detectors grouped by gas) drawing the alarm limits as threshold lines and bands,
  a state timeline for discrete tags, the source's alarm history, alarm annotations.
* **alarm history** (one per site): the ``alarm`` measurement as a table, annunciations per
  alarm (bad actors) and per 10 minutes (flood), alarm annotations.

Queries come from :class:`gateway.grafana.influxql.Queries`; thresholds and grouping from
:mod:`gateway.grafana.groups`; uids from :mod:`gateway.grafana.uids`. Every text a person
reads (titles, descriptions, legends, table columns, value texts) is in the site's language,
``notification.language`` (:mod:`gateway.grafana.texts`).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from grafana_foundation_sdk.builders import common as common_b
from grafana_foundation_sdk.builders import dashboard as dash_b
from grafana_foundation_sdk.builders import stat as stat_b
from grafana_foundation_sdk.builders import statetimeline as stl_b
from grafana_foundation_sdk.builders import table as table_b
from grafana_foundation_sdk.builders import timeseries as ts_b
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as dm

from gateway.config import Config
from gateway.core.config import GAS_KINDS, HazardSource, Tag
from gateway.grafana import uids
from gateway.grafana.groups import (
    KIND_TITLES,
    PRIORITY_COLORS,
    TagGroup,
    aggregate_for,
    grafana_unit,
    group_tags,
    threshold_steps,
)
from gateway.grafana.influxql import InfluxQL, Queries, annotation_columns, ref_ids
from gateway.grafana.texts import KIND_TEXT, Texts

DASHBOARD_TAG = "hazardgw"


@dataclass
class SiteContext:
    """What every dashboard of a site shares."""

    config: Config
    ds: dm.DataSourceRef
    q: Queries
    t: Texts
    refresh: str = "10s"

    @classmethod
    def from_config(cls, config: Config) -> SiteContext:
        rp = config.influx.retention_policy if config.influx is not None else None
        ds = dm.DataSourceRef(type_val="influxdb", uid=uids.datasource_uid(config.site.code))
        t = Texts(config.notification.language)
        return cls(config=config, ds=ds, q=Queries(config.site.code, rp), t=t)

    @property
    def site(self) -> str:
        return self.config.site.code

    def tags_of(self, hs: str | None) -> list[Tag]:
        return [t for t in self.config.tags if t.hazard_source == hs]

    def links(self) -> list[dash_b.DashboardLink]:
        return [
            dash_b.DashboardLink(f"{self.config.site.name}")
            .type(dm.DashboardLinkType.DASHBOARDS)
            .tags([DASHBOARD_TAG, f"site:{self.site}"])
            .as_dropdown(True)
            .keep_time(True)
        ]


@dataclass
class _Panels:
    """Panel ids, unique within a dashboard, in creation order."""

    next_id: int = 1

    def id(self) -> int:
        n = self.next_id
        self.next_id += 1
        return n


# --------------------------------------------------------------------------- building blocks


def _target(ctx: SiteContext, query: str, ref: str, *, alias: str | None = None, table: bool = False) -> InfluxQL:
    t = InfluxQL(query).ref_id(ref).datasource(ctx.ds)
    if alias:
        t.alias(alias)
    if table:
        t.table()
    return t


def _thresholds(steps: Sequence[tuple[float | None, str]]) -> dash_b.ThresholdsConfig:
    return (
        dash_b.ThresholdsConfig()
        .mode(dm.ThresholdsMode.ABSOLUTE)
        .steps([dm.Threshold(value=v, color=c) for v, c in steps])
    )


def _value_map(options: dict[str, tuple[str, str]]) -> list[dm.ValueMapping]:
    return [
        dm.ValueMap(
            options={k: dm.ValueMappingResult(text=text, color=color, index=i) for i, (k, (color, text)) in
                     enumerate(options.items())}
        )
    ]


def _merge() -> dm.DataTransformerConfig:
    """One table from the per-series frames of a GROUP BY query."""
    return dm.DataTransformerConfig(id_val="merge", options={})


def _hide_time() -> dm.DataTransformerConfig:
    return dm.DataTransformerConfig(id_val="organize", options={"excludeByName": {"Time": True}})


def _columns(ctx: SiteContext, p: Any, columns: Sequence[str],
             extra: dict[str, list[dm.DynamicConfigValue]] | None = None) -> Any:
    """One override per table column: its title in the site's language (Chinese: 位号, 状态 ...)
    and the column's other properties (colours, value texts), together so they never compete."""
    extra = extra or {}
    for col in dict.fromkeys([*columns, *extra]):
        props = list(extra.get(col, []))
        title = ctx.t.column(col)
        if title is not None:
            props.insert(0, dm.DynamicConfigValue(id_val="displayName", value=title))
        if props:
            p.override_by_name(col, props)
    return p


def _mapped(ctx: SiteContext, column: str, colors: dict[str, str]) -> list[dm.ValueMap]:
    """Value mappings of a table column: colour, and the value's text in the site's language."""
    return [dm.ValueMap(options={
        v: dm.ValueMappingResult(color=c, index=i, text=ctx.t.value_text(column, v))
        for i, (v, c) in enumerate(colors.items())
    })]


ALARM_TABLE_COLUMNS = ("Time", "hs", "tag", "condition", "priority", "event", "state", "value", "limit", "by", "seq",
                       "occurrence")


def _row(ids: _Panels, title: str) -> dash_b.Row:
    return dash_b.Row(title).id(ids.id())


def _gridded(panel: Any, w: int, h: int) -> Any:
    return panel.span(w).height(h)


def status_panel(ctx: SiteContext, ids: _Panels, sources: Sequence[HazardSource], w: int = 24) -> stat_b.Panel:
    """Hazard-source status colour, one value per source, from the gateway's self metrics."""
    p = (
        stat_b.Panel()
        .id(ids.id())
        .title(ctx.t("status"))
        .description(ctx.t("status_desc"))
        .datasource(ctx.ds)
        .mappings(_value_map({str(k): v for k, v in ctx.t.status().items()}))
        .thresholds(_thresholds([(None, "blue"), (1, "yellow"), (2, "orange"), (3, "red")]))
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]))
        .no_value(ctx.t("no_data"))
    )
    for ref, hs in zip(ref_ids(), sources, strict=False):
        alias = ctx.t("status_alias", code=hs.code, name=hs.name, grade=hs.grade)
        p.with_target(_target(ctx, ctx.q.hs_status(hs.code), ref, alias=alias))
    return _gridded(p, w, 5)


def active_alarms_panel(ctx: SiteContext, ids: _Panels, w: int = 8) -> stat_b.Panel:
    p = (
        stat_b.Panel()
        .id(ids.id())
        .title(ctx.t("active"))
        .description(ctx.t("active_desc"))
        .datasource(ctx.ds)
        .color_mode(common.BigValueColorMode.BACKGROUND)
        .graph_mode(common.BigValueGraphMode.AREA)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]))
        .thresholds(_thresholds([(None, "green"), (1, "red")]))
        .no_value("0")
    )
    for ref, prio in zip(ref_ids(), (1, 2, 3), strict=False):
        p.with_target(_target(ctx, ctx.q.active_by_priority(prio), ref, alias=ctx.t.priority(prio)))
        p.override_by_name(
            ctx.t.priority(prio),
            [dm.DynamicConfigValue(id_val="thresholds", value=_thresholds(
                [(None, "green"), (1, PRIORITY_COLORS[prio])]).build())],
        )
    return _gridded(p, w, 6)


def active_alarms_series(ctx: SiteContext, ids: _Panels, w: int = 16) -> ts_b.Panel:
    p = (
        ts_b.Panel()
        .id(ids.id())
        .title(ctx.t("active_series"))
        .datasource(ctx.ds)
        .draw_style(common.GraphDrawStyle.LINE)
        .line_interpolation(common.LineInterpolation.STEP_AFTER)
        .fill_opacity(20)
        .min(0)
        .decimals(0)
    )
    for ref, prio in zip(ref_ids(), (1, 2, 3), strict=False):
        alias = ctx.t.priority(prio)
        p.with_target(_target(ctx, ctx.q.active_by_priority(prio, series=True), ref, alias=alias))
        p.override_by_name(
            alias,
            [dm.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": PRIORITY_COLORS[prio]})],
        )
    return _gridded(p, w, 6)


def current_alarms_table(ctx: SiteContext, ids: _Panels, hs: str | None, w: int = 24) -> table_b.Panel:
    p = (
        table_b.Panel()
        .id(ids.id())
        .title(ctx.t("current"))
        .description(ctx.t("current_desc"))
        .datasource(ctx.ds)
        .with_target(_target(ctx, ctx.q.current_alarms(hs), "A", table=True))
        .with_transformation(_merge())
        .with_transformation(_hide_time())
        .no_value(ctx.t("no_alarm"))
    )
    states = {"UNACK": "red", "ACKED": "orange", "RTNUN": "yellow", "SHLVD": "blue", "DSUPR": "blue", "OOSRV": "blue"}
    _columns(ctx, p, ("hs", "tag", "condition", "priority", "event", "value", "limit", "by"), {"state": [
        dm.DynamicConfigValue(id_val="mappings", value=_mapped(ctx, "state", states)),
        dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-background"}),
    ]})
    return _gridded(p, w, 7)


def online_rate_panels(ctx: SiteContext, ids: _Panels, sources: Sequence[tuple[str, str, int]],
                       w_stat: int = 8, w_series: int = 16) -> list[Any]:
    """(stat of the range average, time series) of the data online rate per hazard source."""
    desc = ctx.t("online_desc")
    stat = (
        stat_b.Panel()
        .id(ids.id())
        .title(ctx.t("online_avg"))
        .description(desc)
        .datasource(ctx.ds)
        .unit("percent")
        .min(0)
        .max(100)
        .decimals(1)
        .interval("1m")
        .thresholds(_thresholds([(None, "red"), (90, "orange"), (98, "green")]))
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common_b.ReduceDataOptions().calcs(["mean"]))
    )
    series = (
        ts_b.Panel()
        .id(ids.id())
        .title(ctx.t("online"))
        .description(desc)
        .datasource(ctx.ds)
        .unit("percent")
        .min(0)
        .max(100)
        .interval("1m")
    )
    for ref, (code, label, n) in zip(ref_ids(), sources, strict=False):
        stat.with_target(_target(ctx, ctx.q.online_rate(code, n), ref, alias=label))
        series.with_target(_target(ctx, ctx.q.online_rate(code, n), ref, alias=label))
    return [_gridded(stat, w_stat, 6), _gridded(series, w_series, 6)]


def in_use_panels(ctx: SiteContext, ids: _Panels, groups: Sequence[tuple[str, str, str]],
                  w_stat: int = 8, w_series: int = 16) -> list[Any]:
    """(stat of the last value, time series) of the gas detector in-use rate (投用率), last hour,
    per (id, scope, label): the site and each hazard source, from the gateway's self metrics."""
    desc = ctx.t("in_use_desc")
    stat = (
        stat_b.Panel()
        .id(ids.id())
        .title(ctx.t("in_use"))
        .description(desc)
        .datasource(ctx.ds)
        .unit("percent")
        .min(0)
        .max(100)
        .decimals(1)
        .thresholds(_thresholds([(None, "red"), (95, "orange"), (100, "green")]))
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]))
        .no_value(ctx.t("no_data"))
    )
    series = (
        ts_b.Panel()
        .id(ids.id())
        .title(ctx.t("in_use_now"))
        .description(desc)
        .datasource(ctx.ds)
        .unit("percent")
        .min(0)
        .max(100)
        .interval("1m")
        .line_interpolation(common.LineInterpolation.STEP_AFTER)
    )
    for ref, (ident_, scope, label) in zip(ref_ids(), groups, strict=False):
        stat.with_target(_target(ctx, ctx.q.in_use_rate(ident_, scope), ref, alias=label))
        series.with_target(_target(ctx, ctx.q.in_use_rate(ident_, scope, series=True), ref, alias=label))
    return [_gridded(stat, w_stat, 6), _gridded(series, w_series, 6)]


def connection_panel(ctx: SiteContext, ids: _Panels, w: int = 24) -> ts_b.Panel:
    p = (
        ts_b.Panel()
        .id(ids.id())
        .title(ctx.t("uptime"))
        .description(ctx.t("uptime_desc"))
        .datasource(ctx.ds)
        .unit("percent")
        .min(0)
        .max(100)
        .interval("1m")
        .with_target(_target(ctx, ctx.q.source_connected(), "A", alias="$tag_component"))
    )
    return _gridded(p, w, 6)


def alarm_history_table(ctx: SiteContext, ids: _Panels, hs: str | None, w: int = 24, h: int = 10) -> table_b.Panel:
    p = (
        table_b.Panel()
        .id(ids.id())
        .title(ctx.t("history"))
        .description(ctx.t("history_table_desc"))
        .datasource(ctx.ds)
        .with_target(_target(ctx, ctx.q.alarm_history(hs), "A", table=True))
        .filterable(True)
    )
    events = {"raised": "red", "realarmed": "red", "cleared": "green", "acked": "blue", "reset": "blue",
              "shelved": "purple", "unshelved": "purple", "suppressed": "purple", "unsuppressed": "purple",
              "disposed": "text"}
    states = {"UNACK": "red", "ACKED": "orange", "RTNUN": "yellow", "NORM": "green", "SHLVD": "blue",
              "DSUPR": "blue", "OOSRV": "blue"}
    _columns(ctx, p, ALARM_TABLE_COLUMNS, {
        "event": [dm.DynamicConfigValue(id_val="mappings", value=_mapped(ctx, "event", events)),
                  dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"})],
        "state": [dm.DynamicConfigValue(id_val="mappings", value=_mapped(ctx, "state", states))],
    })
    return _gridded(p, w, h)


def tag_group_panel(ctx: SiteContext, ids: _Panels, group: TagGroup, w: int = 12) -> Any:
    if group.discrete:
        return discrete_panel(ctx, ids, group)
    steps = threshold_steps(group.limits)
    lo, hi = group.soft_range
    p = (
        ts_b.Panel()
        .id(ids.id())
        .title(group.title_in(ctx.t.lang))
        .description(ctx.t("group_desc", agg=ctx.t("agg_" + aggregate_for(group.limits)),
                           tags=", ".join(f"{t.id} {t.name}".strip() for t in group.tags)))
        .datasource(ctx.ds)
        .unit(grafana_unit(group.unit))
        .with_target(_target(ctx, ctx.q.tag_series(group.tag_ids, aggregate_for(group.limits)), "A",
                             alias="$tag_tag"))
        .thresholds(_thresholds(steps))
        .thresholds_style(common_b.GraphThresholdsStyleConfig().mode(
            common.GraphThresholdsStyleMode.LINE_AND_AREA if group.limits else common.GraphThresholdsStyleMode.OFF))
        .line_width(1)
        .fill_opacity(0)
        .show_points(common.VisibilityMode.NEVER)
        .span_nulls(False)
        .legend(common_b.VizLegendOptions().display_mode(common.LegendDisplayMode.TABLE)
                .placement(common.LegendPlacement.BOTTOM).show_legend(True).calcs(["lastNotNull", "max", "min"]))
        .color_scheme(dash_b.FieldColor().mode(dm.FieldColorModeId.PALETTE_CLASSIC))
    )
    if lo is not None:
        p.axis_soft_min(lo)
    if hi is not None:
        p.axis_soft_max(hi)
    for t in group.tags:
        if t.name:
            p.override_by_name(t.id, [dm.DynamicConfigValue(id_val="displayName", value=f"{t.id} {t.name}")])
    return _gridded(p, w, 8)


def discrete_panel(ctx: SiteContext, ids: _Panels, group: TagGroup) -> stl_b.Panel:
    p = (
        stl_b.Panel()
        .id(ids.id())
        .title(group.title_in(ctx.t.lang))
        .description(ctx.t("discrete_desc"))
        .datasource(ctx.ds)
        .with_target(_target(ctx, ctx.q.tag_series(group.tag_ids, "last"), "A", alias="$tag_tag"))
        .show_value(common.VisibilityMode.NEVER)
        .merge_values(True)
        .row_height(0.8)
    )
    for t in group.tags:
        alarm = t.alarms.discrete
        on = "1" if (alarm is None or alarm.state) else "0"
        off = "0" if on == "1" else "1"
        msg = (alarm.message if alarm is not None and alarm.message else ctx.t("alarm_state"))
        props: list[dm.DynamicConfigValue] = [
            dm.DynamicConfigValue(id_val="mappings", value=[dm.ValueMap(options={
                on: dm.ValueMappingResult(text=msg, color="red", index=0),
                off: dm.ValueMappingResult(text=ctx.t("normal"), color="green", index=1),
            })]),
        ]
        if t.name:
            props.append(dm.DynamicConfigValue(id_val="displayName", value=f"{t.id} {t.name}"))
        p.override_by_name(t.id, props)
    return _gridded(p, 24, max(4, 2 + len(group.tags)))


def current_values_table(ctx: SiteContext, ids: _Panels, hs: str) -> table_b.Panel:
    p = (
        table_b.Panel()
        .id(ids.id())
        .title(ctx.t("current_values"))
        .description(ctx.t("current_values_desc"))
        .datasource(ctx.ds)
        .with_target(_target(ctx, ctx.q.current_values(hs), "A", table=True))
        .with_transformation(_merge())
        .with_transformation(_hide_time())
    )
    qualities = {"good": "green", "uncertain": "yellow", "bad": "red", "comm": "red", "stale": "orange"}
    _columns(ctx, p, ("tag", "value"), {"quality": [
        dm.DynamicConfigValue(id_val="mappings", value=_mapped(ctx, "quality", qualities)),
        dm.DynamicConfigValue(id_val="custom.cellOptions", value={"type": "color-text"}),
    ]})
    return _gridded(p, 12, 8)


class _InfluxAnnotationTarget(dm.AnnotationTarget):
    """The ``target`` of an InfluxQL annotation (Grafana's InfluxDB datasource reads ``query``)."""

    def __init__(self, query: str) -> None:
        super().__init__()
        self.query = query

    def to_json(self) -> dict[str, object]:
        return {"refId": "Anno", "query": self.query, "rawQuery": True, "fromAnnotations": True,
                **annotation_columns()}


class _Built(cogbuilder.Builder[dm.AnnotationTarget]):
    def __init__(self, target: dm.AnnotationTarget) -> None:
        self._t = target

    def build(self) -> dm.AnnotationTarget:
        return self._t


def alarm_annotation(ctx: SiteContext, hs: str | None) -> dash_b.AnnotationQuery:
    return (
        dash_b.AnnotationQuery()
        .name(ctx.t("annotation"))
        .datasource(ctx.ds)
        .enable(True)
        .icon_color("red")
        .target(_Built(_InfluxAnnotationTarget(ctx.q.alarm_annotations(hs))))
    )


def _builtin_annotation(ctx: SiteContext) -> dash_b.AnnotationQuery:
    return (
        dash_b.AnnotationQuery()
        .name(ctx.t("builtin_annotation"))
        .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
        .enable(True)
        .hide(True)
        .icon_color("rgba(0, 211, 255, 1)")
        .type("dashboard")
        .built_in(1)
    )


def _dashboard(ctx: SiteContext, uid: str, title: str, extra_tags: Sequence[str] = ()) -> dash_b.Dashboard:
    d = (
        dash_b.Dashboard(title)
        .uid(uid)
        .tags([DASHBOARD_TAG, f"site:{ctx.site}", *extra_tags])
        .timezone(ctx.config.site.timezone)
        .time("now-6h", "now")
        .refresh(ctx.refresh)
        .readonly()
        .tooltip(dm.DashboardCursorSync.CROSSHAIR)
        .annotation(_builtin_annotation(ctx))
    )
    for link in ctx.links():
        d.link(link)
    return d


# --------------------------------------------------------------------------- dashboards


def overview(ctx: SiteContext) -> dash_b.Dashboard:
    cfg = ctx.config
    ids = _Panels()
    d = _dashboard(ctx, uids.overview_uid(ctx.site), f"{cfg.site.name} — {ctx.t('overview')}", ["overview"])
    d.description(ctx.t("overview_desc", site=ctx.site))
    d.annotation(alarm_annotation(ctx, None))
    d.with_row(_row(ids, ctx.t("row_hazard_sources")))
    if cfg.hazard_sources:
        d.with_panel(status_panel(ctx, ids, cfg.hazard_sources))
    d.with_panel(active_alarms_panel(ctx, ids))
    d.with_panel(active_alarms_series(ctx, ids))
    d.with_panel(current_alarms_table(ctx, ids, None))
    d.with_row(_row(ids, ctx.t("row_online")))
    groups = [(hs.code, f"{hs.code} {hs.name}", len(ctx.tags_of(hs.code))) for hs in cfg.hazard_sources]
    groups = [g for g in groups if g[2] > 0]
    if ctx.tags_of(None):
        groups.append(("", ctx.t("no_hs"), len(ctx.tags_of(None))))
    if groups:
        for p in online_rate_panels(ctx, ids, groups):
            d.with_panel(p)
    # beside the online rate: the in-use rate of gas detectors (投用率), site and per hazard source
    gas = [t for t in cfg.tags if t.kind in GAS_KINDS]
    if gas:
        in_use = [(ctx.site, "site", ctx.t("site_all"))]
        in_use += [(hs.code, "hazard_source", f"{hs.code} {hs.name}") for hs in cfg.hazard_sources
                   if any(t.hazard_source == hs.code for t in gas)]
        for p in in_use_panels(ctx, ids, in_use):
            d.with_panel(p)
    d.with_panel(connection_panel(ctx, ids))
    loose = ctx.tags_of(None)
    if loose:
        d.with_row(_row(ids, ctx.t("row_loose")))
        for p in _group_panels(ctx, ids, loose):
            d.with_panel(p)
    d.with_row(_row(ids, ctx.t("row_history")))
    d.with_panel(alarm_history_table(ctx, ids, None))
    return d


def _group_panels(ctx: SiteContext, ids: _Panels, tags: Sequence[Tag]) -> Iterator[Any]:
    for g in group_tags(tags):
        yield tag_group_panel(ctx, ids, g)


def hazard_source(ctx: SiteContext, hs: HazardSource) -> dash_b.Dashboard:
    ids = _Panels()
    tags = ctx.tags_of(hs.code)
    title = f"{hs.code} {hs.name}"
    d = _dashboard(ctx, uids.hazard_source_uid(ctx.site, hs.code), title, [f"hs:{hs.code}", f"grade:{hs.grade}"])
    d.description(ctx.t("hs_desc", code=hs.code, name=hs.name, grade=hs.grade, site=ctx.site))
    d.annotation(alarm_annotation(ctx, hs.code))
    d.with_row(_row(ids, ctx.t("row_status")))
    d.with_panel(status_panel(ctx, ids, [hs], w=8))
    if tags:
        online = [(hs.code, ctx.t("online_short"), len(tags))]
        for p in online_rate_panels(ctx, ids, online, w_stat=4, w_series=12):
            d.with_panel(p)
    d.with_panel(current_alarms_table(ctx, ids, hs.code, w=12))
    if tags:
        d.with_panel(current_values_table(ctx, ids, hs.code))
    current_kind: str | None = None
    for g in group_tags(tags):
        row_kind = "gas" if g.is_gas else g.kind
        if row_kind != current_kind:
            current_kind = row_kind
            kinds = KIND_TEXT.get(ctx.t.lang, KIND_TITLES)
            d.with_row(_row(ids, ctx.t("row_gas") if row_kind == "gas" else kinds.get(g.kind, g.kind)))
        d.with_panel(tag_group_panel(ctx, ids, g))
    d.with_row(_row(ids, ctx.t("row_history")))
    d.with_panel(alarm_history_table(ctx, ids, hs.code))
    return d


def alarm_history(ctx: SiteContext) -> dash_b.Dashboard:
    ids = _Panels()
    d = _dashboard(ctx, uids.alarms_uid(ctx.site), f"{ctx.config.site.name} — {ctx.t('alarm_history_dash')}",
                   ["alarms"])
    d.description(ctx.t("history_desc"))
    d.annotation(alarm_annotation(ctx, None))
    d.time("now-7d", "now")
    d.with_panel(alarm_history_table(ctx, ids, None, h=14))
    flood = ctx.config.alarming
    window = int(flood.flood_window)
    per = ctx.t("per_min", n=window // 60) if window % 60 == 0 else ctx.t("per_s", n=window)
    rate = (
        ts_b.Panel()
        .id(ids.id())
        .title(ctx.t("rate", per=per, n=flood.flood_count))
        .datasource(ctx.ds)
        .draw_style(common.GraphDrawStyle.BARS)
        .fill_opacity(60)
        .min(0)
        .decimals(0)
        .thresholds(_thresholds([(None, "transparent"), (flood.flood_count + 1, "red")]))
        .thresholds_style(common_b.GraphThresholdsStyleConfig().mode(common.GraphThresholdsStyleMode.DASHED))
        .with_target(_target(ctx, ctx.q.alarm_rate(f"{window}s"), "A", alias=ctx.t("annunciations")))
    )
    d.with_panel(_gridded(rate, 12, 8))
    counts = (
        table_b.Panel()
        .id(ids.id())
        .title(ctx.t("bad_actors"))
        .datasource(ctx.ds)
        .with_target(_target(ctx, ctx.q.alarm_counts(), "A", table=True))
        .with_transformation(_merge())
        .sort_by([common_b.TableSortByFieldState().display_name(ctx.t.column("annunciations") or "annunciations")
                  .desc(True)])
    )
    _columns(ctx, counts, ("Time", "hs", "tag", "condition", "priority", "annunciations"))
    d.with_panel(_gridded(counts, 12, 8))
    kpi_panels(ctx, ids, d)
    return d


# (KPI, title key, thresholds [(from, colour)], unit, decimals): benchmarks of alerting/kpi.py
_KPI_STATS: tuple[tuple[str, str, list[tuple[float | None, str]], str | None, int], ...] = (
    ("per_10min", "kpi_per_10min", [(None, "green"), (1.0001, "yellow"), (2.0001, "red")], None, 2),
    ("peak_10min", "kpi_peak_10min", [(None, "green"), (11, "red")], None, 0),
    ("flood_pct", "kpi_flood_pct", [(None, "green"), (1.0, "red")], "percent", 1),
    ("top10_pct", "kpi_top10_pct", [(None, "green"), (5.0001, "red")], "percent", 1),
    ("chattering", "kpi_chattering", [(None, "green"), (1, "red")], None, 0),
    ("fleeting", "kpi_fleeting", [(None, "green"), (1, "red")], None, 0),
    ("standing", "kpi_standing", [(None, "green"), (5, "red")], None, 0),
    ("stale_acks", "kpi_stale_acks", [(None, "green"), (1, "red")], None, 0),
    ("disposition_pct", "kpi_disposition", [(None, "red"), (100, "green")], "percent", 1),
)


def kpi_panels(ctx: SiteContext, ids: _Panels, d: dash_b.Dashboard) -> None:
    """The alarm system KPIs (24 h and 30 d) against the EEMUA 191 / ISA-18.2 benchmarks."""
    d.with_row(_row(ids, ctx.t("row_kpi")))
    windows = (("24h", ctx.t("kpi_24h")), ("30d", ctx.t("kpi_30d")))
    for kpi, title, steps, unit, decimals in _KPI_STATS:
        p = (
            stat_b.Panel()
            .id(ids.id())
            .title(ctx.t(title))
            .description(ctx.t("kpi_desc"))
            .datasource(ctx.ds)
            .color_mode(common.BigValueColorMode.BACKGROUND)
            .graph_mode(common.BigValueGraphMode.NONE)
            .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
            .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]))
            .thresholds(_thresholds(steps))
            .decimals(decimals)
            .no_value(ctx.t("no_data"))
        )
        if unit is not None:
            p.unit(unit)
        for ref, (window, alias) in zip(ref_ids(), windows, strict=False):
            p.with_target(_target(ctx, ctx.q.alarm_kpi(kpi, window), ref, alias=alias))
        d.with_panel(_gridded(p, 6, 5))
    ack = (
        stat_b.Panel()
        .id(ids.id())
        .title(ctx.t("kpi_ack"))
        .description(ctx.t("kpi_desc"))
        .datasource(ctx.ds)
        .graph_mode(common.BigValueGraphMode.NONE)
        .text_mode(common.BigValueTextMode.VALUE_AND_NAME)
        .reduce_options(common_b.ReduceDataOptions().calcs(["lastNotNull"]))
        .unit("s")
        .no_value(ctx.t("no_data"))
    )
    refs = iter(ref_ids())
    for window, wname in windows:
        for kpi, kname in (("ack_p50_s", "kpi_ack_p50"), ("ack_p90_s", "kpi_ack_p90")):
            ack.with_target(_target(ctx, ctx.q.alarm_kpi(kpi, window), next(refs),
                                    alias=f"{ctx.t(kname)} {wname}"))
    d.with_panel(_gridded(ack, 12, 5))
    trend = (
        ts_b.Panel()
        .id(ids.id())
        .title(ctx.t("kpi_trend"))
        .description(ctx.t("kpi_desc"))
        .datasource(ctx.ds)
        .min(0)
    )
    trend.with_target(_target(ctx, ctx.q.alarm_kpi("per_10min", "24h", series=True), "A",
                              alias=ctx.t("kpi_per_10min")))
    trend.with_target(_target(ctx, ctx.q.alarm_kpi("flood_pct", "24h", series=True), "B",
                              alias=ctx.t("kpi_flood_pct")))
    d.with_panel(_gridded(trend, 12, 5))


def all_dashboards(config: Config) -> list[dm.Dashboard]:
    """Overview, one per hazard source, alarm history (built models, ready for JSON)."""
    ctx = SiteContext.from_config(config)
    out = [overview(ctx).build()]
    out += [hazard_source(ctx, hs).build() for hs in config.hazard_sources]
    out.append(alarm_history(ctx).build())
    return out
