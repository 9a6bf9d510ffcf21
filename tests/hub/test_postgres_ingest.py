"""The hub's ingest on the PostgreSQL store: a virtual machine's batches, through the
edge agent and the embedded broker, are stored once each and acknowledged."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from machinetwin.edge.agent import EdgeAgent
from machinetwin.edge.buffer import DurableBuffer
from machinetwin.hub.broker import EmbeddedBroker
from machinetwin.hub.ingest import HubIngest
from machinetwin.hub.postgres_store import PostgresStore
from machinetwin.machine import load_machine_config
from machinetwin.machine.adapter import VirtualMachineAdapter, VirtualMachineSettings
from machinetwin.protocols.broker import BrokerAddress
from postgres_server import schema_for
from waiting import wait_for

PROGRAM = "G21 G90 G54\nT1 M6 G43\nS6000 M3\nG0 X0 Y0 Z5\nG1 Z-1 F600\nG1 X30\nG0 Z5\nM5\nM2\n"
BATCHES = 30


@pytest.mark.service
def test_edge_batches_land_once_in_postgres(postgres_server, tmp_path: Path) -> None:
    program = tmp_path / "part.ngc"
    program.write_text(PROGRAM)
    adapter = VirtualMachineAdapter(
        load_machine_config(), VirtualMachineSettings("hrb-1", "Harbin", [program], speedup=20.0)
    )
    store = PostgresStore(postgres_server.dsn(), schema=schema_for(str(tmp_path)))
    broker = EmbeddedBroker()
    broker.start()
    hub = HubIngest(store, BrokerAddress("127.0.0.1", broker.port))
    hub.start()
    buffer = DurableBuffer(tmp_path / "edge.sqlite", quota_bytes=64 * 2**20)
    agent = EdgeAgent([adapter], BrokerAddress("127.0.0.1", broker.port), buffer)
    try:

        async def scenario() -> bool:
            await agent.run(max_batches=BATCHES)
            return await agent.drain(timeout_s=30.0)

        assert asyncio.run(scenario()), "the edge still holds unacknowledged batches"
        assert wait_for(lambda: store.sequences("hrb-1") == [(0, BATCHES - 1)], 10)
        assert store.count("hrb-1") == agent.produced["hrb-1"] == hub.live["hrb-1"].samples
        assert [d.machine_id for d in store.machines()] == ["hrb-1"]
        assert "x.pos" in store.latest("hrb-1")
    finally:
        agent.close()
        buffer.close()
        hub.stop()
        broker.stop()
        store.close()
