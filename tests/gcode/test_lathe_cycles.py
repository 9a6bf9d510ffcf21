"""Lathe cycles checked by geometry (no LinuxCNC needed) and their error reports."""

from __future__ import annotations

import math

from hypothesis import given, note, settings
from hypothesis import strategies as st

from machinetwin.errors import GCodeError
from machinetwin.gcode import canon, check_program, interpret_text


def fmt(value: float) -> str:
    return f"{value:.4f}"


@st.composite
def stepped_profiles(draw) -> list[tuple[float, float]]:
    """(z, x) corners of a turned part: X rising, Z falling, straight steps and tapers."""
    z, x = 0.0, float(fmt(draw(st.floats(0.0, 2.0))))
    points = [(z, x)]
    along = True
    for _ in range(draw(st.integers(2, 6))):
        if along:  # along -Z, sometimes tapering out
            z -= draw(st.floats(2.0, 8.0))
            x += draw(st.sampled_from([0.0, draw(st.floats(0.5, 2.0))]))
        else:  # out in X
            x += draw(st.floats(1.0, 4.0))
        points.append((float(fmt(z)), float(fmt(x))))
        along = not along
    if not along:
        x += draw(st.floats(1.0, 3.0))
        points.append((points[-1][0], float(fmt(x))))
    z -= draw(st.floats(1.0, 4.0))
    points.append((float(fmt(z)), points[-1][1]))
    return points


def distance_to_profile(z: float, x: float, pts: list[tuple[float, float]]) -> float:
    best = math.inf
    for (az, ax), (bz, bx) in zip(pts, pts[1:], strict=False):
        dz, dx = bz - az, bx - ax
        t = max(0.0, min(1.0, ((z - az) * dz + (x - ax) * dx) / (dz * dz + dx * dx)))
        best = min(best, math.hypot(z - az - t * dz, x - ax - t * dx))
    return best


@settings(max_examples=80, deadline=None)
@given(pts=stepped_profiles(), d=st.floats(0.1, 1.0), i=st.floats(0.3, 1.5))
def test_roughing_stops_the_finishing_allowance_short_of_the_part(pts, d, i):
    """G71 never takes the tool closer to the finished profile than its D allowance, and
    its passes are at most I apart."""
    top = max(x for _, x in pts) + 2.0
    lines = ["G18 G21 G90 F300", "o100 sub"]
    lines += [f"  G1 X{fmt(x)} Z{fmt(z)}" for z, x in pts]
    lines += ["o100 endsub", f"G0 X{fmt(top)} Z2", f"G71 Q100 X{fmt(top)} Z2 D{d:.4f} I{i:.4f}"]
    lines += ["M2"]
    text = "\n".join(lines) + "\n"
    note(text)
    ops = list(interpret_text(text))
    cuts = [op for op in ops if isinstance(op, canon.StraightFeed)]
    assert cuts, "no roughing passes"
    for op in cuts:
        assert distance_to_profile(op.z, op.x, pts) >= float(f"{d:.4f}") - 1e-6
    levels = sorted({round(op.x, 9) for op in cuts if op.x < top})
    gaps = [b - a for a, b in zip(levels, levels[1:], strict=False)]
    assert all(g <= float(f"{i:.4f}") + 1e-6 for g in gaps)


def test_cycle_errors_name_the_cycle_line(tmp_path):
    """LinuxCNC reports G7x errors on the profile's last line; the message adds the cycle's."""
    path = tmp_path / "bad.ngc"
    path.write_text(
        "G21 G18 F100\no100 sub\n  G0 X1 Z0\n  G1 X5 Z-5\no100 endsub\nG0 X10 Z2\n"
        "G71 Q100 X10 Z2 I-1\nM2\n"
    )
    errors = check_program(path)
    assert len(errors) == 1
    assert errors[0].line == 5  # o100 endsub, as rs274
    assert "I must be greater than zero" in errors[0].message
    assert "cycle on line 7" in errors[0].message


def test_cycle_outside_the_zx_plane_is_refused():
    try:
        list(interpret_text("G21 G17 F100\no1 sub\nG1 X1 Z1\no1 endsub\nG71 Q1 X5 Z2\nM2\n"))
    except GCodeError as exc:
        assert exc.line == 5
        assert "XZ plane (G18)" in exc.message
    else:
        raise AssertionError("G71 in G17 was accepted")


def test_profile_reading_runs_loops_and_parameters():
    """The profile subroutine's flow control and #<_x> see the profile's own points."""
    text = (
        "G21 G18 F100\no100 sub\n  G0 X0 Z0\n  o101 repeat [3]\n"
        "    G1 X[#<_x> + 2] Z[#<_z> - 2]\n    G1 Z[#<_z> - 1]\n  o101 endrepeat\no100 endsub\n"
        "G0 X10 Z2\nG70 Q100 X10 Z2 P1\nM2\n"
    )
    feeds = [op for op in interpret_text(text) if isinstance(op, canon.StraightFeed)]
    # the finishing pass follows the six profile lines to X6 Z-9
    assert (feeds[-1].x, feeds[-1].z) == (6.0, -9.0)
    assert len(feeds) == 6
