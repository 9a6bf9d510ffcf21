"""The edge reads a machine over OPC UA into the hub, and recovers when the server restarts.

Real parts: our OPC UA server (asyncua) with a virtual machine, the edge with its SQLite
buffer, the embedded MQTT broker, the hub's ingest and DuckDB store. The server is
stopped for two seconds and started again (a new process would do the same: new session,
new subscription); the edge's adapter reconnects and resubscribes by itself, and the
hub's data shows the outage as a gap.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from machinetwin.edge.agent import EdgeAgent, build_adapters, load_edge_config
from machinetwin.edge.buffer import DurableBuffer
from machinetwin.hub.broker import EmbeddedBroker
from machinetwin.hub.duckdb_store import DuckDBStore
from machinetwin.hub.ingest import HubIngest
from machinetwin.protocols.broker import BrokerAddress
from machinetwin.protocols.opcua.client import OpcUaClientAdapter
from machinetwin.protocols.opcua.server import MachineToolServer

sys.path.insert(0, str(Path(__file__).parent))
from test_mtconnect_support import virtual_machine  # noqa: E402

from machinetwin.hub.broker import free_port
from waiting import wait_for


@pytest.mark.slow
def test_edge_reads_opcua_into_hub_and_recovers_after_server_restart(tmp_path: Path) -> None:
    url = f"opc.tcp://127.0.0.1:{free_port()}/machinetwin"
    broker = EmbeddedBroker()
    broker.start()
    store = DuckDBStore(tmp_path / "hub.duckdb")
    hub = HubIngest(store, BrokerAddress("127.0.0.1", broker.port))
    hub.start()
    path = tmp_path / "site.toml"
    path.write_text(f'site = "Harbin"\n[[machines]]\nid = "hb-opc-1"\nkind = "opcua"\n'
                    f'url = "{url}"\ndevice = "vmc1"\n')  # fmt: skip
    (adapter,) = build_adapters(load_edge_config(path))
    assert isinstance(adapter, OpcUaClientAdapter)
    adapter.settings.retry_s = 0.3
    buffer = DurableBuffer(tmp_path / "edge.sqlite", quota_bytes=64 * 2**20)
    edge = EdgeAgent([adapter], BrokerAddress("127.0.0.1", broker.port, keepalive_s=2), buffer,
                     resend_after_s=2.0)  # fmt: skip
    outage: list[float] = []

    async def until_batches(count: int) -> None:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and edge.batches["hb-opc-1"] < count:
            await asyncio.sleep(0.1)

    async def scenario() -> bool:
        run = asyncio.create_task(edge.run())
        for k in range(2):
            vm, _ = virtual_machine(tmp_path, "vmc1", speedup=1.0)
            async with MachineToolServer([vm], url).serving():
                await until_batches(edge.batches["hb-opc-1"] + 25)  # ~2.5 s of data arrived
            outage.append(time.time())
            if k == 0:
                await asyncio.sleep(2.0)  # the server is down
        edge.stop()
        await adapter.close()
        await asyncio.wait_for(run, 10)
        return await edge.drain(timeout_s=30.0)

    try:
        drained = asyncio.run(scenario())
        assert drained, "the edge still holds unacknowledged batches"
        assert wait_for(lambda: hub.live.get("hb-opc-1") is not None, 10)
        assert not hub.counters.rejected  # batches and events the client made are valid
    finally:
        edge.close()
        buffer.close()
        hub.stop()
        broker.stop()
    assert adapter.sessions == 2  # it reconnected and resubscribed by itself
    series = store.query("hb-opc-1", ["x.pos"], 0, time.time() + 10, buckets=10**6)["x.pos"]
    t = series.t
    store.close()
    assert len(t) > 30
    gaps = np.diff(t)
    k = int(np.argmax(gaps))
    assert gaps[k] > 1.5  # the outage, as a gap in the hub's data
    assert t[k] <= outage[0] + 0.5 and t[k + 1] >= outage[0] + 1.5
    assert (t > t[k + 1]).sum() > 10  # and data flows again after it
