"""Run LinuxCNC's standalone interpreter `rs274` and compare its canonical calls.

rs274 (package linuxcnc-uspace) is the reference our G-code interpreter is
checked against. `rs274 -g` prints one canonical machining call per line:

       11 N102   STRAIGHT_TRAVERSE(0.0000, 0.0000, 0.0000, 0.0000, 0.0000, 0.0000)
        1 N..... USE_LENGTH_UNITS(CANON_UNITS_MM)

The helpers here strip the counter and N column, split a call into its name and
arguments, and compare two call lists with a numeric tolerance.

Things about rs274 worth knowing when writing tests against it:
- it returns 1 on an interpreter error, but the output file still holds every
  call produced before the error; the message goes to stdout/stderr;
- it rewrites `$HOME/.tool.mmap` and fails if `$HOME` does not exist, so each
  run gets its own fresh HOME (runs may go in parallel);
- it looks for `o<name> call` subroutines as `name.ngc` in its working directory;
- standalone, it reads tool table lengths and diameters in inches whatever the
  program's units (Z50.0 in the table becomes a 1270 mm offset).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

RS274_TIMEOUT_S = 60.0
PROGRAM_NAME = "prog.ngc"
OUTPUT_NAME = "out.txt"
TOOL_TABLE_NAME = "tool.tbl"

# "   11 N102   CALL(...)" or "    1 N..... CALL(...)": a counter, then the N column.
_PREFIX = re.compile(r"^\s*\d+\s+N(?:\.+|\d+)\s+")


@dataclass(frozen=True)
class Rs274Result:
    """What one rs274 run produced."""

    returncode: int
    lines: list[str]  # raw lines of the output file, counter and N column included
    stdout: str
    stderr: str
    workdir: Path | None = field(default=None)  # kept only when the caller gave one

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def calls(self) -> list[str]:
        """The output lines as bare calls, e.g. `STRAIGHT_FEED(1.0000, ...)`."""
        return [normalize_rs274_line(line) for line in self.lines if line.strip()]

    @property
    def messages(self) -> str:
        """Everything rs274 printed, for assertion messages."""
        return (self.stdout + self.stderr).strip()


def run_rs274(
    program_text: str,
    tool_table_text: str | None = None,
    workdir: Path | None = None,
    extra_files: dict[str, str] | None = None,
) -> Rs274Result:
    """Interpret `program_text` with rs274 and return its canonical calls.

    Files go to `workdir` when given (and stay there for inspection), otherwise
    to a temporary directory removed afterwards. `extra_files` maps file names
    to contents, e.g. {"sub.ngc": "o<sub> sub ... o<sub> endsub\\nM2\\n"}.
    """
    exe = shutil.which("rs274")
    if exe is None:
        raise FileNotFoundError("rs274 (LinuxCNC) is not on PATH; use the rs274_available fixture")

    with tempfile.TemporaryDirectory(prefix="rs274-") as scratch:
        scratch_dir = Path(scratch)
        run_dir = scratch_dir / "run" if workdir is None else Path(workdir)
        home = scratch_dir / "home"
        run_dir.mkdir(parents=True, exist_ok=True)
        home.mkdir()

        (run_dir / PROGRAM_NAME).write_text(program_text)
        (run_dir / TOOL_TABLE_NAME).write_text(tool_table_text or "")
        for name, text in (extra_files or {}).items():
            path = run_dir / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        output = run_dir / OUTPUT_NAME
        output.unlink(missing_ok=True)

        env = dict(os.environ, HOME=str(home))
        try:
            proc = subprocess.run(
                [exe, "-g", "-t", TOOL_TABLE_NAME, PROGRAM_NAME, OUTPUT_NAME],
                cwd=run_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=RS274_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(
                f"rs274 did not finish within {RS274_TIMEOUT_S:.0f} s in {run_dir}"
            ) from exc

        lines = output.read_text(errors="replace").splitlines() if output.exists() else []
        return Rs274Result(
            returncode=proc.returncode,
            lines=lines,
            stdout=proc.stdout,
            stderr=proc.stderr,
            workdir=None if workdir is None else run_dir,
        )


def normalize_rs274_line(line: str) -> str:
    """Strip rs274's counter and N column: `   11 N102   FOO(1.0000)` -> `FOO(1.0000)`."""
    return _PREFIX.sub("", line, count=1).strip()


def parse_call(text: str) -> tuple[str, list[str | float]]:
    """Split `NAME(arg, arg ...)` into the name and its arguments.

    Numbers become floats; other words (`CANON_UNITS_MM`) and quoted strings
    stay strings, the quotes removed. Arguments are separated by commas and/or
    spaces, because rs274 prints some calls with spaces only
    (`SET_SPINDLE_MODE(0 0.0000)`) or mixed
    (`USE_TOOL_LENGTH_OFFSET(0.0000 0.0000 1.0000, ...)`).

    rs274 does not escape quotes inside COMMENT/MESSAGE text, so a quoted
    string runs to the *last* quote that is followed by a separator or the end;
    rs274's string argument is always the last one, which makes this exact.
    """
    text = text.strip()
    open_at = text.find("(")
    if open_at < 0 or not text.endswith(")"):
        raise ValueError(f"not a canonical call: {text!r}")
    name = text[:open_at].strip()
    body = text[open_at + 1 : -1]

    args: list[str | float] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch in ", \t":
            i += 1
            continue
        if ch == '"':
            close = _closing_quote(body, i)
            args.append(body[i + 1 : close])
            i = close + 1
            continue
        start = i
        while i < n and body[i] not in ", \t":
            i += 1
        args.append(_number_or_word(body[start:i]))
    return name, args


def _closing_quote(body: str, open_at: int) -> int:
    for j in range(len(body) - 1, open_at, -1):
        if body[j] == '"' and body[j + 1 :].lstrip(" \t")[:1] in ("", ","):
            return j
    raise ValueError(f"unterminated string in call arguments: {body!r}")


def _number_or_word(token: str) -> str | float:
    try:
        return float(token)
    except ValueError:
        return token


def compare_calls(expected: list[str], actual: list[str], tol: float = 1e-4) -> str | None:
    """Return None when the call lists agree, else a message about the first difference.

    Calls agree when names and argument counts are equal, numbers differ by at
    most `tol` and strings are equal. The message shows the mismatching index
    with three calls of context on each side, from both lists.
    """
    for index in range(max(len(expected), len(actual))):
        if index >= len(expected) or index >= len(actual):
            reason = f"expected {len(expected)} calls, got {len(actual)}"
            return _describe_mismatch(expected, actual, index, reason)
        reason = _call_difference(expected[index], actual[index], tol)
        if reason is not None:
            return _describe_mismatch(expected, actual, index, reason)
    return None


def _call_difference(expected: str, actual: str, tol: float) -> str | None:
    exp_name, exp_args = parse_call(expected)
    act_name, act_args = parse_call(actual)
    if exp_name != act_name:
        return f"call name {act_name!r} != expected {exp_name!r}"
    if len(exp_args) != len(act_args):
        return f"{act_name} has {len(act_args)} arguments, expected {len(exp_args)}"
    for pos, (exp, act) in enumerate(zip(exp_args, act_args, strict=True)):
        if isinstance(exp, float) and isinstance(act, float):
            if abs(exp - act) > tol:
                return f"{act_name} argument {pos}: {act!r} differs from {exp!r} by more than {tol}"
        elif exp != act:
            return f"{act_name} argument {pos}: {act!r} != expected {exp!r}"
    return None


def _describe_mismatch(expected: list[str], actual: list[str], index: int, reason: str) -> str:
    def window(calls: list[str]) -> list[str]:
        lo, hi = max(0, index - 3), min(len(calls), index + 4)
        rows = [f"  {'>' if i == index else ' '} {i:5d}  {calls[i]}" for i in range(lo, hi)]
        return rows or ["        (none)"]

    return "\n".join(
        [
            f"first mismatch at call {index}: {reason}",
            "expected:",
            *window(expected),
            "actual:",
            *window(actual),
        ]
    )
