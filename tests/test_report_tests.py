"""``hazardgw report tests``: the commissioning report from test records with known content.

The demo site; an upkeep store with three bump tests in November 2026 (GT-101 passed, GT-102
failed: HH never reached, GT-201 passed twice) and one recorded calibration (GT-103, overdue).
The report is written as HTML and CSV through the command line; the HTML is rendered by
headless Chromium (printed to an A4 PDF), lists every tag with an alarm level, untested ones
first, then the failed, then the passed; the CSV is parsed back.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
from pathlib import Path

import pytest
from test_api_console_e2e import ARTIFACTS, browser

from gateway.cli import main
from gateway.reports.tests import wanted
from gateway.upkeep.store import CalibrationRecord, TestRecord, UpkeepStore
from gateway.validate import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config" / "demo-site.yaml"
BEIJING = dt.timezone(dt.timedelta(hours=8))
S = 1_000_000_000


def at(day: int, hour: int, minute: int = 0) -> int:
    return int(dt.datetime(2026, 11, day, hour, minute, tzinfo=BEIJING).timestamp()) * S


@pytest.fixture
def store(tmp_path: Path) -> Path:
    s = UpkeepStore(tmp_path)
    s.open()
    t0, t1, t2, t3 = at(3, 9), at(3, 10), at(4, 14), at(20, 9)
    recs = [
        TestRecord("GT-101", t0, t0 + 3600 * S, "zhao", ("h", "hh"), comment="5 ppm Cl2",
                   reached={"h": (t0 + 14 * S, 1.2), "hh": (t0 + 31 * S, 2.2)}, peak=4.8, low=0.0,
                   ended=t0 + 600 * S, ended_by="zhao", end_reason="ended"),
        TestRecord("GT-102", t1, t1 + 1800 * S, "li", ("h", "hh"), reached={"h": (t1 + 40 * S, 1.1)}, peak=1.6,
                   ended=t1 + 1800 * S, ended_by="system", end_reason="expired"),
        TestRecord("GT-201", t2, t2 + 3600 * S, "zhao", ("h", "hh"),
                   reached={"h": (t2 + 9 * S, 26.0), "hh": (t2 + 18 * S, 52.0)}, peak=60.0,
                   ended=t2 + 900 * S, ended_by="zhao", end_reason="ended"),
        TestRecord("GT-201", t3, t3 + 3600 * S, "sun", ("h", "hh"),
                   reached={"h": (t3 + 8 * S, 26.0), "hh": (t3 + 17 * S, 51.0)}, peak=55.0,
                   ended=t3 + 700 * S, ended_by="sun", end_reason="ended"),
    ]
    s.insert_tests(recs)
    s.add_calibration(CalibrationRecord("GT-103", dt.date(2025, 10, 1), 365 * 86400.0, t0, "zhao", "cert 17"))
    s.close()
    return tmp_path / "upkeep.sqlite3"


def run(store: Path, out: Path, *extra: str) -> int:
    return main(["report", "tests", "-c", str(CONFIG), "--from", "2026-11-01", "--to", "2026-11-30", "-o", str(out),
                 "--store", str(store), *extra])


async def test_html_report_renders_in_chromium_lists_every_tag_untested_first(store: Path, tmp_path: Path) -> None:
    out = tmp_path / "report.html"
    assert run(store, out) == 0  # demo site: notification.language zh
    config = load_config(CONFIG, env={})
    listed = [t.id for t in config.tags if wanted(t)]
    assert {"GT-101", "GT-201", "AT-201"} <= set(listed)
    async with browser() as b:
        page = await b.new_page()
        await page.goto(out.as_uri())
        assert await page.title() == "可燃有毒气体检测报警系统联调测试报告"
        text = await page.inner_text("body")
        for want in ("演示化工有限公司", "逐点测试结果（未测试的位号列在最前）", "全部测试记录", "检定到期与过期",
                     "签字", "测试人", "审核人", "JJG 693"):
            assert want in text, want
        cells = "rows => rows.map(r => [...r.cells].map(c => c.innerText))"
        rows = [[r[0].split("\n")[0], *r[1:]] for r in await page.eval_on_selector_all("#tags tbody tr", cells)]
        assert sorted(r[0] for r in rows) == sorted(listed)  # every tag to test, once
        results = [r[6] for r in rows]
        n_untested = len(listed) - 3
        assert results[:n_untested] == ["未测试"] * n_untested  # untested first
        assert results[n_untested:] == ["不合格", "合格", "合格"]
        by_tag = {r[0]: r for r in rows}
        assert by_tag["GT-102"][4] == "H 40 秒；HH 未达到" and by_tag["GT-102"][3] == "2026-11-03 10:00\nli"
        assert by_tag["GT-101"][5] == "14 秒" and by_tag["GT-101"][3] == "2026-11-03 09:00\nzhao"
        assert by_tag["GT-201"][7] == "2" and by_tag["GT-201"][3].endswith("sun")  # the latest of its two tests
        assert by_tag["GT-103"][8] == "已过期\n2026-10-01"
        assert by_tag["GT-104"][4] == "H HH"  # untested: the levels it is to reach
        assert by_tag["GT-101"][2].startswith("gds-1 holding:0 (40001) float32")  # where it is read
        classes = await page.eval_on_selector_all("#tags tbody tr td:nth-child(7)", "cs => cs.map(c => c.className)")
        assert classes[0] == "bad nowrap" and classes[-1] == "ok nowrap"
        tests = await page.eval_on_selector_all("#tests tbody tr", cells)
        assert [r[1] for r in tests] == ["GT-101", "GT-102", "GT-201", "GT-201"]
        assert tests[1][7].endswith("到时自动结束") and tests[0][5] == "4.8 mg/m3"
        cal = await page.eval_on_selector_all("#calibration tbody tr", cells)
        assert [r[0] for r in cal] == ["GT-103"] and cal[0][5].startswith("过期")
        summary = dict(await page.eval_on_selector_all(
            "#summary tbody tr", "rows => rows.map(r => [r.cells[0].innerText, r.cells[1].innerText])"))
        assert (summary["已测试"], summary["合格"], summary["不合格"], summary["未测试"]) == (
            "3", "2", "1", str(n_untested))
        pdf = await page.pdf(format="A4", print_background=True)
        assert pdf.startswith(b"%PDF") and b"/MediaBox [0 0 595" in pdf  # 595 x 842 pt = A4
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        (ARTIFACTS / "report-tests.pdf").write_bytes(pdf)
        await page.set_viewport_size({"width": 794, "height": 1123})
        await page.screenshot(path=str(ARTIFACTS / "report-tests.png"), full_page=True)


def test_english_and_csv(store: Path, tmp_path: Path) -> None:
    html_out = tmp_path / "en.html"
    assert run(store, html_out, "--lang", "en") == 0
    assert "<title>Gas detection loop check and bump test report</title>" in html_out.read_text(encoding="utf-8")
    csv_out = tmp_path / "report.csv"
    assert run(store, csv_out, "--lang", "en") == 0
    raw = csv_out.read_bytes()
    assert raw.startswith("\ufeff".encode())
    rows = list(csv.reader(io.StringIO(raw.decode("utf-8-sig"))))
    i = rows.index(["# Result per tag (untested tags first)"])
    assert rows[i + 1][:2] == ["Tag / name", "Hazard source"] and rows[i + 2][6] == "not tested"
    gt102 = next(r for r in rows[i:] if r and r[0].startswith("GT-102\n"))
    assert gt102[6] == "fail" and gt102[4] == "H 40 s; HH not reached"


def test_command_errors(store: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(store, tmp_path / "r.pdf") == 2
    assert main(["report", "tests", "-c", str(CONFIG), "--from", "2026-11-30", "--to", "2026-11-01", "-o",
                 str(tmp_path / "r.html"), "--store", str(store)]) == 2
    assert "--to must be after --from" in capsys.readouterr().err
    assert run(tmp_path / "missing.sqlite3", tmp_path / "r.html") == 1
    assert "no test records" in capsys.readouterr().err
