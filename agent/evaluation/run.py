"""One simulated camera through the agent's detection: train on a normal take, detect on a take
with anomalies and a camera bump, count alarms on another normal take — all against the
simulator's truth.

The parts are the agent's own: PyAV decoding of the simulator's H.264, the registrar and drift
tracker (every other analysed frame, as the agent registers at a few fps), the model trainer,
and the detection service (inference pool, scheduler, change gate, detector, persistence). Only
the RTSP hop is left out, so a run takes seconds per simulated minute instead of real time.
"""

from __future__ import annotations

import dataclasses
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import av
import numpy as np

from agent.detection.detector import Detection, View
from agent.detection.loaded_model import LoadedModel, load_model
from agent.detection.luma import Luma, luma_plane
from agent.detection.model.footage import FollowedView, training_frames
from agent.detection.model.train import ExtractorFactory, TrainingFrame, TrainSettings, train
from agent.detection.roi_geometry import compose, invert, place_polygon
from agent.detection.service import DetectionService
from agent.evaluation.footage import footage
from agent.evaluation.metrics import Interval
from fleet.messages import RoiAdjustment, RoiSpec
from fleet.sim.render.renderer import SceneRenderer, canvas_margin
from fleet.sim.scene_spec import SceneSpec
from fleet.sim.schedule import DEFAULT_REGIONS, default_scene
from fleet.sim.truth import SceneClock

FPS, GOP = 15.0, 30
WIDTH, HEIGHT = 640, 360
DETECT_FPS = 5.0
REGISTER_EVERY = 2  # analysed frames per registration: 2.5 Hz, as the agent's drift tracker
EPOCH_US = 1_750_000_000_000_000
ROI_NAMES = ("left", "right")  # the default scene's two anomaly regions, in order
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class EvalSettings:
    minutes: float = 10.0  # of footage with anomalies, and as much anomaly-free footage
    # Normal takes of one loop each to train on: each brings 3-4 passers-by on new paths, as a
    # site's days of footage do; with 4 the paths of new footage were too often unseen.
    train_takes: int = 12
    loop_seconds: float = 60.0
    drift_px: float = 3.0
    drift_deg: float = 0.3
    extractor: str = "patch-pca"


@dataclass
class CameraRun:
    camera: str
    seed: int
    truths: list[Interval] = field(default_factory=list)
    events: list[Interval] = field(default_factory=list)  # on the take with anomalies
    clean_events: list[Interval] = field(default_factory=list)  # on the anomaly-free take
    clean_hours: float = 0.0
    # (roi, stamp, score, threshold, label) per judged crop of the take with anomalies
    scores: list[tuple[str, int, float, float, bool]] = field(default_factory=list)
    placement_errors_px: list[float] = field(default_factory=list)
    shifts: list[int] = field(default_factory=list)  # stamps of the sudden camera shifts
    moved_events: list[int] = field(default_factory=list)  # stamps of camera_moved events
    train_seconds: float = 0.0


def rois() -> list[RoiSpec]:
    return [
        RoiSpec(
            id=name,
            polygon=[(r.x, r.y), (r.x + r.w, r.y), (r.x + r.w, r.y + r.h), (r.x, r.y + r.h)],
        )
        for name, r in zip(ROI_NAMES, DEFAULT_REGIONS, strict=True)
    ]


def scenes(seed: int, s: EvalSettings) -> tuple[list[SceneSpec], SceneSpec, SceneSpec]:
    """Takes of one place: normal ones to train on (one loop each, other passers-by, drift and
    light each time), one with anomalies and a bump, and another normal one."""
    test = default_scene(seed, WIDTH, HEIGHT, FPS, GOP, s.loop_seconds, drift_px=s.drift_px,
                         drift_deg=s.drift_deg, sudden_shift=True)  # fmt: skip
    test = dataclasses.replace(test, margin_px=canvas_margin(test))
    normal = dataclasses.replace(test, anomalies=(), shifts=())
    takes = [dataclasses.replace(normal, variant=v) for v in range(1, s.train_takes + 1)]
    return (takes, dataclasses.replace(test, variant=100),
            dataclasses.replace(normal, variant=200))  # fmt: skip


def evaluate_camera(
    index: int, seed: int, s: EvalSettings, cache_dir: Path, progress: Progress
) -> CameraRun:
    camera = f"cam{index + 1}"
    run = CameraRun(camera, seed)
    normal, test_spec, clean_spec = scenes(seed, s)
    step = round(FPS / DETECT_FPS)
    reference_pose = _pose(SceneRenderer(normal[0]), 0)

    def training_footage() -> Iterator[tuple[int, av.VideoFrame]]:
        for take, spec in enumerate(normal):
            clock = SceneClock(EPOCH_US + take * 10**10, FPS, spec.frame_count)
            for f in footage(spec, clock, spec.frame_count, cache_dir, step):
                yield f.stamp_us, f.image

    frames = training_frames(training_footage())
    first = next(frames)  # the reference view the ROIs are drawn on
    reference = first.luma

    def with_first() -> Iterator[TrainingFrame]:
        yield first
        yield from frames

    with tempfile.TemporaryDirectory() as tmp:
        artifact = train(with_first(), camera, rois(), TrainSettings(), progress,
                         extractor=_extractor(s.extractor))  # fmt: skip
        run.train_seconds = artifact.manifest.metrics.total_seconds
        path = Path(tmp) / "model.camfleet"
        artifact.write(path)
        model, extractor = load_model(path, camera)

    minutes_frames = round(s.minutes * 60 * FPS)
    for name, spec, take in (("detect", test_spec, 1), ("clean", clean_spec, 2)):
        take_clock = SceneClock(EPOCH_US + take * 10**11, FPS, spec.frame_count)
        result = _Take(camera, reference, reference_pose)
        result.run(spec, take_clock, minutes_frames, (model, extractor), cache_dir,
                   partial(progress, name))  # fmt: skip
        events = [_interval(d) for d in _final(result.detections)]
        if name == "detect":
            run.events = events
            run.truths = _truths(camera, spec, take_clock, minutes_frames)
            run.shifts = _shift_stamps(spec, take_clock, minutes_frames)
            run.moved_events = result.tracker.moves
            run.placement_errors_px = result.placement_errors_px
            run.scores = [(r, t, sc, th, _label(run.truths, r, t))
                          for r, t, sc, th in result.verdicts]  # fmt: skip
        else:
            run.clean_events, run.clean_hours = events, minutes_frames / FPS / 3600
    return run


class _Take:
    """One take of footage through a fresh detection service, collecting what it says."""

    def __init__(self, camera: str, reference: Luma, reference_pose: RoiAdjustment) -> None:
        self.camera, self.reference_pose = camera, reference_pose
        self.tracker = FollowedView(reference)
        self.detections: list[Detection] = []
        self.verdicts: list[tuple[str, int, float, float]] = []
        self.placement_errors_px: list[float] = []
        self._lock = threading.Lock()

    def run(
        self,
        spec: SceneSpec,
        clock: SceneClock,
        frames: int,
        model: tuple[LoadedModel, bytes],
        cache_dir: Path,
        progress: Callable[[int, int], None],
    ) -> None:
        service = DetectionService(pool_size=2)
        detector = service.attach(self.camera, model[0], model[1], rois(), DETECT_FPS,
                                  self._view, self._detected, self._judged)  # fmt: skip
        renderer = SceneRenderer(spec)
        step = round(FPS / DETECT_FPS)
        try:
            for n, f in enumerate(footage(spec, clock, frames, cache_dir, step)):
                if n % REGISTER_EVERY == 0:
                    found = self.tracker.follow(luma_plane(f.image), f.stamp_us)
                    truth = compose(invert(self.reference_pose), _pose(renderer, f.index))
                    self.placement_errors_px.append(_placement_error(found, truth))
                detector.offer(f.stamp_us, f.image)
                _settle(service, self.camera)
                progress(n + 1, frames // step)
        finally:
            service.close()

    def _view(self, width: int) -> View:  # the frames are all one size: no rescaling
        state = self.tracker.tracker.state
        return View(state.adjustment, state.view_lost, state.adjustment)

    def _detected(self, d: Detection) -> None:
        with self._lock:
            self.detections.append(d)

    def _judged(self, roi: str, stamp_us: int, score: float, threshold: float) -> None:
        with self._lock:
            self.verdicts.append((roi, stamp_us, score, threshold))


def _extractor(name: str) -> ExtractorFactory | None:
    if name == "patch-pca":
        return None  # the trainer's default
    if name == "pose-backbone":
        from agent.detection.model.pose_backbone import pose_backbone_extractor

        return lambda crops: pose_backbone_extractor()
    raise ValueError(f"unknown extractor {name!r}: patch-pca or pose-backbone")


def _pose(renderer: SceneRenderer, index: int) -> RoiAdjustment:
    p = renderer.pose(index)
    return RoiAdjustment(dx=p.dx, dy=p.dy, angle_deg=p.angle_deg, scale=1.0)


def _placement_error(found: RoiAdjustment, truth: RoiAdjustment) -> float:
    """The largest distance between an ROI vertex placed by `found` and by `truth`, px."""
    worst = 0.0
    for roi in rois():
        a = place_polygon(roi.polygon, found, WIDTH, HEIGHT)
        b = place_polygon(roi.polygon, truth, WIDTH, HEIGHT)
        worst = max(worst, float(np.hypot(*(a - b).T).max()))
    return worst


def _settle(service: DetectionService, camera: str, timeout_s: float = 10.0) -> None:
    """Wait until the camera's crops in the pool have been judged, so a run is repeatable."""
    deadline = time.monotonic() + timeout_s
    while service.scheduler.stats.in_flight(camera) and time.monotonic() < deadline:
        time.sleep(0.0002)


def _final(detections: list[Detection]) -> list[Detection]:
    """One per event: its closed state, or its opened state if the take ended first."""
    by_id: dict[object, Detection] = {}
    opened: dict[object, int] = {}
    for d in detections:
        opened.setdefault(d.event.id, d.decided_us)
        if d.closed or d.event.id not in by_id:
            by_id[d.event.id] = d
    return [dataclasses.replace(d, decided_us=opened[d.event.id]) for d in by_id.values()]


def _interval(d: Detection) -> Interval:
    e = d.event
    return Interval(e.camera, e.roi_id or "", e.start_us, e.end_us, d.decided_us)


def _truths(camera: str, spec: SceneSpec, clock: SceneClock, frames: int) -> list[Interval]:
    end_us = clock.frame_time_us(frames)
    out = []
    for k in range(frames // spec.frame_count + 1):
        base = clock.iteration_start_us(k)
        for a in spec.anomalies:
            start = base + round(a.start_s * 1e6)
            if start < end_us:
                roi = ROI_NAMES[DEFAULT_REGIONS.index(a.region)]
                end = min(end_us, base + round(a.end_s * 1e6))
                out.append(Interval(camera, roi, start, end, kind=a.kind))
    return out


def _shift_stamps(spec: SceneSpec, clock: SceneClock, frames: int) -> list[int]:
    end_us = clock.frame_time_us(frames)
    stamps = [
        clock.iteration_start_us(k) + round(at_s * 1e6)
        for k in range(frames // spec.frame_count + 1)
        for at_s, *_ in spec.shifts
    ]
    return [s for s in stamps if s < end_us]


def _label(truths: list[Interval], roi: str, stamp_us: int) -> bool:
    return any(t.roi == roi and t.start_us <= stamp_us < t.end_us for t in truths)
