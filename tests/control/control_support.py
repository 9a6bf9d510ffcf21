"""Helpers of the remote-control tests: a real virtual machine and its executor."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from machinetwin.edge.agent import EdgeAgent
from machinetwin.edge.buffer import DurableBuffer
from machinetwin.edge.executor import (
    CommandChannel,
    CommandExecutor,
    CommandLedger,
    ControlledAdapter,
)
from machinetwin.edge.permit import PermitStore
from machinetwin.hub.commands import CommandSigner
from machinetwin.machine import load_machine_config
from machinetwin.machine.adapter import VirtualMachineAdapter, VirtualMachineSettings
from machinetwin.model.commands import Command, CommandReply, new_command
from machinetwin.protocols.broker import BrokerAddress
from waiting import wait_for

MACHINE = "harbin-vmc-1"
PROGRAM = "G21 G90 G54\nT1 M6 G43\nS6000 M3\nG0 X0 Y0 Z5\nG1 Z-1 F600\nG1 X30\nG0 Z5\nM5\nM2\n"


@dataclass
class Site:
    """One machine's edge: the virtual machine, its executor and what it answered."""

    adapter: VirtualMachineAdapter
    executor: CommandExecutor
    permits: PermitStore
    ledger_path: Path
    signer: CommandSigner
    replies: list[CommandReply] = field(default_factory=list)

    def command(self, name: str, args: dict[str, Any] | None = None, *, ttl_s: float = 10.0,
                now: float | None = None) -> Command:  # fmt: skip
        return new_command("alice", MACHINE, name, args, now=time.time() if now is None else now,
                           ttl_s=ttl_s)  # fmt: skip

    def step(self, n: int = 1) -> None:
        """Run the machine ``n`` batch periods and let the executor see what it reported."""
        for _ in range(n):
            batch, events = self.adapter.step()
            for event in events:
                self.executor.observe(event)
            self.executor.observe(batch)

    def answers(self, command_id: str) -> list[str]:
        return [r.status for r in self.replies if r.id == command_id]

    def reason(self, command_id: str) -> str:
        return next(r.reason for r in reversed(self.replies) if r.id == command_id)


def virtual_machine(tmp_path: Path, machine: str = MACHINE) -> VirtualMachineAdapter:
    program = tmp_path / "part.ngc"
    program.write_text(PROGRAM)
    settings = VirtualMachineSettings(machine, "harbin", [program], speedup=0.0)
    return VirtualMachineAdapter(load_machine_config(), settings)


def make_executor(site_dir: Path, adapter, signer: CommandSigner,
                  replies: list[CommandReply]) -> CommandExecutor:  # fmt: skip
    return CommandExecutor(adapter, signer.key.public_key(), PermitStore(site_dir / "permits.sqlite"),
                           CommandLedger(site_dir / "commands.sqlite"), replies.append)  # fmt: skip


@dataclass
class Edge:
    """The edge agent of one site running in its own thread and event loop."""

    agent: EdgeAgent
    adapter: ControlledAdapter
    buffer: DurableBuffer
    thread: threading.Thread

    @property
    def executor(self):
        return self.adapter.executor

    @property
    def machine(self):
        return self.adapter.inner.sim.controller.state

    def stop(self) -> None:
        self.agent.stop()
        self.thread.join(10)
        self.agent.close()
        self.executor.ledger.close()
        self.buffer.close()


def start_edge(site_dir: Path, signer: CommandSigner, port: int,
               address: BrokerAddress | None = None) -> Edge:  # fmt: skip
    """The site's edge on the broker at ``port`` (or ``address``: TLS, credentials)."""
    vm = virtual_machine(site_dir)
    vm.settings.speedup = 1.0  # real time: the dead-man and the state age are wall-clock
    executor = make_executor(site_dir, vm, signer, [])
    address = address or BrokerAddress("127.0.0.1", port, keepalive_s=2)
    adapter = ControlledAdapter(vm, executor, CommandChannel(executor, address))
    buffer = DurableBuffer(site_dir / "edge-buffer.sqlite", quota_bytes=64 * 2**20)
    agent = EdgeAgent([adapter], address, buffer, resend_after_s=2.0)
    thread = threading.Thread(target=lambda: asyncio.run(agent.run()), daemon=True)
    thread.start()
    assert wait_for(adapter.channel.connected.is_set, 10), "command channel did not connect"
    return Edge(agent, adapter, buffer, thread)
