"""One look at a camera stream's stats, as the monitor consumes it."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import get_args

from fleet.messages import ConnectionState
from fleet.profiles import FirmwareProfile, StreamKind

_STATES = frozenset(get_args(ConnectionState))
_KINDS = frozenset(get_args(StreamKind))


@dataclass(frozen=True, slots=True)
class StreamSample:
    """From the stream's ConnectionStats (state, reason, reconnects), the stamper's stats
    (re-anchors) and the frame rate measured over the last interval."""

    stream: StreamKind
    state: ConnectionState
    reason: str
    fps_in: float
    expected_fps: float | None  # the profile's fps for this stream; None: unknown
    reconnects: int  # cumulative
    re_anchors: int  # cumulative

    def __post_init__(self) -> None:
        if self.stream not in _KINDS:
            raise ValueError(f"stream must be one of {sorted(_KINDS)}, got {self.stream!r}")
        if self.state not in _STATES:
            raise ValueError(f"state must be one of {sorted(_STATES)}, got {self.state!r}")
        for name in ("fps_in", "expected_fps"):
            value = getattr(self, name)
            if value is not None and not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.reconnects < 0 or self.re_anchors < 0:
            raise ValueError("reconnects and re_anchors are counts, >= 0")


def expected_fps(profile: FirmwareProfile, stream: StreamKind) -> float | None:
    """The frame rate the camera family sends on this stream, if the profile has the stream."""
    stream_profile = profile.main if stream == "main" else profile.sub
    return None if stream_profile is None else stream_profile.fps
