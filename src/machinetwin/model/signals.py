"""Canonical signal names and units (SI unless named), mirroring MTConnect data items.

Scalar signals travel as columns of a :class:`.batch.SampleBatch`; the spindle
vibration travels as a :class:`.batch.Waveform` at kHz rates.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum


class Execution(IntEnum):
    """Controller execution state (MTConnect Execution)."""

    READY = 0
    ACTIVE = 1
    INTERRUPTED = 2  # feed hold
    STOPPED = 3
    PROGRAM_COMPLETED = 4


class Mode(IntEnum):
    """Controller mode (MTConnect ControllerMode)."""

    AUTOMATIC = 0
    MDI = 1
    MANUAL = 2


@dataclass(frozen=True, slots=True)
class Signal:
    name: str
    unit: str
    description: str


def _axis_signals(axis: str) -> list[Signal]:
    return [
        Signal(f"{axis}.pos", "mm", f"{axis.upper()} actual position, machine frame"),
        Signal(f"{axis}.pos_cmd", "mm", f"{axis.upper()} commanded position, machine frame"),
        Signal(f"{axis}.ferr", "mm", f"{axis.upper()} following error (command - actual)"),
        Signal(f"{axis}.load", "%", f"{axis.upper()} drive load, percent of rated torque"),
    ]


SIGNALS: dict[str, Signal] = {
    s.name: s
    for s in [
        Signal("execution", "enum", "Execution state (model.Execution)"),
        Signal("mode", "enum", "Controller mode (model.Mode)"),
        Signal("estop", "bool", "Emergency stop active"),
        Signal("line", "count", "Program line being executed"),
        Signal("tool", "count", "Tool number in the spindle"),
        Signal("part_count", "count", "Parts completed"),
        Signal("feed_override", "%", "Feed override"),
        Signal("rapid_override", "%", "Rapid override"),
        Signal("spindle_override", "%", "Spindle speed override"),
        *_axis_signals("x"),
        *_axis_signals("y"),
        *_axis_signals("z"),
        Signal("spindle.speed", "rpm", "Spindle actual speed"),
        Signal("spindle.speed_cmd", "rpm", "Spindle commanded speed"),
        Signal("spindle.load", "%", "Spindle load, percent of rated power"),
        Signal("spindle.power", "W", "Spindle electrical power"),
        Signal("spindle.temp", "degC", "Spindle bearing temperature"),
        Signal("feed", "mm/min", "Actual path feed rate"),
        Signal("feed_cmd", "mm/min", "Commanded path feed rate"),
        Signal("power", "W", "Machine electrical power (axes, spindle, auxiliaries)"),
        Signal("energy", "J", "Machine energy since start"),
        Signal("mrr", "mm3/s", "Material removal rate"),
        Signal("cutting_force", "N", "Resultant cutting force"),
        Signal("tool_wear", "mm", "Flank wear VB of the tool in the spindle"),
    ]
}

VIBRATION = Signal("spindle.vib", "m/s2", "Spindle housing acceleration waveform")


def signal_unit(name: str) -> str:
    """The unit of a canonical signal; KeyError names the unknown signal."""
    if name == VIBRATION.name:
        return VIBRATION.unit
    try:
        return SIGNALS[name].unit
    except KeyError:
        raise KeyError(f"unknown signal {name!r}") from None
