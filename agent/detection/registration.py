"""Registering a frame against the camera's reference view: how has the camera drifted?

Coarse to fine on a luma pyramid: phase correlation of the coarsest level finds the translation
(robust to lighting, noise and things moving in front of the background, and with a wide capture
range), then robust Lucas-Kanade on each level refines a similarity transform (translation,
rotation, scale). Log-polar (Fourier-Mellin) estimates of rotation were too coarse for drifts of
a degree or two; gradient refinement reaches hundredths of a pixel. Frames wider than
`max_width` are registered on a halved (or quartered ...) copy, which costs no accuracy that
the ROI placement needs.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from agent.detection.lucas_kanade import AlignmentFailed, LevelPoints, translation
from agent.detection.luma import Luma
from agent.detection.phase_correlation import PhaseCorrelator
from agent.detection.pyramid import pyramid
from agent.detection.roi_geometry import adjustment_from_matrix
from fleet.messages import IDENTITY, RoiAdjustment

_MIN_REFERENCE_STD = 2.0  # grey levels at the coarsest level: below it there is nothing to track
_SANE_SCALE = (0.7, 1.4)  # outside it, the refinement has run off (the camera is not zooming)


class RegistrationError(ValueError):
    """A reference view that cannot be tracked, or a frame of another size than the reference."""


@dataclass(frozen=True, slots=True)
class Registration:
    """Where the reference view is in a frame, and how sure that is."""

    adjustment: RoiAdjustment  # moves reference-view positions onto the frame
    confidence: float  # 0..1: correlation of the aligned frame with the reference
    peak: float  # 0..1: phase-correlation peak height of the coarse step

    @classmethod
    def failed(cls, peak: float = 0.0) -> Registration:
        return cls(IDENTITY, 0.0, peak)


@dataclass(frozen=True)
class RegistrationSettings:
    max_width: int = 640  # register frames wider than this on a 2^k times smaller copy
    points: tuple[int, ...] = (3000, 2000, 1000)  # per pyramid level, finest first
    iterations: tuple[int, ...] = (3, 4, 8)  # most Gauss-Newton steps per level, finest first
    tolerance_px: float = 0.1  # a level is done when a step moves no point more (level px)

    def __post_init__(self) -> None:
        if self.max_width < 32 or self.tolerance_px <= 0:
            raise ValueError("max_width must be >= 32 and tolerance_px > 0")
        if not self.points or len(self.points) != len(self.iterations):
            raise ValueError("points and iterations need one entry per level")
        if min(self.points) < 48 or min(self.iterations) < 1:
            raise ValueError("each level needs >= 48 points and >= 1 iteration")


class Registrar:
    """Registers frames of one size against a reference view captured from the same camera."""

    def __init__(self, reference: Luma, settings: RegistrationSettings | None = None) -> None:
        self.settings = settings or RegistrationSettings()
        if reference.ndim != 2:
            raise RegistrationError(f"reference must be a luma plane, not shape {reference.shape}")
        self.height, self.width = reference.shape
        self._first = max(0, math.ceil(math.log2(self.width / self.settings.max_width)))
        count = len(self.settings.points)
        coarsest = 2 ** (self._first + count - 1)
        if self.width // coarsest < 16 or self.height // coarsest < 16:
            raise RegistrationError(
                f"reference {self.width}x{self.height} is too small for {count} pyramid levels"
            )
        levels = pyramid(reference, self._first, count)
        if float(levels[-1].std()) < _MIN_REFERENCE_STD:
            raise RegistrationError("reference view has no contrast (covered lens or darkness?)")
        centre = (self.width / 2, self.height / 2)
        self._points = [
            LevelPoints(image, self._first + k, centre, n)
            for k, (image, n) in enumerate(zip(levels, self.settings.points, strict=True))
        ]
        self._coarse = PhaseCorrelator(levels[-1])

    def register(self, frame: Luma) -> Registration:
        if frame.shape != (self.height, self.width):
            raise RegistrationError(
                f"frame is {frame.shape[1]}x{frame.shape[0]}, "
                f"the reference {self.width}x{self.height}"
            )
        levels = pyramid(frame, self._first, len(self._points))
        coarse = self._coarse.shift(levels[-1])
        factor = 2 ** (self._first + len(levels) - 1)
        matrix = translation(coarse.dx * factor, coarse.dy * factor)
        s = self.settings
        try:
            for k in reversed(range(len(levels))):
                fit = self._points[k].align(levels[k], matrix, s.iterations[k], s.tolerance_px)
                matrix = fit.matrix
        except AlignmentFailed:
            return Registration.failed(coarse.peak)
        adjustment = adjustment_from_matrix(matrix) if np.isfinite(matrix).all() else None
        if adjustment is None or not _SANE_SCALE[0] < adjustment.scale < _SANE_SCALE[1]:
            return Registration.failed(coarse.peak)
        return Registration(adjustment, max(0.0, fit.correlation), coarse.peak)
