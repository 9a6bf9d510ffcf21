"""G2/G3 arcs: centre from I/J/K or R, LinuxCNC's tolerance checks, ARC_FEED.

Plane conventions follow LinuxCNC: G17 (X, Y; helix Z), G18 (Z, X; helix Y),
G19 (Y, Z; helix X). Rotation is +P for G3 and -P for G2 in every plane.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from . import canon

if TYPE_CHECKING:
    from .interpreter import Interpreter
    from .reader import Block

# plane -> (first axis index, second axis index, normal axis index, centre words, letters)
PLANES = {
    170: (0, 1, 2, ("i", "j"), "XY"),
    180: (2, 0, 1, ("k", "i"), "ZX"),
    190: (1, 2, 0, ("j", "k"), "YZ"),
}
FORBIDDEN_CENTRE_WORD = {170: ("k", "xy"), 180: ("j", "xz"), 190: ("i", "yz")}
R_FORM_AXES = {170: ("x", "y", "X and y words missing for arc in xy plane"),
               180: ("x", "z", "X and z words missing for arc in xz plane"),
               190: ("y", "z", "Y and z words missing for arc in yz plane")}  # fmt: skip
RADIUS_TOLERANCE = {"inch": 0.00005, "mm": 0.00127}
SPIRAL_ABS_TOLERANCE = {"inch": 0.002828427, "mm": 0.02828427}
SPIRAL_REL_TOLERANCE = 0.001
PLANE_NAMES = {170: "XY", 180: "XZ", 190: "YZ"}


def execute_arc(interp: Interpreter, motion: int, block: Block, target: list[float]) -> None:
    s = interp.state
    w = block.words
    plane = s.plane
    first, second, normal, _, _ = PLANES[plane]
    if s.arc_not_allowed:
        raise interp.error(
            "The move just after exiting cutter compensation mode must be straight, not an arc"
        )
    if "r" not in w and not any(k in w for k in "ijk"):
        raise interp.error("R i j k words all missing for arc")
    if "r" in w and any(k in w for k in "ijk"):
        raise interp.error("Mixed radius ijk format for arc")
    check_arc_feed(interp, block)
    turns = arc_turns(interp, block)
    if s.comp_side and s.comp_radius > 0.0 and plane != 190:  # YZ arcs ignore compensation
        interp.comp_arc(motion, block, target, turns)
        return
    start = s.position
    s1, s2 = start[first], start[second]
    e1, e2 = target[first], target[second]
    c1, c2 = find_centre(interp, motion, block, (s1, s2), (e1, e2))
    rotation = turns if motion == 30 else -turns
    if s.feed_mode == 930:
        length = arc_length((s1, s2), (c1, c2), (e1, e2), rotation, target[normal] - start[normal])
        interp.emit(canon.SetFeedRate(interp.line, length * w["f"]))
    interp.emit(
        canon.ArcFeed(interp.line, e1, e2, c1, c2, rotation, target[normal], *target[3:6],
                      plane=PLANE_NAMES[plane])
    )  # fmt: skip


def find_centre(
    interp: Interpreter,
    motion: int,
    block: Block,
    start: tuple[float, float],
    end: tuple[float, float],
) -> tuple[float, float]:
    """The arc's centre in the plane's (first, second) axes, with LinuxCNC's checks."""
    w = block.words
    plane = interp.state.plane
    _, _, _, centre_words, letters = PLANES[plane]
    if "r" in w:
        a1, a2, message = R_FORM_AXES[plane]
        if a1 not in w and a2 not in w:
            raise interp.error(message)
        return centre_from_radius(interp, motion, w["r"], start, end)
    bad, plane_name = FORBIDDEN_CENTRE_WORD[plane]
    if bad in w:
        raise interp.error(
            f"{bad.upper()} word given for arc in {plane_name} plane", block.columns[bad]
        )
    if interp.state.arc_incremental:
        c1 = start[0] + w.get(centre_words[0], 0.0)
        c2 = start[1] + w.get(centre_words[1], 0.0)
    else:
        for word in sorted(centre_words):
            if word not in w:
                raise interp.error(f"{word.upper()} word missing in absolute center arc")
        c1, c2 = w[centre_words[0]], w[centre_words[1]]
    check_radii(interp, letters, start, (c1, c2), end)
    return c1, c2


def check_arc_feed(interp: Interpreter, block: Block) -> None:
    s = interp.state
    if s.feed_mode == 930:
        if "f" not in block.words:
            raise interp.error("F word missing with inverse time arc move")
    elif s.feed_mode == 950:
        if s.feed_rate == 0.0:
            raise interp.error("Cannot make arc with zero feed rate")
        if s.speed == 0.0:
            raise interp.error("Cannot feed with zero spindle speed in feed per rev mode")
    elif s.feed_rate == 0.0:
        raise interp.error("Cannot make arc with zero feed rate")


def arc_turns(interp: Interpreter, block: Block) -> int:
    if "p" not in block.words:
        return 1
    p = block.words["p"]
    if p != math.floor(p):
        raise interp.error("P value not an integer with M19 G2 or G3", block.columns["p"])
    if p < 1:
        raise interp.error("P value should be 1 or greater with G2 or G3", block.columns["p"])
    return int(p)


def check_radii(interp: Interpreter, letters: str, start, centre, end) -> None:
    units = interp.state.units
    r1 = math.hypot(start[0] - centre[0], start[1] - centre[1])
    r2 = math.hypot(end[0] - centre[0], end[1] - centre[1])
    f, g = letters[0], letters[1]
    where = (
        f"start=({f}{start[0]:.4f},{g}{start[1]:.4f}) center=({f}{centre[0]:.4f},{g}{centre[1]:.4f}) "
        f"end=({f}{end[0]:.4f},{g}{end[1]:.4f}) r1={r1:.4f} r2={r2:.4f}"
    )
    if r1 < RADIUS_TOLERANCE[units] or r2 < RADIUS_TOLERANCE[units]:
        raise interp.error(f"Zero-radius arc: {where}")
    abs_err = abs(r1 - r2)
    rel_err = abs_err / max(r1, r2)
    if abs_err > SPIRAL_ABS_TOLERANCE[units] and rel_err > SPIRAL_REL_TOLERANCE:
        raise interp.error(
            "Radius to end of arc differs from radius to start: "
            f"{where} abs_err={abs_err:.4g} rel_err={rel_err * 100:.4f}%"
        )


def centre_from_radius(
    interp: Interpreter, motion: int, r: float, start, end
) -> tuple[float, float]:
    if end[0] == start[0] and end[1] == start[1]:
        raise interp.error("Current point same as end point of arc")
    radius = abs(r)
    mid1, mid2 = (start[0] + end[0]) / 2, (start[1] + end[1]) / 2
    half = math.hypot(mid1 - end[0], mid2 - end[1])
    if half - radius > RADIUS_TOLERANCE[interp.state.units]:
        raise interp.error("Arc radius too small to reach end point")
    if half / radius > 1 - 1e-12:
        half = radius
    chord = math.atan2(end[1] - start[1], end[0] - start[0])
    if (motion == 20 and r > 0) or (motion == 30 and r < 0):
        theta = chord - math.pi / 2
    else:
        theta = chord + math.pi / 2
    offset = radius * math.cos(math.asin(half / radius))
    return mid1 + offset * math.cos(theta), mid2 + offset * math.sin(theta)


def arc_length(start, centre, end, rotation: int, helix: float) -> float:
    """Length of a (helical) arc, for inverse-time feed."""
    radius = math.hypot(start[0] - centre[0], start[1] - centre[1])
    a0 = math.atan2(start[1] - centre[1], start[0] - centre[0])
    a1 = math.atan2(end[1] - centre[1], end[0] - centre[0])
    if rotation > 0:
        sweep = a1 - a0
        if sweep <= 1e-12:
            sweep += 2 * math.pi
        sweep += 2 * math.pi * (rotation - 1)
    else:
        sweep = a0 - a1
        if sweep <= 1e-12:
            sweep += 2 * math.pi
        sweep += 2 * math.pi * (-rotation - 1)
    return math.hypot(radius * sweep, helix)


def find_turn(x1: float, y1: float, cx: float, cy: float, turn: int, x2: float, y2: float) -> float:
    """Signed angle swept from (x1, y1) to (x2, y2) about (cx, cy) in ``turn`` turns
    (LinuxCNC's find_turn: counter-clockwise positive)."""
    if turn == 0:
        return 0.0
    alpha = math.atan2(y1 - cy, x1 - cx)
    beta = math.atan2(y2 - cy, x2 - cx)
    if turn > 0:
        if beta <= alpha:
            beta += 2 * math.pi
        return beta - alpha + (turn - 1) * 2 * math.pi
    if alpha <= beta:
        alpha += 2 * math.pi
    return beta - alpha + (turn + 1) * 2 * math.pi
