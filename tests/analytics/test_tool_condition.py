"""Tool condition: the like-with-like model on synthetic experiments, the bundled model,
the file reader's errors."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from machinetwin.analytics.datasets import UMICH_REQUIRED, DataFileError, load_umich
from machinetwin.analytics.evaluation import evaluate_tool_condition
from machinetwin.analytics.metrics import roc_auc
from machinetwin.analytics.tool_condition import (
    FEATURES,
    ToolConditionModel,
    _friction,
    bundled_model,
    segments,
)

FEEDS = (3.0, 6.0, 12.0, 20.0)

PROCESSES = ("Prep", "Layer 1 Up", "Layer 1 Down", "Layer 2 Up", "Layer 2 Down", "End")


def write_experiment(path: Path, feed: float, worn: bool, seed: int, wear_effect: float = 0.15,
                     rows_per_process: int = 40) -> Path:  # fmt: skip
    """Loads grow with feed and, for a worn tool, by ``wear_effect`` (relative)."""
    rng = np.random.default_rng(seed)
    header = ["", *UMICH_REQUIRED, "tool_condition"]
    factor = 1.0 + (wear_effect if worn else 0.0)
    with path.open("w", newline="") as fh:
        out = csv.writer(fh)
        out.writerow(header)
        i = 0
        for process in PROCESSES:
            cutting = process.startswith("Layer")
            down = process.endswith("Down")
            for _ in range(rows_per_process):
                v = feed if cutting else 0.0
                noise = rng.normal(0, 0.03, 6)
                row = {
                    "X1_ActualVelocity": v * (-1 if down else 1) + noise[0],
                    "Y1_ActualVelocity": 0.1 * v + noise[1],
                    "X1_CurrentFeedback": (1.0 + 0.2 * v) * factor * (1 + noise[2]),
                    "Y1_CurrentFeedback": (0.8 + 0.1 * v) * factor * (1 + noise[3]),
                    "S1_CurrentFeedback": (15.0 + 0.3 * v + (1.0 if down else 0.0)) * factor
                    * (1 + noise[4]),
                    "S1_OutputPower": 0.1 * factor * (1 + noise[5]),
                    "S1_ActualVelocity": 53.3,
                    "M1_CURRENT_FEEDRATE": feed,
                }  # fmt: skip
                values = [row.get(c, 0.0) for c in UMICH_REQUIRED]
                values[UMICH_REQUIRED.index("Machining_Process")] = process
                out.writerow([i, *values, "worn" if worn else "unworn"])
                i += 1
    return path


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory: pytest.TempPathFactory) -> list:
    """Eight experiments: each feed once with a worn and once with an unworn tool."""
    folder = tmp_path_factory.mktemp("umich")
    return [
        load_umich(write_experiment(folder / f"experiment_{k:02d}.csv", feed, worn, seed=k))
        for k, (feed, worn) in enumerate((f, w) for f in FEEDS for w in (False, True))
    ]


def test_segments_are_the_cutting_processes(synthetic: list) -> None:
    seg = segments(synthetic[0])
    assert seg.names == ["Layer 1 Down", "Layer 1 Up", "Layer 2 Down", "Layer 2 Up"]
    assert seg.loads.shape == (4, len(FEATURES))


def test_spindle_load_is_referenced_to_the_experiments_own_idle_load(synthetic: list) -> None:
    # The synthetic spindle draws 15 A x factor idling and (15 + 0.3 v + [down]) x factor cutting.
    for exp, (feed, worn) in zip(synthetic, ((f, w) for f in FEEDS for w in (False, True)),
                                 strict=True):  # fmt: skip
        seg = segments(exp)
        factor = 1.15 if worn else 1.0
        down = np.array([n.endswith("Down") for n in seg.names], dtype=float)
        expected = (0.3 * feed + down) * factor
        col = FEATURES.index("spindle_current_over_idle")
        assert seg.loads[:, col] == pytest.approx(expected, abs=0.05 * 15 * factor)


@given(
    offset=st.floats(-5, 5), step=st.floats(0.0, 4.0), slope=st.floats(-0.2, 0.2),
    seed=st.integers(0, 10**6),
)  # fmt: skip
@settings(max_examples=30, deadline=None)
def test_friction_is_the_current_step_with_direction(
    offset: float, step: float, slope: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    v = rng.choice([-1.0, 1.0], 200) * rng.uniform(1.0, 20.0, 200)
    current = offset + step * np.sign(v) + slope * v + rng.normal(0, 0.01, v.size)
    assert _friction(current, v) == pytest.approx(step, abs=0.02)
    assert _friction(current, np.abs(v)) == 0.0  # never reverses: no step to measure


def test_experiment_without_idle_spindle_is_refused(tmp_path: Path) -> None:
    path = write_experiment(tmp_path / "noidle.csv", 6.0, False, seed=3)
    lines = path.read_text().splitlines()
    lines = [lines[0]] + [ln for ln in lines[1:] if ",Layer " in ln]  # cutting rows only
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFileError, match="noidle.csv: fewer than 10 rows with the spindle"):
        segments(load_umich(path))


def test_leave_one_experiment_out_finds_wear_across_feeds(synthetic: list) -> None:
    # Load rises with feed more than with wear: only a like-with-like comparison separates them.
    result = evaluate_tool_condition(synthetic)
    assert result.accuracy == 1.0 and result.auc == 1.0


def test_model_round_trips_through_json(synthetic: list) -> None:
    model = ToolConditionModel.fit(synthetic)
    again = ToolConditionModel.from_json(model.to_json())
    for exp in synthetic:
        assert again.probability_worn(exp) == pytest.approx(model.probability_worn(exp))
    with pytest.raises(DataFileError, match="not a tool-condition model"):
        ToolConditionModel.from_json('{"features": []}')


def test_bundled_model_was_trained_on_the_umich_experiments(synthetic: list) -> None:
    model = bundled_model()
    assert len(model.trained_on) == 14 and all(
        n.startswith("experiment_") for n in model.trained_on
    )
    p = model.probability_worn(synthetic[0])
    assert 0.0 <= p <= 1.0


@given(truth=st.lists(st.booleans(), min_size=2, max_size=30), seed=st.integers(0, 10**6))
@settings(max_examples=40, deadline=None)
def test_roc_auc_is_the_rank_probability(truth: list[bool], seed: int) -> None:
    truth_a = np.array(truth)
    score = np.random.default_rng(seed).random(truth_a.size)
    auc = roc_auc(truth_a, score)
    if truth_a.all() or not truth_a.any():
        assert np.isnan(auc)
        return
    assert roc_auc(truth_a, truth_a.astype(float)) == 1.0
    assert roc_auc(truth_a, -score) == pytest.approx(1.0 - auc)


def test_reader_names_missing_columns_and_bad_rows(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(",X1_ActualVelocity,Machining_Process\n0,1.0,Prep\n")
    with pytest.raises(DataFileError, match=r"bad.csv: missing column\(s\) Y1_ActualVelocity"):
        load_umich(bad)
    good = write_experiment(tmp_path / "e.csv", 6.0, False, seed=1)
    lines = good.read_text().splitlines()
    lines[5] = lines[5] + ",extra"
    good.write_text("\n".join(lines) + "\n")
    with pytest.raises(DataFileError, match="row 6 has"):
        load_umich(good)
    with pytest.raises(DataFileError, match="no such file"):
        load_umich(tmp_path / "absent.csv")


def test_experiment_without_cutting_is_refused(tmp_path: Path) -> None:
    path = write_experiment(tmp_path / "idle.csv", 0.0, False, seed=2)
    with pytest.raises(DataFileError, match="no cutting segment"):
        segments(load_umich(path))
