"""Trajectory planner: canonical moves (machine frame, mm) to servo-rate setpoints.

Technique: FIR interpolation (after Tajima & Sencer), with bounds that make the limits
provable rather than hoped for.

1. Along the programmed path (lines, and arcs/helices interpolated exactly, never split
   into chords) a path-speed profile is planned: trapezoids between speed caps, built by
   vectorised forward/backward passes over the caps, with a bounded path acceleration.
2. The profile is sampled at the servo rate into points *on the programmed path* (the
   filter input ``u``; its velocity jumps at corners, its acceleration steps).
3. Each axis goes through two cascaded moving averages of T1 and T2 seconds. The output
   is a weighted average of input points, so it lags the input by about (T1+T2)/2 and
   rounds corners; its derivatives are differences of the input over T1 and T2, which
   bounds them:

   - velocity: an average of the input velocity, so ``|v_i| <= V_i`` when the input is;
   - acceleration: ``|u_i(t) - u_i(t-T1)| / T1``;
   - jerk: the difference of two T2-increments of ``u_i``, T1 apart, over ``T1*T2``.

   The input's smooth acceleration (tangential plus centripetal) is kept below
   ``rho*A_i`` and ``T1 = 2*rho*A_i / (phi*J_i)``, so speed changes use a share ``phi`` of
   the jerk limit and ``rho`` of the acceleration limit. The rest, the *jump budget*
   ``B = min(J*T1*T2*(1-phi), (1-rho)*A*T1)`` (20 mm/s on the default machine), is for
   the velocity jumps at corners: within any filter window the corner speed times the
   summed direction change ``C = sum 2*sin(theta/2)`` must stay below ``B``.
   Path deviation: the output is a kernel-weighted average of path points, and the
   gap between that average and the path point at the average position is a sum over
   the window's corners of ``2*sin(theta/2)`` times a convexity gap that is at most
   ``v*M`` (``M``: half the kernel's mean absolute delay, 10 ms here; ``v``: the speed
   within half a window of the corner), plus for arcs ``kappa*Var/2 <=
   (v*sigma)**2*kappa/2`` (``sigma``: the kernel's standard deviation; this is the
   exact shrinkage of a filtered circle). Corner speeds keep
   ``v*M*C (+ arc term) <= tol`` for every window.
   Zones: a corner's speed cap holds over ``v*(T1+T2)/2`` of path on each side (a
   window's deviation at a corner only sees the half window next to it; two corners
   whose zones do not overlap cannot share a window, so each corner counts the turning
   of the corners within 1.5*v*(T1+T2)). Next to an arc the cap covers the whole window
   on each side (``v*(T1+T2)``) because the arc term needs the window's top speed.

Exact stop (G61, G61.1, and before dwells, tool changes, M0/M1 and the program end):
the input stops at the point and stays there for T1+T2, so the output reaches it
exactly and no window mixes the moves before and after it.

G64 P<tol> blends within ``tol``; G64 without P (or P0) uses ``default_tolerance``
(0.05 mm). Under G61/G61.1 arcs are still smoothed by the filter, within
``exact_path_tolerance`` (0.005 mm).

Feed hold, override changes and program stops replan from the current input state:
speed is lowered at the path acceleration along the path (soft caps), never beyond
the hard caps (axis limits, corner zones), so a feed hold stops on the path within
``v**2/(2*a) + v*(T1+T2)/2`` and resumes from there.

Memory stays bounded: ops are read lazily into a lookahead window (by path length and
segment count); the window's end is treated as a stop until more of the program is
read, and the plan is redone when half the window has been used. Motion batches (the
interpreter's column runs of plain moves) are read a window's worth of rows at a time
with numpy (``Planner._read_batch``); the numbers, the window's cut and the events are
those of reading their ops one by one (tests/machine/test_planner_batches.py).

LinuxCNC's model (``blending = "arc"``, the machine file's ``[planner]``; see
``config.linuxcnc_planner_config``): to be the twin of a LinuxCNC 2.9 machine, or to
compare cycle times with one, the planner reproduces that planner's kinematic rules
instead: no jerk limit (one-tap filters, the setpoints are the sampled path itself),
acceleration-limited trapezoids at the full path acceleration of lines, arcs at half
of it tangentially with their speed capped by the rest as normal acceleration
(``_arc_limits``), and corners under G64 replaced by tangent blend arcs within the
tolerance (``_blend_arc``; G64 without P: at most a quarter of either move). Which
junctions stop, pass as tangent or get an arc, and where acceleration is kept back,
follows LinuxCNC's planner (``Planner._junction``).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import numpy as np

from ..errors import MachinetwinError
from ..gcode import canon
from .config import MachineConfig

_EYE = np.eye(3)

# Row layout of a segment's numbers (one float row per segment, in a table)
_P0, _P1, _CEN, _E1, _E2, _E3 = 0, 3, 6, 9, 12, 15
_R0, _R1, _TH0, _SWEEP, _DZ, _LEN, _KIND, _HARD, _ACC, _KAPPA, _FEED, _RAPID, _TOL = range(18, 31)
_T0, _T1, _LINE, _NOM = 31, 34, 37, 38  # _NOM: length as programmed, before blend trims
_ROW = 39
_TANGENT_TURN = 1e-6  # |change of the unit tangent| below which a junction is tangent

Floats = np.ndarray


class PlannerError(MachinetwinError):
    """A move cannot be planned (zero feed, degenerate arc); says which line."""


@dataclass(frozen=True, slots=True)
class PlannerSettings:
    """Tuning of the planner; the defaults suit the default machine."""

    default_tolerance: float = 0.05  # mm, G64 without P (or P0)
    exact_path_tolerance: float = 0.005  # mm, arc smoothing under G61/G61.1
    accel_share: float = 0.5  # rho: share of each axis' acceleration for speed changes
    jerk_share: float = 0.75  # phi: share of each axis' jerk for speed changes
    corner_filter_time: float = 0.02  # s, T2: the short filter that smooths corner jumps
    lookahead_segments: int = 1000
    lookahead_length: float = 0.0  # mm, 0: twice the braking distance plus two zones
    optional_stop: bool = True  # M1 pauses like M0
    # "filter": corners rounded by the FIR filters (jerk-limited, the default machine);
    # "arc": tangent blend arcs within the tolerance and acceleration-limited
    # trapezoids, the model of LinuxCNC 2.9's planner (see ``_blend_arc``)
    blending: str = "filter"
    arc_tangential_share: float = 0.5  # "arc": share of acceleration along arcs
    blend_length_share: float = 0.5  # "arc": a blend arc takes at most this of a line
    blend_tolerance_share: float = 0.25  # "arc": deviation at most this times a line
    # "arc", as LinuxCNC 2.9 (see ``Planner._junction``): the share of acceleration a
    # junction may take for its direction change ([TRAJ] ARC_BLEND_KINK_RATIO), and
    # the share a G64 move gets when it ends in a stop for another reason than its
    # own mode (program end, dwell, M0...): LinuxCNC keeps its parabolic-blend half
    kink_ratio: float = 0.1
    unblended_end_share: float = 0.5

    def __post_init__(self) -> None:
        if self.blending not in ("filter", "arc"):
            raise PlannerError(f"planner blending {self.blending!r}: use 'filter' or 'arc'")

    @classmethod
    def from_config(cls, config: MachineConfig) -> PlannerSettings:
        """The settings of the machine file's ``[planner]`` section (defaults elsewhere)."""
        given = {k: v for k, v in config.planner.model_dump().items() if v is not None}
        return cls(**given)


class Event(NamedTuple):
    tick: int  # index into the block's arrays
    op: canon.CanonOp


@dataclass(slots=True)
class SetpointBlock:
    """Setpoints of one block of servo ticks, plus the non-motion ops reached in it."""

    t: Floats  # s since load
    pos: Floats  # (n, 3) mm, machine frame (a view of an axis-major (3, n) array)
    vel: Floats  # (n, 3) mm/s, backward difference of pos (same layout)
    acc: Floats  # (n, 3) mm/s^2, backward difference of vel (same layout)
    feed: Floats  # path speed, mm/min
    line: np.ndarray  # program line per tick
    events: list[Event] = field(default_factory=list)


class Limits:
    """Filter lengths and budgets derived from the machine's axis limits."""

    def __init__(self, config: MachineConfig, settings: PlannerSettings) -> None:
        axes = [config.axes[k] for k in ("x", "y", "z")]
        self.dt = 1.0 / config.servo_rate_hz
        self.vmax = np.array([a.max_velocity for a in axes])
        self.amax = np.array([a.max_acceleration for a in axes])
        self.jmax = np.array([a.max_jerk for a in axes])
        self.vmax_f, self.amax_f = self.vmax.tolist(), self.amax.tolist()
        rho, phi = settings.accel_share, settings.jerk_share
        self.rho = rho
        self.arc_mode = settings.blending == "arc"
        self.arc_share = settings.arc_tangential_share
        t1 = float(np.max(2 * rho * self.amax / (phi * self.jmax)))
        self.n1 = max(1, math.ceil(t1 / self.dt - 1e-9))
        self.n2 = max(1, round(settings.corner_filter_time / self.dt))
        self.t1, self.t2 = self.n1 * self.dt, self.n2 * self.dt
        self.window = self.t1 + self.t2
        # jerk left for corner jumps after speed changes took 2*rho*A*T2
        jerk_room = self.jmax * self.t1 * self.t2 - 2 * rho * self.amax * self.t2
        self.jump_budget = float(np.min(np.minimum(jerk_room, (1 - rho) * self.amax * self.t1)))
        if self.jump_budget <= 0 and not self.arc_mode:
            raise PlannerError("planner settings leave no jerk for corners (raise jerk_share)")
        # variance of the sum of two discrete uniform delays, in s^2
        var = ((self.n1**2 - 1) + (self.n2**2 - 1)) / 12 * self.dt**2
        self.sigma = math.sqrt(var)
        # half the mean absolute delay about the kernel's centre: a corner passed at
        # speed v is cut by at most v * moment * 2 sin(theta/2)
        kernel = np.convolve(np.full(self.n1, 1 / self.n1), np.full(self.n2, 1 / self.n2))
        offset = np.arange(len(kernel)) - (len(kernel) - 1) / 2
        self.moment = float(np.sum(kernel * np.abs(offset))) / 2 * self.dt
        self.settle = self.n1 + self.n2 - 1  # input ticks at rest for an exact stop
        self.delay = (self.n1 + self.n2 - 2) // 2  # group delay of the filter, ticks
        self.a_min = rho * float(np.min(self.amax)) / math.sqrt(2)  # lowest path accel
        if self.arc_mode:  # arcs and blend arcs change speed at arc_share*A, less the
            # share a kink keeps back, or half of that on a move that ends unblended
            least = min(rho / math.sqrt(2), self.arc_share) * float(np.min(self.amax))
            cut = (1 - settings.kink_ratio) * min(settings.unblended_end_share, 1.0)
            self.a_min = least * cut
        v_top = float(np.linalg.norm(self.vmax))
        auto = 2 * (v_top**2 / (2 * self.a_min) + 2 * v_top * self.window)
        self.lookahead = settings.lookahead_length or auto

    def braking_distance(self, v: float) -> float:
        """Upper bound of the output's travel after a feed hold at path speed ``v``."""
        return v * v / (2 * self.a_min) + v * self.window / 2


# --- segments -------------------------------------------------------------------------


class _Segment:
    __slots__ = (
        "gid", "length", "stop", "corner_speed", "mode", "acc0", "reserve", "share", "tangent",
    )  # fmt: skip

    def __init__(self, gid: int, length: float) -> None:
        self.gid = gid
        self.length = length
        self.stop = False  # the junction after it is an exact stop
        self.corner_speed = 0.0  # frozen zone speed of the junction after it
        self.mode = "CONTINUOUS"  # motion control mode it was read in
        self.acc0 = 0.0  # its path acceleration before LinuxCNC-style reductions
        self.reserve = 0.0  # share of acc0 kept back at a G61 corner ("arc" only)
        self.share = 1.0  # share of acc0 when it ends unblended ("arc" only)
        self.tangent = False  # the junction after it passes as tangent ("arc" only)


class _Rows:
    """The window's segment numbers as one growing table; a row never changes."""

    def __init__(self) -> None:
        self.a = np.empty((64, _ROW))
        self.n = 0

    def append(self, row: list[float]) -> None:
        if self.n == len(self.a):
            self.a = np.concatenate((self.a, np.empty_like(self.a)))
        self.a[self.n] = row
        self.n += 1

    def extend(self, rows: Floats) -> None:
        while self.n + len(rows) > len(self.a):
            self.a = np.concatenate((self.a, np.empty_like(self.a)))
        self.a[self.n : self.n + len(rows)] = rows
        self.n += len(rows)

    def drop(self, k: int) -> None:
        self.a[: self.n - k] = self.a[k : self.n]
        self.n -= k


def _line_row(
    p0: tuple[float, ...], p1: tuple[float, ...], lim: Limits, feed: float, rapid: bool
) -> list[float] | None:
    # plain floats: a program can have millions of these and numpy per call is slow
    d = [b - a for a, b in zip(p0, p1, strict=True)]
    length = math.sqrt(d[0] * d[0] + d[1] * d[1] + d[2] * d[2])
    if length < 1e-9:
        return None
    u = [c / length for c in d]
    hard = min(v / abs(c) for v, c in zip(lim.vmax_f, u, strict=True) if c)
    acc = lim.rho * min(a / abs(c) for a, c in zip(lim.amax_f, u, strict=True) if c)
    row = [0.0] * _ROW
    row[_P0:_P0 + 3], row[_P1:_P1 + 3] = p0, p1  # fmt: skip
    row[_LEN], row[_HARD], row[_ACC], row[_FEED], row[_RAPID] = length, hard, acc, feed, rapid
    row[_T0:_T0 + 3] = row[_T1:_T1 + 3] = u  # fmt: skip
    row[_NOM] = length
    return row


def _arc_row(
    op: canon.ArcFeed, start: tuple[float, ...], lim: Limits, feed: float, tol: float
) -> list[float]:
    p0 = np.array(start)
    first, second, normal = canon.ARC_AXES[op.plane]
    e1, e2, e3 = _EYE[first], _EYE[second], _EYE[normal]
    p1 = np.empty(3)
    p1[first], p1[second], p1[normal] = op.first_end, op.second_end, op.axis_end
    cx, cy = op.first_axis, op.second_axis
    r0 = math.hypot(p0[first] - cx, p0[second] - cy)
    r1 = math.hypot(p1[first] - cx, p1[second] - cy)
    if min(r0, r1) < 1e-9:
        raise PlannerError(f"line {op.line}: arc with zero radius")
    th0 = math.atan2(p0[second] - cy, p0[first] - cx)
    th1 = math.atan2(p1[second] - cy, p1[first] - cx)
    sweep = _sweep(th0, th1, op.rotation)
    dz = float(p1[normal] - p0[normal])
    # the largest |dp/df| so that the path speed never exceeds the planned one on spirals
    length = math.sqrt((max(r0, r1) * sweep) ** 2 + (r1 - r0) ** 2 + dz**2)
    kappa = max(r0, r1) / (min(r0, r1) ** 2 + (dz / sweep) ** 2)
    if lim.arc_mode:
        hard, a_arc = _arc_limits(lim, (first, second, normal) if dz else (first, second), kappa)
    else:
        a_arc = lim.rho * float(np.min(lim.amax)) / math.sqrt(2)  # tangential and normal halves
        hard = min(
            float(np.min(lim.vmax)),
            math.sqrt(a_arc / kappa),  # centripetal acceleration
            math.sqrt(2 * tol / (lim.sigma**2 * kappa)),  # the filter shrinks the circle
        )
    centre = p0.copy()
    centre[first], centre[second] = cx, cy
    row = [0.0] * _ROW
    row[_P0:_P0 + 3], row[_P1:_P1 + 3], row[_CEN:_CEN + 3] = p0.tolist(), p1.tolist(), centre.tolist()  # fmt: skip
    row[_E1:_E1 + 3], row[_E2:_E2 + 3], row[_E3:_E3 + 3] = e1.tolist(), e2.tolist(), e3.tolist()  # fmt: skip
    row[_R0], row[_R1], row[_TH0], row[_SWEEP], row[_DZ] = r0, r1, th0, sweep, dz
    row[_LEN], row[_KIND], row[_HARD], row[_ACC], row[_KAPPA] = length, 1.0, hard, a_arc, kappa
    row[_FEED] = feed
    for col, th, r in ((_T0, th0, r0), (_T1, th0 + sweep, r1)):
        c, s = math.cos(th), math.sin(th)
        t = r * sweep * (c * e2 - s * e1) + (r1 - r0) * (c * e1 + s * e2) + dz * e3
        row[col:col + 3] = (t / np.linalg.norm(t)).tolist()  # fmt: skip
    row[_NOM] = length
    return row


def _arc_limits(lim: Limits, axes: tuple[int, ...], kappa: float) -> tuple[float, float]:
    """(speed cap, tangential acceleration) of an arc in "arc" blending.

    As LinuxCNC 2.9: the arc's acceleration budget is the lowest of its axes'; the
    normal acceleration may use sqrt(1 - share**2) of it, which caps the speed at
    sqrt(a_n * r); an arc too wide for that cap to bind gives the tangential share
    whatever its normal acceleration at the axis speed limit leaves.
    """
    a = min(lim.amax_f[k] for k in axes)
    v = min(lim.vmax_f[k] for k in axes)
    share = lim.arc_share
    v_cut = math.sqrt(math.sqrt(1 - share * share) * a / kappa)
    if v >= v_cut:
        return v_cut, share * a
    a_n = v * v * kappa
    return v, math.sqrt(max(1.0 - (a_n / a) ** 2, 0.0)) * a


def _unit(v: list[float]) -> list[float]:
    n = math.sqrt(v[0] * v[0] + v[1] * v[1] + v[2] * v[2])
    return [c / n for c in v]


def _cross(a: list[float], b: list[float]) -> list[float]:
    return [a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]]


def _requested(row: Floats | list[float]) -> float:
    return float(row[_HARD]) if row[_RAPID] else min(float(row[_FEED]), float(row[_HARD]))


def _dot(a: list[float], b: list[float]) -> float:
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


def _plane_accel(lim: Limits, b: list[float]) -> float:
    """Acceleration allowed in the plane with normal ``b``: the axes' limits over the
    lengths of their projections onto it (LinuxCNC's ``calculateInscribedDiameter``)."""
    return min(
        a / max(math.sqrt(max(1 - c * c, 0.0)), 1e-12) for a, c in zip(lim.amax_f, b, strict=True)
    )


def _blend_size(
    theta: float, d_max: float, tol: float, a_max: float, v_req: float, share: float
) -> tuple[float, float] | None:
    """(radius, speed) of LinuxCNC 2.9's blend arc (``blendComputeParameters``).

    ``theta``: half the angle between the tangents at the corner; ``d_max``: how far
    along either side the arc may start. The arc may cut the corner by ``tol``; its
    speed is what the normal share of ``a_max`` allows on the largest radius that
    fits, at most ``v_req``; its radius is no larger than that speed needs, unless a
    parabolic blend over the same length would take longer.
    """
    sin_t, cos_t, tan_t = math.sin(theta), math.cos(theta), math.tan(theta)
    d_geom = min(d_max, cos_t * tol / (1 - sin_t))
    if d_geom <= 0:
        return None
    r_geom = tan_t * d_geom
    a_n = a_max * math.sqrt(1 - share * share)
    v_plan = min(math.sqrt(a_n * r_geom), v_req)
    a_par = 0.5 * a_max  # the parabolic blend it replaces, for how much to take
    phi = math.pi - 2 * theta  # the turn
    t_blend = min(math.sqrt(2 * a_par * d_geom), v_plan) / a_par
    radius = max(v_plan * v_plan / a_n, min(t_blend * v_plan / phi, r_geom))
    if radius < 1e-9 or radius * phi < 1e-6:
        return None
    return radius, v_plan


def _planar_circle(row: Floats | list[float]) -> bool:
    return row[_DZ] == 0.0 and abs(row[_R1] - row[_R0]) <= 1e-9 * row[_R0]


def _arc_tangent(row: list[float], th: float) -> list[float]:
    sgn = 1.0 if row[_SWEEP] > 0 else -1.0
    c, s_ = math.cos(th), math.sin(th)
    return [
        sgn * (c * b - s_ * a) for a, b in zip(row[_E1 : _E1 + 3], row[_E2 : _E2 + 3], strict=True)
    ]


def _trim_arc(row: list[float], q: list[float], at_start: bool) -> list[float] | None:
    """The arc ``row`` made to start (or end) at ``q`` on its circle; None if q is not a
    short way in from that end."""
    cen, e1, e2 = row[_CEN : _CEN + 3], row[_E1 : _E1 + 3], row[_E2 : _E2 + 3]
    rq = [a - b for a, b in zip(q, cen, strict=True)]
    th_q = math.atan2(_dot(rq, e2), _dot(rq, e1))
    sweep = row[_SWEEP]
    sgn = 1.0 if sweep > 0 else -1.0
    th_end = row[_TH0] + (0.0 if at_start else sweep)
    delta = ((th_q - th_end) * (sgn if at_start else -sgn)) % (2 * math.pi)
    if delta >= min(abs(sweep) - 1e-9, math.pi):
        return None
    out = list(row)
    out[_SWEEP] = sweep - sgn * delta
    if at_start:
        out[_TH0] = row[_TH0] + sgn * delta
        out[_P0 : _P0 + 3] = q
        out[_T0 : _T0 + 3] = _arc_tangent(out, out[_TH0])
    else:
        out[_P1 : _P1 + 3] = q
        out[_T1 : _T1 + 3] = _arc_tangent(out, out[_TH0] + out[_SWEEP])
    out[_LEN] = row[_R0] * abs(out[_SWEEP])
    return out


def _blend_arc(
    prev: Floats, nxt: list[float], lim: Limits, st: PlannerSettings
) -> tuple[list[float], list[float], list[float]] | None:
    """A tangent arc replacing a corner: (the arc, the previous move and the next
    one trimmed to it), or None where no arc fits (a reversal, a corner out of an
    arc's plane, too small). Between lines and circular arcs of one plane, as LinuxCNC
    2.9 does (``blendInit3FromLineLine``/``LineArc``/``ArcLine``): the arc may take
    at most half of a line (``blend_length_share``) and a third of an arc, and cut
    the corner by the tolerance, capped at a quarter of either move.
    """
    p_row = prev.tolist()
    u1, u2 = p_row[_T1 : _T1 + 3], nxt[_T0 : _T0 + 3]
    theta = math.acos(-min(max(_dot(u1, u2), -1.0), 1.0)) / 2  # half the corner angle
    if theta < 1e-6:
        return None
    arcs = (p_row[_KIND] == 1.0, nxt[_KIND] == 1.0)
    if all(arcs):
        return None
    share_t = st.blend_tolerance_share
    tol = min(p_row[_TOL], nxt[_TOL], share_t * p_row[_NOM], share_t * nxt[_NOM])
    frac = st.blend_length_share
    room = [min(p_row[_LEN] - 1e-6, frac * p_row[_NOM]), frac * nxt[_LEN]]
    corner = p_row[_P1 : _P1 + 3]
    inside = _unit([b - a for a, b in zip(u1, u2, strict=True)])
    if any(arcs):
        arc = p_row if arcs[0] else nxt
        plane = arc[_E3 : _E3 + 3]
        line_u = u2 if arcs[0] else u1
        if not _planar_circle(arc) or abs(_dot(line_u, plane)) > 1e-9:
            return None
        r = arc[_R0]
        convex = (
            _dot([c - p for c, p in zip(arc[_CEN : _CEN + 3], corner, strict=True)], inside) > 0
        )
        phi_max = min(abs(arc[_SWEEP]) * (2 / 3 if arcs[0] else 1 / 3), theta if convex else math.pi / 2)  # fmt: skip
        room[0 if arcs[0] else 1] = math.sin(phi_max / 4) * r if convex else phi_max * r
    else:
        plane = _unit(_cross(u1, u2))
    a_max = _plane_accel(lim, plane)
    v_req = max(_requested(p_row), _requested(nxt))
    size = _blend_size(theta, min(room), tol, a_max, v_req, lim.arc_share)
    if size is None:
        return None
    radius, v_plan = size
    if any(arcs):
        fit = _fit_line_arc(p_row, nxt, arcs[0], radius, convex, tol)
        if fit is None:
            return None
        centre, p_new, n_new = fit
    else:
        d = radius / math.tan(theta)
        centre = [p + c * radius / math.sin(theta) for p, c in zip(corner, inside, strict=True)]
        p_new, n_new = list(p_row), list(nxt)
        p_new[_P1 : _P1 + 3] = [p - c * d for p, c in zip(corner, u1, strict=True)]
        n_new[_P0 : _P0 + 3] = [p + c * d for p, c in zip(corner, u2, strict=True)]
        p_new[_LEN] -= d
        n_new[_LEN] -= d
    start, end = p_new[_P1 : _P1 + 3], n_new[_P0 : _P0 + 3]
    t_start, t_end = p_new[_T1 : _T1 + 3], n_new[_T0 : _T0 + 3]
    e1 = [(a - c) / radius for a, c in zip(start, centre, strict=True)]
    rel = [a - c for a, c in zip(end, centre, strict=True)]
    sweep = math.atan2(_dot(rel, t_start), _dot(rel, e1))
    if sweep <= 0:
        return None
    row = [0.0] * _ROW
    row[_P0:_P0 + 3], row[_P1:_P1 + 3], row[_CEN:_CEN + 3] = start, end, centre  # fmt: skip
    row[_E1:_E1 + 3], row[_E2:_E2 + 3], row[_E3:_E3 + 3] = e1, t_start, _cross(e1, t_start)  # fmt: skip
    row[_R0], row[_R1], row[_TH0], row[_SWEEP] = radius, radius, 0.0, sweep
    row[_LEN] = row[_NOM] = radius * sweep
    row[_KIND], row[_HARD], row[_ACC], row[_KAPPA] = 1.0, v_plan, lim.arc_share * a_max, 1 / radius  # fmt: skip
    row[_FEED], row[_RAPID] = v_req, float(p_row[_RAPID] and nxt[_RAPID])
    row[_T0:_T0 + 3], row[_T1:_T1 + 3] = t_start, t_end  # fmt: skip
    row[_TOL], row[_LINE] = tol, nxt[_LINE]
    # the arc must end tangent to the next move (a numerical safety net)
    if math.dist(_arc_tangent(row, sweep), t_end) > _TANGENT_TURN or row[_LEN] < 1e-6:
        return None
    return row, p_new, n_new


def _fit_line_arc(
    p_row: list[float], nxt: list[float], arc_first: bool, radius: float, convex: bool, tol: float
) -> tuple[list[float], list[float], list[float]] | None:
    """Centre of the blend circle tangent to a line and a circular arc, and both trimmed.

    The centre is ``radius`` off the line on the inside of the corner and ``r -
    radius`` (the arc bends the same way) or ``r + radius`` from the arc's centre: a
    quadratic in the distance along the line (LinuxCNC's ``blendLineArcPostProcess``).
    """
    arc = p_row if arc_first else nxt
    u1, u2 = p_row[_T1 : _T1 + 3], nxt[_T0 : _T0 + 3]
    corner = p_row[_P1 : _P1 + 3]
    cen, r = arc[_CEN : _CEN + 3], arc[_R0]
    line_u, way = (u2, 1.0) if arc_first else (u1, -1.0)
    other = u1 if arc_first else u2
    along = _dot(other, line_u)
    n_in = _unit([o - along * c for o, c in zip(other, line_u, strict=True)])
    if arc_first:
        n_in = [-c for c in n_in]
    d_c = r - radius if convex else r + radius
    if d_c <= 0:
        return None
    w = [p - c + radius * n for p, c, n in zip(corner, cen, n_in, strict=True)]
    direction = [way * c for c in line_u]
    b = _dot(w, direction)
    disc = b * b - _dot(w, w) + d_c * d_c
    if disc < 0:
        return None
    roots = [t for t in (-b - math.sqrt(disc), -b + math.sqrt(disc)) if t >= -1e-12]
    if not roots:
        return None
    t = max(min(roots), 0.0)
    centre = [p + radius * n + t * d for p, n, d in zip(corner, n_in, direction, strict=True)]
    if math.dist(centre, corner) - radius > tol + 1e-12:
        return None
    to_c = _unit([a - c for a, c in zip(centre, cen, strict=True)])
    q = [c + r * u for c, u in zip(cen, to_c, strict=True)]
    on_line = [p + t * d for p, d in zip(corner, direction, strict=True)]
    if arc_first:
        p_new = _trim_arc(p_row, q, at_start=False)
        n_new = list(nxt)
        if p_new is None or t > nxt[_LEN] - 1e-6:
            return None
        n_new[_P0 : _P0 + 3] = on_line
        n_new[_LEN] -= t
    else:
        n_new = _trim_arc(nxt, q, at_start=True)
        p_new = list(p_row)
        if n_new is None or t > p_row[_LEN] - 1e-6:
            return None
        p_new[_P1 : _P1 + 3] = on_line
        p_new[_LEN] -= t
    return centre, p_new, n_new


def _sweep(th0: float, th1: float, rotation: int) -> float:
    """Signed angle from th0 to th1 for ``rotation`` (+n CCW turns, -n CW)."""
    turns = abs(rotation) - 1 if rotation else 0
    d = (th1 - th0) % (2 * math.pi) if rotation > 0 else (th0 - th1) % (2 * math.pi)
    if d < 1e-12 or d > 2 * math.pi - 1e-12:  # same start and end: a full circle
        d = 2 * math.pi
    d += 2 * math.pi * turns
    return d if rotation > 0 else -d


# --- speed profile ----------------------------------------------------------------------


@dataclass(slots=True)
class _Phases:
    """Constant-acceleration pieces of the path-speed profile, in time order."""

    s: Floats
    v: Floats
    a: Floats
    dur: Floats


def _phases_concat(parts: list[_Phases]) -> _Phases:
    return _Phases(
        np.concatenate([p.s for p in parts]),
        np.concatenate([p.v for p in parts]),
        np.concatenate([p.a for p in parts]),
        np.concatenate([p.dur for p in parts]),
    )


def speed_profile(bp: Floats, cap: Floats, acc: Floats, v_start: float) -> _Phases:
    """Fastest profile over intervals ``bp`` with speed ``cap`` and acceleration ``acc``.

    Starts at ``v_start`` (which must be reachable) and ends at rest at ``bp[-1]``. The
    forward and backward passes are cumulative minima: v^2 at a boundary is bounded by
    every other boundary's limit plus 2*a*distance, which vectorises exactly.
    """
    length = np.diff(bp)
    lim = np.empty(len(bp))
    lim[0], lim[-1] = v_start * v_start, 0.0
    lim[1:-1] = np.minimum(cap[:-1], cap[1:]) ** 2
    d = np.concatenate(([0.0], np.cumsum(2 * acc * length)))
    fwd = np.minimum.accumulate(lim - d) + d
    bwd = np.minimum.accumulate((lim + d)[::-1])[::-1] - d
    vb = np.sqrt(np.maximum(np.minimum(fwd, bwd), 0.0))
    va, ve = vb[:-1], vb[1:]
    vp2 = np.minimum(cap**2, (2 * acc * length + va**2 + ve**2) / 2)
    vp2 = np.maximum(vp2, np.maximum(va, ve) ** 2)
    vp = np.sqrt(vp2)
    d_acc = (vp2 - va**2) / (2 * acc)
    d_dec = (vp2 - ve**2) / (2 * acc)
    d_cru = np.maximum(length - d_acc - d_dec, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        t_cru = np.where(vp > 0, d_cru / vp, 0.0)
    s = np.stack((bp[:-1], bp[:-1] + d_acc, bp[:-1] + d_acc + d_cru), axis=1)
    return _Phases(
        s.ravel(),
        np.stack((va, vp, vp), axis=1).ravel(),
        np.stack((acc, 0 * acc, -acc), axis=1).ravel(),
        np.stack(((vp - va) / acc, t_cru, (vp - ve) / acc), axis=1).ravel(),
    )


def _braking_phases(
    s0: float, v0: float, v_to: float, seg_s: Floats, acc: Floats
) -> tuple[_Phases, float]:
    """Slow from v0 to v_to at each segment's own acceleration (the hardest allowed)."""
    s, v, out = s0, v0, []
    k = int(np.searchsorted(seg_s, s0, "right")) - 1
    while v > v_to and k < len(acc):
        a = float(acc[k])
        room = max(float(seg_s[k + 1]) - s, 0.0)
        v_next = math.sqrt(max(v * v - 2 * a * room, v_to * v_to))
        out.append((s, v, -a, (v - v_next) / a))
        s = min(s + (v * v - v_next * v_next) / (2 * a), float(seg_s[k + 1]))
        v, k = v_next, k + 1
    cols = list(zip(*out, strict=True)) if out else [(), (), (), ()]
    return _Phases(*(np.array(c, dtype=float) for c in cols)), s


def zone_speeds(
    sj: Floats,
    turn: Floats,
    seg_s: Floats,
    kappa: Floats,
    tol: Floats,
    v_top: Floats,
    room: Floats,
    full: np.ndarray,
    lim: Limits,
) -> Floats:
    """Largest corner speed per junction whose zone keeps every filter window in limits.

    ``sj`` junction positions, ``turn`` their direction changes (2 sin(theta/2)),
    ``room`` how far each zone may look (unknown or already travelled path beyond),
    ``full`` junctions next to an arc (their zone is twice as wide, see
    :func:`zone_radius`). The condition is monotone in v (a bigger zone holds more
    turning), so a vectorised bisection on log(v) finds the largest safe speed.
    """
    cum = np.concatenate(([0.0], np.cumsum(turn)))
    kap = np.append(kappa, 0.0)
    m = len(kappa)
    reach = np.where(full, 2.0, 1.5) * lim.window  # corners that can share a window

    def condition(at: np.ndarray | slice) -> Callable[[Floats], np.ndarray]:
        """The condition of junctions ``at`` (each depends on its own speed alone)."""
        reach_at, s_j, full_at, tol_at, room_at = reach[at], sj[at], full[at], tol[at], room[at]

        arcs = bool(full_at.any())  # without arcs nearby the curvature term is 0

        def safe(v: Floats) -> np.ndarray:
            r = v * reach_at
            lo, hi = s_j - r, s_j + r
            c = cum[np.searchsorted(sj, hi, "right")] - cum[np.searchsorted(sj, lo, "left")]
            dev = v * lim.moment * c
            if arcs:
                # clip by hand: np.clip's dispatch costs more than the work at these sizes
                a = np.minimum(np.maximum(np.searchsorted(seg_s, lo, "right") - 1, 0), m - 1)
                b = np.minimum(np.maximum(np.searchsorted(seg_s, hi, "left"), a + 1), m)
                kmax = np.maximum.reduceat(kap, np.stack((a, b), axis=1).ravel())[::2]
                vs = v * lim.sigma
                dev += np.where(full_at, vs * vs * kmax / 2, 0.0)
            return (dev <= tol_at) & (v * c <= lim.jump_budget) & (r <= room_at)

        return safe

    # first guess: each corner and its own arcs alone, which is exact for lone corners
    kap_own = np.maximum(kappa[:-1], kappa[1:])
    mc = lim.moment * turn
    with np.errstate(divide="ignore"):
        guess = np.minimum.reduce(
            [
                v_top,
                2 * tol / (mc + np.sqrt(mc * mc + 2 * lim.sigma**2 * kap_own * tol)),
                lim.jump_budget / turn,
                np.maximum(room, 0.0) / reach,
            ]
        )
    ok = condition(slice(None))(guess)
    if ok.all():
        return guess
    # neighbours share some windows: bisect on log(v) where the guess was too fast
    bad = np.flatnonzero(~ok)
    v = guess.copy()
    hi, lo = guess[bad], np.full(len(bad), 1e-3)
    safe = condition(bad)
    lo_ok = safe(lo)
    for _ in range(14):
        mid = np.sqrt(lo * hi)
        good = safe(mid)
        lo = np.where(good, mid, lo)
        hi = np.where(good, hi, mid)
    v[bad] = np.where(lo_ok, lo, 0.0)
    return v


def zone_radius(v: Floats, full: np.ndarray, lim: Limits) -> Floats:
    """Path length on each side of a corner over which its speed cap holds.

    A window (T1+T2 long) touches a corner's deviation only through the half of the
    window on each side of it, so between lines the cap is needed for v*(T1+T2)/2 only
    (crossed in at least half a window). Next to an arc the whole window must be
    capped, because the circle's shrinkage bound uses the window's top speed.
    """
    return v * lim.window * np.where(full, 1.0, 0.5)


# --- the plan of one run (from the current state to the next stop) ---------------------


class _Plan:
    """The speed profile of one run, from the current state to its next stop.

    Arrays are axis-major (3, m) so that per-tick gathers and arithmetic stream.
    """

    def __init__(
        self, ph: _Phases, s_end: float, end: str, tick0: int, dt: float,
        rows: Floats, seg_s: Floats, first: int, last: int, open_end: bool,
    ) -> None:  # fmt: skip
        t = np.concatenate(([0.0], np.cumsum(ph.dur)))
        self.t0, self.t_end = t[:-1], float(t[-1])
        self.ph_s, self.ph_v, self.ph_half_a = ph.s, ph.v, 0.5 * ph.a
        self.s_end = s_end
        self.end = end  # "stop": at rest at a point to settle on; "halt": held mid-path
        self.open_end = open_end  # the stop is only the end of what has been read
        self.tick0 = tick0  # input tick at which the plan's time is zero
        self.k_end = tick0 + max(1, math.ceil(self.t_end / dt - 1e-9))
        self.seg_s = seg_s
        self.first, self.last = first, last
        self.p0 = np.ascontiguousarray(rows[:, _P0 : _P0 + 3].T)
        self.p1 = np.ascontiguousarray(rows[:, _P1 : _P1 + 3].T)
        self.step = self.p1 - self.p0
        self.inv_len = 1.0 / rows[:, _LEN]
        self.line = rows[:, _LINE].astype(np.int64)
        arc = rows[:, _KIND] == 1.0
        self.arc_rows = rows.copy() if arc.any() else None  # rows is a view of the window
        self.is_arc = arc

    def s_at(self, tau: Floats) -> tuple[Floats, float]:
        """Path positions at plan times ``tau`` (sorted), and the speed at the last one."""
        if len(self.t0) == 0:
            return np.full_like(tau, self.s_end), 0.0
        np.minimum(tau, self.t_end, out=tau)
        k = _run_index(self.t0, tau)
        dt = tau - self.t0.take(k)
        s = self.ph_half_a.take(k) * dt
        s += self.ph_v.take(k)
        s *= dt
        s += self.ph_s.take(k)
        np.minimum(s, self.s_end, out=s)
        last = int(k[-1])
        v = 0.0 if tau[-1] >= self.t_end else self.ph_v[last] + 2 * self.ph_half_a[last] * dt[-1]
        return s, max(v, 0.0)

    def segment_of(self, s: Floats) -> np.ndarray:
        g = _run_index(self.seg_s, s)
        np.maximum(g, self.first, out=g)
        return np.minimum(g, self.last, out=g)

    def points(self, s: Floats, g: np.ndarray, out: Floats) -> None:
        """Points of the programmed path at positions ``s`` in segments ``g``, into out (3, n)."""
        f = s - self.seg_s.take(g)
        f *= self.inv_len.take(g)
        np.maximum(f, 0.0, out=f)
        np.minimum(f, 1.0, out=f)
        self.step.take(g, axis=1, out=out)
        out *= f
        out += self.p0.take(g, axis=1)
        if self.arc_rows is not None:
            arc = np.flatnonzero(self.is_arc.take(g))
            if len(arc):
                out[:, arc] = _arc_points(self.arc_rows[g[arc]], f[arc, None]).T


def _run_index(edges: Floats, x: Floats) -> np.ndarray:
    """searchsorted(edges, x, "right") - 1 for sorted x, from the few edges inside x."""
    lo = max(int(np.searchsorted(edges, x[0], "right")) - 1, 0)
    hi = int(np.searchsorted(edges, x[-1], "right"))
    if hi - lo <= 1:
        return np.full(len(x), lo, dtype=np.intp)
    cuts = np.searchsorted(x, edges[lo + 1 : hi], "left")
    counts = np.diff(np.concatenate(([0], cuts, [len(x)])))
    return np.repeat(np.arange(lo, hi, dtype=np.intp), counts)


def _arc_points(rows: Floats, f: Floats) -> Floats:
    th = rows[:, _TH0 : _TH0 + 1] + rows[:, _SWEEP : _SWEEP + 1] * f
    r = rows[:, _R0 : _R0 + 1] + (rows[:, _R1 : _R1 + 1] - rows[:, _R0 : _R0 + 1]) * f
    p = (
        rows[:, _CEN : _CEN + 3]
        + r * np.cos(th) * rows[:, _E1 : _E1 + 3]
        + r * np.sin(th) * rows[:, _E2 : _E2 + 3]
        + rows[:, _DZ : _DZ + 1] * f * rows[:, _E3 : _E3 + 3]
    )
    return np.where(f >= 1.0, rows[:, _P1 : _P1 + 3], p)


# --- the filter ----------------------------------------------------------------------


class _MovingAverage:
    """n-tap moving average along axis 1 of (3, m) blocks, continuing across blocks.

    Work buffers are kept between calls: fresh multi-100 kB arrays per block cost more
    (page faults) than the arithmetic.
    """

    def __init__(self, n: int, start: Floats) -> None:
        self.n = n
        self.hist = np.tile(start[:, None], (1, n - 1))
        self.ext = np.empty((3, 0))
        self.csum = np.empty((3, 0))

    def __call__(self, x: Floats, out: Floats) -> None:
        if self.n == 1:  # one tap ("arc" blending has no filter): exactly the input
            out[:] = x
            return
        n, h, m = self.n, self.n - 1, x.shape[1]
        if self.ext.shape[1] != h + m:
            self.ext = np.empty((3, h + m))
            self.csum = np.empty((3, h + m + 1))
            self.csum[:, 0] = 0.0
        ext, c = self.ext, self.csum
        ext[:, :h] = self.hist
        ext[:, h:] = x
        self.hist = ext[:, m:].copy()
        ref = x[:, -1:].copy()  # relative to the newest sample: a window at rest is exact
        ext -= ref
        np.cumsum(ext, axis=1, out=c[:, 1:])
        np.subtract(c[:, n:], c[:, :m], out=out)
        out *= 1.0 / n
        out += ref


class _Filter:
    """Two cascaded moving averages per axis; state carries over between blocks."""

    def __init__(self, n1: int, n2: int, start: Floats) -> None:
        self.stage1 = _MovingAverage(n1, start)
        self.stage2 = _MovingAverage(n2, start)
        self.mid = np.empty((3, 0))

    def reset(self, point: Floats) -> None:
        """At rest on ``point`` for longer than the filter: every history holds it."""
        self.stage1.hist[:] = point[:, None]
        self.stage2.hist[:] = point[:, None]

    def __call__(self, x: Floats, at_rest: bool = False) -> Floats:
        """Filtered x; ``at_rest``: x and the whole history are one point (a standstill)."""
        if at_rest:
            return np.repeat(x[:, :1], x.shape[1], axis=1)
        if self.mid.shape != x.shape:
            self.mid = np.empty_like(x)
        self.stage1(x, self.mid)
        out = np.empty_like(x)
        self.stage2(self.mid, out)
        return out


def _batch_rows(b: canon.MotionBatch, start: int, end: int) -> canon.MotionBatch:
    """Rows start..end of a batch as a batch of their own (each row stands alone)."""
    rows = slice(start, end)
    return replace(
        b, line=int(b.lines[start]), lines=b.lines[rows], kind=b.kind[rows],
        feed_set=b.feed_set[rows], feed=b.feed[rows], end=b.end[rows],
        centre=b.centre[rows], rotation=b.rotation[rows],
    )  # fmt: skip


# --- the streaming planner ---------------------------------------------------------------

_MOTION = (canon.StraightTraverse, canon.StraightFeed, canon.ArcFeed)
_BARRIERS = (
    canon.Dwell,
    canon.ProgramStop,
    canon.OptionalProgramStop,
    canon.ProgramEnd,
    canon.ChangeTool,
)


class Planner:
    """Streams a program's moves as servo-rate setpoints, block by block.

    ``load(ops)`` takes canonical ops in the machine frame (mm, mm/min);
    ``advance(n)`` returns the next ``n`` ticks. ``feed_hold``, ``resume``,
    ``set_feed_override`` and ``set_rapid_override`` act from the next block on.
    """

    def __init__(
        self,
        config: MachineConfig,
        settings: PlannerSettings | None = None,
        start: Iterable[float] = (0.0, 0.0, 0.0),
    ) -> None:
        self.config = config
        self.settings = settings or PlannerSettings.from_config(config)
        self.limits = Limits(config, self.settings)
        lim = self.limits
        here = np.array(list(start), dtype=float)
        self._filter = _Filter(lim.n1, lim.n2, here)
        self._rest_point = here.copy()
        self._rest_ticks = lim.settle  # a machine starts settled
        self._prev_pos = here.copy()
        self._prev_vel = np.zeros(3)
        self._line_hist = np.zeros(lim.delay, dtype=np.int64)
        self._tick = -1  # last input tick generated
        self._here = here  # input position at that tick
        self._feed_override = 1.0
        self._rapid_override = 1.0
        self._held = False
        self._end_tick: int | None = None
        self._pending: list[tuple[int, canon.CanonOp]] = []
        self._load(iter(()))

    # --- public surface -------------------------------------------------------------

    def load(self, ops: Iterable[canon.CanonOp]) -> None:
        """Start a program from the current position (ops in machine mm, mm/min).

        Motion batches are read in bulk (see ``_read_batch``); the same program with
        its batches expanded op by op gives the same setpoints and events.
        """
        self._load(iter(ops))

    @property
    def done(self) -> bool:
        """The program ended and every event has been delivered."""
        return self._mode == "done" and not self._pending

    @property
    def paused(self) -> bool:
        """Waiting at M0/M1 for :meth:`resume`."""
        return self._mode == "paused"

    @property
    def position(self) -> Floats:
        """The last setpoint, machine mm."""
        return self._prev_pos.copy()

    @property
    def end_time(self) -> float | None:
        """When the output settled at the program's end (s since load), once known."""
        return (
            None if self._end_tick is None else (self._end_tick - self._t_origin) * self.limits.dt
        )

    def feed_hold(self) -> None:
        self._held = True
        self._dirty = True

    def resume(self) -> None:
        """Leave a feed hold or a program stop (M0/M1)."""
        self._held = False
        self._dirty = True
        if self._mode == "paused":
            self._mode = "stop"

    def set_feed_override(self, factor: float) -> None:
        self._feed_override = min(max(float(factor), 0.0), 2.0)
        self._dirty = True

    def set_rapid_override(self, factor: float) -> None:
        self._rapid_override = min(max(float(factor), 0.0), 2.0)
        self._dirty = True

    def advance(self, n: int) -> SetpointBlock:
        """The next ``n`` servo ticks."""
        first = self._tick + 1
        pos_in = np.empty((3, n))
        line_in = np.empty(n, dtype=np.int64)
        j = 0
        while j < n:
            j = self._step(pos_in, line_in, j, n)
        return self._output(first, pos_in, line_in)

    # --- reading the program ----------------------------------------------------------

    def _load(self, ops: Iterator[canon.CanonOp]) -> None:
        self._ops = ops
        self._front: Iterator[canon.CanonOp] | None = None  # ops to read before _batch
        self._batch: canon.MotionBatch | None = None  # rows from _row on not read yet
        self._row = 0
        self._segs: list[_Segment] = []
        self._rows = _Rows()
        self._actions: deque[tuple[int, canon.CanonOp]] = deque()
        self._gid = 0  # segments read so far
        self._at_gid = -1  # the segment whose end the input stands at (-1: program start)
        self._exhausted = False
        self._feed = 0.0  # mm/s
        self._exact = False
        self._mode_name = "CONTINUOUS"
        self._tol = self.settings.default_tolerance
        self._last_point = tuple(self._here.tolist())
        self._i = 0  # window index of the current segment
        self._s = 0.0  # input position along the window, from the start of segment 0
        self._v = 0.0
        self._plan: _Plan | None = None
        self._mode = "stop"
        self._hold_left = 0
        self._line = 0
        self._dirty = False
        self._fresh = True  # at rest and settled at the start of a run
        self._total = 0.0  # path length of the window
        self._end_tick = None
        self._t_origin = self._tick + 1

    def _ahead(self) -> tuple[int, float]:
        return len(self._segs) - self._i, self._total - self._s

    def _seg_start(self, i: int) -> float:
        return float(sum(s.length for s in self._segs[:i]))

    def _refill(self) -> bool:
        """Read more ops when the lookahead ran low; True if segments were added."""
        if self._exhausted:
            return False
        count, length = self._ahead()
        cap = self.settings.lookahead_segments
        # at rest at the window's end nothing is ahead: read, however small the cap
        if length > 1e-12 and (count >= cap // 2 or length >= self.limits.lookahead / 2):
            return False
        added = False
        while count < cap and length < self.limits.lookahead:
            if self._batch is not None and self._front is None:
                k, length = self._read_batch(cap - count, length)
                count, added = count + k, added or k > 0
                continue
            seg = self._read_one()
            if seg is None:
                if self._batch is not None:  # stopped at a batch: its rows come next
                    continue
                break
            added = True
            count, length = count + 1, length + seg.length
        return added

    def _next_op(self) -> canon.CanonOp | None:
        """The next op to read one by one; None at the end or where a batch comes next."""
        if self._front is not None:
            op = next(self._front, None)
            if op is not None:
                return op
            self._front = None
        if self._batch is not None:
            return None
        op = next(self._ops, None)
        if type(op) is canon.MotionBatch:
            if self.limits.arc_mode:  # blend arcs are placed move by move
                self._front = op.ops()  # type: ignore[attr-defined]
            else:
                self._batch, self._row = op, 0  # type: ignore[assignment]
            return self._next_op()
        return op

    def _read_one(self) -> _Segment | None:
        """Read ops up to and including the next move; None at the end of the program
        (or where a motion batch is to be read next)."""
        while (op := self._next_op()) is not None:
            t = type(op)
            if t in _MOTION:
                seg = self._segment(op)
                if seg is not None:
                    return seg
                continue
            if t is canon.SetFeedRate:
                self._feed = op.rate / 60.0  # type: ignore[attr-defined]
            elif t is canon.SetMotionControlMode:
                self._mode_name = op.mode  # type: ignore[attr-defined]
                self._exact = op.mode != "CONTINUOUS"  # type: ignore[attr-defined]
                tol = op.tolerance  # type: ignore[attr-defined]
                self._tol = tol if tol and tol > 0 else self.settings.default_tolerance
            self._actions.append((self._gid, op))
            if t in _BARRIERS and self._segs and self._segs[-1].gid == self._gid - 1:
                self._end_unblended()
        if self._batch is not None:
            return None
        self._exhausted = True
        if self._segs and self._segs[-1].gid == self._gid - 1:
            self._end_unblended()
        return None

    # --- reading motion batches in bulk ------------------------------------------------

    def _read_batch(self, room: int, length: float) -> tuple[int, float]:
        """Read the current batch's next rows as ``_read_one`` would, with numpy.

        Lines are read up to where the lookahead is full (``room`` more segments, or
        ``length`` reaching the lookahead length, summed in the same order); arcs and
        zero-length moves are left to ``_read_one`` (through ``_front``). Returns the
        segments added and the new ``length``.
        """
        b = self._batch
        assert b is not None
        r, n = self._row, len(b.kind)
        if r >= n:
            self._batch = None
            return 0, length
        e = min(n, r + max(2 * room, 256))  # rows enough for ``room`` segments, mostly
        kind = b.kind[r:e]
        arcs = np.flatnonzero(kind == 2)
        if len(arcs) and arcs[0] == 0:
            lines = np.flatnonzero(kind != 2)
            return self._rows_one_by_one(r + (int(lines[0]) if len(lines) else len(kind))), length
        if len(arcs):
            e = r + int(arcs[0])
        mv = np.flatnonzero(b.kind[r:e] >= 0)
        p1 = b.end[r + mv, :3].astype(float)
        p0 = np.empty_like(p1)
        p0[:1] = self._last_point
        p0[1:] = p1[:-1]
        d = p1 - p0
        ln = np.sqrt(d[:, 0] * d[:, 0] + d[:, 1] * d[:, 1] + d[:, 2] * d[:, 2])
        short = np.flatnonzero(ln < 1e-9)
        if len(short):  # the op path skips it, and later moves start where it started
            if short[0] == 0:
                return self._rows_one_by_one(r + int(mv[0]) + 1), length
            e = r + int(mv[short[0]])
            mv, p0, p1, d, ln = mv[: short[0]], p0[: short[0]], p1[: short[0]], d[: short[0]], ln[: short[0]]  # fmt: skip
        cum = np.cumsum(np.concatenate(([length], ln)))  # sequential, as the op path adds
        full = (np.arange(1, len(ln) + 1) >= room) | (cum[1:] >= self.limits.lookahead)
        k = int(np.argmax(full)) + 1 if full.any() else len(ln)
        if k < len(ln) or full.any():
            e = r + int(mv[k - 1]) + 1 if k else e
        feed = self._batch_feeds(b, r, e)
        self._append_lines(b, r, mv[:k], p0[:k], p1[:k], d[:k], ln[:k], feed)
        self._row = e
        if e >= n:
            self._batch = None
        return k, float(cum[k])

    def _rows_one_by_one(self, end: int) -> int:
        """Hand the current batch's rows up to ``end`` to ``_read_one`` as ops."""
        b = self._batch
        assert b is not None
        self._front = _batch_rows(b, self._row, end).ops()
        self._row = end
        if end >= len(b.kind):
            self._batch = None
        return 0

    def _batch_feeds(self, b: canon.MotionBatch, r: int, e: int) -> Floats:
        """Feed (mm/s) in effect at each of rows r..e; records their SET_FEED_RATEs as
        actions (before the move of their row) and the feed after the last."""
        fs = np.flatnonzero(b.feed_set[r:e])
        if not len(fs):
            return np.full(e - r, self._feed)
        rate = b.feed[r + fs]
        src = np.full(e - r, -1)
        src[fs] = np.arange(len(fs))
        np.maximum.accumulate(src, out=src)
        per_set = rate / 60.0
        feed = np.where(src >= 0, per_set[src], self._feed)
        # a feed set's action goes to the segment its row's move (or the next) makes
        moves_before = np.cumsum(b.kind[r:e] >= 0) - (b.kind[r:e] >= 0)
        gids = (self._gid + moves_before[fs]).tolist()
        lines = b.lines[r + fs].tolist()
        self._actions.extend(
            (g, canon.SetFeedRate(ln, f))
            for g, ln, f in zip(gids, lines, rate.tolist(), strict=True)
        )
        self._feed = float(per_set[-1])
        return feed

    def _append_lines(
        self, b: canon.MotionBatch, r: int, mv: np.ndarray, p0: Floats, p1: Floats,
        d: Floats, ln: Floats, feed: Floats,
    ) -> None:  # fmt: skip
        """Append the line segments of rows ``r + mv`` (numbers as ``_line_row``)."""
        k = len(mv)
        if not k:
            return
        rapid = b.kind[r + mv] == 0
        f = feed[mv]
        slow = np.flatnonzero(~rapid & (f <= 0))
        if len(slow):
            raise PlannerError(
                f"line {int(b.lines[r + mv[slow[0]]])}: feed move with zero feed rate"
            )
        lim = self.limits
        u = d / ln[:, None]
        au = np.abs(u)
        with np.errstate(divide="ignore"):  # an axis that does not move sets no limit
            hard = np.min(lim.vmax / au, axis=1)
            acc = lim.rho * np.min(lim.amax / au, axis=1)
        rows = np.zeros((k, _ROW))
        rows[:, _P0 : _P0 + 3], rows[:, _P1 : _P1 + 3] = p0, p1
        rows[:, _LEN], rows[:, _HARD], rows[:, _ACC], rows[:, _FEED] = ln, hard, acc, f
        rows[:, _RAPID] = rapid
        rows[:, _T0 : _T0 + 3] = rows[:, _T1 : _T1 + 3] = u
        rows[:, _NOM] = ln
        rows[:, _TOL] = self.settings.exact_path_tolerance if self._exact else self._tol
        rows[:, _LINE] = b.lines[r + mv]
        self._rows.extend(rows)
        mode, stop, gid = self._mode_name, self._exact, self._gid
        segs = self._segs
        for j, (length, a0) in enumerate(zip(ln.tolist(), acc.tolist(), strict=True)):
            seg = _Segment(gid + j, length)
            seg.mode, seg.acc0, seg.stop = mode, a0, stop
            segs.append(seg)
        self._gid += k
        self._total = float(np.cumsum(np.concatenate(([self._total], ln)))[-1])
        self._last_point = tuple(p1[-1].tolist())

    def _end_unblended(self) -> None:
        """The last move read ends in a stop that its own mode did not ask for."""
        seg = self._segs[-1]
        if not seg.stop and self.limits.arc_mode:
            # LinuxCNC keeps such a move's parabolic-blend condition: half acceleration
            self._set_acc(len(self._segs) - 1, share=self.settings.unblended_end_share)
        seg.stop = True

    def _set_acc(self, k: int, reserve: float | None = None, share: float | None = None) -> None:
        """Change segment k's acceleration reductions, unless the input already uses it."""
        seg = self._segs[k]
        if k < self._i or (k == self._i and (self._v > 0 or self._s > self._seg_start(k))):
            return
        seg.reserve = seg.reserve if reserve is None else max(seg.reserve, reserve)
        seg.share = seg.share if share is None else share
        self._rows.a[k, _ACC] = seg.acc0 * (1 - seg.reserve) * seg.share

    def _segment(self, op: canon.CanonOp) -> _Segment | None:
        p0 = self._last_point
        tol = self._tol
        if self._exact:  # "arc": a G61 move gives no tolerance of its own to a blend
            tol = math.inf if self.limits.arc_mode else self.settings.exact_path_tolerance
        rapid = type(op) is canon.StraightTraverse
        if not rapid and self._feed <= 0:
            raise PlannerError(f"line {op.line}: feed move with zero feed rate")
        if type(op) is canon.ArcFeed:
            row = _arc_row(op, p0, self.limits, self._feed, tol)  # type: ignore[arg-type]
        else:
            p1 = (float(op.x), float(op.y), float(op.z))  # type: ignore[attr-defined]
            row = _line_row(p0, p1, self.limits, self._feed, rapid)
            if row is None:
                return None
        row[_TOL], row[_LINE] = tol, float(op.line)
        reserve = self._junction(row) if self.limits.arc_mode else 0.0
        seg = self._append(row)
        if reserve > 0:
            self._set_acc(len(self._segs) - 1, reserve=reserve)
        return seg

    def _junction(self, row: list[float]) -> float:
        """LinuxCNC 2.9's junction between the last move read and ``row`` ("arc" mode).

        As its planner (``tpSetupTangent``, ``tpCheckCanonType``, ``tpHandleBlendArc``):
        no blending into or out of G61.1, between a rapid and a feed move, or at a
        reversal (within 2 degrees): those stop. A junction whose direction change at full speed
        costs less than ``kink_ratio`` of the acceleration is passed as tangent, and
        that share is kept back on both moves. Other corners: a blend arc under G64
        (see ``_blend_arc``), else a stop; under G61 the stop keeps ``kink_ratio`` back.
        Where no arc fits under G64 (a helix, a line out of an arc's plane) LinuxCNC
        makes a parabolic blend: the two moves overlap at half acceleration each. A
        stop at full acceleration takes about as long and keeps the path exact.
        Returns the share ``row`` keeps back.
        """
        segs = self._segs
        if not segs or segs[-1].gid != self._gid - 1 or segs[-1].mode == "EXACT_STOP":
            return 0.0
        seg, prev, k = segs[-1], self._rows.a[self._rows.n - 1], len(segs) - 1
        seg.stop = True  # unless shown passable below
        u1, u2 = prev[_T1 : _T1 + 3].tolist(), row[_T0 : _T0 + 3]
        back = sum((a + b) ** 2 for a, b in zip(u1, u2, strict=True))
        if prev[_RAPID] != row[_RAPID] or back < math.radians(2) ** 2:
            return 0.0
        lim, kink = self.limits, self.settings.kink_ratio
        a_inst = min(_requested(prev), _requested(row)) / lim.dt + row[_ACC]
        scale = max(abs(a_inst * (b - a)) / m for a, b, m in zip(u1, u2, lim.amax_f, strict=True))
        if prev[_KIND] == 1.0 or row[_KIND] == 1.0:
            scale /= lim.arc_share
        if scale < kink:
            seg.stop, seg.tangent = False, True
            self._set_acc(k, reserve=scale)
            return scale
        if seg.mode == "CONTINUOUS" and self._blend_into(prev, row):
            return 0.0
        if seg.mode == "EXACT_PATH":
            self._set_acc(k, reserve=kink)
            return kink
        return 0.0

    def _blend_into(self, prev: Floats, row: list[float]) -> bool:
        """Put a blend arc between the last move read and ``row`` if one fits."""
        blend = _blend_arc(prev, row, self.limits, self.settings)
        if blend is None:
            return False
        arc, p_new, n_new = blend
        k = len(self._segs) - 1
        if k <= self._i:  # the input is on that move: keep the trimmed end ahead of braking
            end = self._seg_start(k) + p_new[_LEN]
            if end < self._s + self._v * self._v / (2 * float(prev[_ACC])) + 1e-9:
                return False
        self._total -= float(prev[_LEN]) - p_new[_LEN]
        prev[:] = p_new
        self._segs[-1].length = p_new[_LEN]
        row[:] = n_new
        self._segs[-1].stop = False
        self._append(arc).stop = False  # it ends tangent to row, whatever the mode
        return True

    def _append(self, row: list[float]) -> _Segment:
        seg = _Segment(self._gid, row[_LEN])
        seg.mode, seg.acc0 = self._mode_name, row[_ACC]
        seg.stop = self._exact
        self._gid += 1
        self._segs.append(seg)
        self._rows.append(row)
        self._total += row[_LEN]
        self._last_point = tuple(row[_P1 : _P1 + 3])
        return seg

    # --- the state machine --------------------------------------------------------------

    def _step(self, pos: Floats, line: np.ndarray, j: int, n: int) -> int:
        mode = self._mode
        if mode == "run":
            return self._run(pos, line, j, n)
        if mode == "stop":
            self._at_stop()
            return j
        if mode == "hold":
            m = min(n - j, self._hold_left)
            self._hold_left -= m
            if self._hold_left == 0:
                self._mode = "stop"
        elif mode == "halted" and self._dirty:
            self._mode = "run"
            return j
        else:  # paused, halted, done: stand still
            m = n - j
        pos[:, j : j + m] = self._here[:, None]
        line[j : j + m] = self._line
        self._tick += m
        return j + m

    def _at_stop(self) -> None:
        """At rest and settled at the end of segment ``_at_gid``: act on its ops, go on."""
        self._refill()  # the ops after the last move read so far may be waiting
        while self._actions and self._actions[0][0] <= self._at_gid + 1:
            _, op = self._actions.popleft()
            self._pending.append((self._tick + 1, op))
            self._line = op.line
            t = type(op)
            if t is canon.Dwell:
                self._hold_left = round(op.seconds / self.limits.dt)  # type: ignore[attr-defined]
                if self._hold_left > 0:
                    self._mode = "hold"
                    return
            elif t is canon.ProgramStop or (
                t is canon.OptionalProgramStop and self.settings.optional_stop
            ):
                self._mode = "paused"
                return
            elif t is canon.ProgramEnd:
                self._finish()
                return
        self._refill()
        nxt = self._i + 1 if self._at_gid >= 0 else 0
        if nxt < len(self._segs):
            self._s = self._seg_start(nxt)
            self._i = nxt
            self._drop(nxt)
            self._plan = None
            self._fresh = True
            self._mode = "run"
        elif self._exhausted:
            self._finish()

    def _finish(self) -> None:
        self._mode = "done"
        self._end_tick = max(self._tick, self._t_origin)
        self._ops, self._front, self._batch = iter(()), None, None

    def _drop(self, upto: int) -> None:
        """Forget segments before window index ``upto`` (behind the input)."""
        if upto <= 0:
            return
        gone = self._seg_start(upto)
        self._s -= gone
        self._total -= gone
        del self._segs[:upto]
        self._rows.drop(upto)
        self._i -= upto

    def _drop_passed(self) -> None:
        """Forget segments whose end-corner zone lies wholly behind the input."""
        w = self.limits.window
        end, k = 0.0, 0
        for seg in self._segs[: self._i]:
            end += seg.length
            if end + 2 * seg.corner_speed * w > self._s:
                break
            k += 1
        self._drop(k)

    def _run(self, pos: Floats, line: np.ndarray, j: int, n: int) -> int:
        if self._plan is None or self._dirty or (self._plan.open_end and self._refill()):
            self._replan()
        plan = self._plan
        assert plan is not None
        m = min(n - j, plan.k_end - self._tick)
        tau = (
            np.arange(self._tick + 1 - plan.tick0, self._tick + 1 - plan.tick0 + m) * self.limits.dt
        )
        s, v = plan.s_at(tau)
        g = plan.segment_of(s)
        plan.points(s, g, pos[:, j : j + m])
        plan.line.take(g, out=line[j : j + m])
        self._pass_junctions(g, self._tick + 1)
        self._tick += m
        self._s, self._v, self._i = float(s[-1]), v, int(g[-1])
        self._here = pos[:, j + m - 1].copy()
        self._line = int(line[j + m - 1])
        if self._tick >= plan.k_end:
            self._end_of_plan(plan)
        return j + m

    def _pass_junctions(self, g: np.ndarray, tick: int) -> None:
        """Events of the corners crossed in passing fire when the output gets there.

        An op read before segment ``a`` (its gid) fires at the first junction passed
        whose segment ``k`` has ``gid_k + 1 >= a``; window gids are consecutive, so
        that is ``k = max(i, a - 1 - gid_0)``, found for all such ops at once.
        """
        actions, last = self._actions, int(g[-1])
        if not actions or last <= self._i:
            return
        base = self._segs[0].gid
        top = base + last  # the last junction passed ends segment last - 1
        gids, ops = [], []
        while actions and actions[0][0] <= top:
            a, op = actions.popleft()
            gids.append(a)
            ops.append(op)
        if not gids:
            return
        k = np.maximum(np.array(gids) - (1 + base), self._i)
        at = np.searchsorted(g, k, "right") + (tick + self.limits.delay)
        self._pending.extend(zip(at.tolist(), ops, strict=True))

    def _end_of_plan(self, plan: _Plan) -> None:
        self._v = 0.0
        self._plan = None
        if plan.end == "halt":
            self._mode = "halted"
            return
        # exact stop or the end of the lookahead: settle so the output reaches the point
        self._i = plan.last
        self._s = plan.s_end
        self._at_gid = self._segs[plan.last].gid
        self._here = plan.p1[:, plan.last].copy()
        # one tick more than the window: the plan's last sample may be an ulp off
        self._hold_left = self.limits.settle
        self._mode = "hold"

    # --- planning -------------------------------------------------------------------

    def _replan(self) -> None:
        self._dirty = False
        self._drop_passed()
        segs, i = self._segs, self._i
        last = i
        while last < len(segs) - 1 and not segs[last].stop:
            last += 1
        rows = self._rows.a[: last + 1]
        seg_s = np.concatenate(([0.0], np.cumsum(rows[:, _LEN])))
        open_end = not segs[last].stop  # the window ends where the program goes on
        zones = self._corner_zones(rows, seg_s, open_end)
        if zones is None:  # a corner that cannot be passed safely became an exact stop
            return self._replan()
        soft = self._soft_caps(rows)
        self._plan = self._build(rows, seg_s, zones, soft, last, open_end)
        self._fresh = False

    def _soft_caps(self, rows: Floats) -> Floats:
        """Caps the operator may change: feed and rapid overrides, feed hold."""
        if self._held:
            return np.zeros(len(rows))
        rapid = rows[:, _RAPID] == 1.0
        soft = np.where(
            rapid, rows[:, _HARD] * self._rapid_override, rows[:, _FEED] * self._feed_override
        )
        # below a micrometre per second is standstill (and keeps the times finite)
        return np.where(soft < 1e-3, 0.0, soft)

    def _corner_zones(self, rows: Floats, seg_s: Floats, open_end: bool) -> Floats | None:
        """The corner zones (lo, hi, v) of this run's junctions; None if one became a stop."""
        m = len(rows)
        if m < 2:
            return np.empty((0, 3))
        segs = self._segs[: m - 1]
        sj = seg_s[1:-1]
        turn = np.linalg.norm(rows[1:, _T0 : _T0 + 3] - rows[:-1, _T1 : _T1 + 3], axis=1)
        if self.limits.arc_mode:
            # tangent junctions (blend arcs included) pass at the lower of the two
            # speeds, which the profile's caps give; any other corner is a stop
            kinked = np.array([sg.tangent for sg in segs], dtype=bool)
            blocked = np.flatnonzero((turn > _TANGENT_TURN) & ~kinked & (sj > self._s))
            if len(blocked):
                segs[blocked[0]].stop = True
                return None
            return np.empty((0, 3))
        # a zone must not reach into path not read yet, nor back over path travelled
        # since the last settle (its speed there was planned without this zone)
        room = np.full(m - 1, np.inf) if self._fresh else sj - self._s
        if open_end:
            room = np.minimum(room, seg_s[-1] - sj)
        v_top = np.maximum(rows[:-1, _HARD], rows[1:, _HARD])
        kappa, tol = rows[:, _KAPPA], rows[:-1, _TOL]
        full = (kappa[:-1] > 0) | (kappa[1:] > 0)
        v = zone_speeds(sj, turn, seg_s, kappa, tol, v_top, room, full, self.limits)
        v = np.maximum(v, [sg.corner_speed for sg in segs])  # a planned zone stays valid
        blocked = np.flatnonzero((v <= 0) & (sj > self._s))
        if len(blocked):
            segs[blocked[0]].stop = True
            return None
        for sg, vj in zip(segs, v.tolist(), strict=True):
            sg.corner_speed = vj
        r = zone_radius(v, full, self.limits)
        keep = v < v_top
        return np.stack((sj - r, sj + r, v), axis=1)[keep]

    def _build(
        self, rows: Floats, seg_s: Floats, zones: Floats, soft: Floats, last: int, open_end: bool
    ) -> _Plan:
        i, s0, v0 = self._i, self._s, self._v
        acc = rows[:, _ACC]
        s_hi, end = float(seg_s[last + 1]), "stop"
        zero = np.flatnonzero(soft[i:] <= 0)
        if len(zero):  # held, or a zero override ahead: plan to rest before it
            s_hi, end = max(float(seg_s[i + zero[0]]), s0), "halt"
        parts = []
        # slowing to lower soft caps comes first; it stays under the hard caps because
        # it brakes at least as hard as the plan it replaces, which respected them
        v_to = self._soft_target(seg_s, soft, acc, s0, v0)
        if v0 > v_to:
            pre, s0 = _braking_phases(s0, v0, v_to, seg_s, acc)
            parts.append(pre)
            v0 = v_to
        s_end = s0
        if s_hi - s0 > 1e-12:
            bp, cap, a = self._intervals(seg_s, rows[:, _HARD], soft, zones, acc, s0, s_hi)
            parts.append(speed_profile(bp, cap, a, min(v0, float(cap[0]))))
            s_end = s_hi
        ph = _phases_concat(parts) if parts else _Phases(*(np.empty(0) for _ in range(4)))
        dt = self.limits.dt
        return _Plan(ph, s_end, end, self._tick, dt, rows, seg_s, i, last, open_end)

    def _soft_target(self, seg_s: Floats, soft: Floats, acc: Floats, s0: float, v0: float) -> float:
        """The speed to brake to: the lowest soft cap within the braking distance."""
        if v0 <= 0:
            return 0.0
        i = self._i
        reach = s0 + v0 * v0 / (2 * float(np.min(acc[i:])))
        k = int(np.searchsorted(seg_s, reach, "left"))
        return min(v0, float(np.min(soft[i : max(k, i + 1)])))

    @staticmethod
    def _intervals(
        seg_s: Floats,
        seg_cap: Floats,
        soft: Floats,
        zones: Floats,
        acc: Floats,
        s0: float,
        s_hi: float,
    ) -> tuple[Floats, Floats, Floats]:
        """Elementary intervals of [s0, s_hi] with constant cap and acceleration."""
        inside = (seg_s > s0) & (seg_s < s_hi)
        zb = zones[:, :2].ravel()
        zb = zb[(zb > s0) & (zb < s_hi)]
        bp = np.sort(np.concatenate(([s0, s_hi], seg_s[inside], zb)))
        bp = bp[np.concatenate(([True], np.diff(bp) > 0))]
        mid = 0.5 * (bp[:-1] + bp[1:])
        g = np.clip(np.searchsorted(seg_s, mid, "right") - 1, 0, len(acc) - 1)
        cap = np.minimum(seg_cap[g], soft[g])
        lo = np.searchsorted(bp, np.clip(zones[:, 0], s0, s_hi), "left")
        hi = np.searchsorted(bp, np.clip(zones[:, 1], s0, s_hi), "right") - 1
        # every (zone, interval inside it) pair at once: zones are short, pairs few
        n = np.maximum(hi - lo, 0)
        idx = np.arange(int(n.sum())) + np.repeat(lo - (np.cumsum(n) - n), n)
        np.minimum.at(cap, idx, np.repeat(zones[:, 2], n))
        return bp, cap, acc[g]

    # --- output -----------------------------------------------------------------------

    def _resting(self, pos_in: Floats) -> bool:
        """Whether the filter's window has seen only this block's (constant) point."""
        first = pos_in[:, 0]
        same = bool(np.all(pos_in == first[:, None]))
        if same and np.array_equal(first, self._rest_point):
            self._rest_ticks += pos_in.shape[1]
        else:
            self._rest_ticks = self._trailing_rest(pos_in)
            self._rest_point = pos_in[:, -1].copy()
            return False
        settled = self._rest_ticks - pos_in.shape[1] >= self.limits.settle
        if settled:
            # the histories must hold the point for when motion resumes
            self._filter.reset(first)
        return settled

    @staticmethod
    def _trailing_rest(pos_in: Floats) -> int:
        moving = np.flatnonzero(np.any(pos_in != pos_in[:, -1:], axis=0))
        return pos_in.shape[1] - (int(moving[-1]) + 1 if len(moving) else 0)

    def _output(self, first: int, pos_in: Floats, line_in: np.ndarray) -> SetpointBlock:
        n = pos_in.shape[1]
        rate = 1.0 / self.limits.dt
        pos = self._filter(pos_in, self._resting(pos_in))
        vel = np.empty_like(pos)
        vel[:, 0] = pos[:, 0] - self._prev_pos
        np.subtract(pos[:, 1:], pos[:, :-1], out=vel[:, 1:])
        vel *= rate
        acc = np.empty_like(pos)
        acc[:, 0] = vel[:, 0] - self._prev_vel
        np.subtract(vel[:, 1:], vel[:, :-1], out=acc[:, 1:])
        acc *= rate
        self._prev_pos, self._prev_vel = pos[:, -1].copy(), vel[:, -1].copy()
        feed = vel[0] * vel[0]
        feed += vel[1] * vel[1]
        feed += vel[2] * vel[2]
        np.sqrt(feed, out=feed)
        feed *= 60.0
        lines = np.concatenate((self._line_hist, line_in))
        self._line_hist = lines[n:]
        end = first + n
        events = [Event(t - first, op) for t, op in self._pending if t < end]
        self._pending = [(t, op) for t, op in self._pending if t >= end]
        return SetpointBlock(
            t=np.arange(first - self._t_origin, end - self._t_origin) * self.limits.dt,
            pos=pos.T,
            vel=vel.T,
            acc=acc.T,
            feed=feed,
            line=lines[:n],
            events=events,
        )


# --- whole programs -------------------------------------------------------------------


@dataclass(slots=True)
class Trajectory:
    """A whole program's setpoints (kept in memory: 1 kHz x 3 axes x 3 arrays)."""

    t: Floats
    pos: Floats
    vel: Floats
    acc: Floats
    feed: Floats
    line: np.ndarray
    events: list[tuple[float, canon.CanonOp]]
    duration: float

    def sample(self, t: Floats | float) -> Floats:
        """Positions at times ``t`` (s), linear between ticks, held after the end."""
        tt = np.atleast_1d(np.asarray(t, dtype=float))
        out = np.stack([np.interp(tt, self.t, self.pos[:, k]) for k in range(3)], axis=1)
        return out if np.ndim(t) else out[0]


def plan_program(
    ops: Iterable[canon.CanonOp],
    config: MachineConfig,
    settings: PlannerSettings | None = None,
    start: Iterable[float] = (0.0, 0.0, 0.0),
    block: int = 5000,
    max_seconds: float = 24 * 3600.0,
) -> Trajectory:
    """Plan a whole program (M0/M1 resume at once); its duration is the cycle time."""
    planner = Planner(config, settings, start)
    planner.load(ops)
    parts: list[SetpointBlock] = []
    events: list[tuple[float, canon.CanonOp]] = []
    limit = int(max_seconds * config.servo_rate_hz)
    done = 0
    while not planner.done and done < limit:
        b = planner.advance(block)
        parts.append(b)
        events += [(float(b.t[e.tick]), e.op) for e in b.events]
        done += block
        if planner.paused:
            planner.resume()
    cat = {k: np.concatenate([getattr(b, k) for b in parts]) for k in ("t", "pos", "vel", "acc", "feed", "line")}  # fmt: skip
    duration = planner.end_time if planner.end_time is not None else float(cat["t"][-1])
    return Trajectory(**cat, events=events, duration=duration)
