"""The demo's fourth machine: a real (simulated) LinuxCNC controller running part programs.

``make demo ARGS=--with-linuxcnc`` adds it. :func:`start_demo_machine` starts a headless
LinuxCNC 2.9 shaped like the default machine and returns it with the settings of its
adapter; :func:`run_programs` is the operator at the machine: it opens and starts the
part programs one after another, through the adapter's own commands, for as long as
the demo runs (and again after LinuxCNC restarts).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from pathlib import Path

from ...errors import CommandRejected
from ...model import AdapterCommand, Execution
from .adapter import LinuxCNCAdapter, LinuxCNCSettings
from .sim import SimController

log = logging.getLogger(__name__)
RETRY_S = 5.0


def start_demo_machine(machine_id: str = "harbin-lcnc-1",
                       site: str = "Harbin") -> tuple[SimController, LinuxCNCSettings]:  # fmt: skip
    """Start the simulator (blocking, a few seconds; LinuxCNCError says why it cannot) and
    return it with its adapter's settings. Stop it with ``sim.close()``."""
    sim = SimController(lock_wait_s=0)
    try:
        sim.start()
    except BaseException:
        sim.close()
        raise
    return sim, LinuxCNCSettings(machine_id, site, env=sim.env)


async def run_programs(adapter: LinuxCNCAdapter, programs: Sequence[Path],
                       pause_s: float = 2.0) -> None:  # fmt: skip
    """Run ``programs`` in a loop on the controller until cancelled."""
    if not programs:
        raise ValueError(f"{adapter.descriptor.machine_id}: no part programs to run")
    k = 0
    while True:
        path = Path(programs[k % len(programs)]).resolve()
        try:
            await _run_one(adapter, path)
            k += 1
            await asyncio.sleep(pause_s)
        except CommandRejected as e:  # not connected yet, or LinuxCNC said no: try again
            log.info("%s: %s", adapter.descriptor.machine_id, e)
            await asyncio.sleep(RETRY_S)


async def _run_one(adapter: LinuxCNCAdapter, path: Path) -> None:
    while not adapter.connected:
        await asyncio.sleep(0.2)
    await adapter.command(AdapterCommand("open", {"path": str(path)}))
    await adapter.command(AdapterCommand("run"))
    # wait for the program to start, then to end (completed, stopped or refused)
    for _ in range(50):
        if adapter.execution in (Execution.ACTIVE, Execution.INTERRUPTED):
            break
        await asyncio.sleep(0.1)
    while adapter.connected and adapter.execution in (Execution.ACTIVE, Execution.INTERRUPTED):
        await asyncio.sleep(0.2)
