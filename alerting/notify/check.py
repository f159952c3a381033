"""Config checks for notification and duty (run by ``gateway/validate.py`` for check, run and reload).

``check_notification(config)`` returns findings with their config path: channels apprise
does not accept (error: that person cannot be reached; the message says why: unknown
scheme, missing or malformed part, ``wecom://`` read as PushPlus), channel groups a step
names that a person it can reach lacks (that person gets the push on ``notify``), people who
can be notified but have no channel, gaps in the roster over the next week, links that a
phone cannot open (no ``api.public_url`` and a loopback/wildcard listen address), a
priority-1 policy whose first step is not immediate.
"""

from __future__ import annotations

import time

from alerting.notify.channels import check_url
from alerting.notify.escalation import ON_DUTY, ROLES, policy_for
from alerting.notify.roster import Roster
from gateway.core.config import DEFAULT_CHANNEL, SiteConfig
from gateway.core.problems import Finding


def check_notification(config: SiteConfig, now_wall: int | None = None) -> list[Finding]:
    out: list[Finding] = []

    def warn(path: tuple[str | int, ...], msg: str) -> None:
        out.append(Finding(path, msg, "warning"))

    people = {p.id: p for p in config.people}
    for i, p in enumerate(config.people):
        located: list[tuple[tuple[str | int, ...], str]] = [
            (("people", i, "notify", j), u) for j, u in enumerate(p.notify)
        ]
        for g, urls in p.channels.items():
            located += [(("people", i, "channels", g, j), u) for j, u in enumerate(urls)]
        for path, url in located:
            found = check_url(url)
            if found is not None:
                out.append(Finding(path, f"{found[1]} (person {p.id})", found[0]))

    reachable: set[str] = set()
    for s in config.duty.shifts:
        reachable.update(s.people)
    for o in config.duty.overrides:
        reachable.update(o.people)
    for h in config.hazard_sources:
        for role in ROLES:
            pid = getattr(h.responsible, role)
            if pid:
                reachable.add(pid)
    for steps in (config.duty.escalation, config.duty.escalation_p1 or []):
        for st in steps:
            reachable.update(t for t in st.notify if t != ON_DUTY and t not in ROLES)
    index = {p.id: i for i, p in enumerate(config.people)}
    for pid in sorted(reachable):
        person = people.get(pid)
        if person is not None and not person.notify:
            what = ("no notify URL" if not person.channels
                    else "no notify URL (fallback when a step's channels are missing)")
            warn(("people", index[pid]), f"person {pid} is on the roster or an escalation target but has {what}")

    # channel groups: every person a step can reach should have the groups it names
    on_duty = {pid for s in config.duty.shifts for pid in s.people} | {
        pid for o in config.duty.overrides for pid in o.people
    }
    for key in ("escalation", "escalation_p1"):
        for k, st in enumerate(getattr(config.duty, key) or []):
            if st.channels is None or list(st.channels) == [DEFAULT_CHANNEL]:
                continue
            targets: set[str] = set()
            for t in st.notify:
                if t == ON_DUTY:
                    targets |= on_duty
                elif t in ROLES:
                    targets |= {pid for h in config.hazard_sources if (pid := getattr(h.responsible, t))}
                else:
                    targets.add(t)
            for pid in sorted(targets):
                person = people.get(pid)
                if person is None:
                    continue
                lacking = [g for g in st.channels if not person.group(g)]
                if len(lacking) == len(st.channels):
                    warn(("duty", key, k, "channels"), f"person {pid} has none of the channels {', '.join(lacking)}: "
                         "this step reaches them on notify")
                elif lacking:
                    warn(("duty", key, k, "channels"), f"person {pid} has no {', '.join(lacking)} channel: "
                         f"this step reaches them on {', '.join(g for g in st.channels if g not in lacking)} only")

    if not config.duty.shifts:
        warn(("duty",), "duty.shifts is empty: on_duty names nobody; pushes fall back to the responsible people")
    else:
        roster = Roster(config.duty, config.site.timezone)
        gaps = roster.gaps(now_wall if now_wall is not None else time.time_ns(), days=7)
        for a, b in gaps[:5]:
            warn(("duty", "shifts"), f"nobody on duty {a:%a %Y-%m-%d %H:%M} - {b:%a %Y-%m-%d %H:%M}")
        if len(gaps) > 5:
            warn(("duty", "shifts"), f"{len(gaps) - 5} more gaps in the next 7 days")

    if config.api.public_url is None:
        host = config.api.listen.rsplit(":", 1)[0].strip("[]")
        if host in ("0.0.0.0", "::", "127.0.0.1", "localhost", "::1"):
            warn(("api",), f"api.public_url is not set: ack links use http://{config.api.listen}, "
                 "which a phone cannot open")
    p1 = policy_for(config.duty, 1)
    if p1 and p1[0].after > 0:
        where = ("duty", "escalation_p1" if config.duty.escalation_p1 else "escalation", 0, "after")
        warn(where, f"priority-1 alarms reach nobody for {p1[0].after:g} s: the first escalation step waits")
    return out
