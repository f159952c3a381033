"""Requests in batches, with the batch size learned from the server.

Each service (read, browse, create monitored items) starts at the smaller of our default
and the limit the server states in ``ServerCapabilities/OperationLimits`` (0 there means
"no limit"). A server that still answers ``BadTooManyOperations`` (or
``BadTooManyMonitoredItems`` for a whole request) gets half the batch, retried at once,
down to one operation per request; the learned size is kept for the source's lifetime
(across reconnects), logged once per change and shown in ``/api/health``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from asyncua import ua
from asyncua.ua.uaerrors import UaStatusCodeError

log = logging.getLogger("adapters.opcua")

T = TypeVar("T")
R = TypeVar("R")

#: status codes meaning "this request is too big"
TOO_MANY = frozenset({ua.StatusCodes.BadTooManyOperations, ua.StatusCodes.BadTooManyMonitoredItems})


def status_name(code: int) -> str:
    try:
        return ua.StatusCode(code).name  # type: ignore[arg-type]
    except Exception:  # an unknown code
        return f"0x{code:08X}"


class BatchLimit:
    """The learned maximum number of operations per request of one service."""

    def __init__(self, source: str, service: str, default: int) -> None:
        self.source = source
        self.service = service
        self.size = max(1, default)
        self.shrinks = 0

    def apply_server_limit(self, limit: int | None) -> None:
        """The server's stated OperationLimits value (0/None: none stated)."""
        if limit and 0 < limit < self.size:
            log.info("opcua %s: server limits %s to %d operations per request", self.source, self.service, limit)
            self.size = int(limit)

    def shrink(self, tried: int, code: int) -> bool:
        """After a too-many answer to a request of ``tried`` operations; False at one."""
        if tried <= 1:
            return False
        new = max(1, tried // 2)
        if new < self.size:
            self.size = new
            self.shrinks += 1
            log.warning("opcua %s: server answered %s to %d %s operations; using batches of %d from now on",
                        self.source, status_name(code), tried, self.service, new)
        return True


async def in_batches(
    items: Sequence[T], limit: BatchLimit, call: Callable[[Sequence[T]], Awaitable[Sequence[R]]]
) -> list[R]:
    """``call`` over ``items`` in batches of ``limit.size`` (shrinking on too-many answers);
    the results in item order. Other errors propagate."""
    out: list[R] = []
    i = 0
    while i < len(items):
        n = min(limit.size, len(items) - i)
        try:
            res = await call(items[i : i + n])
        except UaStatusCodeError as e:
            if e.code in TOO_MANY and limit.shrink(n, e.code):
                continue
            raise
        if len(res) != n:
            raise ValueError(f"{limit.service}: server answered {len(res)} results to {n} operations")
        out.extend(res)
        i += n
    return out
