"""Leakage-free evaluation on the CWRU bearing and UMich mill data sets.

- physics path: no training at all, so every window and recording is a test
  case; accuracy is reported per 1 s window and per recording.
- learned path: trained on two fault sizes, tested on the third (all three
  rotations). The one Normal recording is cut into three contiguous thirds;
  rotation k tests on third k and trains on the other two, so no test window
  overlaps a training window (training windows may overlap each other).
- tool condition: leave one experiment out; an experiment's rows never land on
  both sides.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from .bearing_diagnosis import (
    LABELS,
    LearnedBearingModel,
    analysis_windows,
    learned_features,
    physics_labels,
    physics_scores,
)
from .bearings import BearingGeometry
from .datasets import CwruRecord, DataFileError, UmichExperiment
from .metrics import macro_f1, roc_auc
from .tool_condition import (
    CANDIDATES,
    DEFAULT_CANDIDATE,
    ToolConditionModel,
    segments,
    select_and_fit,
)

Progress = Callable[[str], None]


def _noop(_: str) -> None:
    pass


def _check_labelled(records: Sequence[CwruRecord]) -> None:
    for rec in records:
        if rec.label is None or rec.rpm is None:
            what = "a CWRU file name (e.g. IR007_0.mat)" if rec.label is None else "an RPM variable"
            raise DataFileError(f"{rec.path}: cannot evaluate without {what}")


@dataclass
class PhysicsResult:
    window_accuracy: float  # over the windows of the inner- and outer-race recordings
    recording_accuracy: float  # majority vote per recording, same recordings
    per_recording: dict[str, dict[str, object]] = field(default_factory=dict)
    all_window_accuracy: float = float("nan")  # every recording, normal and ball too


def evaluate_physics(
    records: Sequence[CwruRecord], bearing: BearingGeometry, progress: Progress = _noop
) -> PhysicsResult:
    """Physics-path accuracy; the target set is the inner- and outer-race recordings."""
    _check_labelled(records)
    per, hits_target, hits_all = {}, [], []
    for rec in records:
        progress(rec.path.name)
        windows = analysis_windows(rec.signal, rec.rate_hz)
        labels = physics_labels(physics_scores(windows, rec.rate_hz, rec.rpm / 60.0, bearing))
        hit = labels == rec.label
        values, counts = np.unique(labels, return_counts=True)
        vote = str(values[np.argmax(counts)])
        per[rec.path.name] = {"label": rec.label, "window_accuracy": float(hit.mean()),
                              "windows": int(hit.size), "vote": vote}  # fmt: skip
        hits_all.append(hit)
        if rec.label in ("inner_race", "outer_race"):
            hits_target.append(hit)
    target = [r for r in records if r.label in ("inner_race", "outer_race")]
    return PhysicsResult(
        window_accuracy=float(np.concatenate(hits_target).mean()) if hits_target else float("nan"),
        recording_accuracy=float(np.mean([per[r.path.name]["vote"] == r.label for r in target]))
        if target
        else float("nan"),
        per_recording=per,
        all_window_accuracy=float(np.concatenate(hits_all).mean()),
    )


@dataclass
class LearnedResult:
    macro_f1: float  # mean over the three held-out sizes
    per_size: dict[str, float]
    per_class_recall: dict[str, dict[str, float]]
    combined_macro_f1: float = float("nan")  # physics and learned probabilities averaged
    combined_per_size: dict[str, float] = field(default_factory=dict)
    physics_weight: dict[str, float] = field(default_factory=dict)  # chosen on training sizes
    recording_accuracy: float = float("nan")  # majority vote per test recording / Normal third


def _size_splits(
    records: Sequence[CwruRecord],
) -> list[tuple[str, list[tuple[CwruRecord, slice]], list[tuple[CwruRecord, slice]]]]:
    """(held-out size, training pieces, test pieces); a piece is a record and a sample range."""
    sizes = sorted({r.fault_size for r in records if r.fault_size})
    normals = [r for r in records if r.label == "normal"]
    splits = []
    for k, size in enumerate(sizes):
        train = [(r, slice(None)) for r in records if r.fault_size and r.fault_size != size]
        test = [(r, slice(None)) for r in records if r.fault_size == size]
        for rec in normals:
            third = rec.signal.size // len(sizes)
            for j in range(len(sizes)):
                piece = (rec, slice(j * third, (j + 1) * third))
                (test if j == k else train).append(piece)
        splits.append((size, train, test))
    return splits


def evaluate_learned(
    records: Sequence[CwruRecord],
    bearing: BearingGeometry,
    train_step_s: float = 0.25,
    trees: int = 300,
    progress: Progress = _noop,
) -> LearnedResult:
    """Train on two fault sizes, test on the third; macro-F1 per held-out size and mean."""
    _check_labelled(records)
    cache: dict[tuple[str, object, float], np.ndarray] = {}

    def features(rec: CwruRecord, part: slice, step: float) -> np.ndarray:
        key = (rec.path.name, (part.start, part.stop), step)
        if key not in cache:
            progress(f"features {rec.path.name}")
            windows = analysis_windows(rec.signal[part], rec.rate_hz, step)
            cache[key] = learned_features(windows, rec.rate_hz, rec.rpm / 60.0, bearing)
        return cache[key]

    per_size, recall, combined, weights = {}, {}, {}, {}
    votes: list[bool] = []
    for size, train, test in _size_splits(records):
        x_train = [features(r, p, train_step_s) for r, p in train]
        y_train = np.concatenate(
            [[r.label] * len(x) for (r, _), x in zip(train, x_train, strict=True)]
        )
        groups = _groups(train, x_train)
        x_test = np.vstack([features(r, p, 1.0) for r, p in test])
        y_test = np.concatenate([[r.label] * len(features(r, p, 1.0)) for r, p in test])
        progress(f"train without {size}")
        model = LearnedBearingModel(trees=trees).fit(np.vstack(x_train), y_train, groups)
        names = np.asarray(LABELS)
        predicted = names[np.argmax(model.probabilities(x_test), axis=1)]
        per_size[size] = macro_f1(y_test, predicted, LABELS)
        recall[size] = {c: float(np.mean(predicted[y_test == c] == c)) for c in LABELS}
        both = names[np.argmax(model.combined(x_test), axis=1)]
        combined[size] = macro_f1(y_test, both, LABELS)
        weights[size] = model.physics_weight
        votes += _votes(test, [len(features(r, p, 1.0)) for r, p in test], predicted)
    return LearnedResult(
        float(np.mean(list(per_size.values()))), per_size, recall,
        float(np.mean(list(combined.values()))), combined, weights, float(np.mean(votes)),
    )  # fmt: skip


def _votes(
    pieces: list[tuple[CwruRecord, slice]], sizes: list[int], predicted: np.ndarray
) -> list[bool]:
    """Per test piece (recording or Normal third): does the majority of its windows name its label?"""
    out, start = [], 0
    for (rec, _), n in zip(pieces, sizes, strict=True):
        values, counts = np.unique(predicted[start : start + n], return_counts=True)
        out.append(bool(values[np.argmax(counts)] == rec.label))
        start += n
    return out


def _groups(pieces: list[tuple[CwruRecord, slice]], features: list[np.ndarray]) -> np.ndarray:
    """Group of each training window for the combiner's inner split: its fault size; the
    Normal pieces are dealt to the sizes in turn, so every inner fold has normal windows."""
    sizes = sorted({r.fault_size for r, _ in pieces if r.fault_size})
    out, k = [], 0
    for (rec, _), x in zip(pieces, features, strict=True):
        if rec.fault_size:
            group = rec.fault_size
        else:
            group, k = sizes[k % len(sizes)], k + 1
        out.append(np.full(len(x), group))
    return np.concatenate(out)


@dataclass
class LoxoResult:
    accuracy: float
    auc: float
    probability_worn: dict[str, float]
    chosen: dict[str, str] = field(default_factory=dict)  # candidate picked in each fold


def evaluate_tool_condition(
    experiments: Sequence[UmichExperiment],
    select: bool = False,
    progress: Progress = _noop,
    fixed: str = DEFAULT_CANDIDATE,
) -> LoxoResult:
    """Leave-one-experiment-out: fit on all others, score the one left out.

    By default the model is the fixed design (all load features, C = 1). With
    ``select`` the candidate model is chosen by an inner leave-one-out on the
    training experiments only, so the left-out experiment never steers a choice.
    """
    segs = [segments(e) for e in experiments]
    worn = np.array([e.tool_condition == "worn" for e in experiments])
    names = [e.path.name for e in experiments]
    probs, chosen = {}, {}
    for i, name in enumerate(names):
        progress(f"leave out {name}")
        keep = [j for j in range(len(experiments)) if j != i]
        if select:
            model, chosen[name] = select_and_fit(
                [experiments[j] for j in keep], [segs[j] for j in keep]
            )
        else:
            cols, c = CANDIDATES[fixed]
            model = ToolConditionModel.fit_segments(
                [segs[j] for j in keep], worn[keep], [names[j] for j in keep], c, cols
            )
            chosen[name] = fixed
        probs[name] = float(model.segment_probabilities(segs[i]).mean())
    p = np.array(list(probs.values()))
    return LoxoResult(float(np.mean((p >= 0.5) == worn)), roc_auc(worn, p), probs, chosen)
