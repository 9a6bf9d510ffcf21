"""Batches decoded through a known layout (``codec.ColumnBlock``) store exactly as plain ones.

The hub's fast path hands a decoded batch's values to the store as one array; what ends
up in the store must be what the per-column path stores, and a block changed after
decoding must be stored as changed.
"""

from __future__ import annotations

import itertools

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machinetwin.hub import Store
from machinetwin.hub.duckdb_store import DuckDBStore
from machinetwin.model import SampleBatch
from machinetwin.protocols import codec
from store_backends import StoreFactory

NAMES = ("x.pos", "y.pos", "spindle.load", "feed")


def decoded(machine: str, seq: int, values: np.ndarray, t0: float) -> SampleBatch:
    """Decode twice, so that the second decode goes through the remembered layout."""
    t = t0 + np.arange(values.shape[1]) * 0.01
    batch = SampleBatch(machine, t, dict(zip(NAMES, values, strict=True)), seq=seq)
    codec.decode_batch(codec.encode_batch(batch))
    return codec.decode_batch(codec.encode_batch(batch))


def stored_rows(store: Store, machines: list[str]) -> list[tuple]:
    """Every stored sample as (signal, t, value) per machine, through the Store interface."""
    rows = []
    for machine in machines:
        for name, s in sorted(store.query(machine, NAMES, -1e9, 1e9, buckets=10**9).items()):
            rows += [(machine[-1], name, t, v) for t, v in zip(s.t, s.values, strict=True)]
    return rows


_examples = itertools.count()


values = st.integers(1, 5).flatmap(
    lambda n: st.lists(
        st.lists(st.floats(-1e6, 1e6) | st.just(float("nan")), min_size=n, max_size=n),
        min_size=len(NAMES), max_size=len(NAMES),
    )
)  # fmt: skip


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])  # fmt: skip
@given(st.lists(values, min_size=1, max_size=4))
def test_blocks_store_as_plain_columns(
    new_store: StoreFactory, groups: list[list[list[float]]]
) -> None:
    store = new_store.shared()  # every backend (conftest.py); examples apart by machine
    example = next(_examples)
    fast, plain = (
        [f"e{example}-fast-{i}" for i in (0, 1)],
        [f"e{example}-plain-{i}" for i in (0, 1)],
    )
    batches = [decoded(fast[i % 2], i, np.asarray(v, float), 100.0 + i)
               for i, v in enumerate(groups)]  # fmt: skip
    assert all(isinstance(b.columns, codec.ColumnBlock) and b.columns.matrix() is not None
               for b in batches)  # fmt: skip
    copies = [SampleBatch(plain[i % 2], b.t.copy(), {k: c.copy() for k, c in b.columns.items()},
                          seq=b.seq) for i, b in enumerate(batches)]  # fmt: skip
    assert store.write_batches(batches) == store.write_batches(copies)
    assert stored_rows(store, fast) == stored_rows(store, plain)
    assert store.latest(fast[0]) == store.latest(plain[0])


def test_a_changed_block_is_stored_as_changed() -> None:
    store = DuckDBStore(":memory:")
    batch = decoded("m1", 0, np.ones((len(NAMES), 3)), 10.0)
    batch.columns["feed"] = np.full(3, 7.0)
    assert batch.columns.matrix() is None  # the block no longer describes the dict
    store.write_batches([batch])
    assert store.latest("m1")["feed"][1] == 7.0
    assert store.latest("m1")["x.pos"][1] == 1.0
    store.close()
