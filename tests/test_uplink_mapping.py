"""Uplink mapping files without a network: ciphers against published vectors, the template
language, malformed mappings reported with their own file and line, and ``hazardgw check``
on a ``mapped`` uplink (options, secrets, code checks: USCC checked against python-stdnum)."""

from __future__ import annotations

import base64
import dataclasses
import json
import random
import textwrap
import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from stdnum.cn import uscc as stdnum_uscc

from alerting.events import AlarmEvent
from gateway.config import Config
from gateway.core.config import Uplink
from gateway.uplink import codes
from gateway.uplink.ciphers import BodyCipher, CipherError, decode_secret, make_cipher
from gateway.uplink.delimited import escape_frame
from gateway.uplink.mapped import MappedProfile
from gateway.uplink.mapping import MappingError, escape_char, load_mapping, parse_mapping, shipped, time_format
from gateway.uplink.profile import Heartbeat, TagValue
from gateway.validate import validate_text

SITE = "91110000600037341L"  # a valid 统一社会信用代码 (python-stdnum agrees, see below)
ENT = "32050000001"
HS1, HS2 = ENT + "001", ENT + "002"
KEY16 = "0123456789abcdef"
SM4_KEY_HEX = "0123456789abcdeffedcba9876543210"
SALT_HEX = "000102030405060708090a0b0c0d0e0f"


# --------------------------------------------------------------------------- ciphers


def test_sm4_matches_the_gb_t_32907_example() -> None:
    # GB/T 32907-2016 appendix A, example 1: one block; CBC with a zero IV is that block's ECB
    key = bytes.fromhex(SM4_KEY_HEX)
    c = BodyCipher("sm4-cbc", key, bytes(16))
    out = base64.b64decode(c.encrypt(key))
    assert out[:16].hex() == "681edf34d206965e86b3e94f536e4246"
    assert len(out) == 32  # PKCS#7 adds a whole block to a 16-byte plaintext
    assert c.decrypt(base64.b64encode(out).decode()) == key


def test_aes_cbc_matches_nist_sp800_38a() -> None:
    # NIST SP 800-38A F.2.1 CBC-AES128.Encrypt, block 1
    key = bytes.fromhex("2b7e151628aed2a6abf7158809cf4f3c")
    iv = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
    plain = bytes.fromhex("6bc1bee22e409f96e93d7e117393172a")
    out = base64.b64decode(BodyCipher("aes-128-cbc", key, iv).encrypt(plain))
    assert out[:16].hex() == "7649abac8119b246cee98e9b12e9197d"


@pytest.mark.parametrize("name,key,iv", [
    ("aes-128-cbc", KEY16, None), ("aes-256-cbc", "k" * 32, "i" * 16), ("sm4-cbc", KEY16, "v" * 16),
    ("aes-256-gcm", "g" * 32, None)])
def test_round_trip_and_wrong_key(name: str, key: str, iv: str | None) -> None:
    c = make_cipher(name, key, "text", iv, "text")
    plain = json.dumps({"值": 1.5, "pad": "x" * 37}, ensure_ascii=False).encode()
    text = c.encrypt(plain)
    assert c.decrypt(text) == plain
    other = make_cipher(name, "W" + key[1:], "text", iv, "text")
    try:
        wrong = other.decrypt(text)
    except CipherError as e:
        assert key not in str(e)
    else:  # CBC: a wrong key passes the padding check about once in 256; the JSON then fails
        assert wrong != plain
    assert key not in repr(c)


def test_key_formats_and_errors_never_show_the_key() -> None:
    assert decode_secret(SM4_KEY_HEX, "hex", "the key", 16) == bytes.fromhex(SM4_KEY_HEX)
    assert decode_secret(base64.b64encode(b"k" * 16).decode(), "base64", "the key", 16) == b"k" * 16
    for text, fmt in (("0123456789abcde", "text"), ("zz" * 16, "hex"), ("!!!", "base64")):
        with pytest.raises(CipherError) as e:
            decode_secret(text, fmt, "the key", 16)
        assert text not in str(e.value)
    with pytest.raises(CipherError, match="iv: key needs a 16-byte key"):
        make_cipher("aes-256-cbc", "k" * 32, "text", None, "text")


# --------------------------------------------------------------------------- codes


def test_uscc_check_character_agrees_with_python_stdnum() -> None:
    rng = random.Random(7)
    for _ in range(300):
        first = "".join(rng.choice(codes.USCC_CHARSET) for _ in range(17))
        assert codes.uscc_check_char(first) == stdnum_uscc.calc_check_digit(first)
    assert codes.uscc_problem(SITE) is None and stdnum_uscc.is_valid(SITE)
    assert "should be 'L'" in (codes.uscc_problem(SITE[:-1] + "X") or "")
    assert "not allowed" in (codes.uscc_problem("91430900DEMO0001XX") or "")  # O and ... are not in the set
    assert codes.enterprise_code_problem(ENT) is None
    assert codes.enterprise_code_problem("3205000001") is not None
    assert codes.hazard_code_problem(HS1, ENT) is None
    assert codes.hazard_code_problem("32050000002001", ENT) is not None
    assert codes.district_code_problem("320500") is None and codes.district_code_problem("3205") is not None


# --------------------------------------------------------------------------- templates


def tiny(messages: str, extra: str = "") -> str:
    return textwrap.dedent("""\
        name: tiny
        tcp: {delimiter: "@@", ack: {match: id}}
        envelope:
          cipher: none
          template: {id: "{msg.id}", svc: "{msg.service}", data: "{body}"}
        options:
          plant: {required: true}
          secret_thing: {secret: true}
        words:
          st: {normal: "0", H: "1", HH: "2", L: "3", LL: "4"}
        """) + extra + "messages:\n" + textwrap.indent(textwrap.dedent(messages), "  ")


def test_formatters_render_as_declared() -> None:
    m = parse_mapping(tiny("""\
        realtime:
          service: rt
          batch: 2
          body:
            when: "{msg.time|time:yyyy-MM-dd HH:mm:ss.SSS}"
            part: "{msg.part}/{msg.parts}"
            plant: "P-{options.plant}"
            rows:
              each: values
              item:
                code: "{tag.fields.target_code|or:tag.code}"
                v2: "{tag.value|fixed:2}"
                v: "{tag.value|round:1}"
                st: "{tag.status|map:st}"
                ok: "{tag.valid|int}"
                ms: "{tag.time|epoch_ms}"
                lit: "{{x}}"
                lon: "{tag.fields.lon|default:0}"
        """))
    spec = m.messages["realtime"][0]
    assert spec.batch == 2 and spec.batched == "values"
    assert m.tag_fields_required == frozenset()  # both tag.fields uses have a fallback
    schema = spec.body_schema()
    assert schema["required"] == ["when", "part", "plant", "rows"]
    assert schema["properties"]["rows"]["items"]["properties"]["st"] == {"enum": ["0", "1", "2", "3", "4"]}


def render_realtime(mapping_text: str, values: list[TagValue], options: dict[str, Any]) -> list[Any]:
    path = Path("/tmp") / f"hazardgw-test-mapping-{time.time_ns()}.yaml"
    path.write_text(mapping_text, encoding="utf-8")
    try:
        config = make_config({"profile": "mapped", "mapping": str(path), "url": "tcp://127.0.0.1:1",
                              "options": options})
        assert config.uplink is not None
        profile = MappedProfile(config, config.uplink)
        return [json.loads(m.payload) for m in profile.realtime(values, 1_767_225_600_123_000_000)]
    finally:
        path.unlink()


def test_rendered_values_batches_and_text() -> None:
    text = tiny("""\
        realtime:
          service: rt
          batch: 2
          body:
            when: "{msg.time|time:yyyy-MM-dd HH:mm:ss.SSS}"
            part: "{msg.part}/{msg.parts}"
            rows:
              each: values
              item:
                code: "{tag.fields.target_code|or:tag.code}"
                v2: "{tag.value|fixed:2}"
                st: "{tag.status|map:st}"
                ok: "{tag.valid|int}"
                lit: "{{x}}@@"
        """)
    t = 1_767_225_600_123_000_000
    vals = [TagValue("GT-101", "n", HS1, "toxic_gas", "mg/m3", 1.0 / 3, "good", t, "H"),
            TagValue("PT-201", "n", HS2, "pressure", "MPa", None, "comm", t, "normal"),
            TagValue("TT-202", "n", HS2, "temperature", "°C", float("nan"), "good", t, "normal")]
    docs = render_realtime(text, vals, {"plant": "A", "tag_fields": {"GT-101": {"target_code": "X1"}}})
    assert [d["data"]["part"] for d in docs] == ["1/2", "2/2"]
    assert docs[0]["svc"] == "rt" and len({d["id"] for d in docs}) == 2
    assert docs[0]["data"]["when"] == "2026-01-01 08:00:00.123"  # site time zone Asia/Shanghai
    rows = docs[0]["data"]["rows"] + docs[1]["data"]["rows"]
    assert rows[0] == {"code": "X1", "v2": "0.33", "st": "1", "ok": 1, "lit": "{x}@@"}
    assert rows[1] == {"code": "PT-201", "v2": None, "st": "0", "ok": 0, "lit": "{x}@@"}
    assert rows[2]["v2"] is None  # NaN is never sent as a number


def test_time_patterns() -> None:
    fmt, rx = time_format("yyyyMMddHHmmss")
    assert fmt(1_767_225_600_000_000_000, ZoneInfo("Asia/Shanghai")) == "20260101080000"
    assert rx == r"^\d{4}\d{2}\d{2}\d{2}\d{2}\d{2}$"
    with pytest.raises(ValueError, match="unknown time pattern letters 'hh'"):
        time_format("yyyy-MM-dd hh:mm")


def test_delimiter_inside_a_string_is_escaped() -> None:
    c = escape_char("@@")
    assert c == "@"
    text = json.dumps({"name": "a@@b", "x": "c@d"}, ensure_ascii=False)
    out = escape_frame(text, "@@", c)
    assert "@@" not in out and json.loads(out) == {"name": "a@@b", "x": "c@d"}
    assert escape_char("==") is None and escape_char("\n") == "\n"


# --------------------------------------------------------------------------- malformed mappings


def problems_of(text: str) -> list[str]:
    with pytest.raises(MappingError) as e:
        parse_mapping(text, "bad.yaml")
    return [p.format("config.yaml") for p in e.value.problems]


def test_malformed_mapping_errors_point_at_the_mapping_line() -> None:
    text = tiny("""\
        realtime:
          service: rt
          body:
            rows:
              each: values
              item:
                code: "{tag.cod}"
                v: "{tag.value|fixd:2}"
                t: "{tag.time}"
                s: "{options.secret_thing}"
                u: "{options.nope}"
                w: "{tag.quality|map:st}"
        alarm:
          service: al
          body: {v: "{tag.value}", e: "{alarm.event|map:st}"}
        heartbeat:
          service: hb
          body: {x: "{heartbeat.status"}
        """)
    lines = {i + 1: line for i, line in enumerate(text.splitlines())}
    found = problems_of(text)

    def at(needle: str, message: str) -> None:
        line = next(n for n, s in lines.items() if needle in s)
        assert any(p.startswith(f"bad.yaml:{line}: ") and message in p for p in found), (needle, message, found)

    at("{tag.cod}", "unknown placeholder {tag.cod}: tag.* has ")
    at("fixd:2", "unknown formatter 'fixd'")
    at("{tag.time}", "is a time: give its format")
    at("secret_thing}", "options.secret_thing is secret: only http.headers may use it")
    at("options.nope", "unknown placeholder {options.nope}: declare it under options:")
    at("tag.quality|map:st", "words.st has no entry for")
    at("e: \"{alarm.event|map:st}", "{tag.value} has a value only in realtime messages")
    at("e: \"{alarm.event|map:st}", "words.st has no entry for raised")
    at("{heartbeat.status\"", "unbalanced '{'")
    assert all(p.startswith("bad.yaml:") for p in found)  # the mapping's file, not the config


def test_missing_and_unknown_keys_and_structure() -> None:
    found = problems_of(textwrap.dedent("""\
        name: broken
        tcp: {delimiter: "==", ack: {match: dataId}}
        envelope: {cipher: sm4-cbc, key: k, template: {data: "{body}"}}
        options: {k: {required: true}}
        messages:
          realtime: {service: rt, body: {x: 1}}
          meta: {service: m, batch: 10, body: {x: "{msg.id}"}, events: [raised]}
        """))
    text = "\n".join(found)
    for msg in ("sm4-cbc needs iv:", "option 'k' holds the key: declare it secret: true",
                "the delimiter needs a character", "ack.match 'dataId' must be an envelope field",
                "a realtime body must list the values", "batch: splits each: tags",
                "events: and conditions: apply to alarm messages only"):
        assert msg in text, (msg, text)
    found = problems_of("name: x\nmessages: {}\ncolour: blue\n")
    assert any("envelope: required key is missing" in p for p in found)
    assert "bad.yaml:3: colour: unknown key 'colour'" in found
    found = problems_of("name: [unclosed\n")
    assert found and "YAML syntax error" in found[0]


def test_shipped_mappings_load() -> None:
    assert shipped() == ["jiangsu-tcp", "mem-http-sm4"]
    for name in shipped():
        m = load_mapping(name)
        assert set(m.messages) == {"realtime", "alarm", "meta", "heartbeat"}
        assert m.spec.checks.hazard_codes and m.spec.checks.uscc


# --------------------------------------------------------------------------- hazardgw check


def site_doc(uplink: dict[str, Any], store: str = "/tmp/hazardgw-unused") -> dict[str, Any]:
    return {
        "site": {"code": SITE, "name": "上游化工", "timezone": "Asia/Shanghai"},
        "hazard_sources": [{"code": HS1, "name": "液氯储罐区", "grade": 1, "responsible": {"principal": "zhang"}},
                           {"code": HS2, "name": "LPG spheres", "grade": 3}],
        "people": [{"id": "zhang", "name": "张三", "phone": "13800000001"}],
        "tags": [
            {"id": "GT-101", "name": "液氯泄漏检测", "hazard_source": HS1, "kind": "toxic_gas", "gas": "Cl2",
             "unit": "mg/m3", "range": [0, 10], "alarms": {"h": {"limit": 1.0}, "hh": {"limit": 2.0}}},
            {"id": "PT-201", "name": "Sphere pressure", "hazard_source": HS2, "kind": "pressure", "unit": "MPa",
             "range": [0, 2.5], "alarms": {"l": {"limit": 0.2, "priority": 3}, "h": {"limit": 1.6}}},
            {"id": "TT-202", "hazard_source": HS2, "kind": "temperature", "unit": "°C", "range": [-40, 80]},
        ],
        "api": {"enabled": False},
        "store": {"path": store},
        "uplink": uplink,
    }


def jiangsu(url: str = "tcp://127.0.0.1:8653", **options: Any) -> dict[str, Any]:
    return {"profile": "mapped", "mapping": "jiangsu-tcp", "url": url, "period": "1s", "heartbeat": "1s",
            "reconnect_max": "1s",
            "options": {"app_id": "hz-001", "district_code": "320500", "enterprise_code": ENT, "key": "${UPLINK_KEY}",
                        **options}}


ENV = {"UPLINK_KEY": KEY16, "UPLINK_SM4_KEY": SM4_KEY_HEX, "UPLINK_SALT": SALT_HEX, "UPLINK_SECRET": "s3cr3t-app"}


def check(doc: dict[str, Any]) -> tuple[Config | None, list[str], list[str]]:
    text = json.dumps(doc, ensure_ascii=False, indent=1)
    r = validate_text(text, "site.yaml", ENV)
    return r.config, [p.format("site.yaml") for p in r.errors], [p.format("site.yaml") for p in r.warnings]


def make_config(uplink: dict[str, Any], store: str = "/tmp/hazardgw-unused", **changes: Any) -> Config:
    doc = site_doc(uplink, store)
    doc.update(changes)
    config, errors, _ = check(doc)
    assert config is not None, errors
    return config


def test_check_accepts_the_issue_example_and_warns_about_unused_options() -> None:
    config, errors, warnings = check(site_doc(jiangsu(app_secret="${UPLINK_SECRET}")))
    assert config is not None and errors == []
    assert any("option 'app_secret' is not used by mapping jiangsu-tcp" in w for w in warnings)
    assert "s3cr3t-app" not in repr(config.uplink) and KEY16 not in repr(config.uplink)


def test_check_codes_and_options() -> None:
    doc = site_doc(jiangsu(enterprise_code="3205000001", district_code=None))
    doc["site"]["code"] = SITE[:-1] + "X"
    doc["hazard_sources"][1]["code"] = "32050000002002"
    config, errors, _ = check(doc)
    text = "\n".join(errors)
    assert config is None
    assert "options.district_code is required by mapping jiangsu-tcp" in text
    assert "uplink.options.enterprise_code: options.enterprise_code must match ^\\d{11}$" in text
    assert "site.code: '91110000600037341X' fails the GB 32100-2015 check" in text
    # the hazard codes are not judged against an invalid enterprise code; with a good one they are
    doc = site_doc(jiangsu())
    doc["hazard_sources"][1]["code"] = "32050000002002"
    _, errors, _ = check(doc)
    assert any("hazard_sources[1].code: hazard source code '32050000002002' must be 14 characters" in e
               for e in errors), errors
    # every error has its config line
    assert all(e.startswith("site.yaml:") and e.split(":")[1].isdigit() for e in errors)


def test_check_key_problems_never_show_the_key(tmp_path: Path) -> None:
    r = validate_text(json.dumps(site_doc(jiangsu())), "site.yaml", {**ENV, "UPLINK_KEY": "short-key-9"})
    text = "\n".join(p.format("site.yaml") for p in r.errors)
    assert "the key must be 16 bytes (16 characters), got 11" in text and "short-key-9" not in text
    doc = site_doc(jiangsu(url="http://127.0.0.1:1/x"))
    _, errors, _ = check(doc)
    assert any("mapping jiangsu-tcp sends over tcp, tls: url http:// does not fit" in e for e in errors), errors
    doc = site_doc({**jiangsu(), "mapping": None})
    _, errors, _ = check(doc)
    assert any("profile mapped needs uplink.mapping" in e for e in errors)
    doc = site_doc({**jiangsu(), "mapping": str(tmp_path / "nope.yaml")})
    _, errors, _ = check(doc)
    assert any("is neither a shipped mapping (jiangsu-tcp, mem-http-sm4) nor a readable file" in e for e in errors)


def test_check_reports_a_broken_mapping_file_with_its_lines(tmp_path: Path) -> None:
    bad = tmp_path / "province.yaml"
    text = load_mapping("jiangsu-tcp").file
    src = Path(text).read_text(encoding="utf-8").replace('VALUE: "{tag.value|round:4}"', 'VALUE: "{tag.vlue}"')
    bad.write_text(src, encoding="utf-8")
    line = next(i + 1 for i, s in enumerate(src.splitlines()) if "tag.vlue" in s)
    _, errors, _ = check(site_doc({**jiangsu(), "mapping": str(bad)}))
    assert any(e.startswith(f"{bad}:{line}: messages.realtime.body.item.VALUE: unknown placeholder {{tag.vlue}}")
               for e in errors), errors
    assert any(e.startswith("site.yaml:") and "has 1 problem(s)" in e for e in errors), errors


def test_tag_fields_required_without_fallback(tmp_path: Path) -> None:
    src = Path(load_mapping("jiangsu-tcp").file).read_text(encoding="utf-8").replace(
        'TARGET_CODE: "{tag.fields.target_code|or:tag.code}"     # 指标编码', 'TARGET_CODE: "{tag.fields.target_code}"')
    mp = tmp_path / "strict.yaml"
    mp.write_text(src, encoding="utf-8")
    _, errors, _ = check(site_doc({**jiangsu(tag_fields={"GT-101": {"target_code": "T1"}, "XX-1": {}}),
                                   "mapping": str(mp)}))
    text = "\n".join(errors)
    assert "uses {tag.fields.target_code} without a fallback: give it for every tag (missing for PT-201, TT-202)" \
        in text
    assert "tag_fields.XX-1: unknown tag 'XX-1'" in text


def test_profile_builds_every_kind_with_the_jiangsu_vocabulary() -> None:
    config = make_config(jiangsu(tag_fields={"GT-101": {"target_code": "3205000000100101"}}))
    assert config.uplink is not None
    p = MappedProfile(config, config.uplink)
    t = 1_767_225_600_000_000_000
    meta = [json.loads(m.payload) for m in p.meta(t)]
    assert [m.topic for m in p.meta(t)] == ["meta"]
    rows = {r["BIT_NO"]: r for r in meta[0]["data"]}
    assert rows["GT-101"]["TARGET_CODE"] == "3205000000100101" and rows["PT-201"]["TARGET_CODE"] == "PT-201"
    assert (rows["PT-201"]["LOW_VALUE_02"], rows["PT-201"]["TOP_VALUE_01"], rows["PT-201"]["TOP_VALUE"]) == (
        0.2, 1.6, 2.5)
    assert meta[0]["serviceId"] == "SENSOR_INFO" and meta[0]["districtCode"] == "320500"
    event = AlarmEvent(seq=3, event="raised", alarm="GT-101/hh", tag="GT-101", condition="hh", priority=1,
                       state="unack_active", prev_state="normal", active=True, occurrence=4, value=2.5, limit=2.0,
                       ts=t, wall=t, hs=HS1)
    (alarm,) = p.alarm(event, "HH")
    assert alarm.priority and json.loads(alarm.payload)["data"] == [{
        "ALARM_ID": "GT-101/hh#4", "TARGET_CODE": "3205000000100101", "HAZARD_CODE": HS1, "ALARM_TYPE": "2",
        "ALARM_STATE": "1", "ALARM_VALUE": 2.5, "THRESHOLD": 2.0, "ALARM_TIME": "20260101080000"}]
    assert p.alarm(dataclasses.replace(event, event="acked"), "HH") == []  # events: [raised, cleared]
    hb = Heartbeat(ts=t, status="ok", uptime_s=1.0, components={}, sources={}, hazard_sources={}, backlog=0,
                   active_alarms=0)
    (beat,) = p.heartbeat(hb)
    assert not beat.priority and json.loads(beat.payload)["data"]["SEND_TIME"] == "20260101080000"
    assert KEY16 not in repr(p) and KEY16 not in repr(p.sealer)
    assert Uplink.model_fields["mapping"].default is None


def test_profiles_md_lists_every_placeholder_and_formatter() -> None:
    from gateway.uplink.mapping import FORMATTERS, SCOPES

    doc = (Path(__file__).resolve().parents[1] / "gateway" / "uplink" / "PROFILES.md").read_text(encoding="utf-8")
    missing = [f"{s}.{n}" for s, fields in SCOPES.items() for n in fields if f"`{s}.{n}`" not in doc]
    missing += [f for f in FORMATTERS if f"`{f}" not in doc]
    assert missing == []
