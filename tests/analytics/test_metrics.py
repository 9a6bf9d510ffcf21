"""Our numpy metrics against scikit-learn's, and the learned combiner's weight."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import f1_score, roc_auc_score

from machinetwin.analytics.bearing_diagnosis import LABELS, LearnedBearingModel
from machinetwin.analytics.metrics import macro_f1, roc_auc

labels = st.lists(st.sampled_from(LABELS), min_size=1, max_size=60)


@given(truth=labels, seed=st.integers(0, 10**6))
@settings(max_examples=30, deadline=None)
def test_macro_f1_matches_sklearn(truth: list[str], seed: int) -> None:
    t = np.array(truth)
    p = np.random.default_rng(seed).choice(LABELS, size=t.size)
    present = sorted(set(truth))  # classes absent from the truth are not averaged
    assert macro_f1(t, p, LABELS) == pytest.approx(
        f1_score(t, p, labels=present, average="macro", zero_division=0)
    )


@given(truth=st.lists(st.booleans(), min_size=2, max_size=40), seed=st.integers(0, 10**6))
@settings(max_examples=30, deadline=None)
def test_roc_auc_matches_sklearn(truth: list[bool], seed: int) -> None:
    t = np.array(truth)
    if t.all() or not t.any():
        assert np.isnan(roc_auc(t, np.zeros(t.size)))
        return
    score = np.round(np.random.default_rng(seed).random(t.size), 1)  # with ties
    assert roc_auc(t, score) == pytest.approx(roc_auc_score(t, score))


def test_combiner_trusts_physics_when_the_other_features_are_noise() -> None:
    # Columns 0-2 are physics scores (inner, outer, ball in dB) that name the class;
    # the rest is noise: out of group, only physics carries over.
    rng = np.random.default_rng(0)
    y = np.repeat(np.array(LABELS), 30)
    scores = np.full((y.size, 3), 5.0) + rng.normal(0, 1, (y.size, 3))
    for k, cls in enumerate(("inner_race", "outer_race", "ball")):
        scores[y == cls, k] += 20.0
    groups = np.tile(np.repeat([0, 1, 2], 10), len(LABELS))
    noise = rng.normal(0, 1, (y.size, 10))
    noise[groups == 0] += 3.0 * (np.arange(y.size)[groups == 0] % 4)[:, None]  # group-specific
    model = LearnedBearingModel(trees=30).fit(np.hstack([scores, noise]), y, groups)
    assert model.physics_weight >= 0.5
    p = model.combined(np.hstack([scores, noise]))
    assert p.shape == (y.size, 4) and np.allclose(p.sum(axis=1), 1.0)
