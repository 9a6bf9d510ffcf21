"""Run virtual machines offline, as fast as they simulate, straight into a hub store.

What a week of a fleet looks like without waiting a week: reports, analytics
evaluations and their tests fill a store this way. The machines are the same virtual
machines the demo runs (``VirtualMachineAdapter``), stepped without pacing; their
batches and events go into the store the way the hub's ingest writes them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from .adapter import VirtualMachineAdapter, VirtualMachineSettings
from .config import load_machine_config
from .faults import FaultSchedule, parse_fault

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"
BATCH_PERIOD_S = 1.0  # long steps: the simulator's per-step overhead is paid rarely
WRITE_EVERY = 60  # batches per store transaction


@dataclass(frozen=True)
class FleetMachine:
    machine_id: str
    site: str
    programs: tuple[Path, ...] = field(
        default_factory=lambda: tuple(EXAMPLES / p for p in ("pocket.ngc", "face.ngc", "drill.ngc"))
    )
    faults: tuple[str, ...] = ()  # KIND:SEVERITY@TIME, machine time from the run's start
    seed: int = 0


def run_fleet_into_store(store, machines: Sequence[FleetMachine], duration_s: float,  # noqa: ANN001 - hub.Store
                         epoch: float, *, sample_rate_hz: float = 10.0,
                         progress: Callable[[float], None] | None = None) -> int:  # fmt: skip
    """Simulate each machine for ``duration_s`` from wall-clock ``epoch`` and store it;
    returns the number of batches stored. ``progress`` gets the fraction done."""
    config = load_machine_config()
    stored = 0
    for i, m in enumerate(machines):
        faults = FaultSchedule([parse_fault(f) for f in m.faults])
        settings = VirtualMachineSettings(m.machine_id, m.site, list(m.programs), seed=m.seed,
                                          speedup=0.0, sample_rate_hz=sample_rate_hz,
                                          batch_period_s=BATCH_PERIOD_S,
                                          faults=faults, epoch=epoch)  # fmt: skip
        adapter = VirtualMachineAdapter(config, settings)
        store.upsert_machine(adapter.descriptor)
        stored += _run_one(store, adapter, duration_s,
                           lambda f, i=i: progress((i + f) / len(machines)) if progress else None)  # fmt: skip
    return stored


def _run_one(store, adapter: VirtualMachineAdapter, duration_s: float,  # noqa: ANN001
             progress: Callable[[float], None]) -> int:  # fmt: skip
    pending, seq = [], 0
    while adapter.sim.t < duration_s:
        batch, events = adapter.step()
        for event in events:
            store.write_event(event)
            if event.kind == "alarm" and event.alarm is not None:
                store.write_alarm(event.machine_id, event.alarm)
        pending.append(replace(batch, seq=seq))
        seq += 1
        if len(pending) >= WRITE_EVERY:
            store.write_batches(pending)
            pending.clear()
            progress(adapter.sim.t / duration_s)
    if pending:
        store.write_batches(pending)
    return seq
