"""Decoding on the hub's network thread: large data batches only, and never an exception.

paho's thread must not raise, whatever a client sends; what it does not decode the
writer decodes (and rejects) as before.
"""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.hub.ingest import PREDECODE_MIN_BYTES, _predecode
from machinetwin.model import SampleBatch
from machinetwin.protocols import codec, topics


def payload(rows: int, columns: int = 50) -> bytes:
    cols = {f"aux.{i}": np.arange(rows, dtype=float) + i for i in range(columns)}
    return codec.encode_batch(SampleBatch("m1", np.arange(rows) * 0.01, cols, seq=3))


def test_large_data_batches_are_decoded_on_arrival() -> None:
    data = payload(100)
    assert len(data) >= PREDECODE_MIN_BYTES
    batch = _predecode(topics.data("m1"), data)
    assert batch is not None and batch.seq == 3 and batch.n_values == 5000
    assert np.array_equal(batch.columns["aux.7"], np.arange(100) + 7.0)


def test_small_batches_and_other_kinds_are_left_to_the_writer() -> None:
    small = payload(1)
    assert len(small) < PREDECODE_MIN_BYTES
    assert _predecode(topics.data("m1"), small) is None
    assert _predecode(topics.event("m1"), payload(100)) is None
    assert _predecode(topics.birth("m1"), payload(100)) is None


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=256), st.integers(0, 40), st.integers(0, 41_000))
def test_garbage_never_raises(blob: bytes, cut: int, at: int) -> None:
    noise = (blob or b"\0") * (PREDECODE_MIN_BYTES // max(len(blob), 1) + 1)  # large enough
    assert _predecode(topics.data("m1"), noise) is None
    good = payload(100)
    damaged = good[: len(good) - cut] if cut else good[:at] + blob + good[at + len(blob) :]
    result = _predecode(topics.data("m1"), damaged)  # a bad one is None, never an exception
    assert result is None or isinstance(result, SampleBatch)
