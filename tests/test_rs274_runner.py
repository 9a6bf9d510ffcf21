"""Tests of the rs274 helpers that other tests use to compare against LinuxCNC."""

from __future__ import annotations

from pathlib import Path

import pytest

from rs274_runner import compare_calls, normalize_rs274_line, parse_call, run_rs274

TRAVERSE = "STRAIGHT_TRAVERSE(1.0000, 2.0000, 3.0000, 0.0000, 0.0000, 0.0000)"


@pytest.mark.parametrize(
    ("line", "expected"),
    [
        (f"   11 N102   {TRAVERSE}", TRAVERSE),
        ("    1 N..... USE_LENGTH_UNITS(CANON_UNITS_MM)", "USE_LENGTH_UNITS(CANON_UNITS_MM)"),
        ("12345 N7 ON_RESET()\n", "ON_RESET()"),
        (TRAVERSE, TRAVERSE),
    ],
)
def test_normalize_strips_counter_and_n_column(line: str, expected: str) -> None:
    assert normalize_rs274_line(line) == expected


def test_parse_call_numbers_and_words() -> None:
    assert parse_call(TRAVERSE) == ("STRAIGHT_TRAVERSE", [1.0, 2.0, 3.0, 0.0, 0.0, 0.0])
    assert parse_call("USE_LENGTH_UNITS(CANON_UNITS_MM)") == (
        "USE_LENGTH_UNITS",
        ["CANON_UNITS_MM"],
    )
    assert parse_call("ON_RESET()") == ("ON_RESET", [])
    assert parse_call("SET_SPINDLE_MODE(0 0.0000)") == ("SET_SPINDLE_MODE", [0.0, 0.0])
    name, args = parse_call(
        "USE_TOOL_LENGTH_OFFSET(0.0000 0.0000 1270.0000, 0.0000 0.0000 0.0000, "
        "0.0000 0.0000 0.0000)"
    )
    assert name == "USE_TOOL_LENGTH_OFFSET"
    assert args == [0.0, 0.0, 1270.0] + [0.0] * 6


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('COMMENT("comment, a, b ")', "comment, a, b "),
        ('COMMENT("(nested) parens, and commas)")', "(nested) parens, and commas)"),
        ('MESSAGE(" hello, world "q"")', ' hello, world "q"'),
        ('COMMENT("a", "b")', 'a", "b'),  # unescaped quotes: the string runs to the last quote
        ('COMMENT("")', ""),
        ('COMMENT("12.5")', "12.5"),  # quoted numbers stay text
    ],
)
def test_parse_call_quoted_strings(text: str, expected: str) -> None:
    name, args = parse_call(text)
    assert args == [expected]
    assert name in {"COMMENT", "MESSAGE"}


def test_parse_call_rejects_non_calls() -> None:
    with pytest.raises(ValueError, match="not a canonical call"):
        parse_call("STRAIGHT_TRAVERSE 1 2 3")
    with pytest.raises(ValueError, match="unterminated string"):
        parse_call('COMMENT("open)')


def test_compare_calls_tolerance() -> None:
    base = ["ON_RESET()", TRAVERSE, "STRAIGHT_FEED(1.0000, 2.0000, 3.0000, 0, 0, 0)"]
    close = ["ON_RESET()", TRAVERSE, "STRAIGHT_FEED(1.00005, 2.0000, 3.0000, 0, 0, 0)"]
    off = ["ON_RESET()", TRAVERSE, "STRAIGHT_FEED(1.0002, 2.0000, 3.0000, 0, 0, 0)"]
    assert compare_calls(base, base) is None
    assert compare_calls(base, close) is None
    message = compare_calls(base, off)
    assert message is not None
    assert "first mismatch at call 2" in message
    assert "STRAIGHT_FEED argument 0" in message
    assert "1.0002" in message


def test_compare_calls_names_counts_strings_and_lengths() -> None:
    assert "call name" in (compare_calls(["ON_RESET()"], ["PROGRAM_END()"]) or "")
    assert "arguments" in (compare_calls(["F(1, 2)"], ["F(1)"]) or "")
    assert "argument 0" in (compare_calls(['COMMENT("a")'], ['COMMENT("b")']) or "")
    assert "argument 0" in (compare_calls(["F(CANON_XYZ)"], ["F(1.0)"]) or "")
    message = compare_calls(["A()", "B()"], ["A()"])
    assert message is not None
    assert "expected 2 calls, got 1" in message


def test_compare_calls_shows_context_from_both_lists() -> None:
    expected = [f"CALL_{i}()" for i in range(10)]
    actual = list(expected)
    actual[5] = "OTHER()"
    message = compare_calls(expected, actual)
    assert message is not None
    lines = message.splitlines()
    assert lines[0].startswith("first mismatch at call 5")
    assert "CALL_2()" in message and "CALL_8()" in message
    assert "CALL_1()" not in message and "CALL_9()" not in message
    assert any(line.lstrip().startswith("> ") and "OTHER()" in line for line in lines)


def test_run_rs274_straight_traverse(rs274_available: str) -> None:
    result = run_rs274("G21 G0 X1 Y2 Z3\nM2\n")
    assert result.ok, result.messages
    assert TRAVERSE in result.calls
    assert result.calls[-1] == "ON_RESET()"


def test_run_rs274_reports_error_and_keeps_earlier_calls(rs274_available: str) -> None:
    result = run_rs274("G21 G0 X1 Y2 Z3\nG1 X5\nM2\n")  # G1 without a feed rate is an error
    assert result.returncode != 0
    assert TRAVERSE in result.calls
    assert result.messages


def test_run_rs274_subroutine_file_and_workdir(rs274_available: str, tmp_path: Path) -> None:
    sub = "o<shift> sub\nG0 X#1\no<shift> endsub\nM2\n"
    result = run_rs274(
        "G21\no<shift> call [7]\nM2\n",
        workdir=tmp_path,
        extra_files={"shift.ngc": sub},
    )
    assert result.ok, result.messages
    assert any(call.startswith("STRAIGHT_TRAVERSE(7.0000,") for call in result.calls)
    assert result.workdir == tmp_path
    assert (tmp_path / "out.txt").exists()
