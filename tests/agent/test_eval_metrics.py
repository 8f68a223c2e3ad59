"""Evaluation metrics on hand-made cases whose answers are known."""

from __future__ import annotations

import math

import numpy as np
import pytest

from agent.evaluation.metrics import Interval, auroc, match_events


def test_auroc_of_perfect_random_and_inverted_scores() -> None:
    labels = [False] * 50 + [True] * 50
    assert auroc(list(range(100)), labels) == 1.0
    assert auroc(list(range(100))[::-1], labels) == 0.0
    assert auroc([1.0] * 100, labels) == 0.5  # all tied
    rng = np.random.default_rng(0)
    assert auroc(rng.random(4000).tolist(), [i % 2 == 0 for i in range(4000)]) == pytest.approx(
        0.5, abs=0.03
    )
    assert math.isnan(auroc([1.0, 2.0], [True, True]))


def test_auroc_matches_pairwise_counting() -> None:
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 5, 60).astype(float)  # many ties
    labels = rng.random(60) < 0.3
    pos, neg = scores[labels], scores[~labels]
    pairs = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    assert auroc(scores.tolist(), labels.tolist()) == pytest.approx(pairs / (len(pos) * len(neg)))


def test_events_match_true_anomalies_of_their_roi_only() -> None:
    truths = [Interval("c", "left", 10_000_000, 13_000_000), Interval("c", "right", 20_000_000,
                                                                     22_000_000)]  # fmt: skip
    events = [
        Interval("c", "left", 10_400_000, 14_000_000, opened_us=10_600_000),
        Interval("c", "left", 12_000_000, 12_500_000, opened_us=12_200_000),  # a second one: TP
        Interval("c", "left", 30_000_000, 31_000_000, opened_us=30_400_000),  # nothing there
        Interval("c", "left", 20_000_000, 21_000_000, opened_us=20_500_000),  # the wrong ROI
    ]
    m = match_events(events, truths)
    assert (m.true_positives, m.false_positives, m.found, m.missed) == (2, 2, 1, 1)
    assert m.precision == 0.5 and m.recall == 0.5
    assert m.latencies_s == (pytest.approx(0.6),)
    assert match_events([], []).precision == 1.0
