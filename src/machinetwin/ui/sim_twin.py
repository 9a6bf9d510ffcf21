"""The simulated twin of a running program, and how the measured machine compares.

The design's twin state is *reported · simulated · desired*. For the machine page the
virtual machine (``machine/``) runs the program the machine reported, from where the
machine stood (and with the tool it held) when the program started, as fast as it
can, in a worker thread; the page then compares what the machine reports with it:

- :func:`simulate_program` runs the twin and keeps compact numpy columns of the run
  (program time from the start, position, line, feed, spindle load, following error).
- :meth:`SimulatedRun.at` is the twin's state at a program time (the ghost tool).
- :func:`compare` matches every reported sample to the nearest point of the twin's path
  *on the same program line* (point to segment, so the 100 Hz sampling adds no error):
  the distance is the geometric deviation from the simulated path, and the reported
  program time minus the twin's time at that point says how far the machine is behind
  (positive) or ahead of (negative) its twin.
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import CommandRejected, GCodeError
from ..machine.config import MachineConfig
from ..machine.planner import Planner
from ..machine.servo import ServoAxes
from ..machine.simulator import SimOptions, Simulator, decimate
from ..model.signals import Execution
from .twin import TwinDataError

MAX_TWIN_S = 2 * 3600.0  # machine time the twin runs at most (longer programs are cut)
PAIRS_PER_CHUNK = 200_000  # reported points x path segments compared at once (memory bound)
TIME_TIE_MM_PER_S = 1e-4  # among equally near path points, prefer the one nearest in time
# A machine is at most this much faster than its twin (feed override tops out at 200 %
# on most controls), plus a little slack: a match further along the twin's run is not
# the same place in the program. (At a program's start the machine still reports the
# previous program's last line, whose only place in the twin's run is at its end.)
MAX_SPEEDUP = 2.0
SPEEDUP_SLACK_S = 1.0
AXES = ("x", "y", "z")


@dataclass(frozen=True)
class SimulatedRun:
    """The twin's run of one program: columns over program time ``t`` (s from start)."""

    t: np.ndarray  # (n,)
    pos: np.ndarray  # (n, 3) machine frame, controlled point, mm
    line: np.ndarray  # (n,) int, 1-based program line
    feed: np.ndarray  # (n,) mm/min
    load: np.ndarray  # (n,) spindle load, %
    ferr: np.ndarray  # (n, 3) following error, mm
    cycle_time_s: float
    completed: bool  # the twin reached the program's end (not cut off, no alarm stop)

    def at(self, elapsed: float) -> tuple[np.ndarray, int]:
        """The twin's position and line ``elapsed`` s after the program started (its
        end state after its end)."""
        if len(self.t) == 0:
            raise TwinDataError("the twin's run has no samples")
        if not math.isfinite(elapsed):
            raise TwinDataError(f"program time must be finite, got {elapsed}")
        k = int(np.clip(np.searchsorted(self.t, elapsed), 0, len(self.t) - 1))
        pos = np.array([np.interp(elapsed, self.t, self.pos[:, a]) for a in range(3)])
        return pos, int(self.line[k])

    def index_at(self, t_sim: float) -> int:
        """The sample at (or just after) program time ``t_sim``."""
        return int(np.clip(np.searchsorted(self.t, t_sim), 0, len(self.t) - 1))

    def sample(self, t_sim: float) -> dict[str, float]:
        """The twin's values at program time ``t_sim``, interpolated between its samples
        (a matched point lies between two of them): positions, feed, spindle load,
        following error magnitude, and the line."""
        out = {f"{a}.pos": float(np.interp(t_sim, self.t, self.pos[:, i]))
               for i, a in enumerate(AXES)}  # fmt: skip
        out["feed"] = float(np.interp(t_sim, self.t, self.feed))
        out["spindle.load"] = float(np.interp(t_sim, self.t, self.load))
        ferr = [np.interp(t_sim, self.t, self.ferr[:, i]) for i in range(3)]
        out["ferr"] = float(np.linalg.norm(ferr))
        out["line"] = float(self.line[self.index_at(t_sim)])
        return out


def simulate_program(
    text: str,
    config: MachineConfig,
    name: str = "<program>",
    start: tuple[float, float, float] | None = None,
    tool: int = 0,
    max_time_s: float = MAX_TWIN_S,
) -> SimulatedRun:
    """Run ``text`` on the virtual machine ``config`` from machine position ``start``
    (mm; home when None) with tool ``tool`` in the spindle. Raises
    :class:`TwinDataError` naming the program when the twin cannot run it."""
    if start is not None and not (len(start) == 3 and all(math.isfinite(v) for v in start)):
        raise TwinDataError(f"{name}: the twin's start position must be 3 finite mm, got {start}")
    with tempfile.TemporaryDirectory(prefix="mt-twin-") as tmp:
        path = Path(tmp) / (Path(name).name or "program.ngc")
        path.write_text(text)
        sim = _simulator(config, start, tool)
        try:
            sim.start_program(path)
        except (CommandRejected, GCodeError) as exc:
            raise TwinDataError(f"{name}: the twin cannot run the program: {exc}") from exc
        columns = _run(sim, config, max_time_s)
    completed = sim.controller.state.execution in (Execution.PROGRAM_COMPLETED, Execution.READY)
    return SimulatedRun(
        t=columns["t"],
        pos=np.column_stack([columns[f"{a}.pos"] for a in AXES]),
        line=columns["line"].astype(np.int64),
        feed=columns["feed"],
        load=columns["spindle.load"],
        ferr=np.column_stack([columns[f"{a}.ferr"] for a in AXES]),
        cycle_time_s=float(sim.t),
        completed=completed and sim.t < max_time_s,
    )


def _simulator(config: MachineConfig, start: tuple[float, float, float] | None,
               tool: int) -> Simulator:  # fmt: skip
    # no vibration windows: the comparison does not use them and they cost most
    sim = Simulator(config, SimOptions(seed=0, vibration_every_s=1e9))
    if start is not None:
        # the machine is where it stood, at rest: the planner and the servo loops too
        here = tuple(float(v) for v in start)
        sim.planner = Planner(config, start=here)
        sim.servo = ServoAxes(config, sim.servo.rng, start=here)  # type: ignore[arg-type]
    if config.tool(tool) is not None:
        sim.tool = sim.selected_tool = tool
    return sim


def _run(sim: Simulator, config: MachineConfig, max_time_s: float) -> dict[str, np.ndarray]:
    keep = (
        "t",
        "line",
        "feed",
        "spindle.load",
        *(f"{a}.{s}" for a in AXES for s in ("pos", "ferr")),
    )
    factor = max(1, round(config.servo_rate_hz / sim.options.sample_rate_hz))
    chunks: list[dict[str, np.ndarray]] = []
    while sim.running and sim.t < max_time_s:
        result = sim.step(sim.block_length(sim.options.block_ticks, factor), truncate=True)
        columns = decimate(result.columns, factor)
        chunks.append({k: columns[k] for k in keep})
        if sim.controller.state.execution == Execution.STOPPED:
            break
    if not chunks:
        raise TwinDataError("the twin did not run: the program has no motion")
    return {k: np.concatenate([c[k] for c in chunks]) for k in keep}


# --- reported against simulated --------------------------------------------------------------


@dataclass(frozen=True)
class Comparison:
    """Per reported sample: distance to the twin's path of the same line (mm, NaN
    where the twin never ran that line), and the program-time offset (s; positive:
    the machine is behind its twin) with the twin's time at the matched point."""

    deviation_mm: np.ndarray
    offset_s: np.ndarray
    t_sim: np.ndarray


def compare(run: SimulatedRun, elapsed: np.ndarray, pos: np.ndarray,
            line: np.ndarray) -> Comparison:  # fmt: skip
    """Match reported samples (program time ``elapsed`` (k,), position ``pos`` (k, 3),
    line ``line`` (k,)) to the twin's path (see the module docstring)."""
    elapsed = np.asarray(elapsed, float)
    pos = np.asarray(pos, float)
    line = np.asarray(line)
    k = len(elapsed)
    if pos.shape != (k, 3) or line.shape != (k,):
        raise TwinDataError(
            f"compare: need k program times, (k, 3) positions and k lines; got "
            f"{elapsed.shape}, {pos.shape}, {line.shape}"
        )
    deviation = np.full(k, np.nan)
    t_sim = np.full(k, np.nan)
    ok = np.isfinite(elapsed) & np.isfinite(pos).all(axis=1) & np.isfinite(line)
    segments = _segments_by_line(run)
    lines = line[ok].astype(np.int64)
    for number in np.unique(lines):
        seg = segments.get(int(number))
        if seg is None:
            continue
        rows = np.flatnonzero(ok)[lines == number]
        for chunk in np.array_split(rows, max(1, len(rows) * len(seg) // PAIRS_PER_CHUNK + 1)):
            if len(chunk):
                deviation[chunk], t_sim[chunk] = _nearest(run, seg, pos[chunk], elapsed[chunk])
    return Comparison(deviation, elapsed - t_sim, t_sim)


def _segments_by_line(run: SimulatedRun) -> dict[int, np.ndarray]:
    """Line -> indices i of the path segments (sample i to i + 1) that end on it."""
    if len(run.t) < 2:
        return {}
    end_line = run.line[1:]
    order = np.argsort(end_line, kind="stable")
    sorted_lines = end_line[order]
    numbers, first = np.unique(sorted_lines, return_index=True)
    bounds = [*first.tolist(), len(order)]
    return {int(n): order[bounds[j] : bounds[j + 1]] for j, n in enumerate(numbers)}


def _nearest(run: SimulatedRun, seg: np.ndarray, points: np.ndarray,
             elapsed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Distance to the nearest of the segments ``seg`` and the twin's time there."""
    a, b = run.pos[seg], run.pos[seg + 1]  # (s, 3)
    ab = b - a
    length2 = np.einsum("ij,ij->i", ab, ab)
    rel = points[:, None, :] - a[None, :, :]  # (m, s, 3)
    u = np.einsum("msj,sj->ms", rel, ab) / np.where(length2 > 0, length2, 1.0)
    u = np.clip(u, 0.0, 1.0)
    diff = rel - u[:, :, None] * ab[None, :, :]
    dist = np.sqrt(np.einsum("msj,msj->ms", diff, diff))
    t = run.t[seg][None, :] + u * (run.t[seg + 1] - run.t[seg])[None, :]
    score = dist + TIME_TIE_MM_PER_S * np.abs(t - elapsed[:, None])
    score[t > MAX_SPEEDUP * elapsed[:, None] + SPEEDUP_SLACK_S] = np.inf  # out of reach
    best = np.argmin(score, axis=1)
    rows = np.arange(len(points))
    reachable = np.isfinite(score[rows, best])
    return (np.where(reachable, dist[rows, best], np.nan),
            np.where(reachable, t[rows, best], np.nan))  # fmt: skip
