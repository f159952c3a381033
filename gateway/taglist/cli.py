"""``hazardgw tags export|import|template`` (docs/cli.md)."""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from gateway.taglist.columns import COLUMNS
from gateway.taglist.io import TagListError, is_xlsx, read_table, write_csv, write_xlsx
from gateway.taglist.merge import column_choices, export_rows, import_table, iter_rows_for_template
from gateway.taglist.yamlpatch import load_raw

EXIT_OK = 0
EXIT_INVALID = 2


def _write_rows(path: Path, rows: list[dict[str, str]]) -> None:
    if is_xlsx(path):
        write_xlsx(path, COLUMNS, rows, column_choices())
    else:
        write_csv(path, COLUMNS, rows)


def cmd_export(args: argparse.Namespace) -> int:
    cfg = Path(args.config)
    try:
        raw = load_raw(cfg.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        print(f"error: {cfg}: cannot read the config: {e}", file=sys.stderr)
        return EXIT_INVALID
    rows = export_rows(raw if isinstance(raw, dict) else {})
    _write_rows(Path(args.output), rows)
    print(f"{args.output}: {len(rows)} tag(s) from {cfg}")
    return EXIT_OK


def cmd_template(args: argparse.Namespace) -> int:
    rows = list(iter_rows_for_template())
    _write_rows(Path(args.output), rows)
    print(f"{args.output}: template with {len(rows)} example row(s), one per tag kind")
    return EXIT_OK


def _atomic_write(path: Path, text: str) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent if str(path.parent) else ".", prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_import(args: argparse.Namespace) -> int:
    table_path, cfg, out = Path(args.file), Path(args.config), Path(args.output)
    try:
        table = read_table(table_path)
        text = cfg.read_text(encoding="utf-8")
    except (TagListError, OSError, UnicodeDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_INVALID
    result = import_table(text, table, table_path.name, cfg.name)
    for w in result.warnings:
        print(f"warning: {w}", file=sys.stderr)
    for line in result.errors:
        print(f"error: {line}", file=sys.stderr)
    if result.text is None:
        print(f"{table_path}: {len(result.errors)} error(s); nothing written", file=sys.stderr)
        return EXIT_INVALID
    _atomic_write(out, result.text)
    print(
        f"{out}: {result.added} tag(s) added, {result.changed} changed, {result.unchanged} unchanged "
        f"({len(table.rows)} row(s) of {table_path}, {table.encoding}); validated like hazardgw check"
    )
    return EXIT_OK


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    t = sub.add_parser("tags", help="tag lists (位号表): export, import (merge into a config), template")
    tsub = t.add_subparsers(dest="tags_cmd", required=True)
    e = tsub.add_parser("export", help="write a config's tags and points as CSV (UTF-8 with BOM) or XLSX")
    e.add_argument("-c", "--config", required=True)
    e.add_argument("-o", "--output", required=True, help="tags.csv or tags.xlsx")
    e.set_defaults(func=cmd_export)
    i = tsub.add_parser("import", help="merge a CSV/XLSX tag list into a config; writes nothing on any error")
    i.add_argument("file", help="tags.csv (UTF-8, UTF-8 with BOM, GBK/GB18030) or tags.xlsx")
    i.add_argument("-c", "--config", required=True, help="the config to merge into")
    i.add_argument("-o", "--output", required=True, help="where to write the merged config (may be the -c file)")
    i.set_defaults(func=cmd_import)
    m = tsub.add_parser("template", help="an empty tag list with one example row per tag kind")
    m.add_argument("-o", "--output", required=True, help="tags.xlsx or tags.csv")
    m.set_defaults(func=cmd_template)
