"""Rate-limited logging for bad input and repeated failures: the first occurrence is logged,
repeats are counted and the count is added to the next message that gets through.

The one implementation; do not roll a ``_last_log`` dict by hand."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable


class RateLimitedLog:
    """Logs at most one message per key every ``interval`` seconds, with a count of the rest.

    Keys are free-form strings: one per kind of problem, or per problem and place
    (``f"{where}\\0{reason}"``, ``f"cb:{id(cb)}"``). ``clock`` is for tests.
    """

    def __init__(
        self, logger: logging.Logger, interval: float = 30.0, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.logger = logger
        self.interval = interval
        self._clock = clock
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def log(self, level: int, key: str, msg: str, *args: object, exc_info: bool = False) -> bool:
        """Log unless ``key`` was logged less than ``interval`` s ago. True if logged.

        ``exc_info=True`` (inside an ``except`` block) adds the traceback to the logged message."""
        now = self._clock()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return False
        self._last[key] = now
        n = self._suppressed.pop(key, 0)
        if n and last is not None:  # repeats are counted only after a logged one
            msg += f" ({n} similar suppressed in the last {now - last:.0f} s)"
        self.logger.log(level, msg, *args, exc_info=exc_info)
        return True

    def warning(self, key: str, msg: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, msg, *args)

    def error(self, key: str, msg: str, *args: object, exc_info: bool = False) -> bool:
        return self.log(logging.ERROR, key, msg, *args, exc_info=exc_info)
