"""Vibration features over batches of windows.

Every function takes windows as a 2-D array ``(n_windows, n_samples)`` (a 1-D
signal counts as one window) and returns one value or one row per window, so a
hub worker can score a whole batch with one call and no Python loop per sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy.ndimage import median_filter
from scipy.signal import butter, hilbert, sosfiltfilt, stft

from ..errors import MachinetwinError


class SignalError(MachinetwinError, ValueError):
    """A signal that cannot be analysed (empty, non-finite, too short, bad rate)."""


def as_windows(signal: np.ndarray, name: str = "signal") -> np.ndarray:
    """``signal`` as a float 2-D array of windows, checked for shape and finiteness."""
    x = np.asarray(signal, dtype=float)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] < 16:
        raise SignalError(f"{name}: need windows of at least 16 samples, got shape {x.shape}")
    if not np.isfinite(x).all():
        bad = np.argwhere(~np.isfinite(x))[0]
        raise SignalError(f"{name}: non-finite value at window {bad[0]}, sample {bad[1]}")
    return x


def check_rate(rate_hz: float) -> float:
    if not np.isfinite(rate_hz) or rate_hz <= 0:
        raise SignalError(f"sample rate {rate_hz!r} Hz: must be a positive number")
    return float(rate_hz)


def frame(signal: np.ndarray, size: int, step: int | None = None) -> np.ndarray:
    """Cut a 1-D signal into windows of ``size`` samples every ``step`` (default: no overlap).

    A view, not a copy; a trailing part shorter than ``size`` is dropped.
    """
    x = np.asarray(signal, dtype=float).ravel()
    step = step or size
    if size < 16 or step < 1:
        raise SignalError(f"frame: size={size} must be ≥ 16 and step={step} ≥ 1")
    if x.size < size:
        raise SignalError(f"frame: signal of {x.size} samples is shorter than one window ({size})")
    return sliding_window_view(x, size)[::step]


@dataclass(frozen=True, slots=True)
class TimeFeatures:
    """Statistics of each window (arrays of length n_windows)."""

    rms: np.ndarray
    peak: np.ndarray
    crest: np.ndarray
    kurtosis: np.ndarray  # Pearson (3 for a Gaussian): impacts raise it
    skewness: np.ndarray

    def matrix(self) -> np.ndarray:
        return np.column_stack([self.rms, self.peak, self.crest, self.kurtosis, self.skewness])


def time_features(windows: np.ndarray) -> TimeFeatures:
    """RMS, peak, crest factor, kurtosis and skewness of each window (mean removed)."""
    x = as_windows(windows)
    x = x - x.mean(axis=1, keepdims=True)
    var = np.mean(x * x, axis=1)
    rms = np.sqrt(var)
    peak = np.max(np.abs(x), axis=1)
    safe = np.where(var > 0, var, 1.0)
    return TimeFeatures(
        rms=rms,
        peak=peak,
        crest=np.where(rms > 0, peak / np.where(rms > 0, rms, 1.0), 0.0),
        kurtosis=np.where(var > 0, np.mean(x**4, axis=1) / safe**2, 0.0),
        skewness=np.where(var > 0, np.mean(x**3, axis=1) / safe**1.5, 0.0),
    )


def spectrum(windows: np.ndarray, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """One-sided amplitude spectrum of each window (Hann window, amplitude-corrected).

    Returns ``(freqs, amplitude)`` with amplitude of shape ``(n_windows, n_freqs)``;
    a sine of amplitude A on a bin reads A.
    """
    x = as_windows(windows)
    rate = check_rate(rate_hz)
    n = x.shape[1]
    w = np.hanning(n)
    spec = np.abs(np.fft.rfft((x - x.mean(axis=1, keepdims=True)) * w, axis=1))
    return np.fft.rfftfreq(n, 1.0 / rate), spec * (2.0 / w.sum())


def band_energies(windows: np.ndarray, rate_hz: float, edges_hz: np.ndarray) -> np.ndarray:
    """Signal energy (mean square) in each band ``[edges[i], edges[i+1])``: shape (n, bands).

    Bands add up to the window's mean square (Parseval) when they cover 0…Nyquist.
    """
    x = as_windows(windows)
    rate = check_rate(rate_hz)
    edges = np.asarray(edges_hz, dtype=float)
    if edges.ndim != 1 or edges.size < 2 or np.any(np.diff(edges) <= 0):
        raise SignalError(f"band edges {edges_hz!r}: need ≥ 2 strictly increasing values")
    n = x.shape[1]
    power = np.abs(np.fft.rfft(x, axis=1)) ** 2 / n**2
    power[:, 1 : (n + 1) // 2] *= 2.0  # fold negative frequencies (not DC, not Nyquist)
    freqs = np.fft.rfftfreq(n, 1.0 / rate)
    idx = np.searchsorted(edges, freqs, side="right") - 1
    inside = (idx >= 0) & (idx < edges.size - 1)
    out = np.zeros((x.shape[0], edges.size - 1))
    # Sum the bins of each band at once: add the columns grouped by band index.
    np.add.at(out.T, idx[inside], power[:, inside].T)
    return out


def bandpass(windows: np.ndarray, rate_hz: float, band_hz: tuple[float, float]) -> np.ndarray:
    """Zero-phase 4th-order Butterworth band-pass of each window."""
    x = as_windows(windows)
    rate = check_rate(rate_hz)
    low, high = band_hz
    nyq = rate / 2.0
    if not 0 < low < high < nyq:
        raise SignalError(f"band {band_hz} Hz: need 0 < low < high < Nyquist ({nyq:g} Hz)")
    sos = butter(4, [low, high], btype="bandpass", fs=rate, output="sos")
    return sosfiltfilt(sos, x, axis=1)


def spectral_kurtosis(
    windows: np.ndarray, rate_hz: float, nperseg: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Spectral kurtosis per frequency (STFT estimator): ``<|X|⁴>/<|X|²>² − 2``.

    High where the signal is impulsive, i.e. where bearing impacts ring a
    resonance; ≈ 0 for stationary Gaussian noise and negative for pure tones.
    Returns ``(freqs, sk)`` with sk of shape ``(n_windows, n_freqs)``. Frames must be
    shorter than the gap between impacts, or every frame holds one and the signal
    looks stationary: the default is ~2 ms (32 samples at 12 kHz), short enough
    for impacts up to ~400 Hz.
    """
    x = as_windows(windows)
    rate = check_rate(rate_hz)
    nperseg = nperseg or int(2 ** np.ceil(np.log2(0.002 * rate)))
    freqs, _, z = stft(x, fs=rate, nperseg=nperseg, noverlap=nperseg * 3 // 4, axis=-1)
    p = np.abs(z) ** 2  # (n, freqs, frames)
    m2 = p.mean(axis=-1)
    m4 = (p * p).mean(axis=-1)
    sk = np.where(m2 > 0, m4 / np.where(m2 > 0, m2, 1.0) ** 2 - 2.0, 0.0)
    return freqs, sk


def impulsive_band(
    windows: np.ndarray, rate_hz: float, width_hz: float | None = None, floor_hz: float = 500.0
) -> tuple[float, float]:
    """The band where the windows are most impulsive (max of mean spectral kurtosis).

    A fixed-width band (default Nyquist/4) centred on the smoothed SK maximum,
    kept above ``floor_hz`` where shaft harmonics and tooth passing dominate.
    One band for the whole batch: the windows of a batch share their resonance.
    """
    rate = check_rate(rate_hz)
    nyq = rate / 2.0
    width = width_hz or nyq / 4.0
    freqs, sk = spectral_kurtosis(windows, rate)
    mean_sk = np.convolve(sk.mean(axis=0), np.ones(5) / 5.0, mode="same")
    usable = (freqs >= floor_hz + width / 2) & (freqs <= nyq * 0.95 - width / 2)
    if not usable.any():
        raise SignalError(
            f"band width {width:g} Hz does not fit between {floor_hz:g} Hz and Nyquist"
        )
    centre = float(freqs[usable][np.argmax(mean_sk[usable])])
    return centre - width / 2.0, centre + width / 2.0


def envelope_spectrum(
    windows: np.ndarray, rate_hz: float, band_hz: tuple[float, float] | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Amplitude spectrum of the envelope of the band-passed signal, per window.

    Band-pass around the resonance that bearing impacts excite, take the Hilbert
    envelope, remove its mean, and transform: impacts at a defect frequency show
    as a peak there and at its harmonics. ``band_hz=None`` picks the band by
    spectral kurtosis (:func:`impulsive_band`).
    """
    x = as_windows(windows)
    rate = check_rate(rate_hz)
    band = band_hz or impulsive_band(x, rate)
    env = np.abs(hilbert(bandpass(x, rate, band), axis=1))
    return spectrum(env, rate)


def envelope_spectra(
    windows: np.ndarray, rate_hz: float, bands_hz: list[tuple[float, float]]
) -> tuple[np.ndarray, np.ndarray]:
    """Envelope spectra of each window in several bands at once: shape (n, bands, freqs).

    Each band's analytic signal comes from one FFT of the window: keep the band's
    positive frequencies (doubled), inverse-transform, take the magnitude. That is
    an ideal band-pass followed by a Hilbert transform, for the cost of one
    inverse FFT per band instead of a filter and a Hilbert transform each — what
    lets the diagnosis search many bands for the one where impacts show best.
    """
    x = as_windows(windows)
    rate = check_rate(rate_hz)
    n = x.shape[1]
    spec = np.fft.fft(x - x.mean(axis=1, keepdims=True), axis=1)
    freqs = np.fft.fftfreq(n, 1.0 / rate)
    hann = np.hanning(n)
    out = np.empty((x.shape[0], len(bands_hz), n // 2 + 1))
    for j, (low, high) in enumerate(bands_hz):
        if not 0 <= low < high <= rate / 2.0:
            raise SignalError(f"band ({low}, {high}) Hz: need 0 ≤ low < high ≤ Nyquist")
        keep = (freqs >= low) & (freqs < high)
        analytic = np.zeros_like(spec)
        analytic[:, keep] = 2.0 * spec[:, keep]
        env = np.abs(np.fft.ifft(analytic, axis=1))
        env -= env.mean(axis=1, keepdims=True)
        out[:, j] = np.abs(np.fft.rfft(env * hann, axis=1)) * (2.0 / hann.sum())
    return np.fft.rfftfreq(n, 1.0 / rate), out


def order_spectrum_db(
    freqs: np.ndarray,
    spectra: np.ndarray,
    shaft_hz: float,
    max_order: float = 12.0,
    step: float = 0.05,
    floor_orders: float = 0.8,
) -> tuple[np.ndarray, np.ndarray]:
    """Spectra in dB above their running median, resampled onto a grid of shaft orders.

    ``spectra`` is (n, bands, freqs) as from :func:`envelope_spectra`; each bin is
    compared with the median of the surrounding ``floor_orders`` (the local noise
    floor), the best band is kept per bin, and each grid cell takes the highest bin
    within ±step/2. Peak heights over the floor at fixed orders do not depend on the
    signal's level or on the shaft speed — what a model needs to carry over to
    another defect size or machine. Returns ``(orders, db)`` with db (n, grid).
    """
    if not np.isfinite(shaft_hz) or shaft_hz <= 0:
        raise SignalError(f"shaft speed {shaft_hz!r} Hz: must be positive")
    df = freqs[1] - freqs[0]
    width = max(3, int(round(floor_orders * shaft_hz / df)) | 1)  # odd, ≥ 3 bins
    grid = np.arange(0.5, max_order + step / 2, step)
    orders = freqs / shaft_hz
    if orders[-1] < grid[-1]:
        raise SignalError(f"spectrum reaches {orders[-1]:.1f} shaft orders, need {max_order}")
    # Only the bins up to max_order (and the floor's reach beyond it) are filtered:
    # the median filter is the expensive step.
    keep = int(np.searchsorted(orders, max_order + step)) + width
    spectra = spectra[..., :keep]
    floor = median_filter(spectra, size=(1, 1, width), mode="nearest")
    db = 20.0 * np.log10(np.maximum(spectra, 1e-300) / np.maximum(floor, 1e-300)).max(axis=1)
    starts = np.searchsorted(orders, grid - step / 2)
    stop = int(np.searchsorted(orders, grid[-1] + step / 2))
    # Contiguous cells: max over [start_i, start_{i+1}); an empty cell takes its start bin.
    return grid, np.maximum.reduceat(db[:, :stop], starts, axis=1)
