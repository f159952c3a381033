"""systemd notification protocol (sd_notify) and event-loop watchdog, without a dependency.

Under systemd with ``Type=notify``, ``NOTIFY_SOCKET`` names a UNIX datagram socket. The
gateway sends ``READY=1`` once every component has started, ``STOPPING=1`` on shutdown,
``RELOADING=1``/``READY=1`` around a SIGHUP reload, ``STATUS=...`` lines, and, when
``WatchdogSec=`` is set (``WATCHDOG_USEC``), ``WATCHDOG=1`` at half that period.

The pings come from a task on the gateway's own event loop, and only while the loop is
responsive: a loop stalled by blocking code stops the pings and systemd restarts the
service. The same task measures loop lag (how late a timer fires), reported in
``/api/health``. Outside systemd all of this is a no-op apart from the lag measurement.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Mapping
from typing import Any

from prometheus_client import CollectorRegistry, Histogram

from gateway.core.tasks import TaskComponent

log = logging.getLogger(__name__)


class SdNotify:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        addr = env.get("NOTIFY_SOCKET", "")
        if addr.startswith("@"):  # abstract namespace
            addr = "\0" + addr[1:]
        self.address = addr or None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        self.watchdog_interval: float | None = None
        if usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_interval = int(usec) / 1e6 / 2
        self._sock: socket.socket | None = None
        self.sent: int = 0

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def notify(self, *fields: str) -> bool:
        """Send ``KEY=value`` lines; False (and no exception) when not under systemd or on error."""
        if self.address is None:
            return False
        try:
            if self._sock is None:
                self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as e:
            log.warning("sd_notify to %r failed: %s", self.address, e)
            return False
        self.sent += 1
        return True

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


LAG_BUCKETS = (0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoopWatchdog(TaskComponent):
    """Pings systemd's watchdog while the event loop is responsive; measures loop lag.

    Lag is how late a ``sample`` s timer fires (every 50 ms): the time anything ready on the
    gateway's loop (an alarm evaluation, a push) may have waited. Reported in
    ``/api/health`` (``loop_lag_s``, ``max_loop_lag_s``, ``max_loop_lag_1m_s``) and, with a
    ``registry``, as the histogram ``hazardgw_loop_lag_seconds``.
    """

    name = "watchdog"

    def __init__(
        self,
        sd: SdNotify,
        *,
        interval: float | None = None,
        max_lag: float = 5.0,
        sample: float = 0.05,
        registry: CollectorRegistry | None = None,
    ) -> None:
        super().__init__()
        self.sd = sd
        self.interval = interval or sd.watchdog_interval or 1.0
        self.sample = min(sample, self.interval)
        self.max_lag = max_lag
        self.lag = 0.0
        self.max_seen_lag = 0.0
        self.pings = 0
        self._recent: deque[tuple[float, float]] = deque(maxlen=64)  # (second, max lag in it)
        self._hist = None if registry is None else Histogram(
            "hazardgw_loop_lag_seconds", "How late a 50 ms timer on the gateway's event loop fired",
            buckets=LAG_BUCKETS, registry=registry,
        )

    def recent_max(self, window: float = 60.0) -> float:
        now = time.monotonic()
        return max((lag for t, lag in self._recent if now - t <= window), default=0.0)

    def health(self) -> dict[str, Any]:
        return {
            "ok": self.running and self.lag < self.max_lag,
            "loop_lag_s": round(self.lag, 4),
            "max_loop_lag_s": round(self.max_seen_lag, 4),
            "max_loop_lag_1m_s": round(self.recent_max(), 4),
            "systemd": self.sd.enabled,
            "watchdog_pings": self.pings,
        }

    def _observe(self, lag: float, now: float) -> None:
        self.lag = lag
        self.max_seen_lag = max(self.max_seen_lag, lag)
        if self._hist is not None:
            self._hist.observe(lag)
        sec = float(int(now))
        if self._recent and self._recent[-1][0] == sec:
            if lag > self._recent[-1][1]:
                self._recent[-1] = (sec, lag)
        else:
            self._recent.append((sec, lag))

    async def _run(self) -> None:
        last_ping = time.monotonic()
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(self.sample)
            now = time.monotonic()
            self._observe(max(0.0, now - t0 - self.sample), now)
            if now - last_ping >= self.interval:
                last_ping = now
                if self.sd.watchdog_interval is not None and self.sd.notify("WATCHDOG=1"):
                    self.pings += 1
