"""From program coordinates to machine coordinates in millimetres.

The interpreter emits moves in the program frame, as LinuxCNC's canonical interface
does; a machine needs absolute positions. :class:`MachineFrame` follows the offset
and unit operations in the stream (like LinuxCNC's ``emccanon``) and rewrites each
move into machine coordinates in mm. Rotary axes stay in degrees.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import replace

import numpy as np

from ..errors import GCodeError
from . import canon
from .state import INCH_MM, rotate


class MachineFrame:
    """Tracks units and offsets from the op stream; converts points to machine mm."""

    def __init__(self) -> None:
        self.scale = 1.0  # mm per program unit
        self.g5x = [0.0] * 6  # mm (linear) / degrees
        self.g92 = [0.0] * 6
        self.tool = [0.0] * 6
        self.rotation = 0.0

    def observe(self, op: canon.CanonOp) -> None:
        t = type(op)
        if t is canon.UseLengthUnits:
            self.scale = INCH_MM if op.units == "inch" else 1.0  # type: ignore[attr-defined]
        elif t is canon.SetWorkOffset:
            self.g5x = self.to_mm(op)
        elif t is canon.SetG92Offset:
            self.g92 = self.to_mm(op)
        elif t is canon.UseToolLengthOffset:
            self.tool = self.to_mm(op)
        elif t is canon.SetXYRotation:
            self.rotation = op.degrees  # type: ignore[attr-defined]

    def to_mm(self, op) -> list[float]:
        k = self.scale
        return [op.x * k, op.y * k, op.z * k, op.a, op.b, op.c]

    def point(self, p: list[float]) -> list[float]:
        """A program-frame point (program units) in machine mm."""
        k = self.scale
        x, y = p[0] * k + self.g92[0], p[1] * k + self.g92[1]
        if self.rotation:
            x, y = rotate(x, y, self.rotation)
        q = [
            x,
            y,
            p[2] * k + self.g92[2],
            p[3] + self.g92[3],
            p[4] + self.g92[4],
            p[5] + self.g92[5],
        ]
        return [q[i] + self.g5x[i] + self.tool[i] for i in range(6)]

    def points(self, p: np.ndarray) -> np.ndarray:
        """Many program-frame points ((n, 6), program units) in machine mm, vectorised."""
        k = self.scale
        q = p.astype(float, copy=True)
        q[:, :3] *= k
        q += self.g92
        if self.rotation:
            x, y = rotate(q[:, 0], q[:, 1], self.rotation)
            q[:, 0], q[:, 1] = x, y
        q += np.asarray(self.g5x) + np.asarray(self.tool)
        return q

    def convert_batch(self, op: canon.MotionBatch) -> canon.MotionBatch:
        first, second, _ = canon.ARC_AXES[op.plane]
        arcs = op.kind == 2
        if self.rotation and op.plane != "XY" and arcs.any():
            raise GCodeError(
                "an XZ or YZ arc under an XY-rotated work system cannot be expressed in the "
                "machine frame",
                int(op.lines[np.argmax(arcs)]),
            )
        centre_points = op.end.copy()
        centre_points[:, first] = op.centre[:, 0]
        centre_points[:, second] = op.centre[:, 1]
        machine_centres = self.points(centre_points)
        centre = np.column_stack([machine_centres[:, first], machine_centres[:, second]])
        centre[~arcs] = np.nan
        return replace(op, end=self.points(op.end), centre=centre, feed=op.feed * self.scale)

    def convert(self, op: canon.CanonOp) -> canon.CanonOp:
        """The op with its coordinates in the machine frame (other ops unchanged)."""
        t = type(op)
        if t is canon.MotionBatch:
            return self.convert_batch(op)  # type: ignore[arg-type]
        if t is canon.StraightTraverse or t is canon.StraightFeed:
            m = self.point([op.x, op.y, op.z, op.a, op.b, op.c])  # type: ignore[attr-defined]
            return t(op.line, *m)  # type: ignore[call-arg]
        if t is canon.ArcFeed:
            return self.convert_arc(op)  # type: ignore[arg-type]
        if t is canon.SetFeedRate:
            return replace(op, rate=op.rate * self.scale)  # type: ignore[attr-defined]
        if t is canon.RigidTap:
            m = self.point([op.x, op.y, op.z, 0.0, 0.0, 0.0])  # type: ignore[attr-defined]
            return canon.RigidTap(op.line, m[0], m[1], m[2])
        self.observe(op)
        return op

    def convert_arc(self, op: canon.ArcFeed) -> canon.ArcFeed:
        if self.rotation and op.plane != "XY":
            raise GCodeError(
                "an XZ or YZ arc under an XY-rotated work system cannot be expressed in the "
                "machine frame",
                op.line,
            )
        first, second, normal = canon.ARC_AXES[op.plane]
        end = [0.0] * 6
        centre = [0.0] * 6
        end[first], end[second], end[normal] = op.first_end, op.second_end, op.axis_end
        centre[first], centre[second], centre[normal] = op.first_axis, op.second_axis, op.axis_end
        end[3:] = [op.a, op.b, op.c]
        centre[3:] = end[3:]
        m_end, m_centre = self.point(end), self.point(centre)
        return replace(
            op,
            first_end=m_end[first],
            second_end=m_end[second],
            first_axis=m_centre[first],
            second_axis=m_centre[second],
            axis_end=m_end[normal],
            a=m_end[3],
            b=m_end[4],
            c=m_end[5],
        )


def to_machine_frame(ops: Iterable[canon.CanonOp]) -> Iterator[canon.CanonOp]:
    """Rewrite a program-frame op stream into machine coordinates in mm (feeds in mm/min).

    Splines (``NurbsFeed``) become short straight feeds along the curve, which every
    follower of the stream (planner, stock, statistics) already understands.
    """
    frame = MachineFrame()
    for op in ops:
        if type(op) is canon.NurbsFeed:
            yield from spline_feeds(frame, op)  # type: ignore[arg-type]
        else:
            yield frame.convert(op)


SPLINE_STEP_MM = 0.5  # chord length along a spline's control polygon
SPLINE_MAX_SEGMENTS = 500


def spline_feeds(frame: MachineFrame, op: canon.NurbsFeed) -> Iterator[canon.StraightFeed]:
    pts = op.points
    polygon = (
        sum(math.hypot(b[0] - a[0], b[1] - a[1]) for a, b in zip(pts, pts[1:], strict=False))
        * frame.scale
    )
    segments = min(SPLINE_MAX_SEGMENTS, max(4, math.ceil(polygon / SPLINE_STEP_MM)))
    for x, y in op.sample(segments):
        m = frame.point([x, y, op.z, op.a, op.b, op.c])
        yield canon.StraightFeed(op.line, *m)
