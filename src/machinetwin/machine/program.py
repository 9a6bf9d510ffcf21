"""A part program made ready for the virtual machine: machine frame, travel check, waits.

The interpreter hands runs of plain moves over as :class:`~machinetwin.gcode.canon.MotionBatch`
columns; they stay batches here (converted to the machine frame, checked and
classified with numpy) and are expanded one op at a time only by the planner, as it
reads ahead. That keeps loading a 20,000-line CAM program to a fraction of a second.

Spindle at speed: a real controller holds the next feed move after M3/M4 (or a new S
while the spindle turns) until the spindle reports that it reached the commanded
speed. :func:`spindle_at_speed` gives the planner the same behaviour as a dwell before
that feed move, as long as the ramp still needs after the dwells and rapids that
came between (their shortest possible duration counts, so the wait is never short).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator

import numpy as np

from ..errors import CommandRejected
from ..gcode import (
    ProgramSource,
    ToolTable,
    canon,
    interpret_batches,
    program_stats,
    to_machine_frame,
)
from .config import MachineConfig

AXES = ("x", "y", "z")
SPINDLE_OPS = (
    canon.SetSpindleSpeed,
    canon.StartSpindleClockwise,
    canon.StartSpindleCounterclockwise,
    canon.StopSpindleTurning,
)
MIN_WAIT_S = 1e-3  # one servo tick: shorter waits are rounding


def machine_ops(
    source: ProgramSource, tools: ToolTable, g54: tuple[float, float, float]
) -> list[canon.CanonOp]:
    """The program's canonical ops in the machine frame (mm), motion runs as batches."""
    ops = interpret_batches(source, tools, work_offsets={1: g54})
    return list(to_machine_frame(ops))


def check_travel(ops: list[canon.CanonOp], config: MachineConfig) -> None:
    """Refuse a program that would leave the machine's travel (soft limits)."""
    lo, hi = np.full(3, np.inf), np.full(3, -np.inf)
    stats = program_stats(_for_stats(ops, lo, hi), machine_frame=True)
    if stats.has_motion:
        lo = np.minimum(lo, stats.bbox_min[:3])
        hi = np.maximum(hi, stats.bbox_max[:3])
    if not np.isfinite(lo).all():
        return
    for i, axis in enumerate(AXES):
        limits = config.axes[axis]  # type: ignore[index]
        if lo[i] < limits.min - 1e-6 or hi[i] > limits.max + 1e-6:
            raise CommandRejected(
                f"program leaves the {axis.upper()} travel: {lo[i]:.3f} … {hi[i]:.3f} mm, "
                f"soft limits {limits.min:.0f} … {limits.max:.0f} mm"
            )


def _for_stats(ops: list[canon.CanonOp], lo: np.ndarray, hi: np.ndarray) -> Iterator[canon.CanonOp]:
    """The ops for ``program_stats``, with arc-free batches reduced to their extent.

    Such a batch's ends go into ``lo``/``hi`` at once; the stats see one traverse to
    its last point instead, so that an arc after it still starts where it should.
    """
    for op in ops:
        if type(op) is not canon.MotionBatch:
            yield op
            continue
        kind = op.kind  # type: ignore[attr-defined]
        if (kind == 2).any():
            yield from op.ops()  # type: ignore[attr-defined]
            continue
        moves = op.end[kind >= 0, :3]  # type: ignore[attr-defined]
        if len(moves):
            np.minimum(lo, moves.min(axis=0), out=lo)
            np.maximum(hi, moves.max(axis=0), out=hi)
            yield canon.StraightTraverse(int(op.lines[-1]), *moves[-1])  # type: ignore[attr-defined]


def line_kinds(ops: list[canon.CanonOp]) -> tuple[np.ndarray, np.ndarray]:
    """Lookup tables over line numbers: lines with only rapid moves, lines with feeds."""
    top = 0
    for op in ops:
        last = int(op.lines.max()) if type(op) is canon.MotionBatch else op.line  # type: ignore[attr-defined]
        top = max(top, last)
    rapid = np.zeros(top + 1, dtype=bool)
    feed = np.zeros(top + 1, dtype=bool)
    for op in ops:
        kind = type(op)
        if kind is canon.MotionBatch:
            rapid[op.lines[op.kind == 0]] = True  # type: ignore[attr-defined]
            feed[op.lines[op.kind >= 1]] = True  # type: ignore[attr-defined]
        elif kind is canon.StraightTraverse:
            rapid[op.line] = True
        elif kind is canon.StraightFeed or kind is canon.ArcFeed:
            feed[op.line] = True
    # a canned cycle line holds both: its rapids sit inside a feed's line, not a G0's
    return rapid & ~feed, feed


# --- spindle at speed -------------------------------------------------------------------


@dataclasses.dataclass
class _Spindle:
    """What the controller knows of the spindle while it reads ahead."""

    accel: float  # rpm/s
    max_rpm: float
    speed: float = 0.0  # S word
    direction: int = 0
    # signed speeds the spindle was at or heading for since it was last at speed: it
    # is somewhere between them, so the farthest one bounds the ramp still to go
    since: list[float] = dataclasses.field(default_factory=lambda: [0.0])
    elapsed: float = 0.0  # s that surely passed since the last change (dwells, rapids)

    @property
    def target(self) -> float:
        return self.direction * min(self.speed, self.max_rpm)

    def change(self, op: canon.CanonOp) -> None:
        t = type(op)
        if t is canon.SetSpindleSpeed:
            self.speed = float(op.rpm)  # type: ignore[attr-defined]
        elif t is canon.StartSpindleClockwise:
            self.direction = 1
        elif t is canon.StartSpindleCounterclockwise:
            self.direction = -1
        else:
            self.direction = 0
        self.since.append(self.target)
        self.elapsed = 0.0

    def wait(self) -> float:
        """Seconds the next feed move must wait; the spindle is at speed after it."""
        target = self.target
        if target == 0.0 or len(self.since) == 1 and self.since[0] == target:
            return 0.0  # stopped (nothing to wait for) or already at speed
        ramp = max(abs(target - v) for v in self.since) / self.accel
        self.since = [target]
        return max(ramp - self.elapsed, 0.0)


def spindle_at_speed(
    ops: Iterable[canon.CanonOp], config: MachineConfig, start: Iterable[float]
) -> list[canon.CanonOp]:
    """``ops`` with a dwell before each feed move that would start before the spindle
    reached its commanded speed (see the module's docstring)."""
    spindle = _Spindle(config.spindle.acceleration, config.spindle.max_rpm)
    vmax = np.array([config.axes[a].max_velocity for a in AXES])  # type: ignore[index]
    pos = np.array(list(start), dtype=float)[:3]
    out: list[canon.CanonOp] = []
    for op in ops:
        t = type(op)
        if t in SPINDLE_OPS:
            spindle.change(op)
        elif t is canon.Dwell:
            spindle.elapsed += float(op.seconds)  # type: ignore[attr-defined]
        elif t is canon.StraightTraverse:
            end = np.array([op.x, op.y, op.z])  # type: ignore[attr-defined]
            spindle.elapsed += float((np.abs(end - pos) / vmax).max())  # no rapid is faster
            pos = end
        elif t is canon.StraightFeed or t is canon.ArcFeed:
            _wait(out, spindle, op.line)
            pos = _end_of(op, pos)
        elif t is canon.MotionBatch:
            pos = _batch(out, op, spindle, pos, vmax)  # type: ignore[arg-type]
            continue
        out.append(op)
    return out


def _wait(out: list[canon.CanonOp], spindle: _Spindle, line: int) -> None:
    seconds = spindle.wait()
    if seconds >= MIN_WAIT_S:
        out.append(canon.Dwell(line, seconds))


def _end_of(op: canon.CanonOp, pos: np.ndarray) -> np.ndarray:
    if type(op) is canon.StraightFeed:
        return np.array([op.x, op.y, op.z])  # type: ignore[attr-defined]
    first, second, normal = canon.ARC_AXES[op.plane]  # type: ignore[attr-defined]
    end = pos.copy()
    end[first], end[second], end[normal] = op.first_end, op.second_end, op.axis_end  # type: ignore[attr-defined]
    return end


def _batch(
    out: list[canon.CanonOp],
    batch: canon.MotionBatch,
    spindle: _Spindle,
    pos: np.ndarray,
    vmax: np.ndarray,
) -> np.ndarray:
    """Append a motion batch, split where the spindle must come up to speed first."""
    kind = batch.kind
    moves = np.flatnonzero(kind >= 0)
    if len(moves) == 0:
        out.append(batch)
        return pos
    last = np.asarray(batch.end[moves[-1], :3], dtype=float)
    feeds = np.flatnonzero(kind >= 1)
    first = int(feeds[0]) if len(feeds) else len(kind)
    rapids = moves[moves < first]
    if len(rapids):
        path = np.vstack([pos, batch.end[rapids, :3]])
        spindle.elapsed += float((np.abs(np.diff(path, axis=0)) / vmax).max(axis=1).sum())
    if first < len(kind):
        seconds = spindle.wait()
        if seconds >= MIN_WAIT_S:
            if first:
                out.append(_rows(batch, slice(0, first)))
            out.append(canon.Dwell(int(batch.lines[first]), seconds))
            batch = _rows(batch, slice(first, None))
    out.append(batch)
    return last


def _rows(batch: canon.MotionBatch, rows: slice) -> canon.MotionBatch:
    """Some consecutive rows of a batch (each row stands on its own)."""
    lines = batch.lines[rows]
    return dataclasses.replace(
        batch, line=int(lines[0]), lines=lines, kind=batch.kind[rows],
        feed_set=batch.feed_set[rows], feed=batch.feed[rows], end=batch.end[rows],
        centre=batch.centre[rows], rotation=batch.rotation[rows],
    )  # fmt: skip
