"""Classification metrics, in numpy (no scikit-learn needed to score)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def macro_f1(truth: np.ndarray, predicted: np.ndarray, labels: Sequence[str]) -> float:
    """Mean F1 over the classes present in ``truth``."""
    scores = []
    for cls in labels:
        tp = np.sum((predicted == cls) & (truth == cls))
        fp = np.sum((predicted == cls) & (truth != cls))
        fn = np.sum((predicted != cls) & (truth == cls))
        if tp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores))


def roc_auc(truth: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties half."""
    truth = np.asarray(truth, dtype=bool)
    pos, neg = np.asarray(score)[truth], np.asarray(score)[~truth]
    if pos.size == 0 or neg.size == 0:
        return float("nan")
    diff = pos[:, None] - neg[None, :]
    return float(np.mean((diff > 0) + 0.5 * (diff == 0)))
