"""Raster primitives shared by sprites and the background: coverage, noise, fills."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
Yuv = tuple[float, float, float]


def soft(distance: npt.NDArray[np.floating[Any]]) -> F32:
    """Anti-aliased coverage from a signed distance in px (negative inside)."""
    coverage: F32 = np.clip(0.5 - distance, 0.0, 1.0).astype(np.float32)
    return coverage


def ellipse(yy: F32, xx: F32, cy: float, cx: float, ry: float, rx: float, edge: float) -> F32:
    """Coverage of an ellipse on the (yy, xx) grid; `edge` scales the normalised distance to px."""
    norm = np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2)
    return soft((norm - 1) * edge)


def even(n: float) -> int:
    return max(2, 2 * round(n / 2))


def fill(zone: F32, colour: Yuv) -> None:
    """Sets every pixel of a (3, h, w) YUV zone."""
    zone[:] = np.asarray(colour, np.float32)[:, None, None]


def _interp_matrix(n: int, cell: float) -> F32:
    """(n, m) linear-interpolation weights from a coarse grid with one node per `cell` px."""
    pos = np.arange(n) / cell
    i0 = np.floor(pos).astype(np.intp)
    frac = (pos - i0).astype(np.float32)
    mat = np.zeros((n, int(i0[-1]) + 2), np.float32)
    mat[np.arange(n), i0] = 1 - frac
    mat[np.arange(n), i0 + 1] = frac
    return mat


def value_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> F32:
    """Smooth random texture (unit variance at the nodes), interpolated by two matrix products."""
    rows, cols = _interp_matrix(shape[0], cell), _interp_matrix(shape[1], cell)
    grid = rng.standard_normal((rows.shape[1], cols.shape[1])).astype(np.float32)
    noise: F32 = (rows @ grid @ cols.T).astype(np.float32, copy=False)
    return noise
