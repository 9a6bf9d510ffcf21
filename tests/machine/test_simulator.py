"""End-to-end acceptance of the virtual machine: whole simulated runs, not single models.

Every test runs short programs written here (a few seconds of machine time each) on
the default machine (default_vmc.toml), so the whole file stays well under a minute.
The programs are in work coordinates: the 100 x 80 x 40 mm block's corner is at X0 Y0
and its top face at Z0.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from scipy.signal import butter, hilbert, sosfiltfilt
from typer.testing import CliRunner

from machinetwin.cli import app
from machinetwin.errors import CommandRejected
from machinetwin.machine import load_machine_config
from machinetwin.machine.config import MachineConfig
from machinetwin.machine.faults import FaultSchedule, parse_fault
from machinetwin.machine.physics import WEAR_FORCE_GAIN
from machinetwin.machine.runfile import RunRecord, read_run
from machinetwin.machine.simulator import SimOptions, Simulator, simulate
from machinetwin.machine.vibration import orders_of
from machinetwin.model import AlarmCode, Execution
from machinetwin.model.signals import SIGNALS

RPM = 8000.0
SLOT_START, SLOT_END, SLOT_Y = 20.0, 60.0, 40.0  # a straight slot along X with T1


@pytest.fixture(scope="module")
def config() -> MachineConfig:
    return load_machine_config()


def write(tmp_path: Path, name: str, body: str) -> Path:
    """A program file: the usual safe preamble, ``body``, spindle off and M30."""
    path = tmp_path / name
    path.write_text(f"%\nG21 G17 G90 G54 G40 G49 G80 G94\n{body.strip()}\nM5\nM30\n%\n")
    return path


def slot(depth: float, extra: str = "") -> str:
    """T1 plunges at X20 Y40 to ``depth`` and mills to X60 at 1200 mm/min, then a G0 retract.

    The cut is a stadium 40 mm long and 10 mm wide (the cutter's diameter), so the
    removed volume is (40 * 10 + pi * 5^2) * depth.  The G0 retract right after the cut
    is the usual way to leave a slot; it must not count as a rapid into material.
    """
    return f"""
T1 M6
G43 H1 G0 Z10
S{RPM:.0f} M3
G4 P4.5 (let the spindle reach its speed: 2000 rpm/s)
{extra}
G0 X{SLOT_START} Y{SLOT_Y}
G0 Z2
G1 Z-{depth} F300
G1 X{SLOT_END} F1200
G0 Z10
"""


def run(path: Path, config: MachineConfig, *faults: str, **options) -> RunRecord:
    schedule = FaultSchedule([parse_fault(f) for f in faults])
    return simulate(path, config, SimOptions(**options), schedule)


def on_line(record: RunRecord, line: int) -> np.ndarray:
    """Samples whose program line is ``line`` (the line numbers of the files below)."""
    return record.columns["line"] == line


def line_of(path: Path, text: str) -> int:
    """1-based line number of the first line of ``path`` that starts with ``text``."""
    lines = path.read_text().splitlines()
    return next(i for i, s in enumerate(lines, 1) if s.startswith(text))


# --- physics -------------------------------------------------------------------------


def test_spindle_power_rises_with_removal_rate(tmp_path: Path, config: MachineConfig) -> None:
    shallow = write(tmp_path, "shallow.ngc", slot(1.0))
    deep = write(tmp_path, "deep.ngc", slot(2.0))
    runs = [run(p, config) for p in (shallow, deep)]
    line = line_of(shallow, "G1 X")
    power, mrr = [], []
    for r in runs:
        # the steady middle of the straight cut: away from the plunge and the exit
        steady = (
            on_line(r, line) & (r.columns["x.pos"] > 300 + 30) & (r.columns["x.pos"] < 300 + 50)
        )
        power.append(float(r.columns["spindle.power"][steady].mean()))
        mrr.append(float(r.columns["mrr"][steady].mean()))
    # twice the depth at the same feed: twice the removal rate, and more power for it
    assert mrr[1] == pytest.approx(2 * mrr[0], rel=0.02)
    assert mrr[0] == pytest.approx(10.0 * 1.0 * 1200 / 60, rel=0.02)  # ae * ap * vf, mm^3/s
    assert power[1] > power[0] + 200.0  # kc * MRR: ~0.5 kW more for 200 mm^3/s more


def test_spindle_power_rises_with_tool_wear(tmp_path: Path, config: MachineConfig) -> None:
    path = write(tmp_path, "slot.ngc", slot(2.0))
    healthy = run(path, config)
    worn = run(path, config, "tool_wear:1@0")
    line = line_of(path, "G1 X")
    late = on_line(healthy, line) & (healthy.columns["x.pos"] > 300 + 50)
    assert np.array_equal(late, on_line(worn, line) & (worn.columns["x.pos"] > 300 + 50))
    # the same cut (same removal rate) ...
    assert np.allclose(healthy.columns["mrr"], worn.columns["mrr"])
    # ... with an edge that wore ~21 times faster, and needs more power for it
    vb_healthy = healthy.columns["tool_wear"][late].mean()
    vb_worn = worn.columns["tool_wear"][late].mean()
    assert vb_worn > 15 * vb_healthy > 0
    p_healthy = healthy.columns["spindle.power"][late]
    p_worn = worn.columns["spindle.power"][late]
    assert (p_worn > p_healthy).all()
    # Kienzle with flank wear: kc, hence cutting power at the same removal rate, grows
    # by WEAR_FORCE_GAIN * VB.  The power at full speed before the cut is the no-load part.
    c = healthy.columns
    before = c["t"] < c["t"][np.flatnonzero(c["mrr"] > 0)[0]]
    idle = before & (c["spindle.speed"] == RPM)
    assert idle.sum() > 10
    p_idle = c["spindle.power"][idle].mean()
    rise = (p_worn - p_healthy) / (p_healthy - p_idle)
    vb_h, vb_w = healthy.columns["tool_wear"][late], worn.columns["tool_wear"][late]
    expected = WEAR_FORCE_GAIN * (vb_w - vb_h) / (1 + WEAR_FORCE_GAIN * vb_h)
    assert np.median(rise / expected) == pytest.approx(1.0, rel=0.1)


# --- vibration -----------------------------------------------------------------------


def envelope_spectrum(values: np.ndarray, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """Spectrum of the envelope of the band around the housing resonance (2-6 kHz)."""
    sos = butter(4, [2000.0, 6000.0], btype="bandpass", fs=rate, output="sos")
    env = np.abs(hilbert(sosfiltfilt(sos, values)))
    spectrum = np.abs(np.fft.rfft(env - env.mean())) / len(env)
    return np.fft.rfftfreq(len(env), 1.0 / rate), spectrum


def bpfo_prominence(record: RunRecord, config: MachineConfig) -> float:
    """Envelope amplitude at BPFO over the median background, in the steady-speed window."""
    speed = record.columns["spindle.speed"]
    t = record.columns["t"]

    def window_rpm(w) -> float:
        # the window covers [t0, t0 + duration): the spindle's mean speed there
        inside = (t > w.t0) & (t <= w.t0 + w.duration + 1e-9)
        return float(np.abs(speed[inside]).mean())

    w = max(record.waveforms, key=window_rpm)
    rpm = window_rpm(w)
    assert rpm == pytest.approx(RPM, rel=0.01)  # a window at full speed, not on the ramp
    bpfo = orders_of(config.spindle.bearing).bpfo * rpm / 60.0  # 3.585 x 133 Hz = 478 Hz
    freqs, spectrum = envelope_spectrum(w.values, w.rate_hz)
    near = np.abs(freqs - bpfo) <= 3.0
    band = (freqs > 20.0) & (freqs < 1500.0)
    return float(spectrum[near].max() / np.median(spectrum[band]))


def test_outer_race_defect_shows_at_bpfo(tmp_path: Path, config: MachineConfig) -> None:
    # Spindle up to speed, then a dwell: windows every 2 s, the later ones at full speed.
    path = write(tmp_path, "dwell.ngc", f"T1 M6\nS{RPM:.0f} M3\nG4 P6\n")
    options = {"vibration_every_s": 2.0}
    faulty = run(path, config, "bearing_outer:1@0", **options)
    healthy = run(path, config, **options)
    assert bpfo_prominence(faulty, config) > 10.0
    assert bpfo_prominence(healthy, config) < 4.0


# --- determinism ---------------------------------------------------------------------


def test_same_seed_same_run_other_seed_differs(tmp_path: Path, config: MachineConfig) -> None:
    path = write(tmp_path, "slot.ngc", slot(1.0))
    faults = ("bearing_inner:0.5@0", "encoder_noise:0.5@1")  # two random sources in play
    a = run(path, config, *faults, seed=7)
    b = run(path, config, *faults, seed=7)
    c = run(path, config, *faults, seed=8)
    assert a.columns.keys() == b.columns.keys()
    for name in a.columns:
        assert np.array_equal(a.columns[name], b.columns[name]), name
    assert len(a.waveforms) == len(b.waveforms) > 0
    for wa, wb in zip(a.waveforms, b.waveforms, strict=True):
        assert wa.t0 == wb.t0 and np.array_equal(wa.values, wb.values)
    assert np.array_equal(a.stock_heights, b.stock_heights)
    assert not np.array_equal(a.waveforms[0].values, c.waveforms[0].values)
    assert not np.array_equal(a.columns["x.pos"], c.columns["x.pos"])


# --- the part ------------------------------------------------------------------------


def test_removed_volume_matches_the_program(tmp_path: Path, config: MachineConfig) -> None:
    depth = 2.0
    path = write(tmp_path, "slot.ngc", slot(depth))
    record = run(path, config)
    expected = ((SLOT_END - SLOT_START) * 10.0 + math.pi * 5.0**2) * depth  # 957.1 mm^3
    removed = float(record.meta["removed_volume_mm3"])
    assert removed == pytest.approx(expected, rel=0.01)
    heights = record.stock_heights
    assert heights is not None
    assert float(heights.min()) == pytest.approx(-depth, abs=1e-4)  # the slot's floor
    # the removal rate integrates to the removed volume (telemetry: 10 ms averages)
    t, mrr = record.columns["t"], record.columns["mrr"]
    assert float(np.sum(mrr) * (t[1] - t[0])) == pytest.approx(removed, rel=0.01)
    assert not record.alarms  # the G0 retract out of the slot is not a collision


def test_pocket_volume_and_removal_rate(tmp_path: Path, config: MachineConfig) -> None:
    # A 30 x 20 mm rectangle faced 1 mm deep with T1 in zig-zag rows 5 mm apart; the
    # tool's centre covers X25..45 Y25..35, so the cut is the rectangle X20..50
    # Y20..40 with its four corners rounded to the cutter's radius.
    rows = "\n".join(f"G1 Y{25 + 5 * k} F1200\nG1 X{45 if k % 2 == 0 else 25}" for k in range(3))
    body = f"T1 M6\nG43 H1 G0 Z10\nS{RPM:.0f} M3\nG0 X25 Y25\nG0 Z2\nG1 Z-1 F300\n{rows}\nG0 Z10"
    path = write(tmp_path, "face.ngc", body)
    record = run(path, config)
    expected = (30.0 * 20.0 - (4.0 - math.pi) * 5.0**2) * 1.0  # 578.5 mm^3
    removed = float(record.meta["removed_volume_mm3"])
    assert removed == pytest.approx(expected, rel=0.01)
    t, mrr = record.columns["t"], record.columns["mrr"]
    assert float(np.sum(mrr) * (t[1] - t[0])) == pytest.approx(removed, rel=0.01)


# --- failing safe --------------------------------------------------------------------


def test_program_outside_the_travel_is_refused_before_it_starts(
    tmp_path: Path, config: MachineConfig
) -> None:
    # G54 is X300: work X350 is machine X650, past the 600 mm travel
    path = write(tmp_path, "far.ngc", "T1 M6\nG43 H1 G0 Z10\nG0 X350 Y40\n")
    sim = Simulator(config)
    with pytest.raises(CommandRejected, match="X travel"):
        sim.start_program(path)
    assert sim.controller.state.execution == Execution.READY
    assert sim.t == 0.0 and not sim.running
    with pytest.raises(CommandRejected):
        simulate(path, config)


def test_tool_breakage_raises_the_alarm_and_stops(tmp_path: Path, config: MachineConfig) -> None:
    path = write(tmp_path, "slot.ngc", slot(2.0))
    full = run(path, config)
    broken = run(path, config, "tool_breakage:1@3")
    codes = [a.code for a in broken.alarms]
    assert AlarmCode.TOOL_BREAKAGE in codes
    assert broken.meta["execution"] == Execution.STOPPED.name
    assert broken.meta["duration_s"] < full.meta["duration_s"]
    assert broken.columns["t"][-1] < full.columns["t"][-1]
    raised = next(a for a in broken.alarms if a.code == AlarmCode.TOOL_BREAKAGE)
    assert raised.raised_at >= 3.0
    assert full.meta["execution"] == Execution.PROGRAM_COMPLETED.name


def test_rapid_into_material_is_a_collision(tmp_path: Path, config: MachineConfig) -> None:
    body = "T1 M6\nG43 H1 G0 Z10\nS8000 M3\nG0 X50 Y40\nG0 Z-3\nG0 Z10\n"
    record = run(write(tmp_path, "crash.ngc", body), config)
    assert AlarmCode.COLLISION in [a.code for a in record.alarms]
    assert record.meta["execution"] == Execution.STOPPED.name


# --- faults' ground truth ------------------------------------------------------------


def test_fault_ground_truth_starts_at_the_fault(tmp_path: Path, config: MachineConfig) -> None:
    path = write(tmp_path, "slot.ngc", slot(1.0))
    record = run(path, config, "backlash:0.4@2.5", "coolant_failure:0.7@1")
    t = record.columns["t"]
    for name, start, severity in (("fault.backlash", 2.5, 0.4), ("fault.coolant_failure", 1, 0.7)):
        truth = record.columns[name]
        assert (truth[t < start] == 0.0).all(), name
        assert (truth[t >= start] == severity).all(), name
    for name in ("fault.tool_wear", "fault.bearing_outer", "fault.tool_breakage"):
        assert (record.columns[name] == 0.0).all()


# --- command line --------------------------------------------------------------------


def test_cli_sim_run_and_report(tmp_path: Path) -> None:
    path = write(tmp_path, "slot.ngc", slot(1.0))
    out, html = tmp_path / "run.parquet", tmp_path / "run.html"
    runner = CliRunner()
    result = runner.invoke(
        app, ["sim", "run", str(path), "--out", str(out), "--seed", "3",
              "--fault", "bearing_outer:0.5@0"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    record = read_run(out)
    names = set(record.columns)
    faults = {n for n in names if n.startswith("fault.")}
    assert "fault.bearing_outer" in faults
    assert names - faults - {"t"} <= set(SIGNALS), names - faults - {"t"} - set(SIGNALS)
    assert {"x.pos", "spindle.load", "spindle.power", "mrr", "feed"} <= names
    assert record.waveforms and record.meta["seed"] == 3
    result = runner.invoke(app, ["sim", "report", str(out), "--out", str(html)])
    assert result.exit_code == 0, result.output
    page = html.read_text()
    assert page.count("data:image/png;base64,") >= 3  # time series, spectrum, part
    assert "slot.ngc" in page


def test_cli_refuses_a_program_outside_the_travel(tmp_path: Path) -> None:
    path = write(tmp_path, "far.ngc", "T1 M6\nG43 H1 G0 Z10\nG0 X350 Y40\n")
    out = tmp_path / "far.parquet"
    result = CliRunner().invoke(app, ["sim", "run", str(path), "--out", str(out)])
    assert result.exit_code == 1
    assert "refused" in result.output and not out.exists()


# --- spindle at speed and where a run ends --------------------------------------------


def no_dwell_slot() -> str:
    """The slot of ``slot(1.0)`` with no dwell after M3: the program itself does not wait."""
    return slot(1.0).replace("G4 P4.5 (let the spindle reach its speed: 2000 rpm/s)", "")


def test_cutting_waits_until_the_spindle_is_at_speed(tmp_path: Path, config: MachineConfig) -> None:
    path = write(tmp_path, "slot.ngc", no_dwell_slot())
    waiting = run(path, config)
    eager = run(path, config, spindle_at_speed=False)
    for record in (waiting, eager):
        assert record.meta["removed_volume_mm3"] > 0
    c = waiting.columns
    cutting = c["mrr"] > 0
    # every sample that removes material does so at the commanded speed ...
    assert np.all(c["spindle.speed"][cutting] == RPM)
    # ... while without the wait the cut starts on the ramp, and the program is shorter
    e = eager.columns
    assert np.any(e["spindle.speed"][e["mrr"] > 0] < 0.9 * RPM)
    assert waiting.meta["duration_s"] > eager.meta["duration_s"] + 1.0


def test_a_programmed_dwell_that_covers_the_ramp_adds_no_wait(
    tmp_path: Path, config: MachineConfig
) -> None:
    path = write(tmp_path, "slot.ngc", slot(1.0))  # G4 P4.5 after S8000 M3: 4 s ramp
    with_check = run(path, config)
    without = run(path, config, spindle_at_speed=False)
    assert with_check.meta["duration_s"] == without.meta["duration_s"]
    np.testing.assert_array_equal(with_check.columns["x.pos"], without.columns["x.pos"])


def test_a_rapid_crash_stops_the_run_at_the_tick_it_hits(
    tmp_path: Path, config: MachineConfig
) -> None:
    # G0 Z-3 at rapid into the block, then back up: the run must end where the tool
    # first touched the material, not after the retract (blocks are 5 s long).
    body = "T1 M6\nG43 H1 G0 Z10\nS8000 M3\nG4 P4\nG0 X50 Y40\nG0 Z-3\nG0 Z10\n"
    record = run(write(tmp_path, "crash.ngc", body), config)
    alarm = next(a for a in record.alarms if a.code == AlarmCode.COLLISION)
    t = record.columns["t"]
    assert t[-1] == pytest.approx(alarm.raised_at, abs=1e-9)  # the record ends at the alarm
    assert record.meta["duration_s"] == pytest.approx(alarm.raised_at, abs=1e-3)
    # the stock shows only what was cut up to that tick: far less than the 3 mm plunge
    plunge = math.pi * 5.0**2 * 3.0
    assert 0 < record.meta["removed_volume_mm3"] < 0.5 * plunge
    assert float(record.stock_heights.min()) > -1.5
    # and the tool tip was at the top of the block then (work Z0 = machine Z-300 + tool)
    tool = config.tool(1)
    tip = record.columns["z.pos_cmd"][-1] - (-300.0) - tool.length
    assert -1.5 < tip <= 0.5


def test_the_run_ends_when_the_program_does(tmp_path: Path, config: MachineConfig) -> None:
    # blocks are 5 s long; the record must not run on to the end of the last one
    path = write(tmp_path, "slot.ngc", slot(1.0))
    short_blocks = run(path, config, block_ticks=100)
    long_blocks = run(path, config, block_ticks=5000)
    assert long_blocks.meta["duration_s"] == pytest.approx(short_blocks.meta["duration_s"], abs=0.1)
    assert long_blocks.meta["removed_volume_mm3"] == pytest.approx(
        short_blocks.meta["removed_volume_mm3"], rel=1e-3
    )


def test_alarms_carry_the_time_they_fired_not_the_block_end(
    tmp_path: Path, config: MachineConfig
) -> None:
    # The tool breaks at 8 s, in the middle of the slot and of a 5 s block: the alarm
    # follows the breakage spike (0.05 s) at the first cutting sample from then on.
    path = write(tmp_path, "slot.ngc", slot(2.0))
    healthy = run(path, config)
    t, mrr = healthy.columns["t"], healthy.columns["mrr"]
    first_cut = float(t[np.flatnonzero((t >= 8.0) & (mrr > 0))[0]])
    assert first_cut < 8.1  # the slot is being cut at 8 s
    record = run(path, config, "tool_breakage:1@8")
    alarm = next(a for a in record.alarms if a.code == AlarmCode.TOOL_BREAKAGE)
    assert alarm.raised_at == pytest.approx(first_cut + 0.05, abs=0.011)
    assert record.columns["t"][-1] == pytest.approx(alarm.raised_at, abs=1e-9)


@pytest.mark.parametrize("start", [0.0005, 2.5, 5.999, 7.123, 30.0])
def test_blocks_end_where_a_fault_starts(config: MachineConfig, start: float) -> None:
    # so that the physics sees a fault from its start (to within a telemetry sample)
    sim = Simulator(config, faults=FaultSchedule([parse_fault(f"backlash:0.5@{start}")]))
    sim.t = 1.0
    ticks = sim.block_length(5000, multiple=10)
    end = sim.t + ticks * sim.dt
    assert ticks % 10 == 0 and 10 <= ticks <= 5000
    if sim.t < start < sim.t + 5.0:
        assert start - 1e-9 <= end < start + 0.01  # the first block that holds the start
    else:
        assert ticks == 5000  # started already, or later than this block
