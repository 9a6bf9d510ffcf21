"""The ``machinetwin gcode`` commands, through typer's CliRunner."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from machinetwin.cli import app

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture
def prog(tmp_path):
    def write(text: str, name: str = "prog.ngc") -> Path:
        path = tmp_path / name
        path.write_text(text)
        return path

    return write


def test_check_reports_every_error_with_file_line_column(prog):
    path = prog("G21\nG0 X[1/0]\nG1 X1 F100\nG0 X1,5\n!\nM2\n")
    result = run("gcode", "check", path)
    assert result.exit_code == 1
    lines = [ln for ln in result.stdout.splitlines() if ln.startswith(str(path))]
    assert lines == [
        f"{path}:2:7: Attempt to divide by zero",
        f"{path}:4:6: Bad character ',' used",
        f"{path}:5:1: Bad character '!' used",
    ]


def test_check_passes_a_good_file():
    result = run("gcode", "check", EXAMPLES / "pocket.ngc", "-t", EXAMPLES / "tools.tbl")
    assert result.exit_code == 0, result.output
    assert "no errors" in result.output


def test_check_reports_a_missing_end(prog):
    path = prog("G0 X1\n")
    result = run("gcode", "check", path)
    assert result.exit_code == 1
    assert f"{path}:2:1: File ended with no percent sign or program end" in result.stdout


def test_check_with_a_bad_tool_table(prog):
    table = prog("T1 P1 Zx\n", "bad.tbl")
    result = run("gcode", "check", prog("M2\n"), "-t", table)
    assert result.exit_code == 1
    assert "bad.tbl:1:7: bad number in field 'Zx'" in result.output.replace("\n", "")


def test_canon_rs274_format(prog):
    result = run("gcode", "canon", prog("G21\nG0 X1 Y2\nM2\n"))
    assert result.exit_code == 0, result.output
    assert "STRAIGHT_TRAVERSE(1.0000, 2.0000, 0.0000, 0.0000, 0.0000, 0.0000)" in result.stdout
    assert "PROGRAM_END()" in result.stdout


def test_canon_jsonl_program_and_machine_frames(prog):
    path = prog("G20\nG10 L2 P1 X1\nG0 X1 Y2\nM2\n")
    program = run("gcode", "canon", path, "--format", "jsonl")
    machine = run("gcode", "canon", path, "--format", "jsonl", "--frame", "machine")
    assert program.exit_code == 0 and machine.exit_code == 0, program.output + machine.output

    def traverse(output: str) -> dict:
        ops = [json.loads(line) for line in output.splitlines() if line.startswith("{")]
        return next(op for op in ops if op["op"] == "STRAIGHT_TRAVERSE")

    p, m = traverse(program.stdout), traverse(machine.stdout)
    assert (p["line"], p["x"], p["y"]) == (3, 1.0, 2.0)
    assert (m["line"], m["x"], m["y"]) == (3, pytest.approx(50.8), pytest.approx(50.8))


def test_canon_refuses_machine_frame_for_rs274_format(prog):
    result = run("gcode", "canon", prog("M2\n"), "--frame", "machine")
    assert result.exit_code != 0


def test_canon_stops_at_the_first_error(prog):
    path = prog("G0 X1\nG0 X[1/0]\nM2\n")
    result = run("gcode", "canon", path, "--format", "jsonl")
    assert result.exit_code == 1
    assert '"line": 1' in result.stdout  # what came before the error was printed
    assert f"{path}:2:" in result.output.replace("\n", "")


def test_stats_json(prog):
    path = prog("G21 F600\nG0 X10\nG1 Y10\nM2\n")
    result = run("gcode", "stats", path, "--json")
    assert result.exit_code == 0, result.output
    d = json.loads(result.stdout)
    assert (d["rapid_mm"], d["feed_mm"], d["rapid_moves"], d["feed_moves"]) == (10.0, 10.0, 1, 1)
    assert d["bbox_min_mm"] == [10.0, 0.0, 0.0] and d["bbox_max_mm"] == [10.0, 10.0, 0.0]


def test_stats_table_and_error(prog):
    table = run("gcode", "stats", EXAMPLES / "pocket.ngc", "-t", EXAMPLES / "tools.tbl")
    assert table.exit_code == 0, table.output
    assert "cycle time" in table.stdout
    bad = run("gcode", "stats", prog("G0 X[1/0]\nM2\n"))
    assert bad.exit_code == 1


def test_missing_program_is_a_usage_error(tmp_path):
    assert run("gcode", "check", tmp_path / "nope.ngc").exit_code == 2
