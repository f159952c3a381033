"""Config loading: schema, ${ENV}, line numbers, cross-references, all errors at once."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from adapters.modbus.config import ModbusTcpSource
from adapters.mqtt.config import MqttSource
from gateway.core.units import parse_duration, parse_size
from gateway.core.yamlsrc import load_yaml
from gateway.validate import ConfigError, load_config, validate_text

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "config" / "demo-site.yaml"

BASE = textwrap.dedent(
    """\
    site:
      code: "91430900DEMO0001XX"
      name: "Demo"
    hazard_sources:
      - {code: HS-001, name: Chlorine, grade: 2, responsible: {principal: wang}}
    people:
      - {id: wang, name: Wang}
    sources:
      - id: gds-1
        type: modbus_tcp
        host: 127.0.0.1
        port: 5020
        timeout: 500ms
        points:
          - {tag: GT-101, table: holding, address: 0, type: float32}
    tags:
      - id: GT-101
        hazard_source: HS-001
        kind: toxic_gas
        gas: Cl2
        unit: mg/m3
        range: [0, 20]
        alarms:
          hh: {limit: 2.0, priority: 1, latch: true}
          h: {limit: 1.0, deadband: 0.1, off_delay: 30s}
    """
)


def errors(text: str, env: dict[str, str] | None = None) -> list[str]:
    return validate_text(text, "site.yaml", env or {}).format_errors()


def test_base_config_is_valid() -> None:
    r = validate_text(BASE, "site.yaml", {})
    assert r.errors == [], r.format_errors()
    cfg = r.config
    assert cfg is not None
    src = cfg.sources[0]
    assert isinstance(src, ModbusTcpSource)
    assert src.timeout == 0.5
    assert cfg.tags[0].alarms.h is not None and cfg.tags[0].alarms.h.off_delay == 30.0
    assert cfg.site.timezone == "Asia/Shanghai"


def test_demo_site_is_valid_and_plausible() -> None:
    cfg = load_config(DEMO, env={})
    assert len(cfg.hazard_sources) == 2
    assert 35 <= len(cfg.tags) <= 45
    kinds = {type(s).__name__ for s in cfg.sources}
    assert kinds == {"ModbusTcpSource", "ModbusRtuSource", "MqttSource"}
    assert sum(isinstance(s, ModbusTcpSource) for s in cfg.sources) == 2
    rtu = [s for s in cfg.sources if s.type == "modbus_rtu"]
    assert rtu and rtu[0].port.startswith("socket://")
    # every point's tag is in the tag table
    assert set(cfg.source_of_tag()) <= {t.id for t in cfg.tags}


def test_unknown_key_is_an_error_with_line_and_suggestion() -> None:
    text = BASE.replace("timeout: 500ms", "timeout: 500ms\n    tiemout: 1s")
    errs = errors(text)
    assert len(errs) == 1
    assert errs[0].startswith("site.yaml:14: sources[0].tiemout: unknown key 'tiemout'")
    assert "did you mean 'timeout'" in errs[0]


def test_typo_inside_alarm_is_an_error() -> None:
    errs = errors(BASE.replace("hh: {limit: 2.0", "hh: {limt: 2.0"))
    assert any("tags[0].alarms.hh.limt: unknown key" in e for e in errs), errs
    assert any("tags[0].alarms.hh.limit: required key is missing" in e for e in errs), errs


def test_all_errors_reported_at_once_with_lines() -> None:
    text = (
        BASE.replace("port: 5020", "port: 99999")
        .replace("hazard_source: HS-001", "hazard_source: HS-009")
        .replace("principal: wang", "principal: nobody")
        .replace("type: float32", "type: float33")
    )
    errs = errors(text)
    joined = "\n".join(errs)
    assert "sources[0].port" in joined
    assert "site.yaml:5: hazard_sources[0].responsible.principal: unknown person 'nobody'" in joined
    assert "tags[0].hazard_source: unknown hazard source 'HS-009'" in joined
    assert "sources[0].points[0].type" in joined and "float33" in joined
    assert len(errs) == 4, errs
    # each error names its line
    assert all(e.startswith("site.yaml:") and e.split(":")[1].isdigit() for e in errs)


def test_point_tag_must_exist() -> None:
    errs = errors(BASE.replace("{tag: GT-101, table", "{tag: GT-110, table"))
    assert any("sources[0].points[0].tag: unknown tag 'GT-110'" in e and "did you mean 'GT-101'" in e for e in errs)


def test_duplicate_ids_and_duplicate_yaml_keys() -> None:
    text = BASE.replace("  - {id: wang, name: Wang}", "  - {id: wang, name: Wang}\n  - {id: wang, name: W2}")
    assert any("people[1].id: duplicate id 'wang'" in e for e in errors(text))
    text = BASE.replace('  name: "Demo"', '  name: "Demo"\n  name: "Again"')
    assert any("duplicate key 'name'" in e for e in errors(text))


def test_a_tag_bound_twice_is_an_error() -> None:
    text = BASE.replace(
        "      - {tag: GT-101, table: holding, address: 0, type: float32}",
        "      - {tag: GT-101, table: holding, address: 0, type: float32}\n"
        "      - {tag: GT-101, table: holding, address: 2, type: float32}",
    )
    assert any("already bound at sources[0].points[0].tag" in e for e in errors(text))


def test_limits_must_be_ordered() -> None:
    errs = errors(BASE.replace("h: {limit: 1.0", "h: {limit: 3.0"))
    assert any("limits must rise" in e and "h=3.0" in e for e in errs), errs


def test_env_interpolation_and_missing_variable() -> None:
    text = BASE + "influx:\n  url: http://127.0.0.1:${INFLUX_PORT:-8086}\n  bucket: b\n  token: ${INFLUX_TOKEN}\n"
    errs = errors(text)
    assert errs == ["site.yaml:29: influx.token: environment variable INFLUX_TOKEN is not set"]
    r = validate_text(text, "site.yaml", {"INFLUX_TOKEN": "s3cret", "INFLUX_PORT": "9999"})
    assert r.config is not None and r.config.influx is not None
    assert r.config.influx.url == "http://127.0.0.1:9999"
    assert r.config.influx.token is not None and r.config.influx.token.get_secret_value() == "s3cret"
    # secrets never print
    assert "s3cret" not in repr(r.config) and "s3cret" not in str(r.config.influx)


def test_modbus_bit_address_keeps_its_text() -> None:
    text = BASE.replace(
        "      - {tag: GT-101, table: holding, address: 0, type: float32}",
        "      - {tag: GT-101, table: holding, address: 0, type: float32}\n"
        "      - {tag: XV-1, table: holding, address: 40.10, type: bool}",
    ) + "  - {id: XV-1, kind: discrete}\n"
    r = validate_text(text, "site.yaml", {})
    assert r.config is not None, r.format_errors()
    p = r.config.sources[0].points[1]
    assert (p.register, p.bit) == (40, 10)


def test_mqtt_source_validation() -> None:
    text = BASE + "  - {id: PT-201, kind: pressure, unit: MPa}\n"
    text = text.replace(
        "tags:\n",
        textwrap.dedent(
            """\
              - id: m
                type: mqtt
                url: mqtt://127.0.0.1:1883
                subscriptions:
                  - {topic: "plant/#/x", format: json, points: [{tag: PT-201, path: $.p}]}
                  - {topic: "plant/bulk", format: native}
            tags:
            """
        ),
        1,
    )
    errs = errors(text)
    assert len(errs) == 1 and "invalid topic filter 'plant/#/x'" in errs[0], errs
    # a wildcard level feeding a point must be named and matched (issue 18), or declared single-publisher
    unbound = validate_text(text.replace("plant/#/x", "plant/+/x"), "s.yaml", {})
    assert unbound.config is None and any("single_publisher: true" in p.message for p in unbound.errors)
    bound = text.replace('"plant/#/x", format: json, points: [{tag: PT-201, path: $.p}]',
                         '"plant/{dev}/x", format: json, points: [{tag: PT-201, path: $.p, match: {dev: a}}]')
    ok = validate_text(bound, "s.yaml", {})
    assert ok.config is not None, ok.format_errors()
    assert isinstance(ok.config.sources[1], MqttSource)


def test_yaml_syntax_error_and_non_mapping() -> None:
    errs = errors("site: [unclosed\n")
    assert len(errs) == 1 and "YAML syntax error" in errs[0]
    assert "must be a YAML mapping" in errors("- a\n- b\n")[0]


def test_load_config_raises_with_all_problems(tmp_path: Path) -> None:
    p = tmp_path / "bad.yaml"
    p.write_text(BASE.replace("grade: 2", "grade: 7").replace("port: 5020", "port: 0"))
    with pytest.raises(ConfigError) as ei:
        load_config(p, env={})
    assert "2 config error(s)" in str(ei.value)


def test_cli_check_exit_codes(tmp_path: Path) -> None:
    good = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "-c", str(DEMO)], capture_output=True, text=True, cwd=ROOT
    )
    assert good.returncode == 0, good.stderr
    assert "OK" in good.stdout
    bad = tmp_path / "bad.yaml"
    bad.write_text(BASE.replace("kind: toxic_gas", "kind: toxic"))
    r = subprocess.run(
        [sys.executable, "-m", "gateway.cli", "check", "-c", str(bad)], capture_output=True, text=True, cwd=ROOT
    )
    assert r.returncode == 2
    assert f"{bad}:19: tags[0].kind" in r.stderr


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("5s", 5.0), ("1m", 60.0), ("1m30s", 90.0), ("2h", 7200.0), ("30d", 2592000.0), (3, 3.0),
     ("0s", 0.0), ("1.5s", 1.5)],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("bad", ["", "5 parsecs", "-1s", "1x", "nan", True, "s5"])
def test_bad_durations(bad: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(bad)


def test_sizes() -> None:
    assert parse_size("512MiB") == 512 * 1024**2
    assert parse_size("2GB") == 2 * 10**9
    assert parse_size(1024) == 1024
    with pytest.raises(ValueError):
        parse_size("lots")


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_config_checker_never_crashes_on_arbitrary_text(text: str) -> None:
    r = validate_text(text, "fuzz.yaml", {})
    assert r.config is None or r.errors == []


@settings(max_examples=100, deadline=None)
@given(st.data())
def test_config_checker_survives_mutated_demo(data: st.DataObject) -> None:
    lines = DEMO.read_text().splitlines()
    i = data.draw(st.integers(0, len(lines) - 1))
    lines[i] = data.draw(st.sampled_from(["", "  x: 1", "- 3", lines[i][::-1], lines[i] + " ]", "tags: 5"]))
    r = validate_text("\n".join(lines), "demo.yaml", {})
    assert r.config is not None or all(p.message for p in r.errors)


def test_source_map_lines() -> None:
    data, smap, issues = load_yaml("a:\n  b:\n    - 1\n    - {c: 2}\n", {})
    assert issues == []
    assert data == {"a": {"b": [1, {"c": 2}]}}
    assert smap.line_of(("a", "b", 1, "c")) == 4
    assert smap.line_of(("a", "b", 0)) == 3


def test_adapter_level_problems_are_config_errors() -> None:
    # a 4-20 mA point needs its tag's range to map counts to engineering units
    text = BASE.replace(
        "      - {tag: GT-101, table: holding, address: 0, type: float32}",
        "      - {tag: GT-101, table: holding, address: 0, type: float32}\n"
        "      - {tag: LT-1, table: input, address: 10, type: uint16, current_loop: {raw_4ma: 6400, raw_20ma: 32000}}",
    ) + "  - {id: LT-1, kind: level, unit: '%'}\n"
    errs = errors(text)
    assert len(errs) == 1 and errs[0].startswith("site.yaml:9: sources[0]: source gds-1:") and "range" in errs[0], errs


def test_a_zero_backoff_is_refused_where_it_would_retry_in_a_tight_loop() -> None:
    text = BASE.replace("    timeout: 500ms\n", "    timeout: 500ms\n    backoff_max: 0s\n")
    assert any("sources[0].backoff_max" in e and "greater than 0" in e for e in errors(text)), errors(text)
    influx = BASE + "influx: {url: http://127.0.0.1:8086, bucket: b, backoff_max: 0}\n"
    assert any("influx.backoff_max" in e and "greater than 0" in e for e in errors(influx)), errors(influx)
