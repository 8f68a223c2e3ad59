"""What a feature extractor is, whichever way it was made: a .tflite graph from a fixed-size
input to a feature map, and the preprocessing that turns an ROI crop into that input.

The preprocessing is part of the contract: an artifact's manifest records it, and an agent
refuses an artifact whose preprocessing or input shape it does not implement.

`patch_pca.build` makes one from the site's own crops; another extractor is handed to
`train.train(..., extractor=...)` as a function of the training crops, and the notice of any
third-party weights it carries goes beside it (`license=`) into the artifact's LICENSE file.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

ExtractorName = Literal["patch-pca", "pose-backbone"]


class Preprocessing(BaseModel):
    """How a luma ROI crop becomes the extractor's (1, height, width, channels) float32 input."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["luma-standardised", "luma-unit-range"]
    height: int = Field(ge=8, le=1024)
    width: int = Field(ge=8, le=1024)
    channels: Literal[1, 3]


@dataclass(frozen=True)
class BuiltExtractor:
    name: ExtractorName
    tflite: bytes  # the model file's content
    preprocessing: Preprocessing
    feature_shape: tuple[int, int, int]  # H, W, C of the output map
