"""Cutting force, tool wear, spindle and energy models of the virtual machine."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from machinetwin.machine import load_machine_config
from machinetwin.machine.physics import (
    BREAKAGE_SPIKE_GAIN,
    MATERIALS,
    VB_LIMIT,
    CuttingModel,
    EnergyMeter,
    SpindleModel,
    SpindleThermal,
    feed_per_tooth,
    material,
    mean_chip_thickness,
    rate_limit,
)

CONFIG = load_machine_config()
DT = 1.0 / CONFIG.servo_rate_hz


def times(n: int, t0: float = 0.0) -> np.ndarray:
    return t0 + np.arange(n) * DT


def full(n: int, value: float) -> np.ndarray:
    return np.full(n, float(value))


def cut(
    model: CuttingModel,
    mrr: float,
    ap: float = 2.0,
    ae: float = 5.0,
    fz: float = 0.05,
    rpm: float = 8000.0,
    tool: int = 1,
    n: int = 100,
    t0: float = 0.0,
):
    return model.forces(
        times(n, t0), full(n, mrr), full(n, ap), full(n, ae), full(n, fz), full(n, rpm), tool
    )


# --- Kienzle ---------------------------------------------------------------------


def test_slot_mean_chip_is_two_over_pi_of_feed_per_tooth() -> None:
    h = mean_chip_thickness(np.array([0.1]), np.array([10.0]), 10.0)
    assert h[0] == pytest.approx(0.2 / np.pi)


@settings(max_examples=60, deadline=None)
@given(
    ap=st.floats(0.2, 10.0),
    ae_share=st.floats(0.05, 1.0),
    fz=st.floats(0.01, 0.3),
    rpm=st.floats(500.0, 12000.0),
    name=st.sampled_from(sorted(MATERIALS)),
)
def test_power_equals_kienzle_force_per_tooth_chain(
    ap: float, ae_share: float, fz: float, rpm: float, name: str
) -> None:
    """P = z_e · kc1.1 · b · hm^(1−mc) · vc when the removal rate is ap·ae·vf."""
    tool = CONFIG.tool(1)
    assert tool is not None
    ae = ae_share * tool.diameter
    mrr = ap * ae * fz * tool.flutes * rpm / 60.0
    out = cut(CuttingModel(CONFIG, name), mrr, ap, ae, fz, rpm, n=1)
    m = material(name)
    phi = np.arccos(1.0 - 2.0 * ae / tool.diameter)
    hm = max(fz * (1.0 - np.cos(phi)) / phi, 0.002)
    fc_tooth = m.kc11 * ap * hm ** (1.0 - m.mc)
    vc = np.pi * tool.diameter * rpm / 60.0 * 1e-3  # m/s
    expected = tool.flutes * phi / (2.0 * np.pi) * fc_tooth * vc
    assert out.power[0] == pytest.approx(expected, rel=1e-3)
    assert out.tooth_force[0] == pytest.approx(fc_tooth, rel=1e-3)


def test_harder_materials_need_more_power() -> None:
    power = {name: cut(CuttingModel(CONFIG, name), 500.0, n=1).power[0] for name in MATERIALS}
    assert power["Al6061"] < power["Ti6Al4V"] < power["C45"]


def test_unknown_material_is_named() -> None:
    with pytest.raises(KeyError, match="Inconel"):
        CuttingModel(CONFIG, "Inconel")


def test_air_cut_and_unknown_tool_give_no_force() -> None:
    model = CuttingModel(CONFIG)
    assert not cut(model, 0.0).force.any()
    assert not cut(model, 500.0, tool=99).force.any()


def test_feed_per_tooth_is_zero_when_the_spindle_stands() -> None:
    fz = feed_per_tooth(np.array([600.0, 600.0]), np.array([0.0, 1000.0]), 3)
    assert fz.tolist() == [0.0, pytest.approx(0.2)]


# --- spindle power ---------------------------------------------------------------


def spindle_power(mrr: float, wear: float = 0.0, rpm: float = 6000.0) -> float:
    model = CuttingModel(CONFIG)
    model.set_wear(1, wear)
    spindle = SpindleModel(CONFIG)
    n = 4000  # 3 s ramp to 6000 rpm at 2000 rpm/s, then steady
    speed = spindle.follow(full(n, rpm))
    out = model.forces(times(n), full(n, mrr), full(n, 2.0), full(n, 5.0), full(n, 0.05), speed, 1)
    return float(spindle.load(speed, out.torque).power[-1])


@settings(max_examples=40, deadline=None)
@given(mrr=st.floats(0.0, 5000.0), extra=st.floats(10.0, 5000.0))
def test_spindle_power_rises_with_removal_rate(mrr: float, extra: float) -> None:
    assert spindle_power(mrr + extra) > spindle_power(mrr)


@settings(max_examples=40, deadline=None)
@given(wear=st.floats(0.0, 0.5), extra=st.floats(0.01, 0.3))
def test_spindle_power_rises_with_tool_wear(wear: float, extra: float) -> None:
    assert spindle_power(800.0, wear + extra) > spindle_power(800.0, wear)


def test_idle_spindle_draws_only_losses_and_load_is_percent_of_rated() -> None:
    spindle = SpindleModel(CONFIG)
    speed = spindle.follow(full(7000, 12000.0))
    out = spindle.load(speed, np.zeros(7000))
    assert 500.0 < out.power[-1] < 2000.0
    assert out.load[-1] == pytest.approx(100.0 * 1200.0 / CONFIG.spindle.rated_power)


def test_speed_follows_the_command_at_the_acceleration_limit() -> None:
    spindle = SpindleModel(CONFIG)
    speed = spindle.follow(full(4000, 6000.0))
    ramp_s = 6000.0 / CONFIG.spindle.acceleration
    assert speed[int(ramp_s / DT) - 1] == pytest.approx(6000.0)
    assert speed[999] == pytest.approx(CONFIG.spindle.acceleration * 1.0)
    assert np.abs(np.diff(speed)).max() <= CONFIG.spindle.acceleration * DT + 1e-9


def reference_rate_limit(cmd: np.ndarray, y: float, step: float) -> np.ndarray:
    out = np.empty(len(cmd))
    for k, c in enumerate(cmd):  # the per-sample definition, as a reference
        y = y + min(max(c - y, -step), step)
        out[k] = y
    return out


@settings(max_examples=80, deadline=None)
@given(
    levels=st.lists(st.floats(-12000.0, 12000.0), min_size=1, max_size=6),
    lengths=st.lists(st.integers(1, 400), min_size=6, max_size=6),
    slope=st.floats(-3.0, 3.0),
    y0=st.floats(-12000.0, 12000.0),
)
def test_rate_limit_matches_the_per_sample_definition(
    levels: list[float], lengths: list[int], slope: float, y0: float
) -> None:
    cmd = np.concatenate([np.full(n, v) for v, n in zip(levels, lengths, strict=False)])
    cmd = cmd + slope * np.arange(len(cmd))  # ramps slower and faster than the limit
    np.testing.assert_allclose(
        rate_limit(cmd, y0, 2.0), reference_rate_limit(cmd, y0, 2.0), atol=1e-6
    )


# --- temperature -----------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(share=st.floats(0.05, 1.5), blocks=st.integers(1, 30))
def test_temperature_follows_the_first_order_closed_form(share: float, blocks: int) -> None:
    thermal = SpindleThermal(CONFIG, DT)
    s = CONFIG.spindle
    power = share * s.rated_power
    temps = np.concatenate([thermal.step(full(20_000, power)) for _ in range(blocks)])
    t = (np.arange(len(temps)) + 1) * DT
    expected = s.ambient_temp + s.temp_rise_at_rated_power * share * (
        1.0 - np.exp(-t / s.thermal_time_constant)
    )
    np.testing.assert_allclose(temps, expected, rtol=1e-9, atol=1e-9)


def test_temperature_settles_at_ambient_plus_rise() -> None:
    thermal = SpindleThermal(CONFIG, 1.0)  # 1 s steps: ten time constants quickly
    s = CONFIG.spindle
    temps = thermal.step(full(int(10 * s.thermal_time_constant), s.rated_power))
    assert temps[-1] == pytest.approx(s.ambient_temp + s.temp_rise_at_rated_power, abs=1e-2)
    cooled = thermal.step(np.zeros(int(10 * s.thermal_time_constant)))
    assert cooled[-1] == pytest.approx(s.ambient_temp, abs=1e-2)


def test_coolant_failure_heats_the_spindle_faster() -> None:
    temps = []
    for failure in (False, True):
        spindle = SpindleModel(CONFIG)
        spindle.coolant_failure = failure
        speed = spindle.follow(full(60_000, 8000.0))
        temps.append(spindle.load(speed, full(60_000, 10.0)).temp[-1])
    assert temps[1] > temps[0] > CONFIG.spindle.ambient_temp


# --- energy ----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(
    sizes=st.lists(st.integers(0, 500), min_size=1, max_size=6),
    coolant=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
def test_energy_is_the_integral_of_power(sizes: list[int], coolant: bool, seed: int) -> None:
    rng = np.random.default_rng(seed)
    meter = EnergyMeter(CONFIG)
    powers, energies = [], []
    for n in sizes:
        p, e = meter.step(rng.uniform(0, 15000, n), rng.uniform(0, 2000, (n, 3)), coolant)
        powers.append(p)
        energies.append(e)
    power, energy = np.concatenate(powers), np.concatenate(energies)
    np.testing.assert_allclose(energy, np.cumsum(power) * DT, rtol=1e-12)
    assert meter.energy == pytest.approx(power.sum() * DT)
    assert np.all(power >= 600.0)  # auxiliaries are on whenever the machine is


# --- tool wear -------------------------------------------------------------------


def test_wear_grows_only_while_cutting_and_persists_per_tool() -> None:
    model = CuttingModel(CONFIG)
    first = cut(model, 500.0, n=1000)
    assert np.all(np.diff(first.wear) > 0)
    idle = cut(model, 0.0, n=1000, t0=1.0)
    assert np.all(idle.wear == first.wear[-1])
    cut(model, 500.0, tool=2, n=1000)  # another tool wears on its own
    assert model.wear(1) == first.wear[-1]


@settings(max_examples=30, deadline=None)
@given(
    rpm=st.floats(1000.0, 6000.0),
    faster=st.floats(1.1, 2.0),
    name=st.sampled_from(sorted(MATERIALS)),
)
def test_wear_is_faster_at_higher_cutting_speed(rpm: float, faster: float, name: str) -> None:
    slow = cut(CuttingModel(CONFIG, name), 500.0, rpm=rpm).wear[-1]
    fast = cut(CuttingModel(CONFIG, name), 500.0, rpm=rpm * faster).wear[-1]
    assert fast > slow > 0


def test_tool_reaches_the_wear_limit_at_the_taylor_tool_life() -> None:
    model = CuttingModel(CONFIG, "C45")
    tool = CONFIG.tool(1)
    assert tool is not None
    vc = 150.0  # m/min
    rpm = vc * 1000.0 / (np.pi * tool.diameter)
    life_s = (model.material.taylor_c / vc) ** (1.0 / model.material.taylor_n) * 60.0
    n = 1000
    for block in range(int(life_s)):  # slotting, 1 s blocks
        out = cut(model, 100.0, ae=tool.diameter, rpm=rpm, n=n, t0=float(block))
    assert out.wear[-1] == pytest.approx(VB_LIMIT * int(life_s) / life_s, rel=1e-6)


def test_accelerated_wear_and_coolant_failure_multiply_the_rate() -> None:
    base = cut(CuttingModel(CONFIG), 500.0).wear[-1]
    fast = CuttingModel(CONFIG)
    fast.wear_rate_factor = 10.0
    dry = CuttingModel(CONFIG)
    dry.coolant_failure = True
    assert cut(fast, 500.0).wear[-1] == pytest.approx(10.0 * base)
    assert cut(dry, 500.0).wear[-1] > 2.0 * base


# --- tool breakage ---------------------------------------------------------------


def test_breakage_spikes_the_load_then_cutting_stops_with_an_alarm() -> None:
    model = CuttingModel(CONFIG)
    healthy = cut(model, 500.0, n=1000).force[0]
    model.break_tool(1, at=1.5)
    out = cut(model, 500.0, n=1000, t0=1.0)
    t = times(1000, 1.0)
    assert np.allclose(out.force[t < 1.5], healthy, rtol=0.01)
    spike = (t >= 1.5) & (t < 1.55)
    assert out.force[spike].min() > 0.99 * BREAKAGE_SPIKE_GAIN * healthy
    assert not out.force[t >= 1.55].any()
    assert out.broken.tolist() == (t >= 1.55).tolist()
    later = cut(model, 500.0, n=100, t0=2.0)
    assert later.broken.all() and not later.force.any()
    assert np.all(later.wear == out.wear[-1])  # a missing edge does not wear
    model.replace_tool(1)
    fresh = cut(model, 500.0, n=100, t0=3.0)
    assert not fresh.broken.any() and fresh.force[0] > 0


def test_breakage_waits_for_the_tool_to_cut() -> None:
    model = CuttingModel(CONFIG)
    model.break_tool(1, at=0.0)
    assert not cut(model, 0.0, n=500).broken.any()
    out = cut(model, 500.0, n=500, t0=0.5)
    assert out.force[0] > cut(CuttingModel(CONFIG), 500.0, n=1).force[0] * 3


# --- blocks ----------------------------------------------------------------------


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(1, 1999), max_size=5))
@example(cuts=[301, 302])  # a one-sample block as the cut starts
def test_block_size_does_not_change_the_result(cuts: list[int]) -> None:
    n = 2000
    t = times(n)
    rpm_cmd = np.where(t < 1.0, 3000.0, 1000.0)
    mrr = np.where((t > 0.3) & (t < 1.5), 800.0, 0.0)

    def run(bounds: list[int]) -> np.ndarray:
        spindle, model = SpindleModel(CONFIG), CuttingModel(CONFIG)
        model.break_tool(1, at=1.2)
        rows = []
        for a, b in zip(bounds[:-1], bounds[1:], strict=True):
            speed = spindle.follow(rpm_cmd[a:b])
            c = model.forces(
                t[a:b], mrr[a:b], full(b - a, 2.0), full(b - a, 4.0), full(b - a, 0.05), speed, 1
            )
            s = spindle.load(speed, c.torque)
            rows.append(np.column_stack([speed, c.force, c.wear, c.broken, s.power, s.temp]))
        return np.concatenate(rows)

    whole = run([0, n])
    split = run([0, *sorted(set(cuts)), n])
    np.testing.assert_allclose(split, whole, rtol=1e-12, atol=1e-12)
