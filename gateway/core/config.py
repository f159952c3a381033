"""Site configuration schema: every section except the source types' own models.

The source types (Modbus, MQTT, ...) bring their config models with their adapter package
(``adapters/<type>/config.py``, registered in ``adapters/registry.py``); here they are
known only through :class:`SourceConfig`, the base every one of them extends.
:mod:`gateway.config` assembles the full :class:`Config` from this module and the registry.

Every model forbids unknown keys: a typo in a safety config (``hh: {limt: 2}``) must be an
error, not an alarm that silently never fires. Durations are seconds (float) after
parsing. Secrets are ``SecretStr`` so they never print. Cross-references between sections
(tags, people, hazard sources) are checked in :mod:`gateway.validate`, which also turns
errors into ``file:line: path: message`` lines.
"""

from __future__ import annotations

import datetime as dt
import itertools
import re
import zoneinfo
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from gateway.core.units import parse_duration, parse_size

Duration = Annotated[float, BeforeValidator(parse_duration)]
Size = Annotated[int, BeforeValidator(parse_size)]
Id = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[^\s,=\"\\]+$")]
Priority = Annotated[int, Field(ge=1, le=3)]

TAG_KINDS = (
    "combustible_gas", "toxic_gas", "oxygen", "pressure", "temperature", "level", "flow", "discrete",
    "analog",
)
GAS_KINDS = ("combustible_gas", "toxic_gas", "oxygen")


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


# --------------------------------------------------------------------------- site, people


class Site(Model):
    code: str = Field(min_length=1, max_length=64, description="enterprise code (统一社会信用代码)")
    name: str = Field(min_length=1)
    timezone: str = "Asia/Shanghai"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            zoneinfo.ZoneInfo(v)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {v!r} (use an IANA name such as Asia/Shanghai)") from None
        return v


class Responsible(Model):
    """包保责任人: person ids for the three roles."""

    principal: Id | None = None
    technical: Id | None = None
    operational: Id | None = None


class Substance(Model):
    name: str
    q: float = Field(gt=0, description="actual quantity, t")
    Q: float = Field(gt=0, description="threshold quantity (临界量), t")
    beta: float = Field(default=1.0, ge=1, description="correction factor β")


class Inventory(Model):
    alpha_population: int = Field(ge=0, description="people within 500 m")
    substances: list[Substance] = Field(min_length=1)


class HazardSource(Model):
    code: Id
    name: str
    grade: int = Field(ge=1, le=4, description="一级..四级 = 1..4")
    responsible: Responsible = Responsible()
    inventory: Inventory | None = None


#: the channel group name of ``people[].notify`` in ``duty.escalation*[].channels``
DEFAULT_CHANNEL = "notify"


class Person(Model):
    id: Id
    name: str
    notify: list[str] = Field(default_factory=list, description="apprise URLs, in failover order")
    channels: dict[Id, list[str]] = Field(
        default_factory=dict,
        description="more channel groups by name (e.g. sms, voice), each a failover list of apprise URLs; "
        "escalation steps name the groups that fire together",
    )
    phone: str | None = None
    language: Literal["zh", "en"] | None = None

    @field_validator("channels")
    @classmethod
    def _groups(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        if DEFAULT_CHANNEL in v:
            raise ValueError(f"{DEFAULT_CHANNEL!r} is the name of the person's notify list; pick another group name")
        for name, urls in v.items():
            if not urls:
                raise ValueError(f"channel group {name!r} is empty")
        return v

    def group(self, name: str) -> list[str]:
        """The URLs of channel group ``name`` (``notify``: the notify list), [] if none."""
        return list(self.notify) if name == DEFAULT_CHANNEL else list(self.channels.get(name, ()))

    def all_urls(self) -> list[str]:
        out = list(self.notify)
        for urls in self.channels.values():
            out.extend(u for u in urls if u not in out)
        return out


# --------------------------------------------------------------------------- duty


_HHMM = re.compile(r"^([01]\d|2[0-3]):[0-5]\d$")


class Shift(Model):
    name: Id
    start: str
    end: str
    people: list[Id] = Field(min_length=1)
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None

    @field_validator("start", "end")
    @classmethod
    def _hhmm(cls, v: str) -> str:
        if not _HHMM.match(v):
            raise ValueError(f"time must be HH:MM (24 h), got {v!r}")
        return v


class DutyOverride(Model):
    date: str = Field(pattern=r"^\d{4}-\d{2}-\d{2}$")
    shift: Id | None = None
    people: list[Id] = Field(min_length=1)


class EscalationStep(Model):
    after: Duration
    notify: list[str] = Field(min_length=1, description="on_duty | principal | technical | operational | person id")
    channels: list[Id] | None = Field(
        default=None,
        min_length=1,
        description="channel groups that fire together for every person of the step: notify (the person's "
        "notify list) or a group of people[].channels (sms, voice ...); default [notify]",
    )

    @field_validator("channels")
    @classmethod
    def _distinct(cls, v: list[str] | None) -> list[str] | None:
        if v is not None and len(set(v)) != len(v):
            raise ValueError("a channel group is named twice")
        return v

    @property
    def groups(self) -> tuple[str, ...]:
        return tuple(self.channels) if self.channels else (DEFAULT_CHANNEL,)


class Duty(Model):
    shifts: list[Shift] = Field(default_factory=list)
    overrides: list[DutyOverride] = Field(default_factory=list)
    escalation: list[EscalationStep] = Field(default_factory=list)
    escalation_p1: list[EscalationStep] | None = Field(
        default=None, description="own (shorter) policy for priority-1 alarms"
    )
    handover: Duration = Field(
        default=0.0, description="the outgoing shift stays on duty this long after its end (both get pushes)"
    )

    @field_validator("handover")
    @classmethod
    def _handover(cls, v: float) -> float:
        if not 0 <= v <= 4 * 3600:
            raise ValueError("handover must be 0s..4h")
        return v

    @field_validator("escalation", "escalation_p1")
    @classmethod
    def _ordered(cls, v: list[EscalationStep] | None) -> list[EscalationStep] | None:
        if v:
            afters = [s.after for s in v]
            if afters != sorted(afters):
                raise ValueError("escalation steps must be in increasing 'after' order")
        return v



# --------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class CommLink:
    """A connection several :class:`CommUnit` s share (a Modbus TCP gateway or serial line
    carrying several devices): when every unit on it is lost at once, the link's loss is
    the root cause and gets the one COMM alarm (``<id>/comm``) instead of one per unit."""

    id: str  # alarm tag of the link's COMM alarm; unique in the site, e.g. "modbus:10.0.0.5:502"
    name: str  # what people read, e.g. "Modbus 10.0.0.5:502"


@dataclass(frozen=True)
class CommUnit:
    """One thing whose loss cuts a set of tags off at once: the unit of the COMM alarm.

    The alarm engine raises one COMM alarm (``<id>/comm``) when *every* tag of the unit that
    can show a loss reads ``comm`` or ``stale``, and suppresses the BAD/STALE alarms of those
    tags under it (docs/alarms.md, "Loss of monitoring"). ``check`` requires every tag of a
    hazard source to be covered by its unit's COMM alarm or by a BAD/STALE alarm of its own.
    """

    id: str  # alarm tag of the unit's COMM alarm; unique in the site (a source id, or "<source>.<node>")
    source: str  # the source id it belongs to
    tags: tuple[str, ...]  # the tags whose readings travel through it
    name: str = ""  # what people read ("GDS-B"); default: the id
    link: CommLink | None = None  # a connection shared with other units (see CommLink)
    #: the adapter sends ``comm`` readings for these tags when the unit is lost (a polled
    #: source). False: only ``stale`` shows a loss, so only tags with a stale limit
    #: (``stale_after``, or a polled source) can be watched.
    reports_comm: bool = True
    #: the unit also carries tags no point binds (MQTT ``native`` payloads name their tags);
    #: when exactly one unit of the site does, those tags belong to it.
    carries_unbound: bool = False

    @property
    def label(self) -> str:
        return self.name or self.id


class SourceConfig(Model, ABC):
    """What the core knows of any source: its id, its type name, whether it runs, which
    tags it binds and how often it expects to hear from them. Each source type's model
    extends it (``type: Literal["..."]``) in its adapter package.

    **Loss of monitoring** (:meth:`comm_units`): a source type tells the alarm engine what
    fails as one unit, so that one lost controller reads as one COMM alarm and not as one
    BAD/STALE alarm per detector. The default is one unit per source entry holding all its
    point tags. A type overrides it when its losses come in other shapes:

    * Modbus: one unit per source entry (one device), with a :class:`CommLink` for the bus
      (TCP endpoint or serial line) the device shares with other entries;
    * MQTT: one unit per broker connection (the default), carrying the ``native`` tags;
    * OPC UA: one unit per session (the default, one session per source entry);
    * Sparkplug B: one unit per edge node and per device (``<source>.<node>`` and
      ``<source>.<node>.<device>``, the devices linked to their node with a CommLink).

    Unit ids become alarm tags (``<unit id>/comm``): keep them unique in the site and free of
    spaces, commas, ``=``, quotes and backslashes.
    """

    id: Id
    type: str
    name: str = Field(default="", description="what people read in alarms (e.g. GDS-B); default: the id")
    enabled: bool = True

    @abstractmethod
    def point_tags(self) -> Iterator[str]:
        """The tag ids this source's points bind, in config order."""

    @property
    def expected_interval(self) -> float | None:
        """Seconds between readings of a polled source (its poll interval); None for a
        source that reports when it likes (MQTT, subscriptions): its tags then need their
        own ``stale_after`` for a stale check."""
        return None

    def point_addresses(self) -> dict[str, str]:
        """``{tag: where}``: where each bound tag is read, as a technician reads it in the
        console's point table and the commissioning report (e.g. Modbus ``holding:0 (40001)
        float32 ABCD, unit 1``, MQTT ``plant/gds7/telemetry $.gt101``). One line of text
        per tag; the application never parses it. Default: nothing (the point table then shows
        only the source). Modbus, MQTT and OPC UA implement it."""
        return {}

    def comm_units(self) -> list[CommUnit]:
        """What of this source fails as one unit (see the class docstring). Default: one
        unit, the whole source entry; it reports ``comm`` when the source is polled."""
        return [
            CommUnit(
                id=self.id,
                source=self.id,
                tags=tuple(self.point_tags()),
                name=self.name,
                reports_comm=self.expected_interval is not None,
            )
        ]


# --------------------------------------------------------------------------- tags and alarms


class Suppression(Model):
    """Suppressed by design (DSUPR) while a discrete tag is in ``state``."""

    tag: Id
    state: bool = True


class LimitAlarm(Model):
    limit: float
    priority: Priority = 2
    deadband: float | None = Field(
        default=None, ge=0,
        description="default by kind, % of range span: flow 5, level 5, pressure 2, temperature 1; else 0",
    )
    on_delay: Duration = 0.0
    off_delay: Duration = 0.0
    latch: bool = False
    re_alarm: Duration | None = None
    suppress_by: Suppression | None = None
    enabled: bool = True


class RocAlarm(Model):
    limit: float = Field(gt=0, description="rate in unit per `per`")
    per: Duration = 60.0
    window: Duration | None = Field(default=None, description="least-squares window; default = per")
    direction: Literal["rise", "fall", "both"] | None = Field(
        default=None, description="default: rise for gas tags, both otherwise"
    )
    priority: Priority = 2
    latch: bool = False
    re_alarm: Duration | None = None
    suppress_by: Suppression | None = None
    enabled: bool = True


class StaleAlarm(Model):
    priority: Priority = 2
    enabled: bool = True


class BadAlarm(Model):
    priority: Priority = 2
    qualities: list[Literal["bad", "comm", "uncertain", "stale"]] = ["bad", "comm"]
    on_delay: Duration = 0.0
    enabled: bool = True


class FrozenAlarm(Model):
    after: Duration = Field(description="unchanged for this long")
    tolerance: float = Field(default=0.0, ge=0)
    priority: Priority = 3
    enabled: bool = True


class DiscreteAlarm(Model):
    state: bool = True
    priority: Priority = 2
    on_delay: Duration = 0.0
    latch: bool = False
    re_alarm: Duration | None = None
    suppress_by: Suppression | None = None
    message: str | None = None
    enabled: bool = True


class TagAlarms(Model):
    hh: LimitAlarm | None = None
    h: LimitAlarm | None = None
    l: LimitAlarm | None = None  # noqa: E741 - the ISA-18.2 name
    ll: LimitAlarm | None = None
    roc: RocAlarm | None = None
    stale: StaleAlarm | None = None
    bad: BadAlarm | None = None
    frozen: FrozenAlarm | None = None
    discrete: DiscreteAlarm | None = None

    @model_validator(mode="after")
    def _order(self) -> TagAlarms:
        seq = [(n, getattr(self, n)) for n in ("ll", "l", "h", "hh")]
        present = [(n, a.limit) for n, a in seq if a is not None]
        for (n1, v1), (n2, v2) in itertools.pairwise(present):
            if not v1 < v2:
                raise ValueError(f"limits must rise ll < l < h < hh: {n1}={v1} is not below {n2}={v2}")
        return self


class StandardsWaiver(Model):
    """Lets a tag run with set points GB/T 50493-2019 rejects; the reason is shown by
    ``hazardgw check`` and logged whenever the gateway starts."""

    reason: str = Field(min_length=3, description="why this tag departs from the standard (who decided, where)")


#: a detector whose calibration falls due within this many days is shown as due (``check``, console)
CALIBRATION_DUE_DAYS = 30


class Calibration(Model):
    """When a detector was last calibrated (检定/校准) and how often it must be (JJG 693 and
    the site's rules: usually yearly). ``check`` and the console show tags due within
    :data:`CALIBRATION_DUE_DAYS` days and overdue; an overdue gas detector counts as not in
    use (投用率). A calibration recorded through the API (``POST /api/tags/{id}/calibration``)
    supersedes ``last`` when it is later."""

    last: dt.date = Field(description="date of the last calibration, e.g. 2026-03-01")
    interval: Duration = Field(default=365 * 86400.0, description="calibration interval, e.g. 365d or 180d")

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: float) -> float:
        if not 86400 <= v <= 10 * 366 * 86400:
            raise ValueError("interval must be 1d..10 years (e.g. 365d)")
        return v

    def due(self) -> dt.date:
        """The date the next calibration is due."""
        return self.last + dt.timedelta(seconds=self.interval)


class Tag(Model):
    id: Id
    name: str = ""
    hazard_source: Id | None = None
    kind: Literal[
        "combustible_gas", "toxic_gas", "oxygen", "pressure", "temperature", "level", "flow", "discrete",
        "analog",
    ] = "analog"
    gas: str | None = None
    unit: str = ""
    range: tuple[float, float] | None = None
    alarms: TagAlarms = TagAlarms()
    stale_after: Duration | None = Field(default=None, description="default: 3 x the source's poll interval")
    suppressible: bool | None = Field(default=None, description="default: false for gas tags")
    standards_waiver: StandardsWaiver | None = None
    calibration: Calibration | None = Field(default=None, description="last calibration and interval (检定周期)")

    @model_validator(mode="after")
    def _check(self) -> Tag:
        if self.range is not None and not self.range[0] < self.range[1]:
            raise ValueError(f"range must be [low, high] with low < high, got {list(self.range)}")
        if self.kind in ("combustible_gas", "toxic_gas") and not self.gas:
            raise ValueError(f"kind {self.kind} needs gas (e.g. Cl2, H2S, CH4)")
        if self.kind == "discrete" and any(
            getattr(self.alarms, n) is not None for n in ("hh", "h", "l", "ll", "roc", "frozen")
        ):
            raise ValueError("a discrete tag takes only discrete/stale/bad alarms")
        if self.alarms.discrete is not None and self.kind != "discrete":
            raise ValueError("a discrete alarm needs kind: discrete")
        return self


class Vote(Model):
    """VOTE: k of n detectors of a zone tripped (bad or stale detectors count as tripped)."""

    id: Id
    name: str = ""
    hazard_source: Id | None = None
    tags: list[Id] = Field(min_length=2)
    k: int = Field(ge=1)
    condition: Literal["h", "hh", "l", "ll"] = "h"
    priority: Priority = 1
    latch: bool = False

    @model_validator(mode="after")
    def _k(self) -> Vote:
        if self.k > len(self.tags):
            raise ValueError(f"k={self.k} exceeds the number of tags ({len(self.tags)})")
        return self


HsStatus = Literal["red", "orange", "yellow", "blue"]


def _default_status_matrix() -> dict[int, tuple[HsStatus, HsStatus, HsStatus]]:
    return {1: ("red", "orange", "yellow"), 2: ("red", "orange", "yellow"),
            3: ("orange", "yellow", "blue"), 4: ("orange", "yellow", "blue")}


class StatusRule(Model):
    """Hazard-source status 红/橙/黄/蓝 from its active alarms and grade (alerting/README.md)."""

    matrix: dict[int, tuple[HsStatus, HsStatus, HsStatus]] = Field(
        default_factory=_default_status_matrix,
        description="grade -> status while the worst active alarm is priority 1, 2, 3",
    )
    normal: HsStatus = "blue"
    p1_red_count: int = Field(default=2, ge=0, description="this many priority-1 alarms -> red at any grade; 0 = off")

    @field_validator("matrix")
    @classmethod
    def _grades(cls, v: dict[int, tuple[str, str, str]]) -> dict[int, tuple[str, str, str]]:
        if set(v) != {1, 2, 3, 4}:
            raise ValueError("matrix needs exactly the grades 1, 2, 3 and 4")
        return v


class CommAlarms(Model):
    """COMM alarms: one per lost source unit (docs/alarms.md, "Loss of monitoring")."""

    enabled: bool = True
    on_delay: Duration = Field(default=0.0, description="the unit must stay lost this long")
    off_delay: Duration = Field(default=0.0, description="the unit must stay back this long")
    hold: Duration | None = Field(
        default=None,
        description="how long a tag's loss waits for its unit's (or a unit's for its link's) before it alarms "
        "on its own, and how long tags get to report after a recovery; default per unit: the spread of its "
        "tags' stale limits plus one expected interval",
    )

    @field_validator("on_delay", "off_delay")
    @classmethod
    def _delay(cls, v: float) -> float:
        if not 0 <= v <= 3600:
            raise ValueError("must be 0s..1h")
        return v

    @field_validator("hold")
    @classmethod
    def _hold(cls, v: float | None) -> float | None:
        if v is not None and not 0 <= v <= 3600:
            raise ValueError("hold must be 0s..1h")
        return v


#: alarm journal and outbox retention by default: a monthly report (``hazardgw report alarms``)
#: taken weeks after the month still sees all of it (the minimum, 30 days, would cut it)
JOURNAL_RETENTION = 90 * 86400.0


class Alarming(Model):
    """Engine-wide alarm settings."""

    comm: CommAlarms = CommAlarms()

    flood_count: int = Field(default=10, ge=1)
    flood_window: Duration = 600.0
    chatter_cycles: int = Field(default=3, ge=2)
    chatter_window: Duration = 60.0
    shelve_max: Duration = 8 * 3600.0
    journal_retention: Duration = JOURNAL_RETENTION
    status_rule: Literal["default"] | StatusRule = "default"

    @field_validator("journal_retention")
    @classmethod
    def _retention(cls, v: float) -> float:
        if v < 30 * 86400:
            raise ValueError("the alarm journal must be kept at least 30 days (总局令40号)")
        return v

    @field_validator("shelve_max")
    @classmethod
    def _shelve(cls, v: float) -> float:
        if v > 8 * 3600:
            raise ValueError("shelving is limited to 8 h")
        return v


# Placeholders a custom push template may use (alerting/notify/templates.py fills them).
TEMPLATE_FIELDS = (
    "site", "site_code", "hs", "hs_name", "tag", "tag_name", "condition", "condition_text", "priority",
    "priority_text", "value", "limit", "unit", "time", "state", "state_text", "link", "step", "escalation",
    "person", "message",
)


class MessageTemplate(Model):
    """A custom push text for one language; ``{field}`` placeholders from TEMPLATE_FIELDS."""

    title: str | None = None
    body: str | None = None

    @field_validator("title", "body")
    @classmethod
    def _fields(cls, v: str | None) -> str | None:
        if v is None:
            return v
        import string

        try:
            names = [f for _, f, _, _ in string.Formatter().parse(v) if f is not None]
        except ValueError as e:
            raise ValueError(f"bad template: {e}") from None
        for name in names:
            if name not in TEMPLATE_FIELDS:
                raise ValueError(f"unknown placeholder {{{name}}}: use {', '.join(TEMPLATE_FIELDS)}")
        return v


class Notification(Model):
    language: Literal["zh", "en"] = "zh"
    ack_secret: SecretStr | None = Field(default=None, description="HMAC key for /ack links; default: generated")
    ack_link_ttl: Duration = 24 * 3600.0
    summary_interval: Duration = 60.0
    retry_max: Duration = 300.0
    templates: dict[Literal["zh", "en"], MessageTemplate] = Field(
        default_factory=dict, description="custom push title/body per language"
    )

    @field_validator("ack_secret")
    @classmethod
    def _secret(cls, v: SecretStr | None) -> SecretStr | None:
        if v is not None and len(v.get_secret_value()) < 16:
            raise ValueError("ack_secret must be at least 16 characters (or leave it out: a key is generated)")
        return v

    @field_validator("ack_link_ttl", "summary_interval", "retry_max")
    @classmethod
    def _positive(cls, v: float) -> float:
        if v <= 0:
            raise ValueError("must be > 0")
        return v


# --------------------------------------------------------------------------- sinks, api, store


class Influx(Model):
    url: str = Field(pattern=r"^https?://")
    api: Literal["v1", "v2"] = "v2"
    bucket: str = Field(min_length=1, description="v2 bucket, or v1 database")
    org: str = ""
    token: SecretStr | None = None
    username: str | None = None
    password: SecretStr | None = None
    retention_policy: str | None = None
    batch_size: int = Field(default=5000, ge=1, le=100_000)
    flush_interval: Duration = 1.0
    timeout: Duration = 10.0
    max_buffer: int = Field(default=200_000, ge=1, description="lines held in memory; oldest readings dropped")
    backoff_max: Duration = Field(default=30.0, gt=0, description="longest wait between write retries")
    verify_ssl: bool = True


class ApiToken(Model):
    name: Id
    role: Literal["viewer", "operator", "admin"]
    token_sha256: str = Field(pattern=r"^[0-9a-fA-F]{64}$")
    expires: dt.datetime | dt.date | None = Field(
        default=None,
        description="last day (a date: valid through that day, site time) or moment (a datetime; without an "
        "offset: site time) the token is accepted; then 401",
    )

    @field_validator("expires", mode="before")
    @classmethod
    def _date_only(cls, v: Any) -> Any:
        if isinstance(v, str) and re.fullmatch(r"\s*\d{4}-\d{2}-\d{2}\s*", v):
            return dt.date.fromisoformat(v.strip())  # a quoted date is a date, like an unquoted one
        return v

    def expires_ns(self, timezone: str) -> int | None:
        """When the token stops being accepted, ns since the epoch (None: never)."""
        e = self.expires
        if e is None:
            return None
        tz = zoneinfo.ZoneInfo(timezone)
        if isinstance(e, dt.datetime):
            at = e if e.tzinfo is not None else e.replace(tzinfo=tz)
        else:  # a date: through the end of that day at the site
            at = dt.datetime.combine(e + dt.timedelta(days=1), dt.time(), tzinfo=tz)
        return int(at.timestamp()) * 1_000_000_000 + at.microsecond * 1000


class ApiTls(Model):
    """HTTPS for the API and console (PEM files). With ``client_ca``, clients must present a
    certificate signed by it (mutual TLS)."""

    cert: str = Field(min_length=1, description="server certificate (PEM; the chain after the leaf)")
    key: str = Field(min_length=1, description="its private key (PEM, unencrypted)")
    client_ca: str | None = Field(default=None, description="CA bundle (PEM) that client certificates must chain to")


class ApiLimits(Model):
    """Bounds on what API clients may hold (README "Security"): they protect the alarm path."""

    connections: int = Field(default=256, ge=8, le=100_000, description="concurrent connections, all clients")
    per_client: int = Field(default=32, ge=1, le=100_000, description="concurrent connections from one address")
    header_timeout: Duration = Field(
        default=10.0, description="the request head must be complete this long after the connection (or the "
        "previous response); also the TLS handshake limit")
    idle_timeout: Duration = Field(default=10.0, description="a kept-alive connection without a request is closed")
    body_timeout: Duration = Field(default=10.0, description="the request body must be complete within this")
    max_body: Size = Field(default=64 * 1024, ge=1024, le=16 * 1024**2, description="bytes of a request body")
    accept_rate: float = Field(default=500.0, ge=10, le=100_000, description="new connections accepted per "
                               "second (a burst of a tenth of that); more wait in the kernel's backlog")
    sse_per_token: int = Field(default=8, ge=1, le=1000, description="event streams one token may hold")
    fd_reserve: int = Field(
        default=256, ge=32, description="file descriptors kept free for sinks, notifier, uplink, journal (the API "
        "refuses connections beyond RLIMIT_NOFILE minus this and what the gateway holds at start)")

    @model_validator(mode="after")
    def _check(self) -> ApiLimits:
        if self.per_client > self.connections:
            raise ValueError("per_client must be <= connections")
        for k in ("header_timeout", "idle_timeout", "body_timeout"):
            if not 0.5 <= getattr(self, k) <= 300:
                raise ValueError(f"{k} must be between 0.5 s and 5 min")
        return self


class ApiLockout(Model):
    """Too many authentication failures from one address: 429 for ``cooldown``."""

    failures: int = Field(default=10, ge=3, le=1000)
    window: Duration = 60.0
    cooldown: Duration = 300.0

    @model_validator(mode="after")
    def _check(self) -> ApiLockout:
        if not 1 <= self.window <= 86400 or not 1 <= self.cooldown <= 86400:
            raise ValueError("window and cooldown must be between 1 s and 1 d")
        return self


#: the shortest audit retention (GB/T 22239-2019 / Cybersecurity Law: at least six months)
AUDIT_RETENTION_MIN = 180 * 86400.0


class Api(Model):
    listen: str = Field(default="127.0.0.1:8080", pattern=r"^[^:\s]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$")
    public_url: str | None = Field(default=None, pattern=r"^https?://")
    tokens: list[ApiToken] = Field(default_factory=list)
    cors_origins: list[str] = Field(default_factory=list)
    enabled: bool = True
    tls: ApiTls | None = None
    limits: ApiLimits = ApiLimits()
    lockout: ApiLockout = ApiLockout()
    audit_retention: Duration = Field(
        default=AUDIT_RETENTION_MIN, description="how long {store.path}/audit/ keeps records (at least 180 d)")

    @field_validator("audit_retention")
    @classmethod
    def _retention(cls, v: float) -> float:
        if v < AUDIT_RETENTION_MIN:
            raise ValueError("audit_retention must be at least 180d (six months of security audit records)")
        return v

    @model_validator(mode="after")
    def _check(self) -> Api:
        names = [t.name for t in self.tokens]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"token names must be unique (they name the user in the journal and audit log): {dup}")
        digests = [t.token_sha256.lower() for t in self.tokens]
        if len(set(digests)) != len(digests):
            raise ValueError("two tokens have the same token_sha256")
        if self.tls is not None and (self.public_url is None or not self.public_url.startswith("https://")):
            raise ValueError("with api.tls, api.public_url must be set and start with https:// (one-tap "
                             "acknowledge links point there, and the port speaks only HTTPS)")
        return self


class Store(Model):
    path: str = "/var/lib/hazardgw"
    max_bytes: Size = 1024**3


SECRET_OPTION_WORDS = ("key", "iv", "secret", "password", "token", "salt")


def is_secret_option(name: str) -> bool:
    """An ``uplink.options`` name that holds a secret (never shown in repr or logs)."""
    parts = str(name).lower().replace("-", "_").split("_")
    if parts[-1] in ("id", "format", "encoding"):  # key_id, key_format: about the secret, not the secret
        return False
    return any(w in parts for w in SECRET_OPTION_WORDS)


class Uplink(Model):
    profile: str = "generic"
    url: str = Field(pattern=r"^(mqtts?|tcp|tls|https?)://")
    mapping: str | None = Field(
        default=None, description="profile mapped: a shipped mapping name (jiangsu-tcp) or a path to a mapping YAML",
    )
    prefix: str = "hazard"
    period: Duration = 10.0
    heartbeat: Duration = 60.0
    client_id: str | None = None
    username: str | None = None
    password: SecretStr | None = None
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    qos: Literal[0, 1] = 1
    reconnect_min: Duration = 0.5
    reconnect_max: Duration = 30.0
    options: dict[str, Any] = Field(default_factory=dict, description="profile-specific settings")
    enabled: bool = True

    def __repr_args__(self) -> Any:
        """repr() without secrets: ``password`` is a SecretStr, and option values whose name
        says they are secret (key, iv, app_secret, token...) are shown as '**********'."""
        for name, value in super().__repr_args__():
            if name == "options" and isinstance(value, dict):
                value = {k: "**********" if is_secret_option(k) else v for k, v in value.items()}
            yield name, value

    @model_validator(mode="after")
    def _check(self) -> Uplink:
        if self.period <= 0 or self.heartbeat <= 0:
            raise ValueError("period and heartbeat must be > 0")
        if not 0 < self.reconnect_min <= self.reconnect_max:
            raise ValueError("need 0 < reconnect_min <= reconnect_max")
        return self


class SiteConfig(Model):
    site: Site
    hazard_sources: list[HazardSource] = Field(default_factory=list)
    people: list[Person] = Field(default_factory=list)
    duty: Duty = Duty()
    sources: list[SourceConfig] = Field(default_factory=list)
    tags: list[Tag] = Field(default_factory=list)
    votes: list[Vote] = Field(default_factory=list)
    alarming: Alarming = Alarming()
    notification: Notification = Notification()
    influx: Influx | None = None
    api: Api = Api()
    store: Store = Store()
    uplink: Uplink | None = None

    # -- lookups used by the runtime (built once; the model is frozen)
    def tag_map(self) -> dict[str, Tag]:
        return {t.id: t for t in self.tags}

    def hazard_source_map(self) -> dict[str, HazardSource]:
        return {h.code: h for h in self.hazard_sources}

    def source_of_tag(self) -> dict[str, str]:
        """tag id -> source id, for every tag bound to a source."""
        return {tag: s.id for s in self.sources for tag in s.point_tags()}

    def comm_units(self) -> list[CommUnit]:
        """The units of loss of monitoring of every source (:meth:`SourceConfig.comm_units`),
        in config order. When exactly one unit carries unbound tags (MQTT ``native``), the
        tags no point binds are added to it; with several, nobody can tell which one lost
        them, so they are in no unit (they need their own STALE alarm)."""
        units = [u for s in self.sources for u in s.comm_units()]
        open_units = [i for i, u in enumerate(units) if u.carries_unbound]
        if len(open_units) == 1:
            bound = {t for s in self.sources for t in s.point_tags()}
            extra = tuple(t.id for t in self.tags if t.id not in bound)
            if extra:
                i = open_units[0]
                units[i] = replace(units[i], tags=units[i].tags + extra)
        return units
