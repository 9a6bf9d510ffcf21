"""Edge to hub end to end: virtual machines over emulated links into the store, nothing lost.

Real parts throughout: the embedded MQTT broker, the link emulator (TCP), the edge's
SQLite buffer, the hub's DuckDB store. The link is cut in the middle of the run; after
it comes back every batch must be stored exactly once.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from machinetwin.edge.agent import EdgeAgent
from machinetwin.edge.buffer import DurableBuffer
from machinetwin.hub.broker import EmbeddedBroker
from machinetwin.hub.duckdb_store import DuckDBStore
from machinetwin.hub.ingest import HubIngest
from machinetwin.machine import load_machine_config
from machinetwin.machine.adapter import VirtualMachineAdapter, VirtualMachineSettings
from machinetwin.net import BackgroundLink, LinkEmulator, LinkProfile
from machinetwin.protocols.broker import BrokerAddress
from waiting import wait_for

PROGRAM = "G21 G90 G54\nT1 M6 G43\nS6000 M3\nG0 X0 Y0 Z5\nG1 Z-1 F600\nG1 X30\nG0 Z5\nM5\nM2\n"
BATCHES = 60


@pytest.fixture
def broker():
    b = EmbeddedBroker()
    b.start()
    yield b
    b.stop()


def test_every_batch_arrives_once_across_a_link_cut(broker: EmbeddedBroker, tmp_path: Path) -> None:
    program = tmp_path / "part.ngc"
    program.write_text(PROGRAM)
    config = load_machine_config()
    machines = ["harbin-vmc-1", "tianjin-vmc-1"]
    adapters = [
        VirtualMachineAdapter(
            config, VirtualMachineSettings(m, m.split("-")[0], [program], seed=i, speedup=20.0)
        )  # fmt: skip
        for i, m in enumerate(machines)
    ]
    store = DuckDBStore(tmp_path / "hub.duckdb")
    hub = HubIngest(store, BrokerAddress("127.0.0.1", broker.port))
    hub.start()
    profile = LinkProfile(latency_ms=15.0, jitter_ms=2.0)
    with BackgroundLink(LinkEmulator("127.0.0.1", broker.port, profile, seed=1)) as link:
        buffer = DurableBuffer(tmp_path / "edge.sqlite", quota_bytes=256 * 2**20)
        agent = EdgeAgent(adapters, BrokerAddress("127.0.0.1", link.port, keepalive_s=2), buffer,
                          resend_after_s=2.0)  # fmt: skip

        async def scenario() -> bool:
            run = asyncio.create_task(agent.run(max_batches=BATCHES))
            await asyncio.sleep(0.8)
            link.cut()
            await asyncio.sleep(1.5)  # the machines keep producing into the buffer
            link.restore()
            await run
            return await agent.drain(timeout_s=40.0)

        drained = asyncio.run(scenario())
        agent.close()
        buffer.close()
    assert drained, "the edge still holds unacknowledged batches"
    assert wait_for(lambda: all(store.sequences(m) == [(0, BATCHES - 1)] for m in machines), 10)
    hub.stop()
    for m in machines:
        assert store.sequences(m) == [(0, BATCHES - 1)]  # none lost, none twice
        assert hub.live[m].batches == BATCHES
        assert hub.live[m].samples == agent.produced[m]
    assert hub.counters.stored == BATCHES * len(machines)
    assert not hub.counters.rejected
    assert {d.machine_id for d in store.machines()} == set(machines)
    store.close()


def test_malformed_messages_are_rejected_and_counted(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    import paho.mqtt.client as mqtt

    store = DuckDBStore(tmp_path / "hub.duckdb")
    hub = HubIngest(store, BrokerAddress("127.0.0.1", broker.port))
    hub.start()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="evil")
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    time.sleep(0.5)
    for payload in (b"", b"MTSB garbage", bytes(range(256)) * 10):
        client.publish("mt/v1/x1/data", payload, qos=1).wait_for_publish(5)
    client.publish("mt/v1/x1/birth", b"{not json", qos=1).wait_for_publish(5)
    assert wait_for(lambda: sum(hub.counters.rejected.values()) >= 4, 10)
    client.loop_stop()
    hub.stop()
    assert hub.counters.stored == 0
    assert store.machines() == []
    store.close()
