"""Cycle times: the same programs in a headless LinuxCNC 2.9 sim and in machinetwin.

Each program runs in LinuxCNC (``linuxcnc_sim.LinuxCNCSim``: a sim config with the
default machine's axis limits, soft limits, tools and G54, driven over linuxcncrsh;
cycle time = servo periods from the first to the last with motion, read from a HAL
sampler) and is planned by machinetwin's planner from the same start position
(``plan_program(...).duration``). Target: within 3 % of LinuxCNC.

Both get the same axis limits and G64 tolerances. machinetwin plans with the machine's
LinuxCNC model (``linuxcnc_planner_config``: no jerk limit, so no FIR filters; blend
arcs within G64 P; the acceleration rules of LinuxCNC 2.9's planner, see the
planner's ``"arc"`` blending), while the default machine keeps its jerk-limited
filters. ``--lines N`` prints, per program, the N lines whose times differ most.

Programs (generated here; ``--keep DIR`` writes them out):

- ``long_moves``: long G1 and G0 moves, exact stop (trapezoid dominated);
- ``pocket_g61``: square rings of a pocket, exact stop at every corner (G61);
- ``pocket_g64``: the same pocket blended within 0.05 mm (G64 P0.05);
- ``arcs``: full circles and a chain of small tangent arcs (G64 P0.05);
- ``contour``: a rounded rectangle with tangent corner arcs, each lap entered by a
  helix (G64 P0.02);
- ``drilling``: a G81 and a G83 pattern with tool length offset (G43 H3);
- ``surface3d``: a raster over a 3D surface in 1 mm segments (G64 P0.01).

LinuxCNC's sim runs in real time, so the full run takes about two minutes and
``--quick`` (shorter versions of every program) well under 50 s.

Prints a table and, as its last line, one JSON object: ``max_cycle_time_error_pct``,
``programs`` (a list with each program's times and error), ``target_pct``.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from linuxcnc_sim import LinuxCNCError, LinuxCNCSim, unavailable_reason  # noqa: E402

from machinetwin.gcode import interpret, to_machine_frame  # noqa: E402
from machinetwin.machine.config import (  # noqa: E402
    MachineConfig,
    linuxcnc_planner_config,
    load_machine_config,
)
from machinetwin.machine.planner import Trajectory, plan_program  # noqa: E402
from machinetwin.machine.simulator import tool_table_from  # noqa: E402

TARGET_PCT = 3.0
HEADER = "G21 G17 G90 G54 G40 G49 G80 G94"


def _fmt(v: float) -> str:
    return f"{v:.4f}".rstrip("0").rstrip(".") if v != 0 else "0"


def long_moves(scale: float) -> list[str]:
    """Long straight moves at high feed and rapid: acceleration ramps and cruise."""
    a = 250 * scale
    b = 150 * scale
    return [
        HEADER, "G61", "M3 S8000",
        f"G0 X{_fmt(-a)} Y{_fmt(-b)} Z50",
        "G1 Z10 F3000",
        f"G1 X{_fmt(a)} F12000",
        f"Y{_fmt(b)}",
        f"X{_fmt(-a)}",
        f"Y{_fmt(-b)}",
        f"G1 X{_fmt(a)} Y{_fmt(b)} F15000",
        f"G0 X{_fmt(-a)} Y{_fmt(-b)}",
        "G0 Z100",
        "M5", "M2",
    ]  # fmt: skip


def pocket(mode: str, rings: int) -> list[str]:
    """Square rings 5 mm apart around the origin, F6000 (100 mm/s)."""
    out = [HEADER, mode, "M3 S10000", "G0 X0 Y0 Z5", "G1 Z-2 F1200", "F6000"]
    for k in range(1, rings + 1):
        w = 5.0 * k
        out += [
            f"G1 X{_fmt(w)} Y{_fmt(-w + 5)}",  # step out to the ring
            f"Y{_fmt(w)}", f"X{_fmt(-w)}", f"Y{_fmt(-w)}", f"X{_fmt(w)}", f"Y{_fmt(-w + 5)}",
        ]  # fmt: skip
    out += ["G0 Z5", "M5", "M2"]
    return out


def arcs(scale: float) -> list[str]:
    """Full circles of growing radius, then a chain of small semicircles."""
    out = [HEADER, "G64 P0.05", "M3 S10000", "G0 X20 Y0 Z5", "G1 Z-1 F1200", "F4800"]
    for r in (20, 35, 50)[: max(1, round(3 * scale))]:
        out += [f"G1 X{r} Y0", f"G3 X{r} Y0 I{-r} J0"]
    # tangent semicircles of radius 3 along X (a wavy slot), alternating direction
    x = 50.0
    out.append(f"G1 X{_fmt(x)} Y-60")
    n = max(4, round(24 * scale))
    for i in range(n):
        code = "G3" if i % 2 == 0 else "G2"
        out.append(f"{code} X{_fmt(x - 6)} Y-60 I-3 J0")
        x -= 6
    out += ["G0 Z5", "M5", "M2"]
    return out


def contour(laps: int) -> list[str]:
    """A rounded rectangle (tangent corner arcs, R5) cut in laps, each entered by a helix."""
    out = [HEADER, "G64 P0.02", "M3 S9000", "G0 X-30 Y-20 Z5", "G1 Z0 F1500", "F3000"]
    for lap in range(1, laps + 1):
        out += [
            f"G2 X-30 Y-20 Z{-lap} I5 J0",  # one turn down around (-25, -20)
            "G1 X-30 Y15", "G2 X-25 Y20 I5 J0", "G1 X25", "G2 X30 Y15 I0 J-5",
            "G1 Y-15", "G2 X25 Y-20 I-5 J0", "G1 X-25", "G2 X-30 Y-15 I0 J5", "G1 Y-20",
        ]  # fmt: skip
    out += ["G0 Z5", "M5", "M2"]
    return out


def drilling(scale: float) -> list[str]:
    """G81 on a grid, then G83 peck drilling, 8 mm drill with G43 H3."""
    nx = max(2, round(4 * scale))
    out = [HEADER, "G64", "G43 H3", "M3 S6000", "G0 X0 Y0 Z20", "G98 F1200"]
    holes = [(-60 + 20 * i, -30 + 30 * j) for j in range(2) for i in range(nx)]
    (x0, y0), rest = holes[0], holes[1:]
    out.append(f"G81 X{x0} Y{y0} Z-5 R1")
    out += [f"X{x} Y{y}" for x, y in rest]
    out.append("G80")
    peck = [(-60 + 20 * i, 40) for i in range(nx)]
    (x0, y0), rest = peck[0], peck[1:]
    out.append(f"G83 X{x0} Y{y0} Z-9 R1 Q3")
    out += [f"X{x} Y{y}" for x, y in rest]
    out += ["G80", "G0 Z50", "G49", "M5", "M2"]
    return out


def surface3d(scale: float) -> list[str]:
    """Raster over z = 2 sin(x/8) cos(y/12) in 1 mm segments, ball mill T2 (G43 H2)."""
    length = round(60 * scale) if scale < 1 else 60
    lines = max(3, round(8 * scale))
    out = [HEADER, "G64 P0.01", "G43 H2", "M3 S12000", "G0 X0 Y0 Z10", "F3000"]
    for j in range(lines):
        y = 3.0 * j
        xs = range(length + 1) if j % 2 == 0 else range(length, -1, -1)
        first = True
        for x in xs:
            z = 2 * math.sin(x / 8) * math.cos(y / 12) - 3
            if first:
                out.append(f"G1 X{x} Y{_fmt(y)} Z{_fmt(z)}")
                first = False
            else:
                out.append(f"X{x} Z{_fmt(z)}")
    out += ["G0 Z10", "G49", "M5", "M2"]
    return out


def programs(quick: bool) -> dict[str, list[str]]:
    s = 0.4 if quick else 1.0
    rings = 2 if quick else 6
    gens: dict[str, Callable[[], list[str]]] = {
        "long_moves": lambda: long_moves(0.25 if quick else 1.0),
        "pocket_g61": lambda: pocket("G61", rings),
        "pocket_g64": lambda: pocket("G64 P0.05", rings),
        "arcs": lambda: arcs(s),
        "contour": lambda: contour(1 if quick else 3),
        "drilling": lambda: drilling(s),
        "surface3d": lambda: surface3d(s),
    }
    return {name: gen() for name, gen in gens.items()}


def machinetwin_time(
    path: Path, config: MachineConfig, start: tuple[float, float, float]
) -> tuple[float, float, Trajectory]:
    """(cycle time, planning wall time, trajectory) of the program in machinetwin's planner."""
    g54 = tuple(config.work_offsets.get("G54", (0.0, 0.0, 0.0)))
    t0 = time.perf_counter()
    ops = list(to_machine_frame(interpret(path, tool_table_from(config), work_offsets={1: g54})))
    traj = plan_program(ops, linuxcnc_planner_config(config), start=start)
    return traj.duration, time.perf_counter() - t0, traj


def line_breakdown(samples: np.ndarray, traj: Trajectory, lines: list[str], top: int) -> None:
    """Print the program lines whose time differs most between LinuxCNC and machinetwin."""
    lc = Counter(samples[:, 5].astype(int).tolist())
    inside = np.asarray(traj.t) < traj.duration  # the last block is padded past the end
    mt = Counter(np.asarray(traj.line)[inside].astype(int).tolist())
    diffs = sorted(set(lc) | set(mt), key=lambda n: -abs(mt[n] - lc[n]))
    for n in diffs[:top]:
        text = lines[n - 1] if 0 < n <= len(lines) else "(no line)"
        print(f"    line {n:>4} {text[:34]:<34} LinuxCNC {lc[n] / 1000:7.3f} s  "
              f"machinetwin {mt[n] / 1000:7.3f} s")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="shorter programs (under 50 s)")
    parser.add_argument("--keep", type=Path, help="write the programs into this folder")
    parser.add_argument("--lines", type=int, default=0, metavar="N",
                        help="print the N lines with the largest time difference per program")  # fmt: skip
    args = parser.parse_args()
    config = load_machine_config()
    progs = programs(args.quick)
    rows: list[dict[str, object]] = []
    error: str | None = None
    with tempfile.TemporaryDirectory(prefix="mt-cycle-") as tmp:
        folder = args.keep or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        paths = {}
        for name, lines in progs.items():
            paths[name] = folder / f"{name}.ngc"
            paths[name].write_text("\n".join(lines) + "\n")
        reason = unavailable_reason()
        if reason:
            error = f"LinuxCNC unavailable: {reason}"
        else:
            try:
                with LinuxCNCSim(config) as sim:
                    for name, path in paths.items():
                        run = sim.run_program(path)
                        mt, plan_wall, traj = machinetwin_time(path, config, run.start_pos)
                        err = (mt - run.cycle_time) / run.cycle_time * 100
                        rows.append({
                            "name": name,
                            "linuxcnc_s": round(run.cycle_time, 3),
                            "machinetwin_s": round(mt, 3),
                            "ratio": round(mt / run.cycle_time, 4),
                            "error_pct": round(err, 2),
                            "lines": len(progs[name]),
                            "planning_wall_s": round(plan_wall, 3),
                        })  # fmt: skip
                        print(f"  ran {name}: LinuxCNC {run.cycle_time:.3f} s, "
                              f"machinetwin {mt:.3f} s", flush=True)  # fmt: skip
                        if args.lines:
                            line_breakdown(run.samples, traj, progs[name], args.lines)
            except LinuxCNCError as exc:
                error = f"LinuxCNC run failed: {exc}"

    if rows:
        print()
        print(
            f"{'program':<12} {'LinuxCNC s':>11} {'machinetwin s':>14} {'ratio':>7} {'error %':>8}"
        )
        for r in rows:
            print(f"{r['name']:<12} {r['linuxcnc_s']:>11.3f} {r['machinetwin_s']:>14.3f} "
                  f"{r['ratio']:>7.3f} {r['error_pct']:>+8.2f}")  # fmt: skip
    max_err = max((abs(float(r["error_pct"])) for r in rows), default=None)  # type: ignore[arg-type]
    if max_err is not None:
        verdict = "within" if max_err <= TARGET_PCT else "outside"
        print(f"max |error| {max_err:.2f} % ({verdict} the {TARGET_PCT:.0f} % target)")
    if error:
        print(error, file=sys.stderr)
    result = {
        "max_cycle_time_error_pct": max_err,
        "programs": rows,
        "target_pct": TARGET_PCT,
        "quick": args.quick,
        "error": error,
    }
    print(json.dumps(result))
    if error:
        sys.exit(1)


if __name__ == "__main__":
    main()
