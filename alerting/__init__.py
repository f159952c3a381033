"""Alarm engine (ISA-18.2 / IEC 62682 states, GB/T 50493 checks). See alerting/README.md.

Public API::

    AlarmEngine(config, metrics, journal, clock=time.monotonic, wall=time.time_ns)
        await start() / await stop(); on_readings(batch); tick()
        subscribe(cb) -> unsubscribe; active(); suppressed(); alarms(); get(id); history()
        statuses(); status(hs)
        ack(id, user, comment); shelve(id, user, duration | one_shot=True, comment)
        unshelve(id, user, comment); set_out_of_service(id, user, out_of_service, comment)
        dispose(occurrence, cause, action, handler, result, user=..., comment=...)
    Journal(store_path, metrics, retention=...) / Journal.from_config(config, metrics)
    AlarmEvent, alarm_line(event, site_code)
    check_standards(config, line_of) -> StandardsReport (gateway/validate.py runs it for check, run and reload)
"""

from alerting.alarms import AlarmView
from alerting.engine import AlarmCallback, AlarmEngine, AlarmNotFound, NotPermitted
from alerting.events import AlarmEvent, alarm_line
from alerting.journal import Journal, JournalError, Restored
from alerting.standards import (
    OEL_TABLE,
    HazardRisk,
    StandardsReport,
    check_standards,
    gb18218,
)
from alerting.states import InvalidTransition
from alerting.status import HazardStatus

__all__ = [
    "OEL_TABLE",
    "AlarmCallback",
    "AlarmEngine",
    "AlarmEvent",
    "AlarmNotFound",
    "AlarmView",
    "HazardRisk",
    "HazardStatus",
    "InvalidTransition",
    "Journal",
    "JournalError",
    "NotPermitted",
    "Restored",
    "StandardsReport",
    "alarm_line",
    "check_standards",
    "gb18218",
]
