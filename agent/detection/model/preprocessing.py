"""ROI crop -> extractor input, as an artifact's `Preprocessing` says, in numpy.

The crop is resampled to the input size by two small matrix products: area averaging where it
shrinks (no aliasing of fine texture), bilinear where it grows. "luma-standardised" then takes
the median luma of the crop's pixels inside the ROI mask as the level: it subtracts it and
divides by `CONTRAST_SHARE` of it, so a lighting gain over the whole ROI leaves the input as it
was and a small offset barely moves it; pixels outside the mask become 0. The scale is fixed by
the level, not by the crop's own contrast (as a standard deviation would be): a flat patch over
the ROI stays flat instead of having its noise blown up to the contrast of normal texture, and a
person walking in does not rescale every other cell. The median is not moved by an object
covering less than half the ROI. The level is floored at `LEVEL_FLOOR` so that a dark ROI does
not amplify sensor noise. "luma-unit-range" is luma / 255, repeated over the channels, for
extractors trained on such images.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np
import numpy.typing as npt

from agent.detection.luma import Luma
from agent.detection.model.extractor import Preprocessing
from agent.detection.roi_geometry import Mask

Input = npt.NDArray[np.float32]  # (1, height, width, channels)
CONTRAST_SHARE = 0.25  # of the level: luma this far from it maps to +-1
LEVEL_FLOOR = 32.0  # luma levels


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
        level = float(np.median(inside))
        image -= np.float32(level)
        image *= np.float32(1 / (CONTRAST_SHARE * max(level, LEVEL_FLOOR)))
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
