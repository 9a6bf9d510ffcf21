"""O-word flow control: subroutines, loops and conditionals.

Jumps are done by seeking in the :class:`.source.ProgramSource`; only the positions
of open loops and known subroutines are remembered, never the program text.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import GCodeError
from .parameters import Parameters
from .reader import O_KEYWORDS, Block, OWord, read_line
from .source import Position, ProgramSource

MAX_CALL_DEPTH = 64
MAX_LOOP_ITERATIONS = 10_000_000
OWORD_LINE = re.compile(r"^(?:/)?(?:n\d+(?:\.\d*)?)?o(<[^>]*>|\d+)([a-z]+)")


@dataclass(slots=True)
class ControlBlock:
    """An open while/do/repeat/if in the current call frame."""

    name: str
    keyword: str
    position: Position  # start of the line that opened it
    remaining: int = 0  # repeat count left
    done: bool = False  # an if/elseif branch has run
    iterations: int = 0
    line: int = 0  # where the loop statement is, for errors (0: the line at `position`)

    def count_iteration(self) -> None:
        """Fail closed on a loop that never ends: a checker or pre-flight must return."""
        self.iterations += 1
        if self.iterations > MAX_LOOP_ITERATIONS:
            raise GCodeError(
                f"o{self.name} {self.keyword} loop ran {MAX_LOOP_ITERATIONS:,} times; "
                "stopped as an endless loop",
                self.line or self.position.line,
            )


@dataclass(slots=True)
class CallFrame:
    name: str
    source: ProgramSource
    return_to: Position | None
    blocks: list[ControlBlock] = field(default_factory=list)
    saved_context: ModalContext | None = None  # M70/M73; None once M71 invalidates it
    restore_on_return: bool = False  # M73: restore the saved context on return/endsub


@dataclass(slots=True, frozen=True)
class ModalContext:
    """What M70/M73 save, in LinuxCNC's terms: G codes x10 by slot, M codes, F and S."""

    g_codes: dict[int, int]  # LinuxCNC's active_g_codes slot -> code
    m_codes: dict[int, int]  # active_m_codes slot -> code (-1: none)
    feed: float
    speed: float
    tolerances: tuple[float, float]  # G64 P and Q


def oword_of(text: str) -> tuple[str, str] | None:
    """(name, keyword) when the line is an O-word statement, read cheaply (no evaluation)."""
    m = OWORD_LINE.match(text.replace(" ", "").replace("\t", "").lower())
    return (m.group(1), m.group(2)) if m else None


def is_sub_definition(text: str, name: str) -> bool:
    found = oword_of(text)
    return found is not None and found[0] == name and found[1].startswith("sub")


class OWordFlow:
    """Mixed into the Interpreter: executes O-word statements."""

    frames: list[CallFrame]
    subroutines: dict[str, tuple[ProgramSource, Position]]
    line: int
    # LinuxCNC's break sets a flag that only the closing `while` of a do-loop clears; a
    # break out of a while-loop leaves it set, so the next do-loop runs its body once.
    stale_break: bool  # (set in Interpreter.__init__)

    if TYPE_CHECKING:
        params: Parameters

        @property
        def current_source(self) -> ProgramSource: ...

        def error(self, message: str, col: int = 1) -> GCodeError: ...

        def restore_context(self, context: ModalContext) -> None: ...

    # --- O-words -------------------------------------------------------------------

    def execute_oword(self, word: OWord, block: Block) -> None:
        frame = self.frames[-1]
        kw = word.keyword
        if kw == "sub":
            self.define_subroutine(word)
        elif kw == "call":
            self.call_subroutine(word)
        elif kw in ("endsub", "return"):
            self.return_from_subroutine(word, frame)
        elif kw == "do":
            frame.blocks.append(ControlBlock(word.name, "do", self.line_start()))
        elif kw == "while":
            self.execute_while(word, frame)
        elif kw == "endwhile":
            self.execute_endwhile(word, frame)
        elif kw == "repeat":
            self.execute_repeat(word, frame)
        elif kw == "endrepeat":
            self.execute_endrepeat(word, frame)
        elif kw == "if":
            self.execute_if(word, frame)
        elif kw in ("elseif", "else"):
            self.execute_else(word, frame)
        elif kw == "endif":
            self.close_block(word, frame, ("if",))
        elif kw == "break":
            self.execute_break(word, frame)
        elif kw == "continue":
            self.execute_continue(word, frame)

    def line_start(self) -> Position:
        """Position of the line just read (to come back to it)."""
        return self.current_source.last_line_start

    def find_open(self, word: OWord, frame: CallFrame, keywords: tuple[str, ...]) -> int:
        for i in range(len(frame.blocks) - 1, -1, -1):
            if frame.blocks[i].name == word.name and frame.blocks[i].keyword in keywords:
                return i
        raise self.error(f"o{word.name} {word.keyword} without a matching {'/'.join(keywords)}")

    def close_block(self, word: OWord, frame: CallFrame, keywords: tuple[str, ...]) -> ControlBlock:
        i = self.find_open(word, frame, keywords)
        block = frame.blocks[i]
        del frame.blocks[i:]
        return block

    def skip_to(self, name: str, keywords: tuple[str, ...], start_line: int) -> OWord:
        """Read forward, without executing, to the o-word ``name`` with one of ``keywords``."""
        source = self.current_source
        while True:
            text = source.next_line()
            if text is None:
                raise GCodeError(
                    f"o{name} has no matching {'/'.join(keywords)} before the end of the file",
                    start_line,
                )
            self.line = source.line_no
            found = oword_of(text)
            if found is None:
                continue
            # skipped lines are not executed, but their O-words are still read
            if found[1] not in O_KEYWORDS:
                raise self.error("Unknown control command in o word")
            if found[1] == "sub" and keywords == ("endsub",):
                raise self.error("Nested subroutine definition")
            if found[0] != name:
                continue
            kw = found[1]
            for keyword in keywords:
                if kw.startswith(keyword):
                    if keyword in ("elseif", "while"):
                        block = read_line(text, self.line, self.params)
                        assert block.oword is not None
                        return block.oword
                    return OWord(name, keyword)

    def define_subroutine(self, word: OWord) -> None:
        if len(self.frames) > 1 and self.frames[-1].name == word.name:
            raise self.error(f"Subroutine o{word.name} defined inside itself")
        here = (self.current_source, self.current_source.tell())
        known = self.subroutines.get(word.name)
        if known is not None:
            # met again (in a loop), or after a call found it further down: LinuxCNC
            # only accepts a definition met in normal flow before any use
            if known[0] is here[0] and known[1] == here[1]:
                raise self.error(f"sub o{word.name} found in illegal location")
            raise self.error(f"redefining sub o{word.name}: already defined")
        self.subroutines[word.name] = here
        self.skip_to(word.name, ("endsub",), self.line)

    def call_subroutine(self, word: OWord) -> None:
        if len(self.frames) > MAX_CALL_DEPTH:
            raise self.error(f"Subroutine calls nested deeper than {MAX_CALL_DEPTH}")
        target = self.subroutines.get(word.name) or self.locate_subroutine(word.name)
        source, start = target
        return_to = self.current_source.tell()
        self.params.enter_call(word.args)
        self.frames.append(CallFrame(word.name, source, return_to))
        source.seek(start)

    def locate_subroutine(self, name: str) -> tuple[ProgramSource, Position]:
        """Find ``o<name> sub`` later in this file or in ``name.ngc`` beside it."""
        source = self.current_source
        here = source.tell()
        line = self.line
        try:
            while True:
                text = source.next_line()
                if text is None:
                    break
                if is_sub_definition(text, name):
                    found = (source, source.tell())
                    self.subroutines[name] = found
                    return found
        finally:
            source.seek(here)
            self.line = line
        if name.startswith("<"):
            path = source.directory / f"{name[1:-1]}.ngc"
            if path.is_file():
                ext = ProgramSource.from_path(path)
                while (text := ext.next_line()) is not None:
                    if is_sub_definition(text, name):
                        found = (ext, ext.tell())
                        self.subroutines[name] = found
                        return found
                ext.close()
        raise self.error(f"Unable to find subroutine o{name}")

    def return_from_subroutine(self, word: OWord, frame: CallFrame) -> None:
        if len(self.frames) == 1:
            if word.keyword == "endsub":
                raise self.error(f"o{word.name} endsub without a matching sub")
            raise self.error(f"o{word.name} return outside a subroutine")
        if word.keyword == "endsub" and frame.name != word.name:
            raise self.error(f"o{word.name} endsub inside subroutine o{frame.name}")
        self.params.leave_call()
        # LinuxCNC sets #<_value> to 0 when nothing is returned
        self.params.globals["_value"] = word.value if word.value is not None else 0.0
        self.params.globals["_value_returned"] = 1.0 if word.value is not None else 0.0
        self.frames.pop()
        assert frame.return_to is not None
        self.current_source.seek(frame.return_to)
        if frame.restore_on_return and frame.saved_context is not None:
            self.restore_context(frame.saved_context)  # M73

    def execute_while(self, word: OWord, frame: CallFrame) -> None:
        start = self.line_start()
        for i in range(len(frame.blocks) - 1, -1, -1):
            b = frame.blocks[i]
            if b.name == word.name and b.keyword == "do":  # the end of a do … while
                if self.stale_break:
                    self.stale_break = False
                    del frame.blocks[i:]
                elif word.value:
                    b.count_iteration()
                    self.current_source.seek(b.position)
                    self.current_source.next_line()  # re-enter after the `do` line
                else:
                    del frame.blocks[i:]
                return
        if word.value:
            if not (frame.blocks and frame.blocks[-1].name == word.name):
                frame.blocks.append(ControlBlock(word.name, "while", start))
            else:
                frame.blocks[-1].position = start
                frame.blocks[-1].count_iteration()
        else:
            if frame.blocks and frame.blocks[-1].name == word.name:
                frame.blocks.pop()
            self.skip_to(word.name, ("endwhile",), self.line)

    def execute_endwhile(self, word: OWord, frame: CallFrame) -> None:
        i = self.find_open(word, frame, ("while",))
        self.current_source.seek(frame.blocks[i].position)
        del frame.blocks[i + 1 :]

    def execute_repeat(self, word: OWord, frame: CallFrame) -> None:
        count = round(word.value or 0.0)
        if count > 0:
            frame.blocks.append(
                ControlBlock(word.name, "repeat", self.current_source.tell(), count, line=self.line)
            )
        else:
            self.skip_to(word.name, ("endrepeat",), self.line)

    def execute_endrepeat(self, word: OWord, frame: CallFrame) -> None:
        i = self.find_open(word, frame, ("repeat",))
        block = frame.blocks[i]
        block.remaining -= 1
        del frame.blocks[i + 1 :]
        if block.remaining > 0:
            block.count_iteration()
            self.current_source.seek(block.position)
        else:
            del frame.blocks[i:]

    def execute_if(self, word: OWord, frame: CallFrame) -> None:
        block = ControlBlock(word.name, "if", self.line_start())
        frame.blocks.append(block)
        if word.value:
            block.done = True
            return
        self.skip_to_branch(word, block)

    def skip_to_branch(self, word: OWord, block: ControlBlock) -> None:
        """Skip a false branch: run the next true elseif, the else, or leave at endif."""
        frame = self.frames[-1]
        while True:
            found = self.skip_to(word.name, ("elseif", "else", "endif"), block.position.line)
            if found.keyword == "endif":
                frame.blocks.remove(block)
                return
            if found.keyword == "else" or found.value:
                block.done = True
                return

    def execute_else(self, word: OWord, frame: CallFrame) -> None:
        """Reaching else/elseif after a branch ran: skip to endif."""
        i = self.find_open(word, frame, ("if",))
        del frame.blocks[i:]
        self.skip_to(word.name, ("endif",), self.line)

    def find_loop(self, word: OWord, frame: CallFrame) -> int:
        """The while/do loop a break or continue names; LinuxCNC refuses repeat loops here."""
        i = self.find_open(word, frame, ("while", "do", "repeat"))
        block = frame.blocks[i]
        if block.keyword == "repeat":
            raise self.error(
                f"no matching while/do label: 'o{word.name} {word.keyword}' "
                f"(found 'repeat' in line {block.position.line - 1})"
            )
        return i

    def execute_break(self, word: OWord, frame: CallFrame) -> None:
        i = self.find_loop(word, frame)
        keyword = frame.blocks[i].keyword
        del frame.blocks[i:]
        self.stale_break = keyword == "while"
        end = {"while": ("endwhile",), "do": ("while",)}[keyword]
        self.skip_to(word.name, end, self.line)

    def execute_continue(self, word: OWord, frame: CallFrame) -> None:
        i = self.find_loop(word, frame)
        block = frame.blocks[i]
        del frame.blocks[i + 1 :]
        if block.keyword == "while":
            self.current_source.seek(block.position)
        else:  # do … while: go evaluate the condition at the closing while
            found = self.skip_to(word.name, ("while",), self.line)
            self.execute_while(found, frame)
