"""A camera's live detection state for the web view: its ROIs as drawn and where they are now
(moved by the drift tracker's adjustment in force, exactly as the detector places them), with
each ROI's latest score against its threshold, and whether an event is open on it."""

from __future__ import annotations

from collections.abc import Sequence

from pydantic import BaseModel

from agent.detection.detector import CameraDetector, View, view_from_drift
from agent.detection.roi_geometry import place_polygon
from agent.detection.tracking import DriftConsumer
from agent.frames import StreamInfo
from fleet.config import CameraConfig
from fleet.messages import RoiAdjustment

Polygon = list[tuple[float, float]]  # normalised to the frame: 0..1 inside it


class RoiState(BaseModel):
    id: str
    sensitivity: float
    polygon: Polygon  # as drawn
    placed: Polygon  # where it is now
    score: float | None  # of the latest frame scored (None: not scored yet, or no model)
    threshold: float | None  # at the ROI's sensitivity
    stamp_us: int | None  # of the frame scored
    event_open: bool
    trained: bool  # the camera's model scores this ROI


class DetectionState(BaseModel):
    camera: str
    inspection: bool
    model_version: str | None
    stream: str  # the stream analysed, which width, height and `placed` refer to
    width: int | None  # None before its first packet
    height: int | None
    adjustment: RoiAdjustment | None  # main-stream px, as events carry it; None: no reference
    view_lost: bool
    rois: list[RoiState]


def detection_state(
    cam: CameraConfig,
    stream: str,
    info: StreamInfo | None,
    drift: DriftConsumer | None,
    detector: CameraDetector | None,
) -> DetectionState:
    """`info`: the analysed stream's latest parameters; `drift`, `detector`: the camera's, if
    it has them (drift tracking while inspecting, a detector while it also has a model)."""
    tracked = drift.stats() if drift is not None else None
    adjustment = tracked.adjustment if tracked is not None else None
    view = None
    if drift is not None and tracked is not None and info is not None:
        view = view_from_drift(adjustment, drift.main_width, tracked.view_lost, info.width)
    specs = detector.rois if detector is not None else cam.rois
    scored = detector.live() if detector is not None else {}
    rois = []
    for spec in specs:
        live = scored.get(spec.id)
        rois.append(
            RoiState(
                id=spec.id,
                sensitivity=spec.sensitivity,
                polygon=list(spec.polygon),
                placed=_placed(spec.polygon, view, info),
                score=live.score if live else None,
                threshold=live.threshold if live else None,
                stamp_us=live.stamp_us if live else None,
                event_open=live.event_open if live else False,
                trained=live is not None,
            )
        )
    return DetectionState(
        camera=cam.name,
        inspection=cam.inspect,
        model_version=detector.model.model_version if detector is not None else None,
        stream=stream,
        width=info.width if info else None,
        height=info.height if info else None,
        adjustment=adjustment,
        view_lost=tracked.view_lost if tracked is not None else False,
        rois=rois,
    )


def _placed(
    polygon: Sequence[tuple[float, float]], view: View | None, info: StreamInfo | None
) -> Polygon:
    if view is None or info is None:
        return list(polygon)
    w, h = info.width, info.height
    points = place_polygon(polygon, view.adjustment, w, h) / (w, h)
    return [(float(x), float(y)) for x, y in points]
