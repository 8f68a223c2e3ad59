"""ROI crop -> extractor input, as an artifact's `Preprocessing` says, in numpy.

The crop is resampled to the input size by two small matrix products: area averaging where it
shrinks (no aliasing of fine texture), bilinear where it grows. "luma-standardised" then takes
the mean and standard deviation of the crop's pixels inside the ROI mask and maps them to 0 and
1, so a lighting change that scales or shifts the whole ROI leaves the input as it was; pixels
outside the mask become 0. The deviation is floored at `STD_FLOOR` luma levels so that a flat,
dark ROI does not blow sensor noise up into texture. "luma-unit-range" is luma / 255, repeated
over the channels, for extractors trained on such images.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

from agent.detection.luma import Luma
from agent.detection.model.extractor import Preprocessing
from agent.detection.roi_geometry import Mask

Input = npt.NDArray[np.float32]  # (1, height, width, channels)
STD_FLOOR = 4.0  # luma levels


def prepare(p: Preprocessing, crop: Luma, mask: Mask) -> Input:
    """The extractor's (1, p.height, p.width, p.channels) float32 input for a crop and its mask."""
    if crop.ndim != 2 or mask.shape != crop.shape:
        raise ValueError(f"need a 2-D crop and a mask of its shape, got {crop.shape}, {mask.shape}")
    rows = _weights(crop.shape[0], p.height)
    cols = _weights(crop.shape[1], p.width)
    image = rows @ crop.astype(np.float32) @ cols.T
    if p.kind == "luma-standardised":
        inside = crop[mask]
        if not inside.size:
            raise ValueError("the ROI mask covers no pixel of the crop")
        std = max(float(inside.std()), STD_FLOOR)
        image -= np.float32(inside.mean())
        image *= np.float32(1 / std)
        image *= input_mask(p, mask)
    else:
        image *= np.float32(1 / 255)
    out: Input = np.repeat(image[None, :, :, None], p.channels, axis=3)
    return out


def input_mask(p: Preprocessing, mask: Mask) -> Mask:
    """(p.height, p.width): the crop's mask resampled to the input, true where mostly inside.
    Feature-map cells are pooled from it, so even a crop smaller than the map has cells."""
    resampled = _weights(mask.shape[0], p.height) @ mask.astype(np.float32)
    inside: Mask = (resampled @ _weights(mask.shape[1], p.width).T) >= 0.5
    return inside


def brightness(crop: Luma, mask: Mask) -> float:
    """Mean luma of the crop inside the mask: picks the PaDiM brightness set (day, dusk, night)."""
    return float(crop[mask].mean())


@lru_cache(maxsize=256)
def _weights(source: int, target: int) -> npt.NDArray[np.float32]:
    """(target, source): each output sample as a weighted sum of input samples."""
    scale = source / target
    pixels = np.arange(source)
    if scale >= 1:  # area: the overlap of output pixel [i, i + 1) * scale with each input pixel
        edges = np.arange(target + 1) * scale
        overlap = np.minimum(edges[1:, None], pixels + 1) - np.maximum(edges[:-1, None], pixels)
        out = np.clip(overlap, 0, None) / scale
    else:  # bilinear: a tent over the two input pixels around each output pixel's centre
        centres = np.clip((np.arange(target) + 0.5) * scale - 0.5, 0, source - 1)
        out = np.clip(1 - np.abs(centres[:, None] - pixels), 0, None)
    weights: npt.NDArray[np.float32] = out.astype(np.float32)
    weights.flags.writeable = False  # shared through the cache
    return weights
