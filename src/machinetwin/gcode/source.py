"""Program text that the interpreter streams line by line and can jump back in.

Loops and subroutine calls need to return to earlier lines; rather than holding the
whole program in memory, a :class:`ProgramSource` remembers byte offsets (only of the
O-word lines it has to come back to), so memory stays flat however long the program.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO


@dataclass(frozen=True, slots=True)
class Position:
    """Where the next line starts: byte offset and its 1-based line number."""

    offset: int
    line: int


class ProgramSource:
    """A seekable stream of program lines from a file or a string."""

    def __init__(self, stream: BinaryIO, name: str, directory: Path | None = None) -> None:
        self.stream = stream
        self.name = name
        self.directory = directory or Path.cwd()
        self.line_no = 0  # number of the last line returned
        self.last_line_start = Position(0, 1)

    @classmethod
    def from_path(cls, path: str | Path) -> ProgramSource:
        p = Path(path)
        return cls(open(p, "rb"), str(path), p.resolve().parent)  # noqa: SIM115 - closed by close()

    @classmethod
    def from_text(cls, text: str, name: str = "<program>", directory: Path | None = None):
        return cls(io.BytesIO(text.encode("utf-8", "surrogateescape")), name, directory)

    def next_line(self) -> str | None:
        """The next line without its end-of-line characters, or None at end of file."""
        self.last_line_start = Position(self.stream.tell(), self.line_no + 1)
        raw = self.stream.readline()
        if not raw:
            return None
        self.line_no += 1
        return raw.decode("utf-8", "replace").rstrip("\r\n")

    def read_chunk(self, size: int) -> bytes:
        """About ``size`` bytes of whole lines from here (the last ends with a newline)."""
        data = self.stream.read(size)
        if data and not data.endswith(b"\n"):
            data += self.stream.readline()
            if not data.endswith(b"\n"):
                data += b"\n"  # a last line without its newline
        return data

    def tell(self) -> Position:
        return Position(self.stream.tell(), self.line_no + 1)

    def seek(self, pos: Position) -> None:
        self.stream.seek(pos.offset)
        self.line_no = pos.line - 1

    def close(self) -> None:
        self.stream.close()
