"""M70-M73: saving and restoring the modal state, as LinuxCNC 2.9 does it.

M70 saves, M71 invalidates, M72 restores, M73 saves and restores on return from the
subroutine. LinuxCNC restores by executing G-code made from the differences between the
saved and the current state, so the restore emits the same calls a program would.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import GCodeError
from .modal import ModalCodes
from .owords import CallFrame, ModalContext
from .parameters import G92_ENABLED, Parameters
from .reader import Block, read_line
from .state import ModalState

WORK_SYSTEMS = {540: 1, 550: 2, 560: 3, 570: 4, 580: 5, 590: 6, 591: 7, 592: 8, 593: 9}
WORK_SYSTEM_CODES = {v: k for k, v in WORK_SYSTEMS.items()}


class ModalContextHandling:
    """Mixed into the Interpreter: M70-M73."""

    if TYPE_CHECKING:
        state: ModalState
        params: Parameters
        frames: list[CallFrame]
        line: int
        adaptive_feed: bool
        feed_hold: bool

        def error(self, message: str, col: int = 1) -> GCodeError: ...

        def execute_block(self, block: Block, codes: ModalCodes) -> None: ...

    def modal_context(self, code: int) -> None:
        """M70 save, M71 invalidate, M72 restore, M73 save and restore on return."""
        frame = self.frames[-1]
        if code in (70, 73):
            frame.saved_context = self.capture_context()
            if code == 73 and len(self.frames) > 1:  # at the top level: saved, nothing more
                frame.restore_on_return = True
        elif code == 71:
            frame.saved_context = None
        else:
            if frame.saved_context is None:
                raise self.error(
                    "Cannot restore context from invalid stack frame - missing M70/M73?"
                )
            self.restore_context(frame.saved_context)

    def capture_context(self) -> ModalContext:
        """The state as LinuxCNC 2.9's write_g_codes / write_m_codes / write_settings record it."""
        s = self.state
        g = {
            3: s.plane,
            4: (400, 410, 420)[s.comp_side],  # G41/G42 come back without their D
            5: 200 if s.units == "inch" else 210,
            6: 910 if s.incremental else 900,
            7: s.feed_mode,
            8: WORK_SYSTEM_CODES[s.origin_index],
            9: 430 if any(s.tool_offset) else 490,
            10: 980 if s.retract_old_z else 990,
            11: s.control_mode,
            13: 970,
            14: 911 if s.arc_incremental else 901,
            15: 70 if s.diameter_mode else 80,
            16: 923 if self.params.numbered[G92_ENABLED] == 1.0 else -1,  # G92 applied
        }
        m = {
            2: s.spindle,
            4: 7 if s.mist else (-1 if s.flood else 9),
            5: 8 if s.flood else -1,
            6: 48 if s.feed_override else 49,  # 2.9 looks at the feed override only
            7: 52 if self.adaptive_feed else -1,
            8: 53 if self.feed_hold else -1,
        }
        return ModalContext(g, m, s.feed_rate, s.speed, (s.tolerance, s.naive_tolerance))

    def restore_context(self, saved: ModalContext) -> None:
        """LinuxCNC restores by executing G-code made from the differences, in its order:
        G20/G21 alone first, then one line of F, S and the G codes followed by the first
        differing M code, then each further M code on a line of its own."""
        current = self.capture_context()
        if saved.g_codes[5] != current.g_codes[5]:
            self.execute_generated(f"G{saved.g_codes[5] // 10}")
            current = self.capture_context()
        cmd = ""
        if saved.feed != current.feed:
            cmd += f" F{saved.feed:.1f}"
        if saved.speed != current.speed:
            cmd += f" S{saved.speed:.0f}"
        for slot, code in saved.g_codes.items():
            if slot == 16 and code != current.g_codes[slot]:
                cmd += " G92.3" if code == 923 else " G92.2"
            elif slot == 11 and code == 640:  # G64 comes back with its tolerances
                if code != current.g_codes[slot] or saved.tolerances != current.tolerances:
                    cmd += " G64 P{:f} Q{:f}".format(*saved.tolerances)
            elif slot != 5 and code != current.g_codes[slot]:
                cmd += f" G{code // 10}.{code % 10}" if code % 10 else f" G{code // 10}"
        for slot, code in saved.m_codes.items():
            if code != current.m_codes[slot] and code != -1:
                cmd += f"M{code}\n"
        for text in cmd.split("\n"):
            if text:
                self.execute_generated(text)

    def execute_generated(self, text: str) -> None:
        block = read_line(text, self.line, self.params)
        self.execute_block(block, ModalCodes(block))
