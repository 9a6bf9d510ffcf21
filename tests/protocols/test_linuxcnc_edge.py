"""A LinuxCNC controller and a replayed UMich mill behind an edge, into the hub, end to end.

Real parts: a headless LinuxCNC 2.9, the edge with its SQLite buffer, the embedded MQTT
broker, the hub's ingest and DuckDB store. LinuxCNC is restarted in the middle: the edge
recovers by itself and the hub's data shows the outage as a gap.
"""

from __future__ import annotations

import asyncio
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
from machinetwin.model import AdapterCommand
from machinetwin.protocols.broker import BrokerAddress
from machinetwin.protocols.linuxcnc import LinuxCNCAdapter
from machinetwin.protocols.linuxcnc.sim import LinuxCNCError, SimController, unavailable_reason
from machinetwin.protocols.replay import ReplayAdapter
from waiting import wait_for

SITE = """site = "Harbin"
[[machines]]
id = "hrb-lcnc-1"
kind = "linuxcnc"
[[machines]]
id = "hrb-umich"
kind = "replay"
programs = ["experiment_01.csv"]
speedup = 5
"""


def recording(folder: Path, n: int = 300) -> Path:
    """A small recording in the UMich layout whose X1 actual position is 100 + row."""
    header = ["", *(f"{p}_{q}" for p in ("X1", "Y1", "Z1", "S1") for q in (
        "ActualPosition", "ActualVelocity", "CommandPosition", "CommandVelocity",
        "OutputPower")),
        "M1_CURRENT_FEEDRATE", "M1_sequence_number", "Machining_Process", "tool_condition"]  # fmt: skip
    rows = []
    for i in range(n):
        row = ["0"] * len(header)
        row[0] = str(i)
        row[header.index("X1_ActualPosition")] = str(100.0 + i)
        row[header.index("Machining_Process")] = "Layer 1 Up"
        row[header.index("tool_condition")] = "unworn"
        rows.append(",".join(row))
    path = folder / "experiment_01.csv"
    path.write_text(",".join(header) + "\n" + "\n".join(rows) + "\n")
    return path


def test_site_file_builds_linuxcnc_and_replay_adapters(tmp_path: Path) -> None:
    recording(tmp_path)
    path = tmp_path / "site.toml"
    path.write_text(SITE)
    lcnc, replay = build_adapters(load_edge_config(path))
    assert isinstance(lcnc, LinuxCNCAdapter) and lcnc.descriptor.site == "Harbin"
    assert isinstance(replay, ReplayAdapter) and replay.settings.speed == 5
    assert replay.recordings[0].columns["x.pos"][3] == 103.0


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ('kind = "linuxcnc"\nurl = "10.0.0.9:5007"', "machines.m1.url: a linuxcnc machine"),
        ('kind = "replay"', "machines.m1: replay needs at least one recording"),
        ('kind = "replay"\nprograms = ["site.toml"]', "machines.m1.programs"),
        ('kind = "replay"\nprograms = ["experiment_01.csv"]\nspeedup = -2', "speedup"),
    ],
)
def test_bad_entries_name_the_key(tmp_path: Path, entry: str, words: str) -> None:
    recording(tmp_path)
    path = tmp_path / "site.toml"
    path.write_text(f'site = "s"\n[[machines]]\nid = "m1"\n{entry}\n')
    with pytest.raises(ConfigError) as err:
        build_adapters(load_edge_config(path) if "speedup" not in entry
                       else load_toml(path, EdgeConfig))  # fmt: skip
    assert words in str(err.value)


@pytest.mark.service
@pytest.mark.slow
def test_edge_brings_linuxcnc_and_replay_to_the_hub_across_a_linuxcnc_restart(
    tmp_path: Path,
) -> None:
    reason = unavailable_reason()
    if reason is not None and "lock" not in reason:
        pytest.skip(f"LinuxCNC simulator unavailable: {reason}")
    sim = SimController(lock_wait_s=120)
    try:
        sim.start()
    except LinuxCNCError as e:
        sim.close()
        pytest.skip(f"LinuxCNC simulator did not start: {e}")
    recording(tmp_path)
    path = tmp_path / "site.toml"
    path.write_text(SITE)
    broker = EmbeddedBroker()
    broker.start()
    store = DuckDBStore(tmp_path / "hub.duckdb")
    hub = HubIngest(store, BrokerAddress("127.0.0.1", broker.port))
    hub.start()
    lcnc, replay = build_adapters(load_edge_config(path))
    assert isinstance(lcnc, LinuxCNCAdapter)
    lcnc.settings.retry_s = 0.3
    buffer = DurableBuffer(tmp_path / "edge.sqlite", quota_bytes=64 * 2**20)
    edge = EdgeAgent([lcnc, replay], BrokerAddress("127.0.0.1", broker.port, keepalive_s=2),
                     buffer, resend_after_s=2.0)  # fmt: skip
    outage: list[float] = []

    async def scenario() -> bool:
        run = asyncio.create_task(edge.run())
        while not lcnc.connected:
            await asyncio.sleep(0.1)
        await lcnc.command(AdapterCommand("mdi", {"text": "G21 G90 G54 G0 X50 Y20"}))
        await asyncio.sleep(3.0)
        await asyncio.to_thread(sim.stop)  # LinuxCNC reports until its shutdown ends
        outage.append(time.time())
        await asyncio.sleep(2.0)  # LinuxCNC is down
        outage.append(time.time())
        await asyncio.to_thread(sim.start)
        while lcnc.connections < 2:
            await asyncio.sleep(0.1)
        await asyncio.sleep(3.0)
        edge.stop()
        await lcnc.close()
        await replay.close()
        await asyncio.wait_for(run, 10)
        return await edge.drain(timeout_s=30.0)

    try:
        drained = asyncio.run(scenario())
        assert drained, "the edge still holds unacknowledged batches"
        assert wait_for(lambda: hub.live.get("hrb-lcnc-1") is not None, 10)
        assert not hub.counters.rejected  # batches and events the adapters made are valid
    finally:
        edge.close()
        buffer.close()
        hub.stop()
        broker.stop()
        sim.close()
    now = time.time() + 10
    lx = store.query("hrb-lcnc-1", ["x.pos"], 0, now, buckets=10**6)["x.pos"]
    rx = store.query("hrb-umich", ["x.pos"], 0, now, buckets=10**6)["x.pos"]
    store.close()
    gaps = np.diff(lx.t)
    k = int(np.argmax(gaps))
    assert gaps[k] > 1.5  # the outage, as a gap in the hub's data
    assert lx.t[k] <= outage[0] + 0.5 and lx.t[k + 1] >= outage[1]
    assert (lx.t > lx.t[k + 1]).sum() > 20  # data flows again after it
    assert np.nanmax(lx.max) == pytest.approx(350.0, abs=1e-3)  # the MDI move, G54 X300
    # the replayed machine: its recorded positions, in order, at 5x (0.02 s apart)
    values = np.asarray(rx.mean)
    assert len(values) > 100
    assert np.array_equal(values[:100], 100.0 + np.arange(100))
    assert np.allclose(np.diff(rx.t[:100]), 0.02, atol=1e-4)


@pytest.mark.service
@pytest.mark.slow
def test_demo_machine_runs_its_programs_in_a_loop(tmp_path: Path) -> None:
    """What `make demo ARGS=--with-linuxcnc` adds: a LinuxCNC running part programs."""
    from machinetwin.model import MachineEvent
    from machinetwin.protocols.linuxcnc.demo import run_programs, start_demo_machine

    reason = unavailable_reason()
    if reason is not None:
        pytest.skip(f"LinuxCNC simulator unavailable: {reason}")
    tmp_path.chmod(0o755)
    progs = []
    for name, x in (("a.ngc", 40), ("b.ngc", -40)):
        progs.append(tmp_path / name)
        progs[-1].write_text(f"G21 G90 G54\nG0 X{x} Y0 Z5\nG1 X0 F3000\nM2\n")

    async def scenario() -> list[MachineEvent]:
        sim, settings = await asyncio.to_thread(start_demo_machine, "lab-lcnc", "Dalian")
        adapter = LinuxCNCAdapter(settings)
        runner = asyncio.create_task(run_programs(adapter, progs, pause_s=0.2))
        events: list[MachineEvent] = []
        try:
            async with asyncio.timeout(60):
                async for item in adapter.batches():
                    if isinstance(item, MachineEvent):
                        events.append(item)
                    done = [e for e in events if e.value == "PROGRAM_COMPLETED"]
                    if len(done) >= 3:
                        break
        finally:
            runner.cancel()
            await adapter.close()
            await asyncio.to_thread(sim.close)
        return events

    events = asyncio.run(scenario())
    names = [e.value["name"] for e in events if e.kind == "program"]
    assert names[:3] == ["a.ngc", "b.ngc", "a.ngc"]  # one after another, in a loop
    assert [e.value for e in events if e.kind == "execution"].count("ACTIVE") >= 3
