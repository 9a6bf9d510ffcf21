"""The store's in-memory mirror of stored batch keys: exact, and never trusted blindly.

``DuckDBStore`` decides which batches of a group are new from ``_SeqSet`` ranges in
memory; these tests check the range set against a plain set, that the mirror survives a
reopen and retention, and that a wrong mirror is caught by the table's primary key
instead of storing a batch twice or dropping one.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machinetwin.hub.duckdb_store import DuckDBStore, _SeqSet
from machinetwin.model import SampleBatch
from store_backends import StoreFactory


def batch(machine: str, seq: int, t0: float = 100.0) -> SampleBatch:
    t = t0 + np.arange(3) * 0.01
    return SampleBatch(machine, t, {"feed": np.arange(3, dtype=float) + seq}, seq=seq)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 60), st.integers(0, 5)), max_size=30),
       st.lists(st.integers(-2, 70), max_size=40))  # fmt: skip
def test_seq_set_is_a_set(added: list[tuple[int, int]], probes: list[int]) -> None:
    seqs, plain = _SeqSet(), set()
    for first, width in added:
        seqs.add_range(first, first + width)
        plain.update(range(first, first + width + 1))
    assert all((p in seqs) == (p in plain) for p in probes + sorted(plain))
    ranges = seqs.ranges()
    assert all(a <= b for a, b in ranges)  # sorted, disjoint and not touching (merged)
    assert all(b1 + 1 < a2 for (_, b1), (a2, _) in zip(ranges, ranges[1:], strict=False))
    assert sum(b - a + 1 for a, b in ranges) == len(plain)


@settings(max_examples=30, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])  # fmt: skip
@given(st.lists(st.lists(st.tuples(st.sampled_from("ab"), st.integers(0, 12)), min_size=1,
                         max_size=8), min_size=1, max_size=5))  # fmt: skip
def test_each_key_is_stored_once(
    new_store: StoreFactory, groups: list[list[tuple[str, int]]]
) -> None:
    store = new_store.shared()  # every backend (conftest.py); examples apart by machine
    example = next(_examples)
    seen: set[tuple[str, int]] = set()
    for group in groups:
        got = store.write_batches([batch(f"e{example}{m}", s) for m, s in group])
        want = []
        for key in group:
            want.append(key not in seen)
            seen.add(key)
        assert got == want
    for m in "ab":
        stored = 3 * sum(1 for k in seen if k[0] == m)
        assert store.count(f"e{example}{m}", "feed") == stored


_examples = itertools.count()


def test_mirror_reloads_on_reopen_and_after_retention(tmp_path: Path) -> None:
    path = tmp_path / "hub.duckdb"
    with DuckDBStore(path) as store:
        assert store.write_batches([batch("m", s, 100.0 + s) for s in (0, 1, 2, 5)]) == [True] * 4
    with DuckDBStore(path) as store:  # a restarted hub knows what it stored
        assert store.write_batches([batch("m", s, 100.0 + s) for s in (1, 3, 5)]) == [
            False, True, False]  # fmt: skip
        store.delete_before(102.5)  # keys of seqs 0, 1, 2 (all data gone) go too
        assert store.sequences("m") == [(3, 3), (5, 5)]
        assert store.write_batches([batch("m", 1, 101.0), batch("m", 3, 103.0)]) == [True, False]


def test_a_wrong_mirror_is_caught_by_the_primary_key() -> None:
    store = DuckDBStore(":memory:")
    assert store.write_batches([batch("m", 0), batch("m", 1)]) == [True, True]
    store._keys.clear()  # as if the mirror had missed the writes
    assert store.write_batches([batch("m", 1), batch("m", 2)]) == [False, True]
    assert store.count("m", "feed") == 9
    assert 1 in store._keys[store._machine_ids["m"]]  # reloaded from the table
    store.close()
