"""What flows from ingest to every consumer: a stream's parameters and its stamped packets.

Packets carry the demuxer's own `av.Packet` by reference (never copied); the stamp is made once,
at ingest, and every consumer — recorder, detector, live view — sees the same one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import av.stream


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """Parameters of one connection's video stream; a change (new SPS, new size) makes a new one."""

    camera: str
    stream: str  # "main" or "sub"
    codec: str  # e.g. "h264"
    width: int
    height: int
    time_base: Fraction
    extradata: bytes | None  # SPS/PPS (avcC or Annex-B) as the demuxer reports them
    fps: float | None  # nominal, from the SDP or the camera; None when unknown
    generation: int  # increments on every (re)connect or parameter change
    # The stream's exact codec parameters for a muxer, in a copy that outlives the connection
    # (the recorder may start a segment from a queued packet after ingest closed the demuxer,
    # which frees the demuxer's own stream); None when the source has none.
    template: av.stream.Stream | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Stamp:
    seq: int  # per stream, strictly increasing across reconnects
    capture_us: int  # UTC epoch microseconds, strictly increasing per stream
    synced: bool  # the agent's clock was synchronised (NTP) when this was stamped
    reanchored: bool  # this stamp started a new PTS-to-clock anchor


@dataclass(frozen=True, slots=True)
class StampedPacket:
    info: StreamInfo
    stamp: Stamp
    packet: av.Packet[Any]  # the demuxer's packet, shared by reference
    keyframe: bool
    pts: int | None  # in info.time_base, as the demuxer gave it
