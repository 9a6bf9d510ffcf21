"""Whatever a program holds, the interpreter fails only with a located GCodeError.

Inputs are arbitrary bytes, G-code-like text and mutations of valid programs. A
mutation can turn a bounded loop into an endless one (``while [#1 LT 3]`` becoming
``while [1 LT 3]``), and the interpreter has no step limit of its own, so:

- interpret() is stopped after ``MAX_OPS`` operations, far more than any seed makes;
- check_program(), which cannot be stopped from outside, runs only on programs that
  interpret() finished within that budget;
- an endless loop that emits nothing would still hang, so each run has a wall-clock
  limit; hitting it rejects the example if the program has a loop, and fails otherwise.
"""

from __future__ import annotations

import itertools
import signal
import tracemalloc
from contextlib import contextmanager
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, note, reject, settings
from hypothesis import strategies as st

from machinetwin.errors import GCodeError
from machinetwin.gcode import ProgramSource, ToolTable, check_program, interpret

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
MAX_OPS = 20_000  # more than any seed produces; a mutant past it counts as looping
RUN_LIMIT_S = 5.0
TOOLS = ToolTable.parse("\n".join(f"T{n} P{n} Z{10 * n} D{n}" for n in range(1, 6)))

SEEDS = [
    (EXAMPLES / "pocket.ngc").read_text(),
    "G21 G90 G17\nF300\nG0 X0 Y0 Z5\nG1 Z-1\nG2 X10 Y0 I5 J0\nG3 X0 Y0 R5\nG18 G2 X5 Z-2 R4\nM2\n",
    "G20\nG10 L2 P2 X1 Y2 Z-3 R15\nG55 G0 X1 Y1\nG92 X0 Y0\nG91 G1 X0.5 F20\nG92.1\nG54\nM30\n",
    "#1 = 0\n#<depth> = -2\no100 while [#1 LT 3]\n  G1 X[#1 * 2] Z#<depth> F100\n"
    "  #1 = [#1 + 1]\no100 endwhile\no101 repeat [2]\n  G0 Y[SIN[30] * 4]\no101 endrepeat\nM2\n",
    "o<side> sub\n  G1 X#1 Y#2 F200\no<side> endsub\n"
    "o<side> call [1] [2]\no<side> call [3] [4]\no1 if [EXISTS[#<_x>]]\n  G0 Z1\n"
    "o1 else\n  G0 Z2\no1 endif\nM2\n",
    "T1 M6\nG43 H1\nS1000 M3 M8\nG98 G81 X1 Y1 Z-3 R1 F50\nX2\nG80\nG4 P0.5\n"
    "G83 X3 Y3 Z-6 R1 Q2\nG80 M9 M5\nG49\nG28\nM2\n",
    "%\nN10 G0 X1 (comment) ; rest\n/N20 G1 X2 F10\n#<_g> = [2 ** 3 MOD 5]\n(debug, #<_g>)\n%\n",
    # cutter compensation: entry, convex and concave corners, arcs, exit
    "G21 G17 F100\nG0 X-10 Y-10\nG41 D2 G1 X0 Y0\nY20\nG2 X10 Y30 R10\nG1 X30\nY15\nX20\n"
    "G3 X10 Y5 I-10 J0\nG1 X0\nG40 G0 X-10 Y-10\nG18 G42.1 D1 L2 G1 X0 Z0\nX5\nZ-5\nG40\nM2\n",
    # lathe: diameter mode, a G71/G72/G70 profile with a fillet and a chamfer, threading
    "G18 G21 G7 F200\no100 sub\n  G0 X2 Z2\n  G1 X10 Z0 C0.5\n  Z-10 A1\n  G2 X16 Z-13 R3\n"
    "  G1 X20\no100 endsub\nG0 X25 Z5\nG71 Q100 X25 Z5 D0.2 I1 R0.3\nG72 Q100 X25 Z5 I0.5\n"
    "G70 Q100 X25 Z5 D0.5 P2\nG8 S500 M3\nG33 Z-5 K1\nG33.1 Z-2 K1\nG17 G5.1 X5 Y5 I2 J0\nM2\n",
]

GCODE_ALPHABET = "GMXYZIJKRFSTPQHLDNO#[]<>=.-+*/;()%0123456789 \n\tabceilnorstuwx_"


def collect(ops, limit: int = MAX_OPS) -> int:
    """Consume at most ``limit`` ops and close the generator (so files get closed)."""
    count = 0
    for _ in itertools.islice(ops, limit):
        count += 1
    ops.close()
    return count


def assert_located(exc: GCodeError, name: str) -> None:
    assert exc.line >= 1, f"error without a line: {exc!r}"
    assert exc.col >= 1, f"error without a column: {exc!r}"
    assert exc.file == name, f"error names {exc.file!r}, not {name!r}"
    assert exc.message, "empty error message"


class Overtime(Exception):
    pass


@contextmanager
def time_limit(seconds: float, text: str):
    def expire(signum, frame):
        raise Overtime

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    except Overtime:
        if any(word in text.lower() for word in ("while", "repeat", "call", "do")):
            reject()  # a mutant that loops forever without emitting anything
        raise AssertionError(f"no loop, yet still running after {seconds} s") from None
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def run_everything(text: str, tmp_path: Path) -> None:
    """interpret() and check_program() may only fail with a located GCodeError."""
    with time_limit(RUN_LIMIT_S, text):
        run_both(text, tmp_path)


def run_both(text: str, tmp_path: Path) -> None:
    name = "fuzz.ngc"
    source = ProgramSource.from_text(text, name, tmp_path)
    try:
        if collect(interpret(source, TOOLS)) >= MAX_OPS:
            return  # an endless loop: check_program would never finish
    except GCodeError as exc:
        assert_located(exc, name)
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    for exc in check_program(path, TOOLS):
        assert exc.line >= 1 and exc.col >= 1 and exc.message, repr(exc)
        assert exc.file == str(path), repr(exc)


FUZZ_SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@FUZZ_SETTINGS
@given(data=st.binary(max_size=400))
def test_arbitrary_bytes(tmp_path, data):
    text = data.decode("utf-8", "surrogateescape")
    note(repr(text))
    run_everything(text, tmp_path)


@FUZZ_SETTINGS
@given(text=st.text(alphabet=GCODE_ALPHABET, max_size=300))
def test_gcode_like_text(tmp_path, text):
    note(repr(text))
    run_everything(text, tmp_path)


@st.composite
def mutants(draw) -> str:
    text = draw(st.sampled_from(SEEDS))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        kind = draw(st.sampled_from(["insert", "delete", "replace", "duplicate-line"]))
        char = draw(st.sampled_from(GCODE_ALPHABET))
        if kind == "insert":
            text = text[:at] + char + text[at:]
        elif kind == "delete":
            text = text[:at] + text[at + 1 :]
        elif kind == "replace":
            text = text[:at] + char + text[at + 1 :]
        else:
            lines = text.splitlines(keepends=True)
            if lines:
                i = draw(st.integers(0, len(lines) - 1))
                lines.insert(i, lines[i])
            text = "".join(lines)
    return text


@FUZZ_SETTINGS
@given(text=mutants())
def test_mutated_programs(tmp_path, text):
    note(text)
    run_everything(text, tmp_path)


@pytest.mark.parametrize("seed", range(len(SEEDS)))
def test_seeds_are_valid(tmp_path, seed):
    """The mutation seeds themselves run cleanly, so mutants start from good programs."""
    path = tmp_path / "seed.ngc"
    path.write_text(SEEDS[seed])
    assert check_program(path, TOOLS) == []
    assert 0 < collect(interpret(path, TOOLS)) < MAX_OPS


# --- memory: programs are streamed, never held -----------------------------------


class GeneratedProgram:
    """A binary stream of ``lines`` program lines made on demand, never all in memory.

    It keeps a bounded window of recent bytes, so a reader may seek back a little
    (the interpreter re-reads a chunk it could not take in one go) but never far.
    """

    WINDOW = 1 << 18

    def __init__(self, lines: int) -> None:
        self.lines = lines
        self.next_index = 0
        self.buf = bytearray()
        self.buf_start = 0  # offset of buf[0]
        self.pos = 0

    def _more(self) -> bool:
        n = self.next_index
        if n > self.lines:
            return False
        self.next_index += 1
        if n == 0:
            line = "G21 G90 F1000\n"
        elif n < self.lines:
            line = f"G1 X{n % 500}.{n % 7} Y{(n * 7) % 300}\n"
        else:
            line = "M2\n"
        self.buf += line.encode()
        return True

    def _end(self) -> int:
        return self.buf_start + len(self.buf)

    def _take(self, end: int) -> bytes:
        end = min(end, self._end())
        out = bytes(self.buf[self.pos - self.buf_start : end - self.buf_start])
        self.pos = end
        drop = self.pos - self.buf_start - self.WINDOW
        if drop > 0:
            del self.buf[:drop]
            self.buf_start += drop
        return out

    def read(self, size: int = -1) -> bytes:
        if size < 0:  # pragma: no cover - would hold the whole program
            raise AssertionError("the interpreter read the whole program at once")
        while self._end() < self.pos + size and self._more():
            pass
        return self._take(self.pos + size)

    def readline(self, size: int = -1) -> bytes:
        while (nl := self.buf.find(b"\n", self.pos - self.buf_start)) < 0 and self._more():
            pass
        return self._take(self._end() if nl < 0 else self.buf_start + nl + 1)

    def tell(self) -> int:
        return self.pos

    def seek(self, offset: int, whence: int = 0) -> int:
        target = offset if whence == 0 else self.pos + offset
        assert self.buf_start <= target <= self._end(), "seek outside the recent window"
        self.pos = target
        return target

    def close(self) -> None:
        pass


WORKING_SET_BYTES = 32 * 1024 * 1024


def interpreter_peak(lines: int) -> int:
    tracemalloc.start()
    try:
        source = ProgramSource(GeneratedProgram(lines), "big.ngc")  # type: ignore[arg-type]
        count = sum(1 for _ in interpret(source))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert count >= lines
    return peak


@pytest.mark.slow
def test_200k_line_program_streams_in_flat_memory():
    """Peak memory does not grow with the program: 4x the lines, (nearly) the same peak."""
    small = interpreter_peak(50_000)
    peak = interpreter_peak(200_000)
    assert peak < 1.2 * small + 512 * 1024, f"peak {peak} bytes at 200k lines, {small} at 50k"
    # the fast path's working set (arrays for one chunk of the file) is bounded
    assert peak < WORKING_SET_BYTES, f"peak {peak} bytes"


def checker_peak(path, lines: int) -> int:
    with path.open("w") as f:
        f.write("G21 G90 F500\n")
        for n in range(lines):
            f.write(f"G1 X{n % 400} Y{n % 250}.5\n")
        f.write("M2\n")
    tracemalloc.start()
    try:
        errors = check_program(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert errors == []
    return peak


@pytest.mark.slow
def test_200k_line_file_is_checked_in_flat_memory(tmp_path):
    """check_program (collecting errors) streams a real file too."""
    small = checker_peak(tmp_path / "small.ngc", 50_000)
    peak = checker_peak(tmp_path / "big.ngc", 200_000)
    assert peak < 1.2 * small + 512 * 1024, f"peak {peak} bytes at 200k lines, {small} at 50k"
    assert peak < WORKING_SET_BYTES, f"peak {peak} bytes"
