"""What every southbound adapter gets and provides.

An adapter reads a device or broker and turns what it gets into :class:`Reading` tuples,
which it hands to ``ctx.emit`` in batches. It never knows about sinks or alarms.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.config import Tag
from gateway.metrics import Metrics
from gateway.models import Reading

Emit = Callable[[Sequence[Reading]], Awaitable[None]]


@dataclass(frozen=True)
class SourceContext:
    emit: Emit  # waits when the pipeline is full (backpressure); never drops
    metrics: Metrics  # shared collectors; register own ones on metrics.registry
    tags: Mapping[str, Tag]  # the site's tag table (id -> Tag), for ranges and kinds
    store_path: str | None = None  # for adapters that need persistent state


class SourceAdapter(Protocol):
    id: str

    async def start(self) -> None:
        """Start background tasks and return; connection failures are retried, not raised."""

    async def stop(self) -> None:
        """Stop tasks and close connections; idempotent."""

    def health(self) -> dict[str, Any]:
        """``{"ok": bool, "connected": bool, ...}`` for /api/health."""
