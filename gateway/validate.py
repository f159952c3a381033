"""The one decision whether a site config may run: ``hazardgw check``, ``run`` and a reload
all call :func:`validate_file` / :func:`validate_text`.

YAML + ``${ENV}`` -> schema -> cross-references -> the source types' own checks (through
the registry) -> the uplink profile's checks (and its mapping file) -> GB/T 50493-2019 set
points and GB 18218-2018 S / R -> notification and duty -> no silent loss of monitoring
(:func:`coverage_problems`). Every finding is a :class:`Problem` with its path, line and
severity, all collected at once so a user fixes a config in one pass. Any error means the
config does not run: ``run`` exits 2 listing them, a reload keeps the running config.
``load_config`` raises :class:`ConfigError` carrying the result.

``offline_secrets=True`` (``hazardgw check --offline-secrets``, a commissioning laptop
without the site's secrets): an unset ``${ENV}`` is a warning instead of an error, its value
a placeholder (32 letters and digits, which token patterns accept), and a schema error in a
value that holds one is reported as a warning ("not checked: depends on unset ${X}"; the key
is left out so the rest can be checked); every other check runs as usual (notify URLs:
scheme and every part, with the placeholder standing in for the secret). Such a result is
only for reading: ``run`` and a reload never pass it.
"""

from __future__ import annotations

import datetime as dt
import difflib
import ipaddress
import os
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from pydantic import BaseModel, ValidationError

from adapters.registry import SOURCE_SPECS, SPEC_BY_TYPE
from alerting.notify import check_notification
from alerting.standards import check_standards
from gateway.config import Config
from gateway.core.config import GAS_KINDS, BadAlarm, CommUnit, StaleAlarm
from gateway.core.intervals import stale_limits
from gateway.core.problems import Problem, Severity, format_path
from gateway.core.tls import check_server_files
from gateway.core.yamlsrc import Path_, SourceMap, YamlError, load_yaml, offline_placeholder
from gateway.upkeep.calibration import check_problems as calibration_problems
from gateway.uplink.profile import ProfileError, resolve_profile

ROLE_TARGETS = ("on_duty", "principal", "technical", "operational")


@dataclass
class Validation:
    """Everything found in one config. ``config`` is None when there is any error."""

    config: Config | None
    problems: list[Problem] = field(default_factory=list)
    filename: str = "<config>"
    unset: list[str] = field(default_factory=list)  # --offline-secrets: variables replaced by placeholders

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "warning"]

    @property
    def infos(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "info"]

    @property
    def waivers(self) -> list[Problem]:
        """Set-point errors a tag waived (warnings starting ``waived (reason):``)."""
        return [p for p in self.warnings if p.message.startswith("waived (")]

    def format_errors(self) -> list[str]:
        return [p.format(self.filename) for p in self.errors]

    def format_warnings(self) -> list[str]:
        return [p.format(self.filename) for p in self.warnings]


class ConfigError(Exception):
    def __init__(self, result: Validation) -> None:
        self.result = result
        lines = result.format_errors()
        super().__init__(f"{len(lines)} config error(s):\n" + "\n".join(lines))


def _known_fields(model: type[BaseModel], seen: set[type[BaseModel]] | None = None) -> set[str]:
    """Every key of the config schema (for "did you mean"), walking nested models."""
    seen = set() if seen is None else seen
    if model in seen:
        return set()
    seen.add(model)
    names = set(model.model_fields)
    for f in model.model_fields.values():
        stack = [f.annotation]
        while stack:
            t = stack.pop()
            if isinstance(t, type) and issubclass(t, BaseModel):
                names |= _known_fields(t, seen)
            stack.extend(getattr(t, "__args__", ()))
    return names


_KNOWN = _known_fields(Config) | {k for spec in SOURCE_SPECS for m in spec.models for k in _known_fields(m)}


def _data_path(data: Any, loc: tuple[str | int, ...]) -> Path_:
    """Map a pydantic ``loc`` onto the data, dropping union discriminator entries."""
    out: list[str | int] = []
    cur = data
    last = len(loc) - 1
    for i, part in enumerate(loc):
        if isinstance(cur, dict) and part in cur:
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, list) and isinstance(part, int) and 0 <= part < len(cur):
            out.append(part)
            cur = cur[part]
        elif isinstance(cur, dict | list) and i < last:
            continue  # a union member name such as 'modbus_tcp', or 'function-after[...]'
        else:
            out.append(part)  # a missing key, or a position inside a scalar
            cur = None
    return tuple(out)


def _pydantic_problems(data: Any, err: ValidationError, smap: SourceMap) -> list[Problem]:
    out: list[Problem] = []
    for e in err.errors(include_url=False):
        path = _data_path(data, tuple(e["loc"]))
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            key = str(path[-1]) if path else "?"
            close = difflib.get_close_matches(key, _KNOWN, n=1, cutoff=0.75)
            msg = f"unknown key {key!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
        elif e["type"] == "missing":
            msg = "required key is missing"
        elif msg.startswith("Value error, "):
            msg = msg[len("Value error, ") :]
        elif e["type"] in ("literal_error", "union_tag_invalid"):
            msg = msg.replace("Input should be", "must be").replace("Input tag", "value")
            if "input" in e and not isinstance(e["input"], dict | list):
                msg += f", got {e['input']!r}"
        out.append(Problem(path, smap.line_of(path), msg))
    return out


def _cross_refs(data: Mapping[str, Any], smap: SourceMap) -> tuple[list[Problem], list[Problem]]:
    """Checks across sections. Works on raw data so it runs even when the schema failed."""
    errors: list[Problem] = []
    warnings: list[Problem] = []

    def err(path: Path_, msg: str) -> None:
        errors.append(Problem(path, smap.line_of(path), msg))

    def warn(path: Path_, msg: str) -> None:
        warnings.append(Problem(path, smap.line_of(path), msg, "warning"))

    def items(section: str) -> list[tuple[int, dict[str, Any]]]:
        v = data.get(section) if isinstance(data, Mapping) else None
        return [(i, x) for i, x in enumerate(v) if isinstance(x, dict)] if isinstance(v, list) else []

    def unique(section: str, key: str) -> set[str]:
        seen: Counter[str] = Counter()
        for i, x in items(section):
            k = x.get(key)
            if isinstance(k, str):
                seen[k] += 1
                if seen[k] == 2:
                    err((section, i, key), f"duplicate {key} {k!r}")
        return set(seen)

    hs_codes = unique("hazard_sources", "code")
    people = unique("people", "id")
    tag_ids = unique("tags", "id")
    unique("sources", "id")
    unique("votes", "id")
    tags_by_id = {x["id"]: x for _, x in items("tags") if isinstance(x.get("id"), str)}

    def need_tag(path: Path_, tag: Any, what: str = "tag") -> None:
        if isinstance(tag, str) and tag not in tag_ids:
            close = difflib.get_close_matches(tag, tag_ids, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            err(path, f"unknown {what} {tag!r}: not in tags{hint}")

    def need_person(path: Path_, pid: Any) -> None:
        if isinstance(pid, str) and pid not in people:
            err(path, f"unknown person {pid!r}: not in people")

    # hazard sources -> people
    for i, hz in items("hazard_sources"):
        resp = hz.get("responsible")
        if isinstance(resp, dict):
            for role, pid in resp.items():
                need_person(("hazard_sources", i, "responsible", role), pid)

    # duty -> people, escalation targets
    duty = data.get("duty") if isinstance(data, Mapping) else None
    if isinstance(duty, dict):
        for key in ("shifts", "overrides"):
            for i, sh in enumerate(duty.get(key) or []):
                if isinstance(sh, dict):
                    for j, pid in enumerate(sh.get("people") or []):
                        need_person(("duty", key, i, "people", j), pid)
        shift_names = {s.get("name") for s in duty.get("shifts") or [] if isinstance(s, dict)}
        for i, ov in enumerate(duty.get("overrides") or []):
            if isinstance(ov, dict) and ov.get("shift") is not None and ov["shift"] not in shift_names:
                err(("duty", "overrides", i, "shift"), f"unknown shift {ov['shift']!r}")
        groups = {"notify"} | {
            g for _, x in items("people") if isinstance(x.get("channels"), dict) for g in x["channels"]
        }
        for key in ("escalation", "escalation_p1"):
            for i, step in enumerate(duty.get(key) or []):
                if isinstance(step, dict) and isinstance(step.get("channels"), list):
                    for j, g in enumerate(step["channels"]):
                        if isinstance(g, str) and g not in groups:
                            close = difflib.get_close_matches(g, groups, n=1)
                            hint = f" (did you mean {close[0]!r}?)" if close else ""
                            err(
                                ("duty", key, i, "channels", j),
                                f"unknown channel group {g!r}{hint}: use notify or a group of people[].channels "
                                f"({', '.join(sorted(groups - {'notify'})) or 'none defined'})",
                            )
                if isinstance(step, dict):
                    for j, target in enumerate(step.get("notify") or []):
                        if isinstance(target, str) and target not in ROLE_TARGETS and target not in people:
                            err(
                                ("duty", key, i, "notify", j),
                                f"unknown target {target!r}: use {', '.join(ROLE_TARGETS)} or a person id",
                            )

    # sources -> tags; a tag is bound by at most one point (the source type says where its
    # points are, and checks what only it understands)
    bound: dict[str, Path_] = {}

    def bind(path: Path_, tag: Any) -> None:
        if not isinstance(tag, str):
            return
        need_tag(path, tag)
        if tag in bound:
            err(path, f"tag {tag!r} is already bound at {format_path(bound[tag])}")
        else:
            bound[tag] = path

    has_native = False
    for i, src in items("sources"):
        spec = SPEC_BY_TYPE.get(src.get("type"))  # type: ignore[arg-type]
        if spec is None:
            continue  # the schema reports the unknown type
        for rel, p in spec.raw_points(src):
            bind(("sources", i, *rel, "tag"), p.get("tag"))
        for rel, msg in spec.check_raw(src):
            err(("sources", i, *rel), msg)
        has_native = has_native or spec.carries_unbound_tags(src)

    # tags -> hazard sources, suppression tags. Tags no point binds can come from a feed
    # whose payloads name tags (MQTT ``native``).
    for i, t in items("tags"):
        hs = t.get("hazard_source")
        if isinstance(hs, str) and hs not in hs_codes:
            err(("tags", i, "hazard_source"), f"unknown hazard source {hs!r}: not in hazard_sources")
        alarms = t.get("alarms")
        if isinstance(alarms, dict):
            for cond, spec in alarms.items():
                if isinstance(spec, dict) and isinstance(spec.get("suppress_by"), dict):
                    stag = spec["suppress_by"].get("tag")
                    path = ("tags", i, "alarms", cond, "suppress_by", "tag")
                    need_tag(path, stag)
                    if isinstance(stag, str) and stag in tags_by_id and tags_by_id[stag].get("kind") != "discrete":
                        err(path, f"suppressing tag {stag!r} must be kind discrete")
                    if t.get("kind") in GAS_KINDS and t.get("suppressible") is not True:
                        err(path, "gas alarms are not suppressible unless the tag sets suppressible: true")
        if isinstance(t.get("id"), str) and t["id"] not in bound and data.get("sources") and not has_native:
            warn(("tags", i, "id"), f"tag {t['id']!r} is not bound to any source point")

    for i, v in items("votes"):
        for j, tag in enumerate(v.get("tags") or []):
            need_tag(("votes", i, "tags", j), tag)
            if isinstance(tag, str) and tag in tags_by_id:
                cond = v.get("condition", "h")
                al = tags_by_id[tag].get("alarms")
                if not (isinstance(al, dict) and isinstance(al.get(cond), dict)):
                    err(("votes", i, "tags", j), f"tag {tag!r} has no {cond!r} alarm to vote on")
        hs = v.get("hazard_source")
        if isinstance(hs, str) and hs not in hs_codes:
            err(("votes", i, "hazard_source"), f"unknown hazard source {hs!r}: not in hazard_sources")

    return errors, warnings


def _source_problems(config: Config, smap: SourceMap) -> list[Problem]:
    """What only a source type can judge across its sources (shared-bus settings, 4-20 mA
    points without a range), through the registry."""
    index = {s.id: i for i, s in enumerate(config.sources)}
    tags = config.tag_map()
    out = []
    for spec in SOURCE_SPECS:
        mine = [s for s in config.sources if s.type in spec.types]
        if not mine:
            continue
        for sp in spec.check(mine, tags):
            path: Path_ = ("sources", index[sp.source], *sp.path) if sp.source in index else ("sources",)
            out.append(Problem(path, smap.line_of(path), sp.message, sp.severity))
    return out


def _uplink_problems(config: Config, smap: SourceMap) -> list[Problem]:
    """The uplink profile exists and accepts the url and options (the profile judges them)."""
    up = config.uplink
    if up is None or not up.enabled:
        return []
    try:
        cls = resolve_profile(up.profile)
    except ProfileError as e:
        return [Problem(("uplink", "profile"), smap.line_of(("uplink", "profile")), str(e))]
    out = []
    for msg in cls.check(up):
        path: Path_ = ("uplink", "options") if msg.startswith(("options", "unknown option")) else ("uplink",)
        out.append(Problem(path, smap.line_of(path), msg))
    for p in cls.check_config(config):  # codes, tags, a mapping file (its problems carry its own file and line)
        out.append(p if p.file is not None or p.line is not None else replace(p, line=smap.line_of(p.path)))
    return out


def coverage_problems(config: Config, smap: SourceMap | None = None) -> list[Problem]:
    """No silent loss of monitoring: every tag of a hazard source must be covered by its
    source unit's COMM alarm (alerting/comm.py) or by a BAD/STALE alarm of its own that can
    see the loss. Each error names the tag and the fix (docs/alarms.md, "Loss of monitoring")."""
    line_of = smap.line_of if smap is not None else (lambda _path: None)
    comm_on = config.alarming.comm.enabled
    limits = stale_limits(config)
    unit_of: dict[str, CommUnit] = {}
    for unit in config.comm_units():
        for tid in unit.tags:
            unit_of.setdefault(tid, unit)
    has_sources = bool(config.sources)
    out: list[Problem] = []
    for i, t in enumerate(config.tags):
        if t.hazard_source is None:
            continue
        u = unit_of.get(t.id)
        if u is None and not has_sources:
            continue  # nothing is read at all (a config being drafted): the binding warning says so
        stale_limit = t.id in limits
        seen = u is not None and (u.reports_comm or stale_limit)
        if comm_on and seen:
            continue  # the unit's COMM alarm covers it
        gas = t.kind in GAS_KINDS
        st = t.alarms.stale if t.alarms.stale is not None else (StaleAlarm() if gas else None)
        bad = t.alarms.bad if t.alarms.bad is not None else (BadAlarm() if gas else None)
        own_stale = st is not None and st.enabled and stale_limit
        own_bad = bad is not None and bad.enabled and "comm" in bad.qualities and u is not None and u.reports_comm
        if own_stale or own_bad:
            continue
        where = f"tag {t.id!r} of hazard source {t.hazard_source}"
        if u is None:
            why = ("is bound to no source point (and no single MQTT native feed carries it), so no COMM alarm "
                   "covers it")
            fix = "bind it to a source point, or give it stale_after and alarms: {stale: {}}"
        elif not seen:
            why = (f"comes from {u.label} ({u.source}), which shows a lost connection only as stale data, and the "
                   "tag has no stale_after")
            fix = "set stale_after on the tag (e.g. 3 x its publish interval)"
        else:
            why = "has no BAD or STALE alarm and COMM alarms are off (alarming.comm.enabled: false)"
            fix = ("enable alarming.comm, or give the tag alarms: {stale: {}}" if stale_limit
                   else "enable alarming.comm, or give the tag stale_after and alarms: {stale: {}}")
        path: Path_ = ("tags", i)
        out.append(Problem(path, line_of(path), f"{where} can lose monitoring without an alarm: it {why}. Fix: {fix}"))
    return out


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_problems(config: Config, smap: SourceMap, *, now: dt.datetime | None = None) -> list[Problem]:
    """``api``: the TLS files (readable, PEM, key matches, expiry: gateway/core/tls.py), a
    non-loopback address without TLS, tokens that expired or expire within 7 days."""
    api = config.api
    if not api.enabled:
        return []
    now = now or dt.datetime.now(dt.UTC)
    out: list[Problem] = []

    def add(path: Path_, message: str, severity: Severity = "error") -> None:
        out.append(Problem(path, smap.line_of(path), message, severity))

    host = api.listen.rpartition(":")[0].strip("[]")
    if api.tls is not None:
        url_host = urlsplit(api.public_url).hostname if api.public_url else None
        for f in check_server_files(api.tls.cert, api.tls.key, api.tls.client_ca, now=now, host=url_host):
            add(("api", "tls", f.field), f.message, f.severity)
    elif not _is_loopback(host):
        add(("api", "listen"), f"{api.listen} is reachable from the network without api.tls: API tokens and "
            "acknowledgements cross it in clear text, anyone on the network can read and replay them; set "
            "api.tls (hazardgw tls self-signed makes a certificate) or listen on 127.0.0.1 behind a TLS proxy",
            "warning")
    now_ns = int(now.timestamp() * 1e9)
    for i, t in enumerate(api.tokens):
        end = t.expires_ns(config.site.timezone)
        if end is None:
            continue
        if end <= now_ns:
            add(("api", "tokens", i, "expires"), f"token {t.name!r} has expired (expires: {t.expires}): it is "
                "refused (make a new one: hazardgw token new)", "warning")
        elif end - now_ns <= 7 * 86400 * 10**9:
            add(("api", "tokens", i, "expires"), f"token {t.name!r} expires within 7 days (expires: {t.expires}): "
                "make a new one (hazardgw token new)", "warning")
    return out


def _model_problems(config: Config, smap: SourceMap) -> list[Problem]:
    """Checks on the validated model: GB/T 50493 set points and GB 18218 (S, R), notification."""
    rep = check_standards(config, smap.line_of)
    out = [*rep.errors, *rep.warnings, *rep.waived]
    for i, h in enumerate(rep.hazard_sources):
        path: Path_ = ("hazard_sources", i)
        out.append(Problem(path, smap.line_of(path), h.format(config.notification.language), "info"))
    for f in check_notification(config):
        out.append(Problem(f.path, smap.line_of(f.path), f.message, f.severity))
    return out


def _downgrade(problems: list[Problem], unset: dict[Path_, list[str]]) -> list[Problem]:
    """--offline-secrets: errors in a value that holds a placeholder become warnings."""
    out = []
    for p in problems:
        names = next((v for path, v in unset.items() if p.path[: len(path)] == path), None)
        if p.severity == "error" and names:
            vars_ = ", ".join("${" + n + "}" for n in names)
            p = Problem(p.path, p.line, f"not checked: depends on unset {vars_}: {p.message}", "warning")
        out.append(p)
    return out


def _without_placeholders(
    data: dict[str, Any], found: list[Problem], unset: dict[Path_, list[str]], smap: SourceMap
) -> tuple[Config | None, list[Problem]]:
    """--offline-secrets: schema errors only in values holding a placeholder (a port from an
    unset variable) do not stop the check: those keys are left out (their defaults apply) and
    the rest is validated; the errors are reported as not checked."""
    import copy

    trimmed = copy.deepcopy(data)
    pending = found  # the problems of this round: their keys are left out next
    for _ in range(5):
        if any(p.severity == "error" and not any(p.path[: len(u)] == u for u in unset) for p in pending):
            return None, found  # a real schema error: report it
        for p in pending:
            parent: Any = trimmed
            for part in p.path[:-1]:
                ok = isinstance(parent, dict) or (isinstance(parent, list) and isinstance(part, int))
                parent = parent[part] if ok else None
            if isinstance(parent, dict) and p.path and p.path[-1] in parent:
                del parent[p.path[-1]]
            else:
                return None, found  # a required value (a list item): cannot leave it out
        try:
            return Config.model_validate(trimmed), _downgrade(found, unset)
        except ValidationError as e:
            pending = _pydantic_problems(trimmed, e, smap)
            found = found + pending
    return None, found


def validate_text(
    text: str, filename: str = "<config>", env: Mapping[str, str] | None = None, *, offline_secrets: bool = False
) -> Validation:
    """Validate config text; never raises for config problems."""
    result = Validation(config=None, filename=filename)
    problems = result.problems
    try:
        data, smap, yissues = load_yaml(
            text, os.environ if env is None else env, placeholder=offline_placeholder if offline_secrets else None
        )
    except YamlError as e:
        problems.append(Problem((), e.line, f"YAML syntax error: {e}"))
        return result
    problems.extend(Problem(i.path, i.line, i.message, "warning" if i.severity == "warning" else "error")
                    for i in yissues)
    unset: dict[Path_, list[str]] = {}
    for i in yissues:
        if i.var is not None:
            unset.setdefault(i.path, []).append(i.var)
    result.unset = sorted({n for names in unset.values() for n in names})
    if not isinstance(data, dict):
        problems.append(Problem((), 1, "the config must be a YAML mapping (site:, sources:, tags: ...)"))
        return result
    config: Config | None = None
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        found = _pydantic_problems(data, e, smap)
        if unset:
            config, found = _without_placeholders(data, found, unset, smap)
        problems.extend(found)
    errs, warns = _cross_refs(data, smap)
    problems.extend(errs)
    problems.extend(warns)
    if unset:
        problems[:] = _downgrade(problems, unset)
    if config is not None:
        problems.extend(_source_problems(config, smap))
        problems.extend(_uplink_problems(config, smap))
        problems.extend(coverage_problems(config, smap))
        problems.extend(api_problems(config, smap))
        problems.extend(replace(p, line=smap.line_of(p.path)) for p in calibration_problems(config))
        if not result.errors:  # set points and notification judged on a config that is otherwise sound
            # (not downgraded: the placeholders are made to pass the notify URL checks, so a
            # broken URL is still an error with its secrets unset)
            problems.extend(_model_problems(config, smap))
    problems.sort(key=lambda p: (p.file or "", p.line or 0))
    result.config = None if result.errors else config
    return result


def validate_file(
    path: str | Path, env: Mapping[str, str] | None = None, *, offline_secrets: bool = False
) -> Validation:
    p = Path(path)
    if p.suffix.lower() in (".csv", ".xlsx", ".xls", ".xlsm"):
        msg = (f"this is a tag list (位号表), not a site config: merge it into one with "
               f"`hazardgw tags import {p.name} -c site.yaml -o site.yaml`")
        return Validation(config=None, problems=[Problem((), None, msg)], filename=str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        msg = f"cannot read config: not UTF-8 ({e}); save the file as UTF-8"
        return Validation(config=None, problems=[Problem((), None, msg)], filename=str(p))
    except OSError as e:
        return Validation(config=None, problems=[Problem((), None, f"cannot read config: {e}")], filename=str(p))
    return validate_text(text, str(p), env, offline_secrets=offline_secrets)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    result = validate_file(path, env)
    if result.config is None:
        raise ConfigError(result)
    return result.config
