"""Cutter radius compensation, checked by geometry (no LinuxCNC needed).

Whatever the profile, the compensated tool centre must run one tool radius from the
programmed outline, on the chosen side: every compensated end point lies exactly that
far from the outline (concave corners included, where the two offset lines meet), and
every corner arc is centred on a programmed corner with the tool radius. Random
star-shaped outlines give convex and concave corners; LinuxCNC's gouge checks may
refuse a corner too tight for the tool, which the interpreter must report on a line.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, note, reject, settings
from hypothesis import strategies as st

from machinetwin.errors import GCodeError
from machinetwin.gcode import canon, interpret_text

STRAIGHT_ON = 1 - math.cos(0.05) + 1e-9


def fmt(value: float) -> str:
    return f"{value:.6f}"


@st.composite
def outlines(draw) -> list[tuple[float, float]]:
    """A counter-clockwise star-shaped polygon about the origin, vertices 6 decimals."""
    n = draw(st.integers(3, 8))
    base = [360.0 * k / n for k in range(n)]
    angles = [a + draw(st.floats(-0.3, 0.3)) * 360.0 / n for a in base]
    pts = []
    for a in angles:
        r = draw(st.floats(20, 60))
        t = math.radians(a)
        pts.append((float(fmt(r * math.cos(t))), float(fmt(r * math.sin(t)))))
    return pts


def distance_to_segment(p, a, b) -> float:
    ax, ay = a
    bx, by = b
    dx, dy = bx - ax, by - ay
    t = max(0.0, min(1.0, ((p[0] - ax) * dx + (p[1] - ay) * dy) / (dx * dx + dy * dy)))
    return math.hypot(p[0] - ax - t * dx, p[1] - ay - t * dy)


def distance_to_outline(p, pts) -> float:
    return min(distance_to_segment(p, a, b) for a, b in zip(pts, pts[1:] + pts[:1], strict=True))


def inside(p, pts) -> bool:
    """Ray casting."""
    result = False
    for (ax, ay), (bx, by) in zip(pts, pts[1:] + pts[:1], strict=True):
        if (ay > p[1]) != (by > p[1]) and p[0] < ax + (p[1] - ay) * (bx - ax) / (by - ay):
            result = not result
    return result


def compensated_ops(pts, side: str, radius: float) -> list[canon.CanonOp]:
    first, second = pts[0], pts[1]
    # enter in line with the first edge, so that the entry makes no corner of its own
    back = (2 * first[0] - second[0], 2 * first[1] - second[1])
    lines = [
        "G21 G17 G90 F500",
        f"G0 X{fmt(back[0])} Y{fmt(back[1])}",
        f"{side}.1 D{fmt(2 * radius)} G1 X{fmt(first[0])} Y{fmt(first[1])}",
    ]
    lines += [f"G1 X{fmt(x)} Y{fmt(y)}" for x, y in pts[1:] + pts[:1]]
    lines += ["G40", f"G0 X{fmt(first[0] * 2)} Y{fmt(first[1] * 2)}", "M2"]
    text = "\n".join(lines) + "\n"
    note(text)
    ops = list(interpret_text(text))
    on = next(i for i, op in enumerate(ops) if "compensation on" in getattr(op, "text", ""))
    off = next(i for i, op in enumerate(ops) if "compensation off" in getattr(op, "text", ""))
    # G40 flushes the held move, so the "off" comment follows the last compensated move
    return [op for op in ops[on:off] if isinstance(op, canon.MOTION_OPS)]


@settings(max_examples=150, deadline=None)
@given(pts=outlines(), side=st.sampled_from(["G41", "G42"]), radius=st.floats(0.2, 3.0))
def test_tool_centre_runs_one_radius_off_the_outline(pts, side, radius):
    try:
        moves = compensated_ops(pts, side, radius)
    except GCodeError as exc:
        assert exc.line > 0  # a corner too tight for the tool, refused on a line
        reject()
    feeds = [m for m in moves if isinstance(m, canon.StraightFeed)]
    arcs = [m for m in moves if isinstance(m, canon.ArcFeed)]
    vertices = set(pts)
    # not checked: the entry move (its end is set by the entry direction) and the last
    # move (G40 ends it where it is, whatever the corner ahead)
    for op in feeds[1:-1] + arcs:
        end = (op.x, op.y) if isinstance(op, canon.StraightFeed) else (op.first_end, op.second_end)
        # corners within LinuxCNC's 0.05 rad are taken as straight: off by r(1 - cos 0.05)
        assert distance_to_outline(end, pts) == pytest.approx(radius, abs=STRAIGHT_ON * radius)
        # counter-clockwise outline: G42 (right) keeps the tool outside, G41 inside
        assert inside(end, pts) == (side == "G41")
    for arc in arcs:
        assert (arc.first_axis, arc.second_axis) in vertices
        r = math.hypot(arc.first_end - arc.first_axis, arc.second_end - arc.second_axis)
        assert r == pytest.approx(radius, abs=1e-6)
        assert arc.rotation == (1 if side == "G42" else -1)


def test_concave_corner_end_point_is_moved_back():
    """An inside corner of a square notch: the held move ends where the offsets meet."""
    ops = list(
        interpret_text("G21 F100\nG0 X-10 Y5\nG41.1 D2 G1 X0 Y5\nX20\nY20\nG40\nG0 X-10 Y30\nM2\n")
    )
    feeds = [(op.x, op.y) for op in ops if isinstance(op, canon.StraightFeed)]
    # the tool (radius 1) runs on the left: 1 above Y5, then 1 left of X20
    assert feeds[1] == pytest.approx((19.0, 6.0))
    assert feeds[2] == pytest.approx((19.0, 20.0))
    assert not any(isinstance(op, canon.ArcFeed) for op in ops)


def test_feed_and_coolant_wait_behind_the_held_move():
    """LinuxCNC's queue: calls made while a move is held come out after it."""
    ops = list(interpret_text("G21 F100\nG0 X-10\nG41.1 D2 G1 X0\nF50 M8\nX20\nG40\nM2\n"))
    names = [op.rs274_name for op in ops]
    feed_at = names.index("STRAIGHT_FEED")
    assert names[feed_at + 1 : feed_at + 3] == ["SET_FEED_RATE", "FLOOD_ON"]
