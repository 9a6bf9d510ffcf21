"""Cutter radius compensation (G40, G41, G42, G41.1, G42.1), as LinuxCNC 2.9 does it.

With compensation on, the tool centre runs one tool radius to the left (G41) or right
(G42) of the programmed path, in the XY plane (G17) or the ZX plane (G18). Where two
moves meet, the tool either goes round the outside of the corner on an arc about the
programmed corner (convex) or stops short where the two offset paths cross (concave).
Which one is only known when the next move is read, so LinuxCNC holds the last
compensated move back in a queue (a lookahead of one move): the next move decides
whether to insert a corner arc or to move the held move's end point ("endpoint
rewriting") before the queue is flushed. Feed, speed, coolant, dwell and comment calls
made meanwhile wait in the queue behind the move, so the output order is LinuxCNC's.

Everything here works in the plane's own coordinates (x, y) = (first, second) axis and
z = the normal axis: XY for G17, ZX for G18, like ``ARC_FEED``.

The state lives on :class:`.state.ModalState` (``comp_*``, ``program_point``): while
compensation is on, ``position`` is the tool centre and ``program_point`` the point the
program reached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import GCodeError
from . import arcs, canon
from .reader import Block
from .state import INCH_MM, ModalState
from .tooltable import Tool, ToolTable

LEFT, RIGHT = 1, 2
SIDE_NAMES = {LEFT: "left", RIGHT: "right"}
SMALL = 0.05  # radians: LinuxCNC's TOLERANCE_CONCAVE_CORNER
TOLERANCE_EQUAL = 0.0001
# plane code -> indices of (x, y, z) of the compensation plane among the program axes
COMP_AXES = {170: (0, 1, 2), 180: (2, 0, 1)}
PLANE_NAMES = {170: "XY", 180: "XZ"}
HALF_PI = math.pi / 2
# How much longer (radians) a held arc may become when its end moves into a concave
# corner. Current LinuxCNC sources say 0.001; the rs274 2.9 we check against accepts at
# least 0.005 more, as code derived from LinuxCNC of that time (0.254) does.
ARC_GOUGE_SLACK = 0.254
# Standalone rs274 converts inch tool data with this rounded 1/25.4 (its canon's
# GET_EXTERNAL_LENGTH_UNITS); reproduced so that corner points round as rs274's do.
RS274_INCH_PER_MM = 0.03937007874016
# calls LinuxCNC queues behind a held move (its enqueue_* functions); others go out at once
QUEUED_OPS = frozenset(
    {
        canon.SetFeedRate,
        canon.Dwell,
        canon.SetFeedMode,
        canon.MistOn,
        canon.MistOff,
        canon.FloodOn,
        canon.FloodOff,
        canon.StartSpindleClockwise,
        canon.StartSpindleCounterclockwise,
        canon.StopSpindleTurning,
        canon.SetSpindleMode,
        canon.SetSpindleSpeed,
        canon.Comment,
    }
)


@dataclass(slots=True)
class HeldLine:
    """A compensated straight move waiting in the queue."""

    line: int
    traverse: bool
    direction: tuple[float, float]  # of the programmed move, in the plane: gouge check
    end: list[float]  # program frame, x y z a b c
    axes: tuple[int, int]  # indices of the plane's x and y in ``end``

    def move_end(self, x: float, y: float) -> None:
        self.end[self.axes[0]], self.end[self.axes[1]] = x, y


@dataclass(slots=True)
class HeldArc:
    """A compensated arc waiting in the queue (plane coordinates, like ARC_FEED)."""

    line: int
    original_turns: float  # swept angle before its end may move; 0: do not check
    end1: float
    end2: float
    centre1: float
    centre2: float
    turn: int
    end3: float
    abc: tuple[float, float, float]
    plane: str


Held = HeldLine | HeldArc | canon.CanonOp


class CutterCompensation:
    """Mixed into the Interpreter: G40/G41/G42 and compensated G0 G1 G2 G3."""

    comp_queue: list[Held]
    comp_endpoint: tuple[float, float] | None  # start of the held move; None: not valid

    if TYPE_CHECKING:
        state: ModalState
        line: int
        machine_units: str
        tool_table: ToolTable
        spindle_entry: Tool | None
        tool_shapes: dict[int, tuple[float, float, int]] | None

        def emit(self, op: canon.CanonOp) -> None: ...

        def emit_now(self, op: canon.CanonOp) -> None: ...

        def error(self, message: str, col: int = 1) -> GCodeError: ...

        def find_tool(self, number: int, col: int) -> int: ...

    # --- G40 / G41 / G42 ------------------------------------------------------------

    def set_cutter_comp(self, code: int, block: Block) -> None:
        if code == 400:
            self.cutter_comp_off()
        else:
            self.cutter_comp_on(LEFT if code in (410, 411) else RIGHT, code, block)

    def cutter_comp_off(self) -> None:
        s = self.state
        self.emit(canon.Comment(self.line, "interpreter: cutter radius compensation off"))
        if s.comp_side and s.comp_radius > 0.0 and not s.comp_firstmove:
            x, y, _ = self.comp_current()
            self.move_endpoint_and_flush(x, y)
            self.dequeue()
            s.position[:3] = s.program_point
            s.arc_not_allowed = True
        s.comp_side = 0
        s.comp_firstmove = True

    def cutter_comp_on(self, side: int, code: int, block: Block) -> None:
        s = self.state
        w = block.words
        name = f"G{code // 10}"
        if s.plane not in COMP_AXES:
            raise self.error("Cutter radius compensation allowed only in XY, XZ planes")
        if s.comp_side:
            raise self.error("Cannot turn cutter radius comp on when on")
        if code in (411, 421):  # G41.1/G42.1: D is the diameter itself
            if "d" not in w:
                raise self.error(f"{name}.1 with no D word")
            radius = w["d"] / 2
            orientation = 0
            if "l" in w:
                if s.plane != 180:
                    raise self.error(f"{name}.1 with L word, but plane is not G18")
                orientation = round(w["l"]) if abs(w["l"]) < 1e9 else -1
        else:
            radius, orientation = self.tool_radius(name, block)
        if radius < 0.0:  # a negative table diameter swaps the side (nominal-size paths)
            radius = -radius
            side = LEFT if side == RIGHT else RIGHT
        self.emit(
            canon.Comment(
                self.line, f"interpreter: cutter radius compensation on {SIDE_NAMES[side]}"
            )
        )
        s.comp_radius = radius
        s.comp_orientation = orientation
        s.comp_side = side

    def tool_radius(self, name: str, block: Block) -> tuple[float, int]:
        """G41/G42: radius (program units) and orientation of tool D, or of the spindle's."""
        s = self.state
        number = 0
        if "d" in block.words:
            d = block.words["d"]
            number = int(d + 0.5) if abs(d) < 1e9 else -1  # C's truncation (is_near_int)
            if abs(number - d) >= 0.0001:
                raise self.error(f"{name} requires D word to be a whole number", block.columns["d"])
            if number < 0:
                raise self.error("Negative D word tool radius index used", block.columns["d"])
            self.find_tool(number, block.columns["d"])
        tool = self.spindle_entry if number == 0 else self.tool_table.get(number)
        diameter = tool.diameter if tool is not None else 0.0  # mm
        if self.machine_units == "inch":
            diameter = diameter / INCH_MM / RS274_INCH_PER_MM
        shapes = self.tool_shapes or {}
        orientation = shapes.get(tool.number, (0.0, 0.0, 0))[2] if tool is not None else 0
        if s.plane != 180 and orientation not in (0, 9):
            raise self.error(f"{name} with lathe tool, but plane is not G18")
        return diameter / s.mm_per_unit / 2.0, orientation

    # --- plane coordinates -------------------------------------------------------------

    def comp_current(self) -> tuple[float, float, float]:
        i, j, k = COMP_AXES[self.state.plane]
        p = self.state.position
        return p[i], p[j], p[k]

    def comp_programmed(self) -> tuple[float, float, float]:
        i, j, k = COMP_AXES[self.state.plane]
        p = self.state.program_point
        return p[i], p[j], p[k]

    def comp_set(self, current: tuple[float, ...], programmed: tuple[float, ...]) -> None:
        s = self.state
        i, j, k = COMP_AXES[s.plane]
        s.position[i], s.position[j], s.position[k] = current
        s.program_point[i], s.program_point[j], s.program_point[k] = programmed

    def held_line(self, motion: int, direction, end_xy, target: list[float]) -> HeldLine:
        i, j, _ = COMP_AXES[self.state.plane]
        end = list(target)
        end[i], end[j] = end_xy
        return HeldLine(self.line, motion == 0, direction, end, (i, j))

    def held_arc(self, turns: float, end, centre, turn: int, end3: float, target) -> HeldArc:
        return HeldArc(self.line, turns, end[0], end[1], centre[0], centre[1], turn, end3,
                       (target[3], target[4], target[5]), PLANE_NAMES[self.state.plane])  # fmt: skip

    # --- the queue ------------------------------------------------------------------------

    def dequeue(self) -> None:
        """Send everything held back, in order."""
        self.comp_endpoint = None
        queue, self.comp_queue = self.comp_queue, []
        for item in queue:
            self.emit_now(self.issued(item))

    def issued(self, item: Held) -> canon.CanonOp:
        """The canonical call for a held item; lathe tools shift from radius centre to origin."""
        if isinstance(item, HeldLine):
            end = list(item.end)
            end[0], end[2] = self.lathe_origin_x(end[0]), self.lathe_origin_z(end[2])
            op = canon.StraightTraverse if item.traverse else canon.StraightFeed
            return op(item.line, *end)
        if isinstance(item, HeldArc):
            e1, e2, c1, c2 = item.end1, item.end2, item.centre1, item.centre2
            if item.plane == "XZ":
                e1, c1 = self.lathe_origin_z(e1), self.lathe_origin_z(c1)
                e2, c2 = self.lathe_origin_x(e2), self.lathe_origin_x(c2)
            return canon.ArcFeed(item.line, e1, e2, c1, c2, item.turn, item.end3, *item.abc,
                                 plane=item.plane)  # fmt: skip
        return item

    def lathe_origin_x(self, x: float) -> float:
        o, r = self.state.comp_orientation, self.state.comp_radius
        if self.state.plane != 180:
            return x
        return x - r if o in (1, 2, 6) else x + r if o in (3, 4, 8) else x

    def lathe_origin_z(self, z: float) -> float:
        o, r = self.state.comp_orientation, self.state.comp_radius
        if self.state.plane != 180:
            return z
        return z - r if o in (2, 3, 7) else z + r if o in (1, 4, 5) else z

    def set_endpoint(self, x: float, y: float) -> None:
        self.comp_endpoint = (x, y)

    def move_endpoint_and_flush(self, x: float, y: float) -> None:
        """End every held move at (x, y) instead (a concave corner), then send them."""
        if not self.comp_queue:
            return
        start = self.comp_endpoint
        for item in self.comp_queue:
            if isinstance(item, HeldArc):
                self.move_arc_end(item, start, x, y)
            elif isinstance(item, HeldLine):
                if start is not None:
                    dx, dy = x - start[0], y - start[1]
                    if item.direction[0] * dx + item.direction[1] * dy < 0:
                        # the shortened move would run backwards: the path crossed itself
                        kind = "traverse" if item.traverse else "feed"
                        raise self.error(
                            f"Straight {kind} in concave corner cannot be reached by the tool "
                            "without gouging"
                        )
                item.move_end(x, y)
        self.dequeue()
        self.set_endpoint(x, y)

    def move_arc_end(self, arc: HeldArc, start, x: float, y: float) -> None:
        r1 = math.hypot(arc.end1 - arc.centre1, arc.end2 - arc.centre2)
        r2 = math.hypot(x - arc.centre1, y - arc.centre2)
        if abs(r1 - r2) > 0.01:
            raise self.error(
                "BUG: cutter compensation has generated an invalid arc with mismatched radii "
                f"r1 {r1:f} r2 {r2:f}\n"
            )
        if arc.original_turns and start is not None:
            swept = arcs.find_turn(start[0], start[1], arc.centre1, arc.centre2, arc.turn, x, y)
            if abs(swept) > abs(arc.original_turns) + ARC_GOUGE_SLACK:
                raise self.error(
                    "Arc move in concave corner cannot be reached by the tool without gouging"
                )
        arc.end1, arc.end2 = x, y

    # --- straight moves -------------------------------------------------------------------

    def comp_straight(self, motion: int, block: Block, target: list[float]) -> None:
        s = self.state
        i, j, k = COMP_AXES[s.plane]
        p = (target[i], target[j], target[k])
        if s.comp_firstmove:
            self.straight_entry(motion, p, target)
        else:
            self.straight_next(motion, p, target)
        s.position[3:6] = target[3:6]

    def straight_entry(self, motion: int, p: tuple[float, float, float], target) -> None:
        """The first move with compensation on: end a radius to the side of the line."""
        s = self.state
        cx, cy, _ = self.comp_current()
        px, py, pz = p
        radius = s.comp_radius
        if motion not in (0, 10):
            raise self.error("Bug code not g0 or g1")  # LinuxCNC's words (G33 under comp)
        if math.hypot(px - cx, py - cy) <= radius:
            raise self.error(
                "Length of cutter compensation entry move is not greater than the tool radius"
            )
        alpha = math.atan2(py - cy, px - cx) + (HALF_PI if s.comp_side == LEFT else -HALF_PI)
        end = (px + radius * math.cos(alpha), py + radius * math.sin(alpha))
        self.set_endpoint(cx, cy)
        direction = (math.cos(alpha), math.sin(alpha))
        self.comp_queue.append(self.held_line(motion, direction, end, target))
        s.comp_firstmove = False
        self.comp_set((end[0], end[1], pz), p)

    def straight_next(self, motion: int, p: tuple[float, float, float], target) -> None:
        s = self.state
        cx, cy, cz = self.comp_current()
        opx, opy, _ = self.comp_programmed()
        px, py, pz = p
        if px == opx and py == opy:  # no motion in the plane: the corner is decided later
            if motion not in (0, 10):
                raise self.error("Bug code not g0 or g1")
            self.comp_queue.append(self.held_line(motion, (0.0, 0.0), (cx, cy), target))
            self.comp_set((cx, cy, pz), p)
            return
        side, radius = s.comp_side, s.comp_radius
        theta = math.atan2(cy - opy, cx - opx)
        alpha = math.atan2(py - opy, px - opx)
        if side == LEFT:
            if theta < alpha:
                theta += 2 * math.pi
            beta = theta - alpha - HALF_PI
            gamma = HALF_PI
        else:
            if alpha < theta:
                alpha += 2 * math.pi
            beta = alpha - theta - HALF_PI
            gamma = -HALF_PI
        end = (px + radius * math.cos(alpha + gamma), py + radius * math.sin(alpha + gamma))
        mid = (opx + radius * math.cos(alpha + gamma), opy + radius * math.sin(alpha + gamma))
        front = self.comp_queue[0] if self.comp_queue else None
        concave = beta < -SMALL or beta > math.pi + SMALL
        if not concave and beta > math.pi - SMALL and isinstance(front, HeldArc):
            # an "h" shape: over the round part, then along the straight one; LinuxCNC
            # keeps the tool outside rather than looping round
            concave = (side == RIGHT and front.turn > 0) or (side == LEFT and front.turn < 0)
        if not concave and beta > SMALL:  # convex: round the corner on an arc
            self.move_endpoint_and_flush(cx, cy)
            if motion == 10:
                turn = -1 if side == LEFT else 1
                self.comp_queue.append(self.held_arc(0.0, mid, (opx, opy), turn, cz, target))
            elif motion == 0:  # no rapid arcs: a traverse along the corner's chord
                self.comp_queue.append(self.held_line(motion, (0.0, 0.0), mid, target))
            else:
                raise self.error("Bug code not g0 or g1")
            self.dequeue()
            self.set_endpoint(*mid)
        elif concave:
            if isinstance(front, HeldArc):
                corner = self.arc_to_line_corner(front, (opx, opy), (px, py))
            else:
                half = (beta + math.pi) / 2
                if half == 0.0:
                    raise self.error("Zero degree inside corner is invalid for cutter compensation")
                retreat = radius / math.tan(half)
                corner = (
                    cx + retreat * math.cos(theta + gamma),
                    cy + retreat * math.sin(theta + gamma),
                )
            self.move_endpoint_and_flush(*corner)
        else:  # straight on (or tangent from an arc)
            self.dequeue()
            self.set_endpoint(cx, cy)
        direction = (px - opx, py - opy)
        self.comp_queue.append(self.held_line(motion, direction, end, target))
        self.comp_set((end[0], end[1], pz), p)

    def arc_to_line_corner(self, prev: HeldArc, op: tuple[float, float], p) -> tuple[float, float]:
        """Where the held (compensated) arc meets the new line's offset, in a concave corner."""
        s = self.state
        radius = s.comp_radius
        oldrad = math.hypot(prev.centre2 - prev.end2, prev.centre1 - prev.end1)
        base_dir = math.atan2(p[1] - op[1], p[0] - op[0])
        theta = base_dir + HALF_PI if prev.turn > 0 else base_dir - HALF_PI
        phi = math.atan2(prev.centre2 - op[1], prev.centre1 - op[0])
        inside = tool_inside_arc(s.comp_side, prev.turn)
        oldrad_uncomp = oldrad + radius if inside else oldrad - radius
        d = oldrad_uncomp * math.cos(theta - phi)  # old centre to the new line
        l = (d - radius if inside else d + radius) / oldrad  # noqa: E741 (LinuxCNC's name)
        if l > 1.0 or l < -1.0:
            raise self.error(
                "Arc to straight motion makes a corner the compensated tool can't fit in "
                "without gouging"
            )
        if inside == (prev.turn > 0):
            angle = -math.acos(l) + theta + math.pi
        else:
            angle = math.acos(l) + theta + math.pi
        return prev.centre1 + oldrad * math.cos(angle), prev.centre2 + oldrad * math.sin(angle)

    # --- arcs -------------------------------------------------------------------------------

    def comp_arc(self, motion: int, block: Block, target: list[float], turns: int) -> None:
        s = self.state
        i, j, k = COMP_AXES[s.plane]
        p = (target[i], target[j], target[k])
        if s.comp_firstmove:
            self.arc_entry(motion, block, p, target, turns)
        else:
            self.arc_next(motion, block, p, target, turns)
        s.position[3:6] = target[3:6]

    def arc_entry(self, motion: int, block: Block, p, target, turns: int) -> None:
        """First move an arc: the arc through the end point tangent to the tool, offset."""
        s = self.state
        side, radius = s.comp_side, s.comp_radius
        cx, cy, cz = self.comp_current()
        ex, ey, ez = p
        if math.hypot(ex - cx, ey - cy) <= radius:
            raise self.error(
                "Radius of cutter compensation entry arc is not greater than the tool radius"
            )
        turn = turns if motion == 30 else -turns
        if "r" in block.words:
            self.check_tool_fits(motion, abs(block.words["r"]))
            centre = arcs.find_centre(self, motion, block, (cx, cy), (ex, ey))  # type: ignore[arg-type]
        else:
            centre = arcs.find_centre(self, motion, block, (cx, cy), (ex, ey))  # type: ignore[arg-type]
            self.check_tool_fits(motion, math.hypot(centre[0] - cx, centre[1] - cy))
        self.inverse_time_arc(block, (cx, cy, cz), centre, turn, p)
        if tool_inside_arc(side, turn):
            gamma = math.atan2(centre[1] - ey, centre[0] - ex)
        else:
            gamma = math.atan2(ey - centre[1], ex - centre[0])
        s.comp_firstmove = False
        end = (ex + radius * math.cos(gamma), ey + radius * math.sin(gamma))
        # the compensated arc runs from the tool to ``end``: its centre lies on the line
        # from ``end`` towards the programmed centre, equidistant from both
        b_len = math.hypot(cy - end[1], cx - end[0]) / 2.0
        ab_ang = math.atan2(centre[1] - end[1], centre[0] - end[0])
        a_ang = math.atan2(cy - end[1], cx - end[0]) - ab_ang
        if abs(math.cos(a_ang)) < TOLERANCE_EQUAL:
            raise self.error("Tool radius not less than arc radius with comp")
        c_len = b_len / math.cos(a_ang)
        new_centre = (end[0] + c_len * math.cos(ab_ang), end[1] + c_len * math.sin(ab_ang))
        r_end = math.hypot(new_centre[0] - end[0], new_centre[1] - end[1])
        r_start = math.hypot(new_centre[0] - cx, new_centre[1] - cy)
        if abs(r_end - r_start) > arcs.SPIRAL_ABS_TOLERANCE[s.units]:
            raise self.error("Bug in tool radius comp")
        if s.comp_orientation not in (0, 9):  # lathe tools: move the tool origin first
            self.comp_queue.append(self.held_line(10, (0.0, 0.0), (cx, cy), target))
            i, j, k = COMP_AXES[s.plane]
            self.comp_queue[-1].end[k] = cz  # type: ignore[union-attr]
            self.set_endpoint(cx, cy)
        swept = arcs.find_turn(cx, cy, new_centre[0], new_centre[1], turn, end[0], end[1])
        self.comp_queue.append(self.held_arc(swept, end, new_centre, turn, ez, target))
        self.comp_set((end[0], end[1], ez), p)

    def check_tool_fits(self, motion: int, arc_radius: float) -> None:
        side = self.state.comp_side
        inside = (side == LEFT and motion == 30) or (side == RIGHT and motion == 20)
        if inside and arc_radius <= self.state.comp_radius:
            raise self.error("Tool radius not less than arc radius with comp")

    def inverse_time_arc(self, block: Block, start, centre, turn: int, end) -> None:
        if self.state.feed_mode == 930:
            length = arcs.arc_length(start[:2], centre, end[:2], turn, end[2] - start[2])
            self.emit(canon.SetFeedRate(self.line, length * block.words["f"]))

    def arc_next(self, motion: int, block: Block, p, target, turns: int) -> None:
        s = self.state
        opx, opy, opz = self.comp_programmed()
        cx, cy, cz = self.comp_current()
        ex, ey, ez = p
        centre = arcs.find_centre(self, motion, block, (opx, opy), (ex, ey))  # type: ignore[arg-type]
        turn = turns if motion == 30 else -turns
        self.inverse_time_arc(block, (opx, opy, opz), centre, turn, p)
        side, radius = s.comp_side, s.comp_radius
        arc_radius = math.hypot(centre[0] - ex, centre[1] - ey)
        theta = math.atan2(cy - opy, cx - opx)
        theta = theta - HALF_PI if side == LEFT else theta + HALF_PI
        delta = math.atan2(centre[1] - opy, centre[0] - opx)
        alpha = delta - HALF_PI if motion == 30 else delta + HALF_PI
        beta = theta - alpha if side == LEFT else alpha - theta
        if beta > 1.5 * math.pi:  # into -90 .. +270 degrees
            beta -= 2 * math.pi
        elif beta < -HALF_PI:
            beta += 2 * math.pi
        if (side == LEFT and motion == 30) or (side == RIGHT and motion == 20):
            gamma = math.atan2(centre[1] - ey, centre[0] - ex)  # cutting inside the arc
            if arc_radius <= radius:
                raise self.error("Tool radius not less than arc radius with comp")
        else:
            gamma = math.atan2(ey - centre[1], ex - centre[0])
            delta += math.pi
        end = (ex + radius * math.cos(gamma), ey + radius * math.sin(gamma))
        swept = arcs.find_turn(opx, opy, centre[0], centre[1], turn, ex, ey)
        inside = tool_inside_arc(side, turn)
        if (
            beta < -SMALL
            or beta > math.pi + SMALL
            or (abs(beta - math.pi) < SMALL and not inside)  # tangent into an "m" or "h" top
        ):
            front = self.comp_queue[0] if self.comp_queue else None
            if isinstance(front, HeldArc):
                corner = self.arc_to_arc_corner(front, centre, arc_radius, turn)
            else:
                corner = self.line_to_arc_corner(centre, arc_radius, beta, theta, turn)
            self.move_endpoint_and_flush(*corner)
        elif beta > SMALL:  # convex: a corner arc about the programmed corner first
            mid = (opx + radius * math.cos(delta), opy + radius * math.sin(delta))
            self.dequeue()
            corner_turn = -1 if side == LEFT else 1
            self.comp_queue.append(self.held_arc(0.0, mid, (opx, opy), corner_turn, cz, target))
            self.dequeue()
            self.set_endpoint(*mid)
        else:
            self.dequeue()
            self.set_endpoint(cx, cy)
        self.comp_queue.append(self.held_arc(swept, end, centre, turn, ez, target))
        self.comp_set((end[0], end[1], ez), p)

    def line_to_arc_corner(self, centre, arc_radius: float, beta: float, theta: float, turn: int):
        radius = self.state.comp_radius
        cy = arc_radius * math.sin(beta - HALF_PI)
        if tool_inside_arc(self.state.comp_side, turn):
            dist = arc_radius - radius
            l = (cy + radius) / dist  # noqa: E741
            self.check_reachable(l)
            angle = theta + math.asin(l) if turn > 0 else theta - math.asin(l)
        else:
            dist = arc_radius + radius
            l = (cy - radius) / dist  # noqa: E741
            self.check_reachable(l)
            angle = theta + math.pi - math.asin(l) if turn > 0 else theta + math.pi + math.asin(l)
        return centre[0] + dist * math.cos(angle), centre[1] + dist * math.sin(angle)

    def check_reachable(self, l: float) -> None:  # noqa: E741
        if l > 1.0 or l < -1.0:
            raise self.error(
                "Arc move in concave corner cannot be reached by the tool without gouging"
            )

    def arc_to_arc_corner(self, prev: HeldArc, centre, arc_radius: float, turn: int):
        s = self.state
        oldrad = math.hypot(prev.centre2 - prev.end2, prev.centre1 - prev.end1)
        if tool_inside_arc(s.comp_side, turn):
            newrad = arc_radius - s.comp_radius
        else:
            newrad = arc_radius + s.comp_radius
        arc_cc = math.hypot(prev.centre2 - centre[1], prev.centre1 - centre[0])
        if oldrad == 0 or arc_cc == 0:
            raise self.error("Arc to arc motion is invalid because the arcs have the same center")
        a = (oldrad**2 + arc_cc**2 - newrad**2) / (2 * oldrad * arc_cc)
        if a > 1.0 or a < -1.0:
            raise self.error(
                "Arc to arc motion makes a corner the compensated tool can't fit in without gouging"
            )
        pullback = math.acos(a)
        cc_dir = math.atan2(centre[1] - prev.centre2, centre[0] - prev.centre1)
        if tool_inside_arc(s.comp_side, prev.turn):
            direction = cc_dir + pullback if turn > 0 else cc_dir - pullback
        else:
            direction = cc_dir - pullback if turn > 0 else cc_dir + pullback
        x = prev.centre1 + oldrad * math.cos(direction)
        return x, prev.centre2 + oldrad * math.sin(direction)


def tool_inside_arc(side: int, turn: int) -> bool:
    return (side == LEFT and turn > 0) or (side == RIGHT and turn < 0)
