"""The planner reads motion batches in bulk: it must give what reading them op by op gives.

Each program is planned twice, once with its :class:`~machinetwin.gcode.canon.MotionBatch`
columns as the interpreter hands them over (the planner's numpy path) and once with
every batch expanded into single ops (``canon.expand``: the per-object path). The
setpoints, lines, events and end time must be bit-identical, through lookahead windows
that end inside a batch, zero-length and sub-nanometre moves, arcs inside batches,
mode changes and dwells between batches, feed hold and override changes.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machinetwin.gcode import canon
from machinetwin.machine.config import load_machine_config
from machinetwin.machine.planner import Planner, PlannerError, PlannerSettings

CONFIG = load_machine_config()
START = (100.0, 100.0, -100.0)
EQUIVALENCE = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# moves of a few mm at most, so that the programs take seconds; zero steps on purpose:
# the op path skips a move shorter than 1e-9 mm and the next one starts where it started
STEPS = st.sampled_from([0.0, 0.0, 4e-10, -0.5, 0.5, 1.0, -1.5, 2.0, 3.0])
FEEDS = st.sampled_from([150.0, 600.0, 1200.0, 3000.0])


@st.composite
def batch_rows(draw: st.DrawFn) -> list[tuple]:
    """Rows (kind, feed_set, feed, step or arc) of one batch; kind -1 only sets the feed."""
    n = draw(st.integers(1, 14))
    rows = []
    for _ in range(n):
        kind = draw(st.sampled_from([-1, 0, 1, 1, 1, 1, 2]))
        feed_set = kind == -1 or draw(st.booleans())
        if kind == 2:
            shape = (draw(st.sampled_from([0.8, 1.5, -2.0])), draw(st.sampled_from([0.0, 1.0])),
                     draw(st.floats(0.3, 5.5)), draw(st.sampled_from([0.0, -0.5])),
                     draw(st.sampled_from([1, -1])))  # fmt: skip
        else:
            shape = (draw(STEPS), draw(STEPS), draw(STEPS))
        rows.append((kind, feed_set, draw(FEEDS), shape))
    return rows


def make_batch(rows: list[tuple], line: int, here: np.ndarray) -> tuple[canon.MotionBatch, np.ndarray]:  # fmt: skip
    """A MotionBatch (XY plane) from ``batch_rows``, starting at ``here``; and where it ends."""
    n = len(rows)
    end, centre = np.zeros((n, 6)), np.full((n, 2), np.nan)
    rotation = np.ones(n, dtype=np.int8)
    for i, (kind, _, _, shape) in enumerate(rows):
        if kind == 2:  # centre off the start point, end at an angle on a circle (or spiral)
            cx, cy, angle, dz, turn = shape
            c = here[:2] + (cx, cy)
            r0 = math.hypot(*(here[:2] - c))
            th = math.atan2(here[1] - c[1], here[0] - c[0]) + turn * angle
            here = np.array([c[0] + r0 * math.cos(th), c[1] + r0 * math.sin(th), here[2] + dz])
            centre[i], rotation[i] = c, turn
        elif kind >= 0:
            here = here + shape
        end[i, :3] = here
    batch = canon.MotionBatch(
        line=line,
        lines=np.arange(line, line + n, dtype=np.int64),
        kind=np.array([r[0] for r in rows], dtype=np.int8),
        feed_set=np.array([r[1] for r in rows], dtype=bool),
        feed=np.array([r[2] for r in rows]),
        end=end,
        centre=centre,
        rotation=rotation,
    )
    return batch, here


@st.composite
def programs(draw: st.DrawFn) -> list[canon.CanonOp]:
    """Batches with single ops between them: mode changes, feeds, single moves, dwells."""
    here = np.array(START)
    ops: list[canon.CanonOp] = [canon.SetFeedRate(1, draw(FEEDS))]
    line = 2
    for _ in range(draw(st.integers(1, 4))):
        between = draw(st.sampled_from(["none", "g64", "g61", "feed", "move", "dwell"]))
        if between == "g64":
            tol = draw(st.sampled_from([None, 0.01, 0.2]))
            ops.append(canon.SetMotionControlMode(line, "CONTINUOUS", tol))
        elif between == "g61":
            ops.append(canon.SetMotionControlMode(line, "EXACT_PATH"))
        elif between == "feed":
            ops.append(canon.SetFeedRate(line, draw(FEEDS)))
        elif between == "move":
            here = here + (1.0, -2.0, 0.5)
            ops.append(canon.StraightFeed(line, *here))
        elif between == "dwell":
            ops.append(canon.Dwell(line, 0.05))
        batch, here = make_batch(draw(batch_rows()), line + 1, here)
        ops.append(batch)
        line += len(batch) + 2
    ops.append(canon.ProgramEnd(line))
    return ops


def plan(ops: list[canon.CanonOp], st_: PlannerSettings, block: int, operator: dict) -> dict:
    """Run a program to its end; the setpoints, lines and events, and the end time."""
    planner = Planner(CONFIG, st_, start=START)
    planner.load(ops)
    pos, line, feed, events = [], [], [], []
    for k in range(2000):
        if k in operator:
            getattr(planner, operator[k][0])(*operator[k][1:])
        b = planner.advance(block)
        pos.append(b.pos.copy())
        line.append(b.line)
        feed.append(b.feed)
        events += [(k, e.tick, repr(e.op)) for e in b.events]
        if planner.done:
            break
        if planner.paused:
            planner.resume()
    assert planner.done, "program did not finish"
    return {"pos": np.concatenate(pos), "line": np.concatenate(line), "feed": np.concatenate(feed),
            "events": events, "end": planner.end_time}  # fmt: skip


def assert_same(ops: list[canon.CanonOp], st_: PlannerSettings, block: int, operator: dict) -> None:  # fmt: skip
    bulk = plan(ops, st_, block, operator)
    single = plan(list(canon.expand(ops)), st_, block, operator)
    assert bulk["end"] == single["end"]
    assert bulk["events"] == single["events"]
    np.testing.assert_array_equal(bulk["line"], single["line"])
    np.testing.assert_array_equal(bulk["pos"], single["pos"])  # bit-identical
    np.testing.assert_array_equal(bulk["feed"], single["feed"])


@EQUIVALENCE
@given(
    ops=programs(),
    window=st.sampled_from([(1000, 0.0), (3, 0.0), (5, 0.0), (1000, 4.0), (2, 1.5)]),
    block=st.sampled_from([97, 500, 1234]),
)
def test_batches_plan_as_their_ops_one_by_one(ops, window, block) -> None:
    """Lookahead windows (segments, mm) that end anywhere inside a batch."""
    segments, length = window
    st_ = PlannerSettings(lookahead_segments=segments, lookahead_length=length)
    assert_same(ops, st_, block, {})


@EQUIVALENCE
@given(
    ops=programs(),
    hold_at=st.integers(1, 6),
    override=st.sampled_from([0.3, 1.0, 1.7]),
    segments=st.sampled_from([4, 1000]),
)
def test_batches_with_feed_hold_and_overrides(ops, hold_at, override, segments) -> None:
    operator = {
        hold_at: ("feed_hold",),
        hold_at + 2: ("resume",),
        hold_at + 3: ("set_feed_override", override),
        hold_at + 5: ("set_rapid_override", override),
    }
    assert_same(ops, PlannerSettings(lookahead_segments=segments), 150, operator)


@settings(max_examples=10, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops=programs())
def test_arc_blending_reads_batches_as_ops(ops) -> None:
    """LinuxCNC's model places blend arcs move by move; batches must change nothing."""
    assert_same(ops, PlannerSettings(blending="arc"), 500, {})


def test_zero_feed_in_a_batch_names_the_line_as_the_op_path_does() -> None:
    rows = [(0, True, 0.0, (1.0, 0.0, 0.0)), (1, False, 0.0, (0.0, 1.0, 0.0))]
    batch, _ = make_batch(rows, 7, np.array(START))
    ops = [batch, canon.ProgramEnd(9)]
    messages = []
    for variant in (ops, list(canon.expand(ops))):
        planner = Planner(CONFIG, PlannerSettings(), start=START)
        planner.load(variant)
        with pytest.raises(PlannerError, match="line 8: feed move with zero feed rate") as err:
            for _ in range(100):
                planner.advance(100)
        messages.append(str(err.value))
    assert messages[0] == messages[1]


def test_a_long_batch_keeps_the_window_bounded_and_matches() -> None:
    """5000 rows in one batch: the window is cut inside it many times over."""
    rng = np.random.default_rng(3)
    steps = rng.choice([-1.0, -0.5, 0.0, 0.5, 1.0], size=(5000, 3))
    rows = [(1, i % 7 == 0, 1200.0 + 300 * (i % 3), tuple(s)) for i, s in enumerate(steps)]
    batch, _ = make_batch(rows, 2, np.array(START))
    ops = [canon.SetFeedRate(1, 1200.0), batch, canon.ProgramEnd(5003)]
    st_ = PlannerSettings(lookahead_segments=200)
    bulk = plan(ops, st_, 5000, {})
    single = plan(list(canon.expand(ops)), st_, 5000, {})
    np.testing.assert_array_equal(bulk["pos"], single["pos"])
    assert bulk["events"] == single["events"] and bulk["end"] == single["end"]
    assert len(bulk["events"]) == 1 + sum(r[1] for r in rows) + 1  # every feed set fires
