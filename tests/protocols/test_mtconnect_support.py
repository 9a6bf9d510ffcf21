"""Helpers shared by the MTConnect and SHDR tests (no tests here): machines, taps, collecting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import numpy as np

from machinetwin.machine import load_machine_config
from machinetwin.machine.adapter import VirtualMachineAdapter, VirtualMachineSettings
from machinetwin.model import AdapterCommand, MachineDescriptor, MachineEvent, SampleBatch

PROGRAM = "G21 G90 G54\nT1 M6 G43\nS6000 M3\nG0 X0 Y0 Z5\nG1 Z-1 F600\nG1 X20\nG0 Z5\nM5\nM2\n"


def virtual_machine(tmp_path: Path, machine_id: str = "vmc1", speedup: float = 1.0):
    program = tmp_path / "short.ngc"
    program.write_text(PROGRAM)
    config = load_machine_config()
    settings = VirtualMachineSettings(machine_id, "Harbin", [program], speedup=speedup)
    return VirtualMachineAdapter(config, settings), config


class Tap:
    """An Adapter that passes another's items on and keeps a copy (the ground truth)."""

    def __init__(self, adapter) -> None:
        self.adapter = adapter
        self.descriptor = adapter.descriptor
        self.items: list[SampleBatch | MachineEvent] = []

    async def batches(self) -> AsyncIterator[SampleBatch | MachineEvent]:
        async for item in self.adapter.batches():
            self.items.append(item)
            yield item

    async def command(self, command: AdapterCommand) -> None:
        await self.adapter.command(command)

    async def close(self) -> None:
        await self.adapter.close()


class Scripted:
    """An Adapter that yields given items, then stays connected and silent until closed."""

    def __init__(self, machine_id: str, items: list[SampleBatch | MachineEvent]) -> None:
        self.descriptor = MachineDescriptor(machine_id, machine_id, "lab")
        self.items = items
        self.closed = asyncio.Event()

    async def batches(self) -> AsyncIterator[SampleBatch | MachineEvent]:
        for item in self.items:
            yield item
        await self.closed.wait()

    async def command(self, command: AdapterCommand) -> None:
        return None

    async def close(self) -> None:
        self.closed.set()


async def collect(adapter, seconds: float) -> list[SampleBatch | MachineEvent]:
    """Everything an adapter yields within ``seconds``."""
    out: list[SampleBatch | MachineEvent] = []

    async def run() -> None:
        async for item in adapter.batches():
            out.append(item)

    task = asyncio.create_task(run())
    await asyncio.sleep(seconds)
    await adapter.close()
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    return out


def series(items: list, signal: str) -> tuple[np.ndarray, np.ndarray]:
    batches = [b for b in items if isinstance(b, SampleBatch) and signal in b.columns]
    if not batches:
        return np.zeros(0), np.zeros(0)
    return (np.concatenate([b.t for b in batches]),
            np.concatenate([b.columns[signal] for b in batches]))  # fmt: skip


async def until(condition, timeout_s: float = 15.0, every_s: float = 0.1) -> bool:
    """Poll an async or plain condition until it holds (the machine is shared: no fixed sleeps)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result or asyncio.get_running_loop().time() > deadline:
            return bool(result)
        await asyncio.sleep(every_s)
