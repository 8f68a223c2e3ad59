"""One inspected camera's anomaly detection: ROIs placed on each analysed frame, scored by the
camera's model through the shared scheduler, and per ROI turned into events.

`offer` runs on the camera's analysis thread (the one that also audits the frame, so every
scored frame is an audited one); `judge` runs on a pool thread with the model's raw output. The
ROIs follow the camera: each frame's polygons are moved by the drift tracker's adjustment in
force. While the view is lost nothing is scored — the drift tracker raises view_lost instead of a
flood of ROI anomalies.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import av
import numpy as np
from numpy.typing import NDArray

from agent.detection.luma import Luma, luma_plane
from agent.detection.persistence import PersistenceSettings, ScorePersistence, Transition
from agent.detection.roi_geometry import Mask, place_polygon, rescale
from agent.detection.scheduler import DetectScheduler, PlacedRoi, Prepared, RoiOutput
from fleet.messages import IDENTITY, Box, Event, RoiAdjustment, RoiSpec

log = logging.getLogger("camfleet.agent.detector")

RECENT_FRAMES = 16  # analysed frames kept for the peak snapshot (~3 s at 5 fps)


class Region(Protocol):
    def in_frame(self, crop: Box) -> Box: ...  # the region's pixels in the analysed frame


class Verdict(Protocol):
    @property
    def score(self) -> float: ...
    @property
    def threshold(self) -> float: ...  # at the ROI's sensitivity
    @property
    def region(self) -> Region: ...  # what scored high, in the crop


class ScoringModel(Protocol):
    """What the detector needs of a loaded model artifact."""

    @property
    def model_version(self) -> str: ...
    @property
    def model_key(self) -> str: ...  # its key in the inference pool
    @property
    def roi_ids(self) -> Sequence[str]: ...

    def prepare(self, crop: Luma, mask: Mask) -> NDArray[np.float32]: ...
    def brightness(self, crop: Luma, mask: Mask) -> float: ...
    def judge(
        self, roi_id: str, output: NDArray[Any], brightness: float, sensitivity: float, mask: Mask
    ) -> Verdict: ...


@dataclass(frozen=True, slots=True)
class View:
    """The drift tracker's word on the analysed stream: how ROIs move, and whether to score."""

    adjustment: RoiAdjustment  # in pixels of the analysed stream
    lost: bool
    main: RoiAdjustment  # the same in pixels of the main stream, as events report it


@dataclass(frozen=True, slots=True)
class Detection:
    """An ROI event as it opens or closes, with what a snapshot needs."""

    event: Event
    closed: bool
    decided_us: int  # stamp of the frame whose score opened or closed it
    frame: av.VideoFrame | None  # the peak frame (closed events)
    polygon: NDArray[np.float64] | None  # the ROI as placed on that frame, px


DetectionListener = Callable[[Detection], None]
# Every judged crop: ROI, frame stamp, score, threshold (for score plots and evaluation).
VerdictListener = Callable[[str, int, float, float], None]


@dataclass(frozen=True, slots=True)
class _Peak:
    stamp_us: int
    score: float
    region: Box
    frame: av.VideoFrame | None  # kept while the event is open, for its snapshot
    view: View


@dataclass
class _RoiState:
    spec: RoiSpec
    persistence: ScorePersistence | None = None  # made with the first verdict's threshold
    last_us: int = -1
    event_id: uuid.UUID | None = None
    recent: OrderedDict[int, tuple[float, Box]] = field(default_factory=OrderedDict)
    peak: _Peak | None = None  # of the event open now
    scores: int = 0
    late: int = 0  # results older than one already judged (pool threads finish out of order)
    above: int = 0
    last_score: float | None = None
    threshold: float | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


class CameraDetector:
    def __init__(
        self,
        camera: str,
        model: ScoringModel,
        rois: Sequence[RoiSpec],
        scheduler: DetectScheduler,
        view: Callable[[int], View | None],
        on_detection: DetectionListener,
        persistence: PersistenceSettings | None = None,
        on_verdict: VerdictListener | None = None,
    ) -> None:
        """`view(width)` gives the adjustment for frames `width` px wide (None: no reference
        view yet, ROIs stay where they were drawn). ROIs the model was not trained for are
        left out (and listed in stats)."""
        self.camera, self.model, self.scheduler = camera, model, scheduler
        self.view, self.on_detection = view, on_detection
        self.persistence = persistence or PersistenceSettings()
        self.on_verdict = on_verdict
        trained = set(model.roi_ids)
        self.untrained = [r.id for r in rois if r.id not in trained]
        self._rois = {r.id: _RoiState(r) for r in rois if r.id in trained}
        self._frames: OrderedDict[int, tuple[av.VideoFrame, View]] = OrderedDict()
        self._frames_lock = threading.Lock()
        self.view_lost_frames = 0

    # -- Analyser (the scheduler's side) -------------------------------------------------------

    @property
    def model_key(self) -> str:
        return self.model.model_key

    def prepare(self, roi: str, crop: Luma, mask: Mask) -> Prepared:
        return Prepared(self.model.prepare(crop, mask), self.model.brightness(crop, mask))

    # -- the analysis thread -----------------------------------------------------------------

    def offer(self, stamp_us: int, frame: av.VideoFrame) -> None:
        """One decoded frame of the analysed stream; returns without waiting for inference."""
        luma = luma_plane(frame)
        h, w = luma.shape
        view = self.view(w)
        if view is not None and view.lost:
            self.view_lost_frames += 1
            return
        view = view or View(IDENTITY, False, IDENTITY)
        adj = view.adjustment
        with self._frames_lock:
            self._frames[stamp_us] = (frame, view)
            while len(self._frames) > RECENT_FRAMES:
                self._frames.popitem(last=False)
        placed = [PlacedRoi(r, place_polygon(s.spec.polygon, adj, w, h)) for r, s in
                  self._rois.items()]  # fmt: skip
        self.scheduler.offer(self.camera, stamp_us, luma, placed)

    # -- a pool thread ----------------------------------------------------------------------

    def judge(self, out: RoiOutput) -> None:
        state = self._rois.get(out.roi)
        if state is None:
            return
        verdict = self.model.judge(
            out.roi, out.output, out.brightness, state.spec.sensitivity, out.mask
        )
        with state.lock:
            if out.stamp_us <= state.last_us:
                state.late += 1
                return
            state.last_us, state.last_score = out.stamp_us, verdict.score
            state.scores += 1
            state.above += verdict.score >= verdict.threshold
            if state.persistence is None:
                state.threshold = verdict.threshold
                state.persistence = ScorePersistence(verdict.threshold, self.persistence)
            state.recent[out.stamp_us] = (verdict.score, verdict.region.in_frame(out.box))
            while len(state.recent) > 2 * RECENT_FRAMES:
                state.recent.popitem(last=False)
            transition = state.persistence.update(out.stamp_us, verdict.score)
            span = transition.span if transition else state.persistence.current
            if span is not None and (state.peak is None or state.peak.stamp_us != span.peak_us):
                state.peak = self._peak(state, span.peak_us) or state.peak
            detection = self._detection(state, transition, out.stamp_us) if transition else None
        if self.on_verdict is not None:
            self.on_verdict(out.roi, out.stamp_us, verdict.score, verdict.threshold)
        if detection is not None:
            try:
                self.on_detection(detection)
            except Exception:  # the listener's failure must not end detection
                log.exception("%s/%s: could not raise the event", self.camera, out.roi)

    def _peak(self, state: _RoiState, stamp_us: int) -> _Peak | None:
        judged = state.recent.get(stamp_us)
        if judged is None:
            return None
        with self._frames_lock:
            frame, view = self._frames.get(stamp_us, (None, View(IDENTITY, False, IDENTITY)))
        return _Peak(stamp_us, judged[0], judged[1], frame, view)

    def _detection(self, state: _RoiState, t: Transition, decided_us: int) -> Detection | None:
        if t.kind == "opened":
            state.event_id = uuid.uuid4()
        peak, event_id = state.peak, state.event_id
        if t.kind == "closed":
            state.event_id, state.peak = None, None
        if peak is None or event_id is None:  # results were lost (e.g. the pool restarted)
            return None
        span = t.span
        end_us = span.end_us if span.end_us is not None else span.peak_us
        event = Event(
            id=event_id, camera=self.camera, roi_id=state.spec.id, kind="anomaly",
            start_us=min(span.start_us, peak.stamp_us), peak_us=peak.stamp_us,
            end_us=max(end_us, peak.stamp_us), peak_score=peak.score, box=peak.region,
            model_version=self.model.model_version, adjustment=peak.view.main,
        )  # fmt: skip
        if t.kind == "opened" or peak.frame is None:
            return Detection(event, t.kind == "closed", decided_us, None, None)
        frame = peak.frame
        polygon = place_polygon(state.spec.polygon, peak.view.adjustment, frame.width, frame.height)
        return Detection(event, True, decided_us, frame, polygon)

    def stats(self) -> dict[str, Any]:
        rois = {}
        for roi_id, s in self._rois.items():
            with s.lock:
                rois[roi_id] = {
                    "scores": s.scores,
                    "above_threshold": s.above,
                    "late": s.late,
                    "last_score": s.last_score,
                    "threshold": s.threshold,
                    "event_open": s.event_id is not None,
                }
        return {
            "model_version": self.model.model_version,
            "view_lost_frames": self.view_lost_frames,
            "untrained_rois": self.untrained,
            "rois": rois,
        }


def view_from_drift(
    adjustment: RoiAdjustment | None, main_width: int | None, lost: bool, width: int
) -> View | None:
    """The drift tracker's adjustment (main-stream px) for a stream `width` px wide."""
    if adjustment is None:
        return None
    factor = 1.0 if not main_width else width / main_width
    return View(rescale(adjustment, factor), lost, adjustment)
