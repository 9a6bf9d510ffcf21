"""G-code interpretation throughput: machinetwin against LinuxCNC's rs274, same program.

Generates a 220,000-line mill program (200,000 G1 moves and 20,000 G2/G3 arcs, the
shape of CAM output), then times in one run:

- rs274 (LinuxCNC 2.9's standalone interpreter, C++): ``rs274 -g`` on the file;
- machinetwin: interpretation into canonical operations (plain moves arrive as
  column batches from the fast path), plus, for reference, the same with every
  operation expanded to one Python object, and with rs274-format text written.

Prints the figures and, as its last line, one JSON object.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from machinetwin.gcode import canon, format_rs274, interpret, interpret_batches

G1_LINES = 200_000
ARC_LINES = 20_000


def write_program(path: Path, g1_lines: int = G1_LINES, arc_lines: int = ARC_LINES) -> int:
    """A zig-zag of G1 moves with a semicircular G2/G3 after every tenth; returns line count."""
    out = ["%", "(machinetwin throughput benchmark)", "G21 G17 G90 G54", "G0 X0 Y0 Z5",
           "G1 Z-1 F1200"]  # fmt: skip
    x = y = 0.0
    per_arc = g1_lines // arc_lines
    arcs = 0
    for i in range(g1_lines):
        x += 0.5
        y = 2.5 if (i % 2) else -2.5
        out.append(f"G1 X{x:.3f} Y{y:.3f}")
        if (i + 1) % per_arc == 0 and arcs < arc_lines:
            # semicircle of radius 5 along X; alternate direction to stay in the plane
            code = "G2" if arcs % 2 else "G3"
            out.append(f"{code} X{x + 10:.3f} Y{y:.3f} I5 J0")
            x += 10
            arcs += 1
    out += ["G0 Z5", "M2", "%"]
    path.write_text("\n".join(out) + "\n")
    return len(out)


def time_rs274(prog: Path, work: Path) -> tuple[float, int]:
    exe = shutil.which("rs274")
    if exe is None:
        return float("nan"), 0
    home = work / "home"
    home.mkdir(exist_ok=True)
    (work / "tools.tbl").write_text("")
    out = work / "rs274.out"
    t0 = time.perf_counter()
    subprocess.run([exe, "-g", "-t", "tools.tbl", str(prog), str(out)], cwd=work,
                   env=dict(os.environ, HOME=str(home)), stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)  # fmt: skip
    elapsed = time.perf_counter() - t0
    moves = sum(1 for line in out.open() if "STRAIGHT_FEED" in line or "ARC_FEED" in line)
    return elapsed, moves


def time_batches(prog: Path) -> tuple[float, int]:
    t0 = time.perf_counter()
    moves = 0
    for op in interpret_batches(prog):
        if type(op) is canon.MotionBatch:
            moves += int((op.kind >= 1).sum())
        elif type(op) in (canon.StraightFeed, canon.ArcFeed):
            moves += 1
    return time.perf_counter() - t0, moves


def time_objects(prog: Path) -> float:
    t0 = time.perf_counter()
    for _ in interpret(prog):
        pass
    return time.perf_counter() - t0


def time_text(prog: Path, work: Path) -> float:
    t0 = time.perf_counter()
    with open(work / "machinetwin.out", "w") as f:
        for text in format_rs274(interpret(prog, machine_units="inch")):
            f.write(text)
            f.write("\n")
    return time.perf_counter() - t0


def best(fn, repeats: int):
    results = [fn() for _ in range(repeats)]
    return min(results, key=lambda r: r[0] if isinstance(r, tuple) else r)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one repeat each (under 50 s)")
    args = parser.parse_args()
    repeats = 1 if args.quick else 3
    with tempfile.TemporaryDirectory(prefix="mt-bench-") as tmp:
        work = Path(tmp)
        prog = work / "bench.ngc"
        lines = write_program(prog)
        print(
            f"program: {lines} lines ({G1_LINES} G1, {ARC_LINES} arcs), {prog.stat().st_size / 1e6:.1f} MB"
        )
        rs_s, rs_moves = best(lambda: time_rs274(prog, work), repeats)
        mt_s, mt_moves = best(lambda: time_batches(prog), repeats)
        obj_s = best(lambda: time_objects(prog), 1)
        text_s = best(lambda: time_text(prog, work), 1)
    if rs_moves and rs_moves != mt_moves:
        sys.exit(f"disagreement: rs274 produced {rs_moves} feed moves, machinetwin {mt_moves}")
    result = {
        "lines": lines,
        "machinetwin_lines_per_s": round(lines / mt_s),
        "rs274_lines_per_s": round(lines / rs_s) if rs_s == rs_s else None,
        "ratio_vs_rs274": round(rs_s / mt_s, 3) if rs_s == rs_s else None,
        "machinetwin_s": round(mt_s, 4),
        "rs274_s": round(rs_s, 4) if rs_s == rs_s else None,
        "machinetwin_per_op_objects_lines_per_s": round(lines / obj_s),
        "machinetwin_rs274_text_lines_per_s": round(lines / text_s),
    }
    print(f"rs274 (C++, writes text):            {lines / rs_s:>12,.0f} lines/s  ({rs_s:.3f} s)")
    print(f"machinetwin (canonical ops, batches): {lines / mt_s:>12,.0f} lines/s  ({mt_s:.3f} s)")
    print(f"machinetwin, one object per op:       {lines / obj_s:>12,.0f} lines/s  ({obj_s:.3f} s)")
    print(
        f"machinetwin, rs274 text written:      {lines / text_s:>12,.0f} lines/s  ({text_s:.3f} s)"
    )
    print(f"ratio machinetwin/rs274: {result['ratio_vs_rs274']}")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
