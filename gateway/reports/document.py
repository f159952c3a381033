"""A small report document model and its two renderings: printable HTML (A4) and CSV.

Every report of ``hazardgw report ...`` builds a :class:`Report` (title, facts about the
report, sections of key/value lists, tables, paragraphs and bar charts) and hands it to
:func:`write`, which picks the format from the file name (``.html``/``.htm`` or ``.csv``).

* **HTML**: one self-contained file (no scripts, no fonts or styles from the network: sites
  are offline), laid out for A4 portrait with 12 mm margins; table headers repeat on every
  printed page, rows are not split across pages, colours print (status cells: ok / warn /
  bad). Chinese text uses the usual CJK font stack (Noto Sans CJK, WenQuanYi, PingFang,
  Microsoft YaHei).
* **CSV**: UTF-8 with a byte-order mark (Excel opens Chinese correctly), the sections one
  after the other: a title line (``# 标题``), the header row, the rows, a blank line. Key/value
  sections become two-column tables; charts become their data.
"""

from __future__ import annotations

import csv
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

Status = Literal["ok", "warn", "bad", "none", ""]


@dataclass(frozen=True)
class Cell:
    """A table cell with a status colour (ok / warn / bad) or a CSS class of the report."""

    text: str
    status: Status = ""
    cls: str = ""

    def __str__(self) -> str:
        return self.text


CellLike = str | int | float | Cell | None


def _text(c: CellLike) -> str:
    if c is None:
        return ""
    if isinstance(c, float):
        return f"{c:.6g}"
    return str(c)


@dataclass
class Table:
    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[CellLike]] = field(default_factory=list)
    note: str | None = None  # printed under the table
    empty: str = "—"  # shown when there are no rows
    numeric: Sequence[int] = ()  # right-aligned columns
    key: str = ""  # stable id (HTML id, tests)


@dataclass
class KeyValues:
    title: str
    items: list[tuple[str, CellLike]] = field(default_factory=list)
    key: str = ""


@dataclass
class Paragraph:
    text: str
    title: str = ""
    cls: str = ""  # "note" | "warning"


@dataclass
class BarChart:
    """A bar per label (e.g. annunciations per day), with an optional limit line."""

    title: str
    labels: Sequence[str]
    values: Sequence[float]
    limit: float | None = None
    limit_label: str = ""
    unit: str = ""
    key: str = ""


Section = Table | KeyValues | Paragraph | BarChart


@dataclass
class Report:
    title: str
    lang: Literal["zh", "en"]
    facts: list[tuple[str, str]] = field(default_factory=list)  # site, period, generated ... (header block)
    sections: list[Section] = field(default_factory=list)
    footer: str = ""

    def add(self, section: Section) -> Section:
        self.sections.append(section)
        return section


# ----------------------------------------------------------------------------- HTML

CSS = """
@page { size: A4; margin: 12mm 12mm 14mm; }
* { box-sizing: border-box; }
html { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
body {
  font-family: "Noto Sans CJK SC", "Source Han Sans SC", "WenQuanYi Micro Hei", "PingFang SC", "Microsoft YaHei",
    "Helvetica Neue", Arial, "DejaVu Sans", sans-serif;
  font-size: 9.5pt; line-height: 1.4; color: #111; margin: 0 auto; max-width: 186mm; padding: 8mm 0;
}
@media print { body { padding: 0; max-width: none; } }
h1 { font-size: 16pt; margin: 0 0 2mm; }
h2 { font-size: 11.5pt; margin: 6mm 0 2mm; padding-bottom: 1mm; border-bottom: 1.5pt solid #333;
  break-after: avoid; page-break-after: avoid; }
.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.6mm 5mm; margin: 0 0 3mm; }
.facts dt { color: #555; }
.facts dd { margin: 0; }
table { width: 100%; border-collapse: collapse; margin: 0 0 1.5mm; }
thead { display: table-header-group; }
tr { break-inside: avoid; page-break-inside: avoid; }
th, td { border: 0.5pt solid #999; padding: 0.8mm 1.5mm; text-align: left; vertical-align: top; }
th { background: #e9ecef; font-weight: 600; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.ok { background: #d8f3dc; }
td.warn { background: #fff3bf; }
td.bad { background: #ffd6d6; font-weight: 600; }
td.muted, .muted { color: #666; }
td.nowrap { white-space: nowrap; }
td.lines { white-space: pre-line; }
.kv th { width: 45%; background: #f4f5f7; font-weight: 500; }
p.note { color: #444; font-size: 8.5pt; margin: 0 0 2mm; }
p.warning { background: #fff3bf; border: 0.5pt solid #e0b000; padding: 1.5mm 2mm; }
.empty { color: #666; font-style: italic; margin: 0 0 2mm; }
svg.bars { width: 100%; height: 42mm; display: block; margin: 0 0 1mm; }
svg.bars rect { fill: #4a6fa5; }
svg.bars rect.over { fill: #c92a2a; }
svg.bars line.limit { stroke: #c92a2a; stroke-width: 0.6; stroke-dasharray: 2 1.5; }
svg.bars text { font-size: 3px; fill: #333; }
footer { margin-top: 6mm; color: #666; font-size: 8pt; border-top: 0.5pt solid #aaa; padding-top: 1.5mm; }
"""


def _cell(tag: str, c: CellLike, numeric: bool) -> str:
    classes = []
    if numeric:
        classes.append("num")
    if isinstance(c, Cell):
        if c.status:
            classes.append(c.status)
        if c.cls:
            classes.append(c.cls)
    cls = f' class="{" ".join(classes)}"' if classes else ""
    return f"<{tag}{cls}>{html.escape(_text(c))}</{tag}>"


def _table_html(t: Table) -> str:
    out = [f'<section class="table" id="{html.escape(t.key)}">' if t.key else '<section class="table">']
    out.append(f"<h2>{html.escape(t.title)}</h2>")
    if not t.rows:
        out.append(f'<p class="empty">{html.escape(t.empty)}</p>')
    else:
        num = set(t.numeric)
        head = "".join(_cell("th", c, i in num) for i, c in enumerate(t.columns))
        out.append(f"<table><thead><tr>{head}</tr></thead><tbody>")
        for row in t.rows:
            out.append("<tr>" + "".join(_cell("td", c, i in num) for i, c in enumerate(row)) + "</tr>")
        out.append("</tbody></table>")
    if t.note:
        out.append(f'<p class="note">{html.escape(t.note)}</p>')
    out.append("</section>")
    return "\n".join(out)


def _kv_html(kv: KeyValues) -> str:
    rows = "".join(f"<tr><th>{html.escape(k)}</th>{_cell('td', v, False)}</tr>" for k, v in kv.items)
    ident = f' id="{html.escape(kv.key)}"' if kv.key else ""
    return (f'<section class="kv"{ident}><h2>{html.escape(kv.title)}</h2>'
            f'<table class="kv"><tbody>{rows}</tbody></table></section>')


def _chart_html(ch: BarChart) -> str:
    n = max(1, len(ch.values))
    top = max([*ch.values, ch.limit or 0.0, 1.0])
    w, h, base = 200.0, 60.0, 52.0
    bw = w / n
    parts = [f'<svg class="bars" viewBox="0 0 {w:g} {h:g}" preserveAspectRatio="none" role="img" '
             f'aria-label="{html.escape(ch.title)}">']
    for i, v in enumerate(ch.values):
        bh = (base - 4) * v / top
        over = ' class="over"' if ch.limit is not None and v > ch.limit else ""
        parts.append(f'<rect x="{i * bw + bw * 0.1:.2f}" y="{base - bh:.2f}" width="{bw * 0.8:.2f}" '
                     f'height="{bh:.2f}"{over}><title>{html.escape(ch.labels[i])}: {_text(v)}</title></rect>')
    step = max(1, n // 16)
    for i in range(0, n, step):
        parts.append(f'<text x="{i * bw + bw / 2:.2f}" y="{h - 3:g}" text-anchor="middle">'
                     f"{html.escape(ch.labels[i])}</text>")
    if ch.limit is not None:
        y = base - (base - 4) * ch.limit / top
        parts.append(f'<line class="limit" x1="0" x2="{w:g}" y1="{y:.2f}" y2="{y:.2f}"/>')
        parts.append(f'<text x="{w - 1:g}" y="{y - 1:.2f}" text-anchor="end">{html.escape(ch.limit_label)}</text>')
    parts.append(f'<text x="1" y="4">{html.escape(_text(top))} {html.escape(ch.unit)}</text></svg>')
    ident = f' id="{html.escape(ch.key)}"' if ch.key else ""
    return f'<section class="chart"{ident}><h2>{html.escape(ch.title)}</h2>{"".join(parts)}</section>'


def render_html(r: Report) -> str:
    lang = "zh-CN" if r.lang == "zh" else "en"
    facts = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(v)}</dd>" for k, v in r.facts)
    body = []
    for s in r.sections:
        if isinstance(s, Table):
            body.append(_table_html(s))
        elif isinstance(s, KeyValues):
            body.append(_kv_html(s))
        elif isinstance(s, BarChart):
            body.append(_chart_html(s))
        else:
            title = f"<h2>{html.escape(s.title)}</h2>" if s.title else ""
            body.append(f'{title}<p class="{html.escape(s.cls or "note")}">{html.escape(s.text)}</p>')
    footer = f"<footer>{html.escape(r.footer)}</footer>" if r.footer else ""
    return (
        f'<!doctype html>\n<html lang="{lang}">\n<head>\n<meta charset="utf-8">\n'
        f'<meta name="viewport" content="width=device-width, initial-scale=1">\n<title>{html.escape(r.title)}</title>\n'
        f"<style>{CSS}</style>\n</head>\n<body>\n<header><h1>{html.escape(r.title)}</h1>"
        f'<dl class="facts">{facts}</dl></header>\n<main>\n'
        + "\n".join(body)
        + f"\n</main>\n{footer}\n</body>\n</html>\n"
    )


# ----------------------------------------------------------------------------- CSV


def render_csv(r: Report) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\r\n")
    w.writerow([f"# {r.title}"])
    for k, v in r.facts:
        w.writerow([k, v])
    for s in r.sections:
        w.writerow([])
        if isinstance(s, Table):
            w.writerow([f"# {s.title}"])
            w.writerow(list(s.columns))
            for row in s.rows:
                w.writerow([_text(c) for c in row])
        elif isinstance(s, KeyValues):
            w.writerow([f"# {s.title}"])
            for k, item in s.items:
                w.writerow([k, _text(item)])
        elif isinstance(s, BarChart):
            w.writerow([f"# {s.title}"])
            for label, value in zip(s.labels, s.values, strict=True):
                w.writerow([label, _text(value)])
        else:
            w.writerow([f"# {s.title}" if s.title else "#", s.text])
    return "\ufeff" + buf.getvalue()


FORMATS = {".html": render_html, ".htm": render_html, ".csv": render_csv}


def write(r: Report, path: str | Path) -> Path:
    """Render ``r`` in the format of ``path``'s suffix and write it (UTF-8). ValueError for
    another suffix."""
    p = Path(path)
    fn = FORMATS.get(p.suffix.lower())
    if fn is None:
        raise ValueError(f"{p.name}: the report is written as .html or .csv")
    p.write_text(fn(r), encoding="utf-8", newline="")
    return p
