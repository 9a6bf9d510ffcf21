"""The ``Adapter`` interface: how the edge sees every machine, virtual or real.

An adapter yields :class:`.batch.SampleBatch` objects (columns of canonical signals,
plus waveforms) and events (alarms, state changes), and accepts commands. The
virtual machine, OPC UA, MTConnect, LinuxCNC and replay adapters all have this shape.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from .alarms import Alarm
from .batch import SampleBatch


@dataclass(frozen=True, slots=True)
class MachineDescriptor:
    """What a machine is: sent with the edge's birth message."""

    machine_id: str
    name: str
    site: str
    model: str = ""
    signals: tuple[str, ...] = ()
    axes: tuple[str, ...] = ("x", "y", "z")
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class MachineEvent:
    """Something that happened at a point in time: an alarm raised or cleared, a state change."""

    machine_id: str
    t: float
    kind: str  # "alarm", "alarm_cleared", "execution", "program", "tool", "part"
    alarm: Alarm | None = None
    value: Any = None


@dataclass(frozen=True, slots=True)
class AdapterCommand:
    """A command as the adapter receives it (after the edge's checks)."""

    name: str  # "cycle_start", "feed_hold", "resume", "stop", "reset", "mdi", "jog", ...
    args: dict[str, Any] = field(default_factory=dict)


@runtime_checkable
class Adapter(Protocol):
    descriptor: MachineDescriptor

    def batches(self) -> AsyncIterator[SampleBatch | MachineEvent]:
        """Samples and events in time order, until the adapter is closed."""
        ...

    async def command(self, command: AdapterCommand) -> None:
        """Execute a command; raises CommandRejected (with the reason) if not possible."""
        ...

    async def close(self) -> None: ...
