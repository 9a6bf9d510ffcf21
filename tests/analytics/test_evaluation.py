"""The leakage-free splits and the evaluation on CWRU-like records of the virtual machine."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from machinetwin.analytics.bearings import bearing
from machinetwin.analytics.datasets import CwruRecord
from machinetwin.analytics.evaluation import _size_splits, evaluate_learned, evaluate_physics
from machinetwin.machine import load_machine_config
from machinetwin.machine.vibration import VibrationFaults, VibrationModel

RATE, RPM = 12_000.0, 1797.0
SIZES = {"007": 0.3, "014": 0.6, "021": 1.0}  # fault size → the model's defect severity
KINDS = {"IR": "inner_race", "OR": "outer_race", "B": "ball"}


@pytest.fixture(scope="module")
def records() -> list[CwruRecord]:
    """A CWRU-like set from the virtual machine: nine faulty recordings and a normal one."""
    config = load_machine_config()
    out = []
    for k, (size, severity) in enumerate(SIZES.items()):
        for j, (prefix, label) in enumerate(KINDS.items()):
            faults = VibrationFaults(**{label: severity})
            model = VibrationModel(config, np.random.default_rng(10 * k + j), rate_hz=RATE)
            x = model.waveform(0.0, 2.0, RPM, faults=faults)
            out.append(CwruRecord(Path(f"{prefix}{size}_0.mat"), x, RATE, RPM, label, size))
    normal = VibrationModel(config, np.random.default_rng(99), rate_hz=RATE).waveform(0.0, 6.0, RPM)
    out.append(CwruRecord(Path("Normal_0.mat"), normal, RATE, RPM, "normal", None))
    return out


def test_splits_never_test_on_what_they_train_on(records: list[CwruRecord]) -> None:
    splits = _size_splits(records)
    assert [size for size, _, _ in splits] == list(SIZES)
    for size, train, test in splits:
        assert all(r.fault_size in (size, None) for r, _ in test)
        assert all(r.fault_size != size for r, _ in train)
        # The normal recording's test third overlaps none of its training thirds.
        test_rows = {i for r, p in test if r.label == "normal" for i in range(6 * 12_000)[p]}
        train_rows = {i for r, p in train if r.label == "normal" for i in range(6 * 12_000)[p]}
        assert test_rows and train_rows and not test_rows & train_rows


def test_evaluation_on_virtual_machine_records(records: list[CwruRecord]) -> None:
    physics = evaluate_physics(records, bearing("6205-2RS"))
    assert physics.window_accuracy == 1.0 and physics.recording_accuracy == 1.0
    assert physics.per_recording["IR014_0.mat"]["vote"] == "inner_race"
    learned = evaluate_learned(records, bearing("6205-2RS"), train_step_s=0.5, trees=20)
    assert set(learned.per_size) == set(SIZES)
    assert learned.macro_f1 >= 0.9 and learned.recording_accuracy >= 0.9
    assert all(0.0 <= w <= 1.0 for w in learned.physics_weight.values())
