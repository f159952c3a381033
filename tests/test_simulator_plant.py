"""The plant model and its scenarios, without servers (values for explicit times)."""

from __future__ import annotations

import logging
import struct
from pathlib import Path

import pytest

from adapters.mqtt.spec import MQTT
from devkit.simulator import FaultPoint
from devkit.simulator.modbus import ModbusPlantServer
from devkit.simulator.mqtt import MqttPublisher
from devkit.simulator.plant import Plant
from devkit.simulator.scenarios import SCENARIOS, ramp
from devkit.simulator.signals import normal_band
from gateway.cli import main
from gateway.config import Config
from gateway.validate import load_config

DEMO = Path(__file__).resolve().parents[1] / "config" / "demo-site.yaml"
WALL = 1_732_300_000.0


@pytest.fixture(scope="module")
def demo() -> Config:
    return load_config(DEMO, env={})


def trace(plant: Plant, tag: str, seconds: int) -> list[float]:
    out = []
    for t in range(seconds):
        v = plant.values_at(float(t), WALL + t).values[tag]
        assert v is not None
        out.append(v)
    return out


def test_scenarios_listed() -> None:
    assert {"normal", "chlorine-leak", "lpg-leak", "pressure-excursion", "sensor-fault"} <= set(SCENARIOS)


def test_ramp_profile() -> None:
    assert ramp(5, 10, 60, 90, 60, 300) == 0.0
    assert ramp(40, 10, 60, 90, 60, 300) == pytest.approx(0.5)
    assert ramp(100, 10, 60, 90, 60, 300) == 1.0
    assert ramp(190, 10, 60, 90, 60, 300) == pytest.approx(0.5)
    assert ramp(230, 10, 60, 90, 60, 300) == 0.0
    assert ramp(340, 10, 60, 90, 60, 300) == pytest.approx(0.5)  # repeats


def test_normal_keeps_every_analog_inside_its_band(demo: Config) -> None:
    plant = Plant(demo, "normal", seed=3)
    for t in range(0, 3600, 7):
        frame = plant.values_at(float(t), WALL + t)
        for tag in demo.tags:
            v = frame.values[tag.id]
            assert v is not None
            if tag.kind == "discrete":
                assert v == 0.0, tag.id
            elif tag.kind in ("toxic_gas", "combustible_gas"):
                assert tag.alarms.h is not None and 0 <= v < tag.alarms.h.limit, (tag.id, t, v)
            else:
                lo, hi = normal_band(tag)
                assert lo < v < hi, (tag.id, t, v)


def test_same_seed_same_values(demo: Config) -> None:
    a = trace(Plant(demo, "normal", seed=5), "PT-101", 50)
    b = trace(Plant(demo, "normal", seed=5), "PT-101", 50)
    c = trace(Plant(demo, "normal", seed=6), "PT-101", 50)
    assert a == b and a != c


def test_chlorine_leak_ramps_through_h_and_hh_and_returns(demo: Config) -> None:
    plant = Plant(demo, "chlorine-leak")
    gt101 = trace(plant, "GT-101", 300)
    assert max(gt101[:10]) < 1.0  # quiet before the leak
    first_h = next(i for i, v in enumerate(gt101) if v >= 1.0)
    first_hh = next(i for i, v in enumerate(gt101) if v >= 2.0)
    assert 10 < first_h < first_hh < 80
    assert max(gt101) <= 20.0  # within the detector's range
    assert gt101[-1] < 1.0  # leak isolated: back to normal before the next cycle
    neighbour = trace(Plant(demo, "chlorine-leak"), "GT-102", 300)
    assert 1.0 <= max(neighbour) < max(gt101)
    # the LPG side is not affected
    assert max(trace(Plant(demo, "chlorine-leak"), "GT-201", 300)) < 20


def test_lpg_leak_crosses_both_lel_levels(demo: Config) -> None:
    gt201 = trace(Plant(demo, "lpg-leak"), "GT-201", 300)
    assert max(gt201[:10]) < 20 and max(gt201) >= 40 and max(gt201) <= 100


def test_pressure_excursion(demo: Config) -> None:
    pt = trace(Plant(demo, "pressure-excursion"), "PT-101", 240)
    assert pt[0] < 1.0 and max(pt) > 1.2


def test_sensor_fault_sets_a_fault_point_and_silences_a_detector(demo: Config) -> None:
    plant = Plant(demo, "sensor-fault")
    before = plant.values_at(5.0, WALL)
    assert before.values["GT-101.FAULT"] == 0.0 and not before.effects.silent_tags
    after = plant.values_at(30.0, WALL + 30)
    assert after.values["GT-101.FAULT"] == 1.0
    assert after.effects.silent_tags == {"GT-207"}


def test_unknown_scenario_is_a_clear_error(demo: Config) -> None:
    with pytest.raises(ValueError, match="unknown scenario 'meteor'"):
        Plant(demo, "meteor")


# --------------------------------------------------------------------------- the simulator hook


def test_devices_come_from_each_source_types_simulator_module(demo: Config) -> None:
    plant = Plant(demo, "normal")
    by_module = {g.module.__name__: [c.id for c in g.configs] for g in plant.groups}
    assert by_module == {
        "devkit.simulator.modbus": [s.id for s in demo.sources if s.type.startswith("modbus")],
        "devkit.simulator.mqtt": [s.id for s in demo.sources if s.type == "mqtt"],
    }
    # the traits: the Modbus detectors' fault points, the MQTT tags that can go silent alone
    assert plant.traits.fault_points["GT-101.FAULT"] == FaultPoint("GT-101", True)
    assert "GT-207" in plant.traits.silenceable_tags and "GT-101" not in plant.traits.silenceable_tags
    devices = plant.build_devices()  # no I/O before start()
    assert [type(d).__name__ for d in devices] == ["ModbusPlantServer", "MqttPublisher"]
    modbus, mqtt = devices
    assert isinstance(modbus, ModbusPlantServer) and isinstance(mqtt, MqttPublisher)
    assert modbus.has_tag("GT-101") and not modbus.has_tag("GT-207")
    assert {f.source.id for f in mqtt.feeds} == set(by_module["devkit.simulator.mqtt"])


async def test_a_frame_shown_to_the_modbus_server_sets_values_and_silences(demo: Config) -> None:
    plant = Plant(demo, "normal")
    (server,) = [d for d in plant.build_devices() if isinstance(d, ModbusPlantServer)]
    frame = plant.values_at(0.0, WALL)
    frame.values["GT-101"] = 7.5
    frame.effects.silent_sources.add("gds-1")
    await server.show(frame, 0)
    key = next(k for k, v in server.status().items() if "gds-1" in v["sources"])
    assert server.status()[key]["silent"] is True
    raw = server.register_values("gds-1", "holding", 0, 2)
    assert struct.unpack(">f", struct.pack(">HH", *raw))[0] == pytest.approx(7.5)
    await server.show(plant.values_at(1.0, WALL + 1), 0)
    assert server.status()[key]["silent"] is False


def test_a_source_type_without_a_simulator_is_logged_once_and_skipped(
    demo: Config, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(MQTT, "simulator", None)
    with caplog.at_level(logging.WARNING, logger="devkit.simulator.plant"):
        plant = Plant(demo, "sensor-fault")
        devices = plant.build_devices()
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1, warnings
    assert "source type mqtt cannot be simulated (its spec names no simulator module)" in warnings[0]
    assert [type(d).__name__ for d in devices] == ["ModbusPlantServer"]
    # every tag still gets a value; with no device able to leave out a single tag, the
    # sensor-fault scenario silences the last simulated source as a whole
    assert set(plant.values_at(0.0, WALL).values) == {t.id for t in demo.tags}
    modbus_ids = [s.id for s in demo.sources if s.enabled and s.type.startswith("modbus")]
    assert plant.values_at(30.0, WALL + 30).effects.silent_sources == {modbus_ids[-1]}


def test_a_simulator_module_that_is_not_installed_is_skipped(
    demo: Config, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(MQTT, "simulator", "devkit.simulator.no_such_type")
    with caplog.at_level(logging.WARNING, logger="devkit.simulator.plant"):
        plant = Plant(demo, "normal")
    assert "its simulator module devkit.simulator.no_such_type is not installed" in caplog.text
    assert [g.module.__name__ for g in plant.groups] == ["devkit.simulator.modbus"]


def test_a_simulator_module_without_the_contract_is_a_clear_error(
    demo: Config, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(MQTT, "simulator", "devkit.simulator.signals")
    with pytest.raises(TypeError, match=r"devkit.simulator.signals lacks traits\(\), build\(\)"):
        Plant(demo, "normal")


def test_simulate_refuses_an_unknown_scenario(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "-c", str(DEMO), "--scenario", "meteor"]) == 2
    err = capsys.readouterr().err
    assert "unknown scenario 'meteor'; known: chlorine-leak, lpg-leak, normal" in err
