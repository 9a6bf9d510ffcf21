"""The CNC controller's state machine: modes, execution state, e-stop, homing, alarms.

It decides what an operator command may do in the current state and fails closed:
a command that is not allowed raises :class:`CommandRejected` with the reason and
changes nothing. Motion itself is the planner's; the simulator tells the controller
what the motion reached (program end, optional stop) through the ``on_*`` methods.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import CommandRejected
from ..model import Alarm, AlarmCode, Execution, Mode, Severity
from .config import MachineConfig

AXES = ("x", "y", "z")


@dataclass
class ControllerState:
    mode: Mode = Mode.MANUAL
    execution: Execution = Execution.READY
    estop: bool = True  # a machine powers up in e-stop until reset
    homed: dict[str, bool] = field(default_factory=lambda: dict.fromkeys(AXES, False))
    program: str = ""
    line: int = 0
    tool: int = 0
    part_count: int = 0
    feed_override: float = 100.0
    rapid_override: float = 100.0
    spindle_override: float = 100.0
    alarms: list[Alarm] = field(default_factory=list)

    @property
    def all_homed(self) -> bool:
        return all(self.homed.values())

    def active_alarms(self, min_severity: Severity = Severity.INFO) -> list[Alarm]:
        return [a for a in self.alarms if a.active and a.severity >= min_severity]


class Controller:
    """What the operator (local or remote) may do, and when."""

    def __init__(self, config: MachineConfig, clock: Callable[[], float]) -> None:
        self.config = config
        self.clock = clock
        self.state = ControllerState()
        self.program_text: str | None = None

    # --- guards ------------------------------------------------------------------------

    def require(self, condition: bool, reason: str) -> None:
        if not condition:
            raise CommandRejected(reason)

    def require_operable(self) -> None:
        s = self.state
        self.require(not s.estop, "machine is in e-stop; reset it first")
        faults = s.active_alarms(Severity.FAULT)
        self.require(
            not faults,
            f"active alarm {faults[0].code.value}: {faults[0].message}" if faults else "",
        )

    def require_idle(self) -> None:
        self.require(
            self.state.execution not in (Execution.ACTIVE, Execution.INTERRUPTED),
            "a program is running; stop it first",
        )

    # --- e-stop, reset, homing ---------------------------------------------------------

    def estop(self) -> None:
        """Always accepted: stops everything at once."""
        s = self.state
        s.estop = True
        if s.execution in (Execution.ACTIVE, Execution.INTERRUPTED):
            s.execution = Execution.STOPPED
        self.raise_alarm(AlarmCode.ESTOP, Severity.CRITICAL, "emergency stop", "operator")

    def reset(self) -> None:
        """Leave e-stop and clear alarms whose cause is gone (all, in the simulator)."""
        s = self.state
        s.estop = False
        now = self.clock()
        for alarm in s.alarms:
            if alarm.active:
                alarm.cleared_at = now
        if s.execution in (Execution.STOPPED, Execution.PROGRAM_COMPLETED):
            s.execution = Execution.READY

    def home(self, axes: tuple[str, ...] = AXES) -> None:
        self.require_operable()
        self.require_idle()
        self.require(self.state.mode == Mode.MANUAL, "homing needs MANUAL mode")
        for axis in axes:
            self.require(axis in AXES, f"unknown axis {axis!r}")
            self.state.homed[axis] = True

    def set_mode(self, mode: Mode) -> None:
        self.require_idle()
        self.state.mode = mode

    # --- programs ------------------------------------------------------------------------

    def load_program(self, name: str, text: str) -> None:
        self.require_idle()
        self.require(self.state.mode == Mode.AUTOMATIC, "loading a program needs AUTOMATIC mode")
        self.state.program = name
        self.state.line = 0
        self.program_text = text
        self.state.execution = Execution.READY

    def cycle_start(self) -> None:
        s = self.state
        self.require_operable()
        self.require(s.mode == Mode.AUTOMATIC, "cycle start needs AUTOMATIC mode")
        self.require(s.all_homed, "axes are not homed")
        self.require(self.program_text is not None, "no program loaded")
        self.require(s.execution not in (Execution.ACTIVE, Execution.INTERRUPTED),
                     "the program is already running")  # fmt: skip
        s.execution = Execution.ACTIVE

    def feed_hold(self) -> None:
        self.require(self.state.execution == Execution.ACTIVE, "nothing is running to hold")
        self.state.execution = Execution.INTERRUPTED

    def resume(self) -> None:
        self.require_operable()
        self.require(self.state.execution == Execution.INTERRUPTED, "nothing is held to resume")
        self.state.execution = Execution.ACTIVE

    def stop(self) -> None:
        s = self.state
        if s.execution in (Execution.ACTIVE, Execution.INTERRUPTED):
            s.execution = Execution.STOPPED

    def mdi(self) -> None:
        s = self.state
        self.require_operable()
        self.require_idle()
        self.require(s.mode == Mode.MDI, "MDI needs MDI mode")
        self.require(s.all_homed, "axes are not homed")
        s.execution = Execution.ACTIVE

    def jog(self, axis: str, target: float) -> None:
        """Allow a jog of ``axis`` to ``target`` (machine mm) if it is inside soft limits."""
        s = self.state
        self.require_operable()
        self.require_idle()
        self.require(s.mode == Mode.MANUAL, "jogging needs MANUAL mode")
        self.require(axis in AXES, f"unknown axis {axis!r}")
        limits = self.config.axes[axis]  # type: ignore[index]
        if s.homed[axis]:  # soft limits only mean something once the axis is homed
            self.require(limits.min <= target <= limits.max,
                         f"{axis.upper()} {target:.3f} is outside its travel "
                         f"{limits.min:.0f}…{limits.max:.0f} mm")  # fmt: skip

    def set_override(self, which: str, percent: float) -> None:
        self.require(which in ("feed", "rapid", "spindle"), f"unknown override {which!r}")
        self.require(0.0 <= percent <= 200.0, "overrides run from 0 to 200 %")
        setattr(self.state, f"{which}_override", percent)

    # --- what the motion reports -----------------------------------------------------------

    def on_program_end(self) -> None:
        self.state.part_count += 1
        self.state.execution = Execution.PROGRAM_COMPLETED

    def on_program_stop(self) -> None:
        """M0/M1: wait for the operator's resume."""
        self.state.execution = Execution.INTERRUPTED

    def on_motion_done(self) -> None:
        """MDI or jog motion finished."""
        if self.state.execution == Execution.ACTIVE and self.state.mode != Mode.AUTOMATIC:
            self.state.execution = Execution.READY

    # --- alarms --------------------------------------------------------------------------

    def raise_alarm(
        self,
        code: AlarmCode,
        severity: Severity,
        message: str,
        source: str,
        at: float | None = None,
    ) -> Alarm:
        """Raise an alarm once (an active alarm with the same code and source is kept).

        ``at``: when the cause appeared (machine clock, s), if it is known more
        precisely than "now" (the simulator checks a block of ticks at once).
        """
        s = self.state
        for alarm in s.alarms:
            if alarm.active and alarm.code == code and alarm.source == source:
                return alarm
        alarm = Alarm(code, severity, message, source, self.clock() if at is None else at)
        s.alarms.append(alarm)
        if severity >= Severity.FAULT and s.execution in (Execution.ACTIVE, Execution.INTERRUPTED):
            s.execution = Execution.STOPPED
        return alarm

    def clear_alarm(self, code: AlarmCode, source: str) -> None:
        now = self.clock()
        for alarm in self.state.alarms:
            if alarm.active and alarm.code == code and alarm.source == source:
                alarm.cleared_at = now
