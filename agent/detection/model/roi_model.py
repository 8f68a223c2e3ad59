"""A loaded model as the detector uses it: read-only after construction, so one instance serves
every thread of the agent.

Per frame and ROI the detector crops the ROI, `prepare`s the extractor input, runs the .tflite
in the inference pool and hands the feature map to `score`, which compares it with the ROI's
PaDiM statistics. The ROI's sensitivity (0..1) moves the calibrated threshold by up to a factor
of two either way: 0.5 keeps it, 1 halves it, 0 doubles it. The verdict's region — the cells
above threshold, or the peak cell — is in normalised crop coordinates; `CropRegion.in_frame`
maps it onto the crop's box in frame pixels.

A verdict first speaks for the frame alone (appearance); `after` then takes in the change since
the ROI's previous analysed frame (see `padim.combined`). That needs the frames in order, so the
detector calls it where its results are ordered; the heavy part runs on any pool thread.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from typing import Self

import numpy as np
import numpy.typing as npt

from agent.detection import padim
from agent.detection.luma import Luma
from agent.detection.model.artifact import ModelArtifact
from agent.detection.model.extractor import Preprocessing
from agent.detection.model.preprocessing import Input, input_mask, prepare
from agent.detection.roi_geometry import Mask
from fleet.messages import Box, RoiSpec


@dataclass(frozen=True)
class CropRegion:
    """A rectangle in normalised coordinates (0..1) of an ROI crop."""

    x: float
    y: float
    w: float
    h: float

    def in_frame(self, crop: Box) -> Box:
        """The whole frame pixels the region covers, given the crop's box."""
        x0 = crop.x + math.floor(self.x * crop.w)
        y0 = crop.y + math.floor(self.y * crop.h)
        x1 = crop.x + max(math.ceil((self.x + self.w) * crop.w), x0 - crop.x + 1)
        y1 = crop.y + max(math.ceil((self.y + self.h) * crop.h), y0 - crop.y + 1)
        return Box(x=x0, y=y0, w=x1 - x0, h=y1 - y0, frame_w=crop.frame_w, frame_h=crop.frame_h)


@dataclass(frozen=True, eq=False)
class RoiVerdict:
    score: float
    threshold: float  # the calibrated threshold moved by the ROI's sensitivity
    region: CropRegion
    score_map: npt.NDArray[np.float32]  # (h, w) appearance score per cell
    cells: Mask  # (h, w) the ROI's cells
    stats: padim.PadimStats

    @property
    def anomalous(self) -> bool:
        return self.score > self.threshold

    def after(self, previous: Self) -> Self:
        """This verdict with the change since `previous`, the ROI's verdict on the analysed
        frame just before (same map, so chains of `after` compare appearance maps)."""
        moved = padim.change_map(self.score_map, previous.score_map)
        change = padim.change_score(self.stats, moved, self.cells)
        score = padim.combined(self.stats, self.score, change)
        if score <= self.score:
            return self
        scaled = moved * (self.stats.threshold / self.stats.change_threshold)
        region = _region(scaled, self.cells, self.threshold)
        return replace(self, score=score, region=region)


class RoiModel:
    def __init__(self, artifact: ModelArtifact) -> None:
        manifest = artifact.manifest
        self.model_version: str = manifest.model_version
        self.rois: tuple[RoiSpec, ...] = tuple(manifest.rois)
        self.preprocessing: Preprocessing = manifest.preprocessing
        self.input_shape: tuple[int, int, int, int] = manifest.input_shape
        self.feature_shape: tuple[int, int, int] = manifest.feature_shape
        self.extractor_tflite: bytes = artifact.extractor_tflite
        self._sensitivity = {roi.id: roi.sensitivity for roi in manifest.rois}
        self._stats = dict(artifact.statistics)

    @classmethod
    def load(cls, path: str | os.PathLike[str], expect: Preprocessing | None = None) -> RoiModel:
        return cls(ModelArtifact.read(path, expect))

    def prepare(self, crop: Luma, mask: Mask) -> Input:
        return prepare(self.preprocessing, crop, mask)

    def threshold(self, roi_id: str, sensitivity: float | None = None) -> float:
        """The ROI's alarm threshold at its sensitivity (or the one given, 0..1)."""
        s = self._sensitivity[roi_id] if sensitivity is None else sensitivity
        if not 0 <= s <= 1:
            raise ValueError(f"sensitivity must be in 0..1, got {s}")
        return self._stats[roi_id].threshold * 2 ** ((0.5 - s) * 2)

    def score(
        self,
        roi_id: str,
        feature_map: npt.NDArray[np.float32],
        brightness: float,
        mask: Mask,
        sensitivity: float | None = None,
    ) -> RoiVerdict:
        """Score the extractor's output, (1, h, w, C) or (h, w, C), for the crop whose pixel
        mask is `mask`, at the ROI's sensitivity unless another is given."""
        stats = self._stats[roi_id]
        h, w, _ = self.feature_shape
        cells = padim.cell_mask(input_mask(self.preprocessing, mask), (h, w))
        features = feature_map[0] if feature_map.ndim == 4 else feature_map
        result = padim.score(stats, features, brightness, cells)
        threshold = self.threshold(roi_id, sensitivity)
        region = _region(result.score_map, cells, threshold)
        return RoiVerdict(result.score, threshold, region, result.score_map, cells, stats)


def _region(score_map: npt.NDArray[np.floating], cells: Mask, threshold: float) -> CropRegion:
    """The box of the ROI's cells above threshold, or of its highest cell if none is."""
    h, w = score_map.shape
    above = np.argwhere((score_map > threshold) & cells)
    if not len(above):
        masked = np.where(cells, score_map, -np.inf)
        above = np.array([np.unravel_index(int(np.argmax(masked)), (h, w))])
    (r0, c0), (r1, c1) = above.min(axis=0), above.max(axis=0) + 1
    return CropRegion(c0 / w, r0 / h, (c1 - c0) / w, (r1 - r0) / h)
