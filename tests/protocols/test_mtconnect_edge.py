"""The edge takes machines from MTConnect agents and SHDR adapters (site file kinds), end to end.

Real parts: our agent over HTTP, the edge with its SQLite buffer, the embedded MQTT
broker, the hub's ingest and DuckDB store. The agent is restarted in the middle (new
instanceId): the edge recovers by itself and the hub's data shows the outage as a gap.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from machinetwin.configfile import load_toml
from machinetwin.edge.agent import EdgeAgent, EdgeConfig, build_adapters, load_edge_config
from machinetwin.edge.buffer import DurableBuffer
from machinetwin.errors import ConfigError
from machinetwin.hub.broker import EmbeddedBroker
from machinetwin.hub.duckdb_store import DuckDBStore
from machinetwin.hub.ingest import HubIngest
from machinetwin.protocols.broker import BrokerAddress
from machinetwin.protocols.mtconnect.agent import MTConnectAgent
from machinetwin.protocols.mtconnect.client import MTConnectClientAdapter
from machinetwin.protocols.mtconnect.shdr import ShdrAdapter

sys.path.insert(0, str(Path(__file__).parent))
from test_mtconnect_support import virtual_machine  # noqa: E402

from machinetwin.hub.broker import free_port
from waiting import wait_for

SITE = """site = "Tianjin"
[[machines]]
id = "tj-mill-7"
kind = "mtconnect"
url = "{url}"
device = "vmc1"
[[machines]]
id = "tj-lathe-2"
kind = "shdr"
url = "10.1.2.3:7878"
"""


def test_site_file_builds_protocol_adapters(tmp_path: Path) -> None:
    path = tmp_path / "site.toml"
    path.write_text(SITE.format(url="http://10.1.2.2:5000"))
    adapters = build_adapters(load_edge_config(path))
    mill, lathe = adapters
    assert isinstance(mill, MTConnectClientAdapter) and mill.settings.device == "vmc1"
    assert isinstance(lathe, ShdrAdapter) and (lathe.settings.host, lathe.settings.port) == (
        "10.1.2.3", 7878)  # fmt: skip
    assert mill.descriptor.site == "Tianjin" and lathe.descriptor.machine_id == "tj-lathe-2"


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ('kind = "mtconnect"\nurl = "ftp://x"', "machines.m1.url: expected http"),
        ('kind = "mtconnect"', "machines.m1.url: a mtconnect machine needs"),
        ('kind = "shdr"\nurl = "host:99999"', "machines.m1.url: expected host[:port]"),
        ('kind = "virtual"', "needs at least one program"),
        ('kind = "modbus"', "kind"),
    ],
)
def test_bad_entries_name_the_key(tmp_path: Path, entry: str, words: str) -> None:
    path = tmp_path / "site.toml"
    path.write_text(f'site = "s"\n[[machines]]\nid = "m1"\n{entry}\n')
    with pytest.raises(ConfigError) as err:
        build_adapters(load_toml(path, EdgeConfig))
    assert words in str(err.value)


@pytest.mark.slow
def test_edge_reads_agent_into_hub_and_recovers_after_agent_restart(tmp_path: Path) -> None:
    port = free_port()
    broker = EmbeddedBroker()
    broker.start()
    store = DuckDBStore(tmp_path / "hub.duckdb")
    hub = HubIngest(store, BrokerAddress("127.0.0.1", broker.port))
    hub.start()
    path = tmp_path / "site.toml"
    path.write_text(SITE.split("[[machines]]\nid = \"tj-lathe-2\"")[0].format(
        url=f"http://127.0.0.1:{port}"))  # fmt: skip
    (adapter,) = build_adapters(load_edge_config(path))
    adapter.settings.heartbeat_ms = 500
    adapter.settings.retry_s = 0.2
    buffer = DurableBuffer(tmp_path / "edge.sqlite", quota_bytes=64 * 2**20)
    edge = EdgeAgent([adapter], BrokerAddress("127.0.0.1", broker.port, keepalive_s=2), buffer,
                     resend_after_s=2.0)  # fmt: skip
    outage: list[float] = []

    async def scenario() -> bool:
        run = asyncio.create_task(edge.run())
        for k in range(2):
            vm, _ = virtual_machine(tmp_path, "vmc1", speedup=1.0)
            async with MTConnectAgent([vm]).serving(port=port):
                await asyncio.sleep(3.0)
            outage.append(time.time())
            if k == 0:
                await asyncio.sleep(2.0)  # the agent is down
        edge.stop()
        await adapter.close()  # the agent is gone: no item will come to notice the stop
        await asyncio.wait_for(run, 10)
        return await edge.drain(timeout_s=30.0)

    try:
        drained = asyncio.run(scenario())
        assert drained, "the edge still holds unacknowledged batches"
        assert wait_for(lambda: hub.live.get("tj-mill-7") is not None, 10)
        assert not hub.counters.rejected  # batches and events the client made are valid
    finally:
        edge.close()
        buffer.close()
        hub.stop()
        broker.stop()
    assert adapter.resyncs >= 1  # it noticed the restart and started again by itself
    series = store.query("tj-mill-7", ["x.pos"], 0, time.time() + 10, buckets=10**6)["x.pos"]
    t = series.t
    store.close()
    assert len(t) > 50
    gaps = np.diff(t)
    k = int(np.argmax(gaps))
    assert gaps[k] > 1.5  # the outage, as a gap in the hub's data
    assert t[k] <= outage[0] + 0.5 and t[k + 1] >= outage[0] + 1.5
    assert (t > t[k + 1]).sum() > 20  # and data flows again after it
