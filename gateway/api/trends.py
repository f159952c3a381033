"""Recent values per tag for the console's small trends, and the "what changed" set for SSE.

``RecentValues`` is a pipeline subscriber (the supervisor subscribes it) whose hot path
only records *which* tags got a reading (one set update per batch). Once a second the
event hub calls :meth:`tick`, which takes the latest reading of each changed tag from the
gateway's live state (``latest``), appends it to that tag's ring (at most ``size``
points, so at most one point per tag per tick) and returns those readings for the SSE
``readings`` message. Memory is bounded by the number
of configured tags times ``size``; readings of unknown tags are ignored.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Mapping, Sequence
from operator import itemgetter

from gateway.api.views import num
from gateway.core.models import Quality, Reading

_TAG = itemgetter(0)
_VALUED = frozenset({Quality.GOOD, Quality.UNCERTAIN})


class RecentValues:
    name = "api-trends"

    def __init__(self, latest: Mapping[str, Reading], tags: Iterable[str], size: int = 120) -> None:
        self.latest = latest
        self.size = size
        self._known = frozenset(tags)
        self._dirty: set[str] = set()
        self._rings: dict[str, deque[tuple[int, float | None]]] = {}

    def on_readings(self, batch: Sequence[Reading]) -> None:
        self._dirty.update(map(_TAG, batch))

    def tick(self) -> list[Reading]:
        """Latest reading of every tag that changed since the last tick (and record it)."""
        dirty, self._dirty = self._dirty, set()
        latest = self.latest
        out: list[Reading] = []
        for tag in dirty:
            if tag not in self._known:
                continue
            r = latest.get(tag)
            if r is None:
                continue
            ring = self._rings.get(tag)
            if ring is None:
                ring = self._rings[tag] = deque(maxlen=self.size)
            if not ring or ring[-1][0] != r.ts:
                ring.append((r.ts, num(r.value) if r.quality in _VALUED else None))
            out.append(r)
        out.sort(key=_TAG)
        return out

    def recent(self, tag: str, n: int | None = None) -> list[tuple[int, float | None]]:
        ring = self._rings.get(tag)
        if not ring:
            return []
        pts = list(ring)
        return pts if n is None or n >= len(pts) else pts[len(pts) - n :]
