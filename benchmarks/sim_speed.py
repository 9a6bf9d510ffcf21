"""Virtual machine speed: how many times faster than real time a part program runs.

Generates a 3-axis part program for the default machine's 100 x 80 x 40 mm Al6061
block (about 30 minutes of machine time, 20,649 lines):

- T1 (10 mm flat end mill, 8000 rpm, 1200 mm/min) faces the whole top down in ten
  2 mm levels, zig-zag rows 6 mm apart that run 6 mm past the block on each side;
- T2 (6 mm ball end mill, 10000 rpm, 1500 mm/min) finishes a wavy floor with a
  raster of 1 mm segments (the shape of CAM output), rows 0.4 mm apart along X.

and runs it through ``simulate`` with the default options: 1 kHz servo (every tick
computed), 0.25 mm stock grid, 100 Hz telemetry and vibration on demand (one 1 s
window at 12.8 kHz per minute of spindle time). Prints the figures and, as its last
line, one JSON object with ``realtime_factor`` (machine seconds per CPU second of
this process, fastest of ``--repeat`` runs; all runs and their median are there too),
the wall-clock factor and a per-part breakdown of where the CPU time went.
``--quick`` runs a ~6-minute program instead (well under 50 s).

Usage: ``.venv/bin/python benchmarks/sim_speed.py [--quick] [--repeat N] [--keep PROG.ngc]``
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from machinetwin.gcode import interpret, program_stats
from machinetwin.machine import load_machine_config
from machinetwin.machine import simulator as simulator_module
from machinetwin.machine.physics import CuttingModel, SpindleModel
from machinetwin.machine.planner import Planner
from machinetwin.machine.servo import ServoAxes
from machinetwin.machine.simulator import SimOptions, simulate, tool_table_from
from machinetwin.machine.stock import Stock
from machinetwin.machine.vibration import VibrationModel

TARGET = 600.0  # the target: 600x real time on one core

# Facing rows: the tool centre runs 6 mm past each side of the 100 x 80 mm block.
X0, X1, Y0, Y1 = -6.0, 106.0, -2.0, 82.0


def roughing(levels: int, level_depth: float = 2.0, stepover: float = 6.0) -> list[str]:
    """T1 faces the whole top down in levels, zig-zag rows ``stepover`` apart.

    Facing (open on every side) rather than a pocket keeps the 32 mm holders clear
    of walls: T1's flutes are 22 mm long and T2's only 12 mm.
    """
    out = ["(--- T1: face the block down in levels ---)", "T1 M6", "G43 H1 G0 Z25", "S8000 M3",
           "M8", "G4 P4 (spindle up to speed)"]  # fmt: skip
    rows = math.ceil((Y1 - Y0) / stepover) + 1
    for level in range(1, levels + 1):
        z = -level * level_depth
        out += [f"G0 X{X0:.3f} Y{Y0:.3f}", f"G0 Z{z:.3f} (level {level}, off the block)"]
        for r in range(rows):
            y = min(Y0 + r * stepover, Y1)
            if r:
                out.append(f"G1 Y{y:.3f} F1200")
            out.append(f"G1 X{X1 if r % 2 == 0 else X0:.3f} F1200")
        out.append(f"G0 Z{z + 2:.3f}")
    out += ["G0 Z25", "M5", "G53 G0 Z0"]
    return out


def floor_z(x: float, y: float, top: float) -> float:
    """The finished floor: a gentle wave 0.5..1.5 mm below the roughed floor ``top``."""
    wave = 0.5 * (1.0 + math.sin(2 * math.pi * x / 40.0) * math.sin(2 * math.pi * y / 30.0))
    return top - 0.5 - wave


def finishing(top: float, stepover: float, along: str) -> list[str]:
    """A raster over the faced top with T2, rows ``stepover`` apart, 1 mm segments."""
    xs0, xs1, ys0, ys1 = 0.0, 100.0, 0.0, 80.0
    out = [f"(--- T2: finish the floor along {along} ---)"]
    if along == "X":
        rows = [ys0 + k * stepover for k in range(int((ys1 - ys0) / stepover) + 1)]
        span = (xs0, xs1)
    else:
        rows = [xs0 + k * stepover for k in range(int((xs1 - xs0) / stepover) + 1)]
        span = (ys0, ys1)
    n = int(span[1] - span[0])
    for k, row in enumerate(rows):
        ts = [span[0] + i * (span[1] - span[0]) / n for i in range(n + 1)]
        if k % 2:
            ts.reverse()
        for i, s in enumerate(ts):
            x, y = (s, row) if along == "X" else (row, s)
            z = floor_z(x, y, top)
            if k == 0 and i == 0:
                out += [f"G0 X{x:.3f} Y{y:.3f}", f"G0 Z{top + 1:.3f}", f"G1 Z{z:.3f} F500"]
                continue
            axis = f"X{x:.3f} Y{y:.3f}" if i else (f"X{x:.3f}" if along == "Y" else f"Y{y:.3f}")
            out.append(f"G1 {axis} Z{z:.3f} F1500")
    out.append(f"G0 Z{top + 5:.3f}")
    return out


def write_program(path: Path, levels: int, finish_stepover: float, passes: int) -> None:
    top = -2.0 * levels
    lines = ["%", "(machinetwin sim_speed benchmark: pocket roughing and 3D floor finishing)",
             "G21 G17 G90 G54 G40 G49 G80 G94 G64 P0.02"]  # fmt: skip
    lines += roughing(levels)
    lines += ["T2 M6", "G43 H2 G0 Z25", "S10000 M3", "M8", "G4 P5"]
    for along in ("X", "Y")[:passes]:
        lines += finishing(top, finish_stepover, along)
    lines += ["G0 Z25", "M9", "M5", "G53 G0 Z0", "G28", "M30", "%"]
    path.write_text("\n".join(lines) + "\n")


# --- timing ---------------------------------------------------------------------------

PARTS: dict[str, tuple[Any, str]] = {
    "planner": (Planner, "advance"),
    "planner.load": (Planner, "load"),
    "stock": (Stock, "cut"),
    "servo": (ServoAxes, "step"),
    "cutting": (CuttingModel, "forces"),
    "spindle.follow": (SpindleModel, "follow"),
    "spindle.load": (SpindleModel, "load"),
    "vibration": (VibrationModel, "waveform"),
    "decimate": (simulator_module, "decimate"),
    "start_program": (simulator_module.Simulator, "start_program"),
    "stock.checkpoint": (Stock, "checkpoint"),
}


def instrument() -> tuple[dict[str, float], Callable[[], None]]:
    """Wrap each part's entry point with a CPU timer; returns the totals and an undo."""
    totals: dict[str, float] = defaultdict(float)
    saved = []
    for name, (owner, attr) in PARTS.items():
        original = getattr(owner, attr)

        def timed(*args: Any, _f: Callable = original, _name: str = name, **kwargs: Any) -> Any:
            t0 = time.process_time()
            try:
                return _f(*args, **kwargs)
            finally:
                totals[_name] += time.process_time() - t0

        setattr(owner, attr, functools.wraps(original)(timed))
        saved.append((owner, attr, original))

    def undo() -> None:
        for owner, attr, original in saved:
            setattr(owner, attr, original)

    return totals, undo


def timed_run(program: Path, config: Any, breakdown: bool) -> tuple[Any, float, float, dict]:
    """One simulation of ``program``: (run record, CPU s, wall s, CPU s per part)."""
    totals, undo = instrument() if breakdown else ({}, lambda: None)
    wall0, cpu0 = time.perf_counter(), time.process_time()
    try:
        run = simulate(program, config, SimOptions())
    finally:
        undo()
    return run, time.process_time() - cpu0, time.perf_counter() - wall0, dict(totals)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a ~4-minute program (< 50 s)")
    parser.add_argument("--keep", type=Path, help="also write the generated program here")
    parser.add_argument("--no-breakdown", action="store_true", help="time without wrappers")
    parser.add_argument("--repeat", type=int, default=3,
                        help="runs (default 3); the figures are of the fastest, as timeit "
                             "does: on a shared machine interference only ever adds time")  # fmt: skip
    args = parser.parse_args()
    if args.repeat < 1:
        parser.error(f"--repeat must be at least 1, got {args.repeat}")

    config = load_machine_config()
    with tempfile.TemporaryDirectory() as tmp:
        program = args.keep or Path(tmp) / (
            "sim_speed_quick.ngc" if args.quick else "sim_speed.ngc"
        )
        if args.quick:
            write_program(program, levels=2, finish_stepover=2.0, passes=1)
        else:
            write_program(program, levels=10, finish_stepover=0.4, passes=1)
        ops = interpret(program, tool_table_from(config), machine_units="mm")
        estimate = program_stats(ops).cycle_time_s
        lines = len(program.read_text().splitlines())
        print(f"program: {program.name}, {lines} lines, estimated cycle time "
              f"{estimate / 60:.1f} min", file=sys.stderr)  # fmt: skip
        runs = [timed_run(program, config, not args.no_breakdown) for _ in range(args.repeat)]

    run, cpu, wall, totals = min(runs, key=lambda r: r[1])
    sim_s = float(run.meta["duration_s"])
    factors = sorted(sim_s / r[1] for r in runs)
    parts = {k: round(v, 3) for k, v in sorted(totals.items(), key=lambda kv: -kv[1])}
    if totals:
        parts["other"] = round(cpu - sum(totals.values()), 3)
    result = {
        "realtime_factor": round(sim_s / cpu, 1),
        "realtime_factor_median": round(float(np.median(factors)), 1),
        "realtime_factor_runs": [round(f, 1) for f in factors],
        "realtime_factor_wall": round(sim_s / wall, 1),
        "target": TARGET,
        "sim_s": sim_s,
        "cpu_s": round(cpu, 3),
        "wall_s": round(wall, 3),
        "estimated_cycle_s": round(estimate, 1),
        "execution": run.meta["execution"],
        "alarms": [a.code.value for a in run.alarms],
        "removed_volume_mm3": run.meta["removed_volume_mm3"],
        "vibration_windows": len(run.waveforms),
        "program_lines": lines,
        "quick": args.quick,
        "parts_cpu_s": parts,
    }
    print(f"{sim_s:.0f} s of machine time in {cpu:.2f} s CPU ({wall:.2f} s wall): "
          f"{sim_s / cpu:.0f}x real time (target {TARGET:.0f}x); runs: "
          + ", ".join(f"{f:.0f}x" for f in factors))  # fmt: skip
    for name, seconds in parts.items():
        print(f"  {name:<15} {seconds:8.3f} s  {100 * seconds / cpu:5.1f} %")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
