"""The evaluation's picture: per camera and ROI, scores over time (relative to the threshold)
with the true anomalies shaded and the events drawn under them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display here, and none needed

import matplotlib.pyplot as plt

from agent.evaluation.run import CameraRun


def write_plot(runs: Sequence[CameraRun], path: Path) -> None:
    rows = [(r, roi) for r in runs for roi in sorted({s[0] for s in r.scores})]
    fig, axes = plt.subplots(max(1, len(rows)), 1, figsize=(12, 2.2 * max(1, len(rows))),
                             sharey=True, squeeze=False)  # fmt: skip
    for ax, (run, roi) in zip(axes[:, 0], rows, strict=False):
        t0 = min(s[1] for s in run.scores)
        pts = sorted((t, sc / th) for r, t, sc, th, _ in run.scores if r == roi)
        ax.plot([(t - t0) / 1e6 for t, _ in pts], [v for _, v in pts], lw=0.7, color="tab:blue")
        ax.axhline(1.0, color="tab:red", lw=0.8, ls="--")
        for t in run.truths:
            if t.roi == roi:
                ax.axvspan((t.start_us - t0) / 1e6, (t.end_us - t0) / 1e6, color="orange",
                           alpha=0.3, lw=0)  # fmt: skip
        for e in run.events:
            if e.roi == roi:
                ax.hlines(-0.15, (e.start_us - t0) / 1e6, (e.end_us - t0) / 1e6, color="black",
                          lw=3)  # fmt: skip
        ax.set_ylabel(f"{run.camera}/{roi}\nscore / thr", fontsize=8)
        ax.set_yscale("symlog", linthresh=1)
    axes[-1, 0].set_xlabel("seconds into the take with anomalies")
    axes[0, 0].set_title("Scores over time: true anomalies shaded, events as black bars, "
                         "threshold dashed")  # fmt: skip
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
