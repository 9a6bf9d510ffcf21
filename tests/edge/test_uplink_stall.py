"""The uplink renews a connection that is up but carries no acks while batches wait.

A broker can lose a session's subscription (amqtt's clean-up of an old session races a
fast reconnect of the same client id) and the client cannot see it: pings still answer,
publishes still get PUBACKs, only the hub's acks never arrive, and the edge's buffer
never drains. Here the edge's ack subscription is really removed at the real (embedded)
broker by an UNSUBSCRIBE; the real hub keeps storing and acknowledging into the void.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from machinetwin.edge.buffer import DurableBuffer
from machinetwin.edge.uplink import MachineUplink
from machinetwin.hub.broker import EmbeddedBroker
from machinetwin.hub.duckdb_store import DuckDBStore
from machinetwin.hub.ingest import HubIngest
from machinetwin.model import MachineDescriptor, SampleBatch
from machinetwin.protocols import topics
from machinetwin.protocols.broker import BrokerAddress
from waiting import wait_for

MACHINE = "harbin-vmc-1"


@pytest.fixture
def broker() -> Iterator[EmbeddedBroker]:
    b = EmbeddedBroker()
    b.start()
    yield b
    b.stop()


@pytest.fixture
def hub(broker: EmbeddedBroker) -> Iterator[HubIngest]:
    store = DuckDBStore(":memory:")
    ingest = HubIngest(store, BrokerAddress("127.0.0.1", broker.port))
    ingest.start()
    yield ingest
    ingest.stop()
    store.close()


def batch(k: int) -> SampleBatch:
    t = 1000.0 + k * 0.1 + np.arange(10) * 0.01
    return SampleBatch(MACHINE, t, {"x.pos": np.full(10, float(k))})


def test_a_connection_without_acks_is_renewed_and_the_buffer_drains(
    broker: EmbeddedBroker, hub: HubIngest, tmp_path: Path
) -> None:
    descriptor = MachineDescriptor(MACHINE, MACHINE, "harbin", signals=("x.pos",))
    buffer = DurableBuffer(tmp_path / "edge.sqlite", quota_bytes=2**20)
    uplink = MachineUplink(descriptor, buffer, BrokerAddress("127.0.0.1", broker.port),
                           resend_after_s=0.3, stall_after_s=1.5)  # fmt: skip
    stop = threading.Event()

    def resend_loop() -> None:  # what the edge agent's resend task does, faster
        while not stop.wait(0.1):
            uplink.resend_due()

    resender = threading.Thread(target=resend_loop, daemon=True)
    uplink.start()
    resender.start()
    try:
        assert wait_for(lambda: uplink.stats.connected, 10)
        for k in range(3):
            uplink.submit(batch(k))
        assert wait_for(lambda: uplink.stats.acked == 3, 10), uplink.stats
        assert uplink.stats.stall_reconnects == 0  # acks flowing: nothing to renew
        reconnects = uplink.stats.reconnects

        uplink.client.unsubscribe(topics.ack(MACHINE))  # the broker forgets the subscription
        for k in range(3, 6):
            uplink.submit(batch(k))
        assert wait_for(lambda: hub.counters.stored == 6, 10), hub.counters
        assert wait_for(lambda: buffer.stats().pending_count == 0, 15), uplink.stats
        assert uplink.stats.stall_reconnects >= 1
        assert uplink.stats.reconnects > reconnects  # a new connection resubscribed
        assert uplink.stats.acked == 6
    finally:
        stop.set()
        resender.join()
        uplink.stop()
        buffer.close()
    assert hub.counters.stored == 6 and not hub.counters.rejected
