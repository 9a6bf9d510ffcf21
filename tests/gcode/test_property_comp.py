"""Cutter radius compensation must agree with LinuxCNC's rs274 on random profiles.

A profile is a closed star-shaped polygon about the origin (vertices at sorted random
angles and random distances, so corners come out convex and concave), some edges
replaced by arcs bulging in or out, cut with G41 or G42 (tool radius from G41.1's D
diameter or from a tool table D word), entered from outside and left with G40. Where a
corner is too tight for the tool, rs274 rejects the program: then machinetwin must
reject it on the same line.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st

from gcode_differential import compare_program


def fmt(value: float) -> str:
    text = f"{value:.6f}"
    return "0.000000" if text == "-0.000000" else text


@st.composite
def profiles(draw) -> list[tuple[float, float]]:
    n = draw(st.integers(3, 7))
    angles = sorted(draw(st.lists(st.floats(0, 360), min_size=n, max_size=n, unique=True)))
    # keep vertices apart in angle so that no edge is degenerate
    for a, b in zip(angles, angles[1:] + [angles[0] + 360], strict=True):
        if b - a < 12:
            angles = [360 * k / n + draw(st.floats(0, 5)) for k in range(n)]
            break
    points = []
    for a in angles:
        r = draw(st.floats(20, 60))
        t = math.radians(a)
        points.append((float(fmt(r * math.cos(t))), float(fmt(r * math.sin(t)))))
    if draw(st.booleans()):
        points.reverse()  # clockwise
    return points


def arc_words(draw, start, end) -> str | None:
    """G2/G3 with I J from start to end, or None for a straight edge."""
    if not draw(st.booleans()):
        return None
    mx, my = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
    dx, dy = end[0] - start[0], end[1] - start[1]
    length = math.hypot(dx, dy)
    # the centre on the chord's bisector, far enough out that the arc stays gentle
    h = draw(st.floats(0.6, 3.0)) * length * draw(st.sampled_from([-1, 1]))
    cx, cy = mx - dy / length * h, my + dx / length * h
    code = draw(st.sampled_from(["G2", "G3"]))
    return f"{code} X{fmt(end[0])} Y{fmt(end[1])} I{fmt(cx - start[0])} J{fmt(cy - start[1])}"


@st.composite
def compensated_programs(draw) -> str:
    points = draw(profiles())
    side = draw(st.sampled_from(["G41", "G42"]))
    if draw(st.booleans()):
        radius_code = f"{side}.1 D{fmt(draw(st.floats(0.5, 12)))}"
    else:
        radius_code = f"{side} D{draw(st.integers(1, 8))}"  # 1.27 mm per step of D
    first = points[0]
    # start outside the profile, on the line from the origin through the first vertex
    scale = draw(st.floats(1.3, 2.0))
    lines = ["G21 G17 G90 G64", f"F{draw(st.integers(100, 2000))}"]
    lines.append(f"G0 X{fmt(first[0] * scale)} Y{fmt(first[1] * scale)} Z5")
    lines.append("G1 Z-2")
    lines.append(f"{radius_code} G1 X{fmt(first[0])} Y{fmt(first[1])}")
    for start, end in zip(points, points[1:] + points[:1], strict=True):
        words = arc_words(draw, start, end)
        lines.append(words or f"G1 X{fmt(end[0])} Y{fmt(end[1])}")
        if draw(st.integers(0, 9)) == 0:
            lines.append(f"G1 Z{fmt(draw(st.floats(-3, -1)))}")  # no XY motion in a corner
    lines.append("G40")
    lines.append(f"G0 X{fmt(first[0] * scale)} Y{fmt(first[1] * scale)} Z5")
    lines.append("M2")
    return "\n".join(lines) + "\n"


@pytest.mark.service
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(program=compensated_programs())
def test_cutter_compensation_agrees_with_rs274(rs274_available, program):
    note(program)
    agreement = compare_program(program)
    assert agreement.ok, f"{agreement.detail}\n--- program ---\n{program}"


@pytest.mark.service
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(program=compensated_programs(), inch=st.booleans())
def test_compensation_in_the_zx_plane_agrees_with_rs274(rs274_available, program, inch):
    """The same profiles drawn in G18 (Z, X), in either unit."""
    swapped = []
    for line in program.splitlines():
        words = line.split()
        out = []
        for w in words:
            letter = w[0]
            out.append({"X": "Z", "Y": "X", "Z": "Y", "I": "K", "J": "I"}.get(letter, letter) + w[1:]
                       if letter in "XYZIJ" else w)  # fmt: skip
        swapped.append(" ".join(out))
    text = "\n".join(swapped).replace("G17", "G18") + "\n"
    if inch:
        text = text.replace("G21", "G20")
    note(text)
    agreement = compare_program(text)
    assert agreement.ok, f"{agreement.detail}\n--- program ---\n{text}"
