"""How often each tag is expected to report: the one place that derives it from the config.

A polled source (``SourceConfig.expected_interval``, e.g. a Modbus poll interval) sets it
for its tags; a tag's own ``stale_after`` overrides the stale limit (0 disables it). The
stale watcher, the alarm engine's STALE condition and the data online rate all read these
functions, so they cannot disagree.
"""

from __future__ import annotations

from gateway.core.config import SiteConfig

STALE_POLLS = 3  # default stale_after: this many poll intervals of the tag's source


def poll_intervals(config: SiteConfig, *, enabled_only: bool = False) -> dict[str, float]:
    """tag -> its source's expected interval, for tags of polled sources."""
    out: dict[str, float] = {}
    for s in config.sources:
        if enabled_only and not s.enabled:
            continue
        e = s.expected_interval
        if e is not None:
            for tag in s.point_tags():
                out[tag] = e
    return out


def stale_limits(config: SiteConfig) -> dict[str, float]:
    """tag -> stale_after seconds: the tag's own (0 disables), else 3 x its polled source's
    interval; tags with neither (e.g. MQTT without stale_after) have no stale check."""
    poll = poll_intervals(config)
    out: dict[str, float] = {}
    for t in config.tags:
        if t.stale_after is not None:
            if t.stale_after > 0:
                out[t.id] = t.stale_after
        elif t.id in poll:
            out[t.id] = STALE_POLLS * poll[t.id]
    return out


def expected_intervals(config: SiteConfig, default_interval: float) -> dict[str, tuple[str, str | None, float]]:
    """tag -> (source id, hazard source code or None, expected interval) for every tag bound
    to an enabled source: the poll interval, else stale_after / 3, else ``default_interval``."""
    tags = config.tag_map()
    out: dict[str, tuple[str, str | None, float]] = {}
    for src in config.sources:
        if not src.enabled:
            continue
        for tag in src.point_tags():
            t = tags.get(tag)
            if t is None:
                continue
            if src.expected_interval is not None:
                e = float(src.expected_interval)
            elif t.stale_after:
                e = float(t.stale_after) / STALE_POLLS
            else:
                e = float(default_interval)
            out[tag] = (src.id, t.hazard_source, e)
    return out
