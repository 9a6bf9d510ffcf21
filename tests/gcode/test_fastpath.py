"""The fast path must be invisible: same operations as the line-by-line interpreter."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machinetwin.errors import GCodeError
from machinetwin.gcode import Interpreter, ProgramSource, canon
from machinetwin.gcode.fastpath import parse_chunk


def run(text: str, fast: bool) -> tuple[list[canon.CanonOp], str | None, int]:
    """Ops (batches expanded), the error (if any) and how many batches there were."""
    interp = Interpreter(fast_path=fast)
    ops: list[canon.CanonOp] = []
    batches = 0
    error = None
    try:
        for op in interp.run(ProgramSource.from_text(text)):
            if type(op) is canon.MotionBatch:
                batches += 1
            ops.extend(canon.expand([op]))
    except GCodeError as exc:
        error = str(exc)
    return ops, error, batches


def assert_same(text: str) -> int:
    slow, slow_error, _ = run(text, fast=False)
    fast, fast_error, batches = run(text, fast=True)
    assert fast_error == slow_error
    assert len(fast) == len(slow)
    for a, b in zip(fast, slow, strict=True):
        assert type(a) is type(b), (a, b)
        assert a.line == b.line, (a, b)
        for name, va in a.to_dict().items():
            vb = b.to_dict()[name]
            if isinstance(va, float):
                assert math.isclose(va, vb, rel_tol=1e-12, abs_tol=1e-9), (name, a, b)
            else:
                assert va == vb, (name, a, b)
    return batches


# --- number parsing is exact ---------------------------------------------------------

number_text = st.builds(
    lambda sign, whole, frac, dot: f"{sign}{whole}{'.' if dot else ''}{frac if dot else ''}",
    st.sampled_from(["", "-", "+"]),
    st.from_regex(r"[0-9]{0,7}", fullmatch=True),
    st.from_regex(r"[0-9]{0,7}", fullmatch=True),
    st.booleans(),
).filter(lambda s: any(c.isdigit() for c in s))


@given(st.lists(number_text, min_size=1, max_size=40))
def test_parsed_numbers_equal_strtod(numbers: list[str]) -> None:
    text = "".join(f"X{n}\n" for n in numbers).encode()
    parsed = parse_chunk(text)
    assert len(parsed.words) == len(numbers)
    assert parsed.consumed == len(text)
    expected = np.array([float(n) for n in numbers])
    # exactly the same double as C's strtod, which Python's float() also is
    assert np.array_equal(parsed.words[:, 1], expected)


def test_prefix_stops_at_first_line_it_cannot_take() -> None:
    text = b"G1 X1 F100\ng0x2y3\n(comment)\nG1 X4\n"
    parsed = parse_chunk(text)
    assert len(parsed.words) == 2
    assert parsed.consumed == len(b"G1 X1 F100\ng0x2y3\n")


@pytest.mark.parametrize(
    "line",
    [
        "X--1",
        "X1.2.3",
        "X",
        "XY1",
        "1 X2",
        "X1 X2",
        "G1 N5 X1",
        "X1e3",
        "M3",
        "#1=2",
        "X[1]",
        "S100",
    ],
)
def test_lines_it_must_not_take(line: str) -> None:
    assert len(parse_chunk((line + "\n").encode()).words) == 0


# --- whole programs: fast and slow agree ------------------------------------------------


def test_fast_path_is_used_on_plain_moves() -> None:
    body = "".join(f"G1 X{i}.5 Y{-i} Z-1\n" for i in range(200))
    batches = assert_same("G21 F500\nG0 X0 Y0\n" + body + "M2\n")
    assert batches >= 1


@pytest.mark.parametrize(
    "program",
    [
        # errors inside a run must come out of the ordinary path, on their line
        "G21\nG0 X0\nG1 X1\nG1 X2 F100\nM2\n",  # zero feed on line 3
        "G21 F100\nG0 X0 Y0\nG2 X10 Y0 I3\nM2\n",  # radius mismatch
        "G21 F100\nG0 X0 Y0\nG2 X20 Y0 R5\nM2\n",  # radius too small
        "G21 F100\nG0 X0\nG2 X1 Y1 K1\nM2\n",  # K in the XY plane
        "G21 F100\nG0 X0\nI5\nM2\n",  # I without an arc
        "G21 F100\nG80\nX1\nM2\n",  # axis words with no motion mode
        "G21 F100\nG1 X1\nG1.5 X2\nM2\n",  # unknown G code
        "G21 F100\nG1 X1\nG1 X2\n",  # no program end
        # mode changes in between fall back and come back
        "G21 F100\nG1 X1\nG91\nG1 X1\nX1 Y1\nG90\nG2 X5 Y1 R3\nG18 G2 X7 Z1 R2\nM2\n",
        "G20 F10\nG0 X1 Y1\nG3 X1 Y1 I1 J0\nG2 X3 Y1 R-1\nG91.1\nG90.1 G2 X4 Y2 I4 J1\nM2\n",
        "G21 G19 F100\nG0 X0 Y0 Z0\nG2 Y2 Z0 J1 K0\nG3 Y0 Z0 R1\nM2\n",
        "G21 F100\nT1 M6\nG0 X1\nG1 X2\nG43.1 Z1\nX3\nM2\n",
        "%\nG21 F100\nG1 X1\nG1 X2\n%\n",
        "G21 F100\nG1 X1 A10 B20 C30\nG1 X2 Y3 Z4 A-1\nN10 G0 X0\nn20g1x1.y2.\nM2\n",
        "G21 F100\nG0 X0\no100 repeat [3]\nG91 G1 X1\nG90\no100 endrepeat\nM2\n",
    ],
)
def test_fast_equals_slow(program: str) -> None:
    assert_same(program)


coordinate = st.decimals(min_value=-500, max_value=500, places=3).map(lambda d: f"{d:f}")


@st.composite
def plain_programs(draw: st.DrawFn) -> str:
    lines = [draw(st.sampled_from(["G21", "G20"])), draw(st.sampled_from(["G90", "G91"]))]
    lines.append(f"F{draw(st.integers(1, 3000))}")
    for _ in range(draw(st.integers(1, 60))):
        words = []
        if draw(st.booleans()):
            words.append(draw(st.sampled_from(["G0", "G1", "G00", "G01", "g1"])))
        for axis in draw(st.lists(st.sampled_from("XYZABC"), unique=True, max_size=4)):
            words.append(f"{axis}{draw(coordinate)}")
        if draw(st.integers(0, 5)) == 0:
            words.append(f"F{draw(st.integers(1, 3000))}")
        sep = draw(st.sampled_from([" ", "", "  "]))
        lines.append(sep.join(words))
    lines.append("M2")
    return "\n".join(lines) + "\n"


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plain_programs())
def test_fast_equals_slow_on_random_plain_programs(program: str) -> None:
    assert_same(program)
