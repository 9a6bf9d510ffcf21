"""Run a program through rs274 and machinetwin and say whether they agree."""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path

from machinetwin.errors import GCodeError
from machinetwin.gcode import ToolTable, format_rs274, interpret
from rs274_runner import compare_calls, normalize_rs274_line, run_rs274

# Tool table used by differential tests; rs274 reads its lengths as inches.
TOOL_TABLE = (
    "\n".join(f"T{n} P{n} Z{0.25 * n:.3f} D{0.05 * n:.3f} ;tool {n}" for n in range(1, 21)) + "\n"
)


@dataclass
class Agreement:
    ok: bool
    detail: str
    rs274_rc: int
    calls: int


def machinetwin_calls(path: Path, tool_table_text: str) -> tuple[list[str], GCodeError | None]:
    table = ToolTable.parse(tool_table_text, units="inch")
    ops = []
    error = None
    try:
        for op in interpret(path, table, machine_units="inch"):
            ops.append(op)
    except GCodeError as exc:
        error = exc
    lines = [normalize_rs274_line(x) for x in format_rs274(ops)]
    return lines, error


def compare_program(
    text: str,
    tool_table_text: str = TOOL_TABLE,
    extra_files: dict[str, str] | None = None,
) -> Agreement:
    """Agreement means identical calls, or both rejecting the program on the same line."""
    with tempfile.TemporaryDirectory(prefix="mt-diff-") as tmp:
        workdir = Path(tmp)
        ref = run_rs274(text, tool_table_text, workdir=workdir, extra_files=extra_files)
        ours, error = machinetwin_calls(workdir / "prog.ngc", tool_table_text)
    if ref.returncode != 0:
        # (rs274's lathe-cycle code also prints "Oops ..." debugging lines: not messages)
        printed = [
            ln
            for ln in ref.stdout.splitlines()
            if ln.strip() and ln.strip() != "executing" and not ln.startswith("Oops ")
        ]
        bad_line = printed[1].strip() if len(printed) > 1 else ""
        if error is None:
            return Agreement(
                False, f"rs274 rejected ({ref.messages!r}) but machinetwin accepted", 1, 0
            )
        source_lines = text.splitlines()
        ours_text = (
            source_lines[error.line - 1].strip() if 0 < error.line <= len(source_lines) else ""
        )
        if ours_text != bad_line and bad_line:
            return Agreement(
                False,
                f"both rejected, but on different lines: rs274 {bad_line!r} ({ref.messages!r}); "
                f"machinetwin line {error.line} {ours_text!r}: {error.message}",
                1,
                0,
            )
        return Agreement(True, f"both rejected: {error}", 1, 0)
    if error is not None:
        return Agreement(False, f"machinetwin rejected a program rs274 accepts: {error}", 0, 0)
    diff = compare_calls(ref.calls, ours)
    return Agreement(diff is None, diff or "", 0, len(ref.calls))
