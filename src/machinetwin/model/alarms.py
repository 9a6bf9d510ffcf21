"""Alarm records: what went wrong, how bad, where, and when it was raised and cleared."""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum, StrEnum


class Severity(IntEnum):
    INFO = 0
    WARNING = 1
    FAULT = 2  # stops the program
    CRITICAL = 3  # stops the machine (e-stop class)


class AlarmCode(StrEnum):
    """Codes of the alarms a machine raises; each has a guide in the maintenance module."""

    SOFT_LIMIT = "MT-100"
    FOLLOWING_ERROR = "MT-110"
    SPINDLE_OVERLOAD = "MT-200"
    OVER_TEMPERATURE = "MT-210"
    BEARING_DEFECT = "MT-220"  # diagnosed by the hub's analytics, before it stops anything
    TOOL_BREAKAGE = "MT-300"
    TOOL_MISSING = "MT-310"
    COLLISION = "MT-320"
    TOOL_WORN = "MT-330"  # diagnosed by the hub's analytics from the spindle load
    DRIVE_FAULT = "MT-400"
    COOLANT_FAILURE = "MT-500"
    BUFFER_SHED = "MT-700"  # the edge's buffer was full and dropped its oldest data
    LINK_DOWN = "MT-710"
    ESTOP = "MT-900"
    PROGRAM_ERROR = "MT-600"
    ANOMALY = "MT-800"  # the hub's analytics saw a machine behave unlike its own baseline


@dataclass(slots=True)
class Alarm:
    code: AlarmCode
    severity: Severity
    message: str
    source: str  # e.g. "x", "spindle", "program"
    raised_at: float  # machine clock, s
    cleared_at: float | None = None

    @property
    def active(self) -> bool:
        return self.cleared_at is None
