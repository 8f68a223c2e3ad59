"""Image pyramids by 2x2 block means, and bilinear sampling at scattered points.

Coordinates: level k's pixel (i, j) covers [j * 2^k, (j + 1) * 2^k) of the full-resolution
frame, so a point's position carries over between levels by a scale factor alone.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
Image = npt.NDArray[np.uint8] | F32


def halve(image: Image) -> F32:
    """Each output pixel is the mean of a 2x2 block (an odd last row or column is dropped)."""
    h, w = image.shape[0] // 2 * 2, image.shape[1] // 2 * 2
    out = image[0:h:2, 0:w:2].astype(np.float32)
    out += image[1:h:2, 0:w:2]
    out += image[0:h:2, 1:w:2]
    out += image[1:h:2, 1:w:2]
    out *= np.float32(0.25)
    return out


def pyramid(image: Image, first: int, count: int) -> list[F32]:
    """Levels `first` .. `first + count - 1` (level k is 2^k times smaller than `image`)."""
    level: F32 = np.asarray(image, np.float32) if first == 0 else halve(image)
    for _ in range(1, first):
        level = halve(level)
    out = [level]
    for _ in range(1, count):
        out.append(halve(out[-1]))
    return out


def sample(image: F32, x: F32, y: F32) -> tuple[F32, npt.NDArray[np.bool_]]:
    """Bilinear values at (x, y) in pixel-index coordinates, and which points lie inside.

    Points outside (no 2x2 neighbourhood in the image) get a clamped value and valid False.
    """
    h, w = image.shape
    x0, y0 = np.floor(x), np.floor(y)
    fx, fy = x - x0, y - y0
    valid = (x0 >= 0) & (x0 <= w - 2) & (y0 >= 0) & (y0 <= h - 2)
    np.clip(x0, 0, w - 2, out=x0)
    np.clip(y0, 0, h - 2, out=y0)
    idx = (y0 * np.float32(w) + x0).astype(np.intp)  # exact in float32 below 2**24 px
    flat = image.reshape(-1)
    top, right = flat[idx], flat[idx + 1]
    right -= top
    right *= fx
    top += right
    bottom, corner = flat[idx + w], flat[idx + w + 1]
    corner -= bottom
    corner *= fx
    bottom += corner
    bottom -= top
    bottom *= fy
    top += bottom
    return top, valid
