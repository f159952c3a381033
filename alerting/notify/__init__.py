"""Alarm pushes to duty officers' phones (alerting/notify/README.md). See alerting/notify/README.md.

Public API::

    Notifier(config, engine, metrics, *, clock=time.monotonic, wall=time.time_ns, store_path=None)
        await start() / await stop(); health(); tick()
        on_alarm_event(ev)                    # the owner subscribes it: engine.subscribe(notifier.on_alarm_event)
        subscribe(cb) -> unsubscribe          # cb(NotifyRecord): notified / escalated records
        inspect(token) / acknowledge(token) -> AckView   # for gateway.api.ack
        deliveries(occurrence=None)           # delivery attempts (who, when, channel, outcome)
    notify_line(record, site_code) -> str     # the InfluxDB ``alarm`` line of a record
    check_notification(config) -> (errors, warnings)
    Roster, AckSigner, Channels, mask_url, Templates
"""

from alerting.notify.acklinks import AckClaims, AckSigner, TokenError, TokenExpired, TokenInvalid, load_key
from alerting.notify.channels import Channels, SendResult, mask_url
from alerting.notify.check import check_notification
from alerting.notify.notifier import AckView, Notifier
from alerting.notify.records import AlarmInfo, NotifyRecord, notify_line
from alerting.notify.roster import Roster
from alerting.notify.templates import Templates

__all__ = [
    "AckClaims",
    "AckSigner",
    "AckView",
    "AlarmInfo",
    "Channels",
    "Notifier",
    "NotifyRecord",
    "Roster",
    "SendResult",
    "Templates",
    "TokenError",
    "TokenExpired",
    "TokenInvalid",
    "check_notification",
    "load_key",
    "mask_url",
    "notify_line",
]
