"""Capped exponential backoff with jitter: the one implementation every retry loop uses.

The n-th delay after a :meth:`Backoff.reset` (n = 0, 1, 2, ...) is::

    base  = min(maximum, initial * 2**n)
    delay = min(maximum, base * uniform(0.8, 1.2))     # jitter: +-20 %, then capped again

So the first wait is about ``initial``, each next one about twice the last, and ``maximum``
is a hard cap (a configured ``backoff_max`` / ``reconnect_max`` is never exceeded; a
``maximum`` below ``initial`` makes every delay ``maximum``, 0 means no wait). The
+-20 % spreads the retries of many clients (gateways reconnecting to one broker after it
restarts, dead devices on one serial line) instead of letting them fire in the same instant.

``jitter=False`` gives the plain doubling schedule, for a schedule that is part of a
documented contract (the notification retry rounds, alerting/notify/outbox.py).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Final

JITTER: Final = 0.2  # each delay is multiplied by a uniform factor in [1 - JITTER, 1 + JITTER)
_MAX_EXPONENT: Final = 62  # 2**62 * any sane initial is far past any cap; avoids float overflow


class Backoff:
    """Delays for consecutive retries: ``next_delay()`` after each failure, ``reset()`` after a success.

    ``rand`` returns a float in [0, 1) (default :func:`random.random`); tests pass a fixed one.
    """

    __slots__ = ("_rand", "attempts", "initial", "jitter", "maximum")

    def __init__(
        self,
        initial: float,
        maximum: float,
        *,
        jitter: bool = True,
        rand: Callable[[], float] = random.random,
    ) -> None:
        if not initial > 0 or not maximum >= 0:  # also rejects NaN
            raise ValueError(f"backoff needs initial > 0 and maximum >= 0 (got {initial!r}, {maximum!r})")
        self.initial = float(initial)
        self.maximum = float(maximum)
        self.jitter = jitter
        self._rand = rand
        self.attempts = 0  # next_delay() calls since the last reset(): failures in a row

    def delay(self, n: int) -> float:
        """The ``n``-th delay (0-based) of the schedule, without touching the state."""
        base = min(self.maximum, self.initial * 2.0 ** min(max(n, 0), _MAX_EXPONENT))
        if not self.jitter:
            return base
        return min(self.maximum, base * (1.0 - JITTER + 2.0 * JITTER * self._rand()))

    def next_delay(self) -> float:
        """The delay before the next retry; each call doubles the base (up to the cap)."""
        d = self.delay(self.attempts)
        self.attempts += 1
        return d

    def reset(self) -> None:
        """Start over at ``initial`` (call after a success)."""
        self.attempts = 0
