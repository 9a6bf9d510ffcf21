"""The planner's LinuxCNC 2.9 model ("arc" blending): limits, blend arcs, stops, feed hold.

The machine is the default one with ``linuxcnc_planner_config``: the same velocity and
acceleration limits, no jerk limit (so no FIR filtering), tangent blend arcs within the
G64 tolerance. Limits are checked on backward differences of the 1 kHz setpoints, with
the slack explained in test_planner.py.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from machinetwin.configfile import ConfigError
from machinetwin.gcode import canon
from machinetwin.machine.config import linuxcnc_planner_config, load_machine_config
from machinetwin.machine.planner import Planner, PlannerError, PlannerSettings, plan_program

sys.path.insert(0, str(Path(__file__).parent))
from test_planner import (  # noqa: E402
    PROPERTY,
    START,
    contours,
    coords,
    distance_to_path,
    feeds,
    join,
    path_pieces,
    program,
    run,
)

DEFAULT = load_machine_config()
CONFIG = linuxcnc_planner_config(DEFAULT)
DT = 1.0 / CONFIG.servo_rate_hz
AXES = [CONFIG.axes[k] for k in ("x", "y", "z")]
VMAX = np.array([a.max_velocity for a in AXES])
AMAX = np.array([a.max_acceleration for a in AXES])
A_N = math.sqrt(0.75)  # normal share of the acceleration on arcs (tangential 0.5)


def check_limits(pos: np.ndarray, start=START) -> None:
    """Velocity and acceleration per axis within the machine's limits."""
    p = np.concatenate((np.tile(start, (3, 1)), pos))
    v = np.diff(p, axis=0) / DT
    a = np.diff(v, axis=0) / DT
    assert np.all(np.abs(v) <= VMAX * (1 + 1e-9) + 1e-8), np.abs(v).max(axis=0)
    assert np.all(np.abs(a) <= AMAX * (1 + 1e-9) + 1e-5), np.abs(a).max(axis=0)


def speed(pos: np.ndarray) -> np.ndarray:
    return np.linalg.norm(np.diff(pos, axis=0), axis=1) / DT


# --- configuration -------------------------------------------------------------------------


def test_machine_file_selects_the_model() -> None:
    assert PlannerSettings.from_config(DEFAULT).blending == "filter"
    mirrored = PlannerSettings.from_config(CONFIG)
    assert mirrored.blending == "arc"
    assert mirrored.accel_share == 1.0
    assert math.isinf(mirrored.default_tolerance)
    # the axis limits are the default machine's; only the jerk limit is lifted
    for k in ("x", "y", "z"):
        assert CONFIG.axes[k].max_acceleration == DEFAULT.axes[k].max_acceleration
        assert CONFIG.axes[k].max_velocity == DEFAULT.axes[k].max_velocity
        assert CONFIG.axes[k].max_jerk > 1e3 * DEFAULT.axes[k].max_jerk
    planner = Planner(CONFIG, start=START)
    assert planner.limits.n1 == planner.limits.n2 == 1  # no filtering


def test_planner_section_of_a_machine_file(tmp_path: Path) -> None:
    text = resources.files("machinetwin.machine").joinpath("default_vmc.toml").read_text()
    path = tmp_path / "lcnc.toml"
    path.write_text(text + '\n[planner]\nblending = "arc"\ndefault_tolerance = inf\n')
    settings = PlannerSettings.from_config(load_machine_config(path))
    assert settings.blending == "arc" and math.isinf(settings.default_tolerance)
    assert settings.accel_share == PlannerSettings().accel_share  # omitted: the default
    path.write_text(text + '\n[planner]\nblending = "spline"\n')
    with pytest.raises(ConfigError, match="planner.blending"):
        load_machine_config(path)
    path.write_text(text + "\n[planner]\naccel_share = 1.5\n")
    with pytest.raises(ConfigError, match="planner.accel_share"):
        load_machine_config(path)


def test_unknown_blending_is_refused() -> None:
    with pytest.raises(PlannerError, match="blending"):
        PlannerSettings(blending="spline")


# --- deterministic -------------------------------------------------------------------------


def test_single_line_is_an_acceleration_limited_trapezoid() -> None:
    length, feed = 300.0, 12000.0
    ops = program(feeds([(START[0] + length, START[1], START[2])]), "EXACT_STOP", feed=feed)
    out = plan_program(ops, CONFIG, start=START)
    v, a = feed / 60, AMAX[0]
    assert out.duration == pytest.approx(length / v + v / a, abs=2 * DT)
    check_limits(out.pos)
    assert np.abs(out.acc[:, 0]).max() == pytest.approx(a, rel=1e-6)
    np.testing.assert_array_equal(out.pos[-1], [START[0] + length, START[1], START[2]])


def test_g64_corner_is_a_blend_arc_at_its_normal_acceleration() -> None:
    """90 degrees at F6000 with P0.05: LinuxCNC's blend arc and its speed."""
    tol = 0.05
    corner = (START[0] + 30, START[1], START[2])
    ops = program(feeds([corner, (START[0] + 30, START[1] + 30, START[2])]), "CONTINUOUS", tol, feed=6000)  # fmt: skip
    out = plan_program(ops, CONFIG, start=START)
    check_limits(out.pos)
    # tolerance T at a right angle: the arc's distance from the corner is R(sqrt2 - 1)
    radius = tol / (math.sqrt(2) - 1)
    v_corner = math.sqrt(A_N * AMAX[0] * radius)
    near = np.linalg.norm(out.pos - corner, axis=1)
    assert near.min() == pytest.approx(tol, rel=1e-3)
    v = speed(out.pos)
    at = int(np.argmin(near))
    assert v[at - 1] == pytest.approx(v_corner, rel=0.02)
    assert distance_to_path(out.pos, path_pieces(ops)).max() <= tol + 1e-9


def test_full_circle_speed_is_capped_by_its_normal_acceleration() -> None:
    r = 5.0
    arc = canon.ArcFeed(2, START[0], START[1], START[0] + r, START[1], 1, START[2])
    out = plan_program(program([arc], "EXACT_STOP", feed=12000), CONFIG, start=START)
    check_limits(out.pos)
    v_cap = math.sqrt(A_N * AMAX[0] * r)
    v = speed(out.pos)
    assert v.max() == pytest.approx(v_cap, rel=1e-3)
    # tangential acceleration: half of the limit, so the ramps take v/(A/2) each
    assert out.duration == pytest.approx(2 * math.pi * r / v_cap + v_cap / (0.5 * AMAX[0]), abs=3 * DT)  # fmt: skip
    radial = np.hypot(out.pos[:, 0] - START[0] - r, out.pos[:, 1] - START[1]) - r
    assert np.abs(radial).max() <= 1e-9


def test_rapid_to_feed_stops_even_under_g64() -> None:
    mid = (START[0] + 40, START[1], START[2])
    ops = [
        canon.SetMotionControlMode(1, "CONTINUOUS", 0.5),
        canon.SetFeedRate(1, 3000),
        canon.StraightTraverse(2, *mid),
        canon.StraightFeed(3, START[0] + 40, START[1] + 40, START[2]),
        canon.ProgramEnd(4),
    ]
    out = plan_program(ops, CONFIG, start=START)
    assert np.linalg.norm(out.pos - mid, axis=1).min() <= 1e-9  # the corner is visited


def test_g61_corner_keeps_the_kink_share_back() -> None:
    square = [
        (START[0] + 30, START[1], START[2]),
        (START[0] + 30, START[1] + 30, START[2]),
        (START[0], START[1] + 30, START[2]),
    ]
    out = plan_program(program(feeds(square), "EXACT_PATH", feed=6000), CONFIG, start=START)
    check_limits(out.pos)
    kink = PlannerSettings.from_config(CONFIG).kink_ratio
    # every move has a corner at one end at least: 90 % of the acceleration
    assert np.abs(out.acc).max() == pytest.approx((1 - kink) * AMAX[0], rel=1e-6)
    for p in square:
        assert np.linalg.norm(out.pos - p, axis=1).min() <= 1e-9


def test_g64_move_ending_the_program_has_half_acceleration() -> None:
    far = (START[0] + 100, START[1], START[2])
    g64 = plan_program(program(feeds([far]), "CONTINUOUS", 0.1, feed=12000), CONFIG, start=START)
    g61 = plan_program(program(feeds([far]), "EXACT_STOP", feed=12000), CONFIG, start=START)
    assert np.abs(g64.acc[:, 0]).max() == pytest.approx(0.5 * AMAX[0], rel=1e-6)
    assert np.abs(g61.acc[:, 0]).max() == pytest.approx(AMAX[0], rel=1e-6)
    assert g64.duration > g61.duration


def test_reversal_stops_at_the_turning_point() -> None:
    turn = (START[0] + 20, START[1], START[2])
    ops = program(feeds([turn, (START[0] + 5, START[1], START[2])]), "CONTINUOUS", 0.5, feed=3000)
    out = plan_program(ops, CONFIG, start=START)
    assert out.pos[:, 0].max() == pytest.approx(turn[0], abs=1e-9)
    check_limits(out.pos)


def test_line_arc_corners_are_blended_within_tolerance() -> None:
    """Scallops: a line, then a half circle starting at right angles to it, and so on."""
    tol, x, moves = 0.1, START[0], []
    for k in range(4):
        moves += [
            canon.ArcFeed(2 * k + 2, x + 5, START[1], x + 2.5, START[1], 1, START[2]),
            canon.StraightFeed(2 * k + 3, x + 10, START[1], START[2]),
        ]
        x += 10
    ops = program(moves, "CONTINUOUS", tol, feed=4000)
    out = plan_program(ops, CONFIG, start=START)
    check_limits(out.pos)
    dist = distance_to_path(out.pos, path_pieces(ops))
    assert tol / 10 < dist.max() <= tol + 1e-9  # corners are cut, within the tolerance
    stopped = plan_program(program(moves, "EXACT_PATH", feed=4000), CONFIG, start=START)
    assert out.duration < 0.95 * stopped.duration
    v = speed(out.pos)
    corners = [(START[0] + 10 * k, START[1], START[2]) for k in range(1, 4)]
    for c in corners:  # passed without stopping
        at = int(np.argmin(np.linalg.norm(out.pos - c, axis=1)))
        assert v[at - 1] > 5.0
    np.testing.assert_array_equal(out.pos[-1], (x, START[1], START[2]))


# --- properties ----------------------------------------------------------------------------


@PROPERTY
@given(
    points=st.lists(coords, min_size=1, max_size=6),
    feed=st.floats(100, 8000),
    mode=st.sampled_from(["EXACT_STOP", "EXACT_PATH", "CONTINUOUS"]),
    tol=st.sampled_from([0.005, 0.02, 0.1, 0.5]),
)
def test_polyline_limits_tolerance_and_end_points(points, feed, mode, tol) -> None:
    ops = program(feeds(points), mode, tol, feed=feed)
    out = plan_program(ops, CONFIG, start=START)
    check_limits(out.pos)
    dist = distance_to_path(out.pos, path_pieces(ops))
    exact = mode != "CONTINUOUS"
    assert dist.max() <= (1e-9 if exact else tol + 1e-9)
    np.testing.assert_array_equal(out.pos[-1], points[-1])
    if exact:
        for p in points:
            assert np.linalg.norm(out.pos - p, axis=1).min() <= 1e-9


@PROPERTY
@given(
    steps=st.lists(
        st.tuples(st.floats(0.05, 1.5), st.floats(-2.5, 2.5), st.floats(-0.3, 0.3)),
        min_size=3,
        max_size=60,
    ),
    feed=st.floats(300, 9000),
    tol=st.sampled_from([0.002, 0.01, 0.05, 0.3]),
)
def test_dense_polyline_within_tolerance(steps, feed, tol) -> None:
    """Short segments (CAM surfacing): a blend arc at nearly every junction."""
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
    steps=st.lists(
        st.tuples(st.floats(0.05, 20.0), st.floats(-2.5, 2.5), st.floats(-0.3, 0.3)),
        min_size=2,
        max_size=30,
    ),
    feed=st.floats(300, 12000),
    tol=st.sampled_from([0.002, 0.05, 0.3]),
    window=st.tuples(st.integers(2, 8), st.floats(1.0, 50.0)),
    block=st.integers(50, 700),
)
def test_small_lookahead_windows_keep_limits_and_path(steps, feed, tol, window, block) -> None:
    """Blend arcs trim moves already read while the window streams in and out."""
    here, heading, points = np.array(START), 0.0, []
    for length, turn, climb in steps:
        heading += turn
        here = here + length * np.array([math.cos(heading), math.sin(heading), climb])
        points.append(tuple(here.tolist()))
    ops = program(feeds(points), "CONTINUOUS", tol, feed=feed)
    settings = dataclasses.replace(
        PlannerSettings.from_config(CONFIG),
        lookahead_segments=window[0],
        lookahead_length=window[1],
    )
    planner = Planner(CONFIG, settings, start=START)
    planner.load(ops)
    out = run(planner, block=block)
    check_limits(out.pos)
    assert distance_to_path(out.pos, path_pieces(ops)).max() <= tol + 1e-9
    np.testing.assert_array_equal(out.pos[-1], points[-1])


@st.composite
def planar_contours(draw):
    """Lines and XY arcs in one plane: every corner may get a blend arc."""
    here, moves = START, []
    for k in range(draw(st.integers(1, 6))):
        end = (*draw(coords)[:2], START[2])
        chord = (end[0] - here[0], end[1] - here[1])
        half = math.hypot(*chord) / 2
        if half < 0.5:
            continue
        if draw(st.booleans()):
            moves.append(canon.StraightFeed(k + 2, *end))
        else:
            off = draw(st.floats(-2.0, 2.0)) * half
            normal = (-chord[1] / (2 * half), chord[0] / (2 * half))
            centre = (here[0] + chord[0] / 2 + off * normal[0], here[1] + chord[1] / 2 + off * normal[1])  # fmt: skip
            moves.append(canon.ArcFeed(k + 2, end[0], end[1], *centre, draw(st.sampled_from([1, -1])), end[2]))  # fmt: skip
        here = end
    return moves


@PROPERTY
@given(moves=planar_contours(), feed=st.floats(200, 9000), tol=st.sampled_from([0.01, 0.05, 0.5]))
def test_planar_contour_blends_within_tolerance(moves, feed, tol) -> None:
    assume(moves)
    ops = program(moves, "CONTINUOUS", tol, feed=feed)
    out = plan_program(ops, CONFIG, start=START)
    check_limits(out.pos)
    assert distance_to_path(out.pos, path_pieces(ops)).max() <= tol + 1e-9
    last = moves[-1]
    end = (last.x, last.y, last.z) if isinstance(last, canon.StraightFeed) else (last.first_end, last.second_end, last.axis_end)  # fmt: skip
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
    planner = Planner(CONFIG, start=START)
    planner.load(ops)
    before = [planner.advance(50) for _ in range(hold_after)]
    if planner.done:
        return
    planner.feed_hold()
    held = [planner.advance(50) for _ in range(40)]
    stop = held[-1].pos[-1]
    np.testing.assert_array_equal(held[-1].vel[-1], 0.0)
    travel = np.concatenate([b.pos for b in held])
    steps = np.diff(np.concatenate((before[-1].pos[-1:], travel)), axis=0)
    bound = planner.limits.braking_distance(min(feed / 60, float(np.min(VMAX))))
    assert np.linalg.norm(steps, axis=1).sum() <= bound + 1e-9
    assert distance_to_path(stop[None], pieces)[0] <= tol + 1e-9
    planner.resume()
    rest = run(planner)
    check_limits(np.concatenate([*(b.pos for b in before), travel, rest.pos]))
    assert distance_to_path(rest.pos, pieces).max() <= tol + 1e-9
    np.testing.assert_array_equal(rest.pos[-1], points[-1])


def test_block_size_does_not_change_the_setpoints() -> None:
    rnd = np.random.default_rng(3)
    points = [tuple((np.array(START) + rnd.uniform(-30, 30, 3)).tolist()) for _ in range(12)]
    ops = program(feeds(points), "CONTINUOUS", 0.05, feed=4000)
    outs = []
    for block in (7, 500, 4096):
        planner = Planner(CONFIG, start=START)
        planner.load(ops)
        outs.append(join([planner.advance(block) for _ in range(6000 // block + 2)]))
    n = min(len(o.pos) for o in outs)
    for o in outs[1:]:
        np.testing.assert_array_equal(o.pos[:n], outs[0].pos[:n])
