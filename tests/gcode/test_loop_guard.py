"""An endless O-word loop stops with an error on the loop's line instead of hanging."""

from __future__ import annotations

import pytest

from machinetwin.errors import GCodeError
from machinetwin.gcode import interpret_text, owords


@pytest.mark.parametrize(
    ("program", "line"),
    [
        ("G21\no1 while [1 LT 3]\nG0 X1\no1 endwhile\nM2\n", 2),
        ("G21\no2 do\nG0 X1\no2 while [1]\nM2\n", 2),
        ("G21\no3 repeat [1000000000]\nG0 X1\no3 endrepeat\nM2\n", 2),
    ],
)
def test_endless_loops_stop(monkeypatch: pytest.MonkeyPatch, program: str, line: int) -> None:
    monkeypatch.setattr(owords, "MAX_LOOP_ITERATIONS", 500)
    with pytest.raises(GCodeError, match="endless loop") as info:
        list(interpret_text(program))
    assert info.value.line == line


def test_long_finite_loops_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(owords, "MAX_LOOP_ITERATIONS", 500)
    ops = list(interpret_text("G21\n#1=0\no1 while [#1 LT 400]\n#1=[#1+1]\no1 endwhile\nM2\n"))
    assert ops[-1].rs274_name == "PROGRAM_END"
