"""Getting frames back out of the recording: event clips (remuxed, never re-encoded) and single
frames decoded frame-exact at a stamp.
"""

from __future__ import annotations

import contextlib
import itertools
import os
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
import av.container
import av.video.stream

from agent.recording.index import FrameRef, Index
from agent.recording.writer import US, packet_duration_us


class ClipError(ValueError):
    """A clip or frame that the recording cannot provide."""


@dataclass(frozen=True, slots=True)
class ClipResult:
    path: Path
    first_us: int  # stamp of the first frame in the clip (a keyframe at or before from_us)
    last_us: int  # stamp of the last frame in the clip (the one showing at to_us)
    frames: int


def extract_clip(
    index: Index, camera: str, stream: str, from_us: int, to_us: int, out_path: Path | str
) -> ClipResult:
    """Remux the recorded frames covering [from_us, to_us] into one MP4 (faststart).

    The clip starts at the keyframe at or before from_us (or the first one after, when from_us
    falls in a gap) and ends with the frame showing at to_us. Its timestamps are the frames'
    stamps relative to the first. A clip is one stream: should the codec parameters change
    inside the range (a new camera configuration), it stops before the change.
    """
    if to_us < from_us:
        raise ClipError(f"clip ends before it starts: {from_us}..{to_us}")
    start = _start_keyframe(index, camera, stream, from_us)
    if start is None or start.stamp_us > to_us:
        raise ClipError(f"no recording of {camera}/{stream} between {from_us} and {to_us}")
    frames = index.frames_between(camera, stream, start.stamp_us, to_us)
    out_path = Path(out_path)
    part = out_path.with_name(out_path.name + ".part")
    try:
        with av.open(str(part), "w", format="mp4", options={"movflags": "+faststart"}) as out:
            included = _remux(out, frames)
        if not included:
            raise ClipError(f"the recording of {camera}/{stream} is unreadable at {start.path}")
        os.replace(part, out_path)
    except (OSError, av.FFmpegError) as exc:
        raise ClipError(f"cannot make a clip of {camera}/{stream}: {exc}") from exc
    finally:
        part.unlink(missing_ok=True)
    return ClipResult(out_path, included[0].stamp_us, included[-1].stamp_us, len(included))


def decode_frame_at(
    index: Index, camera: str, stream: str, stamp_us: int, tolerance_us: int = 0
) -> av.VideoFrame:
    """The recorded frame at `stamp_us` (or nearest within tolerance), decoded from its keyframe."""
    ref = index.frame_at(camera, stream, stamp_us, tolerance_us)
    if ref is None:
        raise ClipError(f"no recorded frame of {camera}/{stream} at {stamp_us}")
    try:
        with contextlib.closing(decode_from_keyframe(index, ref)) as frames:
            for pts, frame in frames:
                if pts == ref.pts:
                    return frame
    except (OSError, av.FFmpegError) as exc:
        raise ClipError(f"cannot read {ref.path}: {exc}") from exc
    raise ClipError(f"frame {ref.index_in_segment} (pts {ref.pts}) is not in {ref.path}")


def decode_from_keyframe(
    index: Index, ref: FrameRef
) -> Generator[tuple[int, av.VideoFrame], None, None]:
    """Decode `ref`'s segment from the keyframe at or before `ref`; yields (pts µs, frame)."""
    key = index.keyframe_at_or_before(ref.camera, ref.stream, ref.stamp_us)
    start = key.index_in_segment if key is not None and key.segment_id == ref.segment_id else 0
    return decode_segment(ref.path, start)


def decode_segment(
    path: Path, from_index: int = 0
) -> Generator[tuple[int, av.VideoFrame], None, None]:
    """Decode a segment file from its packet `from_index` (a keyframe); yields (pts µs, frame)."""
    with av.open(str(path)) as container:
        vs = container.streams.video[0]
        for i, packet in _packets(container, vs):
            if i >= from_index:
                for frame in vs.decode(packet):
                    yield _pts_us(frame), frame
        for frame in vs.decode(None):  # frames the decoder still holds
            yield _pts_us(frame), frame


def _start_keyframe(index: Index, camera: str, stream: str, from_us: int) -> FrameRef | None:
    key = index.keyframe_at_or_before(camera, stream, from_us)
    if key is not None:
        seg = index.segment(key.segment_id)
        if seg.end_us is None or seg.end_us > from_us:
            return key
    # from_us falls in a gap (or before the recording): start where recording resumes.
    return index.first_keyframe_after(camera, stream, from_us)


def _remux(out: av.container.OutputContainer, frames: list[FrameRef]) -> list[FrameRef]:
    """Mux the frames' packets from their segments; returns the frames it included."""
    included: list[FrameRef] = []
    first = frames[0].stamp_us
    out_stream: av.video.stream.VideoStream | None = None
    params: tuple[object, ...] = ()
    for _, group in itertools.groupby(frames, key=lambda f: f.segment_id):
        wanted = {f.index_in_segment: f for f in group}
        last = max(wanted)
        with av.open(str(wanted[last].path)) as inp:
            vs = inp.streams.video[0]
            ctx = vs.codec_context
            seg_params = (ctx.name, ctx.width, ctx.height, ctx.extradata)
            if out_stream is None:
                out_stream, params = out.add_stream_from_template(vs, time_base=US), seg_params
            elif seg_params != params:
                return included
            for i, packet in _packets(inp, vs):
                if i > last:
                    break
                ref = wanted.get(i)
                if ref is None:
                    continue
                duration = packet_duration_us(packet)
                packet.stream = out_stream
                packet.time_base = US
                packet.pts = packet.dts = ref.stamp_us - first
                packet.duration = duration
                out.mux_one(packet)
                included.append(ref)
    return included


def _packets(
    container: av.container.InputContainer, vs: av.video.stream.VideoStream
) -> Iterator[tuple[int, av.Packet[Any]]]:
    """A segment's packets numbered as the recorder wrote them; stops at a cut-off end."""
    numbered = (p for p in container.demux(vs) if p.size)
    try:
        yield from enumerate(numbered)
    except av.InvalidDataError:
        return  # the fragment being written (or cut by a crash) is incomplete


def _pts_us(frame: av.VideoFrame) -> int:
    if frame.pts is None or frame.time_base is None:
        raise ClipError("decoded frame without a timestamp")
    return round(frame.pts * frame.time_base * 1_000_000)
