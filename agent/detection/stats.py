"""Detection counters per camera and ROI, and inference-time percentiles over a recent window.

Counters are cumulative (as CameraStats in the heartbeat wants them); percentiles cover the last
`window` invocations, so they describe how the pool runs now rather than since start.
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass, field
from typing import Literal, TypedDict

Outcome = Literal["analysed", "gated", "skipped"]
DEFAULT_WINDOW = 1024


class InvokeTimes:
    """The last `window` invoke times (ms); not thread-safe on its own."""

    def __init__(self, window: int = DEFAULT_WINDOW) -> None:
        self._ms: deque[float] = deque(maxlen=window)

    def add(self, ms: float) -> None:
        self._ms.append(ms)

    def percentile(self, q: float) -> float | None:
        """Nearest-rank percentile (q in 0..100); None before the first invoke."""
        if not self._ms:
            return None
        ordered = sorted(self._ms)
        return ordered[max(0, math.ceil(q / 100 * len(ordered)) - 1)]


class RoiStats(TypedDict):
    analysed: int  # crops handed to the pool
    gated: int  # nothing changed (or the ROI is out of view)
    skipped: int  # the pool, or this camera's share of it, was full
    inference_ms_p50: float | None
    inference_ms_p99: float | None


class CameraDetectStats(TypedDict):
    """Frames, each counted once: skipped if any ROI was, else analysed if any ROI was, else
    gated; over_rate frames came faster than the camera's detect fps. The names shared with
    fleet.messages.CameraStats mean the same there."""

    frames_analysed: int
    frames_gated: int
    frames_skipped: int
    frames_over_rate: int
    inference_ms_p50: float | None
    inference_ms_p99: float | None
    in_flight: int  # jobs in the pool now
    rois: dict[str, RoiStats]


@dataclass
class _Counts:
    analysed: int = 0
    gated: int = 0
    skipped: int = 0
    times: InvokeTimes = field(default_factory=InvokeTimes)


@dataclass
class _Camera:
    frames: _Counts = field(default_factory=_Counts)
    over_rate: int = 0
    in_flight: int = 0
    rois: dict[str, _Counts] = field(default_factory=dict)


class DetectStats:
    """Thread-safe: the scheduler counts from camera threads, results arrive on pool threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cameras: dict[str, _Camera] = {}

    def frame(self, camera: str, outcome: Outcome | Literal["over_rate"]) -> None:
        with self._lock:
            cam = self._cameras.setdefault(camera, _Camera())
            if outcome == "over_rate":
                cam.over_rate += 1
            else:
                _bump(cam.frames, outcome)

    def roi(self, camera: str, roi: str, outcome: Outcome) -> None:
        with self._lock:
            cam = self._cameras.setdefault(camera, _Camera())
            _bump(cam.rois.setdefault(roi, _Counts()), outcome)
            if outcome == "analysed":
                cam.in_flight += 1

    def result(self, camera: str, roi: str, invoke_ms: float | None) -> None:
        """A job ended; `invoke_ms` is None when it failed or was cancelled."""
        with self._lock:
            cam = self._cameras.setdefault(camera, _Camera())
            cam.in_flight -= 1
            if invoke_ms is not None:
                cam.frames.times.add(invoke_ms)
                cam.rois.setdefault(roi, _Counts()).times.add(invoke_ms)

    def in_flight(self, camera: str) -> int:
        with self._lock:
            cam = self._cameras.get(camera)
            return 0 if cam is None else cam.in_flight

    def snapshot(self) -> dict[str, CameraDetectStats]:
        with self._lock:
            return {
                name: CameraDetectStats(
                    frames_analysed=cam.frames.analysed,
                    frames_gated=cam.frames.gated,
                    frames_skipped=cam.frames.skipped,
                    frames_over_rate=cam.over_rate,
                    inference_ms_p50=cam.frames.times.percentile(50),
                    inference_ms_p99=cam.frames.times.percentile(99),
                    in_flight=cam.in_flight,
                    rois={roi: _roi_stats(counts) for roi, counts in cam.rois.items()},
                )
                for name, cam in self._cameras.items()
            }


def _roi_stats(counts: _Counts) -> RoiStats:
    return RoiStats(
        analysed=counts.analysed,
        gated=counts.gated,
        skipped=counts.skipped,
        inference_ms_p50=counts.times.percentile(50),
        inference_ms_p99=counts.times.percentile(99),
    )


def _bump(counts: _Counts, outcome: Outcome) -> None:
    setattr(counts, outcome, getattr(counts, outcome) + 1)
