"""The RS274/NGC interpreter: program lines in, canonical operations out.

It follows LinuxCNC 2.9 (``src/emc/rs274ngc``): each line is read (``reader``), its
codes are checked (``modal``), and the block is executed in LinuxCNC's fixed order,
emitting :mod:`.canon` operations. This module holds the main loop, the block order
and the plain codes; the rest lives beside it, most as mixins of :class:`Interpreter`:

- ``owords``: O-word subroutines and flow control; ``modal_context``: M70-M73;
- ``offsets``: G10, G28/G30, G43/G49, G52/G92, G54-G59.3;
- ``arcs``: G2/G3; ``cycles``: G73, G81-G89; ``comp``: cutter radius compensation
  (G40-G42.1); ``spindle_sync``: G33/G33.1; ``splines``: G5.1; ``probing``: G38.x;
  ``polar``: ``@``/``^`` words;
- ``fastpath``: runs of plain motion lines, column-wise; ``echo``: the position
  standalone rs274's canonical layer believes in.

Two unit systems meet here. *Program units* follow G20/G21. *Machine units* are
those of the tool table and of the persistent parameters (#5161…, #5221…): millimetres
for our machines; standalone LinuxCNC ``rs274`` uses inches, which
``machine_units="inch"`` reproduces.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from pathlib import Path

from ..errors import GCodeError
from . import arcs, canon, cycles, fastpath, lathe_cycles, spindle_sync, splines
from .comp import COMP_AXES, QUEUED_OPS, CutterCompensation
from .echo import CanonPositionEcho
from .feeds_tools import FeedsToolsSpindle
from .modal import ModalCodes
from .modal_context import WORK_SYSTEM_CODES, WORK_SYSTEMS, ModalContextHandling
from .offsets import OffsetHandling
from .owords import CallFrame, OWordFlow
from .parameters import (
    CURRENT_POSITION,
    WORK_SYSTEM,
    Parameters,
    work_offset_index,
)
from .polar import PolarCoordinates
from .probing import PROBE_CODES, Probing
from .reader import Block, read_line
from .source import Position, ProgramSource
from .state import AXES, INCH_MM, LINEAR, ModalState
from .tooltable import Tool, ToolTable

PLANE_NAMES = {170: "XY", 180: "XZ", 190: "YZ"}
CONTROL_MODE_NAMES = {610: "EXACT_PATH", 611: "EXACT_STOP", 640: "CONTINUOUS"}
MAX_REPORTED_ERRORS = 200
FAST_CHUNK_MIN = 16 * 1024  # bytes the fast path reads at a time, doubling while it pays
FAST_CHUNK_MAX = 128 * 1024  # keeps the fast path's arrays to a few MB
FAST_COOLDOWN_LINES = 32


NO_CODES = ModalCodes(Block(0))  # for moves a cycle makes


class ProgramEnded(Exception):
    """Raised internally when M2/M30 or a closing ``%`` ends the program."""


class Interpreter(
    OWordFlow,
    OffsetHandling,
    CutterCompensation,
    PolarCoordinates,
    ModalContextHandling,
    Probing,
    FeedsToolsSpindle,
):
    """Interprets one program; iterate :meth:`run` for its canonical operations."""

    def __init__(
        self,
        tool_table: ToolTable | None = None,
        machine_units: str = "mm",
        rs274_quirks: bool = True,
        fast_path: bool = True,
        work_offsets: dict[int, Sequence[float]] | None = None,
    ) -> None:
        if machine_units not in ("mm", "inch"):
            raise ValueError(f"machine_units must be 'mm' or 'inch', not {machine_units!r}")
        self.tool_table = tool_table or ToolTable()
        self.machine_units = machine_units
        self.rs274_quirks = rs274_quirks
        self.state = ModalState()
        self.params = Parameters(self.system_parameter)
        self.out: list[canon.CanonOp] = []
        self.frames: list[CallFrame] = []
        self.subroutines: dict[str, tuple[ProgramSource, Position]] = {}
        self.line = 0
        self.percent_wrapped = False
        self.toolchange_pending = False
        self.echo = CanonPositionEcho()
        self.messages: list[str] = []  # (PRINT,…) output
        self.fast_path = fast_path
        self.fast_chunk = FAST_CHUNK_MIN
        self.fast_cooldown = 0  # lines to wait after the fast path found nothing to take
        self.loaded_pocket = 1  # standalone rs274 starts with pocket 1 "loaded"
        self.spindle_entry: Tool | None = None
        self.tool_shapes: dict[int, tuple[float, float, int]] | None = None
        self.owns_tool_table = False
        self.stale_break = False
        self.preset_offsets = dict(work_offsets or {})
        for index, values in self.preset_offsets.items():
            # a machine's stored work offsets (#5221…), in machine units like the parameters
            base = work_offset_index(index)
            self.params.numbered[base : base + len(values)] = [float(v) for v in values]
        self.adaptive_feed = False  # M52 (LinuxCNC's state, for M70-M72)
        self.feed_hold = True  # M53
        # after G38.x: (where the probe tripped, where the machine stopped), taken in when
        # the next line is read, as LinuxCNC does
        self.probe_result: tuple[list[float], list[float]] | None = None
        self.comp_queue = []  # cutter compensation's held-back calls (comp.py)
        self.comp_endpoint = None

    # --- running -----------------------------------------------------------------

    def run(
        self, source: ProgramSource, errors: list[GCodeError] | None = None
    ) -> Iterator[canon.CanonOp]:
        """Yield the program's canonical operations as it is interpreted.

        With ``errors`` given, a line that fails is recorded there and skipped, and
        interpretation goes on (for checking a whole program); otherwise the first
        error is raised.
        """
        self.frames = [CallFrame("", source, None)]
        first = True
        if 1 in self.preset_offsets:
            offset, rotation = self.work_offset(1)
            self.apply_offsets(g5x=offset, rotation=rotation)
            self.emit(canon.SetWorkOffset(0, 1, *offset))
            yield from self.out
            self.out.clear()
        try:
            while True:
                text = self.current_source.next_line()
                if text is None:
                    raise GCodeError(
                        "File ended with no percent sign or program end",
                        self.current_source.line_no + 1,
                    )
                self.line = self.current_source.line_no
                if first and text.strip():
                    first = False
                    if text.strip() == "%":
                        self.percent_wrapped = True
                        continue
                try:
                    self.execute_line(text)
                    if self.fast_path and not first:
                        self.run_fast_path()
                except GCodeError as exc:
                    if errors is None or len(errors) >= MAX_REPORTED_ERRORS:
                        raise
                    self.out.clear()
                    errors.append(self.locate(exc))
                    continue
                if self.out:
                    yield from self.out
                    self.out.clear()
        except ProgramEnded:
            yield from self.out
            self.out.clear()
        except GCodeError as exc:
            exc = self.locate(exc)
            if errors is None:
                raise
            errors.append(exc)
        finally:
            for frame in self.frames:
                if frame.source is not source:
                    frame.source.close()

    def locate(self, exc: GCodeError) -> GCodeError:
        """Name the file the error is in (subroutines may live in other files)."""
        if exc.file == "<program>":
            exc.file = self.current_source.name
        return exc

    @property
    def current_source(self) -> ProgramSource:
        return self.frames[-1].source

    def emit(self, op: canon.CanonOp) -> None:
        if self.comp_queue and type(op) in QUEUED_OPS:
            self.comp_queue.append(op)  # waits behind a compensated move (comp.py)
            return
        self.out.append(op)
        if self.rs274_quirks:
            self.echo.observe(op)

    def emit_now(self, op: canon.CanonOp) -> None:
        self.out.append(op)
        if self.rs274_quirks:
            self.echo.observe(op)

    def error(self, message: str, col: int = 1) -> GCodeError:
        return GCodeError(message, self.line, col)

    @property
    def user_to_program(self) -> float:
        """Factor from machine units (tool table, parameters) to program units."""
        machine = INCH_MM if self.machine_units == "inch" else 1.0
        return machine / self.state.mm_per_unit

    def run_fast_path(self) -> None:
        """Take the plain-motion lines that follow, column-wise (see :mod:`.fastpath`)."""
        if self.fast_cooldown:
            self.fast_cooldown -= 1
            return
        s = self.state
        if (
            s.feed_mode != 940
            or self.toolchange_pending
            or s.comp_side
            or s.arc_not_allowed
            or s.diameter_mode  # X words are halved on the ordinary path
        ):
            return
        source = self.current_source
        start = source.tell()
        chunk = source.read_chunk(self.fast_chunk)
        result = fastpath.interpret_chunk(
            chunk, start.line, s.position, s.motion_mode, s.feed_rate, s.incremental,
            s.arc_incremental, s.plane, s.units,
        )  # fmt: skip
        if result is None:
            source.seek(start)
            self.fast_cooldown = FAST_COOLDOWN_LINES
            self.fast_chunk = FAST_CHUNK_MIN
            return
        source.seek(Position(start.offset + result.consumed, start.line + result.lines))
        self.line = start.line + result.lines - 1
        if result.consumed == len(chunk):
            self.fast_chunk = min(self.fast_chunk * 2, FAST_CHUNK_MAX)
        if result.batch is None:
            return
        self.out.append(result.batch)
        if (result.batch.kind >= 0).any():
            s.position = result.position
            s.cycle_motion = s.cycle_initial_level = None
            self.echo.position = list(result.position)
        s.motion_mode = result.motion_mode
        s.feed_rate = result.feed_rate
        p = self.params.numbered
        p[CURRENT_POSITION : CURRENT_POSITION + 6] = s.position

    def execute_line(self, text: str) -> None:
        if self.probe_result is not None:
            self.take_probe_result()
        block = read_line(text, self.line, self.params)
        if block.percent:
            if self.percent_wrapped:
                self.emit(canon.Setting(self.line, "FINISH"))
                raise ProgramEnded
            raise self.error("Bad character '%' used")
        if block.empty:
            return
        if self.toolchange_pending and self.rs274_quirks:
            # LinuxCNC re-reads the position from the canonical layer after a tool change
            self.state.position = list(self.echo.position)
        self.toolchange_pending = False
        if block.param_settings:
            self.params.set_many(block.param_settings)
        if block.oword is not None:
            self.execute_oword(block.oword, block)
            return
        if self.state.diameter_mode and "x" in block.words:
            block.words["x"] /= 2  # G7: X words are diameters (LinuxCNC halves them on reading)
        codes = ModalCodes(block)
        self.execute_block(block, codes)

    # --- system parameters ---------------------------------------------------------

    # --- system parameters ---------------------------------------------------------

    def system_parameter(self, name: str) -> float | None:
        """Read-only named parameters such as ``#<_x>`` and ``#<_metric>``."""
        s = self.state
        if len(name) == 2 and name[1] in AXES:
            return s.position[AXES.index(name[1])]
        if name in ("_u", "_v", "_w"):
            return 0.0
        if name.startswith("_abs_") and len(name) == 6 and name[5] in AXES:
            return s.to_machine(s.position)[AXES.index(name[5])]
        flags = {
            "_metric": s.units == "mm",
            "_imperial": s.units == "inch",
            "_absolute": not s.incremental,
            "_incremental": s.incremental,
            "_inverse_time": s.feed_mode == 930,
            "_units_per_minute": s.feed_mode == 940,
            "_units_per_rev": s.feed_mode == 950,
            "_retract_r_plane": not s.retract_old_z,
            "_retract_old_z": s.retract_old_z,
            "_spindle_rpm_mode": True,
            "_spindle_css_mode": False,
            "_ijk_absolute_mode": not s.arc_incremental,
            "_lathe_diameter_mode": s.diameter_mode,
            "_lathe_radius_mode": not s.diameter_mode,
            "_spindle_on": s.spindle in (3, 4),
            "_spindle_cw": s.spindle == 3,
            "_mist": s.mist,
            "_flood": s.flood,
            "_speed_override": s.speed_override,
            "_feed_override": s.feed_override,
            "_adaptive_feed": False,
            "_feed_hold": True,
        }
        if name in flags:
            return float(flags[name])
        values = {
            "_feed": s.feed_rate,
            "_rpm": s.speed,
            "_current_tool": float(s.tool_in_spindle),
            "_current_pocket": float(s.tool_in_spindle),
            "_selected_tool": float(s.selected_tool),
            "_selected_pocket": float(s.selected_tool),
            "_coord_system": float(WORK_SYSTEM_CODES[s.origin_index]),
            "_plane": float(s.plane),
            "_motion_mode": float(s.motion_mode),
            "_ccomp": float((400, 410, 420)[s.comp_side]),
            "_tool_offset": float(any(s.tool_offset)),
            "_call_level": float(self.params.call_level),
            "_line": float(self.line),
            "_vmajor": 2.9,  # LinuxCNC's own values for 2.9
            "_vminor": 0.0,
        }
        return values.get(name)

    # --- one block, in LinuxCNC's order of execution --------------------------------

    def execute_block(self, block: Block, codes: ModalCodes) -> None:
        s = self.state
        g = codes.g
        m = codes.m
        words = block.words
        if "@" in words or "^" in words:
            self.check_polar(block, codes)
        self.check_words(block, codes)
        if block.comment is not None:
            self.execute_comment(block.comment)
        if 5 in g:
            self.set_feed_mode(g[5])
        if "f" in words:
            self.set_feed_rate(words["f"], block)
        if "s" in words:
            self.set_speed(words["s"])
        if "t" in words:
            self.select_tool(words["t"], block)
        if 5 in m:
            self.set_output(m[5], block)
        if 6 in m:
            self.change_tool(m[6], block)
        if 7 in m:
            if m[7] >= 70:
                self.modal_context(m[7])
            else:
                self.set_spindle(m[7])
        if 8 in m:
            self.set_coolant(m[8])
        if 9 in m:
            self.set_override(m[9], block)
        if g.get(0) == 40:
            self.dwell(block)
        if 2 in g:
            self.select_plane(g[2])
        if 6 in g:
            self.set_units(g[6])
        if 7 in g:
            self.set_cutter_comp(g[7], block)
        if 8 in g:
            self.set_tool_length_offset(g[8], block)
        if 12 in g:
            self.select_work_system(WORK_SYSTEMS[g[12]])
        if 13 in g:
            self.set_control_mode(g[13], block)
        if 3 in g:
            self.set_distance_mode(g[3])
        if 4 in g:
            self.set_arc_distance_mode(g[4])
        if 15 in g:
            self.set_diameter_mode(g[15], block)
        if 10 in g:
            self.set_retract_mode(g[10])
        non_modal = g.get(0)
        if non_modal in (100, 280, 281, 300, 301, 520, 920, 921, 922, 923):
            self.execute_non_modal(non_modal, block)
        motion = self.motion_to_be(block, codes)
        if motion is not None:
            self.execute_motion(motion, block, codes)
        if 4 in m:
            self.stop(m[4])
        p = self.params.numbered
        p[CURRENT_POSITION : CURRENT_POSITION + 6] = s.position

    def check_words(self, block: Block, codes: ModalCodes) -> None:
        """Reject words that no code on the line (or the modal motion) uses."""
        w = block.words
        g = codes.g
        m = codes.m
        motion = g.get(1, self.state.motion_mode)
        non_modal = g.get(0)
        if motion in lathe_cycles.CODES:
            return  # their words (D E I K P Q R ...) are the cycle's parameters

        def fail(letter: str, message: str) -> None:
            raise self.error(message, block.columns[letter])

        if "p" in w and not (
            non_modal in (40, 100)
            or motion in (20, 30, 820, 840, 860, 880, 890)
            or g.get(13) == 640
            or m.get(9) in (50, 51, 52, 53)
            or m.get(5) in (62, 63, 64, 65, 66)
        ):
            fail("p", "P word with no G2 G3 G4 G10 G64 G5 G5.2 G76 G82 G86 G88 G89 or M50 M51 M52 "
                      "M53 M62 M63 M64 M65 M66 M98 or user M code to use it")  # fmt: skip
        if "q" in w and not (
            non_modal == 100 or motion in (730, 830) or g.get(13) == 640
            or m.get(5) in (66, 67, 68) or m.get(6) == 61
        ):  # fmt: skip
            fail("q", "Q word with no G5, G10, G64, G73, G76, G83, M19, M66, M67, M68 or user M "
                      "code that uses it")  # fmt: skip
        if "r" in w and not (motion in (20, 30, 730) or 800 < motion <= 890 or non_modal == 100):
            fail("r", "R word with no g code that uses it")
        if "l" in w and not (
            non_modal == 100
            or motion == 730
            or 800 < motion <= 890
            or m.get(5) == 66
            or g.get(7) in (411, 421)
        ):
            fail("l", "L word with no G10, cutter compensation, canned cycle, digital/analog input, "
                      "M98 or NURBS code")  # fmt: skip
        if "h" in w and g.get(8) not in (430, 432):
            fail("h", "H word with no G43 or G76 to use it")
        if "d" in w and g.get(7) not in (410, 411, 420, 421):
            fail("d", "D word with no G41, G41.1, G42, G42.1, G71, G71.1, G71.2 or G96 to use it")
        if "e" in w and m.get(5) not in (66, 67, 68):
            fail("e", "E word with no G70, G76, M66, M67 or M68 to use it")
        if "i" in w and not (motion in (20, 30, 51, 331, 870) or non_modal == 100):
            fail("i", "I word with no G2, G3, G5, G5.1, G10, G33.1, G76, or G87 to use it")
        if "j" in w and not (motion in (20, 30, 51, 870) or non_modal == 100):
            fail("j", "J word with no G2, G3, G5, G5.1, G10, G76 or G87 to use it")
        if "k" in w and motion not in (20, 30, 330, 331, 870):
            fail("k", "K word with no G2, G3, G33, G33.1, G76, or G87 to use it")
        if motion in spindle_sync.CODES and (1 in g or any(a in w for a in AXES)):
            spindle_sync.check_words(self, block, motion)

    # --- comments and messages -------------------------------------------------------

    def execute_comment(self, text: str) -> None:
        body = text.lstrip()
        lowered = body.lower()
        if lowered.startswith("msg,"):
            self.emit(canon.Message(self.line, body[4:]))
        elif lowered.startswith("debug,"):
            self.emit(canon.Message(self.line, self.substitute_parameters(body[6:])))
        elif lowered.startswith("print,"):
            self.messages.append(self.substitute_parameters(body[6:]))
        elif lowered.startswith("abort,"):
            raise self.error(self.substitute_parameters(body[6:]))
        elif lowered.startswith("log,"):  # file logging: recorded, not written
            self.emit(
                canon.Setting(self.line, "LOG", (f'"{self.substitute_parameters(body[4:])}"',))
            )
        elif lowered.startswith(("logopen,", "logappend,")):
            name = "LOGOPEN" if lowered.startswith("logopen,") else "LOGAPPEND"
            self.emit(canon.Setting(self.line, name, (f'"{body[len(name) + 1 :]}"',)))
        elif lowered == "logclose":
            self.emit(canon.Setting(self.line, "LOGCLOSE"))
        else:
            self.emit(canon.Comment(self.line, body))

    def substitute_parameters(self, text: str) -> str:
        def value(match: re.Match[str]) -> str:
            ref = match.group(1)
            try:
                if ref.startswith("<"):
                    v = self.params.get_named(re.sub(r"\s", "", ref[1:-1]))
                else:
                    v = self.params.get_numbered(int(ref))
            except (KeyError, IndexError):
                return "######"
            return f"{v:.6f}"

        return re.sub(r"#(<[^>]*>|\d+)", value, text)

    def dwell(self, block: Block) -> None:
        p = block.words.get("p", -1.0)
        if p == -1.0:  # LinuxCNC uses -1 as "no P"
            raise self.error("Dwell time missing with g4")
        self.emit(canon.Dwell(self.line, p))

    # --- plane, units, modes ----------------------------------------------------------

    def select_plane(self, code: int) -> None:
        if self.state.comp_side and code != self.state.plane:
            raise self.error("Cannot change planes with cutter radius compensation on")
        self.state.plane = code
        self.emit(canon.SelectPlane(self.line, PLANE_NAMES[code]))

    def set_units(self, code: int) -> None:
        s = self.state
        new = "inch" if code == 200 else "mm"
        self.emit(canon.UseLengthUnits(self.line, new))
        if new == s.units:
            return
        factor = 1 / INCH_MM if new == "inch" else INCH_MM
        for values in (s.position, s.g5x_offset, s.g92_offset):
            for i in range(LINEAR):
                values[i] *= factor
        if not self.rs274_quirks:
            # LinuxCNC re-reads the tool offset from its canonical layer unconverted
            for i in range(LINEAR):
                s.tool_offset[i] *= factor
        s.units = new

    def set_control_mode(self, code: int, block: Block) -> None:
        s = self.state
        if s.comp_side:
            raise self.error("Cannot change control mode with cutter radius compensation on")
        s.control_mode = code
        if code == 640:
            p = block.words.get("p", -1.0)
            q = block.words.get("q", -1.0)
            tolerance = p if p >= 0 else 0.0
            naive = q if q >= 0 else tolerance
            s.tolerance, s.naive_tolerance = tolerance, naive
            self.emit(canon.SetMotionControlMode(self.line, "CONTINUOUS", tolerance))
            self.emit(canon.SetNaivecamTolerance(self.line, naive))
        else:
            self.emit(canon.SetMotionControlMode(self.line, CONTROL_MODE_NAMES[code]))

    def set_distance_mode(self, code: int) -> None:
        s = self.state
        incremental = code == 910
        if incremental != s.incremental:
            mode = "incremental" if incremental else "absolute"
            self.emit(canon.Comment(self.line, f"interpreter: distance mode changed to {mode}"))
        s.incremental = incremental

    def set_arc_distance_mode(self, code: int) -> None:
        s = self.state
        incremental = code == 911
        if incremental != s.arc_incremental:
            mode = "incremental" if incremental else "absolute"
            self.emit(canon.Comment(self.line, f"interpreter: IJK distance mode changed to {mode}"))
        s.arc_incremental = incremental

    def set_diameter_mode(self, code: int, block: Block) -> None:
        """G7/G8: the X word of this very block is read in the new mode."""
        s = self.state
        diameter = code == 70
        if diameter == s.diameter_mode:
            return
        if "x" in block.words:
            block.words["x"] *= 0.5 if diameter else 2.0
        mode = "diameter" if diameter else "radius"
        self.emit(canon.Comment(self.line, f"interpreter: Lathe diameter mode changed to {mode}"))
        s.diameter_mode = diameter

    def set_retract_mode(self, code: int) -> None:
        old_z = code == 980
        mode = "old_z" if old_z else "r_plane"
        self.emit(canon.Comment(self.line, f"interpreter: retract mode set to {mode}"))
        self.state.retract_old_z = old_z

    # --- motion ------------------------------------------------------------------------

    def motion_to_be(self, block: Block, codes: ModalCodes) -> int | None:
        s = self.state
        w = block.words
        has_axes = any(a in w for a in AXES) or "@" in w or "^" in w
        non_modal = codes.g.get(0)
        covets_axes = non_modal in (100, 280, 300, 520, 920)
        if 1 in codes.g:
            code = codes.g[1]
            if code == 800:
                if has_axes and not covets_axes:
                    raise self.error("Cannot use axis values with g80", codes.g_cols[1])
                s.motion_mode = 800
                s.cycle_motion = s.cycle_initial_level = None
                self.emit(canon.Comment(self.line, "interpreter: motion mode set to none"))
                return None
            if covets_axes:
                raise self.error(
                    "Cannot use two g codes that both use axis values", codes.g_cols[1]
                )
            if (code in PROBE_CODES or code in spindle_sync.CODES) and not has_axes:
                raise self.error("All axes missing with motion code", codes.g_cols[1])
            return code
        if codes.g.get(8) == 431:
            return None  # G43.1 takes the axis words; only an explicit motion code moves too
        if covets_axes or not has_axes:
            if non_modal in (281, 301) and has_axes:
                raise self.error("Cannot use axis values without a g code that uses them")
            return None
        if s.motion_mode == 800:
            raise self.error("Cannot use axis values without a g code that uses them")
        return s.motion_mode

    def axis_target(self, block: Block) -> list[float]:
        """End point in the program frame from the axis words and the distance mode."""
        s = self.state
        target = list(s.position)
        if s.comp_side and not s.comp_firstmove:
            # compensation on: words continue from the programmed point, not the tool's
            first, second, _ = COMP_AXES[s.plane]
            target[first] = s.program_point[first]
            target[second] = s.program_point[second]
        words = block.words
        for i, a in enumerate(AXES):
            if a in words:
                target[i] = target[i] + words[a] if s.incremental else words[a]
        if "@" in words or "^" in words:
            target[0], target[1] = self.polar_end(words, target[0], target[1])
        return target

    def execute_motion(self, motion: int, block: Block, codes: ModalCodes) -> None:
        s = self.state
        if motion in lathe_cycles.CODES:
            lathe_cycles.execute(self, motion, block)
            return
        is_cycle = 800 < motion <= 890 or motion == 730
        if not is_cycle:
            s.cycle_motion = s.cycle_initial_level = None
        if codes.g.get(0) == 530:
            if "@" in block.words or "^" in block.words:
                raise self.error("Cannot use polar coordinates with G53")
            if motion not in (0, 10):
                raise self.error("Must use G0 or G1 with G53")
            if s.incremental:
                raise self.error("Cannot use g53 incremental")
            if s.comp_side and s.comp_radius > 0.0:
                raise self.error("Cannot use g53 with cutter radius comp")
            machine = s.to_machine(s.position)
            for i, a in enumerate(AXES):
                if a in block.words:
                    machine[i] = block.words[a]
            target = s.to_program(machine)
        elif is_cycle:
            s.motion_mode = motion
            cycles.execute_cycle(self, motion, block)
            return
        else:
            target = self.axis_target(block)
        if motion in PROBE_CODES:
            self.probe(motion, target)
            return
        if motion == 51:  # G5.1 leaves the motion mode as it was
            splines.execute_quadratic(self, block, target)
            return
        s.motion_mode = motion
        if motion in spindle_sync.CODES:
            spindle_sync.execute(self, motion, block, target)
            return
        if motion in (0, 10):
            s.arc_not_allowed = False
        if motion in (0, 10) and s.comp_side and s.comp_radius > 0.0:
            if motion == 10:
                self.feed_move(block, target, move=False)
            self.comp_straight(motion, block, target)
            return
        if motion == 0:
            self.emit(canon.StraightTraverse(self.line, *target))
        elif motion == 10:
            self.feed_move(block, target)
        else:
            if ("@" in block.words or "^" in block.words) and s.plane == 170:
                # a polar end point counts as the X and Y words an R-format arc needs
                block.words.setdefault("x", target[0])
            arcs.execute_arc(self, motion, block, target)
            if s.comp_side and s.comp_radius > 0.0 and s.plane != 190:
                return  # the compensated arc has set the position
        s.position = target

    def feed_move(self, block: Block, target: list[float], move: bool = True) -> None:
        s = self.state
        if s.feed_mode == 930:
            if "f" not in block.words:
                raise self.error("F word missing with inverse time g1 move")
            rate = max(linear_length(s.position, target) * block.words["f"], 0.1)
            self.emit(canon.SetFeedRate(self.line, rate))
        elif s.feed_mode == 950:
            if s.speed == 0.0:
                raise self.error("Cannot feed with zero spindle speed in feed per rev mode")
        elif s.feed_rate == 0.0:
            raise self.error("Cannot do g1 with zero feed rate")
        if move:
            self.emit(canon.StraightFeed(self.line, *target))

    def cycle_move(self, motion: int, block: Block) -> None:
        """A move a cycle makes as if it were programmed (lathe cycles)."""
        self.execute_motion(motion, block, NO_CODES)

    # --- program stops -----------------------------------------------------------------

    def stop(self, code: int) -> None:
        if self.comp_queue:  # a held compensated move ends where it is
            x, y, _ = self.comp_current()
            self.move_endpoint_and_flush(x, y)
            self.dequeue()
        if code == 0:
            self.emit(canon.ProgramStop(self.line))
        elif code == 1:
            self.emit(canon.OptionalProgramStop(self.line))
        elif code == 60:
            self.emit(canon.Setting(self.line, "PALLET_SHUTTLE"))
            self.emit(canon.ProgramStop(self.line))
        else:
            self.end_program(code)
            raise ProgramEnded

    def end_program(self, code: int) -> None:
        """M2/M30: LinuxCNC's resets, in its order."""
        s = self.state
        line = self.line
        offset, rotation = self.work_offset(1)
        s.origin_index = 1
        self.params.numbered[WORK_SYSTEM] = 1.0
        self.apply_offsets(g5x=offset, rotation=rotation)
        self.emit(canon.SetWorkOffset(line, 1, *offset))
        self.emit(canon.SetXYRotation(line, rotation))
        if s.plane != 170:
            s.plane = 170
            self.emit(canon.SelectPlane(line, "XY"))
        s.incremental = False
        s.feed_mode = 940
        self.emit(canon.SetFeedMode(line, 0, 0))
        s.feed_rate = 0.0
        self.emit(canon.SetFeedRate(line, 0.0))
        if not s.feed_override:
            s.feed_override = True
            self.emit(canon.OverrideSwitch(line, "feed", True))
        s.comp_side = 0
        s.comp_firstmove = True
        s.spindle = 5
        self.emit(canon.StopSpindleTurning(line, 0))
        self.emit(canon.SetSpindleMode(line, 0, 0.0))
        s.motion_mode = 10
        if s.mist:
            self.emit(canon.MistOff(line))
        if s.flood:
            self.emit(canon.FloodOff(line))
        s.mist = s.flood = False
        if code == 30:
            self.emit(canon.Setting(line, "PALLET_SHUTTLE"))
        self.emit(canon.ProgramEnd(line))
        if self.percent_wrapped and not self.closing_percent_follows():
            self.emit(canon.Comment(line, "interpreter: percent sign missing from end of file"))

    def closing_percent_follows(self) -> bool:
        source = self.current_source
        while (text := source.next_line()) is not None:
            if text.strip() == "%":
                return True
        return False


def linear_length(a: list[float], b: list[float]) -> float:
    d = sum((b[i] - a[i]) ** 2 for i in range(LINEAR))
    if d == 0.0:
        d = sum((b[i] - a[i]) ** 2 for i in range(LINEAR, 6))
    return d**0.5


def interpret_batches(
    program: str | Path | ProgramSource,
    tool_table: ToolTable | None = None,
    machine_units: str = "mm",
    rs274_quirks: bool = True,
    work_offsets: dict[int, Sequence[float]] | None = None,
) -> Iterator[canon.CanonOp]:
    """Canonical ops, with runs of plain moves as :class:`.canon.MotionBatch` columns.

    ``work_offsets`` presets stored work coordinate systems ({1: (x, y, z)} is G54),
    in machine units, as a machine's parameter file would.
    """
    source = program if isinstance(program, ProgramSource) else ProgramSource.from_path(program)
    try:
        interp = Interpreter(tool_table, machine_units, rs274_quirks, work_offsets=work_offsets)
        yield from interp.run(source)
    finally:
        source.close()


def interpret(
    program: str | Path | ProgramSource,
    tool_table: ToolTable | None = None,
    machine_units: str = "mm",
    rs274_quirks: bool = True,
    work_offsets: dict[int, Sequence[float]] | None = None,
) -> Iterator[canon.CanonOp]:
    """Interpret a program file (path) or a :class:`ProgramSource`; yields canonical ops."""
    ops = interpret_batches(program, tool_table, machine_units, rs274_quirks, work_offsets)
    yield from canon.expand(ops)


def interpret_text(
    text: str,
    tool_table: ToolTable | None = None,
    machine_units: str = "mm",
    name: str = "<program>",
    directory: Path | None = None,
) -> Iterator[canon.CanonOp]:
    """Interpret program text held in memory."""
    source = ProgramSource.from_text(text, name, directory)
    yield from interpret(source, tool_table, machine_units)


def check_program(
    path: str | Path, tool_table: ToolTable | None = None, machine_units: str = "mm"
) -> list[GCodeError]:
    """Every error in a program (each failing line is skipped and checking goes on)."""
    errors: list[GCodeError] = []
    source = ProgramSource.from_path(path)
    try:
        for _ in Interpreter(tool_table, machine_units).run(source, errors):
            pass
    finally:
        source.close()
    return errors
