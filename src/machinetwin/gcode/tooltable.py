"""LinuxCNC tool table files.

One tool per line: ``T<n> P<pocket> [X… Y… Z… A… B… C… U… V… W…] [D<dia>] [I J Q] ;comment``.
Lengths are in the table's units (LinuxCNC uses the machine's units; standalone
``rs274`` reads them as inches, which ``units="inch"`` reproduces).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ToolTableError

INCH_MM = 25.4


@dataclass(slots=True)
class Tool:
    number: int
    pocket: int
    offsets: dict[str, float] = field(default_factory=dict)  # axis letter -> length, mm
    diameter: float = 0.0  # mm
    comment: str = ""

    def offset(self, axis: str) -> float:
        return self.offsets.get(axis, 0.0)


@dataclass(slots=True)
class ToolTable:
    """Tools by number; all lengths held in millimetres."""

    tools: dict[int, Tool] = field(default_factory=dict)
    source: str = "<tool table>"

    def get(self, number: int) -> Tool | None:
        return self.tools.get(number)

    @classmethod
    def load(cls, path: str | Path, units: str = "mm") -> ToolTable:
        p = Path(path)
        try:
            text = p.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise ToolTableError(f"cannot read tool table: {exc.strerror}", 0, 1, str(p)) from None
        return cls.parse(text, units, str(p))

    @classmethod
    def parse(cls, text: str, units: str = "mm", name: str = "<tool table>") -> ToolTable:
        if units not in ("mm", "inch"):
            raise ValueError(f"tool table units must be 'mm' or 'inch', not {units!r}")
        scale = INCH_MM if units == "inch" else 1.0
        table = cls(source=name)
        for line_no, raw in enumerate(text.splitlines(), start=1):
            body, _, comment = raw.partition(";")
            if not body.strip():
                continue
            tool = _parse_tool(body, line_no, name, scale)
            tool.comment = comment.strip()
            if tool.number in table.tools:
                raise ToolTableError(f"tool T{tool.number} listed twice", line_no, 1, name)
            table.tools[tool.number] = tool
        return table


def _parse_tool(body: str, line_no: int, name: str, scale: float) -> Tool:
    values: dict[str, float] = {}
    first_col = 1
    for match in re.finditer(r"\S+", body):
        word, col = match.group(), match.start() + 1
        first_col = first_col if values else col
        letter = word[0].upper()
        if letter not in "TPXYZABCUVWDIJQ" or len(word) < 2:
            raise ToolTableError(f"unexpected field {word!r}", line_no, col, name)
        if letter in values:
            raise ToolTableError(f"field {letter} given twice", line_no, col, name)
        try:
            number = float(word[1:])
        except ValueError:
            number = math.nan
        if not math.isfinite(number):
            raise ToolTableError(f"bad number in field {word!r}", line_no, col, name)
        values[letter] = number
    if "T" not in values:
        raise ToolTableError("tool line has no T (tool number) field", line_no, first_col, name)
    number = int(values["T"])
    if number < 0 or number != values["T"]:
        raise ToolTableError(
            f"tool number must be a whole number >= 0: {values['T']}", line_no, first_col, name
        )
    pocket = values.get("P", float(number))
    if pocket < 0 or pocket != int(pocket):
        raise ToolTableError(f"pocket must be a whole number >= 0: {pocket}", line_no, 1, name)
    offsets = {
        a.lower(): values[a] * (scale if a in "XYZUVW" else 1.0) for a in "XYZABCUVW" if a in values
    }
    return Tool(number, int(pocket), offsets, values.get("D", 0.0) * scale)
