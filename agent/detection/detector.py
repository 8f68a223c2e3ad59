"""One inspected camera's anomaly detection: ROIs placed on each analysed frame, scored by the
camera's model through the shared scheduler, and per ROI turned into events.

`offer` runs on the camera's analysis thread (the one that also audits the frame, so every
scored frame is an audited one); `judge` runs on a pool thread with the model's raw output. The
ROIs follow the camera: each frame's polygons are moved by the drift tracker's adjustment in
force. While the view is lost nothing is scored — the drift tracker raises view_lost instead of a
flood of ROI anomalies. Each verdict takes in the change since the ROI's previous judged frame
(`Verdict.after`) under the ROI's lock, where results are in stamp order. Per ROI a bounded
score history gives each event its score series (from a few seconds before it), and the live
view each ROI's latest score.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections import OrderedDict, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, Self

import av
import numpy as np
from numpy.typing import NDArray

from agent.detection.luma import Luma, luma_plane
from agent.detection.persistence import PersistenceSettings, ScorePersistence, Transition
from agent.detection.roi_geometry import Mask, place_polygon, rescale
from agent.detection.scheduler import DetectScheduler, PlacedRoi, Prepared, RoiOutput
from fleet.messages import IDENTITY, MAX_EVENT_SCORES, Box, Event, RoiAdjustment, RoiSpec

log = logging.getLogger("camfleet.agent.detector")

RECENT_FRAMES = 16  # analysed frames kept for the peak snapshot (~3 s at 5 fps)
SCORES_LEAD_US = 3_000_000  # an event's score series starts this long before the event
RECENT_SCORES = 512  # per ROI: the lead-in and how long an event takes to open, at any fps
# The change since the ROI's previous judged frame counts only if that frame is this recent: the
# change score is calibrated on frames a detect interval apart, and after a gated still spell,
# skipped frames or a lost view the change says nothing about how things move.
CHANGE_GAP_US = 500_000
Score = tuple[int, float]  # frame stamp (µs), score


class Region(Protocol):
    def in_frame(self, crop: Box) -> Box: ...  # the region's pixels in the analysed frame


class Verdict(Protocol):
    @property
    def score(self) -> float: ...
    @property
    def threshold(self) -> float: ...  # at the ROI's sensitivity
    @property
    def region(self) -> Region: ...  # what scored high, in the crop

    def after(self, previous: Self) -> Self: ...  # with the change since the ROI's previous one


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
class RoiLive:
    """An ROI's latest word, for the live view."""

    score: float | None  # of the latest frame scored; None before the first
    threshold: float | None
    stamp_us: int | None  # of that frame
    event_open: bool


class ScoreHistory:
    """One ROI's scores: the recent ones, and while an event is open every one of its own, thinned
    on the way in so memory stays bounded however long the event lasts (each time the series
    grows past twice MAX_EVENT_SCORES, every other score goes and from then on only every other
    one is kept)."""

    def __init__(self) -> None:
        self._recent: deque[Score] = deque(maxlen=RECENT_SCORES)
        self._event: list[Score] | None = None  # the open event's series, lead-in included
        self._stride = 1  # the open event keeps one score in this many
        self._since_kept = 0

    def add(self, stamp_us: int, score: float) -> None:
        """A score, in stamp order."""
        self._recent.append((stamp_us, score))
        if self._event is None:
            return
        self._since_kept += 1
        if self._since_kept < self._stride:
            return
        self._event.append((stamp_us, score))
        self._since_kept = 0
        if len(self._event) > 2 * MAX_EVENT_SCORES:  # an odd length: keeps first and latest
            self._event = self._event[::2]
            self._stride *= 2

    def open(self, start_us: int) -> list[Score]:
        """An event started at `start_us`: its series so far, from SCORES_LEAD_US before it."""
        self._event = [s for s in self._recent if s[0] >= start_us - SCORES_LEAD_US]
        self._stride, self._since_kept = 1, 0
        return evenly(self._event)

    def close(self, end_us: int) -> list[Score]:
        """The event ended at `end_us` (a scored frame): its whole series, up to that frame."""
        series = [s for s in self._event or [] if s[0] <= end_us]
        self._event = None
        last = next((s for s in reversed(self._recent) if s[0] <= end_us), None)
        if last is not None and (not series or series[-1][0] < last[0]):
            series.append(last)  # thinning may have left out the end itself
        return evenly(series)


def evenly(series: list[Score], limit: int = MAX_EVENT_SCORES) -> list[Score]:
    """At most `limit` of the scores, evenly spread, the first and the last kept."""
    n = len(series)
    if n <= limit:
        return list(series)
    return [series[round(i * (n - 1) / (limit - 1))] for i in range(limit)]


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
    previous: Verdict | None = None  # judged at last_us
    event_id: uuid.UUID | None = None
    recent: OrderedDict[int, tuple[float, Box]] = field(default_factory=OrderedDict)
    history: ScoreHistory = field(default_factory=ScoreHistory)
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
        self.rois = list(rois)  # as configured, those the model was not trained for too
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
            previous, state.previous = state.previous, verdict
            if previous is not None and out.stamp_us - state.last_us <= CHANGE_GAP_US:
                verdict = verdict.after(previous)
            state.last_us, state.last_score = out.stamp_us, verdict.score
            state.scores += 1
            state.above += verdict.score >= verdict.threshold
            if state.persistence is None:
                state.threshold = verdict.threshold
                state.persistence = ScorePersistence(verdict.threshold, self.persistence)
            state.recent[out.stamp_us] = (verdict.score, verdict.region.in_frame(out.box))
            while len(state.recent) > 2 * RECENT_FRAMES:
                state.recent.popitem(last=False)
            state.history.add(out.stamp_us, verdict.score)
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
        span = t.span
        opened = t.kind == "opened"
        if opened:
            state.event_id = uuid.uuid4()
            scores = state.history.open(span.start_us)
        else:
            scores = state.history.close(span.end_us if span.end_us is not None else decided_us)
        peak, event_id = state.peak, state.event_id
        if not opened:
            state.event_id, state.peak = None, None
        if peak is None or event_id is None:  # results were lost (e.g. the pool restarted)
            return None
        end_us = span.end_us if span.end_us is not None else span.peak_us
        event = Event(
            id=event_id, camera=self.camera, roi_id=state.spec.id, kind="anomaly",
            start_us=min(span.start_us, peak.stamp_us), peak_us=peak.stamp_us,
            end_us=max(end_us, peak.stamp_us), peak_score=peak.score, box=peak.region,
            model_version=self.model.model_version, adjustment=peak.view.main, open=opened,
            threshold=state.threshold, scores=scores,
        )  # fmt: skip
        if opened or peak.frame is None:
            return Detection(event, not opened, decided_us, None, None)
        frame = peak.frame
        polygon = place_polygon(state.spec.polygon, peak.view.adjustment, frame.width, frame.height)
        return Detection(event, True, decided_us, frame, polygon)

    def live(self) -> dict[str, RoiLive]:
        """Each scored ROI's latest score (ROIs the model was not trained for are not here)."""
        live = {}
        for roi_id, s in self._rois.items():
            with s.lock:
                stamp = s.last_us if s.last_us >= 0 else None
                live[roi_id] = RoiLive(s.last_score, s.threshold, stamp, s.event_id is not None)
        return live

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
