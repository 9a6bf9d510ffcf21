"""What the PostgreSQL store does beyond the shared store suite (``test_store*.py``).

Several writers on one schema (as several hub ingest processes) store each batch once;
time partitions are created on demand, routed exactly as PostgreSQL routes rows, and
dropped whole by retention; series rows are compacted without changing what ``count``
and ``latest`` say; a bad connection is reported with where it pointed.
"""

from __future__ import annotations

import itertools
import random
import threading
from collections.abc import Iterator

import numpy as np
import psycopg
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.hub import StoreError, postgres_store
from machinetwin.hub.postgres_store import PostgresStore, _partition_of
from machinetwin.model import MachineDescriptor, MachineEvent, SampleBatch, Waveform
from postgres_server import PostgresServer, schema_for

pytestmark = pytest.mark.service
_names = itertools.count()


@pytest.fixture
def open_pg(postgres_server: PostgresServer) -> Iterator:
    """``open_pg(**options)``: a store on a schema of this test (the same on each call)."""
    schema = schema_for(f"pg-{next(_names)}")
    opened: list[PostgresStore] = []

    def open_(**options: object) -> PostgresStore:
        store = PostgresStore(postgres_server.dsn(), schema=schema, **options)
        opened.append(store)
        return store

    yield open_
    for store in opened:
        store.close()


def batch(machine: str, seq: int, t0: float | None = None, n: int = 4) -> SampleBatch:
    t = (seq if t0 is None else t0) + np.arange(n) * 0.1
    waves = [Waveform("spindle.vib", float(t[0]), 100.0, np.sin(np.arange(8.0) + seq))]
    return SampleBatch(machine, t, {"feed": t * 2, "x.pos": -t}, seq=seq, waveforms=waves)


def test_concurrent_writers_store_each_batch_once(open_pg) -> None:
    """Two writers (each its own connection, like two ingest processes) get the same
    batches in different orders and groups: every key is claimed by exactly one."""
    writers = [open_pg(), open_pg()]
    keys = [(m, s) for m in ("a", "b", "c") for s in range(40)]
    claims: list[list[tuple[tuple[str, int], bool]]] = [[], []]
    errors: list[BaseException] = []

    def write(i: int) -> None:
        order = keys[:]
        random.Random(i).shuffle(order)
        try:
            for start in range(0, len(order), 7 + i):
                group = order[start : start + 7 + i]
                got = writers[i].write_batches([batch(m, s) for m, s in group])
                claims[i] += zip(group, got, strict=True)
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=write, args=(i,)) for i in (0, 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    won = [k for c in claims for k, new in c if new]
    assert sorted(won) == sorted(keys)  # each once, none lost
    reader = open_pg()
    for m in ("a", "b", "c"):
        assert reader.sequences(m) == [(0, 39)]
        assert reader.count(m) == 40 * (4 * 2 + 8)
        assert reader.count(m, "feed") == 160
        assert reader.latest(m)["feed"] == pytest.approx((39.3, 78.6))


def test_partitions_are_made_on_demand_and_dropped_whole(open_pg) -> None:
    store = open_pg(partition_s=10.0)
    assert store.layout == "partitioned"
    store.write_batches([batch("m", s, t0=5.0 * s) for s in range(10)])  # t 0 .. 45.3
    assert store._load_partitions() == {0, 1, 2, 3, 4}
    far = [batch("m", 100, t0=-3e13), batch("m", 101, t0=4e13)]  # beyond the window
    assert store.write_batches(far) == [True, True]
    total = store.count("m")
    deleted = store.delete_before(30.0)  # [0, 10) and [10, 20) go whole; [20, 30) in part
    assert store._load_partitions() == {3, 4}
    got = store.query("m", ["feed"], -1e14, 1000.0, buckets=10**9)["feed"]
    assert got.t.min() == 30.0 and got.t.max() == pytest.approx(45.3)  # the -3e13 one went
    assert len(store.query("m", ["feed"], 1e13, 1e14, buckets=10**9)["feed"].t) == 4
    assert deleted == total - store.count("m")
    assert store.sequences("m") == [(6, 9), (101, 101)]
    store.close()
    reopened = open_pg(partition_s=3600.0)  # the schema keeps the span it was made with
    assert reopened.partition_s == 10.0
    assert reopened.write_batch(batch("m", 11, t0=61.0)) is True
    assert reopened._load_partitions() == {3, 4, 6}


@settings(max_examples=200, deadline=None)
@given(t=st.floats(-1e12, 1e12), width=st.floats(1.0, 1e6))
def test_partition_index_matches_the_bounds(t: float, width: float) -> None:
    """The partition of t is the one whose float8 bounds [k * w, (k + 1) * w) hold it."""
    k = int(_partition_of(np.array([t]), width)[0])
    assert k * width <= t < (k + 1) * width


def test_series_compaction_keeps_count_and_latest(open_pg, monkeypatch) -> None:
    store = open_pg()
    monkeypatch.setattr(postgres_store, "COMPACT_ROWS", 3)  # rows: one per machine-write
    rows = lambda: store._con.execute("SELECT count(*) FROM series").fetchone()[0]  # noqa: E731
    batches = [batch("m", s) for s in (3, 0, 2, 1)]  # newest not last
    for b in batches:
        store.write_batch(b)
    assert rows() == 2  # three folded into one, and the write after
    assert store.count("m") == 4 * 16
    latest = store.latest("m")
    assert latest["feed"] == pytest.approx((3.3, 6.6))
    assert latest["spindle.vib"] == pytest.approx((3.07, np.sin(10.0)))


def test_a_descriptor_stored_by_another_writer_is_seen(open_pg) -> None:
    first, second = open_pg(), open_pg()
    b = SampleBatch("m", np.arange(3.0), {"coolant.level": np.ones(3)}, seq=0)
    with pytest.raises(StoreError, match="unknown signal 'coolant.level'"):
        second.write_batch(b)
    first.upsert_machine(MachineDescriptor("m", "VMC", "Harbin", signals=("coolant.level",)))
    assert second.write_batch(b) is True
    assert first.count("m", "coolant.level") == 3  # and the id second gave is found


def test_writes_and_reads_go_on_after_a_server_restart(open_pg, postgres_server) -> None:
    store = open_pg()
    assert store.write_batch(batch("m", 0)) is True
    assert store.sequences("m") == [(0, 0)]  # leaves a pooled reader connection
    postgres_server.stop()
    try:
        with pytest.raises(psycopg.OperationalError):
            store.write_batch(batch("m", 1))  # no server: fails (not acknowledged, resent)
    finally:
        postgres_server.start()
    assert store.write_batch(batch("m", 1)) is True  # on a new connection
    assert store.sequences("m") == [(0, 1)]  # the stale reader was replaced
    assert store.write_event(MachineEvent("m", 1.0, "program", value="O1")) is True


def test_bad_connection_names_where_without_the_password(postgres_server) -> None:
    dsn = f"host=127.0.0.1 port={postgres_server.port} user=nobody password=s3cret dbname=x"
    with pytest.raises(StoreError, match="cannot connect to PostgreSQL") as e:
        PostgresStore(dsn)
    assert f"port={postgres_server.port}" in str(e.value) and "s3cret" not in str(e.value)
    with pytest.raises(StoreError, match="invalid PostgreSQL DSN"):
        PostgresStore("host=127.0.0.1 nonsense")
    with pytest.raises(StoreError, match="partition_s"):
        PostgresStore(postgres_server.dsn(), partition_s=0.0)
    with pytest.raises(StoreError, match="timescaledb requested but not available"):
        PostgresStore(postgres_server.dsn(), schema=schema_for("ts"), timescaledb=True)
