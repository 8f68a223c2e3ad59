"""Scores of a detection run against ground truth: plain functions over plain values."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

SLACK_US = 1_000_000  # an event this close to a true interval still counts as finding it


@dataclass(frozen=True, slots=True)
class Interval:
    """A true anomaly, or a detected event, in one ROI."""

    camera: str
    roi: str
    start_us: int
    end_us: int
    opened_us: int = 0  # events: the stamp of the frame that opened it
    kind: str = ""  # true anomalies: the simulator's anomaly kind


@dataclass(frozen=True, slots=True)
class EventMatch:
    true_positives: int  # events that overlap a true anomaly of their ROI
    false_positives: int
    found: int  # true anomalies with at least one event
    missed: int
    latencies_s: tuple[float, ...]  # per found anomaly: first event opened - true onset

    @property
    def precision(self) -> float:
        events = self.true_positives + self.false_positives
        return self.true_positives / events if events else 1.0

    @property
    def recall(self) -> float:
        truths = self.found + self.missed
        return self.found / truths if truths else 1.0


def _overlaps(a: Interval, b: Interval, slack_us: int) -> bool:
    return (a.camera, a.roi) == (b.camera, b.roi) and (
        a.start_us <= b.end_us + slack_us and b.start_us <= a.end_us + slack_us
    )


def match_events(
    events: Sequence[Interval], truths: Sequence[Interval], slack_us: int = SLACK_US
) -> EventMatch:
    tp = sum(any(_overlaps(e, t, slack_us) for t in truths) for e in events)
    latencies, found = [], 0
    for t in truths:
        hits = [e for e in events if _overlaps(e, t, slack_us)]
        if hits:
            found += 1
            latencies.append(max(0, min(e.opened_us for e in hits) - t.start_us) / 1e6)
    return EventMatch(tp, len(events) - tp, found, len(truths) - found, tuple(latencies))


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Area under the ROC curve: the chance a random positive outscores a random negative
    (ties count half). NaN without both classes."""
    s = np.asarray(scores, np.float64)
    y = np.asarray(labels, bool)
    positives, negatives = int(y.sum()), int((~y).sum())
    if not positives or not negatives:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s), np.float64)
    sorted_scores = s[order]
    # Average ranks over ties.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts - 1) / 2.0 + 1
    ranks[order] = np.repeat(average, counts)
    return float((ranks[y].sum() - positives * (positives + 1) / 2) / (positives * negatives))


def percentile(values: Sequence[float], q: float) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")
