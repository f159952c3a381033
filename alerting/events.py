"""The alarm event record and its InfluxDB ``alarm`` line (docs/influxdb.md).

One :class:`AlarmEvent` is made per transition (and per disposition). It goes, in this
order, to the in-memory history, the journal queue and the subscribers. Events are rare
compared with readings, so this module favours clarity over speed.

InfluxDB ``alarm``: tags ``site, hs, tag, condition, priority`` (and ``test=true`` on the
events of a test occurrence); fields ``event, state, value, limit, by, seq`` plus
``occurrence`` (the occurrence id); docs/influxdb.md has the table. ``value`` and ``limit``
are always floats so the field types never conflict.
The timestamp is the reading's source timestamp for raised/cleared caused by a reading and
the gateway's wall clock otherwise. Two events of one alarm with the same timestamp would
be one point in InfluxDB (same series and time: the later overwrites the earlier), so the
engine moves a colliding timestamp on by 1 ns; nothing else is ever changed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

from gateway.core.lineprotocol import line


@dataclass(frozen=True, slots=True)
class AlarmEvent:
    seq: int  # gateway-wide event sequence, strictly increasing, survives restarts (journal)
    event: str  # raised cleared acked realarmed shelved unshelved suppressed unsuppressed
    #             out_of_service in_service disposed (alerting.states.EVENTS)
    alarm: str  # alarm id: "<tag>/<condition>" (votes: "<vote id>/vote")
    tag: str  # tag id (votes: the vote id)
    condition: str  # hh h l ll roc stale bad frozen discrete vote
    priority: int  # 1 emergency .. 3 low
    state: str  # state after the event (alerting.states)
    prev_state: str
    active: bool  # the condition is active (process side), whatever the state
    occurrence: int | None  # occurrence id; None for actions on an alarm with no open occurrence
    value: float | None  # value at the event: reading, ROC rate, tripped vote members
    limit: float | None  # limit, ROC rate limit, stale/frozen seconds, vote k
    ts: int  # ns, source timestamp (raised/cleared by a reading) or gateway wall clock
    wall: int  # ns, gateway wall clock when the event was made
    hs: str | None = None  # hazard source code
    user: str | None = None  # who acted ("system" for timers and suppression by design)
    comment: str | None = None
    chattering: bool = False  # the alarm raised >= chatter_cycles times within chatter_window
    flood: bool = False  # the engine is in flood (> flood_count annunciations in flood_window)
    message: str | None = None  # the alarm's configured message (discrete alarms)
    # disposition {cause, action, handler, result}; shelve {until, one_shot}; COMM raised {comm: {...}};
    # suppressed/unsuppressed under a COMM alarm {parent}
    data: Mapping[str, Any] | None = None
    source: str | None = None  # the source (id) the tag's readings come through; COMM: the lost source(s)
    # the event belongs to a test occurrence (raised while its tag was in test mode), or concerns
    # an alarm of a tag in test: shown and journaled, never pushed to phones or sent to the platform
    test: bool = False

    @property
    def annunciates(self) -> bool:
        """True for events that should reach a person (raised, realarmed)."""
        return self.event in ("raised", "realarmed")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if self.data is not None:
            d["data"] = dict(self.data)
        return d


def _float(v: float | None) -> float | None:
    return None if v is None else float(v)


def alarm_line(event: AlarmEvent, site_code: str) -> str:
    """The InfluxDB ``alarm`` line of ``event`` (ns precision)."""
    tags = {
        "site": site_code,
        "hs": event.hs,
        "tag": event.tag,
        "condition": event.condition,
        "priority": str(event.priority),
        "test": "true" if event.test else None,  # a tag only on test events: no new series otherwise
    }
    fields: dict[str, object] = {
        "event": event.event,
        "state": event.state,
        "value": _float(event.value),
        "limit": _float(event.limit),
        "by": event.user,
        "seq": event.seq,
        "occurrence": event.occurrence,
    }
    out = line("alarm", tags, fields, event.ts)
    assert out is not None  # "event" is always writable
    return out
