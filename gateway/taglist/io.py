"""Reading and writing tag-list files: CSV (any encoding Excel writes) and XLSX.

CSV: UTF-8 with or without BOM, UTF-16 with BOM (Excel's "Unicode text"), GBK/GB18030 (what
Excel on a Chinese Windows writes), else what charset-normalizer finds; comma, semicolon or
tab separated. XLSX through openpyxl (first sheet, or one named ``tags`` / ``位号表``).
Every cell becomes stripped text; numbers read from XLSX are written back the way they were
typed (``40001``, ``0.1``). Exports are UTF-8 with a BOM (so Excel shows Chinese text) and
XLSX with drop-down lists for the columns that take fixed values.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.taglist.columns import COLUMNS, header_column

XLSX_SHEETS = ("tags", "位号表")


@dataclass
class Row:
    line: int  # 1-based line (CSV) or row (XLSX) in the file
    cells: dict[str, str]  # column -> stripped text, for every column the file has


@dataclass
class Table:
    columns: list[str] = field(default_factory=list)  # the file's columns, in its order
    rows: list[Row] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)  # (line, message) of the file itself
    encoding: str = ""


class TagListError(Exception):
    """A file that cannot be read as a tag list at all."""


def is_xlsx(path: Path) -> bool:
    return path.suffix.lower() in (".xlsx", ".xlsm")


def decode(data: bytes) -> tuple[str, str]:
    """Bytes of a CSV file -> (text, encoding name)."""
    if data.startswith(b"\xef\xbb\xbf"):
        return data[3:].decode("utf-8"), "utf-8 (BOM)"
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return data.decode("utf-16"), "utf-16"
    for enc in ("utf-8", "gb18030"):
        try:
            return data.decode(enc), enc
        except UnicodeDecodeError:
            continue
    from charset_normalizer import from_bytes

    best = from_bytes(data).best()
    if best is None:
        raise TagListError("cannot tell the file's text encoding (save it as UTF-8 or GBK CSV, or as XLSX)")
    return str(best), best.encoding


def cell_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return str(int(v)) if v.is_integer() and abs(v) < 1e15 else repr(v)
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    return str(v).strip()


def _table(records: Iterable[tuple[int, Sequence[Any]]], encoding: str) -> Table:
    t = Table(encoding=encoding)
    header: list[str | None] | None = None
    for line, values in records:
        texts = [cell_text(v) for v in values]
        if not any(texts):
            continue
        if header is None:
            header = []
            seen: dict[str, int] = {}
            for i, h in enumerate(texts):
                col = header_column(h) if h else None
                if h and col is None:
                    import difflib

                    close = difflib.get_close_matches(h.strip().lower(), COLUMNS, n=1)
                    hint = f" (did you mean {close[0]!r}?)" if close else ""
                    t.problems.append((line, f"unknown column {h!r}{hint}"))
                elif col is not None and col in seen:
                    t.problems.append((line, f"column {col!r} appears twice (columns {seen[col] + 1} and {i + 1})"))
                    col = None
                if col is not None:
                    seen[col] = i
                header.append(col)
            t.columns = [c for c in header if c]
            if "id" not in t.columns:
                t.problems.append((line, "no id (位号) column in the header row"))
            continue
        cells = {c: "" for c in t.columns}
        for col, text in zip(header, texts, strict=False):
            if col is not None:
                cells[col] = text
        t.rows.append(Row(line, cells))
    if header is None:
        t.problems.append((1, "the file is empty (no header row)"))
    return t


def read_table(path: Path) -> Table:
    """Read a CSV or XLSX tag list. Raises TagListError when the file cannot be read at all."""
    if is_xlsx(path):
        import openpyxl

        try:
            wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception as e:  # openpyxl raises zipfile/KeyError/InvalidFileException for broken files
            raise TagListError(f"cannot read {path} as XLSX: {e}") from None
        try:
            ws = next((wb[n] for n in XLSX_SHEETS if n in wb.sheetnames), wb.worksheets[0])
            rows = [(i, list(r)) for i, r in enumerate(ws.iter_rows(values_only=True), start=1)]
        finally:
            wb.close()
        return _table(rows, "xlsx")
    try:
        data = path.read_bytes()
    except OSError as e:
        raise TagListError(f"cannot read {path}: {e}") from None
    text, encoding = decode(data)
    first = text.split("\n", 1)[0]
    delimiter = max(",;\t", key=first.count)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    records = []
    for values in reader:
        records.append((reader.line_num, values))
    return _table(records, encoding)


def write_csv(path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, str]]) -> None:
    """UTF-8 with a BOM (Excel then reads Chinese text right), CRLF line ends."""
    with path.open("w", encoding="utf-8-sig", newline="") as f:
        w = csv.writer(f)
        w.writerow(columns)
        for r in rows:
            w.writerow([r.get(c, "") for c in columns])


def write_xlsx(
    path: Path, columns: Sequence[str], rows: Iterable[Mapping[str, str]], choices: Mapping[str, Sequence[str]]
) -> None:
    """One sheet ``tags``: a bold, frozen header row, every cell text (a Modicon ``00017``
    keeps its zeros), drop-down lists for the columns in ``choices``."""
    import openpyxl
    from openpyxl.styles import Font
    from openpyxl.utils import get_column_letter
    from openpyxl.worksheet.datavalidation import DataValidation

    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.title = "tags"
    ws.append(list(columns))
    for cell in ws[1]:
        cell.font = Font(bold=True)
    n = 1
    for r in rows:
        ws.append([r.get(c, "") for c in columns])
        n += 1
    ws.freeze_panes = "A2"
    last = max(n + 500, 1000)
    for i, col in enumerate(columns, start=1):
        letter = get_column_letter(i)
        ws.column_dimensions[letter].width = max(10, min(40, len(col) + 4))
        for row in ws.iter_rows(min_row=2, max_row=n, min_col=i, max_col=i):
            for cell in row:
                cell.number_format = "@"
        values = choices.get(col)
        if values:
            dv = DataValidation(type="list", formula1='"' + ",".join(values) + '"', allow_blank=True)
            dv.error = f"{col}: one of {', '.join(values)}"
            dv.errorTitle = col
            dv.showErrorMessage = True
            ws.add_data_validation(dv)
            dv.add(f"{letter}2:{letter}{last}")
    wb.save(path)
