"""The edge agent at a machine's site: one adapter and one uplink per machine.

``machinetwin edge --config SITE.toml`` runs it. Each adapter's batches are numbered,
buffered durably and sent (see :mod:`.uplink`); its events go out as they happen.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, model_validator

from ..configfile import load_toml
from ..errors import ConfigError
from ..model import Adapter, SampleBatch
from ..protocols.broker import BrokerAddress, BrokerConfig
from .buffer import DurableBuffer
from .executor import ControlConfig
from .uplink import MachineUplink, resend_loop

log = logging.getLogger(__name__)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class BufferConfig(Strict):
    path: Path = Path("edge-buffer.sqlite")
    quota_mb: float = Field(512.0, gt=0)
    fsync: str = Field("batch", pattern="^(batch|always|off)$")


class MachineEntry(Strict):
    id: str = Field(pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    kind: str = Field("virtual", pattern="^(virtual|mtconnect|shdr|opcua|linuxcnc|replay)$")
    programs: list[Path] = []  # kind virtual: the part programs it runs
    url: str | None = None  # kind mtconnect: the agent's URL; kind shdr: the adapter's host[:port]
    device: str | None = None  # kind mtconnect: the device's name or uuid at the agent
    machine_file: Path | None = None
    seed: int = 0
    speedup: float = Field(1.0, ge=0)
    faults: list[str] = []

    @model_validator(mode="after")
    def _source(self) -> MachineEntry:
        if self.kind == "virtual" and not self.programs:
            raise ValueError("a virtual machine needs at least one program in programs")
        return self


class EdgeConfig(Strict):
    site: str
    broker: BrokerConfig = BrokerConfig()
    buffer: BufferConfig = BufferConfig()
    machines: list[MachineEntry] = Field(min_length=1)
    control: ControlConfig | None = None  # remote commands (edge/executor.py); none without


def load_edge_config(path: str | Path) -> EdgeConfig:
    """Read and validate a site file; errors name the file, the key and the problem."""
    config = load_toml(path, EdgeConfig)
    base = Path(path).resolve().parent
    config.broker = config.broker.resolved(base, f"{path}: broker")  # TLS and password files
    for m in config.machines:  # paths in the file are relative to the file
        m.programs = [p if p.is_absolute() else base / p for p in m.programs]
        for p in m.programs:
            if not p.is_file():
                raise ConfigError(f"{path}: machines.{m.id}.programs: no such file {p}")
    return config


def build_adapters(config: EdgeConfig, base: Path | None = None) -> list[Adapter]:
    """The site's adapters; ``base``: the site file's folder (for [control] paths)."""
    from ..machine import load_machine_config
    from ..machine.adapter import VirtualMachineAdapter, VirtualMachineSettings
    from ..machine.faults import FaultSchedule, parse_fault

    adapters: list[Adapter] = []
    for m in config.machines:
        if m.kind == "opcua":  # url opc.tcp://..., device: the MachineTool's BrowseName
            from ..protocols.opcua.client import opcua_adapter

            adapters.append(opcua_adapter(m.id, config.site, m.url, m.device))
            continue
        if m.kind == "linuxcnc":  # the LinuxCNC controller this edge runs on
            from ..protocols.linuxcnc.entry import linuxcnc_adapter

            adapters.append(linuxcnc_adapter(m.id, config.site, m.url))
            continue
        if m.kind == "replay":  # programs: recorded experiments (CSV), speedup: speed factor
            from ..protocols.replay import replay_adapter

            adapters.append(replay_adapter(m.id, config.site, m.programs, m.speedup))
            continue
        if m.kind != "virtual":  # a real machine behind an MTConnect agent or SHDR adapter
            from ..protocols.mtconnect.entry import protocol_adapter

            adapters.append(protocol_adapter(m.kind, m.id, config.site, m.url, m.device))
            continue
        machine = load_machine_config(m.machine_file)
        faults = FaultSchedule([parse_fault(f) for f in m.faults])
        settings = VirtualMachineSettings(m.id, config.site, m.programs, seed=m.seed,
                                          speedup=m.speedup, faults=faults)  # fmt: skip
        adapters.append(VirtualMachineAdapter(machine, settings))
    return with_remote_control(config, adapters, base)


def with_remote_control(
    config: EdgeConfig, adapters: list[Adapter], base: Path | None
) -> list[Adapter]:
    """Each adapter behind its command executor when the site file has [control]."""
    if config.control is None:
        return adapters
    from .executor import with_control

    address = config.broker.address()
    return [with_control(a, config.control, address, base) for a in adapters]


@dataclass
class EdgeAgent:
    """Runs a site's machines until ``stop()``; ``produced`` counts values per machine."""

    adapters: list[Adapter]
    broker: BrokerAddress
    buffer: DurableBuffer
    resend_after_s: float = 5.0
    uplinks: dict[str, MachineUplink] = field(default_factory=dict)
    produced: dict[str, int] = field(default_factory=dict)
    batches: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.stopping = asyncio.Event()
        for adapter in self.adapters:
            machine = adapter.descriptor.machine_id
            self.uplinks[machine] = MachineUplink(adapter.descriptor, self.buffer, self.broker,
                                                  self.resend_after_s)  # fmt: skip
            self.produced[machine] = 0
            self.batches[machine] = 0

    async def run(self, max_batches: int | None = None) -> None:
        for uplink in self.uplinks.values():
            uplink.start()
        resenders = [asyncio.create_task(resend_loop(u)) for u in self.uplinks.values()]
        try:
            await asyncio.gather(*(self._pump(a, max_batches) for a in self.adapters))
        finally:
            for task in resenders:
                task.cancel()

    async def _pump(self, adapter: Adapter, max_batches: int | None) -> None:
        machine = adapter.descriptor.machine_id
        uplink = self.uplinks[machine]
        async for item in adapter.batches():
            if isinstance(item, SampleBatch):
                uplink.submit(item)
                self.produced[machine] += item.n_values
                self.batches[machine] += 1
                if max_batches is not None and self.batches[machine] >= max_batches:
                    break
            else:
                uplink.submit_event(item)
            if self.stopping.is_set():
                break
        await adapter.close()

    def pending(self) -> int:
        return self.buffer.stats().pending_count

    async def drain(self, timeout_s: float = 30.0) -> bool:
        """Wait until the hub has acknowledged everything buffered (True) or time runs out."""
        deadline = asyncio.get_running_loop().time() + timeout_s
        while self.pending() and asyncio.get_running_loop().time() < deadline:
            for uplink in self.uplinks.values():
                uplink.resend_due()
            await asyncio.sleep(0.2)
        return self.pending() == 0

    def stop(self) -> None:
        self.stopping.set()

    def close(self) -> None:
        for uplink in self.uplinks.values():
            uplink.stop()
