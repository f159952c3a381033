"""Tag lists into a site config (``hazardgw tags import``) and out of it (``export``).

Import merges: each row sets the tag it names (created when new) and the point that binds
it in the row's ``source``; tags and points the file does not mention, and every other
section, stay as they are (as text: :mod:`gateway.taglist.yamlpatch`). A column the file
does not have leaves its field alone; an empty cell removes the field (an empty ``hh``
removes the HH alarm, an empty ``source`` the tag's point). The point columns are the
source type's business: the application hands them to the type's
:meth:`~gateway.core.sources.SourceSpec.import_point` / ``export_rows`` hooks.

The merged config goes through the full validation (gateway/validate.py, with unset
secrets checked by placeholder like ``hazardgw check --offline-secrets``); problems are
mapped back to the file's rows and columns (``tags.csv:17: hh: 30 exceeds range_hi 25``)
and nothing is written when any remains. Rows with errors are left out and the rest
validated again, so the GB/T 50493 set-point checks (which run only on a config without
other errors) judge every other row in the same report.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from adapters.registry import SOURCE_SPECS, SPEC_BY_TYPE
from gateway.core.problems import format_path
from gateway.core.sources import POINT_COLUMNS, SourceSpec, number_cell
from gateway.core.units import parse_duration
from gateway.core.yamlsrc import Path_
from gateway.taglist.columns import COLUMNS, DEFAULT_PRIORITY, LIMITS, kind_value
from gateway.taglist.io import Row, Table
from gateway.taglist.yamlpatch import PatchError, patch_text
from gateway.validate import validate_text

MAX_ROUNDS = 5  # validation rounds (each leaves out the rows the previous one found wrong)


@dataclass
class Finding:
    line: int | None  # row of the tag list; None: elsewhere in the config
    column: str
    message: str
    severity: str = "error"


@dataclass
class ImportResult:
    text: str | None  # the merged config; None when there is any error
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    added: int = 0
    changed: int = 0
    unchanged: int = 0


# --------------------------------------------------------------------------- export


def _spec_of(src: Any) -> SourceSpec | None:
    t = src.get("type") if isinstance(src, dict) else None
    return SPEC_BY_TYPE.get(t) if isinstance(t, str) else None


def _fmt(v: Any) -> str:
    return "" if v is None else str(v)


def export_rows(raw: Mapping[str, Any]) -> list[dict[str, str]]:
    """One row per tag of a raw config, with the point that binds it."""
    points: dict[str, dict[str, str]] = {}
    for src in raw.get("sources") or []:
        spec = _spec_of(src)
        if spec is None or not isinstance(src.get("id"), str):
            continue
        for tag, cells in spec.export_rows(src):
            points.setdefault(tag, {"source": src["id"], **cells})
    out = []
    for t in raw.get("tags") or []:
        if not isinstance(t, dict) or not isinstance(t.get("id"), str):
            continue
        row = {k: _fmt(t.get(k)) for k in ("id", "name", "hazard_source", "kind", "gas", "unit", "stale_after")}
        rng = t.get("range")
        if isinstance(rng, list) and len(rng) == 2:
            row["range_lo"], row["range_hi"] = _fmt(rng[0]), _fmt(rng[1])
        alarms: dict[str, Any] = t["alarms"] if isinstance(t.get("alarms"), dict) else {}
        for c in LIMITS:
            a = alarms.get(c)
            if isinstance(a, dict) and "limit" in a:
                row[c] = _fmt(a["limit"])
                row[f"{c}_priority"] = _fmt(a.get("priority", 2))
        row.update(points.get(t["id"], {}))
        out.append(row)
    return out


def column_choices() -> dict[str, tuple[str, ...]]:
    from gateway.core.config import TAG_KINDS

    out: dict[str, tuple[str, ...]] = {"kind": TAG_KINDS}
    for spec in SOURCE_SPECS:
        for col, values in spec.column_choices.items():
            out[col] = tuple(dict.fromkeys((*out.get(col, ()), *values)))
    return out


# --------------------------------------------------------------------------- import: tags


def _number(text: str) -> int | float:
    return number_cell(text)


def _tag_from_row(existing: Mapping[str, Any] | None, row: Row, cols: set[str]) -> tuple[dict[str, Any], list[Finding]]:
    cells = row.cells
    tag: dict[str, Any] = copy.deepcopy(dict(existing)) if existing else {"id": cells["id"]}
    problems: list[Finding] = []

    def bad(col: str, msg: str) -> None:
        problems.append(Finding(row.line, col, msg))

    for key in ("name", "hazard_source", "kind", "gas", "unit"):
        if key in cols:
            value = kind_value(cells[key]) if key == "kind" else cells[key]
            if value:
                tag[key] = value
            else:
                tag.pop(key, None)
    if "stale_after" in cols:
        text = cells["stale_after"]
        if not text:
            tag.pop("stale_after", None)
        else:
            try:
                parse_duration(text)
            except ValueError as e:
                bad("stale_after", str(e))
            else:  # a number of seconds stays a number, "30s" stays text: export-import keeps the YAML
                try:
                    tag["stale_after"] = number_cell(text)
                except ValueError:
                    tag["stale_after"] = text
    old_rng = tag.get("range") if isinstance(tag.get("range"), list) and len(tag["range"]) == 2 else None
    lo_t = cells["range_lo"] if "range_lo" in cols else _fmt(old_rng[0] if old_rng else None)
    hi_t = cells["range_hi"] if "range_hi" in cols else _fmt(old_rng[1] if old_rng else None)
    lo = hi = None
    if "range_lo" in cols or "range_hi" in cols:
        for col, text in (("range_lo", lo_t), ("range_hi", hi_t)):
            try:
                v = _number(text) if text else None
            except ValueError:
                bad(col, f"{text!r} is not a number")
                continue
            if col == "range_lo":
                lo = v
            else:
                hi = v
        if (lo is None) != (hi is None) and not problems:
            missing, given = ("range_lo", hi_t) if lo is None else ("range_hi", lo_t)
            bad(missing, f"empty while the other end of the range is {given} (give both or neither)")
        elif lo is not None and hi is not None:
            if not lo < hi:
                bad("range_hi", f"{hi_t} is not above range_lo {lo_t}")
            tag["range"] = [lo, hi]
        elif not problems:
            tag.pop("range", None)
    elif old_rng:
        lo, hi = old_rng[0], old_rng[1]
    had_alarms = isinstance(tag.get("alarms"), dict)
    alarms: dict[str, Any] = dict(tag["alarms"]) if had_alarms else {}
    for c in LIMITS:
        pc = f"{c}_priority"
        if c not in cols:
            continue
        text = cells[c]
        if not text:
            alarms.pop(c, None)
            if cells.get(pc):
                bad(pc, f"a priority without an {c} limit")
            continue
        try:
            limit = _number(text)
        except ValueError:
            bad(c, f"{text!r} is not a number")
            continue
        old = alarms.get(c) if isinstance(alarms.get(c), dict) else None
        alarm = dict(old) if old else {}
        alarm["limit"] = limit
        ptext = cells.get(pc, "")
        if ptext:
            if ptext not in ("1", "2", "3"):
                bad(pc, f"{ptext!r}: alarm priorities are 1, 2 or 3")
            elif not (old is not None and "priority" not in old and ptext == "2"):
                alarm["priority"] = int(ptext)
        elif old is None:
            alarm["priority"] = DEFAULT_PRIORITY[c]
        alarms[c] = {"limit": alarm.pop("limit"), **alarm} if old is None else alarm
    if alarms:
        tag["alarms"] = alarms
    elif not had_alarms or all(c in cols for c in LIMITS):
        tag.pop("alarms", None)
    # a limit outside the instrument's range can never trip
    for c in LIMITS:
        a = alarms.get(c)
        got = a.get("limit") if isinstance(a, dict) else None
        if not isinstance(got, int | float) or isinstance(got, bool):
            continue
        limit = got
        col = c if c in cols else ("range_hi" if c in ("h", "hh") else "range_lo")
        shown = cells[c] if c in cols else _fmt(limit)
        if c in ("h", "hh") and hi is not None and limit > hi:
            bad(col, f"{shown} exceeds range_hi {_fmt(hi)}")
        if c in ("l", "ll") and lo is not None and limit < lo:
            bad(col, f"{shown} is below range_lo {_fmt(lo)}")
    return tag, problems


# --------------------------------------------------------------------------- import: points


def _get(root: Any, path: Path_) -> Any:
    for part in path:
        root = root[part]
    return root


class _Points:
    """Where each tag's point is (source index), kept up to date while rows are merged."""

    def __init__(self, sources: list[Any]) -> None:
        self.sources = sources
        self.source_of: dict[str, int] = {}
        for i, src in enumerate(sources):
            spec = _spec_of(src)
            if spec is not None:
                for _, p in spec.raw_points(src):
                    if isinstance(p.get("tag"), str):
                        self.source_of.setdefault(p["tag"], i)

    def find(self, tag: str) -> tuple[int, Path_, Mapping[str, Any]] | None:
        i = self.source_of.get(tag)
        if i is None:
            return None
        spec = SPEC_BY_TYPE[self.sources[i]["type"]]
        for rel, p in spec.raw_points(self.sources[i]):
            if p.get("tag") == tag:
                return i, rel, p
        return None


def _apply_point(points: _Points, row: Row, cols: set[str]) -> tuple[list[Finding], bool]:
    """Put the row's point in place, or return its problems (nothing changed then).
    -> (problems, whether the config changed)."""
    cells = row.cells
    sources = points.sources
    tid = cells["id"]
    found = points.find(tid)
    sid = cells["source"]
    if not sid:
        if found is None:
            return [], False
        i, rel, _ = found
        del _get(sources[i], rel[:-1])[rel[-1]]
        points.source_of.pop(tid, None)
        return [], True
    index = next((i for i, s in enumerate(sources) if isinstance(s, dict) and s.get("id") == sid), None)
    if index is None:
        ids = ", ".join(str(s.get("id")) for s in sources if isinstance(s, dict)) or "none"
        return [Finding(row.line, "source", f"{sid!r} is not a source of the config (its sources: {ids})")], False
    src = sources[index]
    spec: SourceSpec | None = SPEC_BY_TYPE.get(src.get("type"))
    if spec is None:
        return [Finding(row.line, "source", f"source {sid!r} has an unknown type {src.get('type')!r}")], False
    problems = [
        Finding(
            row.line,
            c,
            f"source {sid} ({src.get('type')}) points take {', '.join(spec.point_columns) or 'no tag-list columns'}; "
            f"leave {c} empty",
        )
        for c in POINT_COLUMNS
        if c in cols and cells[c] and c not in spec.point_columns
    ]
    if problems:
        return problems, False
    existing = found[2] if found is not None and found[0] == index else None
    hook_row: dict[str, str] = {"id": tid}
    if existing is not None and not set(spec.point_columns) <= cols:
        # columns the file does not have keep the point's values
        hook_row.update(next((c for t, c in spec.export_rows(src) if t == tid), {}))
    hook_row.update({c: cells[c] for c in POINT_COLUMNS if c in cols})
    result = spec.import_point(src, hook_row, existing)
    if isinstance(result, list):
        return [Finding(row.line, p.column, p.message) for p in result], False
    if found is not None and found[0] == index and tuple(found[1][:-1]) == tuple(result.where):
        _get(src, result.where)[found[1][-1]] = result.point
        return [], result.point != existing
    if found is not None:
        i, rel, _ = found
        del _get(sources[i], rel[:-1])[rel[-1]]
    _get(src, result.where).append(result.point)
    points.source_of[tid] = index
    return [], True


# --------------------------------------------------------------------------- mapping problems back


def _tag_column(rest: Path_) -> str:
    if not rest:
        return ""
    head = rest[0]
    if head == "alarms" and len(rest) > 1 and rest[1] in LIMITS:
        return f"{rest[1]}_priority" if rest[2:3] == ("priority",) else str(rest[1])
    if head == "range":
        return "range_hi" if rest[1:2] == (1,) else "range_lo"
    return str(head) if head in COLUMNS else ""


def _point_column(rest: Path_) -> str:
    if not rest:
        return ""
    head = rest[0]
    if head == "table":
        return "address"
    if head == "tag":
        return "id"
    return str(head) if head in POINT_COLUMNS else ""


def _locate(raw: Mapping[str, Any], path: Path_, rows: Mapping[str, Row]) -> tuple[Row, str] | None:
    if len(path) >= 2 and path[0] == "tags" and isinstance(path[1], int):
        tags = raw.get("tags") or []
        tid = tags[path[1]].get("id") if path[1] < len(tags) and isinstance(tags[path[1]], dict) else None
        if isinstance(tid, str) and tid in rows:
            return rows[tid], _tag_column(path[2:])
    if len(path) >= 2 and path[0] == "sources" and isinstance(path[1], int):
        sources = raw.get("sources") or []
        src = sources[path[1]] if path[1] < len(sources) else None
        spec = _spec_of(src)
        if spec is not None:
            rel = path[2:]
            for prel, p in spec.raw_points(src):  # type: ignore[arg-type]
                if tuple(rel[: len(prel)]) == tuple(prel) and p.get("tag") in rows:
                    return rows[p["tag"]], _point_column(rel[len(prel) :])
    return None


# --------------------------------------------------------------------------- import


def _merge(
    raw: Mapping[str, Any], rows: list[Row], cols: set[str]
) -> tuple[dict[str, Any], list[Finding], dict[str, int]]:
    new = copy.deepcopy(dict(raw))
    if not isinstance(new.get("tags"), list):
        new["tags"] = []
    tags: list[Any] = new["tags"]
    index = {t.get("id"): i for i, t in enumerate(tags) if isinstance(t, dict)}
    sources = new.get("sources") if isinstance(new.get("sources"), list) else []
    points = _Points(sources)  # type: ignore[arg-type]
    problems: list[Finding] = []
    counts = {"added": 0, "changed": 0, "unchanged": 0}
    for row in rows:
        i = index.get(row.cells["id"])
        existing = tags[i] if i is not None else None
        tag, found = _tag_from_row(existing, row, cols)
        if found:
            problems.extend(found)
            continue
        point_changed = False
        if "source" in cols:
            found, point_changed = _apply_point(points, row, cols)
            if found:
                problems.extend(found)
                continue
        if i is None:
            index[tag["id"]] = len(tags)
            tags.append(tag)
            counts["added"] += 1
        else:
            counts["changed" if tag != existing or point_changed else "unchanged"] += 1
            tags[i] = tag
    if not tags and not raw.get("tags"):
        new.pop("tags")
    return new, problems, counts


def import_table(text: str, table: Table, table_name: str, config_name: str) -> ImportResult:
    """Merge ``table`` into the config ``text``; see the module doc."""
    from gateway.taglist.yamlpatch import load_raw

    result = ImportResult(text=None)
    findings: list[Finding] = [Finding(line, "", msg) for line, msg in table.problems]
    try:
        raw = load_raw(text)
    except Exception as e:  # a YAML syntax error: the config itself is broken
        result.errors.append(f"{config_name}: cannot read the config: {e}")
        return result
    if not isinstance(raw, dict):
        result.errors.append(f"{config_name}: the config must be a YAML mapping")
        return result
    cols = set(table.columns)
    rows: list[Row] = []
    seen: dict[str, int] = {}
    for row in table.rows:
        tid = row.cells.get("id", "")
        if not tid:
            findings.append(Finding(row.line, "id", "empty: every row needs the tag's id (位号)"))
        elif tid in seen:
            findings.append(Finding(row.line, "id", f"{tid} is also on line {seen[tid]}"))
        else:
            seen[tid] = row.line
            rows.append(row)
    excluded = {f.line for f in findings}
    counts: dict[str, int] = {}
    merged_text: str | None = None
    for _ in range(MAX_ROUNDS):
        use = [r for r in rows if r.line not in excluded]
        new, row_findings, counts = _merge(raw, use, cols)
        findings.extend(row_findings)
        excluded |= {f.line for f in row_findings}
        if row_findings:
            continue  # merge again without them, so their neighbours are validated
        try:
            merged_text = patch_text(text, new)
        except PatchError as e:
            result.errors.append(f"{config_name}: {e}; nothing written")
            return result
        v = validate_text(merged_text, config_name, offline_secrets=True)
        located = {r.cells["id"]: r for r in use}
        fresh = False
        for p in v.problems:
            if p.severity == "info" or p.message.startswith("environment variable "):
                continue
            where = _locate(new, p.path, located)
            if where is None:
                f = Finding(None, format_path(p.path), p.message, p.severity)
            else:
                f = Finding(where[0].line, where[1], p.message, p.severity)
                if p.severity == "error" and where[0].line not in excluded:
                    excluded.add(where[0].line)
                    fresh = True
            findings.append(f)
        if not fresh:
            break
        merged_text = None
    seen_f: set[tuple[int | None, str, str, str]] = set()
    for f in sorted(findings, key=lambda f: (f.line or 0, f.column)):
        key = (f.line, f.column, f.message, f.severity)
        if key in seen_f:
            continue
        seen_f.add(key)
        if f.line is None:
            msg = f"{config_name}: {f.column}: {f.message}" if f.column else f"{config_name}: {f.message}"
        else:
            at = f"{table_name}:{f.line}"
            msg = f"{at}: {f.column}: {f.message}" if f.column else f"{at}: {f.message}"
        (result.errors if f.severity == "error" else result.warnings).append(msg)
    result.added = counts.get("added", 0)
    result.changed = counts.get("changed", 0)
    result.unchanged = counts.get("unchanged", 0)
    if not result.errors and merged_text is not None:
        result.text = merged_text
    return result


def iter_rows_for_template() -> Iterator[dict[str, str]]:
    """One example row per tag kind (``hazardgw tags template``)."""
    examples = [
        ("GT-101", "可燃气体探测器 V-101 北", "combustible_gas", "CH4", "%LEL", "0", "100", "", "", "20", "40"),
        ("GT-201", "有毒气体探测器 储罐区", "toxic_gas", "Cl2", "mg/m3", "0", "20", "", "", "1", "2"),
        ("AT-101", "氧气浓度 有限空间", "oxygen", "O2", "%VOL", "0", "25", "", "19.5", "23.5", ""),
        ("PT-101", "储罐 V-101 压力", "pressure", "", "MPa", "0", "2.5", "", "", "1.6", "1.8"),
        ("TT-101", "储罐 V-101 温度", "temperature", "", "°C", "-40", "80", "", "", "40", "50"),
        ("LT-101", "储罐 V-101 液位", "level", "", "%", "0", "100", "10", "20", "80", "90"),
        ("FT-101", "进料流量", "flow", "", "m3/h", "0", "50", "", "", "", ""),
        ("XV-101", "紧急切断阀 XV-101 关到位", "discrete", "", "", "", "", "", "", "", ""),
        ("AI-101", "其他模拟量", "analog", "", "", "0", "100", "", "", "", ""),
    ]
    spec = next((s for s in SOURCE_SPECS if s.example_point("analog", 0) is not None), None)
    for n, (tid, name, kind, gas, unit, lo, hi, ll, low, h, hh) in enumerate(examples):
        row = {"id": tid, "name": name, "hazard_source": "HS-001", "kind": kind, "gas": gas, "unit": unit,
               "range_lo": lo, "range_hi": hi, "ll": ll, "l": low, "h": h, "hh": hh}
        for c in LIMITS:
            if row[c]:
                row[f"{c}_priority"] = str(DEFAULT_PRIORITY[c])
        if spec is not None:
            cells = spec.example_point(kind, n) or {}
            row.update({"source": "gds-1", **cells})
        yield row
