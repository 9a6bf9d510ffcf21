"""The simulated twin and its comparison with the machine, the rolling charts and the
program window, without a browser."""

from __future__ import annotations

import math
import time
from dataclasses import replace
from types import SimpleNamespace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.hub.duckdb_store import DuckDBStore
from machinetwin.machine import load_machine_config
from machinetwin.machine.faults import FaultSchedule, parse_fault
from machinetwin.machine.simulator import SimOptions, simulate
from machinetwin.model import SampleBatch
from machinetwin.ui.chart_feed import RollingSeries
from machinetwin.ui.machine_page import program_html
from machinetwin.ui.sim_twin import SimulatedRun, compare, simulate_program
from machinetwin.ui.twin import TwinDataError
from machinetwin.ui.twin_panel import offset_text, twin_summary
from machinetwin.ui.twin_tracker import COMPARED, TwinState, TwinTracker

CONFIG = load_machine_config()
PROGRAM = """G21 G17 G90 G54
T1 M6
G43 H1 G0 Z10
S6000 M3
G0 X10 Y10
G1 Z-1 F1200
G1 X60 F3000
G2 X80 Y30 I0 J20
G1 Y60
G0 Z10
M5
M30
"""


@pytest.fixture(scope="module")
def run() -> SimulatedRun:
    return simulate_program(PROGRAM, CONFIG, "square.ngc")


def _straight_run(n: int = 200) -> SimulatedRun:
    """A synthetic run: along X at 10 mm/s on line 5, then along Y on line 6."""
    t = np.arange(n) * 0.01
    half = n // 2
    x = np.where(np.arange(n) < half, t * 10.0, half * 0.1)
    y = np.where(np.arange(n) < half, 0.0, (t - t[half]) * 10.0)
    pos = np.column_stack([x, y, np.zeros(n)])
    line = np.where(np.arange(n) < half, 5, 6)
    zeros = np.zeros(n)
    return SimulatedRun(t, pos, line, zeros, zeros, np.zeros((n, 3)), float(t[-1]), True)


def test_the_twin_runs_the_program_like_the_virtual_machine(run: SimulatedRun) -> None:
    reference = simulate(_write(PROGRAM), CONFIG, SimOptions(seed=0, vibration_every_s=1e9))
    assert run.completed
    assert run.cycle_time_s == pytest.approx(float(reference.meta["duration_s"]), abs=0.02)
    # the same machine on the same program: the reported path is the twin's path
    sample = slice(0, None, 7)
    pos = np.column_stack([reference.columns[f"{a}.pos"] for a in "xyz"])[sample]
    got = compare(run, reference.columns["t"][sample], pos, reference.columns["line"][sample])
    assert np.nanmax(got.deviation_mm) < 1e-6
    assert np.nanmax(np.abs(got.offset_s)) < 0.02


def test_a_machine_with_backlash_deviates_from_its_twin(run: SimulatedRun) -> None:
    faults = FaultSchedule([parse_fault("backlash:1@0")])  # 0.05 mm dead band per axis
    worn = simulate(_write(PROGRAM), CONFIG, SimOptions(seed=0, vibration_every_s=1e9), faults)
    pos = np.column_stack([worn.columns[f"{a}.pos"] for a in "xyz"])
    got = compare(run, worn.columns["t"], pos, worn.columns["line"])
    assert 0.01 < np.nanmax(got.deviation_mm) < 0.2


def test_the_twin_starts_where_the_machine_stood() -> None:
    start = (390.0, 270.0, 0.0)
    run = simulate_program(PROGRAM, CONFIG, "p.ngc", start=start, tool=1)
    assert np.allclose(run.pos[0], start, atol=0.01)
    home = simulate_program(PROGRAM, CONFIG, "p.ngc")
    assert not math.isclose(run.cycle_time_s, home.cycle_time_s, abs_tol=0.05)  # other rapids


def test_the_twin_names_a_program_it_cannot_run() -> None:
    with pytest.raises(TwinDataError, match="bad.ngc"):
        simulate_program("G1 X10 Q\n", CONFIG, "bad.ngc")
    with pytest.raises(TwinDataError, match="start position"):
        simulate_program(PROGRAM, CONFIG, "p.ngc", start=(0.0, math.nan, 0.0))


@settings(max_examples=60, deadline=None)
@given(
    k=st.integers(0, 198),
    u=st.floats(0.0, 1.0),
    side=st.floats(-2.0, 2.0),
    late=st.floats(-0.5, 0.5),
)
def test_deviation_is_the_distance_to_the_path_and_the_offset_the_time_shift(
    k: int, u: float, side: float, late: float
) -> None:
    run = _straight_run()
    if run.line[k] != run.line[k + 1]:
        return  # the corner between the two lines
    a, b = run.pos[k], run.pos[k + 1]
    along = a + u * (b - a)
    normal = np.array([-(b - a)[1], (b - a)[0], 0.0]) / np.linalg.norm(b - a)
    t_path = run.t[k] + u * (run.t[k + 1] - run.t[k])
    got = compare(run, np.array([t_path + late]), (along + side * normal)[None, :],
                  np.array([run.line[k + 1]]))  # fmt: skip
    # a point beside a straight run of the path: its distance, unless it lies beside
    # the run's ends, where the nearest point is the end
    assert got.deviation_mm[0] <= abs(side) + 1e-9
    if abs(side) < 0.05 or 0.3 < run.t[k] < 0.65 or 1.3 < run.t[k] < 1.65:
        assert got.deviation_mm[0] == pytest.approx(abs(side), abs=1e-6)
        assert got.offset_s[0] == pytest.approx(late, abs=1e-6)


def test_compare_leaves_lines_the_twin_never_ran_and_refuses_bad_shapes() -> None:
    run = _straight_run()
    got = compare(run, np.array([0.1, 0.2]), np.zeros((2, 3)), np.array([5, 99]))
    assert math.isfinite(got.deviation_mm[0]) and math.isnan(got.deviation_mm[1])
    # a machine at the very start of a program still reporting the previous program's
    # last line: the twin runs that line only 2 s in, out of reach after 0.1 s
    late = _straight_run(400)
    got = compare(late, np.array([0.1, 2.5]), late.pos[[250, 250]], np.array([6, 6]))
    assert math.isnan(got.offset_s[0]) and got.offset_s[1] == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(TwinDataError, match=r"\(k, 3\)"):
        compare(run, np.zeros(3), np.zeros((2, 3)), np.zeros(3))


def test_twin_at_follows_program_time() -> None:
    run = _straight_run()
    pos, line = run.at(0.505)
    assert np.allclose(pos, [5.05, 0.0, 0.0], atol=1e-9) and line == 5
    pos, line = run.at(1.505)
    assert np.allclose(pos, [10.0, 5.05, 0.0], atol=1e-9) and line == 6
    end, _ = run.at(1e6)
    assert np.allclose(end, run.pos[-1])
    with pytest.raises(TwinDataError, match="finite"):
        run.at(math.nan)


def test_the_panel_shows_the_machine_beside_its_twin() -> None:
    run = _straight_run()
    k = 30
    reported = {s: np.zeros(1) for s in COMPARED}
    reported.update({"x.pos": np.array([3.0]), "y.pos": np.array([0.02]), "line": np.array([5.0])})
    state = TwinState("p.ngc", 100.0, run, "twin", np.array([100.0 + run.t[k] + 0.25]), reported,
                      np.array([0.02]), np.array([0.25]), np.array([run.t[k]]))  # fmt: skip
    summary = twin_summary(state)
    assert summary.offset == "0.25 s behind the twin"
    assert summary.deviation.startswith("0.020 mm now")
    rows = {r["what"]: r for r in summary.rows}
    assert rows["X (mm)"]["reported"] == "3.000" and rows["X (mm)"]["simulated"] == "3.000"
    assert rows["Y (mm)"]["difference"] == "+0.020"
    assert rows["Line"]["simulated"] == "5"
    assert twin_summary(replace(state, run=None)).rows == []
    assert offset_text(-0.3) == "0.30 s ahead of the twin" and offset_text(0.01).startswith("on")


@settings(max_examples=40, deadline=None)
@given(steps=st.lists(st.floats(0.05, 7.0), min_size=1, max_size=12), start=st.floats(1e3, 2e9))
def test_rolling_charts_hold_what_a_full_query_would(steps: list[float], start: float) -> None:
    """Merging deltas gives the same points as querying the whole window at the end."""

    def query(t0: float, t1: float, buckets: int) -> dict:
        # a signal sampled at 100 Hz whose value is its time: bucket means are exact
        edges = t0 + np.arange(buckets) * (t1 - t0) / buckets
        return {"s": (edges, edges + (t1 - t0) / buckets / 2)}

    feed = RollingSeries(["s"], window_s=20.0)
    now = start
    for step in steps:
        now += step
        t0, t1, n = feed.plan(now)
        assert t0 % feed.bucket_s == pytest.approx(0, abs=1e-6) or t0 % feed.bucket_s == (
            pytest.approx(feed.bucket_s, abs=1e-6)
        )
        feed.merge(t0, t1, query(t0, t1, n))
    full = RollingSeries(["s"], window_s=20.0)
    t0, t1, n = full.plan(now)
    full.merge(t0, t1, query(t0, t1, n))
    assert np.allclose(feed.points["s"], full.points["s"], rtol=0, atol=1e-3)


def test_program_window_html_escapes_and_marks_the_line() -> None:
    text = program_html(7, ["G1 X1", "(a <b> & c)", "M30"], 8)
    assert text.count('role="listitem"') == 3
    assert (
        'class="program-line w-full current" aria-current="true" role="listitem" data-line="8"'
        in text
    )
    assert "&lt;b&gt; &amp; c" in text and "<b>" not in text


def _write(text: str):  # noqa: ANN202 - a Path in a temporary directory
    import tempfile
    from pathlib import Path

    path = Path(tempfile.mkdtemp(prefix="mt-twin-test-")) / "square.ngc"
    path.write_text(text)
    return path


def _store_run(store, machine: str, columns: dict, started: float, stretch: float) -> None:  # noqa: ANN001
    """Store a simulated run as the machine's edge would have: 100 ms batches."""
    names = [*COMPARED, "tool"]
    t = started + columns["t"] * stretch
    parts = [slice(k, k + 10) for k in range(0, len(t), 10)]
    store.write_batches([SampleBatch(machine, t[p], {n: columns[n][p] for n in names}, seq=seq)
                         for seq, p in enumerate(parts)])  # fmt: skip


def test_the_tracker_compares_what_the_store_holds_with_the_twin(tmp_path) -> None:  # noqa: ANN001
    """Two machines ran the program, one as its twin would and one 10 % slower: the
    first keeps pace with its twin, the second falls behind by 10 % of the time run."""
    reference = simulate(_write(PROGRAM), CONFIG, SimOptions(seed=0, vibration_every_s=1e9))
    store = DuckDBStore(tmp_path / "hub.duckdb")
    tracker = TwinTracker(store, CONFIG)
    try:
        for machine, stretch in (("steady", 1.0), ("slow", 1.1)):
            started = time.time() - reference.columns["t"][-1] * stretch - 1.0
            _store_run(store, machine, reference.columns, started, stretch)
            program = SimpleNamespace(name="square.ngc", text=PROGRAM, started=started)
            state = tracker.state(machine, program)
            assert state.run is not None and "from where the machine stood" in state.note
            k = state.newest
            assert k is not None and np.nanmax(state.deviation_mm) < 1e-3
            if stretch == 1.0:
                assert np.nanmax(np.abs(state.offset_s)) < 0.02
            else:  # behind by a tenth of the twin's time at the matched point
                assert state.offset_s[k] == pytest.approx(0.1 * state.t_sim[k], abs=0.05)
            summary = twin_summary(state)
            assert ("behind" in summary.offset) == (stretch > 1.0)
    finally:
        store.close()
