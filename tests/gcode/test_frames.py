"""Program frame -> machine frame in mm, checked against hand calculations."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.errors import GCodeError
from machinetwin.gcode import (
    ProgramSource,
    ToolTable,
    canon,
    interpret,
    interpret_batches,
    interpret_text,
    to_machine_frame,
)

TOOLS = ToolTable.parse("T1 P1 Z50 D10\nT2 P2 Z2 D6\n")  # mm


def machine_moves(text: str, tools: ToolTable = TOOLS) -> list[canon.CanonOp]:
    ops = to_machine_frame(interpret_text(text, tools))
    return [op for op in ops if isinstance(op, canon.MOTION_OPS)]


def xyz(op) -> tuple[float, float, float]:
    return (op.x, op.y, op.z)


def test_work_offset_g92_tool_length_and_units():
    moves = machine_moves(
        "G21 G90\n"
        "G10 L2 P1 X100 Y50 Z-20\n"
        "G54\n"
        "G0 X10 Y20 Z5\n"  # 10+100, 20+50, 5-20
        "G92 X0 Y0\n"  # G92 offset becomes (10, 20, 0)
        "G0 X5 Y5\n"  # 5+10+100, 5+20+50
        "T1 M6\n"
        "G43 H1\n"
        "G0 Z5\n"  # 5 - 20 + 50 (tool)
        "G20\n"
        "G0 X1\n"  # 1 in = 25.4 mm, + 10 + 100
        "G91 G0 Y-0.5\n"  # 75 - 12.7
        "M2\n"
    )
    expected = [
        (110.0, 70.0, -15.0),
        (115.0, 75.0, -15.0),
        (115.0, 75.0, 35.0),
        (135.4, 75.0, 35.0),
        (135.4, 62.3, 35.0),
    ]
    assert len(moves) == len(expected)
    for op, want in zip(moves, expected, strict=True):
        assert xyz(op) == pytest.approx(want, abs=1e-9)


def test_rotated_work_system():
    moves = machine_moves("G10 L2 P2 X10 Y20 R30\nG55\nG0 X10 Y5\nG1 X0 Y0 F100\nM2\n")
    t = math.radians(30)
    x, y = 10 * math.cos(t) - 5 * math.sin(t), 10 * math.sin(t) + 5 * math.cos(t)
    assert xyz(moves[0]) == pytest.approx((x + 10, y + 20, 0.0))
    assert xyz(moves[1]) == pytest.approx((10.0, 20.0, 0.0))


def test_g92_under_rotation_is_rotated_with_the_program_point():
    moves = machine_moves("G10 L2 P1 R90\nG0 X1 Y0\nG92 X0 Y0\nG0 X1 Y0\nM2\n")
    # G92 offset (1, 0) and the point (1, 0) are both rotated: (0, 2)
    assert xyz(moves[-1]) == pytest.approx((0.0, 2.0, 0.0), abs=1e-9)


def test_xy_arc_end_and_centre_move_with_the_frame():
    (arc,) = [
        op
        for op in machine_moves(
            "G10 L2 P1 X100 Y200 Z-10 R90\nG0 X10 Y0\nG3 X0 Y10 I-10 J0 F100\nM2\n"
        )
        if isinstance(op, canon.ArcFeed)
    ]
    # rotated 90 degrees: program (0, 10) -> (-10, 0); centre (0, 0) stays
    assert (arc.first_end, arc.second_end) == pytest.approx((90.0, 200.0))
    assert (arc.first_axis, arc.second_axis) == pytest.approx((100.0, 200.0))
    # G10 on the active system moved the program frame, not the machine: Z stays 0
    assert arc.axis_end == pytest.approx(0.0, abs=1e-9)
    assert arc.rotation == 1


def test_xz_arc_in_inches():
    (arc,) = [
        op
        for op in machine_moves("G20 G18\nG10 L2 P1 X1 Y2 Z3\nG0 X1 Z0\nG2 X0 Z1 R1 F5\nM2\n")
        if isinstance(op, canon.ArcFeed)
    ]
    assert arc.plane == "XZ"
    # first axis Z, second X: end (Z1, X0) -> (4, 1) in, centre on the plane
    assert (arc.first_end, arc.second_end) == pytest.approx((4 * 25.4, 1 * 25.4))
    assert arc.axis_end == pytest.approx(0.0, abs=1e-9)  # Y never moved


def test_xz_arc_under_rotation_is_refused_with_its_line():
    with pytest.raises(GCodeError) as info:
        machine_moves("G10 L2 P1 R10\nG18\nG0 X1 Z0\nG2 X0 Z1 R1 F5\nM2\n")
    assert info.value.line == 4


def test_feed_rates_become_mm_per_minute():
    ops = list(to_machine_frame(interpret_text("G20\nF10\nG1 X1\nF5 G21\nG1 X1\nM2\n")))
    rates = [op.rate for op in ops if isinstance(op, canon.SetFeedRate)]
    # F is set before G20/G21 on the same line takes effect, as in LinuxCNC's canon
    assert rates[:2] == [pytest.approx(254.0), pytest.approx(127.0)]


def test_tool_length_in_an_inch_program_stays_in_mm():
    moves = machine_moves("G20\nT2 M6\nG43 H2\nG0 Z1\nM2\n")
    # 1 in + 2 mm tool length
    assert moves[-1].z == pytest.approx(25.4 + 2.0)


def test_motion_batches_convert_like_the_ops_they_hold() -> None:
    """The fast path's column batches give the same machine-frame moves as single ops."""
    body = "".join(f"G1 X{i} Y{i % 7}\nG2 X{i + 1} Y{i % 7} R0.6\n" for i in range(300))
    text = "G21 G10 L2 P1 X10 Y5 Z-3 R30\nG54 F100\nT1 M6 G43\n" + body + "M2\n"
    table = ToolTable.parse("T1 P1 Z10\n")
    single = list(to_machine_frame(interpret(ProgramSource.from_text(text), table)))
    batched_stream = list(to_machine_frame(interpret_batches(ProgramSource.from_text(text), table)))
    assert any(type(op) is canon.MotionBatch for op in batched_stream)
    batched = list(canon.expand(batched_stream))
    assert len(single) == len(batched)
    for a, b in zip(single, batched, strict=True):
        da, db = a.to_dict(), b.to_dict()
        assert da.keys() == db.keys()
        for key, value in da.items():
            if isinstance(value, float):
                assert abs(value - db[key]) < 1e-9, (key, a, b)
            else:
                assert value == db[key], (key, a, b)


@settings(max_examples=60, deadline=None)
@given(
    start=st.tuples(st.floats(-50, 50), st.floats(-50, 50)),
    control=st.tuples(st.floats(-50, 50), st.floats(-50, 50)),
    end=st.tuples(st.floats(-50, 50), st.floats(-50, 50)),
    inch=st.booleans(),
)
def test_quadratic_spline_becomes_feeds_on_the_curve(start, control, end, inch):
    """G5.1 reaches the machine as straight feeds whose points lie on the quadratic
    Bezier through the three control points, ending at the programmed end, with the
    work offset applied."""
    k = 25.4 if inch else 1.0
    text = (
        f"{'G20' if inch else 'G21'} G10 L2 P1 X100 Y50 Z-20\nG54 F100\n"
        f"G0 X{start[0]:.4f} Y{start[1]:.4f} Z1\n"
        f"G5.1 X{end[0]:.4f} Y{end[1]:.4f} I{control[0] - start[0]:.4f} "
        f"J{control[1] - start[1]:.4f}\nM2\n"
    )
    feeds = [m for m in machine_moves(text) if isinstance(m, canon.StraightFeed)]
    assert len(feeds) >= 4
    p0, p2 = (float(f"{v:.4f}") for v in start), (float(f"{v:.4f}") for v in end)
    p0, p2 = list(p0), list(p2)
    p1 = [
        p0[0] + float(f"{control[0] - start[0]:.4f}"),
        p0[1] + float(f"{control[1] - start[1]:.4f}"),
    ]
    u = np.linspace(0.0, 1.0, 4001)
    curve = np.column_stack([bez(p0[0], p1[0], p2[0], u), bez(p0[1], p1[1], p2[1], u)])
    pts = np.array([(f.x / k - 100, f.y / k - 50) for f in feeds])
    # on the curve: close to B(u) for some u (searched finely)
    gap = np.min(np.hypot(*(pts[:, None, :] - curve[None, :, :]).transpose(2, 0, 1)), axis=1)
    polygon = math.dist(p0, p1) + math.dist(p1, p2)  # bounds the curve's length
    assert gap.max() < 1e-3 * max(1.0, polygon)  # the search's spacing is polygon / 4000
    assert all(f.z == pytest.approx((1 - 20) * k) for f in feeds)
    assert feeds[-1].x / k - 100 == pytest.approx(p2[0], abs=1e-9)
    assert feeds[-1].y / k - 50 == pytest.approx(p2[1], abs=1e-9)


def bez(a: float, b: float, c: float, u):
    return (1 - u) ** 2 * a + 2 * u * (1 - u) * b + u * u * c


def test_rigid_tap_point_in_machine_frame():
    ops = list(
        to_machine_frame(
            interpret_text("G21 G10 L2 P1 X10 Y20 Z-30\nG54\nS500 M3\nG33.1 X1 Y2 Z-5 K1\nM2\n")
        )
    )
    taps = [op for op in ops if isinstance(op, canon.RigidTap)]
    assert [(t.x, t.y, t.z) for t in taps] == [(11.0, 22.0, -35.0)]
