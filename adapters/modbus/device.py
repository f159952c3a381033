"""Per-device communication state: answering, or failed and backing off.

A device that stops answering is probed with one request per cycle at first; from its
second failure in a row it is skipped for a doubling number of poll intervals, capped at
``backoff_max`` (:class:`gateway.core.backoff.Backoff`; its +-20 % jitter keeps several dead
devices on one line from being retried in the same cycle). While skipped it costs the bus
nothing and its points read ``comm``.
The transitions (failed, answering again) are logged once each.
"""

from __future__ import annotations

import logging
from typing import Any

from gateway.core.backoff import Backoff

log = logging.getLogger("adapters.modbus")


class DeviceState:
    def __init__(self, source_id: str, key: str, poll_interval: float, backoff_max: float) -> None:
        self.source_id = source_id
        self.key = key  # e.g. tcp://10.0.0.5:502/3
        self.poll_interval = poll_interval
        self.backoff_max = backoff_max
        self._backoff = Backoff(poll_interval, backoff_max)
        self.state = "unknown"  # unknown | ok | comm
        self.failures = 0  # timeouts in a row
        self.retry_at = 0.0  # monotonic; no request before this while failed
        self.down_since: float | None = None
        self.last_error: str | None = None
        self.last_ok: float | None = None
        self.bad_reasons: dict[str, str] = {}  # reason -> detail, while the device answers badly

    def due(self, now: float) -> bool:
        """May the device be asked this cycle?"""
        return self.failures == 0 or now >= self.retry_at

    def answered(self, now: float, *, well: bool = True) -> None:
        """The device answered (``well=False``: with something that does not fit the request,
        reported through :meth:`bad_answer`)."""
        if well and self.bad_reasons:
            log.info(
                "source %s: device %s answers correctly again (bad answers before: %s)",
                self.source_id,
                self.key,
                ", ".join(sorted(self.bad_reasons)),
            )
            self.bad_reasons.clear()
        if self.state == "comm" and self.failures:
            log.info(
                "source %s: device %s answers again after %.1f s",
                self.source_id,
                self.key,
                now - (self.down_since or now),
            )
        self.state = "ok"
        self.failures = 0
        self._backoff.reset()
        self.retry_at = 0.0
        self.down_since = None
        self.last_ok = now

    def bad_answer(self, reason: str, detail: str) -> None:
        """A bad answer (garbage, another transaction id, a wrong length or count): logged
        once per device and reason, until the device answers correctly again."""
        self.last_error = f"bad answer ({reason}): {detail}"
        if reason not in self.bad_reasons:
            self.bad_reasons[reason] = detail
            log.warning(
                "source %s: device %s sends bad answers (%s): %s; counted as bad_response, "
                "not logged again for this device until it answers correctly",
                self.source_id,
                self.key,
                reason,
                detail,
            )

    def timed_out(self, now: float, detail: str, *, count: bool = True, quiet: bool = False) -> None:
        """No usable answer. ``count=False``: the failure does not move the backoff on (the
        poller is trying smaller requests); ``quiet``: the reason was logged already."""
        self.last_error = detail
        if count:
            self.failures += 1
            if self.failures >= 2:
                self.retry_at = now + self._backoff.next_delay()
        else:
            self.failures = max(self.failures, 1)
        if self.state != "comm" and quiet:
            self.state = "comm"
            self.down_since = now
        if self.state != "comm":
            log.warning(
                "source %s: device %s not answering (%s); its points read comm", self.source_id, self.key, detail
            )
            self.state = "comm"
            self.down_since = now

    def unreachable(self, now: float, detail: str) -> None:
        """The bus is down: the device's points are comm, but it is not blamed (no backoff)."""
        self.last_error = detail
        if self.state != "comm":
            self.state = "comm"
            self.down_since = now

    def health(self, now: float) -> dict[str, Any]:
        return {
            "key": self.key,
            "state": "backoff" if self.failures and now < self.retry_at else self.state,
            "failures_in_a_row": self.failures,
            "down_for_s": round(now - self.down_since, 3) if self.down_since is not None else None,
            "last_error": self.last_error,
            "bad_answers": dict(self.bad_reasons),
        }
