"""G5.1 quadratic B-splines, as LinuxCNC 2.9 does them.

``G5.1 X Y I J`` runs from the current point to (X, Y) with the control point at the
current point plus (I, J), in the XY plane. LinuxCNC hands the three control points on
as one ``NURBS_FEED`` of order 3 (its canonical layer then turns it into biarcs).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from . import canon

if TYPE_CHECKING:
    from .interpreter import Interpreter
    from .reader import Block


def execute_quadratic(interp: Interpreter, block: Block, target: list[float]) -> None:
    s = interp.state
    w = block.words
    if s.comp_side:
        raise interp.error("Cannot convert spline with cutter radius compensation")
    if s.feed_mode == 930:
        if "f" not in w:
            raise interp.error("F word missing with inverse time arc move")
    elif s.feed_rate == 0.0:
        raise interp.error("Cannot make arc with zero feed rate")
    if s.plane != 170:
        raise interp.error("Splines must be in the XY plane")
    if any(a in w for a in "zabc"):
        raise interp.error("Splines may not have motion in Z, A, B, or C")
    if "i" not in w or "j" not in w:
        raise interp.error("Must specify both I and J with G5.1")
    x0, y0 = s.position[0], s.position[1]
    points = ((x0, y0, 1.0), (x0 + w["i"], y0 + w["j"], 1.0), (target[0], target[1], 1.0))
    z, a, b, c = s.position[2:6]
    interp.emit(canon.NurbsFeed(interp.line, 3, points, z, a, b, c))
    s.position[0], s.position[1] = target[0], target[1]
