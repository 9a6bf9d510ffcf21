"""Axis servo loops: commanded positions in, actual positions, following error and load out.

Each axis is a discrete closed position loop with velocity feed-forward,

    G(s) = (k_ff · 2ζω s + ω²) / (s² + 2ζω s + ω²),   ω = 2π · servo_bandwidth_hz,

discretised (bilinear) once and run block by block with ``scipy.signal.lfilter``,
its state carried between blocks.  The error ``cmd − actual`` then has the shape a
machinist knows: at constant speed ``v`` it is ``(1 − k_ff) · 2ζ/ω · v`` and during
acceleration ``a`` it adds ``a/ω²`` — it grows with speed and with acceleration.

The loop closes on the motor encoder (semi-closed loop); ``pos`` is the table as a
linear scale would read it.  Backlash sits between the two as a play (dead band):
after a reversal the table stands still until the motor has crossed the gap, so
position and following error step by the backlash at every reversal.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import bilinear, lfilter, lfilter_zi

from .config import MachineConfig

AXES = ("x", "y", "z")
DAMPING = 0.7  # closed-loop damping ratio of a well-tuned position loop
VELOCITY_FEEDFORWARD = 0.9  # k_ff; 1.0 would remove the velocity lag entirely
GRAVITY = 9.81
FRICTION_SMOOTHING = 0.5  # mm/s: Coulomb friction reverses over this speed, not a jump


@dataclass(frozen=True, slots=True)
class AxisDrive:
    """Mechanics of one feed drive (servo motor + ball screw + guided mass).

    Defaults are typical of a 600 × 400 mm VMC with 16 mm lead screws and ~11 N·m
    servo motors; the machine file does not describe them yet.
    """

    moving_mass: float  # kg
    screw_lead: float = 16.0  # mm/rev
    rated_torque: float = 11.0  # N·m, motor continuous torque
    efficiency: float = 0.9  # screw + motor
    coulomb_friction: float = 150.0  # N, guides + seals + screw preload
    viscous_friction: float = 300.0  # N per m/s
    vertical: bool = False  # carries its own weight (Z)
    counterbalance: float = 0.8  # share of the weight a counterbalance carries
    copper_loss_at_rated: float = 120.0  # W at rated torque

    @property
    def rated_force(self) -> float:
        """Axial force (N) at rated motor torque."""
        return 2.0 * np.pi * self.rated_torque * self.efficiency / (self.screw_lead * 1e-3)


DEFAULT_DRIVES: dict[str, AxisDrive] = {
    "x": AxisDrive(moving_mass=450.0),  # table + fixture + part
    "y": AxisDrive(moving_mass=700.0),  # saddle + table
    "z": AxisDrive(moving_mass=350.0, vertical=True),  # spindle head
}


@dataclass(frozen=True, slots=True)
class AxisSamples:
    """Per-sample outputs, each ``(n, 3)`` in X, Y, Z order."""

    pos: np.ndarray  # mm, actual (x.pos)
    ferr: np.ndarray  # mm, command − actual (x.ferr)
    load: np.ndarray  # %, drive force over rated (x.load)
    force: np.ndarray  # N, drive force
    power: np.ndarray  # W, electrical power per drive
    over_limit: np.ndarray  # bool, |ferr| > the axis' following_error_limit


def loop_coefficients(bandwidth_hz: float, rate_hz: float) -> tuple[np.ndarray, np.ndarray]:
    """Discrete (b, a) of the closed position loop for one axis."""
    w = 2.0 * np.pi * bandwidth_hz
    num = [VELOCITY_FEEDFORWARD * 2.0 * DAMPING * w, w * w]
    den = [1.0, 2.0 * DAMPING * w, w * w]
    b, a = bilinear(num, den, fs=rate_hz)
    return np.asarray(b, float), np.asarray(a, float)


def play(x: np.ndarray, y0: float, half_gap: float) -> np.ndarray:
    """Play (backlash) operator: ``y[k] = clip(y[k-1], x[k] − h, x[k] + h)``.

    Solved phase by phase: while the motor pushes up the table follows the running
    maximum minus ``h``; once the motor falls back more than the gap it pushes down
    and the table follows the running minimum plus ``h``.  One phase per reversal.
    """
    n = len(x)
    out = np.empty(n)
    k, y, up = 0, float(y0), True
    while k < n:
        seg = x[k:]
        if up:
            cand = np.maximum(y, np.maximum.accumulate(seg) - half_gap)
            leave = np.flatnonzero(seg < cand - half_gap)
        else:
            cand = np.minimum(y, np.minimum.accumulate(seg) + half_gap)
            leave = np.flatnonzero(seg > cand + half_gap)
        end = k + (int(leave[0]) if leave.size else n - k)
        out[k:end] = cand[: end - k]
        if end > k:
            y = float(out[end - 1])
        k, up = end, not up
    return out


def _per_axis(values: object) -> np.ndarray:
    """Per-axis constants as a (3, 1) column, to broadcast over (3, n) blocks."""
    return np.asarray(values, dtype=float).reshape(3, 1)


class ServoAxes:
    """The three feed axes; ``step`` advances one block of commanded positions.

    Faults are plain per-axis arrays the controller may set between blocks:
    ``backlash`` (mm, full reversal dead band) and ``encoder_noise`` (mm, std).
    """

    def __init__(
        self,
        config: MachineConfig,
        rng: np.random.Generator | None = None,
        start: tuple[float, float, float] = (0.0, 0.0, 0.0),
        drives: dict[str, AxisDrive] | None = None,
    ) -> None:
        self.dt = 1.0 / config.servo_rate_hz
        self.rng = rng if rng is not None else np.random.default_rng(0)
        drives = drives or DEFAULT_DRIVES
        self.drives = [drives[a] for a in AXES]
        self.limit = np.array([config.axes[a].following_error_limit for a in AXES])
        self._filters = [
            loop_coefficients(config.axes[a].servo_bandwidth_hz, config.servo_rate_hz) for a in AXES
        ]
        p0 = np.asarray(start, float)
        # Start at rest at ``start``: filter state of a loop settled at that position.
        self._zi = [lfilter_zi(b, a) * p for (b, a), p in zip(self._filters, p0, strict=True)]
        b0, a0 = self._filters[0]
        self._shared = all(
            np.array_equal(b, b0) and np.array_equal(a, a0) for b, a in self._filters
        )
        self._zi_all = np.vstack(self._zi)  # (3, order): the loops filter along axis 1
        self._motor = p0.copy()  # last motor position
        self._vel = np.zeros(3)  # last motor velocity, mm/s
        self._cmd = p0.copy()  # last commanded position
        self._table = p0.copy()  # last table position (after backlash)
        self.backlash = np.zeros(3)
        self.encoder_noise = np.zeros(3)
        # Per-axis constants as (3, 1) columns: the block is worked on axis-major, (3, n),
        # so that every row is contiguous (the planner's setpoints already are).
        self._mass = np.array([d.moving_mass for d in self.drives])
        self._rated = np.array([d.rated_force for d in self.drives])
        self._load_scale = _per_axis(100.0 / self._rated)
        self._inv_rated = _per_axis(1.0 / self._rated)
        self._coulomb = _per_axis([d.coulomb_friction for d in self.drives])
        self._viscous_si = _per_axis([d.viscous_friction * 1e-3 for d in self.drives])
        self._mass_si = _per_axis(self._mass * 1e-3)
        self._inv_eff_si = _per_axis([1e-3 / d.efficiency for d in self.drives])
        self._copper = _per_axis([d.copper_loss_at_rated for d in self.drives])
        self._limit = _per_axis(self.limit)
        self._static = _per_axis(
            [d.moving_mass * GRAVITY * (1.0 - d.counterbalance) if d.vertical else 0.0
             for d in self.drives]
        )  # fmt: skip

    def step(self, pos_cmd: np.ndarray, feed_force: np.ndarray | None = None) -> AxisSamples:
        """Advance by ``len(pos_cmd)`` samples.

        ``pos_cmd`` is ``(n, 3)`` mm in the machine frame; ``feed_force`` (``(n,)``, N)
        is the process force resisting the motion along the commanded path. The
        outputs are ``(n, 3)`` views of axis-major arrays (each axis contiguous).
        """
        cmd = np.asarray(pos_cmd, float).T  # (3, n), no copy for axis-major setpoints
        motor = self._loop(cmd)
        table = self._backlash(motor)
        pos = self._noisy(table)
        vel, acc = self._motion(motor)
        force = self._drive_force(vel, acc)
        if feed_force is not None and np.any(feed_force):
            force += self._process_force(cmd, feed_force)
        ferr = cmd - pos
        if cmd.shape[1]:
            self._cmd = cmd[:, -1].copy()
        load = np.abs(force)
        load *= self._load_scale
        return AxisSamples(
            pos=pos.T,
            ferr=ferr.T,
            load=load.T,
            force=force.T,
            power=self._power(force, vel).T,
            over_limit=(np.abs(ferr) > self._limit).T,
        )

    def _loop(self, cmd: np.ndarray) -> np.ndarray:
        """Motor positions (3, n) from the closed loops; one filter call when axes are alike."""
        if self._shared:
            b, a = self._filters[0]
            motor, self._zi_all = lfilter(b, a, cmd, axis=1, zi=self._zi_all)
            return motor
        motor = np.empty_like(cmd)
        for i, (b, a) in enumerate(self._filters):
            motor[i], self._zi[i] = lfilter(b, a, cmd[i], zi=self._zi[i])
        return motor

    def _backlash(self, motor: np.ndarray) -> np.ndarray:
        """Table positions (3, n): the motor's, through the play where there is backlash."""
        axes = np.flatnonzero(self.backlash > 0)
        if len(axes) == 0:
            if motor.shape[1]:
                self._table = motor[:, -1].copy()
            return motor
        table = motor.copy()
        for i in axes:
            table[i] = play(motor[i], self._table[i], 0.5 * self.backlash[i])
        if motor.shape[1]:
            self._table = table[:, -1].copy()
        return table

    def _noisy(self, table: np.ndarray) -> np.ndarray:
        """What the linear scales read: the table plus encoder noise, if any."""
        if not np.any(self.encoder_noise > 0):
            return table
        noise = self.rng.standard_normal(table.shape[::-1]).T  # the (n, 3) draw order
        return table + noise * self.encoder_noise[:, None]

    def _motion(self, motor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Motor velocity (mm/s) and acceleration (mm/s²) by differences across blocks."""
        rate = 1.0 / self.dt
        vel = np.empty_like(motor)
        acc = np.empty_like(motor)
        if motor.shape[1] == 0:
            return vel, acc
        vel[:, 0] = motor[:, 0] - self._motor
        np.subtract(motor[:, 1:], motor[:, :-1], out=vel[:, 1:])
        vel *= rate
        acc[:, 0] = vel[:, 0] - self._vel
        np.subtract(vel[:, 1:], vel[:, :-1], out=acc[:, 1:])
        acc *= rate
        self._motor = motor[:, -1].copy()
        self._vel = vel[:, -1].copy()
        return vel, acc

    def _drive_force(self, vel: np.ndarray, acc: np.ndarray) -> np.ndarray:
        """m·a + friction + unbalanced weight, per axis (N)."""
        force = acc * self._mass_si  # mm/s² → m/s² folded into the constant
        friction = np.multiply(vel, 1.0 / FRICTION_SMOOTHING)
        np.tanh(friction, out=friction)
        friction *= self._coulomb
        force += friction
        np.multiply(vel, self._viscous_si, out=friction)
        force += friction
        force += self._static
        return force

    def _process_force(self, cmd: np.ndarray, feed_force: np.ndarray) -> np.ndarray:
        """Split the path feed force onto the axes along the commanded direction."""
        dcmd = np.diff(cmd, axis=1, prepend=self._cmd[:, None])
        norm = np.sqrt(np.einsum("ij,ij->j", dcmd, dcmd))
        scale = np.divide(feed_force, norm, out=np.zeros(len(norm)), where=norm > 1e-12)
        dcmd *= scale
        return dcmd

    def _power(self, force: np.ndarray, vel: np.ndarray) -> np.ndarray:
        """Electrical power per drive (3, n): mechanical out / efficiency + copper losses."""
        mech = np.multiply(force, vel)
        np.maximum(mech, 0.0, out=mech)
        mech *= self._inv_eff_si
        share = force * self._inv_rated
        share *= share
        share *= self._copper
        mech += share
        return mech
