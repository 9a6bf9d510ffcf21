"""Polar coordinates: ``@`` radius and ``^`` angle (degrees) in the G17 plane.

LinuxCNC checks the words when the line is read, before any of it runs; end points are
taken about the work origin (absolute) or turned/stretched from the current point
(incremental). Canned cycles use their own rules for the hole position and the repeats.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from ..errors import GCodeError
from .modal import ModalCodes
from .reader import Block
from .state import AXES, ModalState


class PolarCoordinates:
    """Mixed into the Interpreter: ``@``/``^`` words."""

    if TYPE_CHECKING:
        state: ModalState

        def error(self, message: str, col: int = 1) -> GCodeError: ...

    def check_polar(self, block: Block, codes: ModalCodes) -> None:
        """LinuxCNC's checks on ``@``/``^`` when the line is read (before any of it runs)."""
        w = block.words
        g = codes.g
        if self.state.plane != 170:  # the plane in force before this line
            raise self.error("Cannot use polar coordinate except in G17 plane")
        if "x" in w:
            raise self.error("Cannot specify both polar coordinate and X word", block.columns["x"])
        if "y" in w:
            raise self.error("Cannot specify both polar coordinate and Y word", block.columns["y"])
        non_modal = g.get(0)
        covets_axes = non_modal in (100, 280, 300, 520, 920)
        motion = g.get(1)
        if motion is not None:
            if motion == 800 and not covets_axes:
                raise self.error("Cannot use axis values with g80", codes.g_cols[1])
            if motion == 800 and non_modal == 920:
                raise self.error("Polar coordinates can only be used for motion")
            if motion != 800 and covets_axes:
                raise self.error(
                    "Cannot use two g codes that both use axis values", codes.g_cols[1]
                )
        elif covets_axes:
            if non_modal == 520 and not any(a in w for a in AXES):
                raise self.error("All axes missing with g52 or g92")
            raise self.error("Polar coordinates can only be used for motion")
        elif g.get(8) == 431:
            raise self.error("Polar coordinates can only be used for motion")
        elif self.state.motion_mode == 800:
            raise self.error("Cannot use axis values without a g code that uses them")

    def polar_end(self, words: dict[str, float], x: float, y: float) -> tuple[float, float]:
        """The XY end point of a move with ``@``/``^``, about the work origin (find_ends)."""
        radius = words.get("@")
        angle = words.get("^")
        if not self.state.incremental:
            if radius is not None and angle is not None:
                t = math.radians(angle)
                return radius * math.cos(t), radius * math.sin(t)
            if radius is not None:
                if x == 0 and y == 0:
                    raise self.error("Must specify angle in polar coordinate if at the origin")
                t = math.atan2(y, x)
                return radius * math.cos(t), radius * math.sin(t)
            assert angle is not None
            r = math.hypot(y, x)
            t = math.radians(angle)
            return r * math.cos(t), r * math.sin(t)
        # G91: @ adds to the distance from the origin, ^ turns about the origin
        if radius is not None:
            if x == 0 and y == 0:
                raise self.error(
                    "Incremental motion with polar coordinates is indeterminate when at the origin"
                )
            t = math.atan2(y, x)
            r = math.hypot(y, x) + radius
            x, y = r * math.cos(t), r * math.sin(t)
        if angle is not None:
            if x == 0 and y == 0:
                raise self.error(
                    "G91 motion with polar coordinates is indeterminate when at the origin"
                )
            t = math.atan2(y, x) + math.radians(angle)
            r = math.hypot(y, x)
            x, y = r * math.cos(t), r * math.sin(t)
        return x, y

    def polar_cycle_point(self, words: dict[str, float], x: float, y: float) -> tuple[float, float]:
        """G90 canned cycle in G17: the hole from ``@``/``^``, the rest from the current point."""
        radius = words.get("@", math.hypot(y, x))
        t = math.radians(words["^"]) if "^" in words else math.atan2(y, x)
        return radius * math.cos(t), radius * math.sin(t)

    def polar_cycle_step(self, words: dict[str, float], x: float, y: float) -> tuple[float, float]:
        """G91 canned cycle in G17: one repeat's polar increment (LinuxCNC's CYCLE_MACRO)."""
        message = "Incremental motion with polar coordinates is indeterminate when at the origin"
        if words.get("@"):
            if x == 0 and y == 0:
                raise self.error(message)
            t = math.atan2(y, x)
            r = math.hypot(y, x) + words["@"]
            x, y = r * math.cos(t), r * math.sin(t)
        if words.get("^"):
            if x == 0 and y == 0:
                raise self.error(message)
            t = math.atan2(y, x) + math.radians(words["^"])
            r = math.hypot(y, x)
            x, y = r * math.cos(t), r * math.sin(t)
        return x, y
