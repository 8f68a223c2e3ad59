"""A fixed, training-free feature extractor in numpy: multi-scale derivative filters, pooled.

It is the baseline and the test stand-in for the TFLite extractor and has the same interface: a
grey ROI crop in, an H x W x C float32 feature map out. The crop is first divided by its own mean
(plus a floor, so that near-black crops don't explode), which makes every channel indifferent to a
change of gain — lighting that brightens or dims the whole crop — while a local change of texture
or brightness still moves the cells it covers. At each scale s the crop is box-blurred over s x s
and five filters with step s respond (horizontal, vertical and both diagonal differences, a
Laplacian); each response is pooled per grid cell three ways (mean, mean absolute value, root mean
square), plus the blurred level itself: 16 channels per scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

FeatureMap = npt.NDArray[np.float32]  # (H, W, C)
GreyCrop = npt.NDArray[np.uint8] | npt.NDArray[np.float32] | npt.NDArray[np.float64]

_FLOAT = np.float64
_GAIN_FLOOR = 8.0  # luma levels added to the crop mean before dividing by it
_FILTERS = 5  # dx, dy, d45, d135, laplacian
CHANNELS_PER_SCALE = 3 * _FILTERS + 1


@dataclass(frozen=True)
class TextureFeatures:
    """`extract(crop)` -> (grid, grid, 16 * len(scales)) float32; crops of any size >= the grid."""

    grid: int = 16
    scales: tuple[int, ...] = (1, 2, 4, 8)

    def __post_init__(self) -> None:
        if self.grid < 1:
            raise ValueError(f"grid must be at least 1, got {self.grid}")
        if not self.scales or any(s < 1 for s in self.scales):
            raise ValueError(f"scales must be positive, got {self.scales}")

    @property
    def channels(self) -> int:
        return CHANNELS_PER_SCALE * len(self.scales)

    def extract(self, luma_crop: GreyCrop) -> FeatureMap:
        crop = np.asarray(luma_crop, dtype=_FLOAT)
        if crop.ndim != 2 or min(crop.shape) < self.grid:
            raise ValueError(
                f"need a 2-D crop of at least {self.grid}x{self.grid}, got {crop.shape}"
            )
        level = crop / (crop.mean() + _GAIN_FLOOR)
        maps = [_scale_channels(level, s, (self.grid, self.grid)) for s in self.scales]
        return np.concatenate(maps, axis=2).astype(np.float32)


def grid_mean(values: npt.NDArray[Any], grid: tuple[int, int]) -> npt.NDArray[np.float64]:
    """Mean of `values` (Y, X, ...) over each cell of a grid of grid[0] x grid[1] near-equal cells.

    Cell edges are where `np.linspace` puts them, so a pixel mask pooled here lines up with the
    feature map of a crop of the same size.
    """
    height, width = values.shape[:2]
    if height < grid[0] or width < grid[1]:
        raise ValueError(f"a {height}x{width} array cannot be pooled to a {grid} grid")
    rows = np.linspace(0, height, grid[0] + 1).astype(np.intp)
    cols = np.linspace(0, width, grid[1] + 1).astype(np.intp)
    sums = np.add.reduceat(np.add.reduceat(np.asarray(values, _FLOAT), rows[:-1], 0), cols[:-1], 1)
    area = np.outer(np.diff(rows), np.diff(cols)).astype(_FLOAT)
    return sums / area.reshape(area.shape + (1,) * (values.ndim - 2))


def _box_blur(image: npt.NDArray[_FLOAT], size: int) -> npt.NDArray[_FLOAT]:
    if size == 1:
        return image
    before, after = size // 2, size - 1 - size // 2
    padded = np.pad(image, ((before, after), (before, after)), mode="edge")
    table = np.pad(padded.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    h, w = image.shape
    total: npt.NDArray[_FLOAT] = table[size:, size:] - table[:h, size:] - table[size:, :w]
    mean: npt.NDArray[_FLOAT] = (total + table[:h, :w]) / (size * size)
    return mean


def _scale_channels(
    level: npt.NDArray[_FLOAT], step: int, grid: tuple[int, int]
) -> npt.NDArray[_FLOAT]:
    blurred = _box_blur(level, step)
    h, w = blurred.shape
    p = np.pad(blurred, step, mode="edge")

    def at(dy: int, dx: int) -> npt.NDArray[_FLOAT]:
        return p[step + dy : step + dy + h, step + dx : step + dx + w]

    responses = np.stack(
        [
            at(0, step) - at(0, -step),
            at(step, 0) - at(-step, 0),
            at(step, step) - at(-step, -step),
            at(step, -step) - at(-step, step),
            4 * blurred - at(0, step) - at(0, -step) - at(step, 0) - at(-step, 0),
        ],
        axis=2,
    )
    pooled = grid_mean(np.concatenate([responses, np.abs(responses), responses**2], axis=2), grid)
    rms = np.sqrt(pooled[:, :, 2 * _FILTERS :])
    return np.concatenate(
        [pooled[:, :, : 2 * _FILTERS], rms, grid_mean(blurred[:, :, None], grid)], axis=2
    )
