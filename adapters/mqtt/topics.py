"""MQTT topic-filter matching and message routing (pure).

A message can match several subscriptions (``plant/#`` and ``plant/+/telemetry``), and
each matching subscription decodes it with its own format. Exact filters are a dict
lookup; wildcard filters are matched level by level, and the answer for each topic is
cached (topics repeat; the cache is bounded and simply cleared when full).

Rules (MQTT 3.1.1 section 4.7 / MQTT 5 section 4.7): ``+`` matches exactly one level,
``#`` matches the parent level and any number of levels below it, and a topic starting
with ``$`` (``$SYS/...``) is not matched by a filter starting with a wildcard. A shared
subscription ``$share/{group}/{filter}`` matches like ``{filter}``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Generic, TypeVar

T = TypeVar("T")


def strip_share(filt: str) -> str:
    """``$share/group/a/b`` -> ``a/b`` (the filter that topics are matched against)."""
    if filt.startswith("$share/"):
        parts = filt.split("/", 2)
        return parts[2] if len(parts) == 3 else ""
    return filt


def filter_matches(filt: str, topic: str) -> bool:
    """Does ``topic`` match the subscription filter ``filt``?"""
    f = strip_share(filt).split("/")
    t = topic.split("/")
    if topic.startswith("$") and f[0] in ("+", "#"):
        return False
    for i, level in enumerate(f):
        if level == "#":
            return True
        if i >= len(t):
            return False
        if level != "+" and level != t[i]:
            return False
    return len(f) == len(t)


def is_wildcard(filt: str) -> bool:
    return "+" in filt or "#" in filt


class TopicRouter(Generic[T]):
    """Routes a topic to the targets of every filter it matches (in configuration order)."""

    def __init__(self, routes: Sequence[tuple[str, T]], cache_size: int = 4096) -> None:
        self._exact: dict[str, list[tuple[int, T]]] = {}
        self._wild: list[tuple[int, str, T]] = []
        for i, (filt, target) in enumerate(routes):
            bare = strip_share(filt)
            if is_wildcard(bare):
                self._wild.append((i, filt, target))
            else:
                self._exact.setdefault(bare, []).append((i, target))
        self._cache: dict[str, tuple[T, ...]] = {}
        self._cache_size = cache_size

    def route(self, topic: str) -> tuple[T, ...]:
        hit = self._cache.get(topic)
        if hit is not None:
            return hit
        found = list(self._exact.get(topic, ()))
        for i, filt, target in self._wild:
            if filter_matches(filt, topic):
                found.append((i, target))
        found.sort(key=lambda it: it[0])
        result = tuple(t for _, t in found)
        if len(self._cache) >= self._cache_size:
            self._cache.clear()
        self._cache[topic] = result
        return result
