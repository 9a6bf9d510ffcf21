"""Trajectory planner: limits, path tolerance, exact stops, feed hold, overrides, streaming.

Limits are checked on backward finite differences of the 1 kHz setpoints, exactly what
a drive sees. Slack: positions are float64 of magnitude <= 1e3 mm, so each carries a
rounding error below ~1e-12 mm; a third difference divides by dt^3 = 1e-9 s^3, which
makes <= ~1e-2 mm/s^3 of noise on the jerk (1e-5 mm/s^2 on acceleration). The slack
below is that plus a relative 1e-9.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from machinetwin.gcode import canon
from machinetwin.machine.config import load_machine_config
from machinetwin.machine.planner import Planner, PlannerSettings, SetpointBlock, plan_program

CONFIG = load_machine_config()
DT = 1.0 / CONFIG.servo_rate_hz
AXES = [CONFIG.axes[k] for k in ("x", "y", "z")]
VMAX = np.array([a.max_velocity for a in AXES])
AMAX = np.array([a.max_acceleration for a in AXES])
JMAX = np.array([a.max_jerk for a in AXES])
START = (100.0, 100.0, -100.0)
PROPERTY = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --- helpers -----------------------------------------------------------------------------


def check_limits(pos: np.ndarray, start=START) -> None:
    """Velocity, acceleration and jerk per axis within the machine's limits."""
    p = np.concatenate((np.tile(start, (3, 1)), pos))  # at rest before the first tick
    v = np.diff(p, axis=0) / DT
    a = np.diff(v, axis=0) / DT
    j = np.diff(a, axis=0) / DT
    assert np.all(np.abs(v) <= VMAX * (1 + 1e-9) + 1e-8), np.abs(v).max(axis=0)
    assert np.all(np.abs(a) <= AMAX * (1 + 1e-9) + 1e-5), np.abs(a).max(axis=0)
    assert np.all(np.abs(j) <= JMAX * (1 + 1e-9) + 1e-2), np.abs(j).max(axis=0)


def path_pieces(ops: list[canon.CanonOp], start=START) -> list[tuple]:
    """The programmed path: ("line", a, b) and planar XY ("arc", centre, r, th0, sweep, z)."""
    here = np.array(start, dtype=float)
    pieces: list[tuple] = []
    for op in ops:
        if isinstance(op, canon.StraightFeed | canon.StraightTraverse):
            end = np.array([op.x, op.y, op.z])
            pieces.append(("line", here, end))
            here = end
        elif isinstance(op, canon.ArcFeed):
            assert op.plane == "XY" and op.axis_end == here[2]
            c = np.array([op.first_axis, op.second_axis])
            r = float(np.hypot(*(here[:2] - c)))
            th0 = math.atan2(here[1] - c[1], here[0] - c[0])
            th1 = math.atan2(op.second_end - c[1], op.first_end - c[0])
            ccw = op.rotation > 0
            sweep = (th1 - th0) % (2 * math.pi) if ccw else -((th0 - th1) % (2 * math.pi))
            if abs(sweep) < 1e-12:
                sweep = 2 * math.pi * np.sign(op.rotation)
            pieces.append(("arc", c, r, th0, sweep, here[2]))
            here = np.array([op.first_end, op.second_end, op.axis_end])
    return pieces


def _to_segment(q: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    f = np.clip((q - a) @ ab / max(ab @ ab, 1e-30), 0, 1)
    return np.linalg.norm(q - (a + f[:, None] * ab), axis=1)


def _to_arc(q: np.ndarray, c, r, th0, sweep, z) -> np.ndarray:
    # inside the swept angle the nearest point is radial; outside, an end point
    phi = np.arctan2(q[:, 1] - c[1], q[:, 0] - c[0])
    along = ((phi - th0) * np.sign(sweep)) % (2 * math.pi)
    inside = along <= abs(sweep) + 1e-12
    radial = np.hypot(np.hypot(q[:, 0] - c[0], q[:, 1] - c[1]) - r, q[:, 2] - z)
    ends = [
        np.array([c[0] + r * math.cos(t), c[1] + r * math.sin(t), z]) for t in (th0, th0 + sweep)
    ]
    to_end = np.minimum(*(np.linalg.norm(q - e, axis=1) for e in ends))
    return np.where(inside, radial, to_end)


def distance_to_path(points: np.ndarray, pieces: list[tuple]) -> np.ndarray:
    """Distance of every point to the nearest piece of the path."""
    best = np.full(len(points), np.inf)
    for kind, *args in pieces:
        d = _to_segment(points, *args) if kind == "line" else _to_arc(points, *args)
        np.minimum(best, d, out=best)
    return best


def run(planner: Planner, block: int = 500, limit_s: float = 120.0) -> SetpointBlock:
    """Advance until done; the blocks joined into one."""
    blocks = []
    for _ in range(int(limit_s / (block * DT))):
        blocks.append(planner.advance(block))
        if planner.done:
            break
        if planner.paused:
            planner.resume()
    assert planner.done, "program did not finish"
    return join(blocks)


def join(blocks: list[SetpointBlock]) -> SetpointBlock:
    events = []
    offset = 0
    for b in blocks:
        events += [e._replace(tick=e.tick + offset) for e in b.events]
        offset += len(b.t)
    cols = {k: np.concatenate([getattr(b, k) for b in blocks]) for k in ("t", "pos", "vel", "acc", "feed", "line")}  # fmt: skip
    return SetpointBlock(**cols, events=events)


def program(moves: list[canon.CanonOp], mode: str = "CONTINUOUS", tol: float | None = None, feed: float = 1200.0) -> list[canon.CanonOp]:  # fmt: skip
    return [
        canon.SetMotionControlMode(1, mode, tol),
        canon.SetFeedRate(1, feed),
        *moves,
        canon.ProgramEnd(len(moves) + 2),
    ]


def feeds(points: list[tuple[float, float, float]]) -> list[canon.CanonOp]:
    return [canon.StraightFeed(k + 2, *p) for k, p in enumerate(points)]


def new_planner(**kw) -> Planner:
    return Planner(CONFIG, PlannerSettings(**kw), start=START)


coords = st.tuples(st.floats(60, 140), st.floats(60, 140), st.floats(-140, -60)).map(
    lambda p: tuple(round(c, 3) for c in p)
)


# --- deterministic -----------------------------------------------------------------------


def test_single_line_duration_matches_closed_form() -> None:
    planner = new_planner()
    lim = planner.limits
    feed = 12000.0  # mm/min: the ramp (v/a) outlasts the filter, so the plateau is a
    length = 300.0
    ops = program(feeds([(START[0] + length, START[1], START[2])]), "EXACT_PATH", feed=feed)
    planner.load(ops)
    out = run(planner)
    v, a = feed / 60, lim.rho * AMAX[0]
    t_input = length / v + v / a  # trapezoid of the sampled path
    # the output settles (n1 + n2 - 2) ticks after the input stops; ticks are 1 ms
    expected = t_input + (lim.n1 + lim.n2 - 2) * DT
    assert planner.end_time == pytest.approx(expected, abs=3 * DT)
    # an S-curve: acceleration plateau rho*A, jerk a/T1 (first filter stage)
    assert np.abs(out.acc[:, 0]).max() == pytest.approx(a, rel=1e-6)
    jerk = np.diff(out.acc[:, 0]) / DT
    assert np.abs(jerk).max() == pytest.approx(a / lim.t1, rel=1e-3)
    assert np.abs(out.vel[:, 0]).max() == pytest.approx(v, rel=1e-9)
    np.testing.assert_array_equal(out.pos[-1], [START[0] + length, START[1], START[2]])


def test_short_line_triangular_profile() -> None:
    planner = new_planner()
    lim = planner.limits
    length = 2.0
    planner.load(program(feeds([(START[0], START[1] + length, START[2])]), "EXACT_STOP", feed=6000))
    run(planner)
    a = lim.rho * AMAX[1]
    expected = 2 * math.sqrt(length / a) + (lim.n1 + lim.n2 - 2) * DT
    assert planner.end_time == pytest.approx(expected, abs=3 * DT)


def test_rapid_uses_axis_velocity_limits() -> None:
    end = (START[0] + 300, START[1] + 300, START[2])
    ops = [canon.StraightTraverse(1, *end), canon.ProgramEnd(2)]
    out = plan_program(ops, CONFIG, start=START)
    check_limits(out.pos)
    # diagonal rapid: both axes at their own limit, the path faster than either
    assert np.abs(out.vel[:, :2]).max(axis=0) == pytest.approx(VMAX[:2], rel=1e-9)
    np.testing.assert_array_equal(out.pos[-1], end)


def test_arc_points_on_circle() -> None:
    tol = PlannerSettings().exact_path_tolerance
    cx, cy, r = START[0] + 20, START[1], 20.0
    arc = canon.ArcFeed(2, START[0], START[1], cx, cy, 1, START[2])  # full circle CCW
    out = plan_program(program([arc], "EXACT_PATH", feed=3000), CONFIG, start=START)
    check_limits(out.pos)
    radial = np.hypot(out.pos[:, 0] - cx, out.pos[:, 1] - cy) - r
    assert np.abs(radial).max() <= tol + 1e-9
    assert np.abs(radial).max() > tol / 100  # the filter does round it a little
    np.testing.assert_allclose(out.pos[:, 2], START[2], atol=1e-12)
    # it went all the way round, counter-clockwise
    angle = np.unwrap(np.r_[math.pi, np.arctan2(out.pos[:, 1] - cy, out.pos[:, 0] - cx)])
    assert angle[-1] - angle[0] == pytest.approx(2 * math.pi, abs=1e-9)
    np.testing.assert_allclose(out.pos[-1], START, atol=1e-9)


def test_helix_points_on_helix() -> None:
    tol = 0.02
    cx, cy = START[0] - 10, START[1]
    arc = canon.ArcFeed(2, START[0], START[1], cx, cy, -2, START[2] - 6)  # two turns CW down
    out = plan_program(program([arc], "CONTINUOUS", tol, feed=2000), CONFIG, start=START)
    check_limits(out.pos)
    radial = np.hypot(out.pos[:, 0] - cx, out.pos[:, 1] - cy) - 10
    assert np.abs(radial).max() <= tol + 1e-9
    turned = -np.unwrap(np.arctan2(out.pos[:, 1] - cy, out.pos[:, 0] - cx))
    z_on_helix = START[2] - 6 * turned / (4 * math.pi)
    assert np.abs(out.pos[:, 2] - z_on_helix).max() <= tol
    np.testing.assert_allclose(out.pos[-1], (START[0], START[1], START[2] - 6), atol=1e-9)


SQUARE = [
    (START[0] + 30, START[1], START[2]),
    (START[0] + 30, START[1] + 30, START[2]),
    (START[0], START[1] + 30, START[2]),
    START,
]


def test_square_exact_stop_visits_every_corner() -> None:
    ops = program(feeds(SQUARE), "EXACT_STOP", feed=2400)
    out = plan_program(ops, CONFIG, start=START)
    check_limits(out.pos)
    assert distance_to_path(out.pos, path_pieces(ops)).max() <= 1e-9
    for corner in SQUARE:
        assert np.linalg.norm(out.pos - corner, axis=1).min() <= 1e-9


def test_square_blended_within_tolerance_and_faster() -> None:
    exact = plan_program(program(feeds(SQUARE), "EXACT_PATH", feed=2400), CONFIG, start=START)
    ops = program(feeds(SQUARE), "CONTINUOUS", 0.1, feed=2400)
    blended = plan_program(ops, CONFIG, start=START)
    check_limits(blended.pos)
    dist = distance_to_path(blended.pos, path_pieces(ops))
    assert dist.max() <= 0.1
    assert dist.max() > 0.01  # corners are rounded
    for corner in SQUARE[:3]:
        assert np.linalg.norm(blended.pos - corner, axis=1).min() > 0.01
    np.testing.assert_array_equal(blended.pos[-1], START)
    assert blended.duration < exact.duration


def test_default_tolerance_when_g64_has_no_p() -> None:
    default = PlannerSettings().default_tolerance
    ops = program(feeds(SQUARE), "CONTINUOUS", None, feed=6000)
    out = plan_program(ops, CONFIG, start=START)
    dist = distance_to_path(out.pos, path_pieces(ops))
    assert default / 10 < dist.max() <= default


def test_dwell_is_standstill_for_its_time() -> None:
    moves = [*feeds(SQUARE[:1]), canon.Dwell(3, 0.5), *feeds(SQUARE[1:2])]
    out = plan_program(program(moves, feed=3000), CONFIG, start=START)
    at_corner = np.all(out.pos == SQUARE[0], axis=1)
    assert at_corner.sum() * DT == pytest.approx(0.5, abs=0.003)
    assert any(isinstance(op, canon.Dwell) for _, op in out.events)


def test_program_stop_pauses_until_resume_and_events_have_ticks() -> None:
    moves = [
        canon.SetSpindleSpeed(2, 0, 8000.0),
        *feeds(SQUARE[:1]),
        canon.ProgramStop(4),
        canon.ChangeTool(5, 2),
        *feeds(SQUARE[1:2]),
    ]
    planner = new_planner()
    planner.load(program(moves, feed=3000))
    blocks = [planner.advance(100) for _ in range(40)]
    assert planner.paused
    out = join(blocks)
    kinds = [(e.tick, type(e.op).__name__) for e in out.events]
    names = [k for _, k in kinds]
    assert names.index("SetSpindleSpeed") < names.index("ProgramStop")
    assert "ChangeTool" not in names  # after the stop
    stop_tick = dict((k, t) for t, k in kinds)["ProgramStop"]
    np.testing.assert_array_equal(out.pos[stop_tick], SQUARE[0])  # settled on the point
    np.testing.assert_array_equal(out.pos[-1], SQUARE[0])
    planner.resume()
    rest = run(planner)
    assert [type(e.op).__name__ for e in rest.events][:1] == ["ChangeTool"]
    np.testing.assert_array_equal(rest.pos[-1], SQUARE[1])


def test_block_size_does_not_change_the_setpoints() -> None:
    ops = program(feeds(SQUARE), "CONTINUOUS", 0.05, feed=3000)
    a, b = new_planner(), new_planner()
    a.load(ops)
    b.load(ops)
    pa = np.concatenate([a.advance(100).pos for _ in range(60)])
    pb = np.concatenate([b.advance(n).pos for n in (1, 7, 992, 3000, 2000)])
    np.testing.assert_allclose(pa, pb, atol=1e-9)


def test_long_program_keeps_a_bounded_window() -> None:
    def zigzag():
        yield canon.SetFeedRate(1, 3000.0)
        for k in range(20000):
            yield canon.StraightFeed(k + 2, START[0] + 0.5 * (k % 2), START[1] + 0.01 * k, START[2])

    planner = Planner(CONFIG, PlannerSettings(lookahead_segments=200), start=START)
    planner.load(zigzag())
    for _ in range(50):
        planner.advance(200)
        assert len(planner._segs) <= 200 + 1  # the window, not the program
    assert not planner.done


# --- properties ----------------------------------------------------------------------------


@PROPERTY
@given(
    points=st.lists(coords, min_size=1, max_size=6),
    feed=st.floats(100, 8000),
    exact=st.booleans(),
    tol=st.sampled_from([0.005, 0.02, 0.1, 0.5]),
)
def test_polyline_limits_tolerance_and_end_points(points, feed, exact, tol) -> None:
    mode = "EXACT_STOP" if exact else "CONTINUOUS"
    ops = program(feeds(points), mode, tol, feed=feed)
    out = plan_program(ops, CONFIG, start=START)
    check_limits(out.pos)
    dist = distance_to_path(out.pos, path_pieces(ops))
    assert dist.max() <= (1e-9 if exact else tol + 1e-9)
    np.testing.assert_array_equal(out.pos[-1], points[-1])
    if exact:
        for p in points:
            assert np.linalg.norm(out.pos - p, axis=1).min() <= 1e-9


@PROPERTY
@given(
    steps=st.lists(
        st.tuples(st.floats(0.02, 1.5), st.floats(-2.5, 2.5), st.floats(-0.3, 0.3)),
        min_size=3,
        max_size=60,
    ),
    feed=st.floats(300, 9000),
    tol=st.sampled_from([0.002, 0.01, 0.05, 0.3]),
)
def test_dense_polyline_many_corners_per_window(steps, feed, tol) -> None:
    """Short segments put many corners into one filter window (CAM surfacing)."""
    here, heading, points = np.array(START), 0.0, []
    for length, turn, climb in steps:
        heading += turn
        here = here + length * np.array([math.cos(heading), math.sin(heading), climb])
        points.append(tuple(here.tolist()))
    ops = program(feeds(points), "CONTINUOUS", tol, feed=feed)
    out = plan_program(ops, CONFIG, start=START)
    check_limits(out.pos)
    assert distance_to_path(out.pos, path_pieces(ops)).max() <= tol + 1e-9
    np.testing.assert_array_equal(out.pos[-1], points[-1])


@st.composite
def contours(draw):
    """Lines and XY arcs (with a little helix) from START."""
    here = START
    moves = []
    for k in range(draw(st.integers(1, 5))):
        end = draw(coords)
        if draw(st.booleans()):
            moves.append(canon.StraightFeed(k + 2, *end))
        else:
            mid = ((here[0] + end[0]) / 2, (here[1] + end[1]) / 2)
            chord = (end[0] - here[0], end[1] - here[1])
            half = math.hypot(*chord) / 2
            if half < 0.5:
                continue
            off = draw(st.floats(-2.0, 2.0)) * half
            normal = (-chord[1] / (2 * half), chord[0] / (2 * half))
            centre = (mid[0] + off * normal[0], mid[1] + off * normal[1])
            turn = draw(st.sampled_from([1, -1]))
            end = (end[0], end[1], here[2])  # planar: the distance to it is exact
            moves.append(canon.ArcFeed(k + 2, end[0], end[1], *centre, turn, end[2]))
        here = end
    return moves


@PROPERTY
@given(moves=contours(), feed=st.floats(200, 6000), tol=st.sampled_from([0.01, 0.05, 0.2]))
def test_contour_with_arcs_within_tolerance(moves, feed, tol) -> None:
    assume(moves)
    ops = program(moves, "CONTINUOUS", tol, feed=feed)
    out = plan_program(ops, CONFIG, start=START)
    check_limits(out.pos)
    assert distance_to_path(out.pos, path_pieces(ops)).max() <= tol + 1e-9
    last = moves[-1]
    if isinstance(last, canon.StraightFeed):
        end = (last.x, last.y, last.z)
    else:
        end = (last.first_end, last.second_end, last.axis_end)
    np.testing.assert_array_equal(out.pos[-1], end)


@PROPERTY
@given(
    points=st.lists(coords, min_size=2, max_size=5),
    feed=st.floats(500, 8000),
    hold_after=st.integers(1, 40),
    tol=st.sampled_from([0.01, 0.1]),
)
def test_feed_hold_brakes_on_the_path_and_resumes(points, feed, hold_after, tol) -> None:
    ops = program(feeds(points), "CONTINUOUS", tol, feed=feed)
    pieces = path_pieces(ops)
    planner = new_planner()
    planner.load(ops)
    before = [planner.advance(50) for _ in range(hold_after)]
    if planner.done:
        return
    planner.feed_hold()
    held = [planner.advance(50) for _ in range(40)]
    stop = held[-1].pos[-1]
    np.testing.assert_array_equal(held[-1].vel[-1], 0.0)  # stopped
    # braking: along the output path from the hold to the stop
    travel = np.concatenate([b.pos for b in held])
    travelled = np.linalg.norm(np.diff(np.concatenate((before[-1].pos[-1:], travel)), axis=0), axis=1).sum()  # fmt: skip
    bound = planner.limits.braking_distance(min(feed / 60, float(np.min(VMAX))))
    assert travelled <= bound + 1e-9
    assert distance_to_path(stop[None], pieces)[0] <= tol + 1e-9
    planner.resume()
    rest = run(planner)
    whole = np.concatenate([*(b.pos for b in before), travel, rest.pos])
    check_limits(whole)
    assert distance_to_path(rest.pos, pieces).max() <= tol + 1e-9
    np.testing.assert_array_equal(rest.pos[-1], points[-1])


def test_feed_hold_on_a_long_line_uses_the_braking_distance() -> None:
    far = (START[0] + 300, START[1], START[2])
    planner = new_planner()
    planner.load(program(feeds([far]), feed=6000))
    for _ in range(20):
        b = planner.advance(100)
    assert b.feed[-1] == pytest.approx(6000, rel=1e-6)  # cruising
    at = b.pos[-1].copy()
    planner.feed_hold()
    held = join([planner.advance(100) for _ in range(10)])
    travelled = held.pos[-1][0] - at[0]
    v = 100.0
    a = planner.limits.rho * AMAX[0]
    # braking of the sampled path plus the filter's lag, nothing more
    assert travelled == pytest.approx(v * v / (2 * a) + v * planner.limits.delay * DT, abs=0.2)
    assert travelled <= planner.limits.braking_distance(v)
    np.testing.assert_allclose(held.pos[:, 1:], np.tile(START[1:], (len(held.pos), 1)))


@pytest.mark.parametrize("override", [0.5, 1.5, 2.0])
def test_feed_override_scales_cruise_time(override: float) -> None:
    far = (START[0] + 200, START[1], START[2])
    ops = program(feeds([far]), feed=3000)
    base = plan_program(ops, CONFIG, start=START).duration
    planner = new_planner()
    planner.set_feed_override(override)
    planner.load(ops)
    out = run(planner, block=1000)
    v, a = 50.0, planner.limits.rho * AMAX[0]
    # duration = L/v + v/a + filter, so only the first two terms scale
    expected = base - (200 / v + v / a) + (200 / (v * override) + v * override / a)
    assert planner.end_time == pytest.approx(expected, abs=3 * DT)
    check_limits(out.pos)


def test_rapid_override_scales_rapids_only() -> None:
    far = (START[0] + 400, START[1], START[2])
    ops = [canon.StraightTraverse(1, *far), canon.ProgramEnd(2)]
    planner = new_planner()
    planner.set_rapid_override(0.25)
    planner.load(ops)
    out = run(planner, block=1000)
    assert np.abs(out.vel[:, 0]).max() == pytest.approx(0.25 * VMAX[0], rel=1e-9)


@PROPERTY
@given(
    changes=st.lists(st.tuples(st.integers(1, 15), st.floats(0.0, 2.0)), min_size=1, max_size=4),
    rapid=st.booleans(),
)
def test_override_changes_mid_move_are_smooth(changes, rapid) -> None:
    far = (START[0] + 250, START[1] + 120, START[2] + 40)
    move = canon.StraightTraverse(2, *far) if rapid else canon.StraightFeed(2, *far)
    ops = program([move], feed=9000)
    planner = new_planner()
    planner.load(ops)
    blocks = []
    for wait, factor in changes:
        blocks += [planner.advance(50) for _ in range(wait)]
        (planner.set_rapid_override if rapid else planner.set_feed_override)(factor)
    planner.set_rapid_override(1.0)
    planner.set_feed_override(1.0)
    out = join([*blocks, run(planner)])
    check_limits(out.pos)
    assert distance_to_path(out.pos, path_pieces(ops)).max() <= 1e-9
    np.testing.assert_array_equal(out.pos[-1], far)
