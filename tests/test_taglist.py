"""Tag lists in and out (issue 16): encodings, XLSX, merge keeping the YAML text, the error
report of a broken list, round trips on the demo site and a generated 2,000-tag site."""

from __future__ import annotations

import copy
import csv
import io
import random
import time
from pathlib import Path

import openpyxl
import pytest

from gateway.cli import main
from gateway.taglist.columns import COLUMNS
from gateway.taglist.io import read_table, write_csv
from gateway.taglist.merge import export_rows, import_table
from gateway.taglist.yamlpatch import load_raw
from gateway.validate import validate_text

DEMO = Path(__file__).resolve().parents[1] / "config" / "demo-site.yaml"

BASE = """\
# commissioning site: connections first, tags from the DCS list
site: {code: "91430900TEST0001XX", name: Test Chemical}   # the enterprise

hazard_sources:
  - {code: HS-001, name: Tank farm, grade: 3}

sources:
  # gas detection controller
  - id: gds-1
    type: modbus_tcp
    host: 127.0.0.1
    port: 5020
    addressing: modicon
    points:
      - {tag: GT-001, address: 40001, type: float32}   # first detector
  - id: rtu-1
    type: modbus_tcp
    host: 127.0.0.1
    port: 5021
    points:
      - {tag: PT-001, table: input, address: 0, type: int16, scale: 0.01}
  - id: mq
    type: mqtt
    url: mqtt://127.0.0.1:1883
    subscriptions:
      - topic: plant/a/telemetry
        points:
          - {tag: AT-001, path: $.o2}

tags:
  - {id: GT-001, name: first, hazard_source: HS-001, kind: combustible_gas, gas: CH4, unit: "%LEL", range: [0, 100],
     alarms: {h: {limit: 20, priority: 2}, hh: {limit: 40, priority: 1, latch: true}}}
  - {id: PT-001, name: pressure, hazard_source: HS-001, kind: pressure, unit: MPa, range: [0, 2.5]}
  - {id: AT-001, name: oxygen, hazard_source: HS-001, kind: oxygen, gas: O2, unit: "%VOL", range: [0, 25],
     stale_after: 30s, alarms: {l: {limit: 19.5}, h: {limit: 23.5}}}
"""

HEADER_ZH = ["位号", "名称", "重大危险源", "类型", "介质", "单位", "量程下限", "量程上限", "低低报", "低报", "高报",
             "高高报", "数据源", "地址", "数据类型", "字节序"]
ROWS_ZH = [
    ["GT-101", "可燃气体 V-101 北", "HS-001", "可燃气体", "CH4", "%LEL", "0", "100", "", "", "20", "40",
     "gds-1", "40003", "float32", "CDAB"],
    ["GT-102", "可燃气体 V-101 南", "HS-001", "combustible_gas", "CH4", "%LEL", "0", "100", "", "", "20", "40",
     "gds-1", "holding:4", "float32", ""],
    ["PT-101", "压力", "HS-001", "压力", "", "MPa", "0", "2.5", "", "", "1.6", "1.8", "rtu-1", "30011", "int16", ""],
]


def config(tmp_path: Path, text: str = BASE) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(text, encoding="utf-8")
    return p


def run_import(tmp_path: Path, table: Path, cfg: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    out = tmp_path / "new-site.yaml"
    code = main(["tags", "import", str(table), "-c", str(cfg), "-o", str(out)])
    c = capsys.readouterr()
    return code, c.out, c.err


def check_merged(path: Path) -> dict[str, object]:
    v = validate_text(path.read_text(encoding="utf-8"), str(path), offline_secrets=True)
    assert v.config is not None, v.format_errors()
    return {t.id: t for t in v.config.tags} | {f"src:{s.id}": s for s in v.config.sources}


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-8", "gbk", "gb18030", "utf-16"])
def test_chinese_csv_in_every_encoding_merges_and_validates(
    tmp_path: Path, encoding: str, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "tags.csv"
    buf = io.StringIO()
    # Excel's "Unicode text" is UTF-16, tab separated
    csv.writer(buf, delimiter="\t" if encoding == "utf-16" else ",").writerows([HEADER_ZH, *ROWS_ZH])
    table.write_bytes(buf.getvalue().encode(encoding))
    cfg = config(tmp_path)
    code, out, err = run_import(tmp_path, table, cfg, capsys)
    assert code == 0, err
    assert "3 tag(s) added" in out
    merged = check_merged(tmp_path / "new-site.yaml")
    gt = merged["GT-101"]
    assert gt.name == "可燃气体 V-101 北" and gt.kind == "combustible_gas"  # type: ignore[attr-defined]
    assert gt.alarms.h.priority == 2 and gt.alarms.hh.priority == 1  # type: ignore[attr-defined]
    gds = merged["src:gds-1"]
    pts = {p.tag: p for p in gds.points}  # type: ignore[attr-defined]
    assert (pts["GT-101"].table, pts["GT-101"].register, pts["GT-101"].byte_order) == ("holding", 2, "CDAB")
    assert (pts["GT-102"].table, pts["GT-102"].register) == ("holding", 4)
    rtu = {p.tag: p for p in merged["src:rtu-1"].points}  # type: ignore[attr-defined]
    assert (rtu["PT-101"].table, rtu["PT-101"].register) == ("input", 10)
    text = (tmp_path / "new-site.yaml").read_text(encoding="utf-8")
    # the modicon source keeps Modicon references; the other one gets table + offset
    assert "{tag: GT-101, address: 40003, type: float32, byte_order: CDAB}" in text
    assert "{tag: PT-101, table: input, address: 10, type: int16}" in text
    # comments and untouched sections kept as they were
    assert text.startswith("# commissioning site: connections first, tags from the DCS list\n")
    assert '      - {tag: GT-001, address: 40001, type: float32}   # first detector\n' in text
    assert 'site: {code: "91430900TEST0001XX", name: Test Chemical}   # the enterprise\n' in text


def test_xlsx_import_with_numbers_as_excel_stores_them(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(["id (位号)", "kind", "unit", "range_lo", "range_hi", "h", "hh", "source", "address", "type"])
    ws.append(["GT-201", "combustible_gas", "%LEL", 0, 100, 20.0, 40, "gds-1", 40011, "float32"])
    ws.append(["GT-202", "combustible_gas", "%LEL", 0, 100, 25, 50, "gds-1", 40013, "float32"])
    table = tmp_path / "tags.xlsx"
    wb.save(table)
    code, _, err = run_import(tmp_path, table, config(tmp_path), capsys)
    assert code == 1 or code == 2 or code == 0
    # GT-201/202 need gas: the report names the rows
    assert code == 2 and "tags.xlsx:2: " in err and "tags.xlsx:3: " in err and "needs gas" in err, err
    ws.cell(1, 11, "gas")
    ws.cell(2, 11, "CH4")
    ws.cell(3, 11, "CH4")
    wb.save(table)
    code, _, err = run_import(tmp_path, table, config(tmp_path), capsys)
    assert code == 0, err
    merged = check_merged(tmp_path / "new-site.yaml")
    pts = {p.tag: p for p in merged["src:gds-1"].points}  # type: ignore[attr-defined]
    assert pts["GT-201"].register == 10 and pts["GT-202"].register == 12
    assert merged["GT-201"].alarms.h.limit == 20.0  # type: ignore[attr-defined]


TEN_MISTAKES = """\
id,name,hazard_source,kind,gas,unit,range_lo,range_hi,ll,l,h,hh,source,address,type,byte_order,scale
GT-301,ok,HS-001,combustible_gas,CH4,%LEL,0,100,,,20,40,gds-1,40021,float32,,
GT-302,hh above range,HS-001,combustible_gas,CH4,%LEL,0,25,,,20,30,gds-1,40023,float32,,
GT-303,no gas,HS-001,combustible_gas,,%LEL,0,100,,,20,40,gds-1,40025,float32,,
GT-304,bad number,HS-001,combustible_gas,CH4,%LEL,0,100,,,2O,40,gds-1,40027,float32,,
GT-305,unknown source,HS-001,combustible_gas,CH4,%LEL,0,100,,,20,40,gds-9,40029,float32,,
GT-306,bad type,HS-001,combustible_gas,CH4,%LEL,0,100,,,20,40,gds-1,40031,flaot32,,
GT-307,bad order,HS-001,combustible_gas,CH4,%LEL,0,100,,,20,40,gds-1,40033,float32,ADCB,
GT-308,not modicon,HS-001,combustible_gas,CH4,%LEL,0,100,,,20,40,gds-1,20001,float32,,
GT-301,duplicate,HS-001,combustible_gas,CH4,%LEL,0,100,,,20,40,gds-1,40035,float32,,
GT-310,h above 25 %LEL,HS-001,combustible_gas,CH4,%LEL,0,100,,,30,40,gds-1,40037,float32,,
GT-311,unknown kind,HS-001,gas,CH4,%LEL,0,100,,,20,40,gds-1,40039,float32,,
GT-312,unknown hazard source,HS-009,combustible_gas,CH4,%LEL,0,100,,,20,40,gds-1,40041,float32,,
GT-313,limits out of order,HS-001,combustible_gas,CH4,%LEL,0,100,,,40,20,gds-1,40043,float32,,
GT-314,bad scale,HS-001,combustible_gas,CH4,%LEL,0,100,,,20,40,gds-1,40045,float32,,x
"""


def test_a_list_with_ten_kinds_of_mistakes_reports_them_all_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    table = tmp_path / "tags.csv"
    table.write_text(TEN_MISTAKES, encoding="utf-8")
    cfg = config(tmp_path)
    code, _, err = run_import(tmp_path, table, cfg, capsys)
    assert code == 2
    assert not (tmp_path / "new-site.yaml").exists()
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    expect = [
        "error: tags.csv:3: hh: 30 exceeds range_hi 25",
        "error: tags.csv:4: kind combustible_gas needs gas",
        "error: tags.csv:5: h: '2O' is not a number",
        "error: tags.csv:6: source: 'gds-9' is not a source of the config",
        "error: tags.csv:7: type: 'flaot32' is not a Modbus type (did you mean float32?)",
        "error: tags.csv:8: byte_order: 'ADCB' is not one of ABCD",
        "error: tags.csv:9: address: '20001' is not a Modicon reference",
        "error: tags.csv:10: id: GT-301 is also on line 2",
        "error: tags.csv:11: h: ",  # GB/T 50493: first-level combustible alarm above 25 %LEL
        "error: tags.csv:12: kind: must be",
        "error: tags.csv:13: hazard_source: unknown hazard source 'HS-009'",
        "error: tags.csv:14: limits must rise",
        "error: tags.csv:15: scale: 'x' is not a number",
    ]
    for e in expect:
        assert any(line.startswith(e) for line in lines), f"missing {e!r} in:\n{err}"
    assert "25" in next(line for line in lines if line.startswith("error: tags.csv:11: h: "))
    assert not any(line.startswith("error: tags.csv:2:") for line in lines), err  # the good row
    assert f"{len(lines)} error(s); nothing written" in err


def test_round_trip_on_the_demo_site_changes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for name in ("demo.csv", "demo.xlsx"):
        out = tmp_path / name
        assert main(["tags", "export", "-c", str(DEMO), "-o", str(out)]) == 0
        code, _, err = run_import(tmp_path, out, DEMO, capsys)
        assert code == 0, err
        assert (tmp_path / "new-site.yaml").read_text(encoding="utf-8") == DEMO.read_text(encoding="utf-8")
    raw = (tmp_path / "demo.csv").read_bytes()
    assert raw.startswith(b"\xef\xbb\xbf")  # Excel opens UTF-8 with BOM right


def test_round_trip_into_an_empty_config_gives_an_equivalent_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The demo's tags and points exported, then imported into the demo with no tags and no
    points: the same tags and points (what the columns carry) come back."""
    raw = load_raw(DEMO.read_text(encoding="utf-8"))
    rows = export_rows(raw)
    table = tmp_path / "demo.csv"
    write_csv(table, COLUMNS, rows)
    text = DEMO.read_text(encoding="utf-8")
    start, end = text.index("\ntags:\n"), text.index("\nvotes:")
    stripped = text[:start] + "\ntags: []\n" + text[end:]
    stripped = stripped.replace("      - {tag: GT-201, table: input, address: 0, type: uint16, scale: 0.1}\n", "")
    result = import_table(stripped.replace("votes:", "votes_off:").replace("votes_off:", "votes:"),
                          read_table(table), "demo.csv", "demo-site.yaml")
    assert result.text is not None, result.errors
    merged = load_raw(result.text)
    orig_tags = {t["id"]: t for t in raw["tags"]}
    for t in merged["tags"]:
        o = orig_tags[t["id"]]
        for key in ("name", "kind", "gas", "unit", "range", "hazard_source"):
            assert t.get(key) == o.get(key), (t["id"], key)
        for c in ("ll", "l", "h", "hh"):
            assert (t.get("alarms", {}).get(c) or {}).get("limit") == (o.get("alarms", {}).get(c) or {}).get("limit")
    gt201 = [p for p in merged["sources"][2]["points"] if p["tag"] == "GT-201"]
    assert gt201 == [{"tag": "GT-201", "table": "input", "address": 0, "type": "uint16", "scale": 0.1}]


def big_site(n: int) -> str:
    lines = [BASE.split("\nsources:")[0], "sources:"]
    for s in range(n // 100):
        lines += [f"  - id: dev-{s}", "    type: modbus_tcp", "    host: 127.0.0.1", f"    port: {6000 + s}",
                  "    points:"]
        for k in range(100):
            lines.append(f"      - {{tag: T-{s}-{k}, address: {2 * k}, type: float32}}")
    lines.append("tags:")
    for s in range(n // 100):
        for k in range(100):
            lines.append(f"  - {{id: T-{s}-{k}, name: tag {s} {k}, hazard_source: HS-001, kind: pressure, "
                         f"unit: MPa, range: [0, 4], alarms: {{h: {{limit: 3}}, hh: {{limit: 3.5, priority: 1}}}}}}")
    return "\n".join(lines) + "\n"


def test_round_trip_of_a_2000_tag_site(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = config(tmp_path, big_site(2000))
    table = tmp_path / "big.xlsx"
    t0 = time.monotonic()
    assert main(["tags", "export", "-c", str(cfg), "-o", str(table)]) == 0
    t_export = time.monotonic() - t0
    t0 = time.monotonic()
    code, out, err = run_import(tmp_path, table, cfg, capsys)
    t_import = time.monotonic() - t0
    assert code == 0, err
    assert "2000 unchanged" in out
    assert (tmp_path / "new-site.yaml").read_text(encoding="utf-8") == cfg.read_text(encoding="utf-8")
    assert t_export < 30 and t_import < 60, (t_export, t_import)
    print(f"2000 tags: export {t_export:.2f} s, import {t_import:.2f} s")
    # one change in the list: exactly one line of the config changes
    wb = openpyxl.load_workbook(table)
    ws = wb["tags"]
    hh = list(COLUMNS).index("hh") + 1
    ws.cell(1500, hh, "3.8")
    wb.save(table)
    code, out, err = run_import(tmp_path, table, cfg, capsys)
    assert code == 0 and "1 changed" in out, err
    old = cfg.read_text(encoding="utf-8").splitlines()
    new = (tmp_path / "new-site.yaml").read_text(encoding="utf-8").splitlines()
    diff = [(a, b) for a, b in zip(old, new, strict=True) if a != b]
    assert len(diff) == 1 and "limit: 3.8" in diff[0][1], diff


def test_template_lists_one_example_per_kind_and_imports_cleanly(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "template.xlsx"
    assert main(["tags", "template", "-o", str(out)]) == 0
    wb = openpyxl.load_workbook(out)
    ws = wb["tags"]
    header = [c.value for c in ws[1]]
    assert header == list(COLUMNS)
    kinds = {ws.cell(r, 4).value for r in range(2, ws.max_row + 1)}
    assert kinds == {"combustible_gas", "toxic_gas", "oxygen", "pressure", "temperature", "level", "flow",
                     "discrete", "analog"}
    lists = {str(dv.sqref).split(":")[0][0]: dv.formula1 for dv in ws.data_validations.dataValidation}
    assert "combustible_gas" in lists["D"] and "float32" in lists[chr(ord("A") + COLUMNS.index("type"))]
    assert "CDAB" in lists[chr(ord("A") + COLUMNS.index("byte_order"))]
    code, _, err = run_import(tmp_path, out, config(tmp_path), capsys)
    assert code == 0, err


def test_moving_a_point_and_clearing_an_alarm(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "t.csv"
    table.write_text("id,hh,source,address,type\nGT-001,,rtu-1,holding:100,float32\n", encoding="utf-8")
    code, _, err = run_import(tmp_path, table, config(tmp_path), capsys)
    assert code == 2 and "site.yaml: sources[0].points: List should have at least 1 item" in err, err  # gds-1 empty
    table.write_text("id,kind,hh,source,address,type\nGT-001,combustible_gas,,rtu-1,holding:100,float32\n"
                     "AI-009,analog,,gds-1,30001,uint16\n", encoding="utf-8")
    code, _, err = run_import(tmp_path, table, config(tmp_path), capsys)
    assert code == 0, err
    merged = check_merged(tmp_path / "new-site.yaml")
    assert merged["GT-001"].alarms.hh is None and merged["GT-001"].alarms.h.limit == 20  # type: ignore[attr-defined]
    assert "GT-001" in {p.tag for p in merged["src:rtu-1"].points}  # type: ignore[attr-defined]
    text = (tmp_path / "new-site.yaml").read_text(encoding="utf-8")
    assert "# first detector" not in text  # the old point's line went with it
    assert "latch" not in text.split("GT-001, name")[1].split("\n")[1]  # hh (with its latch) removed


def test_mqtt_rows_go_into_the_subscription_of_their_topic(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "t.csv"
    table.write_text(
        "id,kind,source,topic,path,address\n"
        "AT-002,analog,mq,plant/a/telemetry,$.o2b,\n"
        "AT-003,analog,mq,plant/b/telemetry,$.v,\n"
        "AT-004,analog,mq,plant/b/telemetry,$.w,40001\n",
        encoding="utf-8",
    )
    code, _, err = run_import(tmp_path, table, config(tmp_path), capsys)
    assert code == 2 and "t.csv:4: address: source mq (mqtt) points take topic, path, scale, offset" in err, err
    table.write_text(table.read_text().replace(",40001\n", ",\n"), encoding="utf-8")
    code, _, err = run_import(tmp_path, table, config(tmp_path), capsys)
    assert code == 0, err
    subs = load_raw((tmp_path / "new-site.yaml").read_text(encoding="utf-8"))["sources"][2]["subscriptions"]
    assert [p["tag"] for p in subs[0]["points"]] == ["AT-001", "AT-002"]
    assert subs[1] == {"topic": "plant/b/telemetry", "format": "json",
                       "points": [{"tag": "AT-003", "path": "$.v"}, {"tag": "AT-004", "path": "$.w"}]}


def test_check_on_a_tag_list_points_to_tags_import(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    table = tmp_path / "tags.csv"
    table.write_bytes("位号,名称\nGT-1,可燃\n".encode("gbk"))
    assert main(["check", "-c", str(table)]) == 2
    err = capsys.readouterr().err
    assert "this is a tag list (位号表), not a site config" in err and "hazardgw tags import tags.csv" in err


BLOCK = """\
site:
  code: X   # code
  name: Y
tags:
  # first
  - id: A
    name: a
    kind: pressure
    range: [0, 10]
    alarms:
      h:
        limit: 5   # five
        priority: 2
      hh:
        limit: 8
  # second
  - id: B
    name: b
sources:
  - id: s
    type: modbus_tcp
    points:
      - tag: A
        address: 1
      - tag: B
        address: 2
"""


def test_block_style_configs_are_edited_in_their_style() -> None:
    from gateway.taglist.yamlpatch import patch_text

    d = load_raw(BLOCK)
    n = copy.deepcopy(d)
    n["tags"][0]["alarms"]["h"]["limit"] = 6
    del n["tags"][0]["alarms"]["hh"]
    n["tags"][0]["unit"] = "MPa"
    n["tags"][1]["alarms"] = {"h": {"limit": 1, "priority": 2}}
    n["tags"].append({"id": "C", "name": "c", "range": [0, 1], "alarms": {"hh": {"limit": 0.9, "priority": 1}}})
    n["sources"][0]["points"][1]["type"] = "float32"
    n["sources"][0]["points"].insert(0, {"tag": "C", "address": 0})
    del n["sources"][0]["points"][1]
    out = patch_text(BLOCK, n)
    assert load_raw(out) == n
    assert "        limit: 6   # five\n" in out and "# second\n  - id: B\n" in out
    assert "hh:\n        limit: 8" not in out
    assert "      - tag: C\n        address: 0\n      - tag: B\n        address: 2\n        type: float32\n" in out
    assert "  - id: C\n    name: c\n    range: [0, 1]\n    alarms:\n      hh: {limit: 0.9, priority: 1}\n" in out


def test_random_edits_of_the_demo_site_patch_exactly() -> None:
    """Random tag-list-like edits of the demo config: the text patch reproduces the data
    (patch_text checks it) and the sections no edit touches stay byte for byte."""
    from gateway.taglist.yamlpatch import patch_text

    text = DEMO.read_text(encoding="utf-8")
    base = load_raw(text)
    head = text[: text.index("\nsources:")]
    rng = random.Random(16)
    for _ in range(150):
        n = copy.deepcopy(base)
        for _ in range(rng.randint(1, 6)):
            tags, srcs = n["tags"], n["sources"]
            op = rng.randrange(7)
            t = rng.choice(tags)
            if op == 0 and isinstance(t.get("alarms"), dict) and t["alarms"]:
                a = t["alarms"][rng.choice(list(t["alarms"]))]
                a["priority"] = rng.randint(1, 3)
            elif op == 1:
                t["unit"] = rng.choice(["MPa", "°C", "%LEL", "mg/m3"])
            elif op == 2 and len(tags) > 2:
                tags.remove(t)
            elif op == 3:
                new_tag = {"id": f"N-{rng.randrange(10**6)}", "name": "新 位号", "range": [0, rng.random()]}
                tags.insert(rng.randrange(len(tags) + 1), new_tag)
            elif op == 4:
                pts = rng.choice(srcs[:3])["points"]
                if len(pts) > 1:
                    del pts[rng.randrange(len(pts))]
            elif op == 5:
                pts = rng.choice(srcs[:3])["points"]
                pts.insert(rng.randrange(len(pts) + 1), {"tag": f"P-{rng.randrange(10**6)}", "address": 7})
            else:
                p = rng.choice(rng.choice(srcs[:3])["points"])
                p["scale"] = rng.choice([0.1, 2, 1e-3])
        out = patch_text(text, n)
        assert load_raw(out) == n
        assert out.startswith(head)


def test_opcua_rows_bind_by_node_id_or_browse_path_and_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = BASE.replace("\ntags:\n", """
  - id: dcs
    type: opcua
    url: opc.tcp://127.0.0.1:4840
    security: {policy: None}
    points:
      - {tag: TT-001, node: "ns=2;s=V101.TT101.PV"}

tags:
""") + "  - {id: TT-001, name: temperature, hazard_source: HS-001, kind: temperature, unit: °C, range: [0, 200]}\n"
    table = tmp_path / "t.csv"
    table.write_text(
        "id,kind,unit,source,node,path\n"
        "TT-002,temperature,°C,dcs,ns=2;s=V101.TT102.PV,\n"
        "PT-002,pressure,MPa,dcs,,Objects/Plant/V101/PT102\n"
        "LT-002,level,m,dcs,,\n"
        "LT-003,level,m,dcs,ns=x;s=broken,\n",
        encoding="utf-8",
    )
    code, _, err = run_import(tmp_path, table, config(tmp_path, text), capsys)
    assert code == 2 and "t.csv:4: node: an OPC UA point needs exactly one of node" in err, err
    assert "t.csv:5: node: node id 'ns=x;s=broken'" in err, err
    table.write_text("".join(table.read_text(encoding="utf-8").splitlines(keepends=True)[:3]), encoding="utf-8")
    code, _, err = run_import(tmp_path, table, config(tmp_path, text), capsys)
    assert code == 0, err
    merged = tmp_path / "new-site.yaml"
    points = load_raw(merged.read_text(encoding="utf-8"))["sources"][3]["points"]
    assert points == [{"tag": "TT-001", "node": "ns=2;s=V101.TT101.PV"},
                      {"tag": "TT-002", "node": "ns=2;s=V101.TT102.PV"},
                      {"tag": "PT-002", "path": "Objects/Plant/V101/PT102"}]
    check_merged(merged)
    # export then import of the merged site changes nothing
    exported = tmp_path / "all.csv"
    assert main(["tags", "export", "-c", str(merged), "-o", str(exported)]) == 0
    rows = list(csv.DictReader(io.StringIO(exported.read_text(encoding="utf-8-sig"))))
    assert {r["id"]: (r["node"], r["path"]) for r in rows if r["source"] == "dcs"} == {
        "TT-001": ("ns=2;s=V101.TT101.PV", ""), "TT-002": ("ns=2;s=V101.TT102.PV", ""),
        "PT-002": ("", "Objects/Plant/V101/PT102")}
    again = tmp_path / "again.yaml"
    assert main(["tags", "import", str(exported), "-c", str(merged), "-o", str(again)]) == 0
    assert again.read_text(encoding="utf-8") == merged.read_text(encoding="utf-8")


MQTT_SHAPES = BASE.replace("""          - {tag: AT-001, path: $.o2}
""", """          - {tag: AT-001, path: $.o2}
      - topic: "gds/{device}/data"
        points:
          - {tag: GT-002, match: {device: gds7}, path: $.ch1}
      - topic: vendor/batch
        format: records
        each: "$.data[*]"
        tag_path: "$.id"
        value_path: "$.v"
        points:
          - {tag: GT-003, key: 17}
      - topic: "spBv1.0/plant1/#"
        format: sparkplug_b
        points:
          - {tag: GT-004, edge_node: edge1, device: rtu3, metric: CH4}
""").replace("\ntags:\n", "\ntags:\n" + "".join(
    f"  - {{id: GT-00{i}, hazard_source: HS-001, kind: combustible_gas, gas: CH4, unit: \"%LEL\", "
    "range: [0, 100], stale_after: 30s}\n" for i in (2, 3, 4)))


def test_mqtt_bindings_records_and_sparkplug_points_round_trip_and_import(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(tmp_path, MQTT_SHAPES)
    check_merged(cfg)
    rows = {r["id"]: (r.get("topic"), r.get("path")) for r in export_rows(load_raw(MQTT_SHAPES))}
    assert rows["GT-002"] == ("gds/gds7/data", "$.ch1")  # the bound publisher's own topic
    assert rows["GT-003"] == ("vendor/batch", "17")  # the record key
    assert rows["GT-004"] == ("spBv1.0/plant1/edge1/rtu3", "CH4")  # node/device and metric
    exported = tmp_path / "all.csv"
    assert main(["tags", "export", "-c", str(cfg), "-o", str(exported)]) == 0
    again = tmp_path / "again.yaml"
    assert main(["tags", "import", str(exported), "-c", str(cfg), "-o", str(again)]) == 0, capsys.readouterr().err
    assert again.read_text(encoding="utf-8") == cfg.read_text(encoding="utf-8")
    # new rows: a second device on the pattern, a record key, a node metric
    table = tmp_path / "t.csv"
    table.write_text(
        "id,kind,gas,unit,range_lo,range_hi,hazard_source,stale_after,source,topic,path\n"
        "GT-005,combustible_gas,CH4,%LEL,0,100,HS-001,30s,mq,gds/gds9/data,$.ch2\n"
        "GT-006,combustible_gas,CH4,%LEL,0,100,HS-001,30s,mq,vendor/batch,18\n"
        "GT-007,combustible_gas,CH4,%LEL,0,100,HS-001,30s,mq,spBv1.0/plant1/edge2,CH4\n"
        "GT-008,combustible_gas,CH4,%LEL,0,100,HS-001,30s,mq,spBv1.0/plant1,CH4\n",
        encoding="utf-8",
    )
    code, _, err = run_import(tmp_path, table, cfg, capsys)
    assert code == 2 and "t.csv:5: topic: a Sparkplug B point is written spBv1.0/<group>/<edge_node>" in err, err
    table.write_text("".join(table.read_text(encoding="utf-8").splitlines(keepends=True)[:4]), encoding="utf-8")
    code, _, err = run_import(tmp_path, table, cfg, capsys)
    assert code == 0, err
    subs = load_raw((tmp_path / "new-site.yaml").read_text(encoding="utf-8"))["sources"][2]["subscriptions"]
    assert subs[1]["points"][1] == {"tag": "GT-005", "match": {"device": "gds9"}, "path": "$.ch2"}
    assert subs[2]["points"][1] == {"tag": "GT-006", "key": "18"}
    assert subs[3]["points"][1] == {"tag": "GT-007", "edge_node": "edge2", "metric": "CH4"}
    check_merged(tmp_path / "new-site.yaml")
