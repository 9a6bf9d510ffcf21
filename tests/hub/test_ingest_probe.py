"""The hub renews a connection whose subscriptions stopped delivering.

The broker really forgets the hub's subscriptions (an UNSUBSCRIBE at the real embedded
broker, as amqtt's session clean-up race does): the hub's probe stops coming back, the
hub reconnects and resubscribes, and the edge's resent batches are stored and acked.
"""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np

from machinetwin.edge.buffer import DurableBuffer
from machinetwin.edge.uplink import MachineUplink
from machinetwin.hub.broker import EmbeddedBroker
from machinetwin.hub.duckdb_store import DuckDBStore
from machinetwin.hub.ingest import HubIngest
from machinetwin.model import MachineDescriptor, SampleBatch
from machinetwin.protocols import topics
from machinetwin.protocols.broker import BrokerAddress
from waiting import wait_for

MACHINE = "tianjin-vmc-1"


def batch(k: int) -> SampleBatch:
    t = 2000.0 + k * 0.1 + np.arange(10) * 0.01
    return SampleBatch(MACHINE, t, {"x.pos": np.full(10, float(k))})


def test_hub_resubscribes_when_its_probe_stops_coming_back(tmp_path: Path) -> None:
    broker = EmbeddedBroker()
    broker.start()
    store = DuckDBStore(":memory:")
    hub = HubIngest(store, BrokerAddress("127.0.0.1", broker.port))
    hub.probe_every_s = 0.3
    descriptor = MachineDescriptor(MACHINE, MACHINE, "tianjin", signals=("x.pos",))
    buffer = DurableBuffer(tmp_path / "edge.sqlite", quota_bytes=2**20)
    uplink = MachineUplink(descriptor, buffer, BrokerAddress("127.0.0.1", broker.port),
                           resend_after_s=0.3, stall_after_s=60.0)  # fmt: skip
    stop = threading.Event()

    def resend_loop() -> None:
        while not stop.wait(0.1):
            uplink.resend_due()

    resender = threading.Thread(target=resend_loop, daemon=True)
    hub.start()
    uplink.start()
    resender.start()
    try:
        assert wait_for(lambda: uplink.stats.connected and hub._probe_works, 10)
        for k in range(3):
            uplink.submit(batch(k))
        assert wait_for(lambda: uplink.stats.acked == 3, 10), hub.counters
        assert hub.counters.renewals == 0  # the probe comes back: nothing to renew

        hub.client.unsubscribe([*topics.HUB_SUBSCRIPTIONS, hub.probe_topic])
        for k in range(3, 6):
            uplink.submit(batch(k))
        assert wait_for(lambda: buffer.stats().pending_count == 0, 15), hub.counters
        assert hub.counters.renewals >= 1
        assert store.sequences(MACHINE) == [(0, 5)]  # every batch once
        assert uplink.stats.stall_reconnects == 0  # the hub recovered, not the edge
    finally:
        stop.set()
        resender.join()
        uplink.stop()
        buffer.close()
        hub.stop()
        store.close()
        broker.stop()
