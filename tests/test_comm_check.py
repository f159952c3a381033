"""``hazardgw check``: no tag of a hazard source may lose monitoring without an alarm."""

from __future__ import annotations

import textwrap

from gateway.validate import validate_text

HEAD = """\
site: {code: S, name: S}
hazard_sources: [{code: HS-001, name: Tank farm, grade: 2}]
"""

MQTT = """\
sources:
  - id: wireless
    type: mqtt
    url: mqtt://10.0.0.9
    subscriptions:
      - topic: "w/#"
        single_publisher: true
        points:
          - {tag: PT-1, path: "$.p"}
          - {tag: PT-2, path: "$.p2"}
          - {tag: GT-1, path: "$.g"}
"""


def check(text: str) -> list[str]:
    r = validate_text(textwrap.dedent(text), "site.yaml", env={})
    return [f"{p.line}: {p.message}" for p in r.errors]


def test_mqtt_tags_without_stale_after_are_uncovered_errors_naming_tag_and_fix() -> None:
    errors = check(HEAD + MQTT + """\
tags:
  - {id: PT-1, kind: pressure, unit: MPa, hazard_source: HS-001}
  - {id: PT-2, kind: pressure, unit: MPa, hazard_source: HS-001, stale_after: 30s}
  - {id: GT-1, kind: combustible_gas, gas: CH4, unit: "%LEL", hazard_source: HS-001}
  - {id: PT-9, kind: pressure, unit: MPa}
""")
    assert len(errors) == 2, errors
    pt1, gt1 = errors
    assert pt1.startswith("15: ") and "tag 'PT-1' of hazard source HS-001 can lose monitoring without an alarm" in pt1
    assert "wireless" in pt1 and "Fix: set stale_after on the tag" in pt1
    # a gas detector's implicit STALE alarm cannot see the loss either without a stale limit
    assert gt1.startswith("17: ") and "'GT-1'" in gt1


def test_comm_alarms_off_need_own_bad_or_stale_alarms() -> None:
    modbus = """\
sources:
  - {id: dcs, type: modbus_tcp, host: 10.0.0.5, points: [{tag: PT-1, address: 0}, {tag: GT-1, address: 1},
     {tag: PT-2, address: 2}]}
alarming: {comm: {enabled: false}}
tags:
  - {id: PT-1, kind: pressure, unit: MPa, hazard_source: HS-001}
  - {id: GT-1, kind: combustible_gas, gas: CH4, unit: "%LEL", range: [0, 100], hazard_source: HS-001}
  - {id: PT-2, kind: pressure, unit: MPa, hazard_source: HS-001, alarms: {bad: {}}}
"""
    errors = check(HEAD + modbus)
    assert len(errors) == 1 and "'PT-1'" in errors[0] and "alarming.comm" in errors[0], errors
    # with COMM alarms on (the default) the device's COMM alarm covers all three
    assert check(HEAD + modbus.replace("alarming: {comm: {enabled: false}}\n", "")) == []


def test_unbound_tags_join_the_one_native_feed_and_otherwise_need_a_stale_alarm() -> None:
    native = """\
sources:
  - id: bulk
    type: mqtt
    url: mqtt://10.0.0.9
    subscriptions: [{topic: bulk, format: native}]
tags:
  - {id: TT-1, kind: temperature, unit: °C, hazard_source: HS-001, stale_after: 30s}
"""
    assert check(HEAD + native) == []
    two = native.replace("tags:\n", """\
  - id: bulk2
    type: mqtt
    url: mqtt://10.0.0.8
    subscriptions: [{topic: bulk, format: native}]
tags:
""")
    errors = check(HEAD + two)
    assert len(errors) == 1 and "bound to no source point" in errors[0], errors
    assert check(HEAD + two.replace("stale_after: 30s}", "stale_after: 30s, alarms: {stale: {}}}")) == []
