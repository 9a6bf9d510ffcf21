"""Issue 4, acceptance 1 and 2: outages between edge and hub lose nothing, duplicate nothing.

Three virtual machines run at full rate (10x real time, ~100 batches/s each) into the
edge's SQLite buffer and over MQTT to the hub's DuckDB store, while one of three things
goes wrong:

(a) the link between edge and broker is cut (black-holed, as a long-haul outage looks:
    no reset, only silence) for ``OUTAGE_S``, then restored;
(b) the broker is stopped for ``OUTAGE_S`` and started again on the same port;
(c) the hub process is killed with SIGKILL mid-ingest and started again on the same
    DuckDB file.

Each runs against a real Mosquitto (its own process, config and port) and against the
embedded broker. The proof is end to end: what the edge produced — batches, values and
an exact sum of the values (``math.fsum``) per machine — against what the store holds
after the edge's buffer drained (every batch acknowledged): same count, same checksum,
every sequence number once.

The issue asks for 60 s outages. ``OUTAGE_S`` is 10 s by default so that one test stays
under ~30 s; set ``MT_OUTAGE_S=60`` to run the issue's full length (the buffer and the
resend logic do not care about the length, only about the backlog it leaves).
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import duckdb
import numpy as np
import pytest

from machinetwin.edge.agent import EdgeAgent
from machinetwin.edge.buffer import DurableBuffer
from machinetwin.hub.broker import EmbeddedBroker
from machinetwin.hub.duckdb_store import DuckDBStore
from machinetwin.hub.ingest import HubIngest
from machinetwin.machine import load_machine_config
from machinetwin.machine.adapter import VirtualMachineAdapter, VirtualMachineSettings
from machinetwin.model import Adapter, AdapterCommand, MachineEvent, SampleBatch
from machinetwin.net import BackgroundLink, LinkEmulator, LinkProfile
from machinetwin.protocols.broker import BrokerAddress

OUTAGE_S = float(os.environ.get("MT_OUTAGE_S", "10"))  # the issue says 60 s; see above
WARMUP_S = 2.0  # data flowing before the outage
AFTER_S = 2.0  # machines keep producing after the outage, while the backlog drains
HUB_DOWN_S = 3.0  # (c): how long the killed hub stays dead
SPEEDUP = 10.0  # machine seconds per wall second: 100 batches/s per machine
MACHINES = ("harbin-vmc-1", "tianjin-vmc-1", "dalian-vmc-1")
PROGRAM = "G21 G90 G54\nT1 M6 G43\nS6000 M3\nG0 X0 Y0 Z5\nG1 Z-1 F600\nG1 X30 Y20\nG0 Z5\nM5\nM2\n"

pytestmark = pytest.mark.slow


# --- brokers ----------------------------------------------------------------------------


class Broker(Protocol):
    port: int

    def start(self) -> None: ...
    def stop(self) -> None: ...


class RestartableEmbedded:
    """The embedded broker, restartable on the same port (a fresh amqtt each start)."""

    def __init__(self) -> None:
        self.broker = EmbeddedBroker()
        self.port = self.broker.port

    def start(self) -> None:
        # amqtt sometimes comes back listening but never answering CONNECT; a broker that
        # does not answer a probe within a few seconds is started again (up to 3 times)
        for _ in range(3):
            self.broker = EmbeddedBroker(port=self.port)
            self.broker.start()
            if answers_connect(self.port):
                return
            self.broker.stop()
        raise RuntimeError(f"embedded broker on port {self.port} does not answer CONNECT")

    def stop(self) -> None:
        self.broker.stop()


def answers_connect(port: int, timeout_s: float = 5.0) -> bool:
    import paho.mqtt.client as mqtt

    connected = threading.Event()
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"probe-{port}")
    client.on_connect = lambda c, u, f, rc, p=None: connected.set() if not rc.is_failure else None
    try:
        client.connect("127.0.0.1", port, keepalive=5)
    except OSError:
        return False
    client.loop_start()
    ok = connected.wait(timeout_s)
    client.disconnect()
    client.loop_stop()
    return ok


@pytest.fixture(params=[pytest.param("mosquitto", marks=pytest.mark.service), "embedded"])
def broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    if request.param == "mosquitto":
        yield request.getfixturevalue("mosquitto")
        return
    b = RestartableEmbedded()
    b.start()
    yield b
    b.stop()


# --- what the edge produced -------------------------------------------------------------


@dataclass
class Tally:
    batches: int = 0
    values: int = 0  # stored values: non-NaN scalars (NaN means "no sample") + waveform points
    checksum: float = 0.0


class TalliedAdapter:
    """Passes an adapter's items through, adding up what the edge is given to send."""

    def __init__(self, inner: Adapter) -> None:
        self.inner = inner
        self.descriptor = inner.descriptor
        self.tally = Tally()
        self._partials: list[float] = []

    async def batches(self) -> AsyncIterator[SampleBatch | MachineEvent]:
        async for item in self.inner.batches():
            if isinstance(item, SampleBatch):
                self._count(item)
            yield item  # the agent submits every batch it receives before it stops

    def _count(self, batch: SampleBatch) -> None:
        parts = [c[~np.isnan(c)] for c in batch.columns.values()]
        parts += [np.asarray(w.values, np.float64) for w in batch.waveforms]
        flat = np.concatenate(parts) if parts else np.empty(0)
        self.tally.batches += 1
        self.tally.values += len(flat)
        # Exact per batch; the running total is re-summed exactly at the end.
        self._partials.append(math.fsum(flat.tolist()))
        self.tally.checksum = math.fsum(self._partials)

    async def command(self, command: AdapterCommand) -> None:
        await self.inner.command(command)

    async def close(self) -> None:
        await self.inner.close()


def make_adapters(tmp_path: Path) -> list[TalliedAdapter]:
    program = tmp_path / "part.ngc"
    program.write_text(PROGRAM)
    config = load_machine_config()
    return [
        TalliedAdapter(
            VirtualMachineAdapter(
                config,
                VirtualMachineSettings(m, m.split("-")[0], [program], seed=i, speedup=SPEEDUP),
            )
        )
        for i, m in enumerate(MACHINES)
    ]


# --- what the store holds -------------------------------------------------------------


def stored_totals(db: Path, machine: str) -> tuple[int, int, int, int, float]:
    """(batches, min seq, max seq, values, checksum) of one machine, read from the file."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        mid_row = con.execute("SELECT id FROM machine_ids WHERE name = ?", [machine]).fetchone()
        assert mid_row is not None, f"{machine}: nothing stored"
        mid = mid_row[0]
        n, lo, hi = con.execute(
            "SELECT count(*), min(seq), max(seq) FROM batches WHERE machine = ?", [mid]
        ).fetchone()
        sn, ssum = con.execute(
            "SELECT count(*), coalesce(fsum(value), 0) FROM samples WHERE machine = ?", [mid]
        ).fetchone()
        wn, wsum = con.execute(
            "SELECT count(*), coalesce(fsum(v), 0) FROM "
            "(SELECT unnest(value) AS v FROM waveforms WHERE machine = ?)",
            [mid],
        ).fetchone()
    finally:
        con.close()
    return int(n), int(lo), int(hi), int(sn + wn), math.fsum([ssum, wsum])


def assert_exactly_once(db: Path, adapters: list[TalliedAdapter]) -> None:
    for a in adapters:
        m, edge = a.descriptor.machine_id, a.tally
        n, lo, hi, values, checksum = stored_totals(db, m)
        # (machine, seq) is the primary key: n batches spanning 0..n-1 is every one once
        assert (n, lo, hi) == (edge.batches, 0, edge.batches - 1), f"{m}: batches"
        assert values == edge.values, f"{m}: {values} values stored, {edge.values} produced"
        assert checksum == pytest.approx(edge.checksum, rel=1e-12, abs=1e-6), f"{m}: checksum"


# --- running the edge -------------------------------------------------------------------


async def run_edge(
    agent: EdgeAgent, disturb: Callable[[], Awaitable[None]], drain_s: float = 60.0
) -> bool:
    """Produce, let ``disturb`` break something, keep producing, then drain the buffer."""
    run = asyncio.create_task(agent.run())
    await asyncio.sleep(WARMUP_S)
    await disturb()
    await asyncio.sleep(AFTER_S)
    agent.stop()
    await run
    return await agent.drain(timeout_s=drain_s)


def make_agent(adapters: list[TalliedAdapter], port: int, tmp_path: Path) -> EdgeAgent:
    buffer = DurableBuffer(tmp_path / "edge.sqlite", quota_bytes=512 * 2**20)
    return EdgeAgent(
        list(adapters), BrokerAddress("127.0.0.1", port, keepalive_s=2), buffer, resend_after_s=2.0
    )


def assert_outage_seen(agent: EdgeAgent) -> None:
    """Every machine's uplink lost its connection and came back: the outage was real."""
    for machine, uplink in agent.uplinks.items():
        assert uplink.stats.reconnects >= 2, f"{machine}: never reconnected"


def finish(agent: EdgeAgent, drained: bool, hub: object = None) -> None:
    pending = agent.pending()  # counted before the buffer closes, for the message below
    state = "" if drained else diagnose(agent, hub)  # before close() changes it
    agent.close()
    agent.buffer.close()
    assert drained, f"the edge still holds {pending} unacknowledged batches\n{state}"


def diagnose(agent: EdgeAgent, hub: object) -> str:
    """What each uplink and the hub saw, for a run that did not drain (CI flakes)."""
    lines = []
    for machine, u in agent.uplinks.items():
        c = u.client
        lines.append(
            f"{machine}: {u.stats}; pending {agent.buffer.stats().machines.get(machine)}; "
            f"paho connected={c.is_connected()} out_messages={len(c._out_messages)} "
            f"inflight={c._inflight_messages} out_packets={len(c._out_packet)}"
        )
    counters = getattr(hub, "counters", None)
    if counters is not None:
        c = hub.client  # type: ignore[attr-defined]
        lines.append(f"hub: {counters}; paho connected={c.is_connected()} "
                     f"out_messages={len(c._out_messages)} inflight={c._inflight_messages}")  # fmt: skip
    return "\n".join(lines)


# --- (a) link cut -----------------------------------------------------------------------


def test_link_cut_loses_and_duplicates_nothing(broker: Broker, tmp_path: Path) -> None:
    adapters = make_adapters(tmp_path)
    db = tmp_path / "hub.duckdb"
    store = DuckDBStore(db)
    hub = HubIngest(store, BrokerAddress("127.0.0.1", broker.port))
    hub.start()
    profile = LinkProfile(latency_ms=15.0, jitter_ms=2.0)
    emulator = LinkEmulator("127.0.0.1", broker.port, profile, seed=4, cut_mode="blackhole")
    with BackgroundLink(emulator) as link:
        agent = make_agent(adapters, link.port, tmp_path)

        async def cut() -> None:
            link.cut()
            await asyncio.sleep(OUTAGE_S)  # the machines keep producing into the buffer
            link.restore()

        drained = asyncio.run(run_edge(agent, cut))
        assert_outage_seen(agent)
        finish(agent, drained, hub)
    hub.stop()
    store.close()
    assert not hub.counters.rejected
    assert_exactly_once(db, adapters)


# --- (b) broker stopped -----------------------------------------------------------------


def test_broker_restart_loses_and_duplicates_nothing(broker: Broker, tmp_path: Path) -> None:
    adapters = make_adapters(tmp_path)
    db = tmp_path / "hub.duckdb"
    store = DuckDBStore(db)
    hub = HubIngest(store, BrokerAddress("127.0.0.1", broker.port, keepalive_s=2))
    hub.start()
    agent = make_agent(adapters, broker.port, tmp_path)

    async def restart_broker() -> None:
        await asyncio.to_thread(broker.stop)
        await asyncio.sleep(OUTAGE_S)
        await asyncio.to_thread(broker.start)

    drained = asyncio.run(run_edge(agent, restart_broker))
    assert_outage_seen(agent)
    finish(agent, drained, hub)
    hub.stop()
    store.close()
    assert not hub.counters.rejected
    assert_exactly_once(db, adapters)


# --- (c) hub killed ---------------------------------------------------------------------


class HubProcess:
    """``python -m machinetwin.hub.ingest_main`` on a DuckDB file."""

    def __init__(self, port: int, db: Path) -> None:
        self.args = [sys.executable, "-m", "machinetwin.hub.ingest_main",
                     "--broker-port", str(port), "--db", str(db)]  # fmt: skip
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(self.args, stdout=subprocess.PIPE, text=True)
        line = self.process.stdout.readline()  # type: ignore[union-attr]
        assert json.loads(line)["event"] == "ready", line

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> dict:
        assert self.process is not None
        self.process.terminate()
        out, _ = self.process.communicate(timeout=30)
        assert self.process.returncode == 0, out
        return json.loads(out.strip().splitlines()[-1])


def test_hub_killed_mid_ingest_loses_and_duplicates_nothing(broker: Broker, tmp_path: Path) -> None:
    adapters = make_adapters(tmp_path)
    db = tmp_path / "hub.duckdb"
    hub = HubProcess(broker.port, db)
    hub.start()
    agent = make_agent(adapters, broker.port, tmp_path)
    acked_at_kill: dict[str, int] = {}

    def acked() -> int:
        return sum(u.stats.acked for u in agent.uplinks.values())

    async def kill_hub() -> None:
        deadline = time.monotonic() + 20
        while acked() < 100 and time.monotonic() < deadline:  # mid-ingest, for sure
            await asyncio.sleep(0.05)
        assert acked() >= 100, "the hub never acknowledged anything"
        await asyncio.to_thread(hub.kill)
        acked_at_kill.update({m: u.stats.acked for m, u in agent.uplinks.items()})
        await asyncio.sleep(HUB_DOWN_S)
        await asyncio.to_thread(hub.start)

    try:
        drained = asyncio.run(run_edge(agent, kill_hub))
        finish(agent, drained)
        report = hub.stop()
    finally:
        if hub.process and hub.process.poll() is None:
            hub.process.kill()
    assert not report["rejected"], report
    # The batches acknowledged before the kill left the edge's buffer for good: only the
    # store can still have them, and the totals below prove it does, exactly once.
    assert all(n > 0 for n in acked_at_kill.values()), acked_at_kill
    assert_exactly_once(db, adapters)
