"""Identification codes the provincial platforms hold a site to (checked by ``hazardgw check``
when an uplink mapping asks for it, see gateway/uplink/mapping.py ``checks:``).

* **统一社会信用代码** (unified social credit code, GB 32100-2015): 18 characters from
  ``0-9 A-H J-N P-R T U W-Y`` (no I, O, Z, S, V); the last one is a check character:
  ``31 - (sum of value(c_i) * w_i for the first 17, mod 31)``, 31 -> 0, with the weights
  ``3^i mod 31`` (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28).
* **enterprise code** (企业编码): 6-digit administrative division code + 5-digit serial,
  11 characters.
* **hazard source code** (重大危险源编码): the enterprise code + a 3-digit serial, 14 characters.
* **district code** (行政区划代码): 6 digits.
"""

from __future__ import annotations

import re

USCC_CHARSET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = tuple(pow(3, i, 31) for i in range(17))
_USCC = re.compile(rf"[{USCC_CHARSET}]{{18}}")
_ENTERPRISE = re.compile(r"\d{11}")
_DISTRICT = re.compile(r"\d{6}")
_HAZARD_SERIAL = re.compile(r"\d{3}")


def uscc_check_char(first17: str) -> str:
    """The GB 32100-2015 check character for the first 17 characters of a USCC."""
    total = sum(USCC_CHARSET.index(c) * w for c, w in zip(first17, USCC_WEIGHTS, strict=True))
    return USCC_CHARSET[(31 - total % 31) % 31]


def uscc_problem(code: str) -> str | None:
    """Why ``code`` is not a valid 18-character 统一社会信用代码, or None."""
    if len(code) != 18:
        return f"a 统一社会信用代码 has 18 characters, {code!r} has {len(code)}"
    if not _USCC.fullmatch(code):
        bad = sorted({c for c in code if c not in USCC_CHARSET})
        return f"{code!r} is not a 统一社会信用代码: characters {''.join(bad)!r} are not allowed (GB 32100-2015)"
    want = uscc_check_char(code[:17])
    if code[17] != want:
        return f"{code!r} fails the GB 32100-2015 check: the last character should be {want!r}, not {code[17]!r}"
    return None


def enterprise_code_problem(code: object) -> str | None:
    """Why ``code`` is not an 11-character enterprise code (6-digit division + 5-digit serial)."""
    if not isinstance(code, str) or not _ENTERPRISE.fullmatch(code):
        return (f"the enterprise code must be 11 digits (6-digit administrative division code + 5-digit "
                f"serial), got {code!r}")
    return None


def district_code_problem(code: object) -> str | None:
    if not isinstance(code, str) or not _DISTRICT.fullmatch(code):
        return f"the district code (行政区划代码) must be 6 digits, got {code!r}"
    return None


def hazard_code_problem(code: str, enterprise: str) -> str | None:
    """Why ``code`` is not a 14-character hazard source code of enterprise ``enterprise``."""
    if len(code) != 14 or not code.startswith(enterprise) or not _HAZARD_SERIAL.fullmatch(code[11:]):
        return (f"hazard source code {code!r} must be 14 characters: the enterprise code {enterprise!r} "
                f"+ a 3-digit serial")
    return None
