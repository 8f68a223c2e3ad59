"""manifest.json of a model artifact: the contract between training and the agents that score.

It names what the model is (version, camera, ROIs, extractor, preprocessing and shapes), what
each ROI's statistics decide (threshold, calibration quantile, cell grid), every other file of
the artifact with its sha256, and how training went (frames used, held-back scores, time).
Readers check `format_version` before anything else and refuse a version they do not know.
"""

from __future__ import annotations

from typing import Annotated, Final, Self

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from agent.detection.model.extractor import ExtractorName, Preprocessing
from fleet.messages import CameraName, Count, ModelVersion, RoiId, RoiSpec, Sha256Hex, StampUs

# 2: "luma-standardised" centres on the median and scales by a share of it, no longer by the
# crop's std; a format-1 artifact's statistics were fitted on other inputs.
# 3: each ROI also has a change threshold (padim's change score); a format-2 artifact has none,
# so it is refused and its camera's model is trained again.
FORMAT_VERSION: Final = 3
EXTRACTOR_FILE: Final = "extractor.tflite"
LICENSE_FILE: Final = "LICENSE"
FileName = Annotated[str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
Positive = Annotated[int, Field(ge=1, le=65535)]


class _Part(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FileEntry(_Part):
    sha256: Sha256Hex
    size: Count


class ScoreQuantiles(_Part):
    """ROI scores of normal frames the statistics were not fitted on."""

    frames: Count
    p50: float
    p90: float
    p99: float
    max: float
    above_threshold: Annotated[float, Field(ge=0, le=1)]  # share of those frames


class RoiTraining(_Part):
    frames: Count  # the statistics were fitted on
    held_back: ScoreQuantiles
    fit_seconds: Annotated[float, Field(ge=0)]


class RoiModelEntry(_Part):
    statistics: FileName  # the PaDiM .npz
    threshold: Annotated[float, Field(gt=0)]  # at sensitivity 0.5
    change_threshold: Annotated[float, Field(gt=0)]  # of the change score, likewise
    quantile: Annotated[float, Field(gt=0, le=1)]  # of cross-fitted scores; threshold adds a margin
    cells: tuple[Positive, Positive]  # the feature map's grid: rows, columns
    brightness_centres: list[float]  # one PaDiM set per centre (mean luma inside the ROI)
    training: RoiTraining


class TrainingRange(_Part):
    from_us: StampUs
    to_us: StampUs
    frames: Count

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.from_us > self.to_us:
            raise ValueError("training range must have from_us <= to_us")
        return self


class TrainingMetrics(_Part):
    frames: Count  # frames read
    extractor_crops: Count  # crops the extractor was learnt from
    extractor_seconds: Annotated[float, Field(ge=0)]
    features_seconds: Annotated[float, Field(ge=0)]
    total_seconds: Annotated[float, Field(ge=0)]


class ModelManifest(_Part):
    format_version: int
    model_version: ModelVersion  # "<camera>-<UTC stamp>-<first 8 hex of the files' digest>"
    created: AwareDatetime
    camera: CameraName
    rois: Annotated[list[RoiSpec], Field(min_length=1, max_length=64)]
    extractor: ExtractorName
    preprocessing: Preprocessing
    input_shape: tuple[Positive, Positive, Positive, Positive]
    feature_shape: tuple[Positive, Positive, Positive]
    roi_models: dict[RoiId, RoiModelEntry]
    files: dict[FileName, FileEntry]
    training: TrainingRange
    metrics: TrainingMetrics

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        p = self.preprocessing
        if self.format_version != FORMAT_VERSION:
            raise ValueError(f"format_version must be {FORMAT_VERSION}")
        if self.input_shape != (1, p.height, p.width, p.channels):
            raise ValueError(f"input_shape {self.input_shape} does not match the preprocessing")
        ids = [r.id for r in self.rois]
        if len(set(ids)) != len(ids) or set(ids) != set(self.roi_models):
            raise ValueError("rois and roi_models must name the same unique ROI ids")
        named = {EXTRACTOR_FILE, *(m.statistics for m in self.roi_models.values())}
        if named - set(self.files) or len(named) != 1 + len(self.roi_models):
            raise ValueError("files must list the extractor and a statistics file per ROI")
        if extra := set(self.files) - named - {LICENSE_FILE}:
            raise ValueError(f"unexpected files {sorted(extra)}")
        if any(m.cells != self.feature_shape[:2] for m in self.roi_models.values()):
            raise ValueError("every ROI's cell grid must be the feature map's")
        return self
