"""Load a site config file: YAML + ``${ENV}`` -> schema -> cross-references.

All problems are collected and reported at once as ``file:line: path: message``, so a
user fixes a config in one pass. ``load_config`` raises :class:`ConfigError` carrying
the list; ``check_config`` returns it together with warnings for ``hazardgw check``.
"""

from __future__ import annotations

import difflib
import os
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from gateway import config as cfgmod
from gateway.config import Config
from gateway.yamlsrc import Path_, SourceMap, YamlError, load_yaml

ROLE_TARGETS = ("on_duty", "principal", "technical", "operational")


@dataclass(frozen=True)
class Problem:
    path: Path_
    line: int | None
    message: str

    def format(self, filename: str) -> str:
        where = f"{filename}:{self.line}" if self.line else filename
        p = format_path(self.path)
        return f"{where}: {p}: {self.message}" if p else f"{where}: {self.message}"


@dataclass
class CheckResult:
    config: Config | None
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    filename: str = "<config>"

    def format_errors(self) -> list[str]:
        return [p.format(self.filename) for p in self.errors]

    def format_warnings(self) -> list[str]:
        return [p.format(self.filename) for p in self.warnings]


class ConfigError(Exception):
    def __init__(self, result: CheckResult) -> None:
        self.result = result
        lines = result.format_errors()
        super().__init__(f"{len(lines)} config error(s):\n" + "\n".join(lines))


def format_path(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _known_fields() -> set[str]:
    names: set[str] = set()
    for obj in vars(cfgmod).values():
        if isinstance(obj, type) and issubclass(obj, BaseModel) and obj is not BaseModel:
            names.update(obj.model_fields)
    return names


_KNOWN = _known_fields()


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
        warnings.append(Problem(path, smap.line_of(path), msg))

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
    for i, hs in items("hazard_sources"):
        resp = hs.get("responsible")
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
        for key in ("escalation", "escalation_p1"):
            for i, step in enumerate(duty.get(key) or []):
                if isinstance(step, dict):
                    for j, target in enumerate(step.get("notify") or []):
                        if isinstance(target, str) and target not in ROLE_TARGETS and target not in people:
                            err(
                                ("duty", key, i, "notify", j),
                                f"unknown target {target!r}: use {', '.join(ROLE_TARGETS)} or a person id",
                            )

    # sources -> tags; a tag is bound by at most one point
    bound: dict[str, Path_] = {}
    poll: dict[str, float] = {}

    def bind(path: Path_, tag: Any) -> None:
        if not isinstance(tag, str):
            return
        need_tag(path, tag)
        if tag in bound:
            err(path, f"tag {tag!r} is already bound at {format_path(bound[tag])}")
        else:
            bound[tag] = path

    for i, src in items("sources"):
        if src.get("type") == "mqtt":
            for j, sub in enumerate(src.get("subscriptions") or []):
                if isinstance(sub, dict):
                    for k, p in enumerate(sub.get("points") or []):
                        if isinstance(p, dict):
                            bind(("sources", i, "subscriptions", j, "points", k, "tag"), p.get("tag"))
        else:
            points = [p for p in src.get("points") or [] if isinstance(p, dict)]
            local = {p.get("tag") for p in points}
            for k, p in enumerate(src.get("points") or []):
                if not isinstance(p, dict):
                    continue
                bind(("sources", i, "points", k, "tag"), p.get("tag"))
                if p.get("fault") is not None and p["fault"] not in local:
                    err(("sources", i, "points", k, "fault"),
                        f"fault point {p['fault']!r} must be a point of the same source")
                if isinstance(p.get("tag"), str) and p.get("fault") == p.get("tag"):
                    err(("sources", i, "points", k, "fault"), "a point cannot be its own fault point")
            try:
                interval = cfgmod.parse_duration(src.get("poll_interval", 1.0))
            except ValueError:
                interval = 1.0
            for p in points:
                if isinstance(p.get("tag"), str):
                    poll[p["tag"]] = interval

    # tags -> hazard sources, suppression tags. Tags no point binds can come from a
    # ``native`` MQTT feed, which names tags in the payload.
    has_native = any(
        isinstance(sub, dict) and sub.get("format") == "native"
        for _, src in items("sources") if src.get("type") == "mqtt"
        for sub in src.get("subscriptions") or []
    )
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
                    if t.get("kind") in cfgmod.GAS_KINDS and t.get("suppressible") is not True:
                        err(path, "gas alarms are not suppressible unless the tag sets suppressible: true")
        if isinstance(t.get("id"), str) and t["id"] not in bound and data.get("sources") and not has_native:
            warn(("tags", i, "id"), f"tag {t['id']!r} is not bound to any source point")
        if isinstance(t.get("id"), str) and t.get("stale_after") is None and t["id"] in poll:
            pass  # default 3 x poll interval, resolved at run time

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


def _adapter_problems(config: Config, smap: SourceMap) -> list[Problem]:
    """What only an adapter can judge (shared-bus settings, 4-20 mA points without a range)."""
    from adapters.modbus import check_modbus_sources
    from gateway.config import ModbusRtuSource, ModbusTcpSource

    modbus = [s for s in config.sources if isinstance(s, ModbusTcpSource | ModbusRtuSource)]
    if not modbus:
        return []
    index = {s.id: i for i, s in enumerate(config.sources)}
    out = []
    for msg in check_modbus_sources(modbus, config.tag_map()):
        sid = msg.removeprefix("source ").split(":", 1)[0]
        path: Path_ = ("sources", index[sid]) if sid in index else ("sources",)
        out.append(Problem(path, smap.line_of(path), msg))
    return out


def _uplink_problems(config: Config, smap: SourceMap) -> list[Problem]:
    """The uplink profile exists and accepts the url and options (the profile judges them)."""
    from gateway.uplink.profile import ProfileError, resolve_profile

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
    return out


def check_text(text: str, filename: str = "<config>", env: Mapping[str, str] | None = None) -> CheckResult:
    """Validate config text; never raises for config problems."""
    result = CheckResult(config=None, filename=filename)
    try:
        data, smap, yissues = load_yaml(text, os.environ if env is None else env)
    except YamlError as e:
        result.errors.append(Problem((), e.line, f"YAML syntax error: {e}"))
        return result
    result.errors.extend(Problem(i.path, i.line, i.message) for i in yissues)
    if not isinstance(data, dict):
        result.errors.append(Problem((), 1, "the config must be a YAML mapping (site:, sources:, tags: ...)"))
        return result
    try:
        result.config = Config.model_validate(data)
    except ValidationError as e:
        result.errors.extend(_pydantic_problems(data, e, smap))
    errs, warns = _cross_refs(data, smap)
    result.errors.extend(errs)
    result.warnings.extend(warns)
    if result.config is not None:
        result.errors.extend(_adapter_problems(result.config, smap))
        result.errors.extend(_uplink_problems(result.config, smap))
    if result.errors:
        result.config = None
    result.errors.sort(key=lambda p: (p.line or 0))
    return result


def check_file(path: str | Path, env: Mapping[str, str] | None = None) -> CheckResult:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        return CheckResult(config=None, errors=[Problem((), None, f"cannot read config: {e}")], filename=str(p))
    return check_text(text, str(p), env)


def load_config(path: str | Path, env: Mapping[str, str] | None = None) -> Config:
    result = check_file(path, env)
    if result.config is None:
        raise ConfigError(result)
    return result.config
