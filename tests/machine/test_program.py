"""Programs made ready for the virtual machine: batches, travel check, spindle at speed."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.errors import CommandRejected
from machinetwin.gcode import ProgramSource, canon
from machinetwin.machine import load_machine_config
from machinetwin.machine.program import check_travel, line_kinds, machine_ops, spindle_at_speed
from machinetwin.machine.simulator import tool_table_from

CONFIG = load_machine_config()
ACCEL = CONFIG.spindle.acceleration  # rpm/s
VMAX = np.array([CONFIG.axes[a].max_velocity for a in ("x", "y", "z")])
G54 = tuple(CONFIG.work_offsets["G54"])
HOME = (0.0, 0.0, 0.0)


def ops_of(body: str) -> list[canon.CanonOp]:
    text = f"G21 G17 G90 G54 G40 G49 G80 G94\n{body.strip()}\nM5\nM30\n"
    return machine_ops(ProgramSource.from_text(text), tool_table_from(CONFIG), G54)


def expanded(ops: list[canon.CanonOp]) -> list[canon.CanonOp]:
    return list(canon.expand(ops))


def rapid_time(points: list[tuple[float, float, float]]) -> float:
    """The shortest time rapids through ``points`` (machine mm) can take."""
    p = np.asarray(points, dtype=float)
    return float((np.abs(np.diff(p, axis=0)) / VMAX).max(axis=1).sum())


def test_feed_after_m3_waits_for_the_ramp() -> None:
    ops = ops_of("S8000 M3\nG1 X10 F300")
    out = expanded(spindle_at_speed(ops, CONFIG, HOME))
    first_feed = next(i for i, op in enumerate(out) if type(op) is canon.StraightFeed)
    wait = out[first_feed - 1]
    assert type(wait) is canon.Dwell
    assert wait.seconds == pytest.approx(8000.0 / ACCEL)
    assert wait.line == out[first_feed].line  # reported on the line that waits


def test_dwells_and_rapids_count_toward_the_ramp() -> None:
    ops = ops_of("S10000 M3\nG4 P1\nG0 X100\nG1 X110 F300")
    out = expanded(spindle_at_speed(ops, CONFIG, HOME))
    rapid = next(op for op in out if type(op) is canon.StraightTraverse)
    assert rapid.x == pytest.approx(G54[0] + 100.0)  # X0 -> X400 in the machine frame
    added = [op for op in out if type(op) is canon.Dwell and op.seconds != 1.0]
    credit = 1.0 + rapid_time([HOME, (rapid.x, rapid.y, rapid.z)])
    assert len(added) == 1
    assert added[0].seconds == pytest.approx(10000.0 / ACCEL - credit, abs=1e-9)


def test_no_wait_when_a_dwell_covers_the_ramp() -> None:
    ops = ops_of("S8000 M3\nG4 P4\nG1 X10 F300")
    assert expanded(spindle_at_speed(ops, CONFIG, HOME)) == expanded(ops)


def test_speed_changes_reversal_and_stop() -> None:
    body = "S8000 M3\nG4 P4\nG1 X10 F300\nS2000\nG1 X20\nM4\nG1 X30\nM5\nG1 X40"
    out = expanded(spindle_at_speed(ops_of(body), CONFIG, HOME))
    added = [op.seconds for op in out if type(op) is canon.Dwell and op.line > 3]  # not G4
    # 8000 -> 2000 rpm: 3 s; +2000 -> -2000 rpm (M4): 2 s; M5: a feed need not wait
    assert added == [pytest.approx(6000.0 / ACCEL), pytest.approx(4000.0 / ACCEL)]


@settings(max_examples=40, deadline=None)
@given(
    rpm=st.integers(500, 12000),
    dwell=st.floats(0.0, 8.0),
    rapids=st.integers(0, 30),
    feeds=st.integers(1, 30),
)
def test_waits_keep_the_program_and_cover_the_ramp(
    rpm: int, dwell: float, rapids: int, feeds: int
) -> None:
    # Plain motion lines (CAM style), which the interpreter hands over as batches:
    # the wait may have to split one between its rapids and its first feed.
    moves = [f"G0 X{2 * k} Y{k % 7}" for k in range(rapids)]
    moves += [f"G1 X{2 * rapids + k} Y{k % 5} Z-{k % 3} F600" for k in range(feeds)]
    body = f"S{rpm} M3\nG4 P{dwell:.3f}\n" + "\n".join(moves)
    ops = ops_of(body)
    out = expanded(spindle_at_speed(ops, CONFIG, HOME))
    before = expanded(ops)
    extra = [i for i, op in enumerate(out) if type(op) is canon.Dwell and op.line > 3]
    assert [op for i, op in enumerate(out) if i not in extra] == before  # nothing else changed
    first_feed = next(i for i, op in enumerate(out) if type(op) is canon.StraightFeed)
    # the spindle is at speed when the first feed starts: waited + surely elapsed >= ramp
    path = [HOME] + [
        (op.x, op.y, op.z) for op in out[:first_feed] if type(op) is canon.StraightTraverse
    ]
    elapsed = round(dwell, 3) + rapid_time(path)
    waited = sum(out[i].seconds for i in extra)
    ramp = min(rpm, CONFIG.spindle.max_rpm) / ACCEL
    assert waited + elapsed >= ramp - 1e-9
    if extra:
        assert extra == [first_feed - 1]  # right before the first feed, nowhere else
        assert waited + elapsed == pytest.approx(ramp)  # and no longer than needed
    else:
        assert elapsed >= ramp - 1e-3


def test_batches_give_the_same_travel_and_line_kinds_as_single_ops() -> None:
    body = "\n".join(f"G0 X{k} Y{k}\nG1 X{k + 1} Y{2 * k} Z-1 F600" for k in range(40))
    body += "\nG2 X50 Y78 I5 J0\nG0 Z10"
    ops = ops_of(body)
    assert any(type(op) is canon.MotionBatch for op in ops)
    single = expanded(ops)
    rapid, feed = line_kinds(ops)
    rapid_single, feed_single = line_kinds(single)
    np.testing.assert_array_equal(rapid, rapid_single)
    np.testing.assert_array_equal(feed, feed_single)
    check_travel(ops, CONFIG)  # inside: no error


def test_travel_check_sees_into_batches() -> None:
    body = "\n".join(f"G1 X{k * 10} Y{k} F600" for k in range(40))  # to X390: machine X690
    ops = ops_of(body)
    assert any(type(op) is canon.MotionBatch for op in ops)
    with pytest.raises(CommandRejected, match="X travel"):
        check_travel(ops, CONFIG)
