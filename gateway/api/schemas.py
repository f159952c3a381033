"""Request and response models: they make the OpenAPI schema (``/openapi.json``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Quality = Literal["good", "bad", "uncertain", "stale", "comm"]
State = Literal["NORM", "UNACK", "ACKED", "RTNUN", "SHLVD", "DSUPR", "OOSRV"]
EventName = Literal[
    "raised", "cleared", "acked", "realarmed", "shelved", "unshelved", "suppressed", "unsuppressed",
    "out_of_service", "in_service", "disposed", "test_ended",
]


class Out(BaseModel):
    model_config = ConfigDict(extra="forbid")


class In(BaseModel):
    model_config = ConfigDict(extra="forbid")


# ----------------------------------------------------------------------------- health


class HealthOut(Out):
    status: Literal["ok", "degraded"]
    site: str
    components: dict[str, dict[str, Any]]


# ----------------------------------------------------------------------------- tags


class TagAlarmOut(Out):
    priority: int = Field(description="worst priority among the tag's open alarms (1 = emergency)")
    state: State = Field(description="state of that alarm; UNACK wins over RTNUN over ACKED")
    alarms: list[str] = Field(description="ids of the tag's open alarms")


class RawOut(Out):
    text: str = Field(description="what the device sent, e.g. Modbus register words '0x41A0 0x0000'")
    words: list[int] = Field(description="the raw numbers (Modbus: 16-bit registers, or 0/1 for bits)")
    ts: int | None = Field(description="ns, when it was read")


class CalibrationOut(Out):
    status: Literal["ok", "due", "overdue", "none"] = Field(
        description="due: within 30 days; overdue: past its due date (a gas detector is then not in use)"
    )
    last: str | None = Field(description="date of the last calibration (YYYY-MM-DD)")
    interval_s: float | None
    due: str | None = Field(description="date the next calibration is due")
    days_left: int | None = Field(description="days until due; negative when overdue")
    source: Literal["config", "record"] | None = Field(description="config: tags[].calibration; record: the API")
    by: str | None = Field(description="who recorded it (record)")


class ReachedOut(Out):
    wall: int = Field(description="ns, when the alarm was raised")
    after_s: float = Field(description="seconds after the test began (time to alarm)")
    value: float | None = Field(description="value at the raise")


class TagTestOut(Out):
    """One tag's test (running, or its record)."""

    id: int | None
    tag: str
    source: str | None = Field(description="the source id when the test was started for a whole source")
    started: int = Field(description="ns")
    until: int = Field(description="ns, when it ends by itself")
    by: str = Field(description="who started it (API token name)")
    comment: str | None
    levels: list[str] = Field(description="alarm conditions the test verifies (h, hh ...)")
    reached: dict[str, ReachedOut] = Field(description="every alarm condition raised during the test")
    peak: float | None = Field(description="highest usable value during the test")
    low: float | None = Field(description="lowest usable value during the test")
    ended: int | None = Field(description="ns; null while running")
    ended_by: str | None = Field(description="who ended it; 'system' at expiry")
    end_reason: Literal["ended", "expired", "removed"] | None
    result: Literal["running", "pass", "fail", "none"] = Field(
        description="pass: every level reached; none: the tag has no alarm level to verify"
    )
    first_alarm_s: float | None = Field(description="seconds from the start to the first level reached")


class TagOut(Out):
    id: str
    name: str
    hs: str | None = Field(description="hazard source code")
    kind: str
    gas: str | None
    unit: str
    range: list[float] | None
    limits: dict[str, float] = Field(description="configured hh/h/l/ll limits")
    value: float | None = Field(description="latest value; null when the quality carries no value")
    ts: int | None = Field(description="source timestamp of the latest reading, ns since the epoch")
    quality: Quality | None = Field(description="null before the first reading")
    alarm: TagAlarmOut | None = Field(description="open alarms of the tag, null when none")
    recent: list[tuple[int, float | None]] | None = Field(
        default=None,
        description="recent values [ts_ns, value|null], oldest first, at most one per second (trend)",
    )
    source: str | None = Field(default=None, description="id of the source that reads it")
    source_type: str | None = Field(default=None, description="type of that source (modbus_tcp, mqtt ...)")
    where: str | None = Field(default=None, description="address / node / topic, as the source type writes it")
    raw: RawOut | None = Field(default=None, description="?raw=true: what the device last sent (Modbus: registers)")
    test: TagTestOut | None = Field(default=None, description="the running test, null when not in test mode")
    calibration: CalibrationOut | None = Field(default=None, description="calibration due date")
    in_service: bool | None = Field(
        default=None, description="gas detectors: in service now (good, not in test, not out of service, not "
        "overdue); null for other tags"
    )
    not_in_service: list[Literal["quality", "test", "out_of_service", "calibration_overdue"]] | None = Field(
        default=None, description="gas detectors not in service: why"
    )


class TagDetailOut(TagOut):
    alarms: list[AlarmOut] = Field(description="every alarm point of the tag with its state")


# ----------------------------------------------------------------------------- alarms


class CommOut(Out):
    kind: Literal["unit", "link"] = Field(description="unit: a device/connection; link: a bus shared by units")
    name: str = Field(description="what people read, e.g. GDS-B")
    source: str | None = Field(description="source id (a link: the sources on it, comma-separated)")
    tags: int = Field(description="tags covered")
    detectors: int = Field(description="gas detectors among them")
    hazard_sources: list[str]
    units: list[str] = Field(description="a link: the COMM alarm tags of its units")


class AlarmOut(Out):
    id: str = Field(description="'TAG/condition', e.g. 'GT-101/hh'")
    tag: str
    condition: str
    priority: int
    state: State
    active: bool = Field(description="the condition is active (process side), whatever the state")
    occurrence: int | None = Field(description="open occurrence number")
    hs: str | None
    value: float | None
    limit: float | None
    raised_ts: int | None = Field(description="ns, source time of the raise of the open occurrence")
    acked_by: str | None
    acked_wall: int | None
    shelved: bool
    shelved_until: int | None
    one_shot: bool
    suppressed: bool
    out_of_service: bool
    latch: bool
    chattering: bool
    suppressible: bool = Field(description="false for gas alarms: they can be neither shelved nor suppressed")
    message: str | None
    source: str | None = Field(default=None, description="source id the tag's readings come through")
    parent: str | None = Field(
        default=None, description="DSUPR under this COMM alarm: the lost source unit explains this alarm"
    )
    hazard_sources: list[str] = Field(
        default_factory=list, description="hazard sources the alarm concerns (a COMM alarm: every one it covers)"
    )
    comm: CommOut | None = Field(default=None, description="a COMM alarm (condition comm): what it covers")
    test: bool = Field(default=False, description="the open occurrence is a test occurrence (its tag is in test)")


class AlarmEventOut(Out):
    seq: int
    event: str
    alarm: str
    tag: str
    condition: str
    priority: int
    state: str
    prev_state: str
    active: bool
    occurrence: int | None
    value: float | None
    limit: float | None
    ts: int = Field(description="ns: source time (raised/cleared by a reading) or gateway wall clock")
    wall: int = Field(description="ns: gateway wall clock when the event was made")
    hs: str | None
    user: str | None = Field(description="token name for operator actions, 'system' for timers")
    comment: str | None
    chattering: bool
    flood: bool
    message: str | None
    data: dict[str, Any] | None
    source: str | None = Field(default=None, description="source id (live events; null from the journal)")
    test: bool = Field(default=False, description="an event of a test occurrence: never pushed or sent upstream")


class OccurrenceOut(Out):
    model_config = ConfigDict(extra="allow")

    id: int
    alarm: str
    tag: str
    condition: str
    hs: str | None
    priority: int
    raised_ts: int
    raised_wall: int
    value: float | None
    limit: float | None
    acked_wall: int | None
    acked_by: str | None
    cleared_ts: int | None
    realarms: int
    closed_wall: int | None
    closed_by: str | None
    disposed_wall: int | None
    disposed_by: str | None
    cause: str | None
    action: str | None
    handler: str | None
    result: str | None


class HistoryOut(Out):
    source: Literal["journal", "memory"] = Field(
        description="journal: the durable alarm journal; memory: the engine's recent events (no journal)"
    )
    events: list[AlarmEventOut] = Field(default_factory=list, description="newest first (view=events)")
    occurrences: list[OccurrenceOut] = Field(default_factory=list, description="newest first (view=occurrences)")


class ActionOut(Out):
    event: AlarmEventOut
    alarm: AlarmOut


# ----------------------------------------------------------------------------- online rate


Rate = Field(ge=0, le=1, description="received / expected readings over the window, null before anything was expected")


class OnlineWindowOut(Out):
    hour: int = Field(description="seconds of the `hour` window (3600)")
    day: int = Field(description="seconds of the `day` window (86400)")


class OnlineSourceOut(Out):
    hour: float | None = Rate
    day: float | None = Rate
    tags: int = Field(ge=0, description="tags of the source that are counted")
    interval_s: float | None = Field(description="typical expected interval of its tags (median), seconds")


class OnlineHazardSourceOut(Out):
    hour: float | None = Rate
    day: float | None = Rate
    tags: int = Field(ge=0, description="counted tags of the hazard source, over all sources")


class InUseEntryOut(Out):
    hour: float | None = Field(ge=0, le=1, description="in-service detector time / detector time, last hour")
    day: float | None = Field(ge=0, le=1, description="the same over the last day")
    tags: int = Field(ge=0, description="gas detectors")
    in_service: int | None = Field(description="gas detectors in service at the last sample (every 10 s)")


class InUseOut(Out):
    window: OnlineWindowOut
    site: InUseEntryOut = Field(description="every gas detector of the site")
    hazard_sources: dict[str, InUseEntryOut] = Field(description="by hazard source code")
    not_in_service: dict[str, list[Literal["quality", "test", "out_of_service", "calibration_overdue"]]] = Field(
        description="gas detectors not in service at the last sample, and why"
    )


class OnlineOut(Out):
    window: OnlineWindowOut
    sources: dict[str, OnlineSourceOut] = Field(description="by source id (enabled sources)")
    hazard_sources: dict[str, OnlineHazardSourceOut] = Field(description="by hazard source code")
    in_use: InUseOut | None = Field(
        default=None, description="in-use rate of gas detectors (投用率): in service = good quality, not in test, "
        "not out of service, calibration not overdue"
    )


# ----------------------------------------------------------------------------- test mode, calibration


class TagTestIn(In):
    duration: float | str = Field(description="seconds, or '30m', '2h' (at most 8 h)", examples=["1h"])
    comment: str | None = Field(default=None, max_length=2000, description="e.g. bump test with 50 ppm Cl2")
    levels: list[Literal["hh", "h", "l", "ll", "roc", "discrete"]] | None = Field(
        default=None, max_length=6, description="alarm levels the test verifies; default: the tag's limits in the "
        "direction gas drives it (h, hh; oxygen l, ll)"
    )


class SkippedTagTestOut(Out):
    tag: str
    reason: str


class TagTestStartOut(Out):
    started: list[TagTestOut]
    skipped: list[SkippedTagTestOut] = Field(description="a source's tags already in test")


class TagTestEndOut(Out):
    ended: list[TagTestOut] = Field(description="the records of the tests ended")


class TagTestsOut(Out):
    running: list[TagTestOut] = Field(description="the tests running now")
    tests: list[TagTestOut] = Field(description="tests started in [from, to), oldest first")


class CalibrationIn(In):
    date: str | None = Field(default=None, pattern=r"^\d{4}-\d{2}-\d{2}$",
                             description="date of the calibration (YYYY-MM-DD); default today (site time)")
    interval: float | str | None = Field(default=None, description="calibration interval: '365d', '180d' or "
                                         "seconds; default: the config's (365 d)")
    comment: str | None = Field(default=None, max_length=2000, description="e.g. certificate number")


Comment = Field(default=None, max_length=2000, description="free text, kept in the journal")


class AckIn(In):
    comment: str | None = Comment


class ShelveIn(In):
    duration: float | str | None = Field(
        default=None,
        description="seconds, or a duration such as '30m', '2h' (at most alarming.shelve_max, 8 h)",
        examples=["1h"],
    )
    one_shot: bool = Field(default=False, description="shelve until the alarm returns to normal")
    comment: str | None = Comment


class UnshelveIn(In):
    comment: str | None = Comment


class AlarmFilterIn(In):
    """Which open alarms a group action applies to (all given conditions must hold)."""

    hs: str | None = Field(default=None, max_length=128, description="hazard source code (any it concerns)")
    source: str | None = Field(default=None, max_length=128, description="source id")
    condition: str | None = Field(default=None, max_length=32, description="hh, h, l, ll, roc, bad, stale, comm ...")
    priority: int | None = Field(default=None, ge=1, le=3)
    q: str | None = Field(default=None, max_length=200, description="text in the id, tag name, message or source name")


class GroupAckIn(In):
    ids: list[Annotated[str, Field(max_length=300)]] | None = Field(
        default=None, max_length=5000, description="alarm ids or open occurrence numbers, as shown to the operator"
    )
    filter: AlarmFilterIn | None = Field(
        default=None, description="instead of ids: every open alarm matching it (prefer ids: ack what was seen)"
    )
    comment: str | None = Comment

    @model_validator(mode="after")
    def _one(self) -> GroupAckIn:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give either ids or filter")
        return self


class SkippedOut(Out):
    id: str
    reason: str


class GroupAckOut(Out):
    acked: list[AlarmEventOut] = Field(description="one acked event per alarm, in the order given")
    skipped: list[SkippedOut] = Field(description="alarms that could not be acknowledged, with the reason")
    alarms: list[AlarmOut] = Field(description="the acknowledged alarms as they are now")


class DisposeIn(In):
    cause: str = Field(min_length=1, max_length=2000, description="原因")
    action: str = Field(min_length=1, max_length=2000, description="处置措施")
    result: str = Field(min_length=1, max_length=2000, description="处置结果")
    handler: str | None = Field(default=None, max_length=200, description="处置人; default: the token's name")
    comment: str | None = Comment


TagDetailOut.model_rebuild()


# ----------------------------------------------------------------------------- alarm KPIs


class KpiAlarmCountOut(Out):
    alarm: str
    tag: str
    condition: str
    hs: str | None
    priority: int
    count: int
    pct: float = Field(description="share of all annunciations, %")


class KpiSettingsOut(Out):
    window: float = Field(description="s, the rate period (alarming.flood_window)")
    flood_count: int
    chatter_cycles: int
    chatter_window: float
    fleeting: float
    standing: float
    stale_ack: float


class KpiBenchmarkOut(Out):
    kpi: str
    value: float | None
    target: float | None
    limit: float | None
    source: str
    higher_is_better: bool
    status: Literal["ok", "warn", "bad", "none"]


class KpiOut(Out):
    """Alarm KPIs of [start, end) (alerting/kpi.py; docs/alarms.md "Alarm KPIs")."""

    model_config = ConfigDict(extra="forbid")

    start: int = Field(description="ns")
    end: int = Field(description="ns")
    settings: KpiSettingsOut
    periods: int = Field(description="rate periods (10 min) in the range")
    annunciations: int
    by_priority: dict[str, int]
    per_10min: float
    peak_10min: int
    peak_at: int | None
    flood_periods: int
    flood_pct: float
    rate: list[list[int]] = Field(description="[period start ns, annunciations] per period")
    top10: list[KpiAlarmCountOut]
    top10_pct: float
    chattering: list[KpiAlarmCountOut]
    fleeting: list[KpiAlarmCountOut]
    standing: list[dict[str, Any]]
    standing_at_end: int
    stale_acks: list[dict[str, Any]]
    occurrences: int
    acked: int
    ack_p50: float | None = Field(description="s, time to acknowledge")
    ack_p90: float | None
    ack_p1_p50: float | None
    ack_p1_p90: float | None
    disposed: int
    disposition_pct: float | None = Field(description="处置闭环率, %")
    p1_occurrences: int
    p1_disposed: int
    p1: list[dict[str, Any]] = Field(description="every priority-1 occurrence raised in the range")
    values: dict[str, float | None]
    benchmarks: list[KpiBenchmarkOut]
    source: Literal["journal"] = "journal"
