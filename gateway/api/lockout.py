"""Lockout of a client address after repeated authentication failures (issue 25 item 3).

``failures`` failures (an unknown API token, a forged or tampered one-tap acknowledge link)
within ``window`` seconds from one address lock that address out for ``cooldown`` seconds:
every request from it that needs a credential gets **429** ``locked_out`` with
``Retry-After``, before the credential is even looked at. Successes do not reset the count
(a valid viewer token must not buy unlimited guesses at an operator token). A missing
token is not a guess (a console before login); an *expired* token is a known token, not a
guess, so neither counts.

Memory is bounded: at most ``max_clients`` addresses are tracked; beyond that the one with
the oldest activity is forgotten. ``clock`` is monotonic seconds (tests pass their own).
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from collections.abc import Callable


class Lockout:
    def __init__(
        self,
        failures: int = 10,
        window: float = 60.0,
        cooldown: float = 300.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.failures = failures
        self.window = window
        self.cooldown = cooldown
        self.max_clients = max_clients
        self._clock = clock
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()  # client -> recent failure times
        self._until: dict[str, float] = {}  # client -> end of its lockout
        self.lockouts = 0  # lockouts started (hazardgw_api_lockouts_total)

    def locked(self, client: str) -> float | None:
        """Seconds left of ``client``'s lockout, or None when it is not locked out."""
        until = self._until.get(client)
        if until is None:
            return None
        left = until - self._clock()
        if left > 0:
            return left
        del self._until[client]
        self._seen.pop(client, None)  # a fresh start after the cooling period
        return None

    def failure(self, client: str) -> bool:
        """Record a failure from ``client``; True when it starts a lockout."""
        now = self._clock()
        q = self._seen.get(client)
        if q is None:
            q = self._seen[client] = deque(maxlen=self.failures)
            while len(self._seen) > self.max_clients:
                old, _ = self._seen.popitem(last=False)
                self._until.pop(old, None)
        else:
            self._seen.move_to_end(client)
        q.append(now)
        if len(q) >= self.failures and now - q[0] <= self.window and client not in self._until:
            self._until[client] = now + self.cooldown
            self.lockouts += 1
            return True
        return False

    def locked_clients(self) -> int:
        now = self._clock()
        return sum(1 for until in tuple(self._until.values()) if until > now)  # tuple(): scrapes run on another thread
