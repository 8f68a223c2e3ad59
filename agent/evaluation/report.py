"""The evaluation's figures over all cameras, the table `camfleet eval` prints, and its goals."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.evaluation.breakdown import breakdown_table
from agent.evaluation.metrics import auroc, match_events, percentile
from agent.evaluation.run import CameraRun

MOVED_WITHIN_US = 2_000_000  # a camera_moved event this soon after a sudden shift finds it


@dataclass(frozen=True)
class Summary:
    precision: float
    recall: float
    auroc: float
    false_alarms_per_hour: float
    onset_p50_s: float
    onset_p95_s: float
    roi_err_median_px: float
    roi_err_p99_px: float
    shifts: int
    shifts_found: int

    def goals_met(self) -> bool:
        return (
            self.precision >= 0.95
            and self.recall >= 0.95
            and self.auroc >= 0.98
            and self.false_alarms_per_hour <= 1
            and self.onset_p95_s < 1
            and self.shifts_found == self.shifts
        )

    def last_line(self) -> str:
        return (
            f"precision={self.precision:.3f} recall={self.recall:.3f} auroc={self.auroc:.4f} "
            f"false_alarms_per_hour={self.false_alarms_per_hour:.2f} "
            f"onset_p95_s={self.onset_p95_s:.2f} roi_err_p99_px={self.roi_err_p99_px:.2f}"
        )


def summarise(runs: Sequence[CameraRun]) -> Summary:
    events = [e for r in runs for e in r.events]
    truths = [t for r in runs for t in r.truths]
    match = match_events(events, truths)
    # Scores relative to their ROI's threshold, so ROIs and cameras share one scale.
    scores = [sc / th for r in runs for _, _, sc, th, _ in r.scores]
    labels = [label for r in runs for *_, label in r.scores]
    hours = sum(r.clean_hours for r in runs)
    errors = [e for r in runs for e in r.placement_errors_px]
    shifts = sum(len(r.shifts) for r in runs)
    found = sum(_shifts_found(r) for r in runs)
    return Summary(
        precision=match.precision,
        recall=match.recall,
        auroc=auroc(scores, labels),
        false_alarms_per_hour=sum(len(r.clean_events) for r in runs) / hours if hours else 0.0,
        onset_p50_s=percentile(match.latencies_s, 50),
        onset_p95_s=percentile(match.latencies_s, 95),
        roi_err_median_px=percentile(errors, 50),
        roi_err_p99_px=percentile(errors, 99),
        shifts=shifts,
        shifts_found=found,
    )


def _shifts_found(run: CameraRun) -> int:
    return sum(any(0 <= m - s <= MOVED_WITHIN_US for m in run.moved_events) for s in run.shifts)


def table(runs: Sequence[CameraRun], summary: Summary) -> str:
    head = (f"{'camera':<8}{'seed':>6}{'anomalies':>10}{'events':>8}{'found':>7}"
            f"{'clean FA':>9}{'shifts':>8}{'moved':>7}{'train s':>9}")  # fmt: skip
    lines = [head, "-" * len(head)]
    for r in runs:
        m = match_events(r.events, r.truths)
        lines.append(
            f"{r.camera:<8}{r.seed:>6}{len(r.truths):>10}{len(r.events):>8}{m.found:>7}"
            f"{len(r.clean_events):>9}{len(r.shifts):>8}{_shifts_found(r):>7}"
            f"{r.train_seconds:>9.1f}"
        )
    lines += ["-" * len(head), "", *breakdown_table(runs), ""]
    lines += [
        f"onset p50 {summary.onset_p50_s:.2f} s, p95 {summary.onset_p95_s:.2f} s; ROI placement "
        f"median {summary.roi_err_median_px:.2f} px, p99 {summary.roi_err_p99_px:.2f} px; "
        f"sudden shifts found {summary.shifts_found}/{summary.shifts}",
        summary.last_line(),
    ]
    return "\n".join(lines)
