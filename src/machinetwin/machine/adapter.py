"""The virtual machine behind the ``Adapter`` interface, as the edge sees every machine.

It runs a :class:`.simulator.Simulator` paced to real time (or faster), cycles through
its part programs, injects scheduled faults, and yields a :class:`SampleBatch` every
``batch_period_s`` (the edge's 100 ms) with the telemetry averaged to ``sample_rate_hz``,
spindle vibration windows when they are due, and events for alarms and state changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import CommandRejected
from ..model import (
    SIGNALS,
    AdapterCommand,
    Execution,
    MachineDescriptor,
    MachineEvent,
    SampleBatch,
)
from .config import MachineConfig
from .faults import FaultKind, FaultSchedule
from .simulator import SimOptions, Simulator, decimate


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
        self.sim = Simulator(config, options, settings.faults)
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
        return Path(program)

    def step(self) -> tuple[SampleBatch, list[MachineEvent]]:
        """One batch period of machine time (no pacing)."""
        sim = self.sim
        events: list[MachineEvent] = []
        if not sim.running and self.settings.loop and not sim.controller.state.active_alarms():
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
        factor = max(1, round(self.config.servo_rate_hz / self.settings.sample_rate_hz))
        columns = decimate(result.columns, factor)
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

    async def command(self, command: AdapterCommand) -> None:
        c = self.sim.controller
        name = command.name
        if name == "feed_hold":
            c.feed_hold()
            self.sim.planner.feed_hold()
        elif name == "resume":
            c.resume()
            self.sim.planner.resume()
        elif name == "stop":
            c.stop()
            self.sim.planner.feed_hold()
        elif name == "reset":
            c.reset()
        elif name == "estop":
            c.estop()
            self.sim.planner.feed_hold()
        elif name == "feed_override":
            percent = float(command.args["percent"])
            c.set_override("feed", percent)
            self.sim.planner.set_feed_override(percent / 100.0)
        else:
            raise CommandRejected(f"{self.settings.machine_id}: unknown command {name!r}")

    async def close(self) -> None:
        self.closed = True
