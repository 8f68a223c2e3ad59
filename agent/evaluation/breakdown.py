"""Where detection fails: the true anomalies grouped by kind and by ROI, each group's recall,
onset and how high its anomalies scored relative to the threshold (below 1: the model cannot see
them at this threshold; above 1 but missed: persistence or the event logic lost them)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from agent.evaluation.metrics import Interval, match_events, percentile
from agent.evaluation.run import CameraRun


@dataclass(frozen=True, slots=True)
class TruthOutcome:
    truth: Interval
    found: bool
    onset_s: float  # first event opened - true onset; NaN if missed
    peak_ratio: float  # highest score / threshold inside the true interval; NaN if none judged


@dataclass(frozen=True, slots=True)
class Group:
    name: str
    truths: int
    found: int
    onset_p50_s: float
    peak_ratio_p50: float
    normal_ratio_p99: float  # of the frames outside any anomaly in the group's ROIs

    @property
    def recall(self) -> float:
        return self.found / self.truths if self.truths else float("nan")


def outcomes(run: CameraRun) -> list[TruthOutcome]:
    out = []
    for t in run.truths:
        m = match_events(run.events, [t])
        ratios = [sc / th for roi, stamp, sc, th, _ in run.scores
                  if roi == t.roi and t.start_us <= stamp < t.end_us]  # fmt: skip
        out.append(TruthOutcome(t, bool(m.found), m.latencies_s[0] if m.found else float("nan"),
                                max(ratios) if ratios else float("nan")))  # fmt: skip
    return out


def groups(runs: Sequence[CameraRun]) -> list[Group]:
    """One group per anomaly kind, then one per ROI, in name order."""
    every = [(r, o) for r in runs for o in outcomes(r)]
    by: list[tuple[str, Callable[[Interval], str]]] = [
        ("kind", lambda t: t.kind),
        ("roi", lambda t: t.roi),
    ]
    out = []
    for label, key in by:
        for name in sorted({key(o.truth) for _, o in every}):
            members = [o for _, o in every if key(o.truth) == name]
            rois = {o.truth.roi for o in members}
            normal = [sc / th for r in runs for roi, _, sc, th, anomalous in r.scores
                      if roi in rois and not anomalous]  # fmt: skip
            out.append(
                Group(
                    name=f"{label} {name}",
                    truths=len(members),
                    found=sum(o.found for o in members),
                    onset_p50_s=_median([o.onset_s for o in members]),
                    peak_ratio_p50=_median([o.peak_ratio for o in members]),
                    normal_ratio_p99=percentile(normal, 99),
                )
            )
    return out


def _median(values: Sequence[float]) -> float:
    finite = [v for v in values if np.isfinite(v)]
    return percentile(finite, 50)


def breakdown_table(runs: Sequence[CameraRun]) -> list[str]:
    head = (f"{'anomalies by':<22}{'truths':>7}{'found':>7}{'recall':>8}{'onset p50 s':>13}"
            f"{'peak/thr p50':>14}{'normal/thr p99':>16}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for g in groups(runs):
        lines.append(
            f"{g.name:<22}{g.truths:>7}{g.found:>7}{g.recall:>8.3f}{g.onset_p50_s:>13.2f}"
            f"{g.peak_ratio_p50:>14.2f}{g.normal_ratio_p99:>16.2f}"
        )
    return lines
