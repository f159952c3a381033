"""GB/T 50493-2019 set-point checks, the OEL table, and GB 18218-2018 S / R."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from test_alarm_support import make_config

from alerting.standards import (
    MOLAR_VOLUME_20C,
    OEL_TABLE,
    alpha_for,
    check_standards,
    find_oel,
    gb18218,
    grade_for,
)
from gateway.core.config import Inventory
from gateway.validate import validate_file


def _tag(kind: str, unit: str, gas: str | None = None, **alarms: Any) -> dict[str, Any]:
    t: dict[str, Any] = {"id": "X-1", "kind": kind, "unit": unit, "alarms": alarms}
    if gas:
        t["gas"] = gas
    return t


def _check(tag: dict[str, Any]) -> tuple[list[str], list[str]]:
    rep = check_standards(make_config([tag]))
    return [p.message for p in rep.errors], [p.message for p in rep.warnings]


# ----------------------------------------------------------------------------- OEL table


def test_oel_table_values_from_gbz_2_1_2019() -> None:
    expected = {  # mg/m3: MAC where set, else PC-TWA
        "H2S": (10, "MAC"),
        "CO": (20, "PC-TWA"),
        "Cl2": (1, "MAC"),
        "NH3": (20, "PC-TWA"),
        "HCN": (1, "MAC"),
        "HCl": (7.5, "MAC"),
        "COCl2": (0.5, "MAC"),
        "C6H6": (6, "PC-TWA"),
        "CH3OH": (25, "PC-TWA"),
        "SO2": (5, "PC-TWA"),
    }
    for gas, (mg, basis) in expected.items():
        o = OEL_TABLE[gas]
        assert (o.mg_m3, o.basis) == (mg, basis), gas


def test_ppm_conversion_at_20_c() -> None:
    assert MOLAR_VOLUME_20C == pytest.approx(24.055, abs=1e-3)
    assert OEL_TABLE["H2S"].ppm == pytest.approx(7.06, abs=0.01)
    assert OEL_TABLE["Cl2"].ppm == pytest.approx(0.339, abs=0.001)
    assert OEL_TABLE["COCl2"].ppm == pytest.approx(0.1216, abs=0.0005)
    assert OEL_TABLE["NH3"].ppm == pytest.approx(28.25, abs=0.05)
    assert OEL_TABLE["HCN"].ppm == pytest.approx(0.925, abs=0.001)  # expressed as CN


@pytest.mark.parametrize(
    ("name", "key"),
    [("cl2", "Cl2"), ("光气", "COCl2"), ("phosgene", "COCl2"), ("Benzene", "C6H6"), ("甲醇", "CH3OH"), ("液氨", "NH3")],
)
def test_gas_aliases(name: str, key: str) -> None:
    found = find_oel(name)
    assert found is not None and found[0] == key


# ----------------------------------------------------------------------------- combustible gas


def test_combustible_level_1_above_25_lel_is_an_error() -> None:
    errs, _ = _check(_tag("combustible_gas", "%LEL", "CH4", h={"limit": 26}, hh={"limit": 50}))
    assert len(errs) == 1
    assert "X-1" in errs[0] and "h = 26 %LEL" in errs[0] and "25 %LEL" in errs[0]
    assert "GB/T 50493-2019 5.5.2 item 1" in errs[0]


def test_combustible_level_2_above_50_lel_is_an_error() -> None:
    errs, _ = _check(_tag("combustible_gas", "% lel", "CH4", h={"limit": 25}, hh={"limit": 50.5}))
    assert len(errs) == 1 and "hh = 50.5 %LEL" in errs[0] and "item 2" in errs[0]


def test_combustible_at_the_maximum_passes() -> None:
    errs, warns = _check(_tag("combustible_gas", "%LEL", "CH4", h={"limit": 25}, hh={"limit": 50}))
    assert errs == [] and warns == []


def test_combustible_missing_levels_and_other_units_warn() -> None:
    errs, warns = _check(_tag("combustible_gas", "%LEL", "CH4", hh={"limit": 50}))
    assert errs == [] and any("no level-1 alarm (h)" in w for w in warns)
    errs, warns = _check(_tag("combustible_gas", "%VOL", "CH4", h={"limit": 60}))
    assert errs == [] and any("can only be checked in %LEL" in w for w in warns)


# ----------------------------------------------------------------------------- toxic gas


def test_toxic_level_1_above_100_percent_oel_mg_m3() -> None:
    errs, _ = _check(_tag("toxic_gas", "mg/m3", "H2S", h={"limit": 10.5}, hh={"limit": 20}))
    assert len(errs) == 1
    e = errs[0]
    assert "X-1" in e and "h = 10.5 mg/m3" in e and "100 % OEL = 10 mg/m3" in e and "MAC" in e
    assert "GB/T 50493-2019 5.5.2 item 3" in e


def test_toxic_level_2_above_200_percent_oel_ppm() -> None:
    # Cl2: 1 mg/m3 = 0.339 ppm; level 2 max 0.679 ppm
    errs, _ = _check(_tag("toxic_gas", "ppm", "Cl2", h={"limit": 0.34}, hh={"limit": 1.0}))
    assert len(errs) == 1 and "hh = 1 ppm" in errs[0] and "200 % OEL = 0.6786 ppm" in errs[0]


def test_toxic_ppm_rounded_to_the_detector_resolution_passes() -> None:
    errs, _ = _check(_tag("toxic_gas", "ppm", "Cl2", h={"limit": 0.34}, hh={"limit": 0.68}))
    assert errs == []


def test_design_example_chlorine_1_and_2_ppm_fails() -> None:
    # the founding design's GT-101 example (h 1.0 / hh 2.0 ppm Cl2) is above 100 % / 200 % OEL
    errs, _ = _check(_tag("toxic_gas", "ppm", "Cl2", h={"limit": 1.0}, hh={"limit": 2.0}))
    assert len(errs) == 2


@pytest.mark.parametrize(
    ("gas", "mg"),
    [
        ("CO", 20),
        ("NH3", 20),
        ("HCN", 1),
        ("HCl", 7.5),
        ("phosgene", 0.5),
        ("benzene", 6),
        ("methanol", 25),
        ("SO2", 5),
    ],
)
def test_toxic_limits_for_every_required_gas(gas: str, mg: float) -> None:
    ok, _ = _check(_tag("toxic_gas", "mg/m3", gas, h={"limit": mg}, hh={"limit": 2 * mg}))
    assert ok == []
    errs, _ = _check(_tag("toxic_gas", "mg/m3", gas, h={"limit": mg * 1.01}, hh={"limit": 2 * mg * 1.01}))
    assert len(errs) == 2


def test_unknown_toxic_gas_and_unit_warn() -> None:
    errs, warns = _check(_tag("toxic_gas", "mg/m3", "unobtainium", h={"limit": 1}))
    assert errs == [] and any("not in the built-in OEL table" in w for w in warns)
    errs, warns = _check(_tag("toxic_gas", "%VOL", "H2S", h={"limit": 1}))
    assert errs == [] and any("ppm or mg/m3" in w for w in warns)


# ----------------------------------------------------------------------------- oxygen


def test_oxygen_low_below_19_5_is_an_error() -> None:
    errs, _ = _check(_tag("oxygen", "%VOL", l={"limit": 18.0}, h={"limit": 23.5}))
    assert len(errs) == 1 and "l = 18 %VOL is below 19.5" in errs[0] and "item 4" in errs[0]


def test_oxygen_high_above_23_5_is_an_error() -> None:
    errs, _ = _check(_tag("oxygen", "%VOL", l={"limit": 19.5}, h={"limit": 25.0}))
    assert len(errs) == 1 and "h = 25 %VOL is above 23.5" in errs[0]


def test_oxygen_standard_and_safe_side_pass() -> None:
    assert _check(_tag("oxygen", "%VOL", l={"limit": 19.5}, h={"limit": 23.5}))[0] == []
    assert _check(_tag("oxygen", "%VOL", ll={"limit": 18}, l={"limit": 20.0}, h={"limit": 23.0}))[0] == []


def test_oxygen_missing_alarms_warn() -> None:
    errs, warns = _check(_tag("oxygen", "%VOL", h={"limit": 23.5}))
    assert errs == [] and any("oxygen-deficiency" in w for w in warns)


def test_gas_on_delay_warns() -> None:
    _, warns = _check(_tag("combustible_gas", "%LEL", "CH4", h={"limit": 20, "on_delay": "5s"}, hh={"limit": 40}))
    assert any("on_delay 5 s" in w for w in warns)


# ----------------------------------------------------------------------------- GB 18218


@pytest.mark.parametrize(
    ("people", "alpha"),
    [(0, 0.5), (1, 1.0), (29, 1.0), (30, 1.2), (49, 1.2), (50, 1.5), (99, 1.5), (100, 2.0), (5000, 2.0)],
)
def test_alpha_from_population(people: int, alpha: float) -> None:
    assert alpha_for(people) == alpha


@pytest.mark.parametrize(
    ("r", "grade"), [(150, 1), (100, 1), (99.99, 2), (50, 2), (49.9, 3), (10, 3), (9.99, 4), (0.1, 4)]
)
def test_grade_from_r(r: float, grade: int) -> None:
    assert grade_for(r) == grade


def test_r_computation_two_substances() -> None:
    inv = Inventory.model_validate(
        {
            "alpha_population": 60,
            "substances": [{"name": "液氯", "q": 40, "Q": 5, "beta": 4}, {"name": "液氨", "q": 20, "Q": 10, "beta": 2}],
        }
    )
    s, alpha, r = gb18218(inv)
    assert s == pytest.approx(10.0)  # 8 + 2
    assert alpha == 1.5
    assert r == pytest.approx(1.5 * (4 * 8 + 2 * 2))  # 54 -> 二级
    assert grade_for(r) == 2


def _hs(grade: int, people: int, q: float, big_q: float, beta: float) -> dict[str, Any]:
    return {
        "code": "HS-9",
        "name": "Tank farm",
        "grade": grade,
        "inventory": {"alpha_population": people, "substances": [{"name": "液氯", "q": q, "Q": big_q, "beta": beta}]},
    }


def test_configured_grade_disagreeing_warns() -> None:
    rep = check_standards(make_config([], hazard_sources=[_hs(2, 120, 40, 5, 4)]))  # R = 64: grade 2
    assert rep.errors == [] and rep.warnings == []
    assert rep.hazard_sources[0].r == pytest.approx(64.0) and rep.hazard_sources[0].grade == 2
    assert "R = 64.0" in rep.info_lines()[0] and "二级" in rep.info_lines()[0]
    rep = check_standards(make_config([], hazard_sources=[_hs(3, 120, 40, 5, 4)]))
    assert len(rep.warnings) == 1
    w = rep.warnings[0].message
    assert "HS-9" in w and "configured grade 3" in w and "gives grade 2" in w and "GB 18218-2018 4.3" in w


def test_s_below_one_warns() -> None:
    rep = check_standards(make_config([], hazard_sources=[_hs(4, 0, 2, 5, 1)]))
    assert any("S = Σq/Q = 0.40 < 1" in p.message for p in rep.warnings)


# ----------------------------------------------------------------------------- file with line numbers


def test_check_standards_file_names_lines(tmp_path: Path) -> None:
    f = tmp_path / "site.yaml"
    f.write_text(
        "site: {code: S1, name: Site}\n"
        "tags:\n"
        "  - id: GT-7\n"
        "    kind: toxic_gas\n"
        "    gas: H2S\n"
        "    unit: mg/m3\n"
        "    alarms:\n"
        "      h: {limit: 12}\n"
        "      hh: {limit: 20}\n",
        encoding="utf-8",
    )
    result = validate_file(f, env={})
    rep = result  # validate_file runs the set-point checks: they are its only errors here
    assert rep.errors != []
    assert len(rep.errors) == 1
    p = rep.errors[0]
    assert p.path == ("tags", 0, "alarms", "h", "limit") and p.line == 8
    assert p.format(str(f)).startswith(f"{f}:8: tags[0].alarms.h.limit: tag GT-7")


def test_check_standards_file_with_config_errors(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("site: {code: S1}\n", encoding="utf-8")
    result = validate_file(f, env={})
    rep = result.config  # no model, so no set-point report
    assert result.errors and rep is None
