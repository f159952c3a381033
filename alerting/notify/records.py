"""What the notifier's parts hand each other, and the InfluxDB ``alarm`` line of its records.

* :class:`AlarmInfo`: the facts of one occurrence a push talks about (from the annunciating
  :class:`~alerting.events.AlarmEvent`, or from an :class:`~alerting.alarms.AlarmView`
  after a restart). Persisted as JSON with the escalation.
* :class:`NotifyRecord`: one ``notified`` (a delivery attempt: recipient, channel, outcome)
  or ``escalated`` (an escalation step > 0 fired: its recipients) record. Subscribers get
  every record; :func:`notify_line` makes its InfluxDB line.

InfluxDB ``alarm`` (docs/influxdb.md): tags ``site, hs, tag, condition, priority``; fields
``event`` ("notified" / "escalated"), ``state``, ``by`` (notified: the recipient's person id),
``occurrence``, ``step``, ``round``, ``channel`` (masked
apprise URL), ``outcome`` (sent, failed, gave_up, cancelled, no_channel), ``attempt``,
``kind`` (alarm / summary) and ``to`` (escalated: comma-separated recipients). The timestamp
is the gateway's wall clock at the record.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from alerting.alarms import AlarmView
from alerting.events import AlarmEvent
from gateway.core.lineprotocol import line


@dataclass(frozen=True, slots=True)
class AlarmInfo:
    occurrence: int
    alarm: str
    tag: str
    condition: str
    priority: int
    hs: str | None
    value: float | None  # at the raise / re-alarm
    limit: float | None
    ts: int  # ns: source time of the raise (or of the re-alarm)
    message: str | None = None

    @classmethod
    def from_event(cls, ev: AlarmEvent) -> AlarmInfo:
        assert ev.occurrence is not None
        return cls(
            ev.occurrence, ev.alarm, ev.tag, ev.condition, ev.priority, ev.hs, ev.value, ev.limit, ev.ts, ev.message
        )

    @classmethod
    def from_view(cls, v: AlarmView, wall: int) -> AlarmInfo:
        assert v.occurrence is not None
        return cls(
            v.occurrence,
            v.id,
            v.tag,
            v.condition,
            v.priority,
            v.hs,
            v.value,
            v.limit,
            v.raised_ts if v.raised_ts is not None else wall,
            v.message,
        )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AlarmInfo:
        return cls(**{k: d.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


@dataclass(frozen=True, slots=True)
class NotifyRecord:
    event: str  # "notified" | "escalated"
    wall: int  # ns
    occurrence: int
    alarm: str
    tag: str
    condition: str
    priority: int
    hs: str | None
    round: int
    step: int | None
    state: str | None = None  # the alarm's state when recorded
    person: str | None = None  # notified: the recipient
    recipients: tuple[str, ...] = ()  # escalated: who the step went to
    channel: str | None = None  # masked apprise URL
    outcome: str | None = None  # notified: sent failed gave_up cancelled no_channel
    attempt: int = 0
    error: str | None = None
    kind: str = "alarm"  # alarm | summary

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["recipients"] = list(self.recipients)
        return d


def notify_line(rec: NotifyRecord, site_code: str) -> str:
    """The InfluxDB ``alarm`` line of a notified/escalated record (ns precision)."""
    tags = {
        "site": site_code,
        "hs": rec.hs,
        "tag": rec.tag,
        "condition": rec.condition,
        "priority": str(rec.priority),
    }
    fields: dict[str, object] = {
        "event": rec.event,
        "state": rec.state,
        "by": rec.person,
        "occurrence": rec.occurrence,
        "step": rec.step,
        "round": rec.round,
        "channel": rec.channel,
        "outcome": rec.outcome,
        "attempt": rec.attempt if rec.event == "notified" else None,
        "kind": rec.kind,
        "to": ",".join(rec.recipients) if rec.recipients else None,
    }
    out = line("alarm", tags, fields, rec.wall)
    assert out is not None  # "event" is always writable
    return out
