"""Building Modbus sources: bus sharing, config checks, metrics per registry, sample config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from pydantic import TypeAdapter, ValidationError

from adapters.modbus.build import build_modbus_sources, check_modbus_sources
from adapters.modbus.config import ModbusRtuSource, ModbusTcpSource
from adapters.modbus.metrics import modbus_metrics
from adapters.modbus.transport import parse_socket_url, transport_spec
from gateway.config import AnySource
from gateway.core.config import Tag
from gateway.core.metrics import Metrics
from gateway.core.sources import SourceContext

SAMPLE = Path(__file__).resolve().parent.parent / "adapters" / "modbus" / "sample.yaml"
POINTS = [{"tag": "T1", "address": 0}]


def tcp(sid: str, **kw: Any) -> ModbusTcpSource:
    return ModbusTcpSource.model_validate({"id": sid, "type": "modbus_tcp", "host": "10.0.0.5", "points": POINTS, **kw})


def rtu(sid: str, **kw: Any) -> ModbusRtuSource:
    return ModbusRtuSource.model_validate(
        {"id": sid, "type": "modbus_rtu", "port": "/dev/ttyUSB0", "points": POINTS, **kw}
    )


async def _emit(batch: object) -> None:
    del batch


def ctx(metrics: Metrics | None = None, tags: dict[str, Tag] | None = None) -> SourceContext:
    return SourceContext(emit=_emit, metrics=metrics or Metrics(), tags=tags or {})


def test_sources_sharing_a_transport_share_one_bus() -> None:
    sources = [
        tcp("a", port=502, device_id=1),
        rtu("b", port="socket://10.0.0.9:4001", device_id=1),
        tcp("c", port=502, device_id=2),
        rtu("d", device_id=3),
        tcp("e", port=4001, host="10.0.0.9", framer="rtu", device_id=2),  # same device server as b
        rtu("f", device_id=4),
        tcp("g", port=503),
    ]
    adapters = build_modbus_sources(sources, ctx())
    assert [a.id for a in adapters] == list("abcdefg")
    bus = {a.id: a.bus for a in adapters}  # type: ignore[attr-defined]
    assert bus["a"] is bus["c"]
    assert bus["b"] is bus["e"]
    assert bus["d"] is bus["f"]
    assert len({id(b) for b in bus.values()}) == 4
    assert bus["b"].key == "tcp://10.0.0.9:4001" and bus["d"].key == "serial:///dev/ttyUSB0"
    assert adapters[3].health()["device"]["key"] == "serial:///dev/ttyUSB0/3"


def test_contradicting_settings_on_one_transport_are_rejected() -> None:
    with pytest.raises(ValueError, match="disagree"):
        build_modbus_sources([rtu("a", baudrate=9600), rtu("b", baudrate=19200)], ctx())
    with pytest.raises(ValueError, match="disagree"):
        build_modbus_sources([tcp("a", port=502), tcp("b", port=502, framer="rtu")], ctx())
    problems = check_modbus_sources([rtu("a", parity="E"), rtu("b", parity="N")], {})
    assert len(problems) == 1 and "disagree" in problems[0]


def test_check_reports_problems_that_need_the_tag_table() -> None:
    src = tcp(
        "a",
        points=[
            {"tag": "GT", "address": 0, "current_loop": {"raw_4ma": 0, "raw_20ma": 4095}},
            {"tag": "PT", "address": 1, "fault": "GT"},
        ],
    )
    problems = check_modbus_sources([src], {})
    assert any("GT" in p and "has no range" in p for p in problems)
    assert any("fault point 'GT' must be type bool" in p for p in problems)
    fixed = src.model_copy(update={"points": src.points[:1]})
    assert check_modbus_sources([fixed], {"GT": Tag(id="GT", range=(0, 1))}) == []


def test_metrics_are_created_once_per_registry() -> None:
    m1, m2 = Metrics(), Metrics()
    build_modbus_sources([tcp("a")], ctx(m1))
    build_modbus_sources([tcp("a")], ctx(m1))  # a reload on the same registry must not fail
    build_modbus_sources([tcp("a")], ctx(m2))
    assert modbus_metrics(m1) is modbus_metrics(m1)
    assert modbus_metrics(m1) is not modbus_metrics(m2)
    names = {m.name for m in m1.registry.collect()}
    assert {
        "hazardgw_modbus_poll_lateness_seconds",
        "hazardgw_modbus_polls_late",
        "hazardgw_modbus_requests",
        "hazardgw_modbus_exceptions",
    } <= names


def test_config_rules_for_modbus_points() -> None:
    with pytest.raises(ValidationError, match="leave scale/offset"):
        tcp("a", points=[{"tag": "X", "address": 0, "scale": 0.1, "current_loop": {"raw_4ma": 0, "raw_20ma": 1}}])
    with pytest.raises(ValidationError, match="more than max_registers=8"):
        tcp("a", max_registers=8, points=[{"tag": "X", "address": 0, "type": "string", "length": 10}])
    with pytest.raises(ValidationError, match="socket://host:port"):
        rtu("a", port="socket://device-server")
    with pytest.raises(ValidationError, match=r"port 1\.\.65535"):
        rtu("a", port="socket://10.0.0.1:70000")
    assert parse_socket_url("socket://[fe80::1]:4001") == ("fe80::1", 4001)
    assert transport_spec(rtu("a", port="socket://10.0.0.1:4001")).framer == "rtu"
    assert transport_spec(rtu("a", baudrate=9600)).min_frame_gap() == pytest.approx(3.5 * 10 / 9600)
    assert transport_spec(rtu("a", baudrate=115200)).min_frame_gap() == 0.00175


def test_sample_config_validates_and_builds() -> None:
    data = yaml.safe_load(SAMPLE.read_text(encoding="utf-8"))
    sources = [TypeAdapter(AnySource).validate_python(s) for s in data["sources"]]
    tags = {t["id"]: Tag.model_validate(t) for t in data["tags"]}
    modbus = [s for s in sources if isinstance(s, ModbusTcpSource | ModbusRtuSource)]
    assert len(modbus) == len(sources) >= 3
    assert check_modbus_sources(modbus, tags) == []
    adapters = build_modbus_sources(modbus, ctx(tags=tags))
    assert len(adapters) == len(modbus)
    assert all(isinstance(a.health()["requests"], list) for a in adapters)
