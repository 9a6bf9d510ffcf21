"""Program statistics: extents, path lengths, tools and a first cycle-time estimate.

The estimate assumes every move runs at its programmed feed (or the rapid rate) with
no acceleration; the virtual machine's planner gives the real figure.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from . import canon
from .arcs import arc_length
from .frames import to_machine_frame

DEFAULT_RAPID_MM_PER_MIN = 30_000.0  # the default machine: 30 m/min
DEFAULT_TOOL_CHANGE_S = 5.0


@dataclass
class ProgramStats:
    """What a program does, in machine coordinates (mm, seconds)."""

    bbox_min: list[float] = field(default_factory=lambda: [math.inf] * 3)
    bbox_max: list[float] = field(default_factory=lambda: [-math.inf] * 3)
    rapid_mm: float = 0.0
    feed_mm: float = 0.0
    rapid_moves: int = 0
    feed_moves: int = 0
    arcs: int = 0
    tools: list[int] = field(default_factory=list)
    dwell_s: float = 0.0
    cycle_time_s: float = 0.0
    lines: int = 0

    def to_dict(self) -> dict:
        return {
            "bbox_min_mm": self.bbox_min if self.has_motion else None,
            "bbox_max_mm": self.bbox_max if self.has_motion else None,
            "rapid_mm": round(self.rapid_mm, 3),
            "feed_mm": round(self.feed_mm, 3),
            "rapid_moves": self.rapid_moves,
            "feed_moves": self.feed_moves,
            "arcs": self.arcs,
            "tools": self.tools,
            "dwell_s": round(self.dwell_s, 3),
            "cycle_time_s": round(self.cycle_time_s, 2),
        }

    @property
    def has_motion(self) -> bool:
        return self.bbox_min[0] != math.inf


def program_stats(
    ops: Iterable[canon.CanonOp],
    rapid_mm_per_min: float = DEFAULT_RAPID_MM_PER_MIN,
    tool_change_s: float = DEFAULT_TOOL_CHANGE_S,
    start: list[float] | None = None,
    machine_frame: bool = False,
) -> ProgramStats:
    """Statistics of an op stream, converted to machine mm here unless ``machine_frame``."""
    st = ProgramStats()
    pos = list(start or [0.0] * 6)
    feed = 0.0  # mm/min
    per_rev = False
    speed = 0.0
    selected = 0
    lo = np.full(3, np.inf)
    hi = np.full(3, -np.inf)
    for op in ops if machine_frame else to_machine_frame(ops):
        t = type(op)
        if t is canon.StraightTraverse or t is canon.StraightFeed:
            end = [op.x, op.y, op.z, op.a, op.b, op.c]  # type: ignore[attr-defined]
            length = math.dist(pos[:3], end[:3])
            if t is canon.StraightTraverse:
                st.rapid_mm += length
                st.rapid_moves += 1
                st.cycle_time_s += 60.0 * length / rapid_mm_per_min
            else:
                st.feed_mm += length
                st.feed_moves += 1
                st.cycle_time_s += move_time(length, feed, per_rev, speed)
            lo = np.minimum(lo, end[:3])
            hi = np.maximum(hi, end[:3])
            pos = end
        elif t is canon.ArcFeed:
            assert isinstance(op, canon.ArcFeed)
            first, second, normal = canon.ARC_AXES[op.plane]
            length = arc_length(
                (pos[first], pos[second]), (op.first_axis, op.second_axis),
                (op.first_end, op.second_end), op.rotation, op.axis_end - pos[normal],
            )  # fmt: skip
            st.feed_mm += length
            st.arcs += 1
            st.cycle_time_s += move_time(length, feed, per_rev, speed)
            end = list(pos)
            end[first], end[second], end[normal] = op.first_end, op.second_end, op.axis_end
            box = arc_box(
                (pos[first], pos[second]), (op.first_axis, op.second_axis),
                (op.first_end, op.second_end), op.rotation,
            )  # fmt: skip
            for k, axis in enumerate((first, second)):
                lo[axis] = min(lo[axis], box[0][k])
                hi[axis] = max(hi[axis], box[1][k])
            lo[normal] = min(lo[normal], end[normal], pos[normal])
            hi[normal] = max(hi[normal], end[normal], pos[normal])
            pos = end
        elif t is canon.SetFeedRate:
            feed = op.rate  # type: ignore[attr-defined]
        elif t is canon.SetFeedMode:
            per_rev = op.mode == 1  # type: ignore[attr-defined]
        elif t is canon.SetSpindleSpeed:
            speed = op.rpm  # type: ignore[attr-defined]
        elif t is canon.Dwell:
            st.dwell_s += op.seconds  # type: ignore[attr-defined]
            st.cycle_time_s += op.seconds  # type: ignore[attr-defined]
        elif t is canon.SelectTool:
            selected = op.tool  # type: ignore[attr-defined]
        elif t is canon.ChangeTool:
            st.tools.append(selected)
            st.cycle_time_s += tool_change_s
    if np.isfinite(lo).all():
        st.bbox_min = [float(v) for v in lo]
        st.bbox_max = [float(v) for v in hi]
    return st


def arc_box(
    start: tuple[float, float],
    centre: tuple[float, float],
    end: tuple[float, float],
    rotation: int,
) -> tuple[tuple[float, float], tuple[float, float]]:
    """The in-plane bounding box of an arc: its ends plus the circle's extremes it passes."""
    cx, cy = centre
    r = math.hypot(start[0] - cx, start[1] - cy)
    a0 = math.atan2(start[1] - cy, start[0] - cx)
    a1 = math.atan2(end[1] - cy, end[0] - cx)
    ccw = rotation > 0
    sweep = (a1 - a0) % (2 * math.pi) if ccw else (a0 - a1) % (2 * math.pi)
    if sweep < 1e-12:
        sweep = 2 * math.pi  # same start and end: a full circle, as the interpreter reads it
    sweep += 2 * math.pi * (abs(rotation) - 1)
    xs = [start[0], end[0]]
    ys = [start[1], end[1]]
    for k, (dx, dy) in enumerate(((1, 0), (0, 1), (-1, 0), (0, -1))):
        angle = k * math.pi / 2
        to_extreme = (angle - a0) % (2 * math.pi) if ccw else (a0 - angle) % (2 * math.pi)
        if to_extreme <= sweep:
            xs.append(cx + dx * r)
            ys.append(cy + dy * r)
    return (min(xs), min(ys)), (max(xs), max(ys))


def move_time(length_mm: float, feed: float, per_rev: bool, speed: float) -> float:
    rate = feed * speed if per_rev else feed
    return 60.0 * length_mm / rate if rate > 0 else 0.0
