"""Feeds, speeds, tools, spindle, coolant, overrides and outputs (F S T, M3-M9, M48-M53,
M61-M68, G93-G95), as LinuxCNC 2.9 executes them.

The tool table is held in mm; #5400-#5413 report the loaded tool in machine units.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import GCodeError
from . import canon
from .parameters import TOOL_DIAMETER, TOOL_NUMBER, TOOL_OFFSET, Parameters
from .reader import Block
from .state import AXES, LINEAR, ModalState
from .tooltable import ToolTable


class FeedsToolsSpindle:
    """Mixed into the Interpreter: F, S, T, M6/M61, spindle, coolant, overrides, outputs."""

    if TYPE_CHECKING:
        state: ModalState
        params: Parameters
        tool_table: ToolTable
        machine_units: str
        line: int
        loaded_pocket: int
        toolchange_pending: bool
        adaptive_feed: bool
        feed_hold: bool
        tool_shapes: dict[int, tuple[float, float, int]] | None

        def emit(self, op: canon.CanonOp) -> None: ...

        def error(self, message: str, col: int = 1) -> GCodeError: ...

        def load_into_spindle(self, pocket: int, number: int) -> None: ...

    def set_feed_mode(self, code: int) -> None:
        s = self.state
        s.feed_mode = code
        name = {930: "inverse time", 940: "units per minute", 950: "units per revolution"}[code]
        self.emit(canon.Comment(self.line, f"interpreter: feed mode set to {name}"))
        self.emit(canon.SetFeedMode(self.line, 0, 1 if code == 950 else 0))
        if code != 930:
            s.feed_rate = 0.0
            self.emit(canon.SetFeedRate(self.line, 0.0))

    def set_feed_rate(self, value: float, block: Block) -> None:
        if value < 0:
            raise self.error("Negative f word used", block.columns["f"])
        if self.state.feed_mode != 930:  # inverse time reads F from each move's block
            self.state.feed_rate = value
            self.emit(canon.SetFeedRate(self.line, value))

    def set_speed(self, value: float) -> None:
        if value < 0:
            raise self.error("Negative spindle speed used")
        self.state.speed = value
        self.emit(canon.SetSpindleSpeed(self.line, 0, value))

    def find_tool(self, number: int, col: int) -> int:
        """The pocket of tool ``number`` (0 is the empty spindle)."""
        if number == 0:
            return 0
        tool = self.tool_table.get(number)
        if tool is None:
            raise self.error(f"Requested tool {number} not found in the tool table", col)
        return tool.pocket

    def select_tool(self, value: float, block: Block) -> None:
        if value < 0:
            raise self.error("Negative tool id (tool not found)", block.columns["t"])
        number = round(value)
        self.find_tool(number, block.columns["t"])
        self.state.selected_tool = number
        self.emit(canon.SelectTool(self.line, number))

    def change_tool(self, code: int, block: Block) -> None:
        s = self.state
        if code == 61:  # set the tool number without a change
            q = block.words.get("q", -1.0)
            if q < 0:
                raise self.error("Need non-negative Q-word to specify tool number with M61")
            number = round(q)
            pocket = self.find_tool(number, block.columns.get("q", 1))
            s.tool_in_spindle = number
            self.loaded_pocket = pocket
            self.emit(canon.ChangeToolNumber(self.line, pocket))
        else:
            number = max(s.selected_tool, 0)
            pocket = self.find_tool(number, 1)
            if s.comp_side:
                raise self.error("Cannot change tools with cutter radius compensation on")
            self.emit(canon.StartChange(self.line))
            self.emit(canon.StopSpindleTurning(self.line, 0))
            s.spindle = 5
            self.emit(canon.ChangeTool(self.line, pocket))
            s.tool_in_spindle = number
            self.load_into_spindle(pocket, number)
            self.toolchange_pending = True
            self.record_loaded_tool(number)
        self.params.numbered[TOOL_NUMBER] = float(s.tool_in_spindle)

    def record_loaded_tool(self, number: int) -> None:
        """#5401-#5410: the loaded tool's table data, in machine units."""
        tool = self.tool_table.get(number)
        scale = 25.4 if self.machine_units == "inch" else 1.0
        p = self.params.numbered
        for i, a in enumerate(AXES):
            value = tool.offset(a) if tool else 0.0
            p[TOOL_OFFSET + i] = value / scale if i < LINEAR else value
        p[TOOL_DIAMETER] = (tool.diameter if tool else 0.0) / scale
        shape = (self.tool_shapes or {}).get(number, (0.0, 0.0, 0))
        p[TOOL_DIAMETER + 1], p[TOOL_DIAMETER + 2], p[TOOL_DIAMETER + 3] = shape

    def set_spindle(self, code: int) -> None:
        self.state.spindle = code
        if code == 3:
            self.emit(canon.StartSpindleClockwise(self.line, 0))
        elif code == 4:
            self.emit(canon.StartSpindleCounterclockwise(self.line, 0))
        else:
            self.emit(canon.StopSpindleTurning(self.line, 0))

    def set_coolant(self, code: int) -> None:
        s = self.state
        if code == 7:
            s.mist = True
            self.emit(canon.MistOn(self.line))
        elif code == 8:
            s.flood = True
            self.emit(canon.FloodOn(self.line))
        else:  # M9 turns both off, and says so, whatever was on
            self.emit(canon.MistOff(self.line))
            self.emit(canon.FloodOff(self.line))
            s.mist = s.flood = False

    def set_override(self, code: int, block: Block) -> None:
        s = self.state
        line = self.line
        if code in (48, 49):
            s.feed_override = s.speed_override = code == 48
            self.emit(canon.OverrideSwitch(line, "feed", code == 48))
            self.emit(canon.OverrideSwitch(line, "speed", code == 48, 0))
            return
        on = block.words.get("p", 1.0) != 0.0
        if code == 50:
            s.feed_override = on
            self.emit(canon.OverrideSwitch(line, "feed", on))
        elif code == 51:
            s.speed_override = on
            self.emit(canon.OverrideSwitch(line, "speed", on, 0))
        elif code == 52:
            self.adaptive_feed = on
            self.emit(
                canon.Setting(line, "ENABLE_ADAPTIVE_FEED" if on else "DISABLE_ADAPTIVE_FEED")
            )
        else:
            self.feed_hold = on
            self.emit(canon.Setting(line, "ENABLE_FEED_HOLD" if on else "DISABLE_FEED_HOLD"))

    def set_output(self, code: int, block: Block) -> None:
        """M62-M68: digital and analog outputs (no motion; kept for the record)."""
        w = block.words
        line = self.line
        if code in (62, 63, 64, 65):
            if "p" not in w or w["p"] < 0:
                raise self.error(f"No valid P word with M{code}")
            name = {62: "SET_MOTION_OUTPUT_BIT", 63: "CLEAR_MOTION_OUTPUT_BIT",
                    64: "SET_AUX_OUTPUT_BIT", 65: "CLEAR_AUX_OUTPUT_BIT"}[code]  # fmt: skip
            self.emit(canon.Setting(line, name, (round(w["p"]),)))
        elif code == 66:
            if "p" not in w and "e" not in w:
                raise self.error("Need to have either a valid P or a valid E word with M66")
        else:
            if "e" not in w or w["e"] < 0:
                raise self.error(f"Need valid E word with M{code}")
            if "q" not in w:
                raise self.error(f"Need Q word with M{code}")
            name = "SET_MOTION_OUTPUT_VALUE" if code == 67 else "SET_AUX_OUTPUT_VALUE"
            self.emit(canon.Setting(line, name, (f"{round(w['e'])},{w['q']:.6f}",)))
