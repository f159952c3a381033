"""``hazardgw report alarms``: the monthly alarm report from a journal with known content.

The journal of tests/test_alarm_kpi.py (one busy hour: a flood, a chattering alarm, a
fleeting one, a standing one, stale acknowledgements, one priority-1 alarm acknowledged and
disposed) is placed on 2026-10-14 09:00 Beijing time; the report for 2026-10 is written as
HTML and CSV through the command line, the HTML is rendered by headless Chromium (printed to
an A4 PDF and checked for its content) and the CSV is parsed back.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pytest
from test_alarm_kpi import known_journal
from test_api_console_e2e import ARTIFACTS, browser

from gateway.cli import main

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "demo-site.yaml"
BEIJING = dt.timezone(dt.timedelta(hours=8))
HOUR = int(dt.datetime(2026, 10, 14, 9, 0, tzinfo=BEIJING).timestamp()) * 1_000_000_000


@pytest.fixture
def journal(tmp_path: Path) -> Path:
    known_journal(tmp_path, HOUR)
    return tmp_path / "alarm-journal.sqlite3"


def run(journal: Path, out: Path, *extra: str) -> int:
    return main(["report", "alarms", "-c", str(CONFIG), "--month", "2026-10", "-o", str(out),
                 "--journal", str(journal), *extra])


async def test_html_report_renders_in_chromium_and_prints_on_a4(journal: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert run(journal, out) == 0  # demo site: notification.language zh
    async with browser() as b:
        page = await b.new_page()
        await page.goto(out.as_uri())
        assert await page.title() == "报警系统月度报告"
        text = await page.inner_text("body")
        for want in ("演示化工有限公司", "2026-10（2026-10-01 00:00 至 2026-11-01 00:00）", "每 10 分钟平均报警数",
                     "10 分钟峰值报警数", "报警泛滥时段占比", "抖动报警", "瞬时报警", "长时报警", "超时未确认",
                     "确认用时 中位数 / 90%", "处置闭环率", "EEMUA 191"):
            assert want in text, want
        kpi = {r[0]: r[1:] for r in await page.eval_on_selector_all(
            "#kpis tbody tr", "rows => rows.map(r => [...r.cells].map(c => c.innerText))")}
        assert kpi["报警总数（含再报警）"][0] == "19"  # the hour's 18 and the standing one raised the day before
        assert kpi["10 分钟峰值报警数"][0].startswith("12（2026-10-14 09:00）")
        assert kpi["10 分钟峰值报警数"][2] == "未达标"
        assert kpi["确认用时 中位数 / 90%"][0] == "1 分 30 秒 / 3 分 18 秒"
        assert kpi["处置闭环率"][0] == "11.1 % (2/18)"
        assert await page.eval_on_selector("#kpis tbody tr:nth-child(4) td:last-child", "c => c.className") == "bad"
        top = await page.eval_on_selector_all("#top10 tbody tr", "rows => rows.map(r => r.cells[1].innerText)")
        assert top[:2] == ["CH/h", "A-01/h"] and len(top) == 10
        cells = "rows => rows.map(r => [...r.cells].map(c => c.innerText))"
        p1 = await page.eval_on_selector_all("#p1 tbody tr", cells)
        assert len(p1) == 1
        assert p1[0][1] == "P1/hh" and p1[0][5].endswith("由 zhao") and p1[0][6] == "2 分"
        assert p1[0][8] == "leak at flange；isolated；zhao；closed"
        assert len(await page.query_selector_all("#per-day svg rect")) == 31
        # A4, printable: the PDF Chromium makes has A4 pages
        pdf = await page.pdf(format="A4", print_background=True)
        assert pdf.startswith(b"%PDF") and len(pdf) > 10_000
        assert b"/MediaBox [0 0 595" in pdf  # 595 x 842 pt = A4
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "report-alarms.pdf").write_bytes(pdf)
        await page.set_viewport_size({"width": 794, "height": 1123})
        await page.screenshot(path=str(ARTIFACTS / "report-alarms.png"), full_page=True)


def test_english_and_csv(journal: Path, tmp_path: Path) -> None:
    html_out = tmp_path / "en.html"
    assert run(journal, html_out, "--lang", "en") == 0
    text = html_out.read_text(encoding="utf-8")
    assert "<title>Monthly alarm report</title>" in text and "Every priority 1 alarm" in text

    csv_out = tmp_path / "report.csv"
    assert run(journal, csv_out, "--lang", "en") == 0
    raw = csv_out.read_bytes()
    assert raw.startswith("\ufeff".encode())  # Excel reads it as UTF-8
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    assert rows[0] == ["# Monthly alarm report"]
    kpis = rows.index(["# Alarm system KPIs (vs EEMUA 191 / ISA-18.2)"])
    assert rows[kpis + 1] == ["KPI", "This month", "Benchmark", "Status"]
    by = {r[0]: r for r in rows[kpis + 2: kpis + 20] if r}
    assert by["Alarms per 10 minutes (average)"][1] == "0.00"  # 19 in a month of 4464 periods
    assert by["Peak alarms in 10 minutes"][3] == "not met"
    p1 = rows.index(["# Every priority 1 alarm with acknowledgement and disposition"])
    assert rows[p1 + 2][1] == "P1/hh" and rows[p1 + 2][-1] == "leak at flange; isolated; zhao; closed"


def test_command_errors(journal: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(journal, tmp_path / "r.pdf") == 2
    assert "write the report as .html or .csv" in capsys.readouterr().err
    assert main(["report", "alarms", "-c", str(CONFIG), "--month", "2026-13", "-o", str(tmp_path / "r.html"),
                 "--journal", str(journal)]) == 2
    assert run(tmp_path / "missing.sqlite3", tmp_path / "r.html") == 1
    assert "no alarm journal" in capsys.readouterr().err
