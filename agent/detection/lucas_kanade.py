"""Robust inverse-compositional Gauss-Newton (Lucas-Kanade) for a similarity warp.

The warp maps reference positions to frame positions, both in full-resolution pixels relative to
the frame centre: p' = [[1 + a, -b], [b, 1 + a]] p + (tx, ty). Only a few thousand high-gradient
reference points per pyramid level take part (they carry nearly all the information), which is
what makes this cheap enough to run on every analysed frame. Each step matches the frame's gain
and offset to the reference's; grid cells that no longer look like the reference (something in
front of it) are left out, and Tukey weights drop single points that do not fit (people, cars).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.detection.pyramid import F32, sample

Matrix = npt.NDArray[np.float64]  # 3x3 homogeneous similarity, centred full-resolution px
F64 = npt.NDArray[np.float64]
Indices = npt.NDArray[np.intp]

GRID = (6, 8)  # rows x columns of cells the points are spread over
_TUKEY = 4.685  # 95% efficiency under Gaussian noise
_MIN_INSIDE = 0.25  # below this share of points inside the frame the fit means little
_CELL_AGREEMENT = 0.5  # cells correlating less than this share of the median cell are left out


class AlignmentFailed(Exception):
    """The frame could not be aligned at all (no overlap, no contrast, a singular system)."""


@dataclass(frozen=True, slots=True)
class Alignment:
    matrix: Matrix
    correlation: float  # normalised cross-correlation of reference and aligned frame, -1..1


def translation(dx: float, dy: float) -> Matrix:
    return np.array([[1.0, 0.0, dx], [0.0, 1.0, dy], [0.0, 0.0, 1.0]])


def _step_matrix(a: float, b: float, tx: float, ty: float) -> Matrix:
    return np.array([[1.0 + a, -b, tx], [b, 1.0 + a, ty], [0.0, 0.0, 1.0]])


class LevelPoints:
    """The reference's strongest-gradient points on one pyramid level, the same number per cell.

    Points are stored cell by cell, so per-cell sums are a reshape away.
    """

    def __init__(self, reference: F32, level: int, centre: tuple[float, float], count: int) -> None:
        self.scale = float(2**level)  # full-resolution px per level px
        gx, gy = _central_differences(reference)
        idx = _spread_maxima(gx * gx + gy * gy, count)
        self._per_cell = len(idx) // (GRID[0] * GRID[1])
        iy, ix = np.divmod(idx, reference.shape[1])
        # Level pixel centres in centred full-resolution coordinates.
        self._u = ((ix + 0.5) * self.scale - centre[0]).astype(np.float32)
        self._v = ((iy + 0.5) * self.scale - centre[1]).astype(np.float32)
        self._radius = float(np.hypot(self._u, self._v).max())
        self._t: F32 = reference.reshape(-1)[idx]
        self._offset = (centre[0] / self.scale - 0.5, centre[1] / self.scale - 0.5)
        # Steepest-descent images for (a, b, tx, ty); gradients per full-resolution px.
        gxs = gx.reshape(-1)[idx].astype(np.float64) / self.scale
        gys = gy.reshape(-1)[idx].astype(np.float64) / self.scale
        u, v = self._u.astype(np.float64), self._v.astype(np.float64)
        self._sd: F64 = np.stack([gxs * u + gys * v, gys * u - gxs * v, gxs, gys], axis=1)

    def __len__(self) -> int:
        return len(self._t)

    def align(self, image: F32, matrix: Matrix, iterations: int, tolerance_px: float) -> Alignment:
        """Refine `matrix` on this level's copy of the frame until a step moves < tolerance."""
        alignment, moved, weights = self._step(image, matrix, None)
        for _ in range(iterations - 1):
            if moved < tolerance_px * self.scale:
                break
            alignment, moved, weights = self._step(image, alignment.matrix, weights)
        return alignment

    def _step(self, image: F32, m: Matrix, prior: F32 | None) -> tuple[Alignment, float, F32]:
        """One Gauss-Newton step; `prior` are the previous step's weights (None: all equal)."""
        values, valid = self._sample(image, m)
        n = int(np.count_nonzero(valid))
        if n < max(16, _MIN_INSIDE * len(self)):
            raise AlignmentFailed("the frame barely overlaps the reference")
        inside = valid.astype(np.float32)
        correlation = _correlation(values, self._t, inside)
        # Gain and offset from the points that fitted last time, so an occluder does not skew them.
        e = _matched_residual(values, self._t, inside if prior is None else prior * inside)
        cells = self._cell_correlations(values, inside)
        kept = inside * np.repeat(cells >= _CELL_AGREEMENT * np.median(cells), self._per_cell)
        ae = np.abs(e)
        cut = np.float32(_TUKEY * 1.4826 * np.median(ae[valid]) + 1e-3)
        weights: F32 = np.square(np.clip(1 - np.square(ae / cut), 0, None)) * kept
        sdw = self._sd * weights[:, None]
        try:
            a, b, tx, ty = (float(p) for p in np.linalg.solve(sdw.T @ self._sd, sdw.T @ e))
        except np.linalg.LinAlgError as exc:
            raise AlignmentFailed("degenerate system (no texture where the points are)") from exc
        updated = m @ np.linalg.inv(_step_matrix(a, b, tx, ty))
        moved = (abs(a) + abs(b)) * self._radius + abs(tx) + abs(ty)
        return Alignment(updated, correlation), moved, weights

    def _sample(self, image: F32, m: Matrix) -> tuple[F32, npt.NDArray[np.bool_]]:
        """The frame at the warped points (this level's pixel coordinates)."""
        u, v, inv = self._u, self._v, 1 / self.scale
        x = u * np.float32(m[0, 0] * inv) + v * np.float32(m[0, 1] * inv)
        x += np.float32(m[0, 2] * inv + self._offset[0])
        y = u * np.float32(m[1, 0] * inv) + v * np.float32(m[1, 1] * inv)
        y += np.float32(m[1, 2] * inv + self._offset[1])
        return sample(image, x, y)

    def _cell_correlations(self, values: F32, weights: F32) -> F64:
        """Normalised cross-correlation of frame and reference within each cell (0 if flat)."""
        shape = (-1, self._per_cell)
        w, a, b = weights.reshape(shape), values.reshape(shape), self._t.reshape(shape)
        n = np.maximum(w.sum(axis=1, dtype=np.float64), 1e-9)
        ma, mb = (a * w).sum(axis=1) / n, (b * w).sum(axis=1) / n
        cov = (a * b * w).sum(axis=1) / n - ma * mb
        var_a = (a * a * w).sum(axis=1) / n - ma * ma
        var_b = (b * b * w).sum(axis=1) / n - mb * mb
        ok = (var_a > 1e-2) & (var_b > 1e-2)
        return np.where(ok, cov / np.sqrt(np.where(ok, var_a * var_b, 1.0)), 0.0)


def _moments(a: F32, b: F32, weights: F32) -> tuple[F32, F32, float, float]:
    """a and b minus their weighted means, and their weighted variances."""
    total = float(weights.sum())
    if total <= 0:
        raise AlignmentFailed("no point fits")
    da = a - np.float32(np.dot(a, weights) / total)
    db = b - np.float32(np.dot(b, weights) / total)
    return da, db, float(np.dot(da * da, weights) / total), float(np.dot(db * db, weights) / total)


def _correlation(values: F32, template: F32, weights: F32) -> float:
    dv, dt, var_v, var_t = _moments(values, template, weights)
    if var_v < 1e-3:
        raise AlignmentFailed("no contrast in the frame")
    return float(np.dot(dv * dt, weights)) / float(weights.sum()) / float(np.sqrt(var_v * var_t))


def _matched_residual(values: F32, template: F32, weights: F32) -> F32:
    """values - template once the values' mean and spread are scaled to the template's."""
    dv, dt, var_v, var_t = _moments(values, template, weights)
    if var_v < 1e-3:
        raise AlignmentFailed("no contrast where the reference has texture")
    residual: F32 = dv * np.float32(np.sqrt(var_t / var_v)) - dt
    return residual


def _central_differences(image: F32) -> tuple[F32, F32]:
    """d/dx and d/dy in level px; zero on the border, which no point is picked from."""
    gx, gy = np.zeros_like(image), np.zeros_like(image)
    gx[1:-1, 1:-1] = (image[1:-1, 2:] - image[1:-1, :-2]) * np.float32(0.5)
    gy[1:-1, 1:-1] = (image[2:, 1:-1] - image[:-2, 1:-1]) * np.float32(0.5)
    return gx, gy


def _spread_maxima(strength: F32, count: int) -> Indices:
    """Flat indices of strong pixels: the same number from every cell, in cell order."""
    h, w = strength.shape
    rows, cols = GRID
    y_edges = [r * h // rows for r in range(rows + 1)]
    x_edges = [c * w // cols for c in range(cols + 1)]
    smallest = min(np.diff(y_edges)) * min(np.diff(x_edges))
    per_cell = max(1, min(count // (rows * cols), int(smallest)))
    picked = []
    for y0, y1 in itertools.pairwise(y_edges):
        for x0, x1 in itertools.pairwise(x_edges):
            cell = strength[y0:y1, x0:x1].reshape(-1)
            top = np.argpartition(cell, cell.size - per_cell)[cell.size - per_cell :]
            cy, cx = np.divmod(top, x1 - x0)
            picked.append((cy + y0) * w + cx + x0)
    return np.concatenate(picked).astype(np.intp)
