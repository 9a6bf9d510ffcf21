"""The line reader: numbers, expressions, parameters and LinuxCNC's error texts.

Expected values and messages are those rs274 (LinuxCNC 2.9) gives for the same text.
"""

from __future__ import annotations

import math

import pytest

from machinetwin.errors import GCodeError
from machinetwin.gcode import interpret_text
from machinetwin.gcode.parameters import Parameters
from machinetwin.gcode.reader import read_line


def value(expr: str, params: Parameters | None = None) -> float:
    block = read_line(f"G0 X{expr}", 1, params or Parameters())
    return block.words["x"]


def read_error(text: str, params: Parameters | None = None) -> GCodeError:
    with pytest.raises(GCodeError) as info:
        read_line(text, 7, params or Parameters())
    assert info.value.line == 7
    return info.value


@pytest.mark.parametrize(
    ("expr", "expected"),
    [
        ("[2**3**2]", 64.0),  # left-associative
        ("[-2**2]", 4.0),  # the sign belongs to the number
        ("[6/2*3]", 9.0),
        ("[2*3 MOD 4]", 2.0),
        ("[1+2*3]", 7.0),
        ("[1+2 GT 2]", 1.0),
        ("[1 LT 2 EQ 1]", 1.0),
        ("[1 OR 1 AND 0]", 0.0),  # AND OR XOR share one level, left to right
        ("[0 AND 1 OR 1]", 1.0),
        ("[1 XOR 1]", 0.0),
        ("[2 XOR 0]", 1.0),
        ("[1 EQ 1.0000001]", 1.0),  # EQ/NE compare with a tolerance
        ("[1 NE 1.1]", 1.0),
        ("[2 GE 2]", 1.0),
        ("[2 LE 1]", 0.0),
        ("[-7 MOD 3]", 2.0),
        ("[7.5 MOD -2]", 1.5),
        ("[-7.5 MOD 2]", 0.5),
        ("[7 MOD -3]", 1.0),
        ("[-7 MOD -3]", 2.0),
        ("[ABS[-2]+FIX[-1.5]+FUP[-1.5]]", -1.0),
        ("ROUND[2.5]", 3.0),
        ("ROUND[-2.5]", -3.0),
        ("SIN[30]", 0.5),
        ("COS[60]", 0.5),
        ("TAN[45]", 1.0),
        ("ASIN[1]", 90.0),
        ("ACOS[0]", 90.0),
        ("ATAN[1]/[1]", 45.0),
        ("ATAN[1]/[-1]", 135.0),
        ("SQRT[16]", 4.0),
        ("EXP[0]", 1.0),
        ("LN[1]", 0.0),
        ("--1", 1.0),
        ("-+-1", 1.0),
        ("[ 1 2 ]", 12.0),  # spaces vanish before reading
        ("1.", 1.0),
        (".5", 0.5),
        ("-[1]", -1.0),
        ("[EXISTS[#1]]", 1.0),
        ("[EXISTS[#<nope>]]", 0.0),
    ],
)
def test_expression_values(expr, expected):
    assert math.isclose(value(expr), expected, abs_tol=1e-12)


def test_case_and_spaces_are_ignored_outside_comments():
    block = read_line("g 0 x 1 . 5 (Keep THIS)", 1, Parameters())
    assert block.words["x"] == 1.5
    assert block.comment == "Keep THIS"


def test_named_parameters_ignore_spaces_and_case():
    params = Parameters()
    params.set("myvar", 3.0)
    assert value("#<My Var>", params) == 3.0
    assert value("[EXISTS[#<MY VAR>]]", params) == 1.0


def test_settings_on_a_line_use_old_values_and_apply_together():
    params = Parameters()
    block = read_line("#1=1 #2=#1", 1, params)
    params.set_many(block.param_settings)
    assert params.get_numbered(1) == 1.0
    assert params.get_numbered(2) == 0.0  # #1's value before the line
    block = read_line("#<a>=1 #<a>=2", 2, params)
    params.set_many(block.param_settings)
    assert params.get_named("a") == 2.0


def test_a_new_named_parameter_reads_as_zero_on_its_own_line():
    params = Parameters()
    assert read_line("#<new>=5 G0 X#<new>", 1, params).words["x"] == 0.0
    with pytest.raises(GCodeError, match=r"Named parameter #<other> not defined"):
        read_line("G0 X#<other> #<other>=1", 2, Parameters())


def test_program_level_parameter_semantics():
    text = "#1=2\n#1=5 G0 X#1\nG0 Y#1\n#<d>=1\nG0 Z[#<D>*3+EXISTS[#<_x>]-1]\nM2\n"
    ops = list(interpret_text(text))
    moves = [op for op in ops if type(op).__name__ == "StraightTraverse"]
    assert [(m.x, m.y, m.z) for m in moves] == [(2.0, 0.0, 0.0), (2.0, 5.0, 0.0), (2.0, 5.0, 3.0)]


@pytest.mark.parametrize(
    ("text", "message", "col"),
    [
        ("G0 X", "No characters found in reading real value", 5),
        ("G0 X#", "No characters found in reading real value", 6),
        ("G0 X.", "bad number format (conversion failed) parsing '.'", 5),
        ("G0 X-", "bad number format (conversion failed) parsing '-'", 5),
        ("G0 X1.2.3", "bad number format (trailing characters) parsing '1.2.3'", 5),
        ("G0 X[1 +]", "bad number format (conversion failed) parsing ''", 9),
        ("G0 X[]", "bad number format (conversion failed) parsing ''", 6),
        ("G0 X1,5", "Bad character ',' used", 6),
        ("G0 X1 X2", "Multiple x words on one line", 7),
        ("M1.5", "Non integer value for integer", 2),
        ("#1.5=2", "Non integer value for integer", 2),
        ("G1000", "G-code out of range", 1),
        ("G0.55", "G-code out of range", 1),
        ("G-1", "Negative g code used", 1),
        ("M1000", "M-code greater than 199: M1000", 1),
        ("M-1", "Negative m code used", 1),
        ("G0 L-1", "Negative l word used", 4),
        ("!", "Bad character '!' used", 1),
        ("G0 X1 (unclosed", "Unclosed comment found", 16),
        ("(a (b))", "Nested comment found", 4),
        ("G0 X[1/0]", "Attempt to divide by zero", None),
        ("G0 X[SQRT[-1]]", "Negative argument to sqrt", 6),
        ("G0 X[LN[0]]", "Zero or negative argument to ln", 6),
        ("G0 X[ACOS[2]]", "Argument to acos out of range", 6),
        ("G0 X[ASIN[2]]", "Argument to asin out of range", 6),
        ("G0 X[ATAN[1]]", "Slash missing after first atan argument", 13),
        ("G0 X[ATAN[1]/2]", "Left bracket missing after slash with atan", 14),
        ("G0 X[ABS 1]", "Left bracket missing after unary operation name", 10),
        ("G0 X[FOO[1]]", "Unknown word starting with f", 6),
        ("G0 X[Q[1]]", "Unknown word where unary operation could be", 6),
        ("G0 X[1", "Unclosed expression", 7),
        ("G0 X[1)", "Unknown operation", 7),
        ("G0 X[1 AN 2]", "Unknown operation name starting with a", 8),
        ("G0 X[1]]", "Bad character ']' used", 8),
        ("G0 X[[-8]**[1/3]]", "Attempt to raise negative to non integer power", None),
        ("G0 X[10**400]", "Calculation resulted in 'infinity'", None),
        ("G0 X[EXP[1000]]", "Calculation resulted in 'infinity'", None),
        ("G0 X[1 MOD 0]", "Calculation resulted in 'not a number'", None),
        ("G0 X[EXISTS[1]]", "Expected # reading parameter", None),
        ("G0 X[EXISTS[#<a>+1]]", "Expected ] reading bracketed parameter", None),
        ("#0=1", "Parameter number out of range", 1),
        ("#5602=1", "Parameter number out of range", 1),
        ("G0 X##2", "Parameter number out of range", 5),
        ("#<a=1", "Named parameter not terminated", 2),
        ("#1", "Equal sign missing in parameter setting", 3),
        ("#1=", "No characters found in reading real value", 4),
        ("G0 X#<nope>", "Named parameter #<nope> not defined", 5),
        ("#<_x>=1", "Cannot assign to read-only parameter #<_x>", 1),
        ("N", "Bad format unsigned integer", 1),
        ("N1 N2", "Bad character 'n' used", 4),
        ("G0 X1 %", "Bad character '%' used", 7),
        ("G0 X1 (" + "a" * 250 + ")", "Command too long", 253),
    ],
)
def test_error_messages_and_columns(text, message, col):
    params = Parameters(lambda name: 0.0 if name == "_x" else None)
    exc = read_error(text, params)
    assert exc.message == message
    if col is not None:
        assert exc.col == col


def test_accepted_oddities():
    params = Parameters()
    assert read_line("#<>=1", 1, params).param_settings == [("", 1.0)]
    assert read_line("N1.5 G0 X1", 1, params).n_number == 1
    assert read_line("N99999999 G0", 1, params).n_number == 99999999
    assert read_line("/G0 X5", 1, params).words["x"] == 5.0  # block delete is off
    assert read_line("M1.00009", 1, params).m_codes == [(1, 1)]
    assert read_line("G0 X1 ;(a(b", 1, params).words == {"x": 1.0}
    assert read_line("G0 X1 (a) (b) ; c", 1, params).comment == "b"
    assert read_line("G0 X1 (" + "a" * 243 + ")", 1, params).words == {"x": 1.0}
    assert read_line("G0 X[EXISTS[#0]]", 1, params).words["x"] == 1.0


def test_integer_words_round_within_tolerance():
    params = Parameters()
    assert read_line("T2.99995", 1, params).words["t"] == 3.0
    assert read_line("G0.50001", 1, params).g_codes == [(5, 1)]


def test_error_file_is_the_program():
    with pytest.raises(GCodeError) as info:
        list(interpret_text("G0 X1\nG0 X[1/0]\nM2\n", name="part.ngc"))
    assert (info.value.file, info.value.line) == ("part.ngc", 2)
    assert str(info.value) == f"part.ngc:2:{info.value.col}: Attempt to divide by zero"
