"""The profile interface: what a platform format (a "profile") must provide.

Provinces and parks differ in transport and payload format, so the uplink core
(:mod:`gateway.uplink.service`) knows neither. A profile is two small pieces:

* a **message builder** (:class:`Profile`): turns the gateway's neutral data (latest tag
  values, an alarm event, the heartbeat's health, the site metadata) into
  :class:`Message` objects: a topic (or channel name) and a one-line text payload;
* a **transport** (:class:`Transport`): delivers messages in order and returns only once
  the platform has them (MQTT: PUBACK for QoS 1; a TCP protocol: its acknowledgement).

The core stores every realtime, alarm and meta message in the durable spool *as built*
(so an outage keeps them, and a message is re-sent byte for byte), takes them out in order
(alarm and meta messages before any realtime backlog) and hands them to
:meth:`Transport.send`. Heartbeats are not stored: a heartbeat says "alive now", so one
that cannot be sent is skipped and counted.

A profile is chosen by ``uplink.profile``: a built-in name (:data:`BUILTIN`) or
``package.module:ClassName`` of a subclass of :class:`Profile` importable by the gateway
(see gateway/uplink/PROFILES.md for a worked example). Nothing in the core changes.
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from alerting.events import AlarmEvent
    from gateway.config import Config
    from gateway.core.config import SiteConfig, Uplink
    from gateway.core.problems import Problem


# --------------------------------------------------------------------------- data


class Message(NamedTuple):
    """One message for the platform.

    ``topic``: the MQTT topic (or, for other transports, the profile's channel name); no
    tab or newline. ``payload``: one line of text (JSON for the built-in profiles), no
    newline; it is stored in the spool as built. ``priority``: alarm and meta messages,
    sent before any realtime backlog and never dropped to make room for realtime data.
    """

    topic: str
    payload: str
    priority: bool = False


class TagValue(NamedTuple):
    """The latest value of one tag, as the realtime message reports it."""

    tag: str  # 位号 (indicator code): the tag id
    name: str
    hs: str | None  # hazard source code
    kind: str
    unit: str
    value: float | None  # None when stale / unreachable
    quality: str  # good bad uncertain stale comm (gateway.core.models.Quality)
    ts: int  # ns, the reading's source timestamp
    alarm_status: str  # HH H L LL normal: the worst active limit alarm of the tag (real alarms only)
    maintenance: bool = False  # the tag is in test mode (bump test, maintenance): its value is not the process's


@dataclass(frozen=True)
class Heartbeat:
    """What the heartbeat reports."""

    ts: int  # ns, wall clock
    status: str  # ok / degraded (as /api/health)
    uptime_s: float
    components: Mapping[str, bool]  # component -> ok
    sources: Mapping[str, Mapping[str, Any]]  # source id -> {"type", "online": bool, "hour", "day"}
    hazard_sources: Mapping[str, Mapping[str, Any]]  # code -> {"hour", "day", "status"}
    backlog: int  # uplink messages waiting (spool)
    active_alarms: int
    version: str = ""
    # in-use rate of gas detectors (投用率) of the site: {"hour", "day", "tags", "in_service"};
    # per hazard source the same keys are in ``hazard_sources[code]`` as in_use_hour / in_use_day
    in_use: Mapping[str, Any] | None = None


def collect_time(ts_ns: int, tz: ZoneInfo) -> str:
    """``yyyyMMddHHmmss`` of ``ts_ns`` in the site's time zone (the platforms' 采集时间 format)."""
    return datetime.fromtimestamp(ts_ns / 1e9, tz).strftime("%Y%m%d%H%M%S")


def epoch_ms(ts_ns: int) -> int:
    return ts_ns // 1_000_000


LIMIT_STATUS: Mapping[str, str] = {"hh": "HH", "ll": "LL", "h": "H", "l": "L"}
STATUS_ORDER: tuple[str, ...] = ("hh", "ll", "h", "l")  # worst first
NORMAL = "normal"


def alarm_status(active_limits: set[str] | frozenset[str] | None) -> str:
    """HH / LL / H / L / normal from the set of active limit conditions of a tag."""
    if active_limits:
        for c in STATUS_ORDER:
            if c in active_limits:
                return LIMIT_STATUS[c]
    return NORMAL


# --------------------------------------------------------------------------- interface


class TransportError(Exception):
    """The transport could not deliver (connection lost, no acknowledgement in time...).

    The core keeps the messages and tries again after reconnecting. The message must not
    contain secrets (it is logged and shown in /api/health).
    """


class Transport(ABC):
    """Delivers messages to the platform, in order, with an acknowledgement.

    ``request_handler`` is set by the core: a transport that reads frames from the platform
    calls it with ``"meta"`` when the platform asks for the site metadata (point
    registration) again. Called on the event loop; it must not block.
    """

    request_handler: Callable[[str], None] | None = None

    @property
    @abstractmethod
    def connected(self) -> bool:
        """True while a connection is up."""

    @abstractmethod
    async def connect(self) -> None:
        """Open the connection; raise :class:`TransportError` (or OSError) on failure."""

    @abstractmethod
    async def send(self, messages: Sequence[Message]) -> None:
        """Deliver ``messages`` in order; return when the platform acknowledged all of them.

        Raise :class:`TransportError` when not all were acknowledged: the core then sends
        the whole sequence again after reconnecting (at-least-once: the platform
        deduplicates by the payload's message id). Never called concurrently.
        """

    @abstractmethod
    async def close(self) -> None:
        """Close the connection (idempotent)."""

    def describe(self) -> str:
        """Where it sends to, for health and logs (no secrets)."""
        return self.__class__.__name__


class Profile(ABC):
    """Builds the platform's messages and its transport. See the module docstring.

    Builders run on the event loop: realtime once per period, alarm per alarm event
    (inside the alarm engine's callback: keep it cheap, no I/O), heartbeat and meta rarely.
    """

    name: ClassVar[str] = ""

    def __init__(self, config: Config, uplink: Uplink) -> None:
        self.config = config
        self.uplink = uplink
        self.site = config.site
        self.tz = ZoneInfo(config.site.timezone)
        #: the tags in test mode (under maintenance); set by the core before it builds messages
        self.maintenance: frozenset[str] = frozenset()

    def set_maintenance(self, tags: frozenset[str]) -> bool:
        """The tags in test mode changed (the core calls this; realtime items carry it as
        :attr:`TagValue.maintenance` anyway). Return True when the profile's meta message
        reports maintenance, so the core sends meta again at once; a profile that caches
        per-tag data refreshes it here. Default: remember the set, no meta."""
        self.maintenance = tags
        return False

    @classmethod
    def check(cls, uplink: Uplink) -> list[str]:
        """Problems with ``uplink`` (url scheme, ``options``) for ``hazardgw check``; [] if fine."""
        return []

    @classmethod
    def check_config(cls, config: SiteConfig) -> list[Problem]:
        """Problems that need the whole site (codes, tags) or another file (a mapping), for
        ``hazardgw check``; a problem without ``file`` and ``line`` gets the config line of its
        path. Severity warning does not stop the config. Called after :meth:`check`."""
        return []

    @abstractmethod
    def transport(self) -> Transport:
        """A new, unconnected transport for this profile's ``uplink.url``."""

    @abstractmethod
    def meta(self, now_ns: int) -> list[Message]:
        """Site metadata (tags with ranges and limits, hazard sources): on start and on change."""

    @abstractmethod
    def realtime(self, values: Sequence[TagValue], now_ns: int) -> list[Message]:
        """The latest value of every tag, once per ``uplink.period``."""

    @abstractmethod
    def alarm(self, event: AlarmEvent, status: str) -> list[Message]:
        """One alarm event (raised, cleared, acked...); ``status`` is the tag's alarm status
        (HH/H/L/LL/normal) after the event. Return [] to not report this event. Events of
        test occurrences (``event.test``, test mode) never reach a profile."""

    @abstractmethod
    def heartbeat(self, hb: Heartbeat) -> list[Message]:
        """The heartbeat, every ``uplink.heartbeat``."""


# --------------------------------------------------------------------------- registry

BUILTIN: Mapping[str, str] = {
    "generic": "gateway.uplink.generic:GenericProfile",
    "tcp-aes": "gateway.uplink.tcp_aes:AesTcpProfile",
    "mapped": "gateway.uplink.mapped:MappedProfile",
}


class ProfileError(ValueError):
    """``uplink.profile`` names no usable profile."""


def resolve_profile(name: str) -> type[Profile]:
    """The profile class for ``uplink.profile``: a built-in name or ``module:Class``."""
    target = BUILTIN.get(name, name)
    if ":" not in target:
        raise ProfileError(
            f"unknown uplink profile {name!r}: use one of {', '.join(sorted(BUILTIN))} or package.module:ClassName"
        )
    module_name, _, attr = target.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ProfileError(f"uplink profile {name!r}: cannot import {module_name} ({e})") from None
    cls = getattr(module, attr, None)
    if not (isinstance(cls, type) and issubclass(cls, Profile)):
        raise ProfileError(f"uplink profile {name!r}: {target} is not a subclass of gateway.uplink.Profile")
    return cls


def check_messages(messages: list[Message]) -> list[Message]:
    """``messages`` if the spool can frame them all (topic without tab or line break, payload
    without line break), else ValueError."""
    for m in messages:
        if "\t" in m.topic or "\n" in m.topic or "\r" in m.topic or "\n" in m.payload or "\r" in m.payload:
            raise ValueError(f"uplink message for {m.topic[:80]!r}: topic or payload contains a line break/tab")
    return messages


def encode_record(m: Message) -> str:
    """The spool record of ``m``: ``topic<TAB>payload``."""
    return f"{m.topic}\t{m.payload}"


def decode_record(record: str, priority: bool) -> Message:
    topic, _, payload = record.partition("\t")
    return Message(topic, payload, priority)
