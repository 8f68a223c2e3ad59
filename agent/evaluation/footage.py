"""Footage of a simulated camera as the agent would see it: the scene rendered, encoded with the
simulator's own H.264 settings (cached like the simulator's loops), decoded again by PyAV, and
stamped with the simulator's clock — faster than real time, frame for frame what an RTSP session
would deliver."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import av

from fleet.sim.encoded import EncodedLoop, StreamEncoding, encode_loops, to_annexb
from fleet.sim.scene import SceneSpec
from fleet.sim.truth import SceneClock

BITRATE_KBPS = 1000  # a sub stream's budget at 640x360


@dataclass(frozen=True, slots=True)
class Frame:
    index: int  # counted from the clock's epoch; the scene shows loop frame index % frame_count
    stamp_us: int
    image: av.VideoFrame


def footage(
    spec: SceneSpec,
    clock: SceneClock,
    frames: int,
    cache_dir: Path,
    step: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> Iterator[Frame]:
    """`frames` stream frames from the clock's epoch, every `step`-th one decoded and yielded
    (all are decoded: H.264 needs its references)."""
    stream = to_annexb(encoded_loop(spec, cache_dir, progress).units)
    decoder = av.CodecContext.create("h264", "r")
    assert isinstance(decoder, av.VideoCodecContext)
    index = 0
    while index < frames:
        for packet in decoder.parse(stream):
            for image in decoder.decode(packet):
                if index < frames and index % step == 0:
                    yield Frame(index, clock.frame_time_us(index), image)
                index += 1
        for image in decoder.decode(None):  # the loop's last frames, before it repeats
            if index < frames and index % step == 0:
                yield Frame(index, clock.frame_time_us(index), image)
            index += 1
        decoder = av.CodecContext.create("h264", "r")  # the next pass starts on an IDR
        assert isinstance(decoder, av.VideoCodecContext)


def encoded_loop(
    spec: SceneSpec, cache_dir: Path, progress: Callable[[int, int], None] | None = None
) -> EncodedLoop:
    """The scene's loop as a sub stream would carry it, encoded once and cached."""
    encoding = StreamEncoding("eval", spec.width, spec.height, spec.fps,
                              gop=_gop(spec), bitrate_kbps=BITRATE_KBPS)  # fmt: skip
    return encode_loops(spec, [encoding], cache_dir, progress)["eval"]


def _gop(spec: SceneSpec) -> int:
    """The longest GOP up to 2 s that divides the loop, so every pass starts on a keyframe."""
    return next(g for g in range(min(spec.frame_count, round(2 * spec.fps)), 0, -1)
                if spec.frame_count % g == 0)  # fmt: skip
