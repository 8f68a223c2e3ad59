"""Sampling the world canvas through the camera: a bilinear inverse warp."""

from __future__ import annotations

import math

import numpy as np

from fleet.sim.render.raster import F32


def _lerp(a: F32, b: F32, t: F32) -> None:
    """a += (b - a) * t, in place; b is clobbered."""
    np.subtract(b, a, out=b)
    np.multiply(b, t, out=b)
    np.add(a, b, out=a)


class Warper:
    """Bilinear inverse warp of a canvas into an output grid, with reusable scratch buffers."""

    def __init__(self, out_h: int, out_w: int, canvas_w: int, margin: int) -> None:
        self._xr = np.arange(out_w, dtype=np.float32) - np.float32((out_w - 1) / 2)
        self._yr = np.arange(out_h, dtype=np.float32) - np.float32((out_h - 1) / 2)
        self._centre = ((out_w - 1) / 2 + margin, (out_h - 1) / 2 + margin)
        self._stride = canvas_w
        shape = (out_h, out_w)
        self._sx, self._sy, self._fx, self._fy = (np.empty(shape, np.float32) for _ in range(4))
        self._idx = np.empty(shape, np.intp)
        self._taps = [np.empty(shape, np.float32) for _ in range(4)]

    def prepare(self, dx: float, dy: float, angle_deg: float) -> None:
        """Source position of every output px: p0 = R^-1 (p - c - d) + c (+ margin)."""
        c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
        cx, cy = self._centre
        xs, ys = self._xr - np.float32(dx), self._yr - np.float32(dy)
        sx, sy, fx, fy = self._sx, self._sy, self._fx, self._fy
        np.add((c * xs)[None, :], (s * ys + cx)[:, None], out=sx)
        np.add((-s * xs)[None, :], (c * ys + cy)[:, None], out=sy)
        np.floor(sx, out=fx)
        np.floor(sy, out=fy)
        # Flat index computed in float32 (exact below 2**24) and cast once.
        np.subtract(sx, fx, out=sx)
        np.subtract(sy, fy, out=sy)
        np.multiply(fy, np.float32(self._stride), out=fy)
        np.add(fy, fx, out=fy)
        np.copyto(self._idx, fy, casting="unsafe")

    def sample(self, plane: F32) -> F32:
        """The warped plane (a scratch buffer, valid until the next call)."""
        flat, n = plane.reshape(-1), self._stride
        for tap, offset in zip(self._taps, (0, 1, n, n + 1), strict=True):
            np.take(flat[offset:], self._idx, out=tap, mode="clip")
        a, b, c, d = self._taps
        fx, fy = self._sx, self._sy  # fractional parts after prepare()
        _lerp(a, b, fx)
        _lerp(c, d, fx)
        _lerp(a, c, fy)
        return a
