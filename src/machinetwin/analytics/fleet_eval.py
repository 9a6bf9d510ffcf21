"""Evaluate the monitors on simulated fleets, against the virtual machine's ground truth.

Each virtual machine runs its programs with scheduled faults (``KIND:SEVERITY@TIME``);
its batches and events go through a :class:`.monitor.MachineMonitor` exactly as the hub's
analytics worker feeds them. Ground truth comes from the simulator itself: when each
fault started, when the machine raised its own alarms, and the true flank wear of every
tool (the ``tool_wear`` signal). From that, per fault: whether and when it was
detected, the delay, and whether that was before the machine's first own alarm after
the fault began; per machine: the monitor's false alarms.

What counts as a correct alarm:

- bearing (MT-220): a bearing fault is active, of the class the message names;
- tool worn (MT-330): a tool_wear fault is active, or the named tool's true flank wear
  is at least ``WORN_VB_MM`` (normal wear that reached it is a true finding too: the
  virtual machine never changes tools);
- anomaly (MT-800): a backlash, encoder-noise or coolant fault is active.

Anything else is a false alarm.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..machine import load_machine_config
from ..machine.adapter import VirtualMachineAdapter, VirtualMachineSettings
from ..machine.faults import FaultSchedule, parse_fault
from ..model import AlarmCode
from .monitor import MachineMonitor, bearing_of

WORN_VB_MM = 0.15  # half the ISO 8688-2 end-of-life wear: a tool worth an alarm
BEARING_KINDS = {"bearing_outer": "outer-race", "bearing_inner": "inner-race",
                 "bearing_ball": "rolling-element"}  # fmt: skip
TOOL_KINDS = {"tool_wear"}
MOTION_KINDS = {"backlash", "encoder_noise", "coolant_failure"}
MONITOR_CODES = {AlarmCode.BEARING_DEFECT, AlarmCode.TOOL_WORN, AlarmCode.ANOMALY}


@dataclass(frozen=True)
class Scenario:
    machine_id: str
    programs: tuple[Path, ...]
    faults: tuple[str, ...] = ()
    seed: int = 0


@dataclass
class FaultResult:
    machine: str
    fault: str
    start_s: float
    detected_s: float | None  # machine time of the first matching monitor alarm
    machine_alarm_s: float | None  # the machine's own first alarm after the start
    message: str = ""

    @property
    def delay_s(self) -> float | None:
        return None if self.detected_s is None else self.detected_s - self.start_s

    @property
    def before_machine_alarm(self) -> bool:
        return self.detected_s is not None and (self.machine_alarm_s is None
                                                or self.detected_s <= self.machine_alarm_s)  # fmt: skip


@dataclass
class MachineResult:
    machine: str
    hours: float
    faults: list[FaultResult] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)
    alarms: int = 0


def run_scenario(
    s: Scenario, hours: float, progress: Callable[[float], None] | None = None
) -> MachineResult:
    """Simulate one machine for ``hours`` under its monitor; see the module docstring."""
    config = load_machine_config()
    faults = [parse_fault(f) for f in s.faults]
    settings = VirtualMachineSettings(s.machine_id, "eval", list(s.programs), seed=s.seed,
                                      speedup=0.0, sample_rate_hz=10.0, batch_period_s=1.0,
                                      faults=FaultSchedule(faults), epoch=0.0)  # fmt: skip
    vm = VirtualMachineAdapter(config, settings)
    monitor = MachineMonitor(s.machine_id, bearing_of(config.spindle.bearing))
    wear: dict[int, float] = {}
    found: list[tuple[float, AlarmCode, str, str, float]] = []  # (t, code, source, message, VB)
    machine_alarms: list[float] = []
    end = hours * 3600
    while vm.sim.t < end:
        batch, events = vm.step()
        findings = []
        for e in events:
            if e.kind == "alarm" and e.alarm is not None:
                machine_alarms.append(e.t)
            findings += monitor.on_event(e)
        _note_wear(batch.columns, wear)
        findings += monitor.update(batch)
        # with each alarm, the true wear of the tool it names at that moment
        found += [(f.t, f.alarm.code, f.alarm.source, f.alarm.message,
                   wear.get(_tool_of(f.alarm.source), 0.0)) for f in findings
                  if f.alarm is not None and f.alarm.cleared_at is None]  # fmt: skip
        if progress and int(vm.sim.t) % 600 == 0:
            progress(vm.sim.t / end)
    return _judge(s, faults, found, machine_alarms, hours)


def _note_wear(columns: dict, wear: dict[int, float]) -> None:
    tool, vb = columns.get("tool"), columns.get("tool_wear")
    if tool is not None and vb is not None and len(tool):
        wear[int(tool[-1])] = float(vb[-1])


def _judge(s: Scenario, faults: list, found: list, machine_alarms: list[float],
           hours: float) -> MachineResult:  # fmt: skip
    result = MachineResult(s.machine_id, hours, alarms=len(found))
    used: set[int] = set()
    for spec, fault in zip(s.faults, faults, strict=True):
        kind = fault.kind.value
        match = [i for i, (t, code, _src, msg, _vb) in enumerate(found)
                 if t >= fault.start and _explains(kind, code, msg)]  # fmt: skip
        own = [t for t in machine_alarms if t >= fault.start]
        first = match[0] if match else None
        used.update(match)
        result.faults.append(FaultResult(
            s.machine_id, spec, fault.start, found[first][0] if first is not None else None,
            min(own) if own else None, found[first][3] if first is not None else ""))  # fmt: skip
    for i, (t, code, _source, msg, vb) in enumerate(found):
        if i in used or (code == AlarmCode.TOOL_WORN and vb >= WORN_VB_MM):
            continue  # explained by a fault, or normal wear that reached an alarm-worthy level
        result.false_alarms.append(f"{t:.0f} s {code}: {msg}")
    return result


def _explains(kind: str, code: AlarmCode, message: str) -> bool:
    if kind in BEARING_KINDS:
        return code == AlarmCode.BEARING_DEFECT and message.startswith(BEARING_KINDS[kind])
    if kind in TOOL_KINDS:
        return code == AlarmCode.TOOL_WORN
    if kind in MOTION_KINDS:
        return code == AlarmCode.ANOMALY
    return False


def _tool_of(source: str) -> int:
    try:
        return int(source.rsplit("T", 1)[-1])
    except ValueError:
        return -1


def summarise(results: Sequence[MachineResult]) -> dict[str, float | int | None]:
    """Fleet figures: detections, delays, false alarms per machine-week."""
    faults = [f for r in results for f in r.faults]
    monitored = [f for f in faults if _monitored(f.fault)]
    detected = [f for f in monitored if f.detected_s is not None]
    delays = [f.delay_s for f in detected if f.delay_s is not None]
    machine_weeks = sum(r.hours for r in results) / 168
    false = sum(len(r.false_alarms) for r in results)
    return {
        "machines": len(results), "machine_hours": round(sum(r.hours for r in results), 2),
        "faults": len(monitored), "detected": len(detected),
        "detected_before_machine_alarm": sum(f.before_machine_alarm for f in monitored),
        "detection_delay_median_s": float(np.median(delays)) if delays else None,
        "detection_delay_max_s": float(max(delays)) if delays else None,
        "false_alarms": false,
        "false_alarms_per_machine_week": false / machine_weeks if machine_weeks else None,
    }  # fmt: skip


def _monitored(spec: str) -> bool:
    kind = spec.split(":", 1)[0]
    return kind in BEARING_KINDS or kind in TOOL_KINDS
