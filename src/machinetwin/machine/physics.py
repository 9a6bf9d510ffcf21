"""Process physics of the virtual machine: cutting forces, tool wear, spindle, power, energy.

Every model works on blocks of samples at the servo rate (arrays of shape ``(n,)``),
keeps its state between blocks and never loops per sample.  A typical block::

    rpm = spindle.follow(rpm_cmd)                        # speed with the accel limit
    fz = feed_per_tooth(feed, rpm, tool.flutes)
    cut = cutting.forces(t, mrr, ap, ae, fz, rpm, tool.number)  # Kienzle, wear, breakage
    sp = spindle.load(rpm, cut.torque)                    # power, load %, temperature
    axes = servo.step(pos_cmd, cut.feed_force)            # (servo.py) positions, loads
    power, energy = meter.step(sp.power, axes.power, coolant_on)

Cutting force (Kienzle):  per engaged tooth ``Fc = kc1.1 · b · h^(1−mc)``, i.e. a
specific cutting force ``kc(h) = kc1.1 · h^(−mc)`` that rises as the chip gets
thinner.  With the mean chip thickness ``hm`` of the cut, the mean number of
engaged teeth ``z·φs/2π`` and the cutting speed, the chain
``P = z_e · Fc · vc`` reduces exactly to ``P = kc(hm) · MRR`` when
``MRR = ap·ae·vf``.  The model uses that form so that the removal rate reported
by the stock model (which knows partial engagement in corners, air cuts and
entry/exit) is the ground truth of engagement; force and torque follow from power.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter

from .config import MachineConfig, ToolConfig

# --- Materials ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CuttingMaterial:
    """Kienzle and Taylor constants of a work material machined with carbide.

    ``kc11``: specific cutting force at h = b = 1 mm (N/mm²); ``mc``: Kienzle exponent;
    ``taylor_c`` (m/min) and ``taylor_n``: tool life T = (C / vc)^(1/n) minutes to
    the flank-wear criterion VB = 0.3 mm (ISO 8688-2 uses 0.3 mm for end mills).
    """

    name: str
    kc11: float
    mc: float
    taylor_c: float
    taylor_n: float


# Kienzle constants, carbide tools, dry-to-emulsion conditions:
# - C45 (Ck45): kc1.1 = 2220 N/mm², 1 − mc = 0.86 — the classic Kienzle/Victor table
#   reproduced in König & Klocke, "Fertigungsverfahren 1: Drehen, Fräsen, Bohren".
# - Al6061 (AlMgSi, precipitation hardened): kc1.1 ≈ 700 N/mm², mc ≈ 0.25 — Sandvik
#   Coromant, "Metal cutting technology – technical guide", ISO N wrought aged
#   aluminium alloys (kc1 listed in the 500–800 N/mm² range, mc = 0.25).
# - Ti6Al4V (alpha-beta, annealed): kc1.1 ≈ 1450 N/mm², mc ≈ 0.23 — same Sandvik
#   guide, ISO S titanium alloys.
# These are representative handbook values, good to ±20 %; measured Kienzle
# coefficients for Ck45 and Ti6Al4V (orthogonal cutting) are in Klippel et al.,
# Int J Adv Manuf Technol 135 (2024) 2871–2908, doi:10.1007/s00170-024-14597-2.
# Taylor constants are representative of coated carbide in milling (Al: very long
# life; C45: ~30 min at 150 m/min; Ti6Al4V: ~20 min at 50 m/min), not measured.
MATERIALS: dict[str, CuttingMaterial] = {
    m.name: m
    for m in (
        CuttingMaterial("Al6061", kc11=700.0, mc=0.25, taylor_c=2000.0, taylor_n=0.40),
        CuttingMaterial("C45", kc11=2220.0, mc=0.14, taylor_c=350.0, taylor_n=0.25),
        CuttingMaterial("Ti6Al4V", kc11=1450.0, mc=0.23, taylor_c=110.0, taylor_n=0.25),
    )
}

VB_LIMIT = 0.3  # mm, flank-wear end-of-life criterion the Taylor constants refer to
# Flank wear rubs the machined surface: forces rise roughly 20–40 % by VB = 0.3 mm.
WEAR_FORCE_GAIN = 1.0  # kc multiplier slope, 1/mm  (1 + 1.0 · 0.3 = +30 %)
MIN_CHIP = 0.002  # mm; below this the edge ploughs and Kienzle no longer extrapolates
MAX_CHIP = 1.0  # mm; caps the chip when the spindle stands still in a crash
DRILL_HALF_POINT = np.radians(59.0)  # 118° point angle
# Feed (path-direction) force over mean tangential force: milling ≈ 0.6, drilling
# thrust ≈ 1.0 of the tangential force sum (order-of-magnitude ratios).
FEED_FORCE_RATIO = {"flat": 0.6, "ball": 0.7, "drill": 1.0}

# Faults.
BREAKAGE_SPIKE_S = 0.05  # s of overload before the edge lets go
BREAKAGE_SPIKE_GAIN = 4.0  # load spike while the tool breaks
COOLANT_FAILURE_WEAR = 2.5  # dry cutting wears the edge faster (thermal wear)
COOLANT_FAILURE_HEAT = 1.5  # and sends more heat into the spindle nose


def material(name: str) -> CuttingMaterial:
    """The constants of a stock material; KeyError names what is known."""
    try:
        return MATERIALS[name]
    except KeyError:
        raise KeyError(f"unknown stock material {name!r}; known: {sorted(MATERIALS)}") from None


def feed_per_tooth(feed: np.ndarray, rpm: np.ndarray, flutes: int) -> np.ndarray:
    """Feed per tooth (mm) from path feed (mm/min) and speed (rpm); 0 when stopped."""
    rev = np.abs(rpm) * flutes
    return np.divide(feed, rev, out=np.zeros_like(np.asarray(feed, float)), where=rev > 1e-9)


def engagement_angle(ae: np.ndarray, diameter: float) -> np.ndarray:
    """Radial engagement angle φs (rad) of a side cut of width ``ae`` (slot: π)."""
    return np.arccos(np.clip(1.0 - 2.0 * ae / diameter, -1.0, 1.0))


def mean_chip_thickness(fz: np.ndarray, ae: np.ndarray, diameter: float) -> np.ndarray:
    """Mean uncut chip thickness hm (mm) of peripheral milling.

    The chip is ``fz·sin φ`` along the engagement arc; its mean over [0, φs] is
    ``fz (1 − cos φs)/φs = 2 fz ae / (D φs)`` (slot: 2 fz / π).
    """
    return fz * _chip_ratio(engagement_angle(ae, diameter))


def _chip_ratio(phi: np.ndarray) -> np.ndarray:
    """hm / fz = (1 − cos φs) / φs, → 0 as the engagement vanishes."""
    return np.divide(1.0 - np.cos(phi), phi, out=np.zeros_like(phi), where=phi > 1e-9)


def effective_diameter(tool: ToolConfig, ap: np.ndarray) -> np.ndarray:
    """Cutting diameter: a ball end mill cuts on a smaller circle at shallow depth."""
    if tool.kind != "ball":
        return np.full_like(ap, tool.diameter)
    d = tool.diameter
    a = np.clip(ap, 0.0, d / 2)
    return np.maximum(2.0 * np.sqrt(a * (d - a)), 0.1 * d)


# --- Cutting ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CuttingSamples:
    """Per-sample outputs of :meth:`CuttingModel.forces` (all shape ``(n,)``)."""

    force: np.ndarray  # N, mean tangential force at the tool periphery (cutting_force)
    feed_force: np.ndarray  # N, force resisting the feed along the path (drill: thrust)
    tooth_force: np.ndarray  # N, tangential force per engaged tooth (drives vibration)
    kc: np.ndarray  # N/mm², specific cutting force incl. wear (chatter limit input)
    teeth_in_cut: np.ndarray  # mean number of engaged teeth
    torque: np.ndarray  # N·m at the spindle
    power: np.ndarray  # W, cutting power at the spindle shaft
    wear: np.ndarray  # mm, flank wear VB of the tool (tool_wear)
    broken: np.ndarray  # bool, the tool in the spindle is broken (alarm)


class CuttingModel:
    """Kienzle cutting force with Taylor-type flank wear and tool-breakage faults.

    Wear is kept per tool number, so a tool keeps its wear across tool changes.
    Fault parameters are plain attributes the controller may change between blocks:
    ``wear_rate_factor`` (accelerated wear), ``coolant_failure`` and
    :meth:`break_tool`.
    """

    def __init__(self, config: MachineConfig, material_name: str | None = None) -> None:
        self._tools = {t.number: t for t in config.tools}
        self.dt = 1.0 / config.servo_rate_hz
        self.material = material(material_name or config.stock.material)
        self.wear_rate_factor = 1.0
        self.coolant_failure = False
        self._wear: dict[int, float] = {}
        self._broken: set[int] = set()
        self._break_at: dict[int, float] = {}  # tool -> time from which it breaks
        self._break_started: dict[int, float] = {}  # tool -> time the spike began

    # -- fault injection and maintenance --

    def break_tool(self, tool: int, at: float) -> None:
        """Tool ``tool`` breaks at the first cutting sample at or after time ``at``."""
        self._break_at[tool] = at

    def replace_tool(self, tool: int) -> None:
        """A fresh edge: wear zero, not broken, pending breakage cancelled."""
        self._wear.pop(tool, None)
        self._broken.discard(tool)
        self._break_at.pop(tool, None)
        self._break_started.pop(tool, None)

    def wear(self, tool: int) -> float:
        return self._wear.get(tool, 0.0)

    def set_wear(self, tool: int, vb: float) -> None:
        self._wear[tool] = float(vb)

    # -- the model --

    def forces(
        self,
        t: np.ndarray,
        mrr: np.ndarray,
        ap: np.ndarray,
        ae: np.ndarray,
        fz: np.ndarray,
        rpm: np.ndarray,
        tool: int,
    ) -> CuttingSamples:
        """Forces, torque, power and wear of one block for the tool in the spindle.

        ``t`` sample times (s, at the servo rate), ``mrr`` removal rate (mm³/s), ``ap``/``ae``
        axial depth and radial width (mm), ``fz`` feed per tooth (mm), ``rpm``
        actual spindle speed.  An unknown tool or tool 0 cuts nothing.
        """
        n = len(t)
        spec = self._tools.get(tool)
        if spec is None or n == 0:
            return _idle(n, self.wear(tool))
        cutting = mrr > 0.0
        d_eff = effective_diameter(spec, ap)
        h, teeth, duty = self._chip(spec, fz, ae, d_eff)
        gain, broken = self._breakage(tool, t, cutting)
        vb = self._advance_wear(tool, cutting & (gain > 0.0), rpm, d_eff, duty)
        kc = self.material.kc11 * h ** (-self.material.mc) * (1.0 + WEAR_FORCE_GAIN * vb)
        power = kc * mrr * gain * 1e-3  # N/mm² · mm³/s = N·mm/s = 1e-3 W
        omega = np.maximum(np.abs(rpm), 1.0) * (2.0 * np.pi / 60.0)
        torque = power / omega
        force = torque / (d_eff * 0.5e-3)
        tooth = np.divide(force, teeth, out=np.zeros(n), where=teeth > 0)
        return CuttingSamples(
            force=force,
            feed_force=FEED_FORCE_RATIO[spec.kind] * force,
            tooth_force=tooth,
            kc=np.where(cutting, kc, 0.0),
            teeth_in_cut=np.where(cutting, teeth, 0.0),
            torque=torque,
            power=power,
            wear=vb,
            broken=broken,
        )

    def _chip(
        self, spec: ToolConfig, fz: np.ndarray, ae: np.ndarray, d_eff: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Mean chip thickness (mm), mean engaged teeth, and the edge's cutting duty.

        Duty is the share of a revolution an edge cuts relative to a slot (1 = slot).
        """
        if spec.kind == "drill":
            # Each lip takes fz (= feed per rev / lips) at the point angle; both cut always.
            h = fz * np.sin(DRILL_HALF_POINT)
            teeth = np.full_like(h, float(spec.flutes))
            duty = np.ones_like(h)
        else:
            phi = engagement_angle(ae, d_eff)
            h = fz * _chip_ratio(phi)
            teeth = spec.flutes * phi / (2.0 * np.pi)
            duty = phi / np.pi
        return np.clip(h, MIN_CHIP, MAX_CHIP), teeth, duty

    def _advance_wear(
        self,
        tool: int,
        cutting: np.ndarray,
        rpm: np.ndarray,
        d_eff: np.ndarray,
        duty: np.ndarray,
    ) -> np.ndarray:
        """Flank wear VB after each sample (mm), steady-state Taylor wear.

        VB grows at ``VB_LIMIT / T(vc)`` per minute of cutting, T = (C/vc)^(1/n), scaled
        by the share of a revolution the edge is in the cut relative to a slot (the
        edge only wears while it cuts) and by the fault factors.
        """
        vc = np.pi * d_eff * np.abs(rpm) * 1e-3  # m/min
        life_min = (self.material.taylor_c / np.maximum(vc, 1e-3)) ** (1.0 / self.material.taylor_n)
        factor = self.wear_rate_factor * (COOLANT_FAILURE_WEAR if self.coolant_failure else 1.0)
        rate = np.where(cutting, VB_LIMIT / (life_min * 60.0) * duty * factor, 0.0)  # mm/s
        vb = self.wear(tool) + np.cumsum(rate) * self.dt
        if len(vb):
            self._wear[tool] = float(vb[-1])
        return vb

    def _breakage(
        self, tool: int, t: np.ndarray, cutting: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Power gain per sample (spike, then zero) and the broken-tool flag."""
        n = len(t)
        if tool in self._broken:
            return np.zeros(n), np.ones(n, bool)
        start = self._break_started.get(tool)
        if start is None and tool in self._break_at:
            hit = np.flatnonzero(cutting & (t >= self._break_at[tool]))
            if hit.size:
                start = float(t[hit[0]])
                self._break_started[tool] = start
        if start is None:
            return np.ones(n), np.zeros(n, bool)
        end = start + BREAKAGE_SPIKE_S
        gain = np.where(t < start, 1.0, np.where(t < end, BREAKAGE_SPIKE_GAIN, 0.0))
        broken = t >= end
        if n and t[-1] >= end:
            self._broken.add(tool)
        return gain, broken


def _idle(n: int, vb: float) -> CuttingSamples:
    zeros = [np.zeros(n) for _ in range(7)]  # separate arrays: callers may write into them
    return CuttingSamples(*zeros, wear=np.full(n, vb), broken=np.zeros(n, bool))


# --- Spindle -------------------------------------------------------------------------

SPINDLE_INERTIA = 0.015  # kg·m², rotor + HSK-A63 holder + tool (typical 15 kW motor spindle)
SPINDLE_EFFICIENCY = 0.88  # motor + inverter
# No-load losses (bearings: ∝ n, windage and iron: ∝ n²) at max speed, W.
NO_LOAD_LINEAR = 300.0
NO_LOAD_QUADRATIC = 900.0


@dataclass(frozen=True, slots=True)
class SpindleSamples:
    """Per-sample spindle outputs (shape ``(n,)``)."""

    torque: np.ndarray  # N·m at the shaft (cutting + acceleration)
    power: np.ndarray  # W, electrical (spindle.power)
    load: np.ndarray  # %, shaft power over rated power (spindle.load)
    temp: np.ndarray  # °C, spindle bearing temperature (spindle.temp)


def rate_limit(cmd: np.ndarray, y0: float, step: float) -> np.ndarray:
    """Track ``cmd`` with at most ``step`` change per sample, starting from ``y0``.

    Equivalent to ``y[k] = y[k-1] + clip(cmd[k] - y[k-1], -step, step)`` but solved in
    phases — a ramp toward the command, then tracking while the command itself moves
    slower than the limit — each phase vectorised; a block has a few phases, not
    one per sample.
    """
    n = len(cmd)
    out = np.empty(n)
    k, y = 0, float(y0)
    while k < n:
        if abs(cmd[k] - y) <= step:  # tracking: y = cmd while |Δcmd| <= step
            jumps = np.flatnonzero(np.abs(np.diff(cmd[k:])) > step)
            end = k + 1 + (int(jumps[0]) if jumps.size else n - k - 1)
            out[k:end] = cmd[k:end]
        else:  # ramp at full rate until within reach of the command
            s = 1.0 if cmd[k] > y else -1.0
            ramp = y + s * step * np.arange(1, n - k + 1)
            prev = np.concatenate(([y], ramp[:-1]))
            reached = np.flatnonzero(s * (cmd[k:] - prev) <= step)
            end = k + (int(reached[0]) if reached.size else n - k)
            out[k:end] = ramp[: end - k]
        y = float(out[end - 1]) if end > 0 else y
        k = end
    return out


class SpindleThermal:
    """First-order spindle temperature: T' = (ambient + rise · P/P_rated · gain − T) / τ.

    Discretised exactly for power held over each sample (zero-order hold), so the
    step response is ``ambient + rise (1 − e^(−t/τ))`` at the sample instants.
    """

    def __init__(self, config: MachineConfig, dt: float) -> None:
        s = config.spindle
        self.ambient = s.ambient_temp
        self.rise = s.temp_rise_at_rated_power
        self.rated = s.rated_power
        self._a = float(np.exp(-dt / s.thermal_time_constant))
        self.temp = s.ambient_temp

    def step(self, power: np.ndarray, gain: float = 1.0) -> np.ndarray:
        target = self.ambient + self.rise * gain * power / self.rated
        a = self._a
        out, _ = lfilter([1.0 - a], [1.0, -a], target, zi=[a * self.temp])
        if len(out):
            self.temp = float(out[-1])
        return out


class SpindleModel:
    """Motor spindle: speed with an acceleration limit, torque, power, load, temperature."""

    def __init__(self, config: MachineConfig) -> None:
        s = config.spindle
        self.dt = 1.0 / config.servo_rate_hz
        self.max_rpm = s.max_rpm
        self.rated_power = s.rated_power
        self._step = s.acceleration * self.dt
        self.speed = 0.0
        self._load_rpm = 0.0  # last speed seen by load(), for the acceleration torque
        self.thermal = SpindleThermal(config, self.dt)
        self.coolant_failure = False

    def follow(self, rpm_cmd: np.ndarray) -> np.ndarray:
        """Actual speed (rpm) for a block of commanded speeds (sign = direction)."""
        cmd = np.clip(np.asarray(rpm_cmd, float), -self.max_rpm, self.max_rpm)
        rpm = rate_limit(cmd, self.speed, self._step)
        if len(rpm):
            self.speed = float(rpm[-1])
        return rpm

    def load(self, rpm: np.ndarray, cutting_torque: np.ndarray) -> SpindleSamples:
        """Power, load and temperature for actual speed ``rpm`` and the process torque."""
        omega = np.abs(rpm) * (2.0 * np.pi / 60.0)
        alpha = np.diff(np.abs(rpm), prepend=abs(self._load_rpm)) * (2.0 * np.pi / 60.0) / self.dt
        if len(rpm):
            self._load_rpm = float(rpm[-1])
        torque = cutting_torque + SPINDLE_INERTIA * alpha
        x = omega * (60.0 / (2.0 * np.pi)) / self.max_rpm
        losses = NO_LOAD_LINEAR * x + NO_LOAD_QUADRATIC * x * x
        shaft = torque * omega
        # Braking energy goes to the brake resistor, not back to the grid.
        power = np.maximum(shaft, 0.0) / SPINDLE_EFFICIENCY + losses
        load = 100.0 * (np.abs(shaft) + losses) / self.rated_power
        heat = COOLANT_FAILURE_HEAT if self.coolant_failure else 1.0
        temp = self.thermal.step(power, heat)
        return SpindleSamples(torque=torque, power=power, load=load, temp=temp)

    def step(
        self, rpm_cmd: np.ndarray, cutting_torque: np.ndarray
    ) -> tuple[np.ndarray, SpindleSamples]:
        """``follow`` then ``load``: speed and the spindle outputs of one block."""
        rpm = self.follow(rpm_cmd)
        return rpm, self.load(rpm, cutting_torque)


# --- Machine power -----------------------------------------------------------------

AUXILIARY_POWER = 600.0  # W: CNC, drive standby, fans, way lube, with the machine on
COOLANT_PUMP_POWER = 550.0  # W while coolant (M8) runs


class EnergyMeter:
    """Machine power (spindle + axes + auxiliaries) and energy since start.

    Energy is the exact integral of the power held over each sample (zero-order
    hold): ``E[k] = E0 + dt · Σ_{i≤k} P[i]``, as a meter sampling at the servo rate.
    """

    def __init__(self, config: MachineConfig) -> None:
        self.dt = 1.0 / config.servo_rate_hz
        self.energy = 0.0

    def step(
        self, spindle_power: np.ndarray, axis_power: np.ndarray, coolant_on: bool = False
    ) -> tuple[np.ndarray, np.ndarray]:
        """``axis_power`` is ``(n,)`` or ``(n, axes)``; returns (power W, energy J)."""
        axes = axis_power.sum(axis=1) if axis_power.ndim == 2 else axis_power
        aux = AUXILIARY_POWER + (COOLANT_PUMP_POWER if coolant_on else 0.0)
        power = spindle_power + axes + aux
        energy = self.energy + np.cumsum(power) * self.dt
        if len(energy):
            self.energy = float(energy[-1])
        return power, energy
