"""Canonical machining operations: what the interpreter asks a machine to do.

These mirror LinuxCNC's canonical machining functions (``canon.hh``). Each operation
carries the 1-based source ``line`` it came from. Coordinates are in the *program*
frame (current length units, relative to the active work offset, G92 offset and tool
length offset), exactly what LinuxCNC's ``rs274 -g`` prints; :mod:`.frames` turns a
stream of them into machine coordinates in millimetres.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, fields
from typing import Any, ClassVar

# An ArcFeed's (first, second, normal) axes per plane, as indices into x, y, z
ARC_AXES = {"XY": (0, 1, 2), "XZ": (2, 0, 1), "YZ": (1, 2, 0)}


@dataclass(slots=True, frozen=True)
class CanonOp:
    """Base of all canonical operations."""

    line: int
    rs274_name: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"op": self.rs274_name}
        for f in fields(self):
            out[f.name] = getattr(self, f.name)
        return out


# --- motion -----------------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class StraightTraverse(CanonOp):
    """Rapid move (G0) to the given end point."""

    x: float
    y: float
    z: float
    a: float = 0.0
    b: float = 0.0
    c: float = 0.0
    rs274_name: ClassVar[str] = "STRAIGHT_TRAVERSE"


@dataclass(slots=True, frozen=True)
class StraightFeed(CanonOp):
    """Linear move at the feed rate (G1 and the feed parts of canned cycles)."""

    x: float
    y: float
    z: float
    a: float = 0.0
    b: float = 0.0
    c: float = 0.0
    rs274_name: ClassVar[str] = "STRAIGHT_FEED"


@dataclass(slots=True, frozen=True)
class StraightProbe(CanonOp):
    """Probing move (G38.2-G38.5) towards the given point, at the feed rate.

    Where it stops depends on the probe; the interpreter takes the point the machine
    reports afterwards (LinuxCNC's standalone canon: 0.254 mm / 0.01 in short of it).
    """

    x: float
    y: float
    z: float
    a: float = 0.0
    b: float = 0.0
    c: float = 0.0
    rs274_name: ClassVar[str] = "STRAIGHT_PROBE"


@dataclass(slots=True, frozen=True)
class ArcFeed(CanonOp):
    """Circular or helical move in the active plane.

    ``first``/``second`` are the in-plane axes (X,Y for G17; Z,X for G18; Y,Z for
    G19), ``rotation`` is +n for n counter-clockwise turns and -n for clockwise, and
    ``axis_end`` is the end on the axis normal to the plane.
    """

    first_end: float
    second_end: float
    first_axis: float
    second_axis: float
    rotation: int
    axis_end: float
    a: float = 0.0
    b: float = 0.0
    c: float = 0.0
    plane: str = "XY"
    rs274_name: ClassVar[str] = "ARC_FEED"


@dataclass(slots=True, frozen=True)
class NurbsFeed(CanonOp):
    """A rational B-spline in the XY plane at the feed rate (G5.1 quadratic splines).

    ``points`` are the control points (x, y, weight), the first being the start point;
    ``order`` is the spline's order (3 for G5.1). The other axes stay where they are:
    ``z a b c`` repeat the current position so that the move can be followed without
    knowing it (rs274 prints only the number of control points).
    """

    order: int
    points: tuple[tuple[float, float, float], ...]
    z: float = 0.0
    a: float = 0.0
    b: float = 0.0
    c: float = 0.0
    rs274_name: ClassVar[str] = "NURBS_FEED"

    def sample(self, segments: int) -> list[tuple[float, float]]:
        """Points along the curve (a rational Bezier: as many control points as the order)."""
        pts = self.points
        out = []
        for n in range(1, segments + 1):
            u = n / segments
            # de Casteljau on homogeneous coordinates (x*w, y*w, w)
            h = [(x * w, y * w, w) for x, y, w in pts]
            while len(h) > 1:
                h = [tuple((1 - u) * a + u * b for a, b in zip(p, q, strict=True))
                     for p, q in zip(h, h[1:], strict=False)]  # fmt: skip
            x, y, w = h[0]
            out.append((x / w, y / w))
        return out


@dataclass(slots=True, frozen=True)
class StartSpeedFeedSync(CanonOp):
    """G33/G33.1: motion follows the spindle, ``pitch`` program units per revolution."""

    pitch: float
    rs274_name: ClassVar[str] = "START_SPEED_FEED_SYNC"


@dataclass(slots=True, frozen=True)
class StopSpeedFeedSync(CanonOp):
    rs274_name: ClassVar[str] = "STOP_SPEED_FEED_SYNCH"


@dataclass(slots=True, frozen=True)
class RigidTap(CanonOp):
    """G33.1: feed to the point in step with the spindle, reverse, and come back out."""

    x: float
    y: float
    z: float
    rs274_name: ClassVar[str] = "RIGID_TAP"


@dataclass(slots=True, frozen=True)
class Dwell(CanonOp):
    seconds: float
    rs274_name: ClassVar[str] = "DWELL"


@dataclass(slots=True, frozen=True)
class SetFeedRate(CanonOp):
    rate: float
    rs274_name: ClassVar[str] = "SET_FEED_RATE"


@dataclass(slots=True, frozen=True)
class SetFeedMode(CanonOp):
    """0 = units per minute (G93 is also sent as 0, rates are pre-computed), 1 = per rev."""

    spindle: int
    mode: int
    rs274_name: ClassVar[str] = "SET_FEED_MODE"


@dataclass(slots=True, frozen=True)
class SetMotionControlMode(CanonOp):
    """G61 (``EXACT_PATH``), G61.1 (``EXACT_STOP``) or G64 (``CONTINUOUS``, P tolerance)."""

    mode: str
    tolerance: float | None = None
    rs274_name: ClassVar[str] = "SET_MOTION_CONTROL_MODE"


@dataclass(slots=True, frozen=True)
class SetNaivecamTolerance(CanonOp):
    tolerance: float
    rs274_name: ClassVar[str] = "SET_NAIVECAM_TOLERANCE"


@dataclass(slots=True, frozen=True)
class SelectPlane(CanonOp):
    plane: str  # "XY", "XZ" or "YZ"
    rs274_name: ClassVar[str] = "SELECT_PLANE"


# --- units and offsets ------------------------------------------------------------


@dataclass(slots=True, frozen=True)
class UseLengthUnits(CanonOp):
    units: str  # "mm" or "inch"
    rs274_name: ClassVar[str] = "USE_LENGTH_UNITS"


@dataclass(slots=True, frozen=True)
class SetWorkOffset(CanonOp):
    """The active work coordinate system (1 = G54 … 9 = G59.3) and its origin."""

    index: int
    x: float
    y: float
    z: float
    a: float = 0.0
    b: float = 0.0
    c: float = 0.0
    rs274_name: ClassVar[str] = "SET_G5X_OFFSET"


@dataclass(slots=True, frozen=True)
class SetG92Offset(CanonOp):
    x: float
    y: float
    z: float
    a: float = 0.0
    b: float = 0.0
    c: float = 0.0
    rs274_name: ClassVar[str] = "SET_G92_OFFSET"


@dataclass(slots=True, frozen=True)
class SetXYRotation(CanonOp):
    degrees: float
    rs274_name: ClassVar[str] = "SET_XY_ROTATION"


@dataclass(slots=True, frozen=True)
class UseToolLengthOffset(CanonOp):
    x: float
    y: float
    z: float
    a: float = 0.0
    b: float = 0.0
    c: float = 0.0
    rs274_name: ClassVar[str] = "USE_TOOL_LENGTH_OFFSET"


# --- tools, spindle, coolant ------------------------------------------------------


@dataclass(slots=True, frozen=True)
class SelectTool(CanonOp):
    tool: int
    rs274_name: ClassVar[str] = "SELECT_TOOL"


@dataclass(slots=True, frozen=True)
class StartChange(CanonOp):
    rs274_name: ClassVar[str] = "START_CHANGE"


@dataclass(slots=True, frozen=True)
class ChangeTool(CanonOp):
    tool: int
    rs274_name: ClassVar[str] = "CHANGE_TOOL"


@dataclass(slots=True, frozen=True)
class ChangeToolNumber(CanonOp):
    tool: int
    rs274_name: ClassVar[str] = "CHANGE_TOOL_NUMBER"


@dataclass(slots=True, frozen=True)
class SetSpindleSpeed(CanonOp):
    spindle: int
    rpm: float
    rs274_name: ClassVar[str] = "SET_SPINDLE_SPEED"


@dataclass(slots=True, frozen=True)
class StartSpindleClockwise(CanonOp):
    spindle: int = 0
    rs274_name: ClassVar[str] = "START_SPINDLE_CLOCKWISE"


@dataclass(slots=True, frozen=True)
class StartSpindleCounterclockwise(CanonOp):
    spindle: int = 0
    rs274_name: ClassVar[str] = "START_SPINDLE_COUNTERCLOCKWISE"


@dataclass(slots=True, frozen=True)
class StopSpindleTurning(CanonOp):
    spindle: int = 0
    rs274_name: ClassVar[str] = "STOP_SPINDLE_TURNING"


@dataclass(slots=True, frozen=True)
class SetSpindleMode(CanonOp):
    spindle: int
    css_max: float
    rs274_name: ClassVar[str] = "SET_SPINDLE_MODE"


@dataclass(slots=True, frozen=True)
class FloodOn(CanonOp):
    rs274_name: ClassVar[str] = "FLOOD_ON"


@dataclass(slots=True, frozen=True)
class FloodOff(CanonOp):
    rs274_name: ClassVar[str] = "FLOOD_OFF"


@dataclass(slots=True, frozen=True)
class MistOn(CanonOp):
    rs274_name: ClassVar[str] = "MIST_ON"


@dataclass(slots=True, frozen=True)
class MistOff(CanonOp):
    rs274_name: ClassVar[str] = "MIST_OFF"


# --- program flow and messages ----------------------------------------------------


@dataclass(slots=True, frozen=True)
class Comment(CanonOp):
    text: str
    rs274_name: ClassVar[str] = "COMMENT"


@dataclass(slots=True, frozen=True)
class Message(CanonOp):
    text: str
    rs274_name: ClassVar[str] = "MESSAGE"


@dataclass(slots=True, frozen=True)
class ProgramStop(CanonOp):
    """M0."""

    rs274_name: ClassVar[str] = "PROGRAM_STOP"


@dataclass(slots=True, frozen=True)
class OptionalProgramStop(CanonOp):
    """M1."""

    rs274_name: ClassVar[str] = "OPTIONAL_PROGRAM_STOP"


@dataclass(slots=True, frozen=True)
class ProgramEnd(CanonOp):
    """M2 / M30."""

    rs274_name: ClassVar[str] = "PROGRAM_END"


@dataclass(slots=True, frozen=True)
class OverrideSwitch(CanonOp):
    """Feed or speed override enabled/disabled (rigid tapping turns them off)."""

    which: str  # "feed" or "speed"
    enabled: bool
    spindle: int = 0
    rs274_name: ClassVar[str] = "OVERRIDE"


@dataclass(slots=True, frozen=True)
class Setting(CanonOp):
    """A canonical call with no meaning for motion (kept so rs274 output matches)."""

    name: str
    args: tuple[Any, ...] = ()
    rs274_name: ClassVar[str] = "SETTING"


MOTION_OPS = (StraightTraverse, StraightFeed, ArcFeed)


@dataclass(slots=True, frozen=True, eq=False)
class MotionBatch(CanonOp):
    """Consecutive plain moves held column-wise (from the interpreter's fast path).

    Row ``i`` stands for the ops of source line ``lines[i]``: a ``SET_FEED_RATE(feed)``
    when ``feed_set``, then a traverse (kind 0), feed (1) or arc (2); kind -1 rows
    only set the feed. Ends are program-frame points (x y z a b c); arc centres are
    in the plane's (first, second) axes, with ``rotation`` +1 (G3) or -1 (G2).
    :meth:`ops` gives the same operations one by one.
    """

    lines: Any  # np.ndarray[int64]
    kind: Any  # np.ndarray[int8]
    feed_set: Any  # np.ndarray[bool]
    feed: Any  # np.ndarray[float64]
    end: Any  # np.ndarray[float64] (n, 6)
    centre: Any  # np.ndarray[float64] (n, 2)
    rotation: Any  # np.ndarray[int8]
    plane: str = "XY"
    rs274_name: ClassVar[str] = "MOTION_BATCH"

    def __len__(self) -> int:
        return len(self.lines)

    def ops(self) -> Iterator[CanonOp]:
        for start in range(0, len(self.lines), _EXPAND_ROWS):
            yield from self._ops(slice(start, start + _EXPAND_ROWS))

    def _ops(self, rows: slice) -> Iterator[CanonOp]:
        # a slice at a time: Python lists of a whole batch would cost more than the batch
        first, second, normal = ARC_AXES[self.plane]
        lines = self.lines[rows].tolist()
        kinds = self.kind[rows].tolist()
        feed_set = self.feed_set[rows].tolist()
        feeds = self.feed[rows].tolist()
        ends = self.end[rows].tolist()
        centres = self.centre[rows].tolist()
        rotations = self.rotation[rows].tolist()
        for i, line in enumerate(lines):
            if feed_set[i]:
                yield SetFeedRate(line, feeds[i])
            kind = kinds[i]
            e = ends[i]
            if kind == 0:
                yield StraightTraverse(line, *e)
            elif kind == 1:
                yield StraightFeed(line, *e)
            elif kind == 2:
                c = centres[i]
                yield ArcFeed(line, e[first], e[second], c[0], c[1], rotations[i], e[normal],
                              e[3], e[4], e[5], self.plane)  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return {"op": self.rs274_name, "line": self.line, "rows": len(self)}


_EXPAND_ROWS = 4096


def expand(ops: Iterable[CanonOp]) -> Iterator[CanonOp]:
    """Operations one by one, with motion batches expanded."""
    for op in ops:
        if type(op) is MotionBatch:
            yield from op.ops()
        else:
            yield op
