"""The ``Store`` contract, run against every backend.

Every test takes the ``store`` fixture (or ``open_store`` to close and reopen a
file), once per entry of ``BACKENDS``: DuckDB (a file) and PostgreSQL (a schema of its
own per store, on the session's server from ``conftest.py``).
References are computed with numpy from the batches written.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machinetwin.hub import DuckDBStore, Store, StoreError, postgres_store
from machinetwin.hub.postgres_store import PostgresStore
from machinetwin.model import (
    Alarm,
    AlarmCode,
    MachineDescriptor,
    MachineEvent,
    SampleBatch,
    Severity,
    Waveform,
)

SIGS = ["x.pos", "spindle.load", "feed", "power"]
VIB = "spindle.vib"


def _postgres(directory: Path, request: pytest.FixtureRequest) -> Store:
    from postgres_server import schema_for

    server = request.getfixturevalue("postgres_server")
    return PostgresStore(server.dsn(), schema=schema_for(str(directory)))


BACKENDS: dict[str, Callable[[Path, pytest.FixtureRequest], Store]] = {
    "duckdb": lambda directory, _: DuckDBStore(directory / "hub.duckdb"),
    "postgres": _postgres,
}
NEEDS_SERVER = {"postgres"}

OpenStore = Callable[..., Store]


@pytest.fixture(
    params=[pytest.param(name, marks=[pytest.mark.service] if name in NEEDS_SERVER else [])
            for name in sorted(BACKENDS)]
)  # fmt: skip
def open_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OpenStore]:
    """``open_store(name)`` opens (or reopens) the store kept under ``name``."""
    opened: list[Store] = []

    def open_(name: str = "main") -> Store:
        directory = tmp_path / name
        directory.mkdir(exist_ok=True)
        store = BACKENDS[request.param](directory, request)
        opened.append(store)
        return store

    shared: list[Store] = []

    def shared_store() -> Store:
        """One store for a whole hypothesis test, its examples apart by machine name (a
        fresh store per example cost more than the example)."""
        if not shared:
            shared.append(open_("shared"))
        return shared[0]

    open_.shared = shared_store  # type: ignore[attr-defined]
    yield open_
    for store in opened:
        with contextlib.suppress(Exception):  # already closed by the test
            store.close()


@pytest.fixture
def store(open_store: OpenStore) -> Store:
    return open_store()


# --- batches and numpy references ----------------------------------------------------------


def make_batch(machine: str, seq: int, seed: int = 0, n: int | None = None) -> SampleBatch:
    """A batch determined by (machine, seq, seed): a resend is an identical batch."""
    rng = np.random.default_rng([seed, seq, sum(map(ord, machine))])
    n = int(rng.integers(0, 12)) if n is None else n
    t = np.round(seq * 1.0 + rng.uniform(0, 2.0, n), 3)  # overlaps neighbours, repeats
    names = [s for s in SIGS if rng.random() < 0.75]
    cols = {s: np.round(rng.normal(0, 10, n), 2) for s in names}
    if names and n and rng.random() < 0.3:
        cols[names[0]][rng.integers(0, n)] = np.nan  # a missing sample
    waves = []
    if rng.random() < 0.3:
        waves.append(Waveform(VIB, float(seq) + 0.25, 50.0, rng.normal(0, 1, 20), 3000.0))
    return SampleBatch(machine, t, cols, seq=seq, waveforms=waves)


def reference(batches: list[SampleBatch], machine: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per signal, (t, value) of every sample stored, sorted by (t, value)."""
    parts: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for b in batches:
        if b.machine != machine:
            continue
        for name, col in b.columns.items():
            keep = ~np.isnan(col)
            parts.setdefault(name, []).append((b.t[keep], col[keep]))
        for w in b.waveforms:
            t = w.t0 + np.arange(len(w.values)) / w.rate_hz
            parts.setdefault(w.signal, []).append((t, w.values))
    out = {}
    for name, chunks in parts.items():
        t = np.concatenate([c[0] for c in chunks])
        v = np.concatenate([c[1] for c in chunks])
        order = np.lexsort((v, t))
        if len(t):
            out[name] = (t[order], v[order])
    return out


def in_range(ref: dict, t0: float, t1: float) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    out = {}
    for name, (t, v) in ref.items():
        keep = (t >= t0) & (t < t1)
        if keep.any():
            out[name] = (t[keep], v[keep])
    return out


def unique(batches: list[SampleBatch]) -> list[SampleBatch]:
    seen: dict[tuple[str, int], SampleBatch] = {}
    for b in batches:
        seen.setdefault((b.machine, b.seq), b)
    return list(seen.values())


def ranges(seqs: set[int]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    for s in sorted(seqs):
        if out and out[-1][1] == s - 1:
            out[-1] = (out[-1][0], s)
        else:
            out.append((s, s))
    return out


def assert_raw_matches(store: Store, machine: str, ref: dict, t0: float, t1: float) -> None:
    expected = in_range(ref, t0, t1)
    got = store.query(machine, [*SIGS, VIB], t0, t1, buckets=10**9)
    assert sorted(got) == sorted(expected)
    for name, (t, v) in expected.items():
        assert got[name].raw
        np.testing.assert_array_equal(got[name].t, t)
        np.testing.assert_array_equal(got[name].values, v)


# --- idempotence and reordering --------------------------------------------------------------


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    keys=st.lists(st.tuples(st.sampled_from(["m1", "m2"]), st.integers(0, 12)), max_size=40),
    groups=st.lists(st.integers(1, 6), min_size=1, max_size=10),
    seed=st.integers(0, 2**16),
)
def test_duplicates_and_reordering_store_the_unique_set(
    open_store: OpenStore, keys: list[tuple[str, int]], groups: list[int], seed: int
) -> None:
    store = open_store.shared()  # type: ignore[attr-defined]
    prefix = f"h{next(_examples)}-"
    keys = [(prefix + m, s) for m, s in keys]
    batches = [make_batch(m, s, seed) for m, s in keys]
    results: list[bool] = []
    sizes = itertools.cycle(groups)
    i = 0
    while i < len(batches):  # mixed single writes and groups (with duplicates inside)
        k = next(sizes)
        chunk = batches[i : i + k]
        results += [store.write_batch(chunk[0])] if k == 1 else store.write_batches(chunk)
        i += len(chunk)
    first = [keys.index(k) == i for i, k in enumerate(keys)]
    assert results == first
    uniq = unique(batches)
    for machine in (prefix + "m1", prefix + "m2"):
        seqs = {b.seq for b in uniq if b.machine == machine}
        assert store.sequences(machine) == ranges(seqs)
        ref = reference(uniq, machine)
        assert store.count(machine) == sum(len(t) for t, _ in ref.values())
        for name, (t, _) in ref.items():
            assert store.count(machine, name) == len(t)
        assert_raw_matches(store, machine, ref, -1.0, 100.0)
        for name, (t, v) in ref.items():  # latest: the value at the latest time
            lt, lv = store.latest(machine)[name]
            assert lt == t.max()
            assert lv in set(v[t == t.max()])
    assert store.write_batches(batches) == [False] * len(batches)


_examples = itertools.count()


# --- downsampling -------------------------------------------------------------------------------


def bucket_reference(t: np.ndarray, v: np.ndarray, t0: float, t1: float, n: int) -> dict:
    width = (t1 - t0) / n
    keep = (t >= t0) & (t < t1)
    t, v = t[keep], v[keep]
    b = np.minimum(np.floor((t - t0) / width), n - 1).astype(np.int64)
    ids = np.unique(b)
    return {
        "t": t0 + ids * width,
        "min": np.array([v[b == i].min() for i in ids]),
        "max": np.array([v[b == i].max() for i in ids]),
        "mean": np.array([v[b == i].mean() for i in ids]),
        "count": np.array([(b == i).sum() for i in ids]),
    }


@settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    buckets=st.integers(1, 300),
    t0=st.floats(-5.0, 20.0),
    span=st.floats(0.5, 60.0),
    seed=st.integers(0, 2**16),
)
def test_downsampling_matches_numpy(
    open_store: OpenStore, buckets: int, t0: float, span: float, seed: int
) -> None:
    store = open_store.shared()  # type: ignore[attr-defined]
    machine = f"d{next(_examples)}"
    batches = [make_batch(machine, s, seed, n=200) for s in range(40)]
    store.write_batches(batches)
    ref = reference(batches, machine)
    got = store.query(machine, [*SIGS, VIB], t0, t0 + span, buckets=buckets)
    for name, (t, v) in in_range(ref, t0, t0 + span).items():
        s = got[name]
        if len(t) < buckets:
            assert s.raw
            np.testing.assert_array_equal(s.t, t)
            np.testing.assert_array_equal(s.values, v)
            continue
        exp = bucket_reference(t, v, t0, t0 + span, buckets)
        assert not s.raw
        np.testing.assert_allclose(s.t, exp["t"], rtol=0, atol=1e-9)
        np.testing.assert_array_equal(s.min, exp["min"])
        np.testing.assert_array_equal(s.max, exp["max"])
        np.testing.assert_allclose(s.mean, exp["mean"], rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(s.count, exp["count"])
    assert set(got) == set(in_range(ref, t0, t0 + span))


def test_query_is_raw_below_the_bucket_count_and_leaves_out_empty_signals(store: Store) -> None:
    t = np.arange(10) * 0.1
    store.write_batch(SampleBatch("m1", t, {"x.pos": t * 2}, seq=0))
    raw = store.query("m1", ["x.pos", "feed"], 0.0, 1.0, buckets=11)
    assert list(raw) == ["x.pos"] and raw["x.pos"].raw
    np.testing.assert_array_equal(raw["x.pos"].values, t * 2)
    agg = store.query("m1", ["x.pos"], 0.0, 1.0, buckets=5)["x.pos"]
    assert not agg.raw
    np.testing.assert_allclose(agg.t, [0.0, 0.2, 0.4, 0.6, 0.8])
    np.testing.assert_array_equal(agg.count, [2, 2, 2, 2, 2])
    assert store.query("nobody", ["x.pos"], 0.0, 1.0) == {}
    with pytest.raises(StoreError, match="empty"):
        store.query("m1", ["x.pos"], 1.0, 1.0)


# --- validation and atomicity ---------------------------------------------------------------------


def good(seq: int = 0) -> SampleBatch:
    t = np.arange(5) * 0.1 + seq
    return SampleBatch("m1", t, {"x.pos": t.copy(), "feed": t * 3}, seq=seq)


def bad_batches() -> list[tuple[SampleBatch, str]]:
    t = np.arange(5) * 0.1
    inf = t.copy()
    inf[3] = np.inf
    wave = Waveform(VIB, 0.0, 0.0, np.ones(4))
    return [
        (SampleBatch("m1", t, {"x.pos": t, "no.such": t}, seq=1), "unknown signal 'no.such'"),
        (
            SampleBatch("m1", t, {"x.pos": t, "feed": inf}, seq=1),
            "column 'feed'.*infinite.*index 3",
        ),
        (SampleBatch("m1", t, {"x.pos": t}, seq=-1), "seq=-1.*seq must be"),
        (SampleBatch("m1", t, {"x.pos": t.astype(str)}, seq=1), "column 'x.pos'.*numeric"),
        (SampleBatch("m1", t, {"x.pos": t}, seq=1, waveforms=[wave]), "waveform 0.*rate_hz"),
        (SampleBatch("m1", t + np.nan, {"x.pos": t}, seq=1), "seq=1: t.*non-finite"),
        (SampleBatch("", t, {"x.pos": t}, seq=1), "machine must be"),
    ]


@pytest.mark.parametrize("case", range(len(bad_batches())))
def test_invalid_batch_is_refused_whole_and_names_the_problem(store: Store, case: int) -> None:
    bad, message = bad_batches()[case]
    with pytest.raises(StoreError, match=message):
        store.validate(bad)
    with pytest.raises(StoreError, match=message):
        store.write_batches([good(0), bad, good(2)])
    for machine in ("m1", ""):
        assert store.sequences(machine) == []
        assert store.count(machine) == 0
    assert store.write_batches([good(0), good(2)]) == [True, True]  # keys not claimed


@contextlib.contextmanager
def failing_waveform_insert(store: Store) -> Iterator[None]:
    """Make the store's insert of waveforms fail (a full disk) inside its transaction."""
    if isinstance(store, PostgresStore):
        real_copy = postgres_store._copy_in

        def copy_in(cur: object, target: str, data: bytes) -> None:
            if target.startswith("waveforms"):
                raise RuntimeError("disk full")
            real_copy(cur, target, data)

        postgres_store._copy_in = copy_in
        try:
            yield
        finally:
            postgres_store._copy_in = real_copy
        return
    real = store._con  # the DuckDB writer connection

    class Failing:
        def __getattr__(self, name: str) -> object:
            return getattr(real, name)

        def execute(self, sql: str, *args: object) -> object:
            if sql.startswith("INSERT INTO waveforms"):
                raise RuntimeError("disk full")
            return real.execute(sql, *args)

    store._con = Failing()  # type: ignore[assignment]
    try:
        yield
    finally:
        store._con = real


def test_a_failure_inside_the_transaction_rolls_back_everything(store: Store) -> None:
    wave = Waveform(VIB, 0.0, 100.0, np.ones(10))
    batch = SampleBatch("m1", np.arange(3.0), {"x.pos": np.ones(3)}, seq=7, waveforms=[wave])
    with failing_waveform_insert(store), pytest.raises(RuntimeError, match="disk full"):
        store.write_batch(batch)
    assert store.sequences("m1") == [] and store.count("m1") == 0
    assert store.query("m1", ["x.pos"], 0.0, 10.0) == {}
    assert store.write_batch(batch) is True
    assert store.count("m1") == 13


def test_nan_means_no_sample(store: Store) -> None:
    t = np.arange(4.0)
    store.write_batch(SampleBatch("m1", t, {"x.pos": np.array([1.0, np.nan, 3.0, np.nan])}, seq=0))
    assert store.count("m1", "x.pos") == 2
    assert store.latest("m1")["x.pos"] == (2.0, 3.0)


def test_signals_declared_by_a_machine_are_accepted(store: Store) -> None:
    batch = SampleBatch("m1", np.arange(3.0), {"coolant.level": np.ones(3)}, seq=0)
    with pytest.raises(StoreError, match="unknown signal 'coolant.level'"):
        store.write_batch(batch)
    store.upsert_machine(MachineDescriptor("m1", "VMC 1", "Harbin", signals=("coolant.level",)))
    assert store.write_batch(batch) is True
    with pytest.raises(StoreError, match="unknown signal"):
        store.write_batch(SampleBatch("m2", np.arange(3.0), {"coolant.level": np.ones(3)}, seq=0))


# --- export ------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_export_rows_equal_query_rows(store: Store, tmp_path: Path, fmt: str) -> None:
    batches = [make_batch("m1", s, 3, n=30) for s in range(10)] + [make_batch("m2", 0, 3)]
    store.write_batches(batches)
    t0, t1 = 2.5, 7.25
    path = tmp_path / f"range.{fmt}"
    n = store.export("m1", t0, t1, path, fmt)  # type: ignore[arg-type]
    table = pq.read_table(path) if fmt == "parquet" else pacsv.read_csv(path)
    assert table.num_rows == n
    assert set(table["machine"].to_pylist()) == {"m1"}
    got = store.query("m1", [*SIGS, VIB], t0, t1, buckets=10**9)
    signal = np.asarray(table["signal"].to_pylist())
    for name in sorted(got):
        rows = signal == name
        np.testing.assert_array_equal(table["t"].to_numpy()[rows], got[name].t)
        np.testing.assert_array_equal(table["value"].to_numpy()[rows], got[name].values)
    assert n == sum(len(s.t) for s in got.values())
    only = store.export("m1", t0, t1, tmp_path / "x.parquet", "parquet", signals=["x.pos"])
    assert only == len(got["x.pos"].t)
    assert store.export("nobody", t0, t1, tmp_path / "empty.csv", "csv") == 0
    with pytest.raises(StoreError, match="format"):
        store.export("m1", t0, t1, tmp_path / "x.xlsx", "xlsx")  # type: ignore[arg-type]


# --- retention ---------------------------------------------------------------------------------


def test_delete_before_drops_old_data_and_keeps_the_rest(store: Store) -> None:
    batches = [make_batch("m1", s, 5, n=20) for s in range(10)]
    store.write_batches(batches)
    store.write_event(MachineEvent("m1", 1.0, "program", value="O100"))
    store.write_event(MachineEvent("m1", 8.0, "program", value="O200"))
    old = store.write_alarm("m1", Alarm(AlarmCode.ESTOP, Severity.CRITICAL, "e-stop", "panel", 1.0))
    store.update_alarm(old, cleared_at=2.0)
    store.write_alarm("m1", Alarm(AlarmCode.DRIVE_FAULT, Severity.FAULT, "x drive", "x", 1.5))
    total = store.count("m1")
    cut = 5.0
    deleted = store.delete_before(cut)
    # Samples before the cut go; a waveform goes only when it ends before the cut.
    survivors = [
        SampleBatch(b.machine, b.t[b.t >= cut], {k: c[b.t >= cut] for k, c in b.columns.items()},
                    b.seq, [w for w in b.waveforms if w.t0 + 19 / 50.0 >= cut])
        for b in batches
    ]  # fmt: skip
    kept = reference(survivors, "m1")
    assert_raw_matches(store, "m1", kept, -10.0, 100.0)
    assert store.count("m1") == sum(len(t) for t, _ in kept.values())
    assert deleted == total - store.count("m1")
    assert [e.value for e in store.events("m1")] == ["O200"]
    assert [a.alarm.code for a in store.alarms("m1")] == [AlarmCode.DRIVE_FAULT]  # active kept
    ends = {b.seq: max([*b.t, *(w.t0 + 19 / 50.0 for w in b.waveforms)]) for b in batches}
    assert store.sequences("m1") == ranges({s for s, end in ends.items() if end >= cut})


# --- events, alarms, machines --------------------------------------------------------------------


def test_events_round_trip_and_resends_are_ignored(store: Store) -> None:
    alarm = Alarm(AlarmCode.SPINDLE_OVERLOAD, Severity.FAULT, "load 130 %", "spindle", 3.0)
    events = [
        MachineEvent("m1", 1.0, "execution", value=1),
        MachineEvent("m1", 2.0, "program", value={"name": "O100", "lines": 42}),
        MachineEvent("m1", 3.0, "alarm", alarm=alarm),
        MachineEvent("m2", 2.5, "tool", value=3),
    ]
    assert [store.write_event(e) for e in events] == [True] * 4
    assert store.write_event(events[1]) is False
    assert store.events("m1") == events[:3]
    assert store.events(kind="tool") == events[3:]
    assert store.events(since=2.0, until=3.0) == [events[1], events[3]]
    with pytest.raises(StoreError, match="JSON"):
        store.write_event(MachineEvent("m1", 4.0, "program", value=object()))


def test_alarm_lifecycle(store: Store) -> None:
    a = Alarm(AlarmCode.FOLLOWING_ERROR, Severity.FAULT, "X following error", "x", 10.0)
    b = Alarm(AlarmCode.OVER_TEMPERATURE, Severity.WARNING, "spindle 71 °C", "spindle", 20.0)
    ida = store.write_alarm("m1", a)
    idb = store.write_alarm("m2", b)
    assert store.write_alarm("m1", a) == ida  # a resend is the same alarm
    assert [x.id for x in store.alarms()] == [idb, ida]  # newest first
    assert [x.id for x in store.alarms(machine="m1")] == [ida]
    assert [x.id for x in store.alarms(since=15.0)] == [idb]
    assert [x.id for x in store.alarms(active=True)] == [idb, ida]

    cleared = store.update_alarm(ida, cleared_at=12.0)
    assert cleared.alarm.cleared_at == 12.0 and not cleared.active
    assert store.update_alarm(ida, cleared_at=13.0).alarm.cleared_at == 12.0  # first clear wins
    assert [x.id for x in store.alarms(active=True)] == [idb]
    assert [x.id for x in store.alarms(active=False)] == [ida]

    acked = store.update_alarm(
        idb, acknowledged_by="li.wei", comment="coolant filter", acknowledged_at=99.0
    )
    assert (acked.acknowledged_by, acked.comment, acked.acknowledged_at) == (
        "li.wei",
        "coolant filter",
        99.0,
    )
    assert acked.active and acked.alarm == b
    with pytest.raises(StoreError, match="user"):
        store.update_alarm(idb, comment="who?")
    with pytest.raises(StoreError, match="no alarm with id 12345"):
        store.update_alarm(12345, cleared_at=1.0)


def test_machines_upsert(store: Store) -> None:
    d = MachineDescriptor(
        "hrb-1", "VMC Harbin", "Harbin", "VMC-600", ("x.pos",), extra={"ip": "10.0.0.5"}
    )
    store.upsert_machine(d)
    store.upsert_machine(MachineDescriptor("tsn-1", "VMC Tianjin", "Tianjin"))
    assert store.machines() == [d, MachineDescriptor("tsn-1", "VMC Tianjin", "Tianjin")]
    moved = MachineDescriptor("hrb-1", "VMC Harbin", "Dalian", "VMC-600")
    store.upsert_machine(moved)
    assert store.machines()[0] == moved


# --- persistence and threads ---------------------------------------------------------------------


def test_everything_survives_close_and_reopen(open_store: OpenStore) -> None:
    store = open_store("p")
    batches = [make_batch("m1", s, 9, n=15) for s in (0, 1, 2, 5)]
    store.write_batches(batches)
    d = MachineDescriptor("m1", "VMC", "Harbin", signals=("coolant.level",))
    store.upsert_machine(d)
    aid = store.write_alarm("m1", Alarm(AlarmCode.ESTOP, Severity.CRITICAL, "e-stop", "panel", 1.0))
    event = MachineEvent("m1", 1.0, "execution", value=2)
    store.write_event(event)
    latest = store.latest("m1")
    store.close()

    store = open_store("p")
    assert store.sequences("m1") == [(0, 2), (5, 5)]
    assert store.write_batch(batches[1]) is False
    assert_raw_matches(store, "m1", reference(batches, "m1"), -1.0, 100.0)
    assert store.latest("m1") == latest
    assert store.machines() == [d]
    assert [a.id for a in store.alarms(active=True)] == [aid]
    assert store.events("m1") == [event]
    batch = SampleBatch("m1", np.arange(2.0), {"coolant.level": np.ones(2)}, seq=6)
    assert store.write_batch(batch) is True  # declared signals known after reopen
    assert store.sequences("m1") == [(0, 2), (5, 6)]


def test_reads_from_other_threads_while_writing(store: Store) -> None:
    errors: list[BaseException] = []
    done = threading.Event()

    def reader() -> None:
        try:
            while not done.is_set():
                store.query("m1", SIGS, 0.0, 1000.0, buckets=50)
                store.sequences("m1")
        except BaseException as e:  # reported below
            errors.append(e)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for th in threads:
        th.start()
    for seq in range(60):
        store.write_batch(make_batch("m1", seq, 1, n=50))
    done.set()
    for th in threads:
        th.join()
    assert not errors
    assert store.sequences("m1") == [(0, 59)]
