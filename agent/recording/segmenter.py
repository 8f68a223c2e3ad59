"""Where segments start and end, and where their files go (sans-IO: no files, no clocks).

A segment starts on a keyframe: on a stream's first keyframe, on the first keyframe at least
`segment_us` after the current segment's start, and on the first keyframe of a new stream
generation (a reconnect or a parameter change closes the current segment at once).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from fleet.utc import from_stamp_us

# Same rule as fleet.messages.Slug: names become path components, so nothing else gets through.
_NAME = re.compile(r"^[a-z0-9_-]{1,64}$")


class SegmentPathError(ValueError):
    """A camera or stream name that cannot be a path component."""


class Action(Enum):
    SKIP = "skip"  # no open segment and not a keyframe: the packet cannot be recorded
    APPEND = "append"  # add to the open segment
    START = "start"  # close the open segment, if any, and start a new one with this packet
    CLOSE = "close"  # close the open segment; the packet (new generation, no keyframe) is skipped


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    restarted: bool  # the stream's generation changed with this packet


# Every decision there is, made once: decide() runs for every packet.
_DECISIONS = {(a, r): Decision(a, r) for a in Action for r in (False, True)}


class Segmenter:
    """Segment boundaries of one stream."""

    def __init__(self, segment_us: int) -> None:
        if segment_us <= 0:
            raise ValueError(f"segment length must be positive, got {segment_us} µs")
        self.segment_us = segment_us
        self._start_us: int | None = None  # start of the open segment
        self._generation: int | None = None  # of the last packet seen

    def decide(self, keyframe: bool, generation: int, stamp_us: int) -> Decision:
        restarted = self._generation is not None and generation != self._generation
        self._generation = generation
        if restarted and self._start_us is not None and not keyframe:
            self._start_us = None
            return _DECISIONS[Action.CLOSE, restarted]
        if self._start_us is None or restarted:
            return self._start(keyframe, stamp_us, restarted)
        if keyframe and stamp_us - self._start_us >= self.segment_us:
            return self._start(keyframe, stamp_us, restarted)
        return _DECISIONS[Action.APPEND, restarted]

    def stopped(self) -> None:
        """The recorder closed the segment on its own (a write failed); wait for a keyframe."""
        self._start_us = None

    def _start(self, keyframe: bool, stamp_us: int, restarted: bool) -> Decision:
        if not keyframe:
            return _DECISIONS[Action.SKIP, restarted]
        self._start_us = stamp_us
        return _DECISIONS[Action.START, restarted]


def nominal_frame_us(packet_duration_us: int | None, fps: float | None) -> int:
    """How long a frame lasts with no stamp interval before it (a generation's first frame).

    The demuxer's packet duration, else the nominal frame rate; 0 when neither is known.
    """
    if packet_duration_us is not None and packet_duration_us > 0:
        return packet_duration_us
    if fps:
        return round(1_000_000 / fps)
    return 0


def check_name(name: str, what: str) -> str:
    if not _NAME.match(name):
        raise SegmentPathError(f"{what} name {name!r} must match {_NAME.pattern}")
    return name


def segment_relpath(camera: str, stream: str, start_us: int) -> str:
    """recordings/<camera>/<stream>/<YYYY-MM-DD>/<HH>/<start-stamp-us>.mp4 (UTC)."""
    when = from_stamp_us(start_us)
    return (
        f"recordings/{check_name(camera, 'camera')}/{check_name(stream, 'stream')}/"
        f"{when:%Y-%m-%d}/{when:%H}/{start_us}.mp4"
    )
