"""Several hub ingest processes sharing one fleet through MQTT shared subscriptions.

Real Mosquitto, real PostgreSQL, two ``machinetwin.hub.ingest_main`` OS processes in
one share group, and the real edge uplink and durable buffer (which resend whatever is
not acknowledged). One ingest process is SIGKILLed while batches are in flight: every
batch must still be stored exactly once (sequences, sample count and value checksum
per machine), and both processes must have done part of the work.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from machinetwin.edge.buffer import DurableBuffer
from machinetwin.edge.uplink import MachineUplink
from machinetwin.hub.ingest import _subscriptions
from machinetwin.hub.ingest_main import main as ingest_main
from machinetwin.hub.postgres_store import PostgresStore
from machinetwin.model import MachineDescriptor, SampleBatch
from machinetwin.protocols import topics
from machinetwin.protocols.broker import BrokerAddress
from postgres_server import schema_for
from waiting import wait_for

MACHINES = 6
BATCHES = 40  # per machine
ROWS = 10
SIGNALS = ("x.pos", "y.pos", "z.pos", "spindle.load", "spindle.speed")
GROUP = "ingest"


# --- subscriptions and refusals (no services) ---------------------------------------------


def test_share_group_splits_data_and_events_only() -> None:
    shared = _subscriptions("g1")
    assert f"$share/g1/{topics.PREFIX}/+/data" in shared
    assert f"$share/g1/{topics.PREFIX}/+/event" in shared
    # every process hears every birth and state: plain subscriptions
    assert f"{topics.PREFIX}/+/birth" in shared and f"{topics.PREFIX}/+/state" in shared
    assert _subscriptions(None) == topics.HUB_SUBSCRIPTIONS


@given(st.text(min_size=0, max_size=80))
def test_bad_share_groups_are_refused(group: str) -> None:
    bad = not group or len(group) > 64 or any(c in group for c in "/+#")
    if bad:
        with pytest.raises(ValueError, match="share group"):
            _subscriptions(group)
    else:
        shared = [t for t in _subscriptions(group) if t.startswith("$share/")]
        assert sorted(t.rsplit("/", 1)[1] for t in shared) == ["data", "event"]
        assert all(t.startswith(f"$share/{group}/") for t in shared)


def test_share_with_duckdb_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    hub = tmp_path / "hub.toml"
    hub.write_text('store = "hub.duckdb"\n[broker]\nport = 1883\n')
    assert ingest_main(["--config", str(hub), "--share", "g"]) == 2
    assert "one writer" in capsys.readouterr().err
    assert ingest_main(["--db", str(tmp_path / "x.duckdb"), "--share", "g"]) == 2
    assert "--db" in capsys.readouterr().err
    assert not (tmp_path / "hub.duckdb").exists()  # refused before opening anything


def test_cli_hub_ingest_refuses_share_on_duckdb(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from machinetwin.cli import app

    hub = tmp_path / "hub.toml"
    hub.write_text('store = "hub.duckdb"\n[broker]\nport = 1883\n')
    got = CliRunner().invoke(app, ["hub", "ingest", "--config", str(hub), "--share", "g"])
    assert got.exit_code == 2
    assert "one writer" in got.output and str(hub) in got.output


# --- two processes, one share group ------------------------------------------------------


class IngestProcess:
    """One ``ingest_main`` process on a hub file, with its status file."""

    def __init__(self, hub_file: Path, name: str, workdir: Path) -> None:
        """Starts the process; ``ready()`` waits for it (start several, then wait)."""
        self.status = workdir / f"{name}.status.json"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "machinetwin.hub.ingest_main", "--config", str(hub_file),
             "--share", GROUP, "--client-id", f"hub-{name}", "--status-file", str(self.status)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip

    def ready(self) -> None:
        assert self.proc.stdout is not None
        ready = json.loads(self.proc.stdout.readline() or "{}")
        assert ready.get("event") == "ready", self.proc.stderr.read() if self.proc.stderr else ""

    def stored(self) -> int:
        try:
            return int(json.loads(self.status.read_text())["stored"])
        except (OSError, ValueError, KeyError):
            return 0

    def stop(self) -> dict:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        out, err = self.proc.communicate(timeout=20)
        lines = [json.loads(x) for x in out.splitlines() if x.startswith("{")]
        return lines[-1] if lines else {"stderr": err}


def _batch(machine: int, seq: int) -> SampleBatch:
    """Values unique to (machine, seq, signal, row), so a checksum tells batches apart."""
    t = seq * 1.0 + np.arange(ROWS) / ROWS
    cols = {s: machine * 1e6 + seq * 100.0 + i * ROWS + np.arange(ROWS, dtype=float)
            for i, s in enumerate(SIGNALS)}  # fmt: skip
    return SampleBatch(f"m{machine}", t, cols, seq=seq)


def _expected_sum(machine: int) -> float:
    return float(sum(sum(c.sum() for c in _batch(machine, k).columns.values())
                     for k in range(BATCHES)))  # fmt: skip


def _value_sum(store: PostgresStore, machine: str, path: Path) -> tuple[int, float]:
    rows = store.export(machine, -1.0, BATCHES + 1.0, path, fmt="csv")
    values = np.loadtxt(path, delimiter=",", skiprows=1, usecols=3, ndmin=1)
    return rows, float(values.sum())


@pytest.fixture
def fleet(mosquitto, tmp_path: Path) -> Iterator[tuple[list[MachineUplink], DurableBuffer]]:
    buffer = DurableBuffer(tmp_path / "edge.sqlite", quota_bytes=64 * 2**20, fsync="off")
    broker = BrokerAddress("127.0.0.1", mosquitto.port)
    uplinks = [MachineUplink(MachineDescriptor(f"m{m}", f"VMC {m}", "Harbin",
                                               signals=SIGNALS), buffer, broker,
                             resend_after_s=1.0)
               for m in range(MACHINES)]  # fmt: skip
    for u in uplinks:
        u.start()
    yield uplinks, buffer
    for u in uplinks:
        u.stop()
    buffer.close()


@pytest.mark.service
def test_two_processes_share_the_fleet_and_survive_a_sigkill(
    postgres_server, mosquitto, fleet, tmp_path: Path
) -> None:
    uplinks, buffer = fleet
    schema = schema_for(str(tmp_path))
    hub_file = tmp_path / "hub.toml"
    hub_file.write_text(f'[store]\nbackend = "postgres"\ndsn = "{postgres_server.dsn()}"\n'
                        f'schema = "{schema}"\npath = "hub.duckdb"\n'
                        f"[broker]\nport = {mosquitto.port}\n")  # fmt: skip
    a = IngestProcess(hub_file, "a", tmp_path)
    b = IngestProcess(hub_file, "b", tmp_path)
    stop_resending = threading.Event()
    resender = threading.Thread(target=_resend_until, args=(uplinks, stop_resending))
    try:
        a.ready()
        b.ready()
        assert wait_for(lambda: all(u.stats.connected for u in uplinks), 10)
        resender.start()
        _send(uplinks, range(BATCHES // 2))
        assert wait_for(lambda: a.stored() > 0 and b.stored() > 0, 20), "both take a share"
        a_stored = a.stored()
        killer = threading.Timer(0.1, os.kill, (a.proc.pid, signal.SIGKILL))
        killer.start()  # while the second half is being published
        _send(uplinks, range(BATCHES // 2, BATCHES))
        killer.join()
        assert wait_for(lambda: buffer.stats().pending_count == 0, 45), (
            f"unacknowledged after the kill: {buffer.stats().pending_count}"
        )
    finally:
        stop_resending.set()
        if resender.is_alive():
            resender.join()
        a.proc.kill()
        a.proc.communicate(timeout=10)
        b_final = b.stop()
    assert a.proc.returncode == -signal.SIGKILL
    assert a_stored > 0 and b_final["stored"] > 0, (a_stored, b_final)
    with PostgresStore(postgres_server.dsn(), schema=schema) as store:
        for m in range(MACHINES):
            machine = f"m{m}"
            assert store.sequences(machine) == [(0, BATCHES - 1)], machine
            rows, total = _value_sum(store, machine, tmp_path / f"{machine}.csv")
            assert rows == store.count(machine) == BATCHES * ROWS * len(SIGNALS), machine
            assert total == pytest.approx(_expected_sum(m), rel=1e-12), machine


def _send(uplinks: list[MachineUplink], seqs: range) -> None:
    """One batch per machine per round, paced like a fleet (a round every 20 ms)."""
    for k in seqs:
        for m, uplink in enumerate(uplinks):
            uplink.submit(_batch(m, k))  # the uplink numbers it: the k-th of this machine
        time.sleep(0.02)


def _resend_until(uplinks: list[MachineUplink], stop: threading.Event) -> None:
    while not stop.wait(0.2):
        for u in uplinks:
            u.resend_due()
