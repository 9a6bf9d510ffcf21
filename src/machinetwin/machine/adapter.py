"""The virtual machine behind the ``Adapter`` interface, as the edge sees every machine.

It runs a :class:`.simulator.Simulator` paced to real time (or faster), cycles through
its part programs, injects scheduled faults, and yields a :class:`SampleBatch` every
``batch_period_s`` (the edge's 100 ms) with the telemetry averaged to ``sample_rate_hz``,
spindle vibration windows when they are due, and events for alarms and state changes.

It obeys every remote-control command the edge executor forwards (``model.commands``):
feed hold, resume, stop, reset, e-stop, alarm reset, the three overrides, program
select (a program the machine has, or a transferred text with its SHA-256), cycle
start (only of the program whose SHA-256 the command names), MDI and jogs
(incremental, and continuous to the soft limit until a feed hold or stop ends it).
The controller (``controller.py``) decides whether a command is allowed in the
current state; a refusal raises :class:`CommandRejected` and changes nothing. A
production loop (``settings.loop``) ends when someone takes the machine over
(a stop, e-stop, program select, cycle start, MDI or jog): a stopped machine waits
for its operator.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CommandRejected, GCodeError
from ..gcode import ProgramSource, canon
from ..model import (
    SIGNALS,
    AdapterCommand,
    Execution,
    MachineDescriptor,
    MachineEvent,
    Mode,
    SampleBatch,
)
from .config import MachineConfig
from .controller import AXES, text_sha256
from .faults import FaultKind, FaultSchedule
from .planner import Planner
from .program import check_travel, line_kinds, machine_ops, spindle_at_speed
from .simulator import SimOptions, Simulator, decimate, tool_table_from
from .stock import Stock


@dataclass
class VirtualMachineSettings:
    machine_id: str
    site: str
    programs: Sequence[Path]
    seed: int = 0
    speedup: float = 1.0  # machine seconds per wall second; 0 = as fast as possible
    batch_period_s: float = 0.1
    sample_rate_hz: float = 100.0
    loop: bool = True  # start the next program when one completes (a production run)
    faults: FaultSchedule = field(default_factory=FaultSchedule)
    epoch: float | None = None  # wall-clock time of machine time 0 (default: when created)


MAX_PROGRAM_TEXT = 512 * 1024  # larger programs travel by name only
PROGRAM_ANNOUNCE_S = 5.0
MAX_TRANSFER_BYTES = 4 * 2**20  # a transferred program's text, at most
AT_REST_MM = 1e-9  # a commanded position that moved less than this in a tick stands still
# commands that take the machine over from its production loop
TAKEOVER = frozenset({"stop", "estop", "select_program", "cycle_start", "mdi", "jog"})


@dataclass
class SelectedProgram:
    """The program in the controller: its name and the exact text that runs."""

    name: str
    text: str

    @property
    def sha256(self) -> str:
        return text_sha256(self.text)


class OverrideSimulator(Simulator):
    """The simulator with the spindle override applied to the S word (the commanded
    speed), as a controller does; at 100 % it is the plain simulator, bit for bit."""

    spindle_factor: float = 1.0
    speed_word: float = 0.0  # the last S word, rpm

    def handle_event(self, op: canon.CanonOp) -> None:
        super().handle_event(op)
        if type(op) is canon.SetSpindleSpeed:
            self.speed_word = op.rpm  # type: ignore[attr-defined]
            self.apply_spindle_override()

    def apply_spindle_override(self) -> None:
        if self.speed_word:  # before any S word the plain simulator's value stands
            rpm = self.speed_word * self.spindle_factor
            self.speed_cmd = min(rpm, self.config.spindle.max_rpm)


def program_event_value(path: Path) -> dict[str, str | None]:
    """The "program" event's value: the name and, up to MAX_PROGRAM_TEXT bytes, the text,
    so that the hub can show the program with its executing line and draw its path."""
    text: str | None = None
    if path.stat().st_size <= MAX_PROGRAM_TEXT:
        text = path.read_text(errors="replace")
    return {"name": path.name, "text": text}


class VirtualMachineAdapter:
    """A virtual machining centre that produces telemetry like a real one."""

    def __init__(self, config: MachineConfig, settings: VirtualMachineSettings) -> None:
        if not settings.programs:
            raise ValueError(f"{settings.machine_id}: no part programs to run")
        self.config = config
        self.settings = settings
        ticks = max(1, round(settings.batch_period_s * config.servo_rate_hz))
        options = SimOptions(seed=settings.seed, block_ticks=ticks,
                             sample_rate_hz=settings.sample_rate_hz)  # fmt: skip
        self.sim = OverrideSimulator(config, options, settings.faults)
        self.descriptor = MachineDescriptor(
            machine_id=settings.machine_id, name=config.name, site=settings.site,
            model=config.model, extra={"servo_rate_hz": config.servo_rate_hz},
            # the fault ground truth travels with the telemetry, for evaluating diagnosis
            signals=tuple(SIGNALS) + tuple(f"fault.{kind.value}" for kind in FaultKind),
        )  # fmt: skip
        # telemetry carries wall-clock time so that the hub can line machines up
        self.epoch = time.time() if settings.epoch is None else settings.epoch
        self.program_index = 0
        self.closed = False
        self.last_execution: Execution | None = None
        self.program_event: MachineEvent | None = None
        self.program_announced = -1e9  # machine time the program event was last sent
        self.auto = settings.loop  # the production loop runs until someone takes over
        self.programs = {Path(p).name: Path(p) for p in settings.programs}
        self.selected: SelectedProgram | None = None
        self.motion = ""  # what the planner runs: "program", "mdi", "jog" or "" (nothing)
        self.jog_stopping = False  # a jog was told to stop: end it once at rest
        self.moving = False  # the commanded position moved in the last tick
        self.handlers = {
            "feed_hold": self.do_feed_hold, "resume": self.do_resume, "stop": self.do_stop,
            "reset": self.do_reset, "estop": self.do_estop, "alarm_reset": self.do_alarm_reset,
            "feed_override": self.do_override, "rapid_override": self.do_override,
            "spindle_override": self.do_override, "select_program": self.do_select_program,
            "cycle_start": self.do_cycle_start, "mdi": self.do_mdi, "jog": self.do_jog,
        }  # fmt: skip

    @property
    def announce_s(self) -> float:
        """How often the program event is repeated: rarely when it carries a long text."""
        value = self.program_event.value if self.program_event else None
        text = value.get("text") if isinstance(value, dict) else None
        return PROGRAM_ANNOUNCE_S if not text or len(text) < 16_384 else 12 * PROGRAM_ANNOUNCE_S

    def start_next_program(self) -> Path:
        programs = self.settings.programs
        program = programs[self.program_index % len(programs)]
        self.program_index += 1
        self.sim.start_program(program)
        self.sim.controller.program_text = Path(program).read_text(errors="replace")
        self.selected = SelectedProgram(Path(program).name, self.sim.controller.program_text)
        self.motion = "program"
        self.apply_overrides(self.sim.planner)
        return Path(program)

    def step(self) -> tuple[SampleBatch, list[MachineEvent]]:
        """One batch period of machine time (no pacing)."""
        sim = self.sim
        events: list[MachineEvent] = []
        if not sim.running and self.auto and not sim.controller.state.active_alarms():
            path = self.start_next_program()
            self.program_event = MachineEvent(self.settings.machine_id, self.epoch + sim.t,
                                              "program", value=program_event_value(path))  # fmt: skip
            self.program_announced = -1e9
        if self.program_event is not None and sim.t - self.program_announced >= self.announce_s:
            # The same event again (the hub stores it once): an edge that was not yet
            # connected when the program started drops events, and the lab still needs
            # to know which program runs.
            events.append(self.program_event)
            self.program_announced = sim.t
        result = sim.step()
        self.after_step(result.columns)
        factor = max(1, round(self.config.servo_rate_hz / self.settings.sample_rate_hz))
        columns = decimate(result.columns, factor)
        self.add_state_columns(columns)
        t = columns.pop("t") + self.epoch
        waveforms = [dataclasses.replace(w, t0=w.t0 + self.epoch) for w in result.waveforms]
        batch = SampleBatch(self.settings.machine_id, t, columns, waveforms=waveforms)
        for alarm in result.alarms:
            alarm = dataclasses.replace(alarm, raised_at=alarm.raised_at + self.epoch)
            events.append(
                MachineEvent(self.settings.machine_id, alarm.raised_at, "alarm", alarm=alarm)
            )
        execution = sim.controller.state.execution
        if execution != self.last_execution:
            events.append(MachineEvent(self.settings.machine_id, self.epoch + sim.t, "execution",
                                       value=execution.name))  # fmt: skip
            self.last_execution = execution
        return batch, events

    async def batches(self) -> AsyncIterator[SampleBatch | MachineEvent]:
        speedup = self.settings.speedup
        started = time.monotonic()
        machine_start = self.sim.t
        if self.settings.epoch is None:  # machine time runs with the wall clock from here
            self.epoch = time.time() - machine_start
        while not self.closed:
            batch, events = self.step()
            # hand the batch over when its last sample is due, as a real machine would
            if speedup > 0:
                due = started + (self.sim.t - machine_start) / speedup
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            else:
                await asyncio.sleep(0)
            for event in events:
                yield event
            yield batch
            if not self.settings.loop and not self.sim.running:
                return

    def after_step(self, columns: dict[str, np.ndarray]) -> None:
        """Note whether the machine still moves; end a stopped jog once it stands."""
        pos = np.stack([columns[f"{a}.pos_cmd"][-2:] for a in AXES])
        self.moving = pos.shape[1] == 2 and bool((np.abs(pos[:, 1] - pos[:, 0]) > AT_REST_MM).any())
        if self.jog_stopping and not self.moving:
            # the rest of the jog's path is dropped: a new planner where the machine stands
            self.sim.planner = Planner(self.config, start=tuple(self.sim.planner.position))
            self.apply_overrides(self.sim.planner)
            self.jog_stopping = False
            self.motion = ""
            self.sim.controller.on_motion_done()

    def add_state_columns(self, columns: dict[str, np.ndarray]) -> None:
        """The controller's state as signals (the edge's interlock reads ``estop``)."""
        s = self.sim.controller.state
        n = len(columns["t"])
        for name, value in (("estop", float(s.estop)), ("mode", float(s.mode)),
                            ("feed_override", s.feed_override),
                            ("rapid_override", s.rapid_override),
                            ("spindle_override", s.spindle_override)):  # fmt: skip
            columns[name] = np.full(n, value)

    async def command(self, command: AdapterCommand) -> None:
        handler = self.handlers.get(command.name)
        if handler is None:
            raise CommandRejected(f"{self.settings.machine_id}: unknown command {command.name!r}; "
                                  f"known: {', '.join(sorted(self.handlers))}")  # fmt: skip
        args = command.args if isinstance(command.args, dict) else {}
        handler(command.name, args)  # raises CommandRejected before changing anything
        if command.name in TAKEOVER:
            self.auto = False

    # --- stopping, resetting, overrides ---------------------------------------------------

    def do_feed_hold(self, name: str, args: dict) -> None:
        c = self.sim.controller
        if self.motion == "jog":  # a jog has no hold: it stops (and ends once at rest)
            c.require(c.state.execution == Execution.ACTIVE and not self.jog_stopping,
                      "nothing is running to hold")  # fmt: skip
            self.sim.planner.feed_hold()
            self.jog_stopping = True
            return
        c.feed_hold()
        self.sim.planner.feed_hold()

    def do_resume(self, name: str, args: dict) -> None:
        c = self.sim.controller
        c.require(self.motion != "jog", "a stopped jog does not resume; jog again")
        c.resume()
        self.sim.planner.resume()

    def do_stop(self, name: str, args: dict) -> None:
        c = self.sim.controller
        if self.motion == "jog" and c.state.execution == Execution.ACTIVE:
            self.do_feed_hold(name, args)
            return
        c.stop()
        self.sim.planner.feed_hold()

    def do_estop(self, name: str, args: dict) -> None:
        self.sim.controller.estop()
        self.sim.planner.feed_hold()
        if self.motion == "jog":
            self.jog_stopping = True

    def do_reset(self, name: str, args: dict) -> None:
        self.sim.controller.reset()

    def do_alarm_reset(self, name: str, args: dict) -> None:
        self.sim.controller.alarm_reset()

    def do_override(self, name: str, args: dict) -> None:
        which = name.removesuffix("_override")
        percent = number_arg(name, args, "percent")
        self.sim.controller.set_override(which, percent)
        self.apply_overrides(self.sim.planner)

    def apply_overrides(self, planner: Planner) -> None:
        """The controller's overrides on ``planner`` and the spindle (a new planner
        starts at 100 %, the machine's overrides stay)."""
        s = self.sim.controller.state
        planner.set_feed_override(s.feed_override / 100.0)
        planner.set_rapid_override(s.rapid_override / 100.0)
        self.sim.spindle_factor = s.spindle_override / 100.0
        self.sim.apply_spindle_override()

    # --- programs ---------------------------------------------------------------------

    def do_select_program(self, name: str, args: dict) -> None:
        """A program the machine has (by name), or a transferred one (``text`` with its
        ``sha256``, verified here): parsed and checked against the travel first."""
        program = str_arg(name, args, "program")
        if "text" in args:
            text = str_arg(name, args, "text")
            want = str_arg(name, args, "sha256")
            if len(text.encode()) > MAX_TRANSFER_BYTES:
                raise CommandRejected(f"select_program: {program} is over "
                                      f"{MAX_TRANSFER_BYTES} bytes")  # fmt: skip
            if text_sha256(text) != want:
                raise CommandRejected(f"select_program: {program} arrived with SHA-256 "
                                      f"{text_sha256(text)[:12]}…, sent as {want[:12]}…: "
                                      f"the transfer is corrupt")  # fmt: skip
        else:
            path = self.programs.get(program)
            if path is None:
                known = ", ".join(sorted(self.programs)) or "none"
                raise CommandRejected(f"select_program: no program {program!r} on "
                                      f"{self.settings.machine_id} (it has {known})")  # fmt: skip
            text = path.read_text(errors="replace")
        self.program_ops(text, program)  # refuse a program that cannot run, before selecting
        self.sim.controller.select_program(program, text)
        self.selected = SelectedProgram(program, text)
        self.motion = ""
        self.program_event = MachineEvent(self.settings.machine_id, self.epoch + self.sim.t,
                                          "program", value={"name": program, "text": text
                                          if len(text) <= MAX_PROGRAM_TEXT else None})  # fmt: skip
        self.program_announced = -1e9

    def do_cycle_start(self, name: str, args: dict) -> None:
        c = self.sim.controller
        self.require_at_rest()
        sha = args.get("program_sha256")
        if sha is not None and not isinstance(sha, str):
            raise CommandRejected(f"cycle_start: program_sha256 must be text, got {sha!r}")
        c.cycle_start(sha)  # all checks, the checksum among them
        selected = self.selected
        if selected is None:  # loaded into the controller by hand, not through here
            c.state.execution = Execution.READY
            raise CommandRejected("cycle_start: no program selected on this machine")
        try:
            ops = self.program_ops(selected.text, selected.name)
        except CommandRejected:
            c.state.execution = Execution.READY  # checked at select: only a changed machine
            raise
        self.sim.stock = Stock(self.config.stock)  # a fresh blank for every part
        self.run_ops(ops, "program")

    def program_ops(self, text: str, name: str) -> list[canon.CanonOp]:
        """``text`` as machine ops; a G-code error or a soft-limit violation refuses."""
        try:
            ops = machine_ops(ProgramSource.from_text(text, name),
                              tool_table_from(self.config), tuple(self.sim.g54))  # fmt: skip
        except GCodeError as exc:
            raise CommandRejected(f"program error: {exc}") from None
        check_travel(ops, self.config)
        return ops

    def run_ops(self, ops: list[canon.CanonOp], motion: str) -> None:
        """Start the planner on ``ops`` where the machine stands (as Simulator.start_program
        does after its checks)."""
        sim = self.sim
        if sim.options.spindle_at_speed:
            ops = spindle_at_speed(ops, self.config, sim.planner.position)
        sim.rapid_only, sim.feed_line = line_kinds(ops)
        sim.ticks_since_feed = 1 << 30
        planner = Planner(self.config, start=tuple(sim.planner.position))
        self.apply_overrides(planner)
        planner.load(ops)
        sim.planner = planner
        self.motion = motion
        self.jog_stopping = False

    def require_at_rest(self) -> None:
        """New motion only from a standstill. While a program or motion runs or is held
        the controller refuses anyway, with the better reason."""
        running = (Execution.ACTIVE, Execution.INTERRUPTED)
        if self.moving and self.sim.controller.state.execution not in running:
            raise CommandRejected("the machine is still decelerating; try again in a moment")

    # --- MDI and jogs -------------------------------------------------------------------

    def do_mdi(self, name: str, args: dict) -> None:
        """One line of G-code from where the machine stands (fresh modal state: G90, G54,
        no tool length offset), checked for errors and the travel before it runs."""
        line = str_arg(name, args, "line")
        if "\n" in line or "\r" in line or "%" in line:
            raise CommandRejected(f"mdi: one line of G-code without '%', got {line!r}")
        c = self.sim.controller
        self.require_at_rest()
        c.require_operable()  # the checks that need no parsing come first, as the reason
        c.check_mode(Mode.MDI, "MDI")
        c.require_idle()
        x, y, z = (float(v) for v in self.sim.planner.position)
        # the interpreter starts where the machine stands: a G53 move to here (length 0)
        text = f"%\nG53 G0 X{x:.6f} Y{y:.6f} Z{z:.6f}\n{line}\n%\n"
        try:
            ops = self.program_ops(text, "MDI")
        except CommandRejected as exc:
            raise CommandRejected(f"mdi {line!r}: {mdi_reason(exc)}") from None
        c.start_mdi()
        self.run_ops(ops, "mdi")

    def do_jog(self, name: str, args: dict) -> None:
        """Incremental (``distance``) or continuous (``continuous``, ``direction``: to the
        soft limit, until a feed hold or stop ends it; the edge's dead-man sends one)."""
        axis = str_arg(name, args, "axis").lower()
        feed = number_arg(name, args, "feed")
        c = self.sim.controller
        self.require_at_rest()
        c.require(axis in AXES, f"jog: unknown axis {axis!r}; axes are {', '.join(AXES)}")
        c.require_operable()
        i = AXES.index(axis)
        here = self.sim.planner.position
        if args.get("continuous"):
            direction = args.get("direction")
            c.require(direction in (-1, 1) and not isinstance(direction, bool),
                      f"jog: direction must be -1 or 1, got {direction!r}")  # fmt: skip
            target = c.jog_limit(axis, int(direction))  # type: ignore[arg-type]
        else:
            target = float(here[i]) + number_arg(name, args, "distance")
        c.start_jog(axis, target, feed)
        end = [float(v) for v in here]
        end[i] = target
        self.run_ops([canon.SetFeedRate(1, feed), canon.StraightFeed(1, *end)], "jog")

    async def close(self) -> None:
        self.closed = True


def str_arg(command: str, args: dict, key: str) -> str:
    value = args.get(key)
    if not isinstance(value, str) or not value:
        raise CommandRejected(f"{command}: argument {key} must be non-empty text, got {value!r}")
    return value


def number_arg(command: str, args: dict, key: str) -> float:
    value = args.get(key)
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok or not np.isfinite(value):
        raise CommandRejected(f"{command}: argument {key} must be a finite number, got {value!r}")
    return float(value)


def mdi_reason(exc: CommandRejected) -> str:
    """The reason without the wrapper's line numbers (the MDI line is line 3 of it)."""
    text = str(exc)
    marker = "MDI:3:"
    if marker in text:
        col, _, rest = text.split(marker, 1)[1].partition(": ")
        return f"{rest} (column {col})"
    return text.removeprefix("program error: ")
