"""`camfleet model ...`: train a camera's model from its recorded normal footage (or, for demos
and tests, a simulated camera's from the simulator's own loop), and show what an artifact holds."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import typer

from agent.detection.model.artifact import ModelArtifact, ModelArtifactError, sha256
from agent.detection.model.footage import recorded_frames, training_frames
from agent.detection.model.sim_footage import (
    SIM_TRAIN_SETTINGS,
    SimFootageError,
    scored_stream,
    served_normal_frames,
)
from agent.detection.model.train import TrainingError, train
from agent.evaluation.run import rois as evaluation_rois
from agent.recording.index import INDEX_FILE, Index
from fleet.cli.sim import parse_size
from fleet.config import ConfigError, load_agent_config
from fleet.messages import RoiSpec
from fleet.profiles import ProfileError, load_profile
from fleet.roi_text import FORMAT, format_roi, parse_roi
from fleet.sim.build import SimConfigError, SimOptions
from fleet.utc import iso_us, parse_time_us

app = typer.Typer(help="camfleet's own anomaly models.", no_args_is_help=True)

STAGES = {"crops": "cropping ROIs", "extractor": "learning the extractor",
          "features": "computing features", "statistics": "fitting statistics"}  # fmt: skip


def _fail(message: str) -> typer.Exit:
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(2)


@app.command("train")
def train_command(
    data: Path = typer.Option(..., help="The agent's data directory (its recordings)."),
    camera: str = typer.Option(..., help="Camera name."),
    from_: str = typer.Option(..., "--from", help="Start of normal footage: UTC ISO 8601 or µs."),
    to: str = typer.Option(..., help="End of normal footage: UTC ISO 8601 or epoch µs."),
    roi: list[str] = typer.Option([], help=f"An ROI: {FORMAT}. Repeat for more."),
    config: Path | None = typer.Option(None, help="Agent config whose camera entry has ROIs."),
    out: Path | None = typer.Option(None, help="Artifact file [default: CAMERA.camfleet-model]."),
    fps: float = typer.Option(5.0, min=0.1, help="Frames per second of footage to learn from."),
    stream: str | None = typer.Option(None, help="Stream to learn from [default: sub if any]."),
) -> None:
    """Build a model from the camera's recorded normal footage: drift-compensated ROI crops,
    a feature extractor learnt from them, PaDiM statistics per ROI, thresholds calibrated on
    held-back frames. Writes one artifact file (extractor, statistics, manifest)."""
    try:
        lo, hi = parse_time_us(from_), parse_time_us(to)
    except ValueError as exc:
        raise _fail(f"bad time: {exc}") from None
    rois = _rois(roi, config, camera)
    if not (data / INDEX_FILE).exists():
        raise _fail(f"{data} holds no recordings (no {INDEX_FILE})")
    out = out or Path(f"{camera}.camfleet-model")
    with Index.open(data) as index:
        streams = index.streams(camera)
        if not streams:
            raise _fail(f"no recordings of camera {camera!r} in {data}")
        chosen = stream or ("sub" if "sub" in streams else streams[0])
        if chosen not in streams:
            raise _fail(f"camera {camera!r} has no {chosen!r} stream; it has {streams}")
        frames = training_frames(recorded_frames(index, camera, chosen, lo, hi, fps))
        try:
            progress = _Progress()
            artifact = train(frames, camera, rois, progress=progress)
        except TrainingError as exc:
            raise _fail(str(exc)) from None
        finally:
            progress.close()
    m = artifact.manifest
    _written(artifact, out, f"{camera}/{chosen}, {iso_us(m.training.from_us)} .. "
                            f"{iso_us(m.training.to_us)}")  # fmt: skip


@app.command("train-sim")
def train_sim_command(
    camera: str = typer.Option(..., help="Simulated camera name (cam1 .. camN)."),
    cameras: int = typer.Option(4, min=1, help="As `camfleet sim --cameras`."),
    profile: str = typer.Option("generic-onvif", help="As `camfleet sim --profile`."),
    seed: int = typer.Option(SimOptions.seed, help="As `camfleet sim --seed`."),
    loop_seconds: float = typer.Option(
        SimOptions.loop_seconds, min=2.0, help="As `camfleet sim --loop-seconds`."
    ),
    main_size: str | None = typer.Option(None, help="As `camfleet sim --main-size`, e.g. 640x360."),
    distinct_scenes: int | None = typer.Option(
        None, min=1, help="As `camfleet sim --distinct-scenes`."
    ),
    cache_dir: Path = typer.Option(SimOptions.cache_dir, help="As `camfleet sim --cache-dir`."),
    roi: list[str] = typer.Option(
        [], help=f"An ROI: {FORMAT}. Repeat for more. Default: the scene's anomaly areas."
    ),
    out: Path | None = typer.Option(None, help="Artifact file. Default: CAMERA.camfleet-model."),
    fps: float = typer.Option(5.0, min=0.1, help="Frames per second of the loop to learn from."),
) -> None:
    """For demos and tests: build a simulated camera's model from the simulator's own normal
    frames, not from recordings. Give the options `camfleet sim` runs with: the scene loop it
    serves on the stream the agent scores is decoded from the simulator's cache (encoded first
    if it is not there), its frames without an anomaly on screen are the footage. The model
    knows the very loop it will score, so it proves the plumbing, not how well a model trained
    on a real site's recordings (`camfleet model train`) does."""
    rois = _rois(roi, None, camera, default=evaluation_rois())
    try:
        options = SimOptions(cameras=cameras, profile=load_profile(profile), seed=seed,
                             loop_seconds=loop_seconds, main_size=parse_size(main_size),
                             distinct_scenes=distinct_scenes, cache_dir=cache_dir)  # fmt: skip
        stream = scored_stream(options.profile)
        typer.echo(f"decoding {camera}'s {stream} stream loop from {cache_dir}", err=True)
        frames = training_frames(served_normal_frames(options, camera, fps))
        progress = _Progress()
        try:
            artifact = train(frames, camera, rois, SIM_TRAIN_SETTINGS, progress=progress)
        finally:
            progress.close()
    except (ProfileError, SimConfigError, SimFootageError, TrainingError) as exc:
        raise _fail(str(exc)) from None
    out = out or Path(f"{camera}.camfleet-model")
    _written(artifact, out, f"the simulator's {camera}/{stream} (seed {seed}, {profile}, "
                            f"{loop_seconds:g} s loop)")  # fmt: skip


def _written(artifact: ModelArtifact, out: Path, source: str) -> None:
    """Write the artifact and say what it holds."""
    digest = artifact.write(out)
    m = artifact.manifest
    typer.echo(f"\nmodel {m.model_version} -> {out} (sha256 {digest})")
    typer.echo(f"  trained on {m.training.frames} frames of {source}, "
               f"in {m.metrics.total_seconds:.1f} s")  # fmt: skip
    for roi_id, entry in m.roi_models.items():
        q = entry.training.held_back
        typer.echo(f"  ROI {roi_id}: threshold {entry.threshold:.3f} (held-back scores p99 "
                   f"{q.p99:.3f}, max {q.max:.3f})")  # fmt: skip


@app.command("show")
def show_command(path: Path = typer.Argument(..., help="A model artifact.")) -> None:
    """Check an artifact (format, every file's sha256) and print its manifest."""
    try:
        artifact = ModelArtifact.read(path)
    except (OSError, ModelArtifactError) as exc:
        raise _fail(str(exc)) from None
    typer.echo(f"sha256 {sha256(path)}")
    typer.echo(artifact.manifest.model_dump_json(indent=2))


def _rois(
    texts: list[str], config: Path | None, camera: str, default: Sequence[RoiSpec] = ()
) -> list[RoiSpec]:
    try:
        rois = [parse_roi(t) for t in texts]
    except ValueError as exc:
        raise _fail(str(exc)) from None
    if config is not None:
        try:
            cfg = load_agent_config(config)
        except ConfigError as exc:
            raise _fail(str(exc)) from None
        entry = next((c for c in cfg.cameras if c.name == camera), None)
        if entry is None:
            raise _fail(f"{config} has no camera {camera!r}")
        rois += entry.rois
    rois = rois or list(default)
    if not rois:
        raise _fail(f"no ROIs: give --roi {FORMAT}, or a --config whose camera has rois")
    typer.echo("ROIs: " + "  ".join(format_roi(r) for r in rois))
    return rois


class _Progress:
    """A bar per training stage; a running count where the total is not known yet (frames
    still being decoded)."""

    def __init__(self) -> None:
        self._stage: str | None = None
        self._bar: Any = None  # click's ProgressBar, entered by hand across calls
        self._done = 0

    def __call__(self, stage: str, done: int, total: int) -> None:
        label = STAGES.get(stage, stage).ljust(22)
        if stage != self._stage:
            self.close()
            self._stage, self._done = stage, 0
        if not total:
            typer.echo(f"\r{label} {done} frames", nl=False, err=True)
            return
        if self._bar is None:
            self._bar = typer.progressbar(length=total, label=label, file=sys.stderr)
            self._bar.__enter__()
        self._bar.length = total
        self._bar.update(done - self._done)
        self._done = done

    def close(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None
        elif self._stage is not None:
            typer.echo("", err=True)
