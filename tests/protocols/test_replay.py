"""The replay adapter: UMich recordings as a live machine (mapping, units, pacing, loop)."""

from __future__ import annotations

import asyncio
import csv
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machinetwin.errors import CommandRejected, ConfigError
from machinetwin.model import AdapterCommand, Execution, MachineEvent, SampleBatch
from machinetwin.protocols.replay import (
    ReplayAdapter,
    ReplaySettings,
    experiment_files,
    load_recording,
)

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "umich-cnc-mill"
REAL = pytest.mark.skipif(not DATA.is_dir(), reason=f"UMich recordings not found at {DATA}")

AXES = {"x": "X1", "y": "Y1", "z": "Z1"}
QUANTITIES = ("ActualPosition", "ActualVelocity", "ActualAcceleration", "CommandPosition",
              "CommandVelocity", "CommandAcceleration", "CurrentFeedback", "DCBusVoltage",
              "OutputCurrent", "OutputVoltage", "OutputPower")  # fmt: skip
HEADER = [
    "",
    *(f"{p}_{q}" for p in ("X1", "Y1", "Z1", "S1") for q in QUANTITIES),
    "M1_CURRENT_PROGRAM_NUMBER", "M1_sequence_number", "M1_CURRENT_FEEDRATE",
    "Machining_Process", "tool_condition",
]  # fmt: skip
PHASES = ("Starting", "Prep", "Layer 1 Up", "Layer 1 Down", "Repositioning", "end")


def read_csv(path: Path) -> tuple[list[str], list[list[str]]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    return rows[0], rows[1:]


def write_recording(path: Path, values: np.ndarray, phases: list[str]) -> None:
    """A recording in the UMich layout: ``values`` (n, numeric columns), a phase per row."""
    n_numeric = len(HEADER) - 3
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(HEADER)
        for i, (row, phase) in enumerate(zip(values, phases, strict=True)):
            w.writerow([i, *(repr(float(v)) for v in row[:n_numeric]), phase, "worn"])


def expected(header: list[str], row: list[str]) -> dict[str, float]:
    """The canonical values of one CSV row, computed here from the column names."""
    v = {name: float(row[header.index(name)]) for name in header[1:-2]}
    out = {}
    for axis, p in AXES.items():
        out[f"{axis}.pos"] = v[f"{p}_ActualPosition"]
        out[f"{axis}.pos_cmd"] = v[f"{p}_CommandPosition"]
        out[f"{axis}.ferr"] = v[f"{p}_CommandPosition"] - v[f"{p}_ActualPosition"]
    out["spindle.speed"] = v["S1_ActualVelocity"] * 60  # rev/s -> rpm
    out["spindle.speed_cmd"] = v["S1_CommandVelocity"] * 60
    out["spindle.power"] = v["S1_OutputPower"] * 1000  # kW -> W
    speed = sum(v[f"{p}_ActualVelocity"] ** 2 for p in AXES.values()) ** 0.5
    out["feed"] = speed * 60  # mm/s -> mm/min
    out["feed_cmd"] = v["M1_CURRENT_FEEDRATE"] * 60
    out["line"] = v["M1_sequence_number"]
    return out


async def collect(adapter: ReplayAdapter, n_batches: int) -> list[SampleBatch | MachineEvent]:
    out: list[SampleBatch | MachineEvent] = []
    async for item in adapter.batches():
        out.append(item)
        if sum(isinstance(i, SampleBatch) for i in out) >= n_batches:
            break
    await adapter.close()
    return out


def concat(items: list[SampleBatch | MachineEvent]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    batches = [b for b in items if isinstance(b, SampleBatch)]
    t = np.concatenate([b.t for b in batches])
    cols = {k: np.concatenate([b.columns[k] for b in batches]) for k in batches[0].columns}
    return t, cols


finite = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data(), n=st.integers(1, 30))
def test_mapping_and_units_of_any_recording(tmp_path: Path, data: st.DataObject, n: int) -> None:
    values = np.array(data.draw(st.lists(st.lists(finite, min_size=47, max_size=47),
                                         min_size=n, max_size=n)))  # fmt: skip
    phases = data.draw(st.lists(st.sampled_from(PHASES), min_size=n, max_size=n))
    path = tmp_path / "experiment_99.csv"
    write_recording(path, values, phases)
    rec = load_recording(path)
    header, rows = read_csv(path)
    for i, row in enumerate(rows):
        for name, value in expected(header, row).items():
            assert rec.columns[name][i] == pytest.approx(value, rel=1e-12, abs=1e-9), (name, i)
    want = [Execution.READY if p == "Starting" else Execution.PROGRAM_COMPLETED if p == "end"
            else Execution.ACTIVE for p in phases]  # fmt: skip
    assert rec.columns["execution"].tolist() == [float(e) for e in want]
    assert rec.tool_condition == "worn"


@REAL
def test_real_experiment_through_the_adapter_matches_the_csv() -> None:
    files = experiment_files(DATA, [4])
    header, rows = read_csv(files[0])
    adapter = ReplayAdapter(ReplaySettings("umich", files, speed=0, loop=False))
    items = asyncio.run(collect(adapter, 10**6))
    t, cols = concat(items)
    assert len(t) == len(rows)  # every recorded row once, none invented
    rng = np.random.default_rng(4)
    for i in rng.choice(len(rows), 50, replace=False):
        for name, value in expected(header, rows[i]).items():
            assert cols[name][i] == pytest.approx(value, rel=1e-12, abs=1e-9), (name, i)
    # the recording is a real cut: positions move, the spindle turns at thousands of rpm
    assert np.ptp(cols["x.pos"]) > 10
    assert 1000 < np.median(cols["spindle.speed"][cols["spindle.speed"] > 100]) < 12000
    events = [e for e in items if isinstance(e, MachineEvent)]
    assert events[0].kind == "program" and events[0].value["name"] == "experiment_04"
    phases = [e.value for e in events if e.kind == "process"]
    col = header.index("Machining_Process")
    recorded = [r[col] for k, r in enumerate(rows) if k == 0 or r[col] != rows[k - 1][col]]
    assert phases == recorded
    assert [e.value for e in events if e.kind == "execution"][-1] == "PROGRAM_COMPLETED"


def _synthetic(tmp_path: Path, n: int, name: str = "experiment_01.csv") -> Path:
    values = np.zeros((n, len(HEADER) - 3))
    values[:, HEADER.index("X1_ActualPosition") - 1] = np.arange(n)  # x.pos = row index
    path = tmp_path / name
    write_recording(path, values, ["Prep"] * n)
    return path


@pytest.mark.parametrize("speed", [10.0, 25.0])
def test_time_compressed_batches_arrive_at_the_recorded_pace(tmp_path: Path, speed: float) -> None:
    """At speed k a batch of 0.1 s wall time carries k recorded rows (0.1 s each),
    stamped 0.1/k s apart in wall time, handed over when its last sample is due."""
    path = _synthetic(tmp_path, 400)
    adapter = ReplayAdapter(ReplaySettings("r", [path], speed=speed, loop=False))
    arrivals: list[float] = []
    batches: list[SampleBatch] = []

    async def run() -> None:
        async for item in adapter.batches():
            if isinstance(item, SampleBatch):
                arrivals.append(time.time())
                batches.append(item)

    t0 = time.time()
    asyncio.run(run())
    rows = round(0.1 * speed / 0.1)
    assert [len(b) for b in batches[:-1]] == [rows] * (len(batches) - 1)
    t = np.concatenate([b.t for b in batches])
    assert np.allclose(np.diff(t), 0.1 / speed, rtol=0, atol=1e-6)
    x = np.concatenate([b.columns["x.pos"] for b in batches])
    assert x.tolist() == list(range(400))
    # no batch is handed over before its last sample's time (wall clock)
    late = np.array(arrivals) - np.array([b.t[-1] for b in batches])
    assert late.min() > -0.02
    # the whole recording took its compressed duration, not as fast as possible
    assert time.time() - t0 >= 400 * 0.1 / speed - 0.05


def test_loops_with_continuing_time(tmp_path: Path) -> None:
    a = _synthetic(tmp_path, 7, "experiment_01.csv")
    b = _synthetic(tmp_path, 5, "experiment_02.csv")
    adapter = ReplayAdapter(ReplaySettings("r", [a, b], speed=0, batch_period_s=0.3))
    items = asyncio.run(collect(adapter, 12))
    t, cols = concat(items)
    assert np.all(np.diff(t) > 0)  # time never runs backwards across loops
    assert np.allclose(np.diff(t), 0.1, rtol=0, atol=1e-6)
    one_loop = list(range(7)) + list(range(5))
    assert cols["x.pos"][:24].tolist() == one_loop * 2
    programs = [
        e.value["name"] for e in items if isinstance(e, MachineEvent) and e.kind == "program"
    ]
    assert programs[:4] == ["experiment_01", "experiment_02"] * 2


def test_bad_recordings_name_file_row_and_column(tmp_path: Path) -> None:
    path = _synthetic(tmp_path, 3)
    text = path.read_text().splitlines()
    fields = text[2].split(",")
    fields[HEADER.index("S1_OutputPower")] = "lots"
    path.write_text("\n".join([*text[:2], ",".join(fields), *text[3:]]) + "\n")
    with pytest.raises(ConfigError, match=r"experiment_01.csv:3: column S1_OutputPower"):
        load_recording(path)
    other = tmp_path / "other.csv"
    other.write_text("a,b\n1,2\n")
    with pytest.raises(ConfigError, match="missing columns"):
        load_recording(other)
    with pytest.raises(ConfigError, match="no such recording"):
        experiment_files(tmp_path, [42])
    with pytest.raises(ConfigError, match="speedup"):
        ReplaySettings("r", [path], speed=-1)


def test_commands_are_refused(tmp_path: Path) -> None:
    adapter = ReplayAdapter(ReplaySettings("r", [_synthetic(tmp_path, 3)]))
    with pytest.raises(CommandRejected, match="recorded machine"):
        asyncio.run(adapter.command(AdapterCommand("cycle_start")))
