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
from collections.abc import Mapping
from typing import Any

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


class LoopWatchdog(TaskComponent):
    """Pings systemd's watchdog while the event loop is responsive; measures loop lag."""

    name = "watchdog"

    def __init__(self, sd: SdNotify, *, interval: float | None = None, max_lag: float = 5.0) -> None:
        super().__init__()
        self.sd = sd
        self.interval = interval or sd.watchdog_interval or 1.0
        self.max_lag = max_lag
        self.lag = 0.0
        self.max_seen_lag = 0.0
        self.pings = 0

    def health(self) -> dict[str, Any]:
        return {
            "ok": self.running and self.lag < self.max_lag,
            "loop_lag_s": round(self.lag, 4),
            "max_loop_lag_s": round(self.max_seen_lag, 4),
            "systemd": self.sd.enabled,
            "watchdog_pings": self.pings,
        }

    async def _run(self) -> None:
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(self.interval)
            self.lag = max(0.0, time.monotonic() - t0 - self.interval)
            self.max_seen_lag = max(self.max_seen_lag, self.lag)
            if self.sd.watchdog_interval is not None and self.sd.notify("WATCHDOG=1"):
                self.pings += 1
