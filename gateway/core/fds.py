"""File descriptor budget: the process limit, what is in use, and a share for a component.

Sockets and files are file descriptors, and ``RLIMIT_NOFILE`` caps them per process. A
component facing the network (the API) must never take the last ones: the InfluxDB sink,
the notifier's pushes, the uplink, the journal and the spool need descriptors to keep the
alarm path working. ``hazardgw run`` raises the soft limit to the hard one at start
(:func:`raise_nofile_limit`); the API then takes at most :func:`share` of what is left,
keeping a reserve (``api.limits.fd_reserve``) free for everything else.
"""

from __future__ import annotations

import os
import resource

#: what the soft limit is raised to at most (the hard limit may be "unlimited")
NOFILE_CAP = 1 << 20


def nofile_limit() -> int:
    """The soft ``RLIMIT_NOFILE`` of this process."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return NOFILE_CAP if soft == resource.RLIM_INFINITY else int(soft)


def raise_nofile_limit() -> tuple[int, int]:
    """Raise the soft ``RLIMIT_NOFILE`` to the hard limit (at most :data:`NOFILE_CAP`).
    Returns (before, after). Process-wide: only the process entry point (``hazardgw run``) calls it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = NOFILE_CAP if hard == resource.RLIM_INFINITY else min(int(hard), NOFILE_CAP)
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
        except (ValueError, OSError):
            return int(soft), int(soft)
        return int(soft), target
    return int(soft), int(soft)


def open_fds() -> int:
    """Descriptors this process has open now (Linux: /proc/self/fd; else a conservative guess)."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # minus the one listdir used
    except OSError:
        return 64


def share(wanted: int, reserve: int, *, limit: int | None = None, in_use: int | None = None) -> int:
    """How many descriptors a component may hold: ``wanted``, but never more than the limit
    minus what is in use minus ``reserve`` (at least 8, so the console is never locked out
    by arithmetic)."""
    limit = nofile_limit() if limit is None else limit
    in_use = open_fds() if in_use is None else in_use
    return max(8, min(wanted, limit - in_use - reserve))
