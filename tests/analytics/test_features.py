"""Signal features on signals whose answers are known in closed form."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.analytics.features import (
    SignalError,
    band_energies,
    bandpass,
    envelope_spectra,
    envelope_spectrum,
    frame,
    impulsive_band,
    order_spectrum_db,
    spectrum,
    time_features,
)

RATE = 12_000.0
N = 12_000  # 1 s: 1 Hz bins


# Whole periods of 4k samples: the samples hit the sine's peaks, and 4f < rate.
PEAK_HITTING = [f for f in range(5, 3000) if 3000 % f == 0]


@given(amp=st.floats(0.01, 100.0), freq=st.sampled_from(PEAK_HITTING))
@settings(max_examples=30, deadline=None)
def test_sine_statistics_and_spectrum(amp: float, freq: int) -> None:
    t = np.arange(N) / RATE
    x = amp * np.sin(2 * np.pi * freq * t)
    f = time_features(x)
    assert f.rms[0] == pytest.approx(amp / np.sqrt(2), rel=1e-6)
    assert f.crest[0] == pytest.approx(np.sqrt(2), rel=1e-3)
    assert f.kurtosis[0] == pytest.approx(1.5, rel=1e-3)  # a sine is flat-topped, not impulsive
    freqs, a = spectrum(x, RATE)
    assert freqs[np.argmax(a[0])] == freq
    assert a[0].max() == pytest.approx(amp, rel=1e-3)


@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.floats(1.0, 5999.0), max_size=6))
@settings(max_examples=30, deadline=None)
def test_band_energies_add_up_to_the_mean_square(seed: int, cuts: list[float]) -> None:
    x = np.random.default_rng(seed).standard_normal((3, 1000))
    edges = np.unique(np.r_[0.0, cuts, RATE / 2 + 1e-6])
    e = band_energies(x, RATE, edges)
    assert e.shape == (3, edges.size - 1)
    np.testing.assert_allclose(e.sum(axis=1), np.mean((x - 0) ** 2, axis=1), rtol=1e-9)


def test_band_energy_lands_in_the_band_of_the_tone() -> None:
    t = np.arange(N) / RATE
    x = np.sin(2 * np.pi * 1234 * t)
    e = band_energies(x, RATE, np.array([0, 1000, 2000, 6000.1]))[0]
    assert e[1] == pytest.approx(0.5, rel=1e-6) and e[0] < 1e-12 and e[2] < 1e-12


def test_gaussian_noise_kurtosis_is_three_and_impulses_raise_it() -> None:
    rng = np.random.default_rng(0)
    noise = rng.standard_normal((4, 50_000))
    assert time_features(noise).kurtosis == pytest.approx(3.0, abs=0.15)
    spiky = noise.copy()
    spiky[:, ::500] += 15.0
    assert np.all(time_features(spiky).kurtosis > 6.0)


def _impacts(rate_hz: float, every_hz: float, ring_hz: float, seconds: float = 1.0) -> np.ndarray:
    """Decaying rings at ``ring_hz`` every 1/every_hz s, plus noise: a bearing defect in brief."""
    n = int(rate_hz * seconds)
    x = np.zeros(n)
    x[(np.arange(0, seconds, 1 / every_hz) * rate_hz).astype(int)] = 1.0
    tt = np.arange(int(0.01 * rate_hz)) / rate_hz
    ring = np.exp(-600 * tt) * np.sin(2 * np.pi * ring_hz * tt)
    return np.convolve(x, ring)[:n] * 5 + 0.3 * np.random.default_rng(1).standard_normal(n)


def test_envelope_spectrum_finds_the_impact_rate_and_sk_finds_the_resonance() -> None:
    x = _impacts(RATE, 97.0, 3500.0)
    low, high = impulsive_band(x, RATE)
    assert low < 3500 < high
    freqs, env = envelope_spectrum(x, RATE)
    band = (freqs > 20) & (freqs < 400)
    assert freqs[band][np.argmax(env[0, band])] == pytest.approx(97.0, abs=1.0)
    # The FFT-masked multi-band version agrees on where the peak is.
    f2, env2 = envelope_spectra(x, RATE, [(low, high)])
    assert f2[band][np.argmax(env2[0, 0, band])] == pytest.approx(97.0, abs=1.0)


def test_frame_is_a_view_of_windows() -> None:
    x = np.arange(100.0)
    w = frame(x, 20, 10)
    assert w.shape == (9, 20) and w[1, 0] == 10 and np.shares_memory(w, x)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: time_features(np.r_[np.zeros(20), np.nan]),
            "non-finite value at window 0, sample 20",
        ),
        (lambda: time_features(np.zeros(5)), "at least 16 samples"),
        (lambda: spectrum(np.zeros(32), -1.0), "sample rate -1.0"),
        (lambda: bandpass(np.zeros(64), RATE, (100, 7000)), "Nyquist"),
        (lambda: band_energies(np.zeros(64), RATE, np.array([5, 1])), "strictly increasing"),
        (lambda: frame(np.zeros(10), 20), "shorter than one window"),
    ],
)
def test_bad_input_is_named(call, message: str) -> None:
    with pytest.raises(SignalError, match=message):
        call()


@given(shaft=st.floats(10.0, 60.0), order=st.floats(6.1, 11.5))  # harmonics beyond 12
@settings(max_examples=15, deadline=None)
def test_order_spectrum_puts_the_peak_at_its_order(shaft: float, order: float) -> None:
    # Impacts at `order` × shaft speed: the order spectrum peaks there, whatever the speed.
    x = _impacts(RATE, order * shaft, 3000.0, seconds=2.0)
    freqs, env = envelope_spectra(x, RATE, [(2000.0, 4000.0)])
    grid, db = order_spectrum_db(freqs, env, shaft)
    assert db.shape == (1, grid.size) and grid[0] == 0.5 and grid[-1] == pytest.approx(12.0)
    assert grid[np.argmax(db[0])] == pytest.approx(order, abs=0.05 + 0.6 / shaft)
    assert db[0].max() > 15.0


def test_order_spectrum_needs_enough_orders() -> None:
    freqs, env = envelope_spectra(
        np.random.default_rng(0).standard_normal(1200), RATE, [(100, 2000)]
    )
    with pytest.raises(SignalError, match="need 12"):
        order_spectrum_db(freqs, env, 1000.0)
