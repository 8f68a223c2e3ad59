"""The adjustment in force for one camera: registrations smoothed over time, and two alarms.

Each analysed frame's registration goes in; out comes the adjustment the ROIs are moved by and two
camera-wide states with hysteresis, so that one bad frame never floods anything: `moved` (the
drift exceeds a bound: the camera was bumped or turned) and `view_lost` (registrations keep
failing: covered lens, lights out). Smoothing is a per-parameter median over the last few
confident registrations: one wild frame changes nothing, and a sudden shift takes over as soon as
it is the majority of the window (two frames for a window of three). Registration is accurate to
hundredths of a pixel, so the window exists to reject outliers, not to average noise, and stays
short so that the adjustment does not lag behind a camera swaying in the wind.

Distances are in pixels of the frames that were registered.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from dataclasses import dataclass
from typing import Literal

from agent.detection.registration import Registration
from fleet.messages import IDENTITY, RoiAdjustment

DriftKind = Literal["camera_moved", "view_lost"]  # the detection event kinds they raise


@dataclass(frozen=True)
class DriftSettings:
    window: int = 3  # confident registrations the median runs over
    min_confidence: float = 0.3  # below it a registration counts as failed
    lost_after: int = 3  # consecutive failed registrations before the view is lost
    found_after: int = 3  # consecutive confident ones before it is found again
    max_shift_px: float = 6.0  # `moved` beyond any of these three bounds
    max_angle_deg: float = 0.75
    max_scale_change: float = 0.03
    clear_ratio: float = 0.7  # `moved` clears when back within this share of every bound

    def __post_init__(self) -> None:
        if self.window < 1 or self.lost_after < 1 or self.found_after < 1:
            raise ValueError("window, lost_after and found_after must be at least 1")
        if not 0 <= self.min_confidence < 1:
            raise ValueError(f"min_confidence must be in 0..1, got {self.min_confidence}")
        if min(self.max_shift_px, self.max_angle_deg, self.max_scale_change) <= 0:
            raise ValueError("the drift bounds must be positive")
        if not 0 < self.clear_ratio <= 1:
            raise ValueError(f"clear_ratio must be in (0, 1], got {self.clear_ratio}")

    def beyond(self, adj: RoiAdjustment, share: float = 1.0) -> bool:
        """Whether `adj` exceeds `share` of any bound."""
        return (
            math.hypot(adj.dx, adj.dy) > share * self.max_shift_px
            or abs(adj.angle_deg) > share * self.max_angle_deg
            or abs(adj.scale - 1) > share * self.max_scale_change
        )


@dataclass(frozen=True, slots=True)
class DriftTransition:
    kind: DriftKind
    active: bool  # True: the state began; False: it ended
    stamp_us: int  # of the frame whose registration decided it
    adjustment: RoiAdjustment  # in force at that moment


@dataclass(frozen=True, slots=True)
class DriftState:
    adjustment: RoiAdjustment
    moved: bool
    view_lost: bool
    confidence: float  # of the latest registration (0 before any)


class DriftTracker:
    """Smooths one camera's registrations; not thread-safe (one per camera's detect loop)."""

    def __init__(self, settings: DriftSettings | None = None) -> None:
        self.settings = settings or DriftSettings()
        self._window: deque[RoiAdjustment] = deque(maxlen=self.settings.window)
        self._state = DriftState(IDENTITY, moved=False, view_lost=False, confidence=0.0)
        self._streak = 0  # consecutive registrations that disagree with `view_lost`

    @property
    def state(self) -> DriftState:
        return self._state

    @property
    def adjustment(self) -> RoiAdjustment:
        """What the ROIs are moved by now: identity until a confident registration arrives."""
        return self._state.adjustment

    def update(self, registration: Registration, stamp_us: int) -> list[DriftTransition]:
        """Take one frame's registration; returns the states that began or ended with it."""
        s, state = self.settings, self._state
        confident = registration.confidence >= s.min_confidence
        if confident:
            self._window.append(registration.adjustment)
            adjustment = _median(self._window)
        else:
            adjustment = state.adjustment  # hold the last good one
        view_lost = self._view_lost(confident)
        # While the view is lost nothing is known about where the camera points.
        moved = (
            state.moved if view_lost else s.beyond(adjustment, s.clear_ratio if state.moved else 1)
        )
        self._state = DriftState(adjustment, moved, view_lost, registration.confidence)
        changes: list[tuple[DriftKind, bool, bool]] = [
            ("view_lost", state.view_lost, view_lost),
            ("camera_moved", state.moved, moved),
        ]
        return [
            DriftTransition(kind, now, stamp_us, adjustment)
            for kind, was, now in changes
            if was != now
        ]

    def _view_lost(self, confident: bool) -> bool:
        lost = self._state.view_lost
        self._streak = self._streak + 1 if confident == lost else 0
        needed = self.settings.found_after if lost else self.settings.lost_after
        if self._streak >= needed:
            self._streak = 0
            return not lost
        return lost


def _median(adjustments: deque[RoiAdjustment]) -> RoiAdjustment:
    return RoiAdjustment(
        dx=statistics.median(a.dx for a in adjustments),
        dy=statistics.median(a.dy for a in adjustments),
        angle_deg=statistics.median(a.angle_deg for a in adjustments),
        scale=statistics.median(a.scale for a in adjustments),
    )
