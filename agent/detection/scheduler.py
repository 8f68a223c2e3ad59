"""Feeds ROI crops of every camera to the shared inference pool, fairly, never blocking.

Each camera's detection thread calls `offer` with a luma frame and its ROIs already placed on
the current view. Per frame: a token bucket on the frames' own stamps holds the camera to its
detect fps; per ROI: the change gate, then the pool. Fairness: a camera may hold at most its
share of the pool's capacity (running plus queued jobs), so a busy camera fills only its share
and the others' jobs still find room, and the pool serves the cameras round robin, so they do
not wait behind its backlog either. Whatever finds no room is skipped and counted: the caller
is never made to wait. Scores arrive through `on_score` on a pool thread.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any, TypedDict

import numpy as np
from numpy.typing import NDArray

from agent.detection.gate import ChangeGate, GateSettings
from agent.detection.luma import Luma
from agent.detection.pool import InferencePool, InferenceResult
from agent.detection.roi_geometry import Mask, Points, crop_box, polygon_mask
from agent.detection.stats import CameraDetectStats, DetectStats, Outcome
from fleet.messages import Box

log = logging.getLogger("camfleet.agent.detection")

Preprocess = Callable[[Luma, Mask, tuple[int, ...]], NDArray[Any]]


class SchedulerError(ValueError):
    """A camera or frame the scheduler cannot take."""


@dataclass(frozen=True, slots=True)
class PlacedRoi:
    name: str
    points: Points  # the polygon in pixels of the luma frame, already moved by the adjustment


@dataclass(frozen=True, slots=True)
class RoiScore:
    camera: str
    roi: str
    stamp_us: int  # the analysed frame's capture stamp
    score: float  # the maximum of the model's output
    invoke_ms: float


def fit_to_input(crop: Luma, mask: Mask, shape: tuple[int, ...]) -> NDArray[np.float32]:
    """The default preprocessing: (1, H, W, C) float32 in [0, 1], nearest-neighbour resampled,
    zero outside the polygon, luma repeated over the C channels."""
    if len(shape) != 4 or shape[0] != 1:
        raise SchedulerError(f"fit_to_input needs a (1, H, W, C) model input, got {shape}")
    _, h, w, _ = shape
    rows = (np.arange(h) * crop.shape[0]) // h
    cols = (np.arange(w) * crop.shape[1]) // w
    picked = np.where(mask[np.ix_(rows, cols)], crop[np.ix_(rows, cols)], 0)
    x = np.empty(shape, np.float32)
    x[0] = (picked.astype(np.float32) / 255.0)[:, :, None]
    return x


class PoolStats(TypedDict):
    size: int
    queue_size: int
    queue_depth: int  # jobs waiting for an interpreter now


class SchedulerStats(TypedDict):
    pool: PoolStats
    cameras: dict[str, CameraDetectStats]


class StampBucket:
    """Admits frames at `fps` on average by their stamps; `burst` absorbs stamp jitter."""

    _TOLERANCE = 0.01  # of a token: stamps are whole µs, so 3 x 1/15 s is not quite 1/5 s

    def __init__(self, fps: float, burst: float = 2.0) -> None:
        if not fps > 0:
            raise SchedulerError(f"detect fps must be > 0, got {fps}")
        self._fps, self._burst = fps, burst
        self._tokens = 1.0
        self._last_us: int | None = None

    def admit(self, stamp_us: int) -> bool:
        if self._last_us is not None:
            elapsed_s = max(0, stamp_us - self._last_us) / 1_000_000
            self._tokens = min(self._burst, self._tokens + elapsed_s * self._fps)
        self._last_us = stamp_us
        if self._tokens < 1 - self._TOLERANCE:
            return False
        self._tokens -= 1
        return True


@dataclass
class _Roi:
    gate: ChangeGate
    placed: bytes = b""  # the placed polygon `box` and `mask` were made for
    box: Box | None = None
    mask: Mask | None = None

    def place(self, points: Points, width: int, height: int) -> tuple[Box, Mask] | None:
        """The crop box and polygon mask; recomputed only when the ROI moved."""
        key = points.tobytes() + bytes(f"{width}x{height}", "ascii")
        if key != self.placed:
            self.placed, self.box = key, crop_box(points, width, height)
            self.mask = None if self.box is None else polygon_mask(points, self.box)
        if self.box is None or self.mask is None or not self.mask.any():
            return None
        return self.box, self.mask


@dataclass
class _Camera:
    bucket: StampBucket
    rois: dict[str, _Roi]
    lock: threading.Lock  # one frame at a time per camera: gates are stateful


class DetectScheduler:
    def __init__(
        self,
        pool: InferencePool,
        on_score: Callable[[RoiScore], None],
        gate_settings: GateSettings | None = None,
        preprocess: Preprocess = fit_to_input,
    ) -> None:
        self._pool, self._on_score = pool, on_score
        self._gate_settings, self._preprocess = gate_settings or GateSettings(), preprocess
        self._cameras: dict[str, _Camera] = {}
        self._lock = threading.Lock()
        self.stats = DetectStats()

    def add_camera(self, camera: str, fps: float) -> None:
        """Start (or restart, with fresh gates) analysing `camera` at `fps` detect frames/s."""
        state = _Camera(StampBucket(fps), {}, threading.Lock())
        with self._lock:
            self._cameras[camera] = state

    def remove_camera(self, camera: str) -> None:
        """Stop analysing `camera`; its jobs in the pool still finish and report."""
        with self._lock:
            self._cameras.pop(camera, None)

    def offer(self, camera: str, stamp_us: int, luma: Luma, rois: Sequence[PlacedRoi]) -> None:
        """One decoded frame of `camera`; returns without waiting for inference."""
        with self._lock:
            state = self._cameras.get(camera)
            share = max(1, self._pool.capacity // max(1, len(self._cameras)))
        if state is None:
            raise SchedulerError(f"camera {camera!r} is not being analysed")
        if luma.ndim != 2:
            raise SchedulerError(f"{camera}: luma must be 2-D, got shape {luma.shape}")
        with state.lock:
            if not state.bucket.admit(stamp_us):
                self.stats.frame(camera, "over_rate")
                return
            outcomes = [self._offer_roi(camera, state, stamp_us, luma, roi, share) for roi in rois]
        if "skipped" in outcomes:
            self.stats.frame(camera, "skipped")
        else:
            self.stats.frame(camera, "analysed" if "analysed" in outcomes else "gated")

    def snapshot(self) -> SchedulerStats:
        """For the agent's /stats: the pool and, per camera and ROI, the counters."""
        return SchedulerStats(
            pool=PoolStats(
                size=self._pool.size,
                queue_size=self._pool.queue_size,
                queue_depth=self._pool.depth(),
            ),
            cameras=self.stats.snapshot(),
        )

    def _offer_roi(
        self, camera: str, state: _Camera, stamp_us: int, luma: Luma, roi: PlacedRoi, share: int
    ) -> Outcome:
        outcome = self._try_roi(camera, state, stamp_us, luma, roi, share)
        if outcome != "analysed":  # an analysed job is counted once it is in the pool
            self.stats.roi(camera, roi.name, outcome)
        return outcome

    def _try_roi(
        self, camera: str, state: _Camera, stamp_us: int, luma: Luma, roi: PlacedRoi, share: int
    ) -> Outcome:
        roi_state = state.rois.get(roi.name)
        if roi_state is None:
            roi_state = state.rois[roi.name] = _Roi(ChangeGate(self._gate_settings))
        placed = roi_state.place(roi.points, luma.shape[1], luma.shape[0])
        if placed is None:  # out of view or degenerate: the drift tracker reports that, not us
            return "gated"
        box, mask = placed
        crop = luma[box.y : box.y + box.h, box.x : box.x + box.w]
        if not roi_state.gate.check(crop, mask, stamp_us).passed:
            return "gated"
        if self.stats.in_flight(camera) >= share:
            return "skipped"
        x = self._preprocess(crop, mask, self._pool.input_shape)
        future = self._pool.try_submit(x, owner=camera)
        if future is None:
            return "skipped"
        self.stats.roi(camera, roi.name, "analysed")  # before the callback can count its end
        future.add_done_callback(partial(self._deliver, camera, roi.name, stamp_us))
        return "analysed"

    def _deliver(
        self, camera: str, roi: str, stamp_us: int, future: Future[InferenceResult]
    ) -> None:
        if future.cancelled():  # the pool closed first
            self.stats.result(camera, roi, None)
            return
        error = future.exception()
        if error is not None:
            log.warning("%s/%s: %s", camera, roi, error)
            self.stats.result(camera, roi, None)
            return
        result = future.result()
        self.stats.result(camera, roi, result.invoke_ms)
        score = float(np.max(result.output))
        self._on_score(RoiScore(camera, roi, stamp_us, score, result.invoke_ms))
