"""What a synthetic scene is: frame format, loop length, anomaly schedule, camera drift.

Plain validated values; everything random about a scene derives from its seed through
`seeded_rng`, one independent stream per aspect.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

AnomalyKind = Literal["object_appears", "intrusion", "occlusion", "texture_change"]
ANOMALY_KINDS: tuple[AnomalyKind, ...] = (
    "object_appears",
    "intrusion",
    "occlusion",
    "texture_change",
)

# Independent random streams per aspect, so e.g. a new anomaly schedule keeps the background.
STREAM_SCHEDULE, STREAM_BACKGROUND, STREAM_DRIFT, STREAM_MOVERS = 0, 1, 2, 3
STREAM_ANOMALIES, STREAM_NOISE, STREAM_LIGHT = 4, 5, 6


def seeded_rng(seed: int, stream: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *more])


class SceneError(ValueError):
    """A scene description that cannot be rendered."""


@dataclass(frozen=True)
class Region:
    """A rectangle in normalised frame coordinates (0..1) of the reference view."""

    x: float
    y: float
    w: float
    h: float

    def __post_init__(self) -> None:
        inside = self.x >= 0 and self.y >= 0 and self.x + self.w <= 1 and self.y + self.h <= 1
        if not (self.w > 0 and self.h > 0 and inside):
            raise SceneError(f"region must be non-empty and inside 0..1: {self}")


@dataclass(frozen=True)
class AnomalySpec:
    kind: AnomalyKind
    region: Region
    start_s: float  # offsets inside the loop
    end_s: float

    def __post_init__(self) -> None:
        if self.kind not in ANOMALY_KINDS:
            raise SceneError(f"unknown anomaly kind {self.kind!r}; known: {ANOMALY_KINDS}")
        if not 0 <= self.start_s < self.end_s:
            raise SceneError(f"anomaly needs 0 <= start_s < end_s: {self}")

    def active_at(self, t: float) -> bool:
        return self.start_s <= t < self.end_s


@dataclass(frozen=True)
class CameraPose:
    """Camera drift at one frame: content offset in px (scene resolution) and rotation."""

    dx: float
    dy: float
    angle_deg: float


@dataclass(frozen=True)
class SceneSpec:
    seed: int
    width: int
    height: int
    fps: float
    frame_count: int  # loop length in frames
    anomalies: tuple[AnomalySpec, ...]
    drift_px: float
    drift_deg: float
    # (at_s, dx, dy, angle_deg): a sudden camera shift, held until the loop ends
    shifts: tuple[tuple[float, float, float, float], ...]
    # Another take of the same place: drift, lighting, passers-by and noise drawn afresh, the
    # background and the anomalies kept (so a model trained on one take is tested on another).
    variant: int = 0
    # Canvas border (px) around the frame; None: just enough for the drift and shifts. Takes of
    # one place must share it: the background is laid out on the canvas.
    margin_px: int | None = None

    def rng(self, stream: int) -> np.random.Generator:
        """The random stream of one aspect that varies between takes."""
        return seeded_rng(self.seed, stream, *((self.variant,) if self.variant else ()))

    def __post_init__(self) -> None:
        if self.seed < 0 or self.variant < 0:
            raise SceneError(f"seed and variant must be >= 0: {self.seed}, {self.variant}")
        if self.width < 32 or self.height < 32 or self.width % 2 or self.height % 2:
            raise SceneError(f"frame size must be even and >= 32: {self.width}x{self.height}")
        if not (self.fps > 0 and self.frame_count > 0):
            raise SceneError(
                f"fps and frame_count must be positive: {self.fps}, {self.frame_count}"
            )
        if self.drift_px < 0 or self.drift_deg < 0:
            raise SceneError("drift amplitudes must be >= 0")
        for a in self.anomalies:
            if a.end_s > self.loop_seconds:
                raise SceneError(f"anomaly ends after the loop ({self.loop_seconds:.3f} s): {a}")
        for shift in self.shifts:
            if not 0 <= shift[0] < self.loop_seconds:
                raise SceneError(f"shift time outside the loop: {shift}")

    @property
    def loop_seconds(self) -> float:
        return self.frame_count / self.fps
