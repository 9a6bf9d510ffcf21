"""Axis servo loops: following error, backlash, encoder noise, drive load."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.machine import load_machine_config
from machinetwin.machine.servo import DAMPING, DEFAULT_DRIVES, VELOCITY_FEEDFORWARD, ServoAxes, play

CONFIG = load_machine_config()
DT = 1.0 / CONFIG.servo_rate_hz
START = (300.0, 200.0, -300.0)
OMEGA = 2.0 * np.pi * CONFIG.axes["x"].servo_bandwidth_hz


def x_moves(x: np.ndarray) -> np.ndarray:
    """Commands moving X only, Y and Z held at the start."""
    return np.column_stack([x, np.full(len(x), START[1]), np.full(len(x), START[2])])


def ramp(speed: float, n: int, rest: int = 100) -> np.ndarray:
    """X at rest, then at constant ``speed`` (mm/s), for n samples in total."""
    k = np.maximum(np.arange(n) - rest, 0)
    return START[0] + speed * k * DT


def trapezoid(accel: float, speed: float, n: int) -> np.ndarray:
    """X accelerating at ``accel`` (mm/s²) up to ``speed``."""
    t = np.arange(n) * DT
    t_acc = speed / accel
    return START[0] + np.where(
        t < t_acc, 0.5 * accel * t * t, 0.5 * accel * t_acc**2 + speed * (t - t_acc)
    )


def test_holding_still_gives_no_error_and_no_x_load() -> None:
    out = ServoAxes(CONFIG, start=START).step(x_moves(np.full(500, START[0])))
    assert np.abs(out.ferr).max() < 1e-9
    assert out.load[:, 0].max() < 1e-6
    z = DEFAULT_DRIVES["z"]
    assert out.load[0, 2] == pytest.approx(
        100.0 * z.moving_mass * 9.81 * (1 - z.counterbalance) / z.rated_force
    )


@settings(max_examples=40, deadline=None)
@given(speed=st.floats(1.0, 500.0))
def test_following_error_at_constant_speed_is_the_velocity_lag(speed: float) -> None:
    out = ServoAxes(CONFIG, start=START).step(x_moves(ramp(speed, 1000)))
    expected = (1.0 - VELOCITY_FEEDFORWARD) * 2.0 * DAMPING / OMEGA * speed
    assert out.ferr[-1, 0] == pytest.approx(expected, rel=1e-3)


@settings(max_examples=40, deadline=None)
@given(speed=st.floats(1.0, 400.0), factor=st.floats(1.1, 5.0))
def test_following_error_grows_with_speed(speed: float, factor: float) -> None:
    slow = ServoAxes(CONFIG, start=START).step(x_moves(ramp(speed, 800)))
    fast = ServoAxes(CONFIG, start=START).step(x_moves(ramp(min(speed * factor, 500.0), 800)))
    assert np.abs(fast.ferr[:, 0]).max() > np.abs(slow.ferr[:, 0]).max()


@settings(max_examples=40, deadline=None)
@given(accel=st.floats(100.0, 2500.0), factor=st.floats(1.2, 4.0))
def test_following_error_and_load_grow_with_acceleration(accel: float, factor: float) -> None:
    """Same final speed, reached faster: more error and more drive load while accelerating."""
    runs = [
        ServoAxes(CONFIG, start=START).step(x_moves(trapezoid(a, 200.0, 600)))
        for a in (accel, min(accel * factor, 3000.0))
    ]
    assert np.abs(runs[1].ferr[:, 0]).max() > np.abs(runs[0].ferr[:, 0]).max()
    assert runs[1].load[:, 0].max() > runs[0].load[:, 0].max()


def test_acceleration_load_matches_mass_times_acceleration() -> None:
    x = DEFAULT_DRIVES["x"]
    out = ServoAxes(CONFIG, start=START).step(x_moves(trapezoid(3000.0, 500.0, 400)))
    # Settled acceleration phase (velocity still well below 500 mm/s at 0.1 s).
    force = out.force[100, 0]
    friction = x.coulomb_friction * np.tanh(300.0 / 0.5) + x.viscous_friction * 0.3
    assert force == pytest.approx(x.moving_mass * 3.0 + friction, rel=0.05)


def test_feed_force_loads_the_axes_along_the_path() -> None:
    n = 500
    t = np.arange(n) * DT
    cmd = np.column_stack(
        [START[0] + 30.0 * t, START[1] + 40.0 * t, np.full(n, START[2])]
    )  # 50 mm/s at 3:4
    plain = ServoAxes(CONFIG, start=START).step(cmd)
    cutting = ServoAxes(CONFIG, start=START).step(cmd, np.full(n, 500.0))
    extra = cutting.force[-1] - plain.force[-1]
    np.testing.assert_allclose(extra, [300.0, 400.0, 0.0], atol=1e-6)
    assert np.all(cutting.power[-1, :2] > plain.power[-1, :2])


def reference_play(x: np.ndarray, y: float, h: float) -> np.ndarray:
    out = np.empty(len(x))
    for k, v in enumerate(x):  # the per-sample definition, as a reference
        y = min(max(y, v - h), v + h)
        out[k] = y
    return out


@settings(max_examples=80, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    gap=st.floats(0.001, 0.5),
    y0=st.floats(-1.0, 1.0),
)
def test_play_matches_the_per_sample_definition(seed: int, gap: float, y0: float) -> None:
    x = np.cumsum(np.random.default_rng(seed).normal(0.0, 0.05, 800))
    np.testing.assert_allclose(play(x, y0, gap / 2), reference_play(x, y0, gap / 2), atol=1e-12)


@settings(max_examples=30, deadline=None)
@given(backlash=st.floats(0.002, 0.1), speed=st.floats(2.0, 100.0))
def test_backlash_shows_as_a_step_in_following_error_at_reversals(
    backlash: float, speed: float
) -> None:
    """Forward then back at constant speed: the table lags the motor by half the gap,
    on the other side after the reversal, so the error steps by the full backlash."""
    n = 1200
    k = np.arange(n)
    x = START[0] + speed * DT * np.where(k < 600, np.maximum(k - 100, 0), 1100 - k)
    clean = ServoAxes(CONFIG, start=START)
    worn = ServoAxes(CONFIG, start=START)
    worn.backlash[0] = backlash
    diff = worn.step(x_moves(x)).ferr[:, 0] - clean.step(x_moves(x)).ferr[:, 0]
    assert diff[550] == pytest.approx(backlash / 2, rel=1e-6)  # moving forward
    assert diff[1150] == pytest.approx(-backlash / 2, rel=1e-6)  # moving back
    assert np.abs(diff[:100]).max() < 1e-9  # nothing before the first motion


@settings(max_examples=20, deadline=None)
@given(std=st.floats(1e-4, 0.01), seed=st.integers(0, 2**32 - 1))
def test_encoder_noise_is_seeded(std: float, seed: int) -> None:
    def run(s: int) -> np.ndarray:
        axes = ServoAxes(CONFIG, np.random.default_rng(s), start=START)
        axes.encoder_noise[:] = std
        return axes.step(x_moves(np.full(2000, START[0]))).ferr

    a, b, c = run(seed), run(seed), run(seed + 1)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.std() == pytest.approx(std, rel=0.1)


def test_following_error_limit_is_flagged() -> None:
    jump = np.full(200, START[0] + 50.0)  # a step the trajectory planner would never send
    out = ServoAxes(CONFIG, start=START).step(x_moves(jump))
    assert out.over_limit[0, 0] and not out.over_limit[:, 1:].any()
    assert not out.over_limit[-1, 0]


@settings(max_examples=30, deadline=None)
@given(cuts=st.lists(st.integers(1, 1499), max_size=6), backlash=st.floats(0.0, 0.05))
def test_block_size_does_not_change_the_result(cuts: list[int], backlash: float) -> None:
    n = 1500
    t = np.arange(n) * DT
    cmd = np.column_stack(
        [START[0] + 20 * np.sin(3 * t), START[1] + 5 * t * t, START[2] - 10 * np.sin(7 * t)]
    )
    feed = np.full(n, 200.0)

    def run(bounds: list[int]) -> np.ndarray:
        axes = ServoAxes(CONFIG, start=START)
        axes.backlash[:] = backlash
        parts = [
            axes.step(cmd[a:b], feed[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ]
        return np.concatenate([np.hstack([p.pos, p.ferr, p.load, p.power]) for p in parts])

    np.testing.assert_allclose(run([0, *sorted(set(cuts)), n]), run([0, n]), rtol=1e-9, atol=1e-9)
