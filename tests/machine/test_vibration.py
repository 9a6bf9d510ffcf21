"""Spindle vibration waveforms: bearing defect frequencies, envelope spectra, chatter."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.io import loadmat
from scipy.signal import butter, hilbert, sosfiltfilt

from machinetwin.errors import ConfigError
from machinetwin.machine import load_machine_config
from machinetwin.machine.vibration import (
    StructuralMode,
    VibrationFaults,
    VibrationModel,
    bearing_orders,
    grown_severity,
    orders_of,
    stability_limit,
)

CONFIG = load_machine_config()
ORDERS = orders_of(CONFIG.spindle.bearing)
CWRU = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "cwru-12k-de"


def model(seed: int = 1, rate_hz: float = 25_600.0) -> VibrationModel:
    return VibrationModel(CONFIG, np.random.default_rng(seed), rate_hz=rate_hz)


def envelope_peak(
    x: np.ndarray,
    rate: float,
    band: tuple[float, float] = (3000.0, 5000.0),
    search: tuple[float, float] = (50.0, 400.0),
) -> tuple[float, float]:
    """Frequency and height of the top envelope-spectrum line in ``search`` (Hz).

    The classic bearing diagnosis: band-pass around the structural resonance the
    impacts ring, Hilbert envelope, then the spectrum of the envelope (Hann window,
    zero-padded 4× so that a line between two bins is not halved by scalloping).
    """
    sos = butter(4, band, btype="bandpass", fs=rate, output="sos")
    env = np.abs(hilbert(sosfiltfilt(sos, x)))
    n = 4 * len(env)
    spectrum = np.abs(np.fft.rfft((env - env.mean()) * np.hanning(len(env)), n)) / len(env)
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    inside = (freqs >= search[0]) & (freqs <= search[1])
    k = int(np.argmax(spectrum[inside]))
    return float(freqs[inside][k]), float(spectrum[inside][k])


def line(x: np.ndarray, rate: float, freq: float) -> float:
    """Amplitude of the spectral line nearest ``freq``."""
    spectrum = np.abs(np.fft.rfft(x)) * 2.0 / len(x)
    return float(spectrum[int(round(freq * len(x) / rate))])


# --- bearing kinematics -----------------------------------------------------------


def test_skf_6205_defect_orders() -> None:
    o = bearing_orders(9, 7.94, 39.04, 0.0)
    assert o.bpfo == pytest.approx(3.585, abs=1e-3)
    assert o.bpfi == pytest.approx(5.415, abs=1e-3)
    assert o.bsf == pytest.approx(2.357, abs=1e-3)
    assert o.ftf == pytest.approx(0.3983, abs=1e-4)
    assert o == ORDERS  # the default machine's front bearing


@settings(max_examples=50, deadline=None)
@given(
    balls=st.integers(5, 30),
    d=st.floats(2.0, 30.0),
    ratio=st.floats(2.5, 10.0),
    angle=st.floats(0.0, 40.0),
)
def test_defect_orders_obey_the_bearing_identities(
    balls: int, d: float, ratio: float, angle: float
) -> None:
    o = bearing_orders(balls, d, d * ratio, angle)
    assert o.bpfo + o.bpfi == pytest.approx(balls)
    assert o.bpfo == pytest.approx(balls * o.ftf)
    assert o.bpfo < balls / 2 < o.bpfi


def test_fault_severity_grows_from_onset() -> None:
    assert grown_severity(10.0, onset=20.0, initial=0.1, doubling_time=3600.0) == 0.0
    assert grown_severity(
        20.0 + 7200.0, onset=20.0, initial=0.1, doubling_time=3600.0
    ) == pytest.approx(0.4)


# --- envelope spectra -------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(
    rpm=st.floats(1000.0, 4000.0),
    severity=st.floats(0.2, 3.0),
    seed=st.integers(0, 2**32 - 1),
    tooth_force=st.floats(0.0, 300.0),
)
def test_outer_race_defect_shows_at_bpfo_in_the_envelope_spectrum(
    rpm: float, severity: float, seed: int, tooth_force: float
) -> None:
    vm = model(seed)
    x = vm.waveform(0.0, 1.0, rpm, tooth_force, 3, VibrationFaults(outer_race=severity))
    freq, _ = envelope_peak(x, vm.rate_hz)
    assert freq == pytest.approx(ORDERS.bpfo * rpm / 60.0, rel=0.02)


@settings(max_examples=25, deadline=None)
@given(
    rpm=st.floats(1000.0, 4000.0),
    severity=st.floats(0.2, 3.0),
    seed=st.integers(0, 2**32 - 1),
    rate=st.sampled_from([12_800.0, 25_600.0]),
)
def test_inner_race_defect_shows_at_bpfi_in_the_envelope_spectrum(
    rpm: float, severity: float, seed: int, rate: float
) -> None:
    vm = model(seed, rate)
    x = vm.waveform(5.0, 1.0, rpm, 50.0, 3, VibrationFaults(inner_race=severity))
    freq, _ = envelope_peak(x, vm.rate_hz)
    assert freq == pytest.approx(ORDERS.bpfi * rpm / 60.0, rel=0.02)


def test_inner_race_impacts_are_modulated_at_shaft_speed() -> None:
    vm = model()
    rpm = 1800.0
    x = vm.waveform(0.0, 2.0, rpm, faults=VibrationFaults(inner_race=1.0))
    sos = butter(4, (3000.0, 5000.0), btype="bandpass", fs=vm.rate_hz, output="sos")
    env = np.abs(hilbert(sosfiltfilt(sos, x)))
    fr, bpfi = rpm / 60.0, ORDERS.bpfi * rpm / 60.0
    side = line(env, vm.rate_hz, bpfi + fr)
    assert side > 5 * line(env, vm.rate_hz, bpfi + 0.5 * fr)  # a real sideband, not noise


def test_ball_defect_shows_at_twice_bsf() -> None:
    vm = model()
    rpm = 1800.0
    x = vm.waveform(0.0, 2.0, rpm, faults=VibrationFaults(ball=1.0))
    freq, _ = envelope_peak(x, vm.rate_hz)
    assert freq == pytest.approx(2 * ORDERS.bsf * rpm / 60.0, rel=0.02)


def test_healthy_bearing_has_no_bpfo_line() -> None:
    rpm = 1800.0
    bpfo = ORDERS.bpfo * rpm / 60.0
    healthy = model().waveform(0.0, 1.0, rpm)
    faulty = model().waveform(0.0, 1.0, rpm, faults=VibrationFaults(outer_race=0.2))
    window = (bpfo - 2.0, bpfo + 2.0)
    _, h = envelope_peak(healthy, 25_600.0, search=window)
    _, f = envelope_peak(faulty, 25_600.0, search=window)
    assert f > 20 * h


@pytest.mark.skipif(not CWRU.exists(), reason="shared CWRU data not present")
@pytest.mark.parametrize(
    ("name", "order"), [("OR007@6_0.mat", ORDERS.bpfo), ("IR007_0.mat", ORDERS.bpfi)]
)
def test_model_and_real_cwru_bearing_agree(name: str, order: float) -> None:
    """The same analysis finds the defect line in the real recording and in the model,
    and the model's level is of the recording's order of magnitude."""
    data = loadmat(CWRU / name)
    signal = next(v for k, v in data.items() if k.endswith("DE_time")).ravel()[:12_000] * 9.81
    rpm = float(next(v for k, v in data.items() if k.endswith("RPM")).ravel()[0])
    freq, _ = envelope_peak(signal, 12_000.0, band=(2500.0, 5000.0))
    assert freq == pytest.approx(order * rpm / 60.0, rel=0.02)
    kind = "outer_race" if order == ORDERS.bpfo else "inner_race"
    sim = VibrationModel(CONFIG, np.random.default_rng(3), rate_hz=12_000.0).waveform(
        0.0, 1.0, rpm, faults=VibrationFaults(**{kind: 1.0})
    )
    assert freq == pytest.approx(envelope_peak(sim, 12_000.0)[0], rel=0.02)
    assert 0.2 < sim.std() / signal.std() < 5.0


# --- determinism ------------------------------------------------------------------


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), t0=st.floats(0.0, 1e5))
def test_same_seed_same_waveform_and_other_seeds_differ(seed: int, t0: float) -> None:
    faults = VibrationFaults(outer_race=0.5, inner_race=0.3, ball=0.2, unbalance=2.0)
    kwargs = dict(depth_of_cut=6.0, kc=900.0, teeth_in_cut=1.5)
    a = model(seed).waveform(t0, 0.25, 9000.0, 120.0, 3, faults, **kwargs)
    b = model(seed).waveform(t0, 0.25, 9000.0, 120.0, 3, faults, **kwargs)
    c = model(seed + 1).waveform(t0, 0.25, 9000.0, 120.0, 3, faults, **kwargs)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len(a) == 6400


# --- spindle and tooth-passing lines ----------------------------------------------


@settings(max_examples=20, deadline=None)
@given(rpm=st.integers(40, 100).map(lambda k: 60.0 * k), unbalance=st.floats(2.0, 10.0))
def test_unbalance_line_grows_with_speed_squared(rpm: float, unbalance: float) -> None:
    faults = VibrationFaults(unbalance=unbalance)
    slow = line(model().waveform(0.0, 2.0, rpm, faults=faults), 25_600.0, rpm / 60.0)
    fast = line(model().waveform(0.0, 2.0, 2 * rpm, faults=faults), 25_600.0, 2 * rpm / 60.0)
    assert fast / slow == pytest.approx(4.0, rel=0.05)
    base = line(model().waveform(0.0, 2.0, 2 * rpm), 25_600.0, 2 * rpm / 60.0)
    assert fast / base == pytest.approx(unbalance, rel=0.05)


def test_tooth_passing_line_is_proportional_to_tooth_force() -> None:
    rpm, flutes = 6000.0, 3
    ftp = flutes * rpm / 60.0
    light = line(model().waveform(0.0, 1.0, rpm, 50.0, flutes), 25_600.0, ftp)
    heavy = line(model().waveform(0.0, 1.0, rpm, 150.0, flutes), 25_600.0, ftp)
    assert heavy / light == pytest.approx(3.0, rel=0.02)


# --- chatter ----------------------------------------------------------------------


def test_lobe_minimum_is_the_absolute_stability_limit() -> None:
    """Between lobes the limit rises; its floor is 2kζ(1+ζ) / (kc·N_c)."""
    mode = StructuralMode()
    kc, teeth = 900.0, 1.5
    limits = np.array(
        [stability_limit(r, 3, kc, teeth, mode)[0] for r in np.linspace(2000, 12000, 800)]
    )
    floor = 2 * mode.stiffness * mode.damping * (1 + mode.damping) / (kc * teeth)
    assert limits.min() >= floor * 0.999
    assert limits.min() == pytest.approx(floor, rel=0.02)
    assert limits.max() > 2 * floor  # lobes, not a flat line


@settings(max_examples=20, deadline=None)
@given(rpm=st.floats(3000.0, 12000.0), seed=st.integers(0, 2**32 - 1))
def test_chatter_appears_only_above_the_stability_limit(rpm: float, seed: int) -> None:
    vm = model(seed)
    kc, teeth, flutes = 900.0, 1.5, 3
    limit, fc = vm.stability_limit(rpm, flutes, kc, teeth)
    assert 1200.0 < fc < 2000.0

    def band_rms(ap: float) -> float:
        x = vm.waveform(0.0, 1.0, rpm, 100.0, flutes, depth_of_cut=ap, kc=kc, teeth_in_cut=teeth)
        sos = butter(4, (fc - 40.0, fc + 40.0), btype="bandpass", fs=vm.rate_hz, output="sos")
        return float(sosfiltfilt(sos, x)[len(x) // 2 :].std())

    stable, chatter = band_rms(0.8 * limit), band_rms(1.5 * limit)
    assert chatter > 10 * stable


def test_rate_outside_the_supported_range_is_rejected() -> None:
    with pytest.raises(ConfigError, match="rate_hz"):
        model(rate_hz=5000.0)
    assert len(model(rate_hz=12_800.0).waveform(0.0, 0.5, 3000.0)) == 6400
    assert len(model().waveform(0.0, 0.0, 3000.0, faults=VibrationFaults(outer_race=1.0))) == 0
