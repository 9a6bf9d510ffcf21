"""Pre-flight: run a program on the machine's twin before it may be started remotely.

Two passes over the program, both on the machine's own description (travel, spindle,
axis speeds, tool table, stock):

1. Static, over the interpreted program in machine coordinates (the same interpreter
   the virtual machine runs): every tool the program asks for must be in the tool
   table; every move's end point and every arc's extent inside the soft limits;
   every S word within the spindle's maximum; every F word within the slowest axis'
   maximum speed. Each finding names the program line.
2. Dynamic, only when the static pass is clean (the twin would refuse the program
   anyway): the virtual machine runs the program start to end, as fast as it can. A
   rapid into the stock, a holder touching the part, and any alarm of severity FAULT
   or above become findings at the line that was executing; its run time is the
   cycle-time estimate.

A finding of severity ``refuse`` refuses the remote start; the report lists them all,
with the cycle time, so the operator sees why.

Both passes start where the tool is: the machine's live position from the hub's live
state (``x.pos``/``y.pos``/``z.pos``, machine frame) when it is known — a program
whose first rapid crosses the part from there is refused although it would be clean
from home — and from home otherwise (the report says which: ``start``).
"""

from __future__ import annotations

import hashlib
import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ..errors import CommandRejected, GCodeError
from ..gcode import (
    ProgramSource,
    Tool,
    ToolTable,
    canon,
    interpret,
    program_stats,
    to_machine_frame,
)
from ..gcode.stats import arc_box
from ..machine.config import MachineConfig
from ..machine.planner import Planner
from ..machine.servo import ServoAxes
from ..machine.simulator import SimOptions, Simulator, tool_table_from
from ..model import AlarmCode, Execution, Severity

MAX_PROGRAM_BYTES = 512 * 1024
MAX_MISSING_TOOLS = 50  # distinct missing tools reported before giving up
MAX_SIM_S = 4 * 3600.0  # the twin's run is cut off after this much machine time
TOLERANCE_MM = 1e-6
_MISSING_TOOL = re.compile(r"Requested tool (-?\d+) not found in the tool table")
AXES = ("x", "y", "z")


@dataclass(frozen=True, slots=True)
class Finding:
    kind: str  # program_error, tool_missing, soft_limit, spindle_speed, feed, rapid_into_stock, ...
    severity: Literal["refuse", "warn"]
    line: int  # 1-based program line, 0 if not tied to one
    message: str


@dataclass
class PreflightReport:
    program: str
    sha256: str
    findings: list[Finding] = field(default_factory=list)
    cycle_time_s: float | None = None
    simulated: bool = False
    start: tuple[float, float, float] | None = None  # machine mm; None: from home

    @property
    def ok(self) -> bool:
        return not any(f.severity == "refuse" for f in self.findings)

    def as_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "program": self.program, "sha256": self.sha256,
                "cycle_time_s": self.cycle_time_s, "simulated": self.simulated,
                "start": None if self.start is None else list(self.start),
                "findings": [asdict(f) for f in self.findings]}  # fmt: skip


def program_sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def live_position(state: Any) -> tuple[float, float, float] | None:
    """The machine-frame position in a hub ``LiveState`` (its ``values``), if all three
    axes are there and finite; None otherwise (then pre-flight starts from home)."""
    values = getattr(state, "values", None) or {}
    try:
        pos = tuple(float(values[f"{a}.pos"]) for a in AXES)
    except (KeyError, TypeError, ValueError):
        return None
    return pos if all(np.isfinite(pos)) else None  # type: ignore[return-value]


def preflight(
    name: str,
    text: str,
    config: MachineConfig,
    simulate_twin: bool = True,
    start: tuple[float, float, float] | None = None,
) -> PreflightReport:
    """Check ``text`` (program ``name``) against ``config`` from ``start`` (machine mm;
    None: home); see the module docstring."""
    report = PreflightReport(name, program_sha256(text), start=start)
    if len(text.encode()) > MAX_PROGRAM_BYTES:
        report.findings.append(Finding("program_too_large", "refuse", 0,
                                       f"{len(text.encode())} bytes, at most {MAX_PROGRAM_BYTES}"))  # fmt: skip
        return report
    ops = _machine_ops(name, text, config, report)
    if ops is None:
        return report
    report.findings += _static_findings(ops, config, start)
    stats = program_stats(iter(ops), rapid_mm_per_min=_max_feed(config), machine_frame=True)
    report.cycle_time_s = round(stats.cycle_time_s, 3)
    if report.ok and simulate_twin:
        _run_twin(name, text, config, report, start)
    return report


# --- pass 1: static ------------------------------------------------------------------------------


def _machine_ops(name: str, text: str, config: MachineConfig,
                 report: PreflightReport) -> list[canon.CanonOp] | None:  # fmt: skip
    """Interpreted ops in machine mm; tools missing from the table become findings
    (and stand-ins of length 0, so the rest of the program is still checked)."""
    table = tool_table_from(config)
    g54 = tuple(config.work_offsets.get("G54", (0.0, 0.0, 0.0)))
    for _ in range(MAX_MISSING_TOOLS + 1):
        try:
            source = ProgramSource.from_text(text, name)
            return list(to_machine_frame(interpret(source, table, work_offsets={1: g54})))
        except GCodeError as exc:
            missing = _MISSING_TOOL.search(exc.message)
            if missing is None or int(missing.group(1)) < 0:
                report.findings.append(Finding("program_error", "refuse", exc.line, exc.message))
                return None
            number = int(missing.group(1))
            report.findings.append(Finding("tool_missing", "refuse", exc.line,
                                           f"T{number} is not in {config.name}'s tool table"))  # fmt: skip
            table = ToolTable({**table.tools, number: Tool(number, number)}, table.source)
    return None


def _max_feed(config: MachineConfig) -> float:
    """The fastest path feed every axis can follow, mm/min."""
    return 60.0 * min(config.axes[a].max_velocity for a in AXES)  # type: ignore[index]


def _static_findings(ops: list[canon.CanonOp], config: MachineConfig,
                     start: tuple[float, float, float] | None = None) -> list[Finding]:  # fmt: skip
    findings: list[Finding] = []
    max_feed, max_rpm = _max_feed(config), config.spindle.max_rpm
    lo = np.array([config.axes[a].min for a in AXES]) - TOLERANCE_MM  # type: ignore[index]
    hi = np.array([config.axes[a].max for a in AXES]) + TOLERANCE_MM  # type: ignore[index]
    pos = np.zeros(3) if start is None else np.array(start, dtype=float)
    for op in ops:
        t = type(op)
        if t is canon.SetSpindleSpeed and op.rpm > max_rpm:  # type: ignore[attr-defined]
            findings.append(Finding("spindle_speed", "refuse", op.line,
                                    f"S{op.rpm:g} rpm is over the spindle's {max_rpm:g} rpm"))  # type: ignore[attr-defined]  # fmt: skip
        elif t is canon.SetFeedRate and op.rate > max_feed:  # type: ignore[attr-defined]
            findings.append(Finding("feed", "refuse", op.line,
                                    f"F{op.rate:g} mm/min is over the axes' {max_feed:g} mm/min"))  # type: ignore[attr-defined]  # fmt: skip
        box = _move_box(op, pos)
        if box is None:
            continue
        already_out = (pos < lo) | (pos > hi)  # reported at the move that left the travel
        bmin, bmax, pos = box
        findings += _limit_findings(op, bmin, bmax, lo, hi, already_out)
    return findings


def _move_box(
    op: canon.CanonOp, pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(min, max, end) of the region a move sweeps, or None for a non-move."""
    t = type(op)
    if t in (canon.StraightTraverse, canon.StraightFeed, canon.StraightProbe, canon.RigidTap):
        end = np.array([op.x, op.y, op.z])  # type: ignore[attr-defined]
        return np.minimum(pos, end), np.maximum(pos, end), end
    if t is canon.ArcFeed:
        first, second, normal = canon.ARC_AXES[op.plane]  # type: ignore[attr-defined]
        end = pos.copy()
        end[first], end[second], end[normal] = op.first_end, op.second_end, op.axis_end  # type: ignore[attr-defined]
        box = arc_box((pos[first], pos[second]), (op.first_axis, op.second_axis),  # type: ignore[attr-defined]
                      (op.first_end, op.second_end), op.rotation)  # type: ignore[attr-defined]  # fmt: skip
        bmin, bmax = np.minimum(pos, end), np.maximum(pos, end)
        for k, axis in enumerate((first, second)):
            bmin[axis], bmax[axis] = box[0][k], box[1][k]
        return bmin, bmax, end
    return None


def _limit_findings(op: canon.CanonOp, bmin: np.ndarray, bmax: np.ndarray, lo: np.ndarray,
                    hi: np.ndarray, already_out: np.ndarray) -> list[Finding]:  # fmt: skip
    out = []
    for i in np.flatnonzero(((bmin < lo) | (bmax > hi)) & ~already_out):
        axis = AXES[i]
        value = bmin[i] if bmin[i] < lo[i] else bmax[i]
        out.append(Finding("soft_limit", "refuse", op.line,
                           f"{axis.upper()} reaches {value:.3f} mm (machine), outside its travel "
                           f"{lo[i] + TOLERANCE_MM:g} … {hi[i] - TOLERANCE_MM:g} mm"))  # fmt: skip
    return out


# --- pass 2: the twin runs it -----------------------------------------------------------------------


def _run_twin(name: str, text: str, config: MachineConfig, report: PreflightReport,
              start: tuple[float, float, float] | None = None) -> None:  # fmt: skip
    with tempfile.TemporaryDirectory(prefix="mt-preflight-") as tmp:
        path = Path(tmp) / (Path(name).name or "program.ngc")
        path.write_text(text)
        try:
            sim, t, line = _simulate_from(path, config, start)
        except CommandRejected as exc:  # the twin refused to start it
            report.findings.append(Finding("twin_refused", "refuse", 0, str(exc)))
            return
    report.simulated = True
    report.cycle_time_s = round(sim.t, 3)
    for alarm in sim.controller.state.alarms:
        if alarm.severity < Severity.FAULT:
            continue
        at = _line_at(t, line, alarm.raised_at)
        kind = _alarm_kind(alarm.code, alarm.message)
        message = f"{alarm.code.value}: {alarm.message}"
        if start is not None and at == 0 and kind in ("rapid_into_stock", "collision"):
            # the twin's part is a fresh blank: it cannot know what the machine has cut
            kind, message = (
                "start_in_stock",
                (
                    "the tool starts inside the blank's volume (machine "
                    + " ".join(f"{a.upper()}{v:.1f}" for a, v in zip(AXES, start, strict=True))
                    + "); the twin does not know what was cut there: retract (e.g. MDI G53 G0 Z0) "
                    "and run the pre-flight again"
                ),
            )
        report.findings.append(Finding(kind, "refuse", at, message))
    execution = sim.controller.state.execution.name
    if execution not in ("PROGRAM_COMPLETED", "READY"):
        report.findings.append(Finding("did_not_complete", "refuse", 0,
                                       f"the twin ended in {execution}"))  # fmt: skip


def _simulate_from(path: Path, config: MachineConfig, start: tuple[float, float, float] | None,
                   ) -> tuple[Simulator, np.ndarray, np.ndarray]:  # fmt: skip
    """The twin run to the program's end (or the alarm that stops it) from ``start``:
    (simulator, time and line per servo tick, every ``factor``-th)."""
    options = SimOptions(seed=0, vibration_every_s=1e9)
    sim = Simulator(config, options)
    if start is not None:  # the tool where the machine's tool is, not at home
        here = (float(start[0]), float(start[1]), float(start[2]))
        sim.planner = Planner(config, start=here)
        sim.servo = ServoAxes(config, np.random.default_rng(options.seed), start=here)
    sim.start_program(path)
    factor = max(1, round(config.servo_rate_hz / options.sample_rate_hz))
    ts, lines = [], []
    while sim.running and sim.t < MAX_SIM_S:
        result = sim.step(sim.block_length(options.block_ticks, factor), truncate=True)
        ts.append(np.asarray(result.columns["t"])[::factor])
        lines.append(np.asarray(result.columns["line"])[::factor])
        if sim.controller.state.execution == Execution.STOPPED:
            break
    empty = np.zeros(0)
    return sim, np.concatenate(ts) if ts else empty, np.concatenate(lines) if lines else empty


def _alarm_kind(code: AlarmCode, message: str) -> str:
    if code == AlarmCode.COLLISION:
        return "rapid_into_stock" if "rapid" in message else "collision"
    return code.name.lower()


def _line_at(t: np.ndarray | None, line: np.ndarray | None, at: float) -> int:
    """The program line executing at machine time ``at``."""
    if t is None or line is None or not len(t):
        return 0
    i = min(int(np.searchsorted(t, at)), len(t) - 1)
    return int(line[i])
