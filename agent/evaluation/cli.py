"""`camfleet eval`: how well camfleet's detection does on simulated scenes with known truth."""

from __future__ import annotations

import platform
import sys
import time
from pathlib import Path

import typer

from agent.evaluation.plot import write_plot
from agent.evaluation.report import summarise, table
from agent.evaluation.run import EvalSettings, evaluate_camera

STAGES = {"crops": "training: crops", "extractor": "training: extractor",
          "features": "training: features", "statistics": "training: statistics",
          "detect": "detecting", "clean": "normal footage"}  # fmt: skip


def eval_command(
    cameras: int = typer.Option(2, min=1, max=64, help="Simulated cameras (one scene each)."),
    minutes: float = typer.Option(
        10.0,
        min=0.5,
        help="Minutes of footage with anomalies per camera, and as many anomaly-free minutes.",
    ),
    seed: int = typer.Option(1, min=0, help="Seed of the first camera's scene."),
    extractor: str = typer.Option("patch-pca", help="patch-pca (self-trained) or pose-backbone."),
    plot: Path = typer.Option(Path("camfleet-eval.png"), help="Where to write the score plot."),
    cache: Path = typer.Option(
        Path.home() / ".cache" / "camfleet" / "eval", help="Encoded scenes, reused across runs."
    ),
    check: bool = typer.Option(False, "--check", help="Exit 1 if a goal is missed."),
) -> None:
    """Train on normal takes of simulated scenes, detect on takes with anomalies, drift, lighting
    change and passers-by, and score against the simulator's ground truth: event precision and
    recall, frame AUROC, false alarms per camera-hour on anomaly-free footage, onset-to-event
    latency, ROI placement error, camera-moved events for every sudden shift."""
    settings = EvalSettings(minutes=minutes, extractor=extractor)
    started = time.monotonic()
    runs = []
    for i in range(cameras):
        progress = _Progress(f"cam{i + 1}")
        runs.append(evaluate_camera(i, seed + i, settings, cache, progress))
        progress.done()
    summary = summarise(runs)
    write_plot(runs, plot)
    machine = f"{platform.node()} {platform.machine()}, python {platform.python_version()}"
    typer.echo(f"machine: {machine}; {time.monotonic() - started:.0f} s; "
               f"extractor {extractor}; plot {plot}")  # fmt: skip
    typer.echo(table(runs, summary))
    if check and not summary.goals_met():
        raise typer.Exit(1)


class _Progress:
    """One line per camera, rewritten in place: stage and count."""

    def __init__(self, camera: str) -> None:
        self.camera = camera
        self._last = 0.0

    def __call__(self, stage: str, done: int, total: int) -> None:
        now = time.monotonic()
        if now - self._last < 0.2 and done != total:
            return
        self._last = now
        count = f"{done}/{total}" if total else f"{done}"
        sys.stderr.write(f"\r{self.camera}: {STAGES.get(stage, stage):<22} {count:<12}")
        sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\n")
