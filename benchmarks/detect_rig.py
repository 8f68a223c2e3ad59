"""The detection benchmark's cameras: simulated scenes (camfleet eval's takes) with a model
trained on each, and a camera that plays its scene into the agent's detection at real-time pace
the way the agent's threads would: every 15 fps frame decoded, registration at the drift
tracker's rate, every frame the detect subscription lets through offered to the detector."""

from __future__ import annotations

import random
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from agent.detection.detector import Detection, View
from agent.detection.loaded_model import LoadedModel, load_model
from agent.detection.luma import Luma, luma_plane
from agent.detection.model.footage import FollowedView, training_frames
from agent.detection.model.train import train
from agent.detection.service import DetectionService
from agent.detection.tracking import DRIFT_FPS
from agent.evaluation.footage import Frame, encoded_loop, footage
from agent.evaluation.run import DETECT_FPS, EPOCH_US, FPS, EvalSettings, rois, scenes
from agent.fanout.hub import Decimator
from fleet.messages import RoiSpec
from fleet.sim.encoded import to_annexb
from fleet.sim.scene_spec import SceneSpec
from fleet.sim.truth import SceneClock

CACHE = Path.home() / ".cache" / "camfleet" / "eval"  # camfleet eval's default: the same loops
# The eval's two anomaly regions and a third, five-sided one across the middle of the view.
ROIS = [
    *rois(),
    RoiSpec(id="middle", polygon=[(0.38, 0.12), (0.62, 0.12), (0.66, 0.32), (0.50, 0.40),
                                  (0.34, 0.32)]),
]  # fmt: skip
# The agent's detect subscription holds 8 frames, dropping the oldest: a frame this late would
# have been dropped before the detector saw it.
LATE_S = 8 / DETECT_FPS


def say(line: str) -> None:
    """Progress, on stderr."""
    print(line, file=sys.stderr, flush=True)


@dataclass(frozen=True)
class Scene:
    seed: int
    train: SceneSpec  # a normal take the model learns from
    detect: SceneSpec  # what the cameras show: passers-by, anomalies, light, drift, a bump

    @classmethod
    def of(cls, seed: int) -> Scene:
        takes, test, _ = scenes(seed, EvalSettings())
        return cls(seed, takes[0], test)

    @property
    def camera(self) -> str:
        """The camera its model is trained for (load_model checks it)."""
        return f"scene{self.seed}"

    def frames(self, spec: SceneSpec, count: int, step: int = 1) -> Iterator[Frame]:
        return footage(spec, SceneClock(EPOCH_US, FPS, spec.frame_count), count, CACHE, step)

    def reference(self) -> Luma:
        """The view the ROIs are drawn on: the training take's first frame."""
        return luma_plane(next(self.frames(self.train, 1)).image).copy()

    def model_path(self, workdir: Path) -> Path:
        return workdir / f"{self.camera}.camfleet"

    def train_model(self, workdir: Path) -> None:
        """Train on one loop of the normal take at the detect fps, as camfleet eval does."""
        step = round(FPS / DETECT_FPS)
        frames = ((f.stamp_us, f.image) for f in self.frames(self.train, self.train.frame_count,
                                                             step))  # fmt: skip

        finished: set[str] = set()

        def progress(stage: str, done: int, total: int) -> None:
            if done == total and stage not in finished:
                finished.add(stage)
                say(f"scene {self.seed}: training: {stage} done ({done})")

        artifact = train(training_frames(frames), self.camera, ROIS, progress=progress)
        artifact.write(self.model_path(workdir))

    def model(self, workdir: Path) -> tuple[LoadedModel, bytes]:
        return load_model(self.model_path(workdir), self.camera)

    def write_stream(self, path: Path, loops: int) -> int:
        """The detect take's H.264 byte stream, `loops` times over, as the cameras decode it;
        returns its frame count."""
        loop = encoded_loop(self.detect, CACHE)  # the cached loop footage() decodes
        path.write_bytes(to_annexb(loop.units) * loops)
        return len(loop.units) * loops


class CameraFeed:
    """One simulated camera on its own thread. Frame k is due at start + phase + k/15 s; it is
    decoded ahead of that and handled when due. A detect frame handled more than LATE_S late is
    counted and not offered (the agent's queue would have dropped it). It starts `skip` frames
    into its scene, so cameras showing one scene do not show it in step."""

    def __init__(
        self,
        index: int,
        scene: Scene,
        model: tuple[LoadedModel, bytes],
        reference: Luma,
        service: DetectionService,
        skip: int,
    ) -> None:
        self.name = f"cam{index + 1}"
        # Per camera index, not per run, so a camera keeps its phase whatever the camera count.
        self.phase_s = random.Random(index).random() / DETECT_FPS
        self.view = FollowedView(reference)
        self.detector = service.attach(self.name, model[0], model[1], ROIS, DETECT_FPS,
                                       self._view, self._detected)  # fmt: skip
        self._frames = scene.frames(scene.detect, sys.maxsize)
        self._skip = skip
        self._drift, self._detect = Decimator(DRIFT_FPS), Decimator(DETECT_FPS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._start = 0.0
        self.late = 0  # detect frames not offered for being late
        self.max_lag_s = 0.0  # since the last reset (assigned from the main thread)
        self.events = 0

    def prime(self) -> None:
        """Load the stream and decode up to the camera's own starting point."""
        for _ in range(self._skip + 1):
            next(self._frames)

    def start(self, at: float) -> None:
        self._start = at
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)

    def _run(self) -> None:
        for k, f in enumerate(self._frames):
            due = self._start + self.phase_s + k / FPS
            if self._stop.wait(max(0.0, due - time.monotonic())):
                return
            lag = time.monotonic() - due
            self.max_lag_s = max(self.max_lag_s, lag)
            if self._drift.admit(f.stamp_us):
                self.view.follow(luma_plane(f.image), f.stamp_us)
            if self._detect.admit(f.stamp_us):
                if lag > LATE_S:
                    self.late += 1
                else:
                    self.detector.offer(f.stamp_us, f.image)

    def _view(self, width: int) -> View:  # the frames are all one size: no rescaling
        state = self.view.tracker.state
        return View(state.adjustment, state.view_lost, state.adjustment)

    def _detected(self, d: Detection) -> None:
        self.events += not d.closed
