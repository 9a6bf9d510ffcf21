"""The per-write ``series`` summary built in numpy equals the SQL GROUP BY it replaced.

The oracle is the SQL summary over what the store holds (the one ``delete_before``
compacts with): count, time span and newest value per (machine, signal), for groups
with several batches of one machine, NaNs (not stored), times out of order, duplicate
batches and waveforms (some empty).
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from machinetwin.hub.duckdb_store import _SAMPLES_SUMMARY, _WAVEFORMS_SUMMARY, DuckDBStore
from machinetwin.model import SampleBatch, Waveform

NAMES = ("x.pos", "y.pos", "feed")

# few distinct times, so that equal times (ties) and disorder both occur
times = st.lists(st.integers(0, 6).map(float), min_size=0, max_size=6)
value = st.floats(-1e3, 1e3) | st.just(float("nan"))


@st.composite
def batches(draw: st.DrawFn) -> list[SampleBatch]:
    out = []
    for i in range(draw(st.integers(1, 6))):
        t = np.asarray(draw(times), float)
        names = draw(st.lists(st.sampled_from(NAMES), unique=True, max_size=len(NAMES)))
        columns = {n: np.asarray(draw(st.lists(value, min_size=len(t), max_size=len(t))), float)
                   for n in names}  # fmt: skip
        waves = []
        if draw(st.booleans()):
            points = np.asarray(draw(st.lists(st.floats(-5, 5), max_size=4)), float)
            waves.append(Waveform("spindle.vib", draw(st.integers(0, 6)) + 0.5, 10.0, points))
        seq = draw(st.integers(0, 4))  # repeats: duplicates within and across groups
        out.append(SampleBatch(f"m{i % 2}", t, columns, seq=seq, waveforms=waves))
    return out


def summary(store: DuckDBStore) -> list[tuple]:
    """count, span and newest value per series; the newest value only where it is unique
    (the SQL ``arg_max`` picks any of several values at the newest time)."""
    rows = store._con.execute(
        """SELECT machine, signal, sum(n), min(t_first), max(t_last),
                   arg_max(last_value, t_last) FROM series GROUP BY ALL ORDER BY ALL"""
    ).fetchall()
    return [(m, s, int(n), a, b, v) for m, s, n, a, b, v in rows]


def oracle(store: DuckDBStore) -> list[tuple]:
    source = " UNION ALL ".join([_SAMPLES_SUMMARY.format(table="samples"),
                                 _WAVEFORMS_SUMMARY.format(table="waveforms")])  # fmt: skip
    rows = store._con.execute(
        f"SELECT machine, signal, sum(n), min(t_first), max(t_last), arg_max(last_value, t_last)"
        f" FROM ({source}) GROUP BY ALL ORDER BY ALL"
    ).fetchall()
    return [(m, s, int(n), a, b, v) for m, s, n, a, b, v in rows]


def newest_values(store: DuckDBStore) -> dict[tuple[int, int], set[float]]:
    """Every value at each series' newest time (the allowed newest values)."""
    rows = store._con.execute(
        """WITH p AS (SELECT machine, signal, t, value FROM samples UNION ALL
                      SELECT machine, signal, t0 + (len(value) - 1) / rate_hz, value[-1]
                      FROM waveforms WHERE len(value) > 0)
           SELECT machine, signal, value FROM p
           WHERE (machine, signal, t) IN (SELECT machine, signal, max(t) FROM p GROUP BY ALL)"""
    ).fetchall()
    out: dict[tuple[int, int], set[float]] = {}
    for m, s, v in rows:
        out.setdefault((m, s), set()).add(v)
    return out


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(batches(), min_size=1, max_size=3))
def test_series_summary_matches_sql(groups: list[list[SampleBatch]]) -> None:
    store = DuckDBStore(":memory:")
    try:
        for group in groups:
            store.write_batches(group)
        got, want = summary(store), oracle(store)
        assert [r[:5] for r in got] == [r[:5] for r in want]
        allowed = newest_values(store)
        for m, s, *_, last in got:
            assert last in allowed[(m, s)], (m, s, last, allowed[(m, s)])
    finally:
        store.close()


def test_series_newest_value_out_of_time_order() -> None:
    """A batch whose rows are not in time order: its newest value is the latest time's."""
    store = DuckDBStore(":memory:")
    t = np.array([3.0, 1.0, 5.0, 2.0])
    store.write_batches([SampleBatch("m", t, {"feed": np.array([30.0, 10.0, 50.0, 20.0])},
                                     seq=0)])  # fmt: skip
    assert store.latest("m") == {"feed": (5.0, 50.0)}
    assert store.count("m", "feed") == 4
    store.close()
