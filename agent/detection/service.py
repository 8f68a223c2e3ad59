"""The agent's detection: one inference pool and scheduler shared by every inspected camera, and
a detector per camera that has a model."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Any

from agent.detection.detector import (
    CameraDetector,
    DetectionListener,
    ScoringModel,
    VerdictListener,
    View,
)
from agent.detection.persistence import PersistenceSettings
from agent.detection.pool import InferencePool
from agent.detection.scheduler import DetectScheduler, RoiOutput
from fleet.messages import RoiSpec


class DetectionService:
    def __init__(
        self,
        pool_size: int | None = None,
        persistence: PersistenceSettings | None = None,
    ) -> None:
        self.pool = InferencePool(pool_size)
        self.scheduler = DetectScheduler(self.pool, self._route)
        self.persistence = persistence
        self._detectors: dict[str, CameraDetector] = {}
        self._lock = threading.Lock()

    def attach(
        self,
        camera: str,
        model: ScoringModel,
        extractor: bytes,
        rois: Sequence[RoiSpec],
        fps: float,
        view: Callable[[int], View | None],
        on_detection: DetectionListener,
        on_verdict: VerdictListener | None = None,
    ) -> CameraDetector:
        """Start scoring `camera` with `model` (whose extractor is loaded into the pool once per
        model); replaces the camera's detector if it had one."""
        self.pool.add_model(model.model_key, extractor)
        detector = CameraDetector(camera, model, rois, self.scheduler, view, on_detection,
                                  self.persistence, on_verdict)  # fmt: skip
        self.scheduler.add_camera(camera, fps, detector)
        with self._lock:
            self._detectors[camera] = detector
        return detector

    def detach(self, camera: str) -> None:
        with self._lock:
            self._detectors.pop(camera, None)
        self.scheduler.remove_camera(camera)

    def detector(self, camera: str) -> CameraDetector | None:
        with self._lock:
            return self._detectors.get(camera)

    def close(self) -> None:
        self.pool.close()

    def stats(self) -> dict[str, Any]:
        snapshot = self.scheduler.snapshot()
        with self._lock:
            detectors = dict(self._detectors)
        cameras: dict[str, Any] = {}
        for camera, counts in snapshot["cameras"].items():
            cameras[camera] = dict(counts)
        for camera, detector in detectors.items():
            cameras.setdefault(camera, {})["model"] = detector.stats()
        return {"pool": snapshot["pool"], "cameras": cameras}

    def _route(self, out: RoiOutput) -> None:
        with self._lock:
            detector = self._detectors.get(out.camera)
        if detector is not None:
            detector.judge(out)
