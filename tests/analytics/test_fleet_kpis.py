"""Fleet KPIs (OEE, utilisation, energy per part, load spectrum) on telemetry with known answers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.analytics.fleet_kpis import KpiAccumulator, MachineKpis, merge_kpis
from machinetwin.model import Execution

T0 = 1.79e9
RATE = 10.0


def shift() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One hour at 10 Hz: 40 min ACTIVE (a part every 5 min; 4 min ideal), 10 min
    INTERRUPTED (feed hold), 5 min READY, then 5 min without data; 3 kW while active."""
    t = T0 + np.arange(0, 3300, 1 / RATE)  # data ends at 55 min
    minute = (t - T0) / 60
    execution = np.select([minute < 40, minute < 50], [Execution.ACTIVE, Execution.INTERRUPTED],
                          Execution.READY).astype(float)  # fmt: skip
    parts = np.minimum(np.floor(minute / 5), 8.0)  # 8 parts in the 40 active minutes
    power = np.where(execution == Execution.ACTIVE, 3000.0, 500.0)
    energy = np.cumsum(power / RATE)
    speed = np.where(execution == Execution.ACTIVE, 8000.0, 0.0)
    load = np.where(execution == Execution.ACTIVE, 35.0, 0.0)
    cols = {"execution": execution, "part_count": parts, "energy": energy, "spindle.speed": speed,
            "spindle.load": load}  # fmt: skip
    return t, cols


def kpis_of(chunks: list[tuple[np.ndarray, dict[str, np.ndarray]]], faults=()) -> MachineKpis:  # noqa: ANN001
    acc = KpiAccumulator("harbin-1", T0, T0 + 3600, [(T0, "pocket.ngc")], list(faults),
                         {"pocket.ngc": 240.0})  # fmt: skip
    for t, cols in chunks:
        acc.add(t, cols)
    return acc.result()


def test_oee_factors_of_a_known_shift() -> None:
    k = kpis_of([shift()])
    assert k.no_data_s == pytest.approx(300, abs=0.2)
    assert k.planned_s == pytest.approx(3300, abs=0.2)
    assert k.run_s == pytest.approx(2400, abs=0.2)
    assert k.availability == pytest.approx(2400 / 3300, rel=1e-3)
    assert k.parts == 8 and k.bad_parts == 0
    assert k.performance == pytest.approx(8 * 240 / 2400, rel=1e-3)  # ideal 4 min, took 5
    assert k.oee == pytest.approx(2400 / 3300 * 0.8, rel=1e-3)
    assert k.utilisation == pytest.approx(2400 / 3300, rel=1e-3)
    assert k.state_s["INTERRUPTED"] == pytest.approx(600, abs=0.2)
    assert k.energy_j == pytest.approx(3000 * 2400 + 500 * 900, rel=1e-3)
    assert k.load_hours.sum() == pytest.approx(3300 / 3600, rel=1e-3)
    speed_bin, load_bin = np.unravel_index(np.argmax(k.load_hours), k.load_hours.shape)
    assert k.speed_edges[speed_bin] <= 8000 < k.speed_edges[speed_bin + 1]
    assert k.load_edges[load_bin] <= 35 < k.load_edges[load_bin + 1]
    assert k.cycles_by_program["pocket.ngc"] == pytest.approx([300.0] * 7, abs=0.2)


def test_a_fault_during_a_cycle_makes_that_part_bad() -> None:
    k = kpis_of(
        [shift()], faults=[T0 + 12 * 60, T0 + 52 * 60]
    )  # in cycle 3; the second after all parts
    assert k.bad_parts == 1 and k.quality == pytest.approx(7 / 8)


def test_without_an_ideal_the_machines_best_cycles_set_performance() -> None:
    t, cols = shift()
    acc = KpiAccumulator("harbin-1", T0, T0 + 3600, [(T0, "pocket.ngc")])
    acc.add(t, cols)
    assert acc.result().performance == pytest.approx(8 * 300 / 2400, rel=1e-3)


def test_no_data_at_all_is_no_planned_time() -> None:
    k = KpiAccumulator("harbin-1", T0, T0 + 3600).result()
    assert k.planned_s == 0 and np.isnan(k.availability) and k.parts == 0


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(1, 32_999), max_size=6, unique=True))
def test_chunking_does_not_change_the_result(cuts: list[int]) -> None:
    t, cols = shift()
    edges = [0, *sorted(cuts), len(t)]
    chunks = [
        (t[a:b], {k: v[a:b] for k, v in cols.items()})
        for a, b in zip(edges[:-1], edges[1:], strict=True)
    ]
    whole, chunked = kpis_of([shift()]), kpis_of(chunks)
    for name in ("planned_s", "run_s", "spindle_s", "energy_j", "ideal_s"):
        assert getattr(chunked, name) == pytest.approx(getattr(whole, name), rel=1e-9, abs=1e-6)
    assert chunked.parts == whole.parts and chunked.bad_parts == whole.bad_parts
    np.testing.assert_allclose(chunked.load_hours, whole.load_hours, atol=1e-9)


def test_periods_merge_to_the_whole_even_with_a_part_at_the_boundary() -> None:
    t, cols = shift()
    whole = kpis_of([(t, cols)])
    cut = int(np.searchsorted(t, T0 + 30 * 60))  # the sixth part is counted at this very sample
    halves = []
    for a, b, t0, t1 in ((0, cut, T0, T0 + 1800), (cut, len(t), T0 + 1800, T0 + 3600)):
        before = {k: float(cols[k][a - 1]) for k in ("part_count", "energy")} if a else {}
        acc = KpiAccumulator("harbin-1", t0, t1, [(T0, "pocket.ngc")], [], {"pocket.ngc": 240.0},
                             counters_before=before)  # fmt: skip
        acc.add(t[a:b], {k: v[a:b] for k, v in cols.items()})
        halves.append(acc.result())
    merged = merge_kpis(halves)
    assert merged.parts == whole.parts == 8
    for name in ("planned_s", "run_s", "spindle_s", "energy_j", "ideal_s"):
        assert getattr(merged, name) == pytest.approx(getattr(whole, name), rel=1e-6, abs=0.2)
    assert merged.oee == pytest.approx(whole.oee, rel=1e-3)
