"""LinuxCNC tool table files: fields, units and located errors."""

from __future__ import annotations

import pytest

from machinetwin.errors import GCodeError, ToolTableError
from machinetwin.gcode import ToolTable

TABLE = """\
T1 P1 D10.0 Z50.0 ;10 mm end mill
t2  p5\tz-1.5 x0.25 a30 ; lower case, tabs and two spaces

; a comment line
T3 P3 I10 J20 Q1
T0 P0
"""


def test_fields_comments_and_defaults():
    table = ToolTable.parse(TABLE, name="tools.tbl")
    assert sorted(table.tools) == [0, 1, 2, 3]
    t1 = table.get(1)
    assert (t1.pocket, t1.diameter, t1.offset("z"), t1.comment) == (1, 10.0, 50.0, "10 mm end mill")
    t2 = table.get(2)
    assert (t2.pocket, t2.offset("z"), t2.offset("x"), t2.offset("a")) == (5, -1.5, 0.25, 30.0)
    assert t2.offset("y") == 0.0
    assert table.get(3).diameter == 0.0
    assert table.get(9) is None
    assert table.source == "tools.tbl"


def test_inch_tables_are_held_in_mm_but_angles_are_not_scaled():
    table = ToolTable.parse("T2 P2 Z1 X-0.5 W2 A45 D0.25\n", units="inch")
    tool = table.get(2)
    assert tool.offset("z") == pytest.approx(25.4)
    assert tool.offset("x") == pytest.approx(-12.7)
    assert tool.offset("w") == pytest.approx(50.8)
    assert tool.offset("a") == 45.0
    assert tool.diameter == pytest.approx(6.35)


def test_pocket_defaults_to_the_tool_number():
    assert ToolTable.parse("T7 Z1\n").get(7).pocket == 7


@pytest.mark.parametrize(
    ("text", "line", "col", "message"),
    [
        ("T1 P1\nT2 P2 Z1 K5\n", 2, 10, "unexpected field 'K5'"),
        ("T1 P1\n\nT2  P2  Zabc\n", 3, 9, "bad number in field 'Zabc'"),
        ("T1 Znan\n", 1, 4, "bad number in field 'Znan'"),
        ("P1 Z2\n", 1, 1, "tool line has no T (tool number) field"),
        ("   P1 Z2\n", 1, 4, "tool line has no T (tool number) field"),
        ("T1.5 P1\n", 1, 1, "tool number must be a whole number >= 0: 1.5"),
        ("T-1 P1\n", 1, 1, "tool number must be a whole number >= 0: -1.0"),
        ("T1 P1.5\n", 1, 1, "pocket must be a whole number >= 0: 1.5"),
        ("T1 P1\nT1 P2\n", 2, 1, "tool T1 listed twice"),
        ("T1 Z1 Z2\n", 1, 7, "field Z given twice"),
        ("T1 Z\n", 1, 4, "unexpected field 'Z'"),
    ],
)
def test_errors_carry_file_line_and_column(text, line, col, message):
    with pytest.raises(ToolTableError) as info:
        ToolTable.parse(text, name="t.tbl")
    exc = info.value
    assert isinstance(exc, GCodeError)
    assert (exc.file, exc.line, exc.col, exc.message) == ("t.tbl", line, col, message)
    assert str(exc) == f"t.tbl:{line}:{col}: {message}"


def test_load_from_file_and_missing_file(tmp_path):
    path = tmp_path / "tools.tbl"
    path.write_text("T4 P4 D50.0 Z45.0 ;face mill\n")
    table = ToolTable.load(path)
    assert table.get(4).offset("z") == 45.0
    assert table.source == str(path)
    with pytest.raises(ToolTableError, match="cannot read tool table"):
        ToolTable.load(tmp_path / "missing.tbl")


def test_bad_units_are_refused():
    with pytest.raises(ValueError, match="'mm' or 'inch'"):
        ToolTable.parse("T1\n", units="cm")
