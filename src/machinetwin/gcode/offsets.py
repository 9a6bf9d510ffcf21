"""Coordinate systems and offsets: G10, G28/G30, G43/G49, G52/G92, G54-G59.3.

Every offset change keeps the machine where it is and re-expresses the current
position in the new program frame (LinuxCNC's behaviour). Persistent values live in
numbered parameters in machine units; the active offsets are kept in program units.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

from ..errors import GCodeError
from . import canon
from .parameters import (
    G28_HOME,
    G30_HOME,
    G92_ENABLED,
    G92_OFFSET,
    TOOL_DIAMETER,
    TOOL_OFFSET,
    WORK_SYSTEM,
    Parameters,
    work_offset_index,
)
from .reader import Block
from .state import AXES, INCH_MM, LINEAR, ModalState, rotate
from .tooltable import Tool, ToolTable

TABLE_AXES = "xyzabcuvw"  # the nine offsets of a LinuxCNC tool table entry
TABLE_LINEAR = frozenset("xyzuvw")
NO_VALUE = -1.0  # LinuxCNC's "word absent" value for P and Q, also when written explicitly


class OffsetHandling:
    """Mixed into the Interpreter: the offset and homing codes."""

    # LinuxCNC keeps the loaded tool's entry twice: in its pocket and copied to pocket 0
    # (the spindle), and G43 without H reads the copy. Standalone rs274 starts with pocket 1
    # "loaded" and an empty pocket 0; M6 copies, M61 only changes the loaded pocket.
    # (set in Interpreter.__init__)
    loaded_pocket: int
    spindle_entry: Tool | None
    # Front angle, back angle and orientation by tool number, only once G10 sets them.
    tool_shapes: dict[int, tuple[float, float, int]] | None
    owns_tool_table: bool

    if TYPE_CHECKING:
        state: ModalState
        params: Parameters
        tool_table: ToolTable
        machine_units: str
        line: int

        def find_tool(self, number: int, col: int) -> int: ...

        @property
        def user_to_program(self) -> float: ...

        def emit(self, op: canon.CanonOp) -> None: ...

        def error(self, message: str, col: int = 1) -> GCodeError: ...

        def axis_target(self, block: Block) -> list[float]: ...

    # --- helpers -----------------------------------------------------------------------

    def apply_offsets(self, g5x=None, g92=None, tool=None, rotation=None) -> None:
        """Change offsets while keeping the machine where it is."""
        s = self.state
        machine = s.to_machine(s.position)
        if g5x is not None:
            s.g5x_offset = list(g5x)
        if g92 is not None:
            s.g92_offset = list(g92)
        if tool is not None:
            s.tool_offset = list(tool)
        if rotation is not None:
            s.rotation = rotation
        s.position = s.to_program(machine)

    def params_to_program(self, base: int) -> list[float]:
        """Six axis values stored from ``base`` in machine units, in program units."""
        p = self.params.numbered
        f = self.user_to_program
        return [p[base + i] * f if i < LINEAR else p[base + i] for i in range(6)]

    def program_to_params(self, base: int, values: list[float]) -> None:
        p = self.params.numbered
        f = self.user_to_program
        for i in range(6):
            p[base + i] = values[i] / f if i < LINEAR else values[i]

    def work_offset(self, index: int) -> tuple[list[float], float]:
        """Origin (program units) and XY rotation of work system 1…9."""
        base = work_offset_index(index)
        return self.params_to_program(base), self.params.numbered[base + 9]

    # --- G54 … G59.3 -------------------------------------------------------------------

    def select_work_system(self, index: int) -> None:
        s = self.state
        if s.comp_side:
            raise self.error("Cannot change coordinate systems with cutter radius compensation on")
        if index == s.origin_index:
            self.emit(
                canon.Comment(self.line, "interpreter: continuing to use same coordinate system")
            )
            return
        offset, rotation = self.work_offset(index)
        s.origin_index = index
        self.params.numbered[WORK_SYSTEM] = float(index)
        self.apply_offsets(g5x=offset, rotation=rotation)
        self.emit(canon.SetWorkOffset(self.line, index, *offset))
        self.emit(canon.SetG92Offset(self.line, *s.g92_offset))
        self.emit(canon.SetXYRotation(self.line, rotation))

    # --- tool length offsets -------------------------------------------------------------

    def tool_offset_for(self, number: int) -> list[float]:
        """A tool's length offsets in program units (the table is held in mm); 0 is the spindle."""
        tool = self.spindle_entry if number == 0 else self.tool_table.get(number)
        if tool is None:
            return [0.0] * 6
        scale = 1 / self.state.mm_per_unit
        return [tool.offset(a) * (scale if i < LINEAR else 1.0) for i, a in enumerate(AXES)]

    def load_into_spindle(self, pocket: int, number: int) -> None:
        """M6: the tool's entry is copied to pocket 0 (T0 M6 copies pocket 0 onto itself)."""
        self.loaded_pocket = pocket
        if pocket != 0:
            self.spindle_entry = copy.deepcopy(self.tool_table.get(number))

    def set_tool_length_offset(self, code: int, block: Block) -> None:
        s = self.state
        if s.comp_side:
            raise self.error("Cannot change tool offset with cutter radius compensation on")
        w = block.words
        has_axes = any(a in w for a in AXES)
        if code == 432 and "h" in w and has_axes:
            raise self.error("G43.2: Can not have both H and axis words")
        if code in (430, 432) and "h" in w:
            h = w["h"]
            number = round(h)
            if h < 0 or (number != 0 and self.tool_table.get(number) is None):
                raise self.error(
                    f"Requested tool {number} not found in the tool table", block.columns["h"]
                )
        elif code == 432:
            if has_axes:  # rs274 2.9 looks the missing H up as tool -1
                raise self.error("Requested tool -1 not found in the tool table")
            raise self.error("G43.2: No axes specified and H word missing")
        elif any(m in (6, 61) for m, _ in block.m_codes):
            # a tool change earlier in this block: LinuxCNC reads the new tool's own entry
            number = s.tool_in_spindle
        else:
            number = 0  # the spindle's copy of the entry
        if code == 430:
            offset = self.tool_offset_for(number)
        elif code == 432:
            extra = self.tool_offset_for(number)
            offset = [s.tool_offset[i] + extra[i] for i in range(6)]
        elif code == 431:
            offset = list(s.tool_offset)
            for i, a in enumerate(AXES):
                if a in w:
                    offset[i] = w[a]
        else:
            offset = [0.0] * 6
        self.apply_offsets(tool=offset)
        self.emit(canon.UseToolLengthOffset(self.line, *offset))

    # --- group 0: G10, G28/G30, G52/G92 ------------------------------------------------

    def execute_non_modal(self, code: int, block: Block) -> None:
        if code == 100:
            self.execute_g10(block)
        elif code in (280, 300):
            self.go_home(code, block)
        elif code in (281, 301):
            s = self.state
            base = G28_HOME if code == 281 else G30_HOME
            # rs274 2.9 rotates into the machine frame (newer LinuxCNC sources do not)
            self.program_to_params(base, s.to_machine(s.position))
        else:
            self.set_axis_offsets(code, block)

    def execute_g10(self, block: Block) -> None:
        w = block.words
        l_word = round(w["l"]) if "l" in w else -1
        if l_word in (2, 20):
            self.set_work_offset_data(l_word, block)
        elif l_word in (1, 10, 11):
            self.set_tool_data(l_word, block)
        else:
            raise self.error("Line with G10 does not have L0, L1, L10, L11, L2, or L20")

    def set_work_offset_data(self, l_word: int, block: Block) -> None:
        s = self.state
        w = block.words
        if "i" in w or "j" in w:
            raise self.error("I J words not allowed with G10 L2")
        index = int(w.get("p", -1.0) + 0.0001)
        if "p" not in w or index < 0 or index > 9:
            raise self.error("P value out of range (0-9) with G10 L2")
        if index == 0:
            index = s.origin_index
        if s.comp_side and index == s.origin_index:
            raise self.error(
                "Cannot change the active coordinate system with cutter radius compensation on"
            )
        if l_word == 20 and "r" in w:
            raise self.error("R not allowed in G10 L20")
        old_offset, old_rotation = self.work_offset(index)
        rotation = w.get("r", old_rotation)
        offset = list(old_offset)
        if l_word == 2:
            for i, a in enumerate(AXES):
                if a in w:
                    offset[i] = w[a]
        else:
            # the offset that makes the current point read the given values in system `index`
            here = self.position_in_system(old_offset, old_rotation)
            if "x" in w or "y" in w:
                target = (w.get("x", here[0]), w.get("y", here[1]))
                old_xy = rotate(here[0], here[1], rotation)
                new_xy = rotate(target[0], target[1], rotation)
                offset[0] = old_xy[0] + old_offset[0] - new_xy[0]
                offset[1] = old_xy[1] + old_offset[1] - new_xy[1]
            for i in range(2, 6):
                if AXES[i] in w:
                    offset[i] = here[i] + old_offset[i] - w[AXES[i]]
        base = work_offset_index(index)
        self.program_to_params(base, offset)
        self.params.numbered[base + 9] = rotation
        if index == s.origin_index:
            self.apply_offsets(g5x=offset, rotation=rotation)
            self.emit(canon.SetWorkOffset(self.line, index, *offset))
            self.emit(canon.SetXYRotation(self.line, rotation))
        else:
            self.emit(canon.Comment(self.line, "interpreter: setting coordinate system origin"))

    def position_in_system(self, g5x: list[float], rotation: float) -> list[float]:
        """The current point expressed in another work system (G92 kept, no tool offset)."""
        s = self.state
        machine = s.to_machine(s.position)
        p = [machine[i] - g5x[i] - s.tool_offset[i] for i in range(6)]
        if rotation:
            p[0], p[1] = rotate(p[0], p[1], -rotation)
        return [p[i] - s.g92_offset[i] for i in range(6)]

    def set_tool_data(self, l_word: int, block: Block) -> None:
        """G10 L1 (values), L10 / L11 (values that make the current point read the words)."""
        s = self.state
        w = block.words
        p = w.get("p", NO_VALUE)
        number = round(p)
        if abs(p - number) > 0.0001:
            raise self.error("P value not an integer with G10", block.columns["p"])
        if number <= 0:
            raise self.error(f"P value out of range with G10 L{l_word}")
        if not any(k in w for k in "xyzabcrqij"):
            raise self.error("G10 L1 without offsets has no effect")
        q = w.get("q", NO_VALUE)
        if q != NO_VALUE:
            if q < 0 or abs(q - round(q)) > 0.0001:
                raise self.error("Q number in G10 is not an integer", block.columns["q"])
            if q > 9:
                raise self.error("Invalid tool orientation", block.columns["q"])
        pocket = self.find_tool(number, block.columns["p"])
        tool = self.editable_tool_table().get(number)
        assert tool is not None  # find_tool raised otherwise
        per_unit = s.mm_per_unit
        # the entry in program units, changed in place below
        values = [tool.offset(a) / (per_unit if a in TABLE_LINEAR else 1.0) for a in TABLE_AXES]
        if l_word == 1:
            for i, a in enumerate(AXES):
                if a in w:
                    values[i] = w[a]
        else:
            system = s.origin_index if l_word == 10 else 9
            here, rotation = self.position_for_touch_off(system, with_g92=l_word == 10)
            if "x" in w or "y" in w:
                # the words name directions of that system, which may be rotated
                x, y = rotate(values[0], values[1], -rotation)
                if "x" in w:
                    x = here[0] - w["x"]
                if "y" in w:
                    y = here[1] - w["y"]
                values[0], values[1] = rotate(x, y, rotation)
            for i in range(2, 6):
                if AXES[i] in w:
                    values[i] = here[i] - w[AXES[i]]
        for a, v in zip(TABLE_AXES, values, strict=True):
            if v or a in tool.offsets:
                tool.offsets[a] = v * (per_unit if a in TABLE_LINEAR else 1.0)
        if "r" in w and w["r"] >= 0:
            tool.diameter = 2 * w["r"] * per_unit
        shapes = self.tool_shapes if self.tool_shapes is not None else {}
        self.tool_shapes = shapes
        front, back, orientation = shapes.get(number, (0.0, 0.0, 0))
        shape = (
            w.get("i", front),
            w.get("j", back),
            round(q) if q != NO_VALUE else orientation,
        )
        shapes[number] = shape
        self.emit(self.tool_table_entry(pocket, tool, shape))
        if pocket == self.loaded_pocket:
            self.spindle_entry = copy.deepcopy(tool)
            self.emit(self.tool_table_entry(0, tool, shape))
            self.record_tool_parameters(tool, shape)

    def editable_tool_table(self) -> ToolTable:
        """The caller's table stays as loaded; edits go to the interpreter's own copy."""
        if not self.owns_tool_table:
            self.tool_table = copy.deepcopy(self.tool_table)
            self.owns_tool_table = True
        return self.tool_table

    @property
    def user_length(self) -> float:
        """Millimetres per machine ("user") length unit."""
        return INCH_MM if self.machine_units == "inch" else 1.0

    def tool_table_entry(self, pocket: int, tool: Tool, shape) -> canon.Setting:
        unit = self.user_length
        offsets = " ".join(
            f"{tool.offset(a) / (unit if a in TABLE_LINEAR else 1.0):.4f}" for a in TABLE_AXES
        )
        front, back, orientation = shape
        return canon.Setting(
            self.line,
            "SET_TOOL_TABLE_ENTRY",
            (pocket, tool.number, offsets, f"{front:.4f}", f"{back:.4f}", orientation),
        )

    def record_tool_parameters(self, tool: Tool, shape) -> None:
        """#5401-#5413: the loaded tool's entry, in machine units."""
        unit = self.user_length
        p = self.params.numbered
        for i, a in enumerate(TABLE_AXES):
            p[TOOL_OFFSET + i] = tool.offset(a) / (unit if a in TABLE_LINEAR else 1.0)
        p[TOOL_DIAMETER] = tool.diameter / unit
        p[TOOL_DIAMETER + 1], p[TOOL_DIAMETER + 2], p[TOOL_DIAMETER + 3] = shape

    def position_for_touch_off(self, system: int, with_g92: bool) -> tuple[list[float], float]:
        """The current point in work system ``system`` with the tool length offset kept.

        G10 L10 measures in the active system including G92; G10 L11 in G59.3 without it.
        Also returns that system's XY rotation.
        """
        s = self.state
        origin, rotation = self.work_offset(system)
        machine = s.to_machine(s.position)
        here = [machine[i] - origin[i] for i in range(6)]
        if rotation:
            here[0], here[1] = rotate(here[0], here[1], -rotation)
        if with_g92:
            here = [here[i] - s.g92_offset[i] for i in range(6)]
        return here, rotation

    def go_home(self, code: int, block: Block) -> None:
        s = self.state
        if s.comp_side:
            raise self.error("Cannot use g28 or g30 with cutter radius comp")
        waypoint = self.axis_target(block)
        self.emit(canon.StraightTraverse(self.line, *waypoint))
        s.position = waypoint
        home = s.to_program(self.params_to_program(G28_HOME if code == 280 else G30_HOME))
        given = [a in block.words for a in AXES]
        end = [home[i] if given[i] else waypoint[i] for i in range(6)] if any(given) else home
        self.emit(canon.StraightTraverse(self.line, *end))
        s.position = end

    def set_axis_offsets(self, code: int, block: Block) -> None:
        s = self.state
        if s.comp_side:
            raise self.error("Cannot change axis offsets with cutter radius comp")
        w = block.words
        p = self.params.numbered
        if code in (520, 920):
            if not any(a in w for a in AXES):
                raise self.error("All axes missing with g52 or g92")
            g92 = list(s.g92_offset)
            for i, a in enumerate(AXES):
                if a in w:
                    if code == 920:  # the offset that makes the current point read the value
                        g92[i] = s.position[i] + s.g92_offset[i] - w[a]
                    else:
                        g92[i] = w[a]
            p[G92_ENABLED] = 1.0
            self.program_to_params(G92_OFFSET, g92)
        elif code in (921, 922):
            g92 = [0.0] * 6
            p[G92_ENABLED] = 0.0
            if code == 921:
                self.program_to_params(G92_OFFSET, g92)
        else:  # G92.3: restore from the parameters
            p[G92_ENABLED] = 1.0
            g92 = self.params_to_program(G92_OFFSET)
        self.apply_offsets(g92=g92)
        self.emit(canon.SetG92Offset(self.line, *g92))
