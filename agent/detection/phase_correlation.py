"""Translation between two images by phase correlation, with sub-pixel peak refinement."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.detection.pyramid import F32

C64 = npt.NDArray[np.complex64]

_EPS = np.float32(1e-6)


@dataclass(frozen=True, slots=True)
class Shift:
    """How far the image's content moved from the reference's, in pixels; `peak` in 0..1."""

    dx: float
    dy: float
    peak: float  # height of the correlation peak: 1 for identical images, ~0 for unrelated


def hann(h: int, w: int) -> F32:
    """2-D Hann window: without it the frame borders correlate with themselves (shift 0)."""
    window: F32 = np.outer(np.hanning(h), np.hanning(w)).astype(np.float32)
    return window


class PhaseCorrelator:
    """Correlates images of one size against a fixed reference (its spectrum computed once)."""

    def __init__(self, reference: F32) -> None:
        self.shape = reference.shape
        self._window = hann(*self.shape)
        self._reference: C64 = np.conj(self._spectrum(reference))

    def shift(self, image: F32) -> Shift:
        if image.shape != self.shape:
            raise ValueError(f"image is {image.shape}, the reference {self.shape}")
        cross = self._spectrum(image)
        cross *= self._reference
        cross /= np.abs(cross) + _EPS
        surface = np.fft.irfft2(cross, s=self.shape).astype(np.float32, copy=False)
        h, w = self.shape
        py, px = divmod(int(np.argmax(surface)), w)
        peak = float(surface[py, px])
        # Parabola through the peak and its neighbours (the surface wraps around).
        row, col = surface[py], surface[:, px]
        dx = px + _vertex(row[(px - 1) % w], peak, row[(px + 1) % w])
        dy = py + _vertex(col[(py - 1) % h], peak, col[(py + 1) % h])
        return Shift(_signed(dx, w), _signed(dy, h), max(0.0, peak))

    def _spectrum(self, image: F32) -> C64:
        windowed = (image - np.float32(image.mean())) * self._window
        spectrum: C64 = np.fft.rfft2(windowed).astype(np.complex64, copy=False)
        return spectrum


def _vertex(left: float, centre: float, right: float) -> float:
    """Offset (-0.5 .. 0.5) of the maximum of the parabola through three equally spaced values."""
    curvature = left - 2 * centre + right
    if curvature >= 0:
        return 0.0
    return float(np.clip(0.5 * (left - right) / curvature, -0.5, 0.5))


def _signed(position: float, size: int) -> float:
    """A cyclic peak position as a shift in -size/2 .. size/2."""
    return position - size if position > size / 2 else position
