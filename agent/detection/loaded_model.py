"""A model artifact as the agent uses it: read and verified from disk, then the scoring side the
detector calls (preparation, brightness, the PaDiM verdict) under its content hash."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from agent.detection.luma import Luma
from agent.detection.model.artifact import ModelArtifact, ModelArtifactError
from agent.detection.model.preprocessing import brightness
from agent.detection.model.roi_model import RoiModel, RoiVerdict
from agent.detection.roi_geometry import Mask
from fleet.messages import RoiSpec


class ModelLoadError(ValueError):
    """An artifact the agent refuses: unreadable, tampered, or made for another camera."""


class LoadedModel:
    def __init__(self, model: RoiModel, sha256: str) -> None:
        self.model = model
        self.model_key = sha256
        self.model_version = model.model_version
        self.rois: Sequence[RoiSpec] = model.rois
        self.roi_ids = [r.id for r in model.rois]

    def prepare(self, crop: Luma, mask: Mask) -> NDArray[np.float32]:
        return self.model.prepare(crop, mask)

    def brightness(self, crop: Luma, mask: Mask) -> float:
        return brightness(crop, mask)

    def judge(
        self, roi_id: str, output: NDArray[Any], light: float, sensitivity: float, mask: Mask
    ) -> RoiVerdict:
        return self.model.score(roi_id, output, light, mask, sensitivity)


def load_model(path: str | os.PathLike[str], camera: str) -> tuple[LoadedModel, bytes]:
    """The model at `path` for `camera`, and its extractor (.tflite bytes) for the pool."""
    try:
        with open(path, "rb") as file:
            content = file.read()
        artifact = ModelArtifact.from_bytes(content)
    except (OSError, ModelArtifactError) as exc:
        raise ModelLoadError(f"cannot use model {os.fspath(path)!r}: {exc}") from None
    trained_for = artifact.manifest.camera
    if trained_for != camera:
        raise ModelLoadError(
            f"model {artifact.manifest.model_version} was trained for camera {trained_for!r}, "
            f"not {camera!r}"
        )
    sha = hashlib.sha256(content).hexdigest()
    return LoadedModel(RoiModel(artifact), sha), artifact.extractor_tflite
