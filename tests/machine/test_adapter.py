"""The virtual machine as an Adapter: batches every period, events, commands, looping."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from machinetwin.errors import CommandRejected
from machinetwin.machine import load_machine_config
from machinetwin.machine.adapter import VirtualMachineAdapter, VirtualMachineSettings
from machinetwin.model import Adapter, AdapterCommand, MachineEvent, SampleBatch

PROGRAM = "G21 G90 G54\nT1 M6 G43\nS6000 M3\nG0 X0 Y0 Z5\nG1 Z-1 F600\nG1 X20\nG0 Z5\nM5\nM2\n"


@pytest.fixture
def program(tmp_path: Path) -> Path:
    path = tmp_path / "short.ngc"
    path.write_text(PROGRAM)
    return path


def adapter_for(program: Path, **settings) -> VirtualMachineAdapter:
    return VirtualMachineAdapter(
        load_machine_config(),
        VirtualMachineSettings(
            "harbin-vmc-1", "Harbin", [program], speedup=0, epoch=0.0, **settings
        ),
    )


async def collect(adapter: VirtualMachineAdapter, batches: int) -> list:
    out = []
    async for item in adapter.batches():
        out.append(item)
        if sum(isinstance(i, SampleBatch) for i in out) >= batches:
            break
    return out


def test_is_an_adapter(program: Path) -> None:
    adapter = adapter_for(program)
    assert isinstance(adapter, Adapter)
    assert adapter.descriptor.site == "Harbin"
    assert "spindle.load" in adapter.descriptor.signals


def test_batches_cover_time_without_gaps_and_programs_loop(program: Path) -> None:
    adapter = adapter_for(program)
    items = asyncio.run(collect(adapter, 400))
    batches = [i for i in items if isinstance(i, SampleBatch)]
    t = np.concatenate([b.t for b in batches])
    assert np.allclose(np.diff(t), 0.01)  # 100 Hz telemetry, one batch per 100 ms
    assert all(len(b) == 10 for b in batches)
    parts = np.concatenate([b.columns["part_count"] for b in batches])
    assert parts.max() >= 2  # the program ran more than once
    kinds = {i.kind for i in items if isinstance(i, MachineEvent)}
    assert {"program", "execution"} <= kinds


def test_commands(program: Path) -> None:
    adapter = adapter_for(program)

    async def scenario() -> None:
        await collect(adapter, 20)
        await adapter.command(AdapterCommand("feed_hold"))
        await adapter.command(AdapterCommand("resume"))
        with pytest.raises(CommandRejected, match="unknown command"):
            await adapter.command(AdapterCommand("self_destruct"))
        await adapter.close()

    asyncio.run(scenario())
