"""GB/T 50493-2019 set-point checks and GB 18218-2018 S / R for ``hazardgw check``.

``check_standards(config, line_of)`` returns errors (fail the check, exit 2), warnings and
the GB 18218 results to print. Every message names the tag, the alarm, its limit and the
clause. ``gateway/validate.py`` runs it on every validated config (check, run, reload), so a
set-point violation stops the gateway as it fails ``check``. A tag may waive its set-point
errors only with ``standards_waiver: {reason: "..."}``: they are then reported as
warnings carrying the reason (``StandardsReport.waived``), and logged when the gateway starts.

GB/T 50493-2019 (石油化工可燃气体和有毒气体检测报警设计标准) 5.5.2, 报警值设定:
  1. combustible gas level-1 alarm (``h``) <= 25 %LEL;
  2. combustible gas level-2 alarm (``hh``) <= 50 %LEL;
  3. toxic gas level-1 <= 100 % OEL and level-2 <= 200 % OEL (OEL from GBZ 2.1);
  4. ambient oxygen: enrichment (过氧) alarm 23.5 %VOL, deficiency (欠氧) alarm 19.5 %VOL.
An oxygen low alarm set below 19.5 or a high alarm set above 23.5 %VOL is an error (it
alarms later than the standard); set on the safe side it passes.

GB 18218-2018 (危险化学品重大危险源辨识): S = Σ q/Q (4.2: a major hazard source when
S >= 1); R = α Σ β q/Q (4.3) with α from the population within 500 m (>= 100: 2.0,
50-99: 1.5, 30-49: 1.2, 1-29: 1.0, 0: 0.5); grade 一级 R >= 100, 二级 50 <= R < 100,
三级 10 <= R < 50, 四级 R < 10.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from gateway.core.config import Inventory, LimitAlarm, SiteConfig, Tag
from gateway.core.problems import Problem
from gateway.core.units import normalize_unit
from gateway.core.yamlsrc import Path_

CLAUSE: Final = "GB/T 50493-2019 5.5.2"
GB18218: Final = "GB 18218-2018"

# Molar volume of an ideal gas at 20 °C and 101.325 kPa, L/mol: R·T/p = 8.314462 × 293.15 / 101.325.
MOLAR_VOLUME_20C: Final = 8.314462618 * 293.15 / 101.325  # = 24.055
# ppm values converted from mg/m3 are compared with 1 % tolerance, so a set point rounded
# to the detector's resolution (Cl2: 1 mg/m3 = 0.3395 ppm, set as 0.34) is not an error.
PPM_TOLERANCE: Final = 0.01

COMBUSTIBLE_L1: Final = 25.0  # %LEL
COMBUSTIBLE_L2: Final = 50.0
O2_LOW: Final = 19.5  # %VOL
O2_HIGH: Final = 23.5


@dataclass(frozen=True)
class Oel:
    """Occupational exposure limits of GBZ 2.1-2019 table 1, mg/m3 (20 °C, 101.325 kPa)."""

    name: str
    zh: str
    cas: str
    mw: float  # g/mol of the species the limit is expressed as ("按 CN 计" -> CN)
    mac: float | None = None  # 最高容许浓度
    twa: float | None = None  # PC-TWA, 时间加权平均容许浓度
    stel: float | None = None  # PC-STEL, 短时间接触容许浓度
    note: str = ""

    @property
    def mg_m3(self) -> float:
        """The OEL used for alarm set points: MAC where GBZ 2.1 sets one, else PC-TWA."""
        v = self.mac if self.mac is not None else self.twa
        assert v is not None
        return v

    @property
    def basis(self) -> str:
        return "MAC" if self.mac is not None else "PC-TWA"

    @property
    def ppm(self) -> float:
        return self.mg_m3 * MOLAR_VOLUME_20C / self.mw


# GBZ 2.1-2019 工作场所有害因素职业接触限值 第1部分：化学有害因素, table 1 (mg/m3).
# MAC = maximum allowable concentration, PC-TWA / PC-STEL = 8 h / 15 min limits.
#   硫化氢 H2S        7783-06-4   MAC 10
#   一氧化碳 CO       630-08-0    PC-TWA 20, PC-STEL 30 (非高原; plateau sites have MAC 20 / 15)
#   氯 Cl2            7782-50-5   MAC 1
#   氨 NH3            7664-41-7   PC-TWA 20, PC-STEL 30
#   氰化氢 HCN        74-90-8     MAC 1 (按 CN 计, 皮)
#   氯化氢及盐酸 HCl  7647-01-0   MAC 7.5
#   光气 COCl2        75-44-5     MAC 0.5
#   苯 benzene        71-43-2     PC-TWA 6, PC-STEL 10 (皮, G1)
#   甲醇 methanol     67-56-1     PC-TWA 25, PC-STEL 50 (皮)
#   二氧化硫 SO2      7446-09-5   PC-TWA 5, PC-STEL 10
#   二氧化氮 NO2      10102-44-0  PC-TWA 5, PC-STEL 10
#   氟化氢 HF         7664-39-3   MAC 2 (按 F 计)
#   甲苯 toluene      108-88-3    PC-TWA 50, PC-STEL 100 (皮)
#   二甲苯 xylene     1330-20-7   PC-TWA 50, PC-STEL 100
#   丙烯腈 acrylonitrile 107-13-1 PC-TWA 1, PC-STEL 2 (皮)
#   臭氧 O3           10028-15-6  MAC 0.3
# The OEL for alarm set points is the MAC where one exists, else the PC-TWA (the more
# conservative choice; GB/T 50493-2019 appendix B tabulates the same values).
OEL_TABLE: Final[dict[str, Oel]] = {
    "H2S": Oel("hydrogen sulfide", "硫化氢", "7783-06-4", 34.08, mac=10),
    "CO": Oel("carbon monoxide", "一氧化碳", "630-08-0", 28.01, twa=20, stel=30, note="non-plateau"),
    "Cl2": Oel("chlorine", "氯", "7782-50-5", 70.90, mac=1),
    "NH3": Oel("ammonia", "氨", "7664-41-7", 17.03, twa=20, stel=30),
    "HCN": Oel("hydrogen cyanide", "氰化氢", "74-90-8", 26.02, mac=1, note="as CN"),
    "HCl": Oel("hydrogen chloride", "氯化氢", "7647-01-0", 36.46, mac=7.5),
    "COCl2": Oel("phosgene", "光气", "75-44-5", 98.92, mac=0.5),
    "C6H6": Oel("benzene", "苯", "71-43-2", 78.11, twa=6, stel=10),
    "CH3OH": Oel("methanol", "甲醇", "67-56-1", 32.04, twa=25, stel=50),
    "SO2": Oel("sulfur dioxide", "二氧化硫", "7446-09-5", 64.07, twa=5, stel=10),
    "NO2": Oel("nitrogen dioxide", "二氧化氮", "10102-44-0", 46.01, twa=5, stel=10),
    "HF": Oel("hydrogen fluoride", "氟化氢", "7664-39-3", 19.00, mac=2, note="as F"),
    "C7H8": Oel("toluene", "甲苯", "108-88-3", 92.14, twa=50, stel=100),
    "C8H10": Oel("xylene", "二甲苯", "1330-20-7", 106.17, twa=50, stel=100),
    "C3H3N": Oel("acrylonitrile", "丙烯腈", "107-13-1", 53.06, twa=1, stel=2),
    "O3": Oel("ozone", "臭氧", "10028-15-6", 48.00, mac=0.3),
}

_ALIASES: Final = {
    "phosgene": "COCl2",
    "benzene": "C6H6",
    "methanol": "CH3OH",
    "ch4o": "CH3OH",
    "meoh": "CH3OH",
    "toluene": "C7H8",
    "xylene": "C8H10",
    "acrylonitrile": "C3H3N",
    "ozone": "O3",
    "hydrogen sulfide": "H2S",
    "hydrogen sulphide": "H2S",
    "carbon monoxide": "CO",
    "chlorine": "Cl2",
    "ammonia": "NH3",
    "hydrogen cyanide": "HCN",
    "hydrogen chloride": "HCl",
    "sulfur dioxide": "SO2",
    "sulphur dioxide": "SO2",
    "nitrogen dioxide": "NO2",
    "hydrogen fluoride": "HF",
}
_LOOKUP: Final = {
    **{k.lower(): k for k in OEL_TABLE},
    **{o.zh: k for k, o in OEL_TABLE.items()},
    **_ALIASES,
    "液氯": "Cl2",
    "氯气": "Cl2",
    "液氨": "NH3",
    "氨气": "NH3",
}

_LEVEL: Final = {"h": "level-1 (h)", "hh": "level-2 (hh)"}


def find_oel(gas: str) -> tuple[str, Oel] | None:
    key = _LOOKUP.get(gas.strip().lower()) or _LOOKUP.get(gas.strip())
    return (key, OEL_TABLE[key]) if key else None


@dataclass(frozen=True)
class HazardRisk:
    """GB 18218-2018 result for one hazard source."""

    code: str
    name: str
    s: float
    alpha: float
    r: float
    grade: int  # computed
    configured: int

    def format(self, lang: str = "en") -> str:
        """One line of ``hazardgw check`` (in Chinese for ``lang="zh"``, the site's language)."""
        if lang == "zh":
            major = "构成重大危险源" if self.s >= 1 else "不构成重大危险源（S < 1）"
            return (
                f"{self.code} {self.name}：S = {self.s:.2f}（{major}），α = {self.alpha:g}，R = {self.r:.1f}"
                f" → {GRADE_ZH[self.grade]}；配置为{GRADE_ZH.get(self.configured, str(self.configured))}"
                f"（{GB18218} 4.2、4.3）"
            )
        major = "major hazard source" if self.s >= 1 else "NOT a major hazard source (S < 1)"
        return (
            f"{self.code} {self.name}: S = {self.s:.2f} ({major}), α = {self.alpha:g}, R = {self.r:.1f} "
            f"-> {GRADE_ZH[self.grade]} (grade {self.grade}); configured grade {self.configured}"
            f" [{GB18218} 4.2, 4.3]"
        )


GRADE_ZH: Final = {1: "一级", 2: "二级", 3: "三级", 4: "四级"}


def alpha_for(population: int) -> float:
    """GB 18218-2018 α (暴露人员校正系数) from the number of people within 500 m."""
    if population >= 100:
        return 2.0
    if population >= 50:
        return 1.5
    if population >= 30:
        return 1.2
    if population >= 1:
        return 1.0
    return 0.5


def grade_for(r: float) -> int:
    if r >= 100:
        return 1
    if r >= 50:
        return 2
    if r >= 10:
        return 3
    return 4


def gb18218(inv: Inventory) -> tuple[float, float, float]:
    """(S, α, R) of an inventory."""
    s = sum(x.q / x.Q for x in inv.substances)
    alpha = alpha_for(inv.alpha_population)
    r = alpha * sum(x.beta * x.q / x.Q for x in inv.substances)
    return s, alpha, r


@dataclass
class StandardsReport:
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)
    waived: list[Problem] = field(default_factory=list)  # errors a tag's standards_waiver turned into warnings
    hazard_sources: list[HazardRisk] = field(default_factory=list)

    def info_lines(self) -> list[str]:
        return [h.format() for h in self.hazard_sources]


LineOf = Callable[[Path_], int | None]
Report = Callable[[Path_, str], None]


def check_standards(config: SiteConfig, line_of: LineOf | None = None) -> StandardsReport:
    rep = StandardsReport()
    lo: LineOf = line_of or (lambda _p: None)

    def warn(path: Path_, msg: str) -> None:
        rep.warnings.append(Problem(path, lo(path), msg, "warning"))

    def errors_of(t: Tag) -> Report:
        """Where a tag's set-point errors go: errors, or waived warnings with the reason."""
        waiver = t.standards_waiver
        if waiver is None:
            return lambda path, msg: rep.errors.append(Problem(path, lo(path), msg))
        return lambda path, msg: rep.waived.append(
            Problem(path, lo(path), f"waived ({waiver.reason}): {msg}", "warning")
        )

    for i, t in enumerate(config.tags):
        base: Path_ = ("tags", i)
        err = errors_of(t)

        if t.kind == "combustible_gas":
            _combustible(t, base, err, warn)
        elif t.kind == "toxic_gas":
            _toxic(t, base, err, warn)
        elif t.kind == "oxygen":
            _oxygen(t, base, err, warn)
        if t.kind in ("combustible_gas", "toxic_gas", "oxygen"):
            for name in ("hh", "h", "l", "ll"):
                a: LimitAlarm | None = getattr(t.alarms, name)
                if a is not None and a.on_delay > 0:
                    warn(
                        (*base, "alarms", name, "on_delay"),
                        f"tag {t.id}: {name} has on_delay {a.on_delay:g} s: gas alarms should annunciate on the "
                        "reading that crosses the limit (no on-delay)",
                    )

    for i, hs in enumerate(config.hazard_sources):
        if hs.inventory is None:
            continue
        s, alpha, r = gb18218(hs.inventory)
        risk = HazardRisk(hs.code, hs.name, s, alpha, r, grade_for(r), hs.grade)
        rep.hazard_sources.append(risk)
        path: Path_ = ("hazard_sources", i, "inventory")
        if s < 1:
            warn(path, f"hazard source {hs.code}: S = Σq/Q = {s:.2f} < 1: not a major hazard source by {GB18218} 4.2")
        if risk.grade != hs.grade:
            warn(
                ("hazard_sources", i, "grade"),
                f"hazard source {hs.code}: configured grade {hs.grade} ({GRADE_ZH[hs.grade]}) but R = {r:.1f} "
                f"(α = {alpha:g}) gives grade {risk.grade} ({GRADE_ZH[risk.grade]}) by {GB18218} 4.3",
            )
    return rep


def _limit_path(base: Path_, name: str) -> Path_:
    return (*base, "alarms", name, "limit")


def _levels_present(t: Tag, base: Path_, warn: Report, what: str) -> None:
    if t.alarms.h is None:
        warn((*base, "alarms"), f"tag {t.id}: no level-1 alarm (h) for {what} [{CLAUSE}]")
    if t.alarms.hh is None:
        warn((*base, "alarms"), f"tag {t.id}: no level-2 alarm (hh) for {what} [{CLAUSE}]")


def _combustible(t: Tag, base: Path_, err: Report, warn: Report) -> None:
    if normalize_unit(t.unit) != "%lel":
        warn(
            (*base, "unit"),
            f"tag {t.id}: combustible gas in {t.unit or 'no unit'!s}: set points can only be "
            f"checked in %LEL [{CLAUSE}]",
        )
        return
    _levels_present(t, base, warn, f"combustible gas {t.gas}")
    for name, maximum, item in (("h", COMBUSTIBLE_L1, 1), ("hh", COMBUSTIBLE_L2, 2)):
        a: LimitAlarm | None = getattr(t.alarms, name)
        if a is not None and a.limit > maximum:
            err(
                _limit_path(base, name),
                f"tag {t.id}: {_LEVEL[name]} alarm {name} = {a.limit:g} %LEL exceeds {maximum:g} %LEL for "
                f"combustible gas {t.gas} [{CLAUSE} item {item}]",
            )


def _toxic(t: Tag, base: Path_, err: Report, warn: Report) -> None:
    found = find_oel(t.gas or "")
    if found is None:
        warn(
            (*base, "gas"),
            f"tag {t.id}: gas {t.gas!r} is not in the built-in OEL table "
            f"({', '.join(OEL_TABLE)}); level-1/level-2 set points not checked [{CLAUSE} item 3]",
        )
        return
    key, oel = found
    u = normalize_unit(t.unit)
    if u == "ppm":
        one, unit, tol = oel.ppm, "ppm", PPM_TOLERANCE
    elif u == "ppb":
        one, unit, tol = oel.ppm * 1000.0, "ppb", PPM_TOLERANCE
    elif u in ("mg/m3", "mg/nm3"):
        one, unit, tol = oel.mg_m3, "mg/m3", 0.0
    else:
        warn(
            (*base, "unit"),
            f"tag {t.id}: toxic gas in {t.unit or 'no unit'!s}: set points can only be checked "
            f"in ppm or mg/m3 [{CLAUSE} item 3]",
        )
        return
    _levels_present(t, base, warn, f"toxic gas {key}")
    src = f"OEL {oel.mg_m3:g} mg/m3 = {oel.basis} of {key} in GBZ 2.1-2019"
    if unit != "mg/m3":
        src += f", {one:.4g} {unit} at 20 °C"
    for name, factor in (("h", 1.0), ("hh", 2.0)):
        a: LimitAlarm | None = getattr(t.alarms, name)
        if a is None:
            continue
        maximum = one * factor
        if a.limit > maximum * (1.0 + tol):
            err(
                _limit_path(base, name),
                f"tag {t.id}: {_LEVEL[name]} alarm {name} = {a.limit:g} {unit} exceeds {factor * 100:g} % OEL "
                f"= {maximum:.4g} {unit} ({src}) [{CLAUSE} item 3]",
            )


def _oxygen(t: Tag, base: Path_, err: Report, warn: Report) -> None:
    if normalize_unit(t.unit) not in ("%vol", "vol%", "%v/v", "%"):
        warn(
            (*base, "unit"),
            f"tag {t.id}: oxygen in {t.unit or 'no unit'!s}: set points can only be checked in %VOL [{CLAUSE} item 4]",
        )
        return
    al = t.alarms
    low_name = "l" if al.l is not None else ("ll" if al.ll is not None else None)
    high_name = "h" if al.h is not None else ("hh" if al.hh is not None else None)
    if low_name is None:
        warn(
            (*base, "alarms"), f"tag {t.id}: no oxygen-deficiency (欠氧) alarm (l at {O2_LOW:g} %VOL) [{CLAUSE} item 4]"
        )
    else:
        a = getattr(al, low_name)
        if a.limit < O2_LOW:
            err(
                _limit_path(base, low_name),
                f"tag {t.id}: oxygen-deficiency alarm {low_name} = {a.limit:g} %VOL is below {O2_LOW:g} %VOL "
                f"[{CLAUSE} item 4]",
            )
    if high_name is None:
        warn(
            (*base, "alarms"),
            f"tag {t.id}: no oxygen-enrichment (过氧) alarm (h at {O2_HIGH:g} %VOL) [{CLAUSE} item 4]",
        )
    else:
        a = getattr(al, high_name)
        if a.limit > O2_HIGH:
            err(
                _limit_path(base, high_name),
                f"tag {t.id}: oxygen-enrichment alarm {high_name} = {a.limit:g} %VOL is above {O2_HIGH:g} %VOL "
                f"[{CLAUSE} item 4]",
            )
