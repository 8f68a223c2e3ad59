"""Feeds ROI crops of every camera to the shared inference pool, fairly, never blocking.

Each camera's detection thread calls `offer` with a luma frame and its ROIs already placed on
the current view. Per frame: a token bucket on the frames' own stamps holds the camera to its
detect fps; per ROI: the change gate, then the pool. Fairness: a camera may hold at most its
share of the pool's capacity (running plus queued jobs), so a busy camera fills only its share
and the others' jobs still find room, and the pool serves the cameras round robin, so they do
not wait behind its backlog either. Whatever finds no room is skipped and counted: the caller
is never made to wait. Each camera brings its own analyser (its model in the pool and how a crop
becomes that model's input); raw outputs arrive through `on_output` on a pool thread, where the
camera's detector judges them.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from typing import Any, Protocol, TypedDict

from numpy.typing import NDArray

from agent.detection.gate import ChangeGate, GateSettings
from agent.detection.luma import Luma
from agent.detection.pool import InferencePool, InferenceResult
from agent.detection.roi_geometry import Mask, Points, crop_box, polygon_mask
from agent.detection.stats import CameraDetectStats, DetectStats, Outcome
from fleet.messages import Box

log = logging.getLogger("camfleet.agent.detection")


class Analyser(Protocol):
    """What the scheduler needs of a camera's model."""

    @property
    def model_key(self) -> str: ...  # the model's key in the inference pool

    def prepare(self, roi: str, crop: Luma, mask: Mask) -> Prepared: ...


@dataclass(frozen=True, slots=True)
class Prepared:
    x: NDArray[Any]  # the model's input
    brightness: float  # of the crop inside the polygon


FRAMES_IN_FLIGHT = 2  # per camera, queued or running in the pool


class SchedulerError(ValueError):
    """A camera or frame the scheduler cannot take."""


@dataclass(frozen=True, slots=True)
class PlacedRoi:
    name: str
    points: Points  # the polygon in pixels of the luma frame, already moved by the adjustment


@dataclass(frozen=True, slots=True)
class RoiOutput:
    camera: str
    roi: str
    stamp_us: int  # the analysed frame's capture stamp
    output: NDArray[Any]  # the model's output for the crop
    brightness: float
    box: Box  # the crop in pixels of the analysed frame
    mask: Mask  # the polygon's pixels in the crop
    invoke_ms: float


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
    analyser: Analyser
    bucket: StampBucket
    rois: dict[str, _Roi]
    lock: threading.Lock  # one frame at a time per camera: gates are stateful
    roi_count: int = 0  # of the frames offered lately


class DetectScheduler:
    def __init__(
        self,
        pool: InferencePool,
        on_output: Callable[[RoiOutput], None],
        gate_settings: GateSettings | None = None,
    ) -> None:
        self._pool, self._on_output = pool, on_output
        self._gate_settings = gate_settings or GateSettings()
        self._cameras: dict[str, _Camera] = {}
        self._lock = threading.Lock()
        self.stats = DetectStats()

    def add_camera(self, camera: str, fps: float, analyser: Analyser) -> None:
        """Start (or restart, with fresh gates) analysing `camera` at `fps` detect frames/s;
        the analyser's model must be in the pool."""
        self._pool.model_input(analyser.model_key)
        state = _Camera(analyser, StampBucket(fps), {}, threading.Lock())
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
            if state is None:
                raise SchedulerError(f"camera {camera!r} is not being analysed")
            if state.roi_count != len(rois):
                # The pool holds FRAMES_IN_FLIGHT frames of every camera, and each camera's
                # share is at least that: a smaller one would skip frames while the pool
                # idles, or on any brief stall of the machine.
                state.roi_count = len(rois)
                total = sum(c.roi_count for c in self._cameras.values())
                self._pool.ensure_queue(FRAMES_IN_FLIGHT * total)
            share = max(FRAMES_IN_FLIGHT * len(rois),
                        self._pool.capacity // len(self._cameras))  # fmt: skip
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
        prepared = state.analyser.prepare(roi.name, crop, mask)
        future = self._pool.try_submit(state.analyser.model_key, prepared.x, owner=camera)
        if future is None:
            return "skipped"
        self.stats.roi(camera, roi.name, "analysed")  # before the callback can count its end
        job = _Delivery(camera, roi.name, stamp_us, prepared.brightness, box, mask)
        future.add_done_callback(partial(self._deliver, job))
        return "analysed"

    def _deliver(self, job: _Delivery, future: Future[InferenceResult]) -> None:
        camera, roi = job.camera, job.roi
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
        self._on_output(RoiOutput(camera, roi, job.stamp_us, result.output, job.brightness,
                                  job.box, job.mask, result.invoke_ms))  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Delivery:
    camera: str
    roi: str
    stamp_us: int
    brightness: float
    box: Box
    mask: Mask
