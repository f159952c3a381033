"""The plant model and its scenarios, without servers (values for explicit times)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gateway.config import Config
from gateway.simulator.plant import Plant
from gateway.simulator.scenarios import SCENARIOS, ramp
from gateway.simulator.signals import normal_band
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
