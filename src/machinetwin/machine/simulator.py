"""The virtual machine tool, put together: program → planner → servo, stock, physics.

One :class:`Simulator` is one machine. :meth:`Simulator.step` advances it by a block
of servo ticks (1 kHz; 5 s by default) and returns the block's signals as numpy
columns; everything inside is vectorised over the block. Long blocks make the fixed
costs per block small; so that nothing lags by a block, ``simulate`` ends a block
where a fault starts, and where an alarm stops the program or the program ends (the
record, the clock and the stock stop at that tick), and alarms carry the time of the
tick that raised them. The clock is the simulator's own (``t``), so a
run is as fast as the CPU allows, or paced to real time by the caller, and it is
deterministic for a given seed: every random source is spawned from one seed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import CommandRejected, GCodeError
from ..gcode import ProgramSource, ToolTable, canon
from ..gcode.tooltable import Tool
from ..model import Alarm, AlarmCode, Execution, Mode, Severity, Waveform
from .config import MachineConfig
from .controller import Controller
from .faults import FaultKind, FaultSchedule
from .physics import CuttingModel, EnergyMeter, SpindleModel, feed_per_tooth
from .planner import Planner, SetpointBlock
from .program import check_travel, line_kinds, machine_ops, spindle_at_speed
from .runfile import RunRecord
from .servo import ServoAxes
from .stock import CutResult, Stock
from .vibration import VibrationFaults, VibrationModel, orders_of

AXES = ("x", "y", "z")
SPINDLE_OVERLOAD_PCT = 120.0
OVER_TEMPERATURE_C = 70.0
OVERLOAD_TICKS = 100  # ticks over the limit (0.1 s at 1 kHz) before a spindle overload
BACKLASH_AT_FULL_SEVERITY = 0.05  # mm
ENCODER_NOISE_AT_FULL_SEVERITY = 0.005  # mm
WEAR_RATE_AT_FULL_SEVERITY = 20.0  # times the normal wear rate
BEARING_SEVERITY_SCALE = 2.0  # fault severity 1 → about twice a CWRU 0.007" defect


@dataclass
class SimOptions:
    seed: int = 0
    # servo ticks per step (5 s): per-block costs (planner, stock, physics calls) are
    # shared by more ticks. ``simulate`` still ends a block where a fault starts, where
    # an alarm stops the program and where the program ends, so nothing lags by a block.
    block_ticks: int = 5000
    sample_rate_hz: float = 100.0  # telemetry rate the columns are averaged down to
    vibration_every_s: float = 60.0  # one vibration window this often while the spindle turns
    vibration_duration_s: float = 1.0
    vibration_rate_hz: float = 12_800.0
    # feed moves wait until the spindle reached its speed after M3/M4/S (program.py)
    spindle_at_speed: bool = True


@dataclass
class StepResult:
    columns: dict[str, np.ndarray]
    waveforms: list[Waveform] = field(default_factory=list)
    alarms: list[Alarm] = field(default_factory=list)
    # last tick of the block that belongs to the run when the program ended or an
    # alarm stopped it inside the block (None: the block ran to its end)
    stop_tick: int | None = None


EVENT_OPS = frozenset({
    canon.SetSpindleSpeed, canon.StartSpindleClockwise, canon.StartSpindleCounterclockwise,
    canon.StopSpindleTurning, canon.SelectTool, canon.ChangeTool, canon.FloodOn, canon.MistOn,
    canon.FloodOff, canon.MistOff, canon.ProgramStop, canon.OptionalProgramStop,
    canon.ProgramEnd,
})  # fmt: skip  # what handle_event acts on


def tool_table_from(config: MachineConfig) -> ToolTable:
    """The interpreter's tool table from the machine's tools (length = Z offset, mm)."""
    tools = {
        t.number: Tool(t.number, t.pocket, {"z": t.length}, t.diameter, t.description)
        for t in config.tools
    }
    return ToolTable(tools, source=f"{config.name} tools")


class Simulator:
    """One virtual machining centre, stepped block by block."""

    def __init__(
        self,
        config: MachineConfig,
        options: SimOptions | None = None,
        faults: FaultSchedule | None = None,
    ) -> None:
        self.config = config
        self.options = options or SimOptions()
        self.faults = faults or FaultSchedule()
        self.dt = 1.0 / config.servo_rate_hz
        self.t = 0.0
        servo_seed, vib_seed = np.random.SeedSequence(self.options.seed).spawn(2)
        self.planner = Planner(config)
        self.servo = ServoAxes(config, np.random.default_rng(servo_seed))
        self.stock = Stock(config.stock)
        self.cutting = CuttingModel(config)
        self.spindle = SpindleModel(config)
        self.meter = EnergyMeter(config)
        self.vibration = VibrationModel(config, np.random.default_rng(vib_seed),
                                        rate_hz=self.options.vibration_rate_hz)  # fmt: skip
        self.controller = Controller(config, clock=lambda: self.t)
        self.g54 = np.asarray(config.work_offsets.get("G54", (0.0, 0.0, 0.0)), dtype=float)
        self.tools = {t.number: t for t in config.tools}
        self.tool = 0
        self.selected_tool = 0
        self.speed_cmd = 0.0  # S word, rpm
        self.direction = 0  # +1 M3, -1 M4, 0 M5
        self.coolant = False
        # Boolean lookup tables over program line numbers (index = line): which lines
        # move only at rapid, and which feed. Indexing beats np.isin on sets per block.
        self.rapid_only = np.zeros(1, dtype=bool)
        self.feed_line = np.zeros(1, dtype=bool)
        self.ticks_since_feed = 1 << 30  # servo ticks since the last tick on a feed line
        self.next_vibration_at = 0.0
        self.broken_tools: set[int] = set()
        self.rapid_flags = np.zeros(0, dtype=bool)  # the last block's rapid ticks

    # --- programs ----------------------------------------------------------------------

    def start_program(self, path: str | Path) -> None:
        """Load a program, check it, and press cycle start (homing first if needed)."""
        path = Path(path)
        try:
            source = ProgramSource.from_path(path)
            ops = machine_ops(source, tool_table_from(self.config), tuple(self.g54))
        except GCodeError as exc:
            raise CommandRejected(f"program error: {exc}") from None
        check_travel(ops, self.config)
        if self.options.spindle_at_speed:
            ops = spindle_at_speed(ops, self.config, self.planner.position)
        self.rapid_only, self.feed_line = line_kinds(ops)
        self.ticks_since_feed = 1 << 30
        c = self.controller
        if c.state.estop:
            c.reset()
        if not c.state.all_homed:
            c.set_mode(Mode.MANUAL)
            c.home()
        c.set_mode(Mode.AUTOMATIC)
        c.load_program(path.name, "")
        self.stock = Stock(self.config.stock)  # a fresh blank for every part
        c.cycle_start()
        self.planner = Planner(self.config, start=tuple(self.planner.position))
        self.planner.load(ops)

    @property
    def running(self) -> bool:
        return self.controller.state.execution in (Execution.ACTIVE, Execution.INTERRUPTED)

    # --- one block -------------------------------------------------------------------------

    def step(self, n: int | None = None, truncate: bool = False) -> StepResult:
        """Advance by ``n`` servo ticks (default ``block_ticks``), vectorised over them.

        ``truncate``: when the program ends or an alarm stops it inside the block, end
        the block there (columns, clock and stock), as a whole-program run wants; a
        live machine (the adapter) keeps its fixed block length instead.
        """
        n = n or self.options.block_ticks
        self.apply_faults(n)
        block = self.planner.advance(n)
        t = self.t + self.dt * np.arange(1, n + 1)
        rpm_cmd, tool_per_tick = self.apply_events(block, n)
        stock_state = self.stock.checkpoint() if truncate else None
        cut, cutting, spindle_rpm = self.machine_process(block, t, rpm_cmd, tool_per_tick)
        sp = self.spindle.load(spindle_rpm, cutting["torque"])
        axes = self.servo.step(block.pos, cutting["feed_force"])
        power, energy = self.meter.step(sp.power, axes.power, self.coolant)
        self.t = float(t[-1])
        alarms, stop = self.check_alarms(t, axes, sp, cut, cutting)
        columns = self.block_columns(block, t, tool_per_tick, rpm_cmd, spindle_rpm,
                                     cut, cutting, sp, axes, power, energy)  # fmt: skip
        waveforms = self.maybe_vibration(t, spindle_rpm, cutting, cut)
        state = self.controller.state
        if self.planner.done and state.execution == Execution.ACTIVE:
            self.controller.on_program_end()
            end = self.end_tick(block)
            stop = end if stop is None else min(stop, end)
        if truncate and stop is not None and stop < n - 1:
            self.stop_block_at(stop, columns, block, tool_per_tick, stock_state)
            waveforms = [w for w in waveforms if w.t0 + self.options.vibration_duration_s
                         <= self.t + 1e-9]  # fmt: skip
        return StepResult(columns, waveforms, alarms, stop)

    def block_columns(self, block, t, tools, rpm_cmd, rpm, cut, cutting, sp, axes, power,
                      energy) -> dict[str, np.ndarray]:  # fmt: skip
        """The block's signals as columns of one value per tick."""
        n = len(t)
        columns = {
            "t": t,
            "line": block.line.astype(float),
            "tool": tools.astype(float),
            "feed_cmd": block.feed,
            "feed": self.path_speed(axes.pos) if n > 1 else block.feed,
            "spindle.speed_cmd": rpm_cmd,
            "spindle.speed": rpm,
            "spindle.load": sp.load,
            "spindle.power": sp.power,
            "spindle.temp": sp.temp,
            "power": power,
            "energy": energy,
            "mrr": cut.volume / self.dt,
            "cutting_force": cutting["force"],
            "tool_wear": cutting["wear"],
        }  # fmt: skip
        for i, axis in enumerate(AXES):
            columns[f"{axis}.pos"] = axes.pos[:, i]
            columns[f"{axis}.pos_cmd"] = block.pos[:, i]
            columns[f"{axis}.ferr"] = axes.ferr[:, i]
            columns[f"{axis}.load"] = axes.load[:, i]
        state = self.controller.state
        columns["execution"] = np.full(n, float(state.execution))
        columns["part_count"] = np.full(n, float(state.part_count))
        columns.update(self.faults.ground_truth_over(t))
        return columns

    def path_speed(self, pos: np.ndarray) -> np.ndarray:
        """Actual path speed (mm/min) from positions (n, 3), by central differences."""
        velocity = np.gradient(pos.T, self.dt, axis=1)  # axis-major rows: contiguous
        speed = np.einsum("ij,ij->j", velocity, velocity)
        np.sqrt(speed, out=speed)
        speed *= 60.0
        return speed

    def end_tick(self, block: SetpointBlock) -> int:
        """The tick of this block at which the program's motion settled at its end."""
        end = self.planner.end_time
        n = len(block.t)
        if end is None or n == 0:
            return n - 1
        return int(min(max(round((end - float(block.t[0])) / self.dt), 0), n - 1))

    def stop_block_at(self, stop, columns, block, tools, stock_state) -> None:
        """End the block after tick ``stop``: cut columns, clock and stock back to there."""
        keep = stop + 1
        for name, values in columns.items():
            columns[name] = values[:keep]
        self.t = float(columns["t"][-1])
        self.meter.energy = float(columns["energy"][-1])  # what the run's meta reports
        if stock_state is not None and self.stock.revision != stock_state.revision:
            # the material the tool reached after the stop was never cut: redo the cut
            self.stock.restore(stock_state)
            tool = self.tools.get(int(tools[stop]))
            if tool is not None and (tools[:keep] == tool.number).all():
                tips = block.pos[:keep] - self.g54 - np.array([0.0, 0.0, tool.length])
                self.stock.cut(tips, tool, self.rapid_flags[:keep])

    def apply_events(self, block: SetpointBlock, n: int) -> tuple[np.ndarray, np.ndarray]:
        """Spindle, tool and coolant changes at their ticks; piecewise-constant columns."""
        rpm = np.empty(n)
        tools = np.empty(n, dtype=np.int64)
        start = 0
        # Most events are feed-rate changes (one per CAM line) that the machine's state
        # does not hold: keep only those that change spindle, tool, coolant or program.
        events = [e for e in block.events if type(e.op) in EVENT_OPS]
        for tick, op in sorted(events, key=lambda e: e.tick):
            rpm[start:tick] = self.speed_cmd * self.direction
            tools[start:tick] = self.tool
            start = tick
            self.handle_event(op)
        rpm[start:] = self.speed_cmd * self.direction
        tools[start:] = self.tool
        return rpm, tools

    def handle_event(self, op: canon.CanonOp) -> None:
        t = type(op)
        if t is canon.SetSpindleSpeed:
            self.speed_cmd = min(op.rpm, self.config.spindle.max_rpm)  # type: ignore[attr-defined]
        elif t is canon.StartSpindleClockwise:
            self.direction = 1
        elif t is canon.StartSpindleCounterclockwise:
            self.direction = -1
        elif t is canon.StopSpindleTurning:
            self.direction = 0
        elif t is canon.SelectTool:
            self.selected_tool = op.tool  # type: ignore[attr-defined]
        elif t is canon.ChangeTool:
            self.tool = self.selected_tool
            self.controller.state.tool = self.tool
            self.stock.reset_path()
        elif t is canon.FloodOn or t is canon.MistOn:
            self.coolant = True
        elif t is canon.FloodOff or t is canon.MistOff:
            self.coolant = False
        elif t in (canon.ProgramStop, canon.OptionalProgramStop):
            self.planner.resume()  # the simulated operator presses cycle start at once
        elif t is canon.ProgramEnd:
            self.direction = 0
            self.coolant = False

    def machine_process(self, block: SetpointBlock, t, rpm_cmd, tool_per_tick):
        """Cut the stock along the tool tip's path and compute the cutting physics."""
        n = len(t)
        spindle_rpm = self.spindle.follow(rpm_cmd)
        tool_number = int(tool_per_tick[-1])
        tool = self.tools.get(tool_number)
        if tool is None or (tool_per_tick != tool_number).any():
            # no tool, or a tool change inside the block: no cutting in this block
            cut = CutResult.idle(n, tool.diameter if tool else 0.0)
        else:
            tips = block.pos - self.g54 - np.array([0.0, 0.0, tool.length])
            self.rapid_flags = self.rapid_ticks(block.line)
            cut = self.stock.cut(tips, tool, self.rapid_flags)
        mrr = cut.volume / self.dt
        fz = feed_per_tooth(block.feed, spindle_rpm, tool.flutes if tool else 1)
        if tool is None:
            zeros = np.zeros(n)
            cutting = {"force": zeros, "feed_force": zeros, "tooth_force": zeros, "kc": zeros,
                       "teeth_in_cut": zeros, "torque": zeros, "wear": zeros,
                       "broken": np.zeros(n, bool)}  # fmt: skip
        else:
            samples = self.cutting.forces(t, mrr, cut.ap, cut.ae, fz, spindle_rpm, tool.number)
            cutting = {name: getattr(samples, name) for name in
                       ("force", "feed_force", "tooth_force", "kc", "teeth_in_cut", "torque",
                        "wear", "broken")}  # fmt: skip
        return cut, cutting, spindle_rpm

    def rapid_ticks(self, lines: np.ndarray) -> np.ndarray:
        """Ticks that move at rapid, for the "rapid into material" check.

        Under G64 the planner blends a G1 into the G0 that follows it (and a G0 into the
        G1 after it): for about half a filter window either side of the switch, ticks
        labelled with the G0 line still finish the feed's cut, e.g. the usual G0
        retract out of a slot. Those ticks are not rapids into material; a real rapid
        crash lasts well beyond the blend and is still caught.
        """
        idx = np.clip(lines, 0, len(self.rapid_only) - 1)
        rapid = self.rapid_only[idx]
        feed = self.feed_line[idx]
        n = len(lines)
        ticks = np.arange(n)
        # the last feed tick at or before each tick (carried over from earlier blocks)
        last = np.maximum.accumulate(np.where(feed, ticks, -1 - self.ticks_since_feed))
        self.ticks_since_feed = int(n - 1 - last[-1]) if n else self.ticks_since_feed
        if not rapid.any():
            return rapid
        # the next feed tick after each one, within this block only
        later = np.where(feed, ticks, n + (1 << 30))
        following = np.minimum.accumulate(later[::-1])[::-1]
        blend = self.planner.limits.delay + 1
        return rapid & (ticks - last > blend) & (following - ticks > blend)

    # --- faults and alarms ---------------------------------------------------------------

    def apply_faults(self, n: int) -> None:
        """Fault severities for the coming block of ``n`` ticks (set at its start)."""
        sev = self.faults.severity
        t = self.t
        self.cutting.wear_rate_factor = 1.0 + WEAR_RATE_AT_FULL_SEVERITY * sev(
            FaultKind.TOOL_WEAR, t
        )
        coolant_failed = sev(FaultKind.COOLANT_FAILURE, t) > 0
        self.cutting.coolant_failure = coolant_failed
        self.spindle.coolant_failure = coolant_failed
        self.servo.backlash = np.full(3, BACKLASH_AT_FULL_SEVERITY * sev(FaultKind.BACKLASH, t))
        self.servo.encoder_noise = np.full(3, ENCODER_NOISE_AT_FULL_SEVERITY
                                           * sev(FaultKind.ENCODER_NOISE, t))  # fmt: skip
        horizon = t + n * self.dt  # a breakage inside the block happens at its own time
        for fault in self.faults.faults:
            if (fault.kind == FaultKind.TOOL_BREAKAGE and fault.start <= horizon
                    and self.tool and self.tool not in self.broken_tools):  # fmt: skip
                self.cutting.break_tool(self.tool, fault.start)
                self.broken_tools.add(self.tool)

    def block_length(self, ticks: int, multiple: int = 1) -> int:
        """``ticks``, or fewer so that the block ends where the next fault starts.

        The fault's start is rounded up to a ``multiple`` of ticks (the telemetry's
        decimation), so that the samples stay evenly spaced.
        """
        start = self.faults.next_start(self.t)
        if start is None:
            return ticks
        until = math.ceil((start - self.t) / self.dt - 1e-9)
        until = -(-until // multiple) * multiple
        return max(multiple, min(ticks, until))

    def check_alarms(self, t, axes, sp, cut, cutting) -> tuple[list[Alarm], int | None]:
        """Alarms the block raised, each at the tick its cause appeared.

        Returns them and the first tick at which one of them stopped the program.
        """
        c = self.controller
        raised: list[Alarm] = []
        stop: list[int] = []

        def alarm(tick, code: AlarmCode, severity: Severity, message: str, source: str) -> None:
            before = len(c.state.alarms)
            running = self.running
            a = c.raise_alarm(code, severity, message, source, at=float(t[tick]))
            if len(c.state.alarms) > before:
                raised.append(a)
                if running and not self.running:
                    stop.append(tick)

        for i, axis in enumerate(AXES):
            over = np.flatnonzero(axes.over_limit[:, i])
            if len(over):
                worst = float(np.abs(axes.ferr[:, i]).max())
                alarm(int(over[0]), AlarmCode.FOLLOWING_ERROR, Severity.FAULT,
                      f"{axis.upper()} following error {worst:.3f} mm over its limit", axis)  # fmt: skip
        over = np.flatnonzero(sp.load > SPINDLE_OVERLOAD_PCT)
        if len(over) > OVERLOAD_TICKS:  # sustained for 0.1 s
            alarm(int(over[OVERLOAD_TICKS]), AlarmCode.SPINDLE_OVERLOAD, Severity.FAULT,
                  f"spindle load {float(sp.load.max()):.0f} % above {SPINDLE_OVERLOAD_PCT:.0f} %",
                  "spindle")  # fmt: skip
        if float(sp.temp[-1]) > OVER_TEMPERATURE_C:
            cool = np.flatnonzero(sp.temp <= OVER_TEMPERATURE_C)
            alarm(int(cool[-1]) + 1 if len(cool) else 0, AlarmCode.OVER_TEMPERATURE,
                  Severity.WARNING, f"spindle temperature {float(sp.temp[-1]):.1f} °C",
                  "spindle")  # fmt: skip
        broken = np.flatnonzero(cutting["broken"])
        if len(broken):
            alarm(int(broken[0]), AlarmCode.TOOL_BREAKAGE, Severity.FAULT,
                  f"tool T{self.tool} broken", "spindle")  # fmt: skip
        rapid = np.flatnonzero(cut.rapid_collision)
        if len(rapid):
            alarm(int(rapid[0]), AlarmCode.COLLISION, Severity.CRITICAL,
                  "rapid move into material", "program")  # fmt: skip
        holder = np.flatnonzero(cut.holder_collision)
        if len(holder):
            alarm(int(holder[0]), AlarmCode.COLLISION, Severity.CRITICAL,
                  "tool holder touched the part", "spindle")  # fmt: skip
        if raised and not self.running:
            self.planner.feed_hold()
        return raised, min(stop) if stop else None

    def maybe_vibration(
        self, t: np.ndarray, rpm: np.ndarray, cutting: dict, cut: CutResult
    ) -> list[Waveform]:
        """Vibration windows due in this block (one every ``vibration_every_s`` of turning).

        A window ends at the first tick at or after the time it is due at which the
        spindle turned (mean over the window) at 60 rpm or more; its inputs are the
        means over the window's ticks in this block.
        """
        opts = self.options
        if opts.vibration_every_s <= 0 or t[-1] < self.next_vibration_at:
            return []
        n = len(t)
        span = max(1, min(n, round(opts.vibration_duration_s / self.dt)))
        speed = np.abs(rpm)
        # mean |rpm| over the span of ticks ending at each tick from span - 1 on
        total = np.concatenate(([0.0], np.cumsum(speed)))
        mean = (total[span:] - total[:-span]) / span
        ends = np.arange(span - 1, n)
        out = []
        while True:
            due = (t[ends] >= self.next_vibration_at - 1e-9) & (mean >= 60.0)
            hit = np.flatnonzero(due)
            if not len(hit):
                return out
            end = int(ends[hit[0]])
            out.append(self.vibration_window(t[end], slice(end + 1 - span, end + 1), rpm,
                                             cutting, cut))  # fmt: skip
            self.next_vibration_at = float(t[end]) + opts.vibration_every_s

    def vibration_window(
        self, t_end: float, ticks: slice, rpm: np.ndarray, cutting: dict, cut: CutResult
    ) -> Waveform:
        duration = self.options.vibration_duration_s
        mean_rpm = float(np.abs(rpm[ticks]).mean())
        sev = self.faults.severity
        faults = VibrationFaults(
            outer_race=BEARING_SEVERITY_SCALE * sev(FaultKind.BEARING_OUTER, t_end),
            inner_race=BEARING_SEVERITY_SCALE * sev(FaultKind.BEARING_INNER, t_end),
            ball=BEARING_SEVERITY_SCALE * sev(FaultKind.BEARING_BALL, t_end),
        )
        tool = self.tools.get(self.tool)
        values = self.vibration.waveform(
            t_end - duration, duration, mean_rpm,
            tooth_force=float(cutting["tooth_force"][ticks].mean()),
            flutes=tool.flutes if tool else 1, faults=faults,
            depth_of_cut=float(cut.ap[ticks].mean()), kc=float(cutting["kc"][ticks].mean()),
            teeth_in_cut=float(cutting["teeth_in_cut"][ticks].mean()),
        )  # fmt: skip
        return Waveform("spindle.vib", t_end - duration, self.vibration.rate_hz, values, mean_rpm)


DISCRETE = frozenset({"t", "line", "tool", "execution", "part_count", "energy"})


def decimate(columns: dict[str, np.ndarray], factor: int) -> dict[str, np.ndarray]:
    """Average continuous signals over ``factor`` ticks; keep the last of discrete ones.

    A shorter last group (a block that ended early) makes one more sample of its own.
    The continuous columns are averaged together (see ``group_means``): a few numpy
    calls per block instead of a mean per column.
    """
    n = len(columns["t"])
    if factor <= 1 or n == 0:
        return columns
    full = n // factor * factor
    continuous = [k for k in columns if k not in DISCRETE and not k.startswith("fault.")]
    means = dict(zip(continuous, group_means([columns[k] for k in continuous], full, factor),
                     strict=True))  # fmt: skip
    out = {}
    for name, values in columns.items():
        if name in means:
            v = means[name]
            tail = values[full:].mean(keepdims=True) if full < n else None
        else:
            v, tail = values[factor - 1 : full : factor], values[-1:]
        out[name] = np.concatenate((v, tail)) if full < n else v
    return out


def group_means(columns: list[np.ndarray], full: int, factor: int) -> np.ndarray:
    """Means over consecutive groups of ``factor`` of the first ``full`` values of each
    column, as rows of one array: the columns stacked into one (columns, groups,
    factor) array, summed by ``factor`` strided additions (a fixed order, so the same
    input always gives the same bits)."""
    groups = np.stack([c[:full] for c in columns]).reshape(len(columns), -1, factor)
    total = groups[:, :, 0].copy()
    for j in range(1, factor):
        total += groups[:, :, j]
    total /= factor
    return total


def simulate(
    program: str | Path,
    config: MachineConfig,
    options: SimOptions | None = None,
    faults: FaultSchedule | None = None,
    max_time_s: float = 24 * 3600.0,
    progress: Callable[[float], None] | None = None,
) -> RunRecord:
    """Run one program to its end (or an alarm that stops it) as fast as possible."""
    sim = Simulator(config, options, faults)
    sim.start_program(program)
    opts = sim.options
    factor = max(1, round(config.servo_rate_hz / opts.sample_rate_hz))
    chunks: list[dict[str, np.ndarray]] = []
    waveforms: list[Waveform] = []
    while sim.running and sim.t < max_time_s:
        result = sim.step(sim.block_length(opts.block_ticks, factor), truncate=True)
        chunks.append(decimate(result.columns, factor))
        waveforms.extend(result.waveforms)
        if progress:
            progress(sim.t)
        if sim.controller.state.execution == Execution.STOPPED:
            break
    columns = {name: np.concatenate([c[name] for c in chunks]) for name in chunks[0]}
    state = sim.controller.state
    meta = {
        "program": Path(program).name, "machine": config.name, "seed": opts.seed,
        "duration_s": round(sim.t, 3), "execution": state.execution.name,
        "part_count": state.part_count, "removed_volume_mm3": round(sim.stock.removed_volume, 1),
        "energy_kwh": round(sim.meter.energy / 3.6e6, 4),
        "faults": [f"{f.kind.value}:{f.severity}@{f.start}" for f in sim.faults.faults],
        "bearing_orders": dataclasses.asdict(orders_of(config.spindle.bearing)),
    }  # fmt: skip
    return RunRecord(columns, list(state.alarms), waveforms, sim.stock.heights.copy(),
                     sim.stock.grid, tuple(float(v) for v in sim.stock.origin), meta)  # fmt: skip
