"""The CNC controller's state machine: modes, execution state, e-stop, homing, alarms.

It decides what an operator command may do in the current state and fails closed:
a command that is not allowed raises :class:`CommandRejected` with the reason and
changes nothing. Motion itself is the planner's; the simulator tells the controller
what the motion reached (program end, optional stop) through the ``on_*`` methods.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass, field

from ..errors import CommandRejected
from ..model import Alarm, AlarmCode, Execution, Mode, Severity
from .config import MachineConfig

AXES = ("x", "y", "z")
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


def text_sha256(text: str) -> str:
    """The checksum a program is known by (UTF-8 bytes of its text), as the hub's
    pre-flight computes it."""
    return hashlib.sha256(text.encode()).hexdigest()


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

    def switch_mode(self, mode: Mode, what: str) -> None:
        """Enter ``mode`` for ``what`` (a remote command has no mode switch of its own),
        but never while a program or motion runs or is held in another mode."""
        self.check_mode(mode, what)
        self.state.mode = mode

    def check_mode(self, mode: Mode, what: str) -> None:
        """Refuse (changing nothing) if ``switch_mode`` would."""
        s = self.state
        if s.mode == mode:
            return
        self.require(s.execution not in (Execution.ACTIVE, Execution.INTERRUPTED),
                     f"{what} needs {mode.name} mode; the machine is in {s.mode.name} with "
                     f"{'a program' if s.mode == Mode.AUTOMATIC else 'motion'} "
                     f"{s.execution.name.lower()}: stop it first")  # fmt: skip

    # --- programs ------------------------------------------------------------------------

    def load_program(self, name: str, text: str) -> None:
        self.require_idle()
        self.require(self.state.mode == Mode.AUTOMATIC, "loading a program needs AUTOMATIC mode")
        self.state.program = name
        self.state.line = 0
        self.program_text = text
        self.state.execution = Execution.READY

    def select_program(self, name: str, text: str) -> None:
        """Remote program select: into AUTOMATIC (when idle) and load, or change nothing."""
        mode = self.state.mode
        self.switch_mode(Mode.AUTOMATIC, "selecting a program")
        try:
            self.load_program(name, text)
        except CommandRejected:
            self.state.mode = mode
            raise

    def cycle_start(self, program_sha256: str | None = None) -> None:
        """Start the loaded program; with ``program_sha256``, only if the loaded text is
        exactly the program the issuer checked (the hub's pre-flight names it so)."""
        s = self.state
        self.require_operable()
        self.require(s.mode == Mode.AUTOMATIC, "cycle start needs AUTOMATIC mode")
        self.require(s.all_homed, "axes are not homed")
        self.require(self.program_text is not None, "no program loaded")
        self.require(s.execution not in (Execution.ACTIVE, Execution.INTERRUPTED),
                     "the program is already running")  # fmt: skip
        if program_sha256 is not None:
            self.require(isinstance(program_sha256, str)
                         and _SHA256_RE.fullmatch(program_sha256) is not None,
                         f"program_sha256 must be 64 lowercase hex digits, "
                         f"got {program_sha256!r}")  # fmt: skip
            have = text_sha256(self.program_text or "")
            self.require(have == program_sha256,
                         f"program checksum mismatch: {s.program or 'the loaded program'} has "
                         f"SHA-256 {have[:12]}…, the command names {program_sha256[:12]}…; "
                         f"select the checked program first")  # fmt: skip
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

    def start_mdi(self) -> None:
        """Remote MDI: into MDI mode (when idle) and start, or change nothing."""
        self.require_operable()
        self._in_mode(Mode.MDI, "MDI", self.mdi)

    def start_jog(self, axis: str, target: float, feed: float) -> None:
        """Remote jog of ``axis`` to ``target`` (machine mm) at ``feed`` (mm/min): into
        MANUAL (when idle), soft limits and feed checked, then ACTIVE; or change nothing."""
        self.require_operable()
        self.require(axis in AXES, f"unknown axis {axis!r}; axes are {', '.join(AXES)}")
        top = 60.0 * self.config.axes[axis].max_velocity  # type: ignore[index]
        self.require(0.0 < feed <= top, f"jog feed {feed:g} mm/min is outside (0, {top:.0f}] "
                                        f"for {axis.upper()}")  # fmt: skip

        def start() -> None:
            self.jog(axis, target)
            self.state.execution = Execution.ACTIVE

        self._in_mode(Mode.MANUAL, "jogging", start)

    def jog_limit(self, axis: str, direction: int) -> float:
        """Where a continuous jog of ``axis`` in ``direction`` stops: its soft limit, which
        only a homed axis has (without it a continuous jog could run into the stops)."""
        self.require(axis in AXES, f"unknown axis {axis!r}; axes are {', '.join(AXES)}")
        self.require(direction in (-1, 1), f"jog direction must be -1 or 1, got {direction!r}")
        self.require(self.state.homed[axis], f"continuous jog of {axis.upper()} needs the axis "
                                             f"homed (its soft limits)")  # fmt: skip
        limits = self.config.axes[axis]  # type: ignore[index]
        return limits.max if direction > 0 else limits.min

    def _in_mode(self, mode: Mode, what: str, start: Callable[[], None]) -> None:
        """Switch to ``mode`` and run ``start``; a refusal restores the mode."""
        before = self.state.mode
        self.switch_mode(mode, what)
        try:
            start()
        except CommandRejected:
            self.state.mode = before
            raise

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

    def alarm_reset(self) -> None:
        """Clear active alarms; the e-stop alarm stays while the e-stop is engaged (only a
        reset leaves e-stop). Execution is unchanged: a stopped program stays stopped."""
        s = self.state
        now = self.clock()
        for alarm in s.alarms:
            if alarm.active and not (s.estop and alarm.code == AlarmCode.ESTOP):
                alarm.cleared_at = now

    def set_override(self, which: str, percent: float) -> None:
        self.require(which in ("feed", "rapid", "spindle"), f"unknown override {which!r}")
        self.require(0.0 <= percent <= 200.0, "overrides run from 0 to 200 %")
        setattr(self.state, f"{which}_override", percent)

    # --- what the motion reports -----------------------------------------------------------

    def on_program_end(self) -> None:
        if self.state.mode != Mode.AUTOMATIC:  # MDI or jog motion ends: no part made
            self.on_motion_done()
            return
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
