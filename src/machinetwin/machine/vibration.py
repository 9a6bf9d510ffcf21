"""Spindle housing vibration (acceleration, m/s²), generated on demand as a waveform.

The simulator asks for a window (e.g. one second per minute) rather than streaming
25 kHz continuously; each window is built in one vectorised pass from:

- spindle harmonics 1×, 2×, 3× shaft speed: unbalance force ``U·ω²`` over the
  housing's effective mass (2× and 3× stand for misalignment and looseness);
- tooth passing frequency and its harmonics, proportional to the tooth force;
- chatter: when the depth of cut exceeds the stability-lobe limit of the dominant
  tool/spindle mode, a component near that mode grows (logistically, as the tool
  saturates by leaving the cut) within the window;
- rolling bearing defects: an impulse per roller pass ringing the housing's
  resonance (3–5 kHz), outer race at BPFO, inner race at BPFI modulated by the
  shaft rotation through the load zone, ball at 2×BSF modulated at the cage (FTF);
- white sensor noise.

Sample rate: 25.6 kHz by default (the standard rate of vibration DAQs, 2.56 × the
10 kHz analysis band, which holds the bearing resonance and its envelope); 12.8 kHz
(5 kHz band) is enough for the resonance at 4 kHz and halves the data.  Any rate
from 10 to 25.6 kHz is accepted.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from ..errors import ConfigError
from .config import BearingConfig, MachineConfig

DEFAULT_RATE_HZ = 25_600.0
MIN_RATE_HZ, MAX_RATE_HZ = 10_000.0, 25_600.0

HOUSING_MASS = 40.0  # kg, effective mass seen by forces at the spindle nose
RESIDUAL_UNBALANCE = 2.0e-5  # kg·m: balance grade G2.5 for a ~8 kg rotor at 12,000 rpm
HARMONIC_SHARE = (1.0, 0.3, 0.1)  # 1×, 2×, 3× relative to the unbalance line
TOOTH_HARMONICS = (1.0, 0.5, 0.25, 0.12)  # a milling force pulse train's harmonics
TOOTH_GAIN = 1.0 / HOUSING_MASS  # m/s² per N of tooth force
NOISE_STD = 0.1  # m/s², sensor and background
BEARING_IMPACT = 30.0  # m/s² ringing peak at severity 1 and 1,800 rpm (≈ CWRU OR 0.007")
BEARING_REF_RPM = 1800.0
SLIP_JITTER = 0.01  # rollers slip: each impact lands ±1 % of a period off its slot
CHATTER_AMPLITUDE = 20.0  # m/s² saturated chatter at twice the stability limit


@dataclass(frozen=True, slots=True)
class BearingOrders:
    """Bearing defect frequencies as multiples of shaft speed."""

    bpfo: float  # ball pass frequency, outer race
    bpfi: float  # ball pass frequency, inner race
    bsf: float  # ball spin frequency
    ftf: float  # fundamental train (cage) frequency


def bearing_orders(
    balls: int, ball_diameter: float, pitch_diameter: float, contact_angle_deg: float = 0.0
) -> BearingOrders:
    """Kinematic defect frequencies (inner race rotating, outer race fixed)."""
    r = ball_diameter / pitch_diameter * math.cos(math.radians(contact_angle_deg))
    return BearingOrders(
        bpfo=balls / 2.0 * (1.0 - r),
        bpfi=balls / 2.0 * (1.0 + r),
        bsf=pitch_diameter / (2.0 * ball_diameter) * (1.0 - r * r),
        ftf=0.5 * (1.0 - r),
    )


def orders_of(bearing: BearingConfig) -> BearingOrders:
    return bearing_orders(
        bearing.balls, bearing.ball_diameter, bearing.pitch_diameter, bearing.contact_angle
    )


def grown_severity(t: float, onset: float, initial: float, doubling_time: float) -> float:
    """Severity of a spreading defect: ``initial`` at ``onset``, doubling every ``doubling_time`` s.

    Spalls grow roughly exponentially once started; 0 before onset.
    """
    if t < onset:
        return 0.0
    return float(initial * 2.0 ** ((t - onset) / doubling_time))


@dataclass(frozen=True, slots=True)
class StructuralMode:
    """Dominant tool-tip mode seen by the cut (single degree of freedom)."""

    frequency_hz: float = 1500.0
    damping: float = 0.03
    stiffness: float = 2.0e4  # N/mm (2·10⁷ N/m)


def stability_limit(
    rpm: float, flutes: int, kc: float, teeth_in_cut: float, mode: StructuralMode, lobes: int = 30
) -> tuple[float, float]:
    """Critical axial depth (mm) and chatter frequency (Hz) at ``rpm`` (Tlusty/Altintas).

    ``a_lim = −1 / (2 kc N_c Re G(ωc))`` on each lobe k where the tooth period fits
    ``ωc T = 2πk + ε``, ``ε = 3π + 2 ∠G``; the limit is the lowest lobe at ``rpm``.
    ``kc`` is the specific cutting force (N/mm²), ``N_c`` the mean teeth in cut.
    """
    if rpm <= 0 or kc <= 0 or teeth_in_cut <= 0:
        return float("inf"), mode.frequency_hz
    wn = 2.0 * np.pi * mode.frequency_hz
    wc = wn * np.linspace(1.0005, 1.6, 600)  # Re G < 0 only above the natural frequency
    r = wc / wn
    g = 1.0 / (mode.stiffness * (1.0 - r * r + 2j * mode.damping * r))
    a = -1.0 / (2.0 * kc * teeth_in_cut * g.real)
    eps = 3.0 * np.pi + 2.0 * np.angle(g)
    k = np.arange(lobes)[:, None]
    n = 60.0 * wc[None, :] / (flutes * (2.0 * np.pi * k + eps[None, :]))  # (lobes, points)
    d = n - rpm
    cross = np.signbit(d[:, :-1]) != np.signbit(d[:, 1:])
    rows, cols = np.nonzero(cross)
    if rows.size == 0:
        return float("inf"), mode.frequency_hz
    frac = d[rows, cols] / (d[rows, cols] - d[rows, cols + 1])
    a_at = a[cols] + frac * (a[cols + 1] - a[cols])
    best = int(np.argmin(a_at))
    f_at = (wc[cols[best]] + frac[best] * (wc[cols[best] + 1] - wc[cols[best]])) / (2.0 * np.pi)
    return float(a_at[best]), float(f_at)


@dataclass(frozen=True, slots=True)
class VibrationFaults:
    """Fault levels that shape the waveform; plain numbers, 0 = healthy.

    Bearing severities are ~0.1 (incipient) … 1 (a CWRU 0.007" seeded defect) … 3.
    ``unbalance`` is a multiple of the residual unbalance of a balanced spindle.
    """

    outer_race: float = 0.0
    inner_race: float = 0.0
    ball: float = 0.0
    unbalance: float = 1.0


class VibrationModel:
    """Spindle housing acceleration waveforms; deterministic for a given generator."""

    def __init__(
        self,
        config: MachineConfig,
        rng: np.random.Generator,
        rate_hz: float = DEFAULT_RATE_HZ,
        mode: StructuralMode | None = None,
        resonance_hz: float = 4000.0,
        resonance_damping: float = 0.05,
    ) -> None:
        if not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
            raise ConfigError(f"vibration rate_hz={rate_hz:g}: must be between 10000 and 25600")
        if resonance_hz >= 0.45 * rate_hz:
            raise ConfigError(
                f"vibration resonance_hz={resonance_hz:g}: must be below 0.45 × rate_hz"
            )
        self.rate_hz = float(rate_hz)
        self.rng = rng
        self.orders = orders_of(config.spindle.bearing)
        self.mode = mode or StructuralMode()
        self._ring = _resonator(resonance_hz, resonance_damping, self.rate_hz)

    def waveform(
        self,
        t0: float,
        duration: float,
        rpm: float,
        tooth_force: float = 0.0,
        flutes: int = 1,
        faults: VibrationFaults | None = None,
        *,
        depth_of_cut: float = 0.0,
        kc: float = 0.0,
        teeth_in_cut: float = 0.0,
    ) -> np.ndarray:
        """Acceleration (m/s²) at ``rate_hz`` over [t0, t0 + duration) at a steady ``rpm``.

        ``tooth_force`` (N), ``kc`` (N/mm²) and ``teeth_in_cut`` come from the cutting
        model; ``depth_of_cut`` (mm) is compared with the stability limit for chatter.
        """
        faults = faults or VibrationFaults()
        n = int(round(duration * self.rate_hz))
        if n <= 0:
            return np.zeros(0)
        t = t0 + np.arange(n) / self.rate_hz
        fr = abs(rpm) / 60.0
        x = self._spindle(t, fr, faults.unbalance)
        if tooth_force > 0 and fr > 0:
            x += self._tooth_passing(t, fr * flutes, tooth_force)
        if depth_of_cut > 0 and fr > 0:
            x += self._chatter(t - t0, rpm, flutes, depth_of_cut, kc, teeth_in_cut)
        if fr > 0:
            x += self._bearing(t, fr, faults)
        x += NOISE_STD * self.rng.standard_normal(n)
        return x

    def _spindle(self, t: np.ndarray, fr: float, unbalance: float) -> np.ndarray:
        w = 2.0 * np.pi * fr
        amp = unbalance * RESIDUAL_UNBALANCE * w * w / HOUSING_MASS
        # Fixed phase offsets between harmonics, as a real rotor has.
        shares = [share * np.exp(0.7j * h) for h, share in enumerate(HARMONIC_SHARE, 1)]
        return amp * _harmonics(2.0 * np.pi * fr * t, shares)

    def _tooth_passing(self, t: np.ndarray, ftp: float, force: float) -> np.ndarray:
        nyquist = 0.5 * self.rate_hz
        shares = [s for h, s in enumerate(TOOTH_HARMONICS, 1) if h * ftp < nyquist]
        return TOOTH_GAIN * force * _harmonics(2.0 * np.pi * ftp * t, shares, cosine=True)

    def stability_limit(
        self, rpm: float, flutes: int, kc: float, teeth_in_cut: float
    ) -> tuple[float, float]:
        """Critical depth (mm) and chatter frequency (Hz) for this model's structural mode."""
        return stability_limit(rpm, flutes, kc, teeth_in_cut, self.mode)

    def _chatter(
        self, tau: np.ndarray, rpm: float, flutes: int, ap: float, kc: float, teeth: float
    ) -> np.ndarray:
        a_lim, fc = self.stability_limit(abs(rpm), flutes, kc, teeth)
        ratio = ap / a_lim
        if ratio <= 1.0:
            return np.zeros_like(tau)
        # Growth rate ~ ζω_n (ratio − 1): the negative damping the regenerative cut adds.
        sigma = self.mode.damping * 2.0 * np.pi * self.mode.frequency_hz * (ratio - 1.0)
        amp = CHATTER_AMPLITUDE * min(ratio - 1.0, 1.0)
        start = 1e-3  # share of the saturated amplitude the window starts from
        envelope = amp / (1.0 + (1.0 / start - 1.0) * np.exp(-sigma * tau))
        phase0 = self.rng.uniform(0.0, 2.0 * np.pi)
        return envelope * np.sin(2.0 * np.pi * fc * tau + phase0)

    def _bearing(self, t: np.ndarray, fr: float, faults: VibrationFaults) -> np.ndarray:
        """Impulse trains of the present defects, rung through the housing resonance."""
        o = self.orders
        scale = BEARING_IMPACT * fr * 60.0 / BEARING_REF_RPM
        trains = (
            # (severity, impact rate, modulation freq, modulation depth, relative amplitude)
            (faults.outer_race, o.bpfo * fr, 0.0, 0.0, 1.0),
            (faults.inner_race, o.bpfi * fr, fr, 0.8, 0.8),
            (faults.ball, 2.0 * o.bsf * fr, o.ftf * fr, 0.8, 0.5),
        )
        impulses = np.zeros_like(t)
        for severity, rate, fmod, depth, rel in trains:
            if severity > 0:
                self._add_impacts(impulses, t, rate, fmod, depth, severity * rel * scale)
        if not impulses.any():
            return impulses
        b, a = self._ring
        return lfilter(b, a, impulses)

    def _add_impacts(
        self, out: np.ndarray, t: np.ndarray, rate: float, fmod: float, depth: float, amp: float
    ) -> None:
        """Add impacts at ``rate`` (Hz), jittered by slip, amplitude-modulated at ``fmod``."""
        t0, n = float(t[0]), len(t)
        k = np.arange(np.ceil(t0 * rate), np.floor((t0 + n / self.rate_hz) * rate) + 1)
        times = k / rate + SLIP_JITTER / rate * self.rng.standard_normal(k.size)
        gains = amp * (1.0 + 0.1 * self.rng.standard_normal(k.size))
        if depth > 0:
            # The defect passes through the load zone once per modulation period.
            gains *= 1.0 - depth + depth * 0.5 * (1.0 + np.cos(2.0 * np.pi * fmod * times))
        idx = np.rint((times - t0) * self.rate_hz).astype(np.int64)
        keep = (idx >= 0) & (idx < n)
        np.add.at(out, idx[keep], gains[keep])


def _harmonics(phase: np.ndarray, shares: list[complex], cosine: bool = False) -> np.ndarray:
    """Σ_h Im(share_h · e^{jhφ}) (Re with ``cosine``): one complex exponential, then
    powers by multiplication — cheaper than a sine per harmonic."""
    z = np.exp(1j * phase)
    zh = z.copy()
    acc = np.zeros_like(z)
    for k, share in enumerate(shares):
        if k:
            zh *= z
        acc += share * zh
    return acc.real if cosine else acc.imag


def _resonator(freq: float, damping: float, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-pole resonator whose impulse response rings with unit peak at ``freq``."""
    theta = 2.0 * np.pi * freq / rate
    radius = np.exp(-damping * theta)
    return np.array([np.sin(theta)]), np.array(
        [1.0, -2.0 * radius * np.cos(theta), radius * radius]
    )
