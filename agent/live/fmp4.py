"""A stream's own H.264 packets as a live fragmented MP4, never re-encoded: an init segment (ftyp
and an empty moov), then a fragment (moof + mdat) per frame, as bytes for a browser's Media
Source Extensions or any player.

Muxed as the recorder's segments are (agent/recording/writer.py), but built for latency: a
fragment per frame, not per keyframe. The mp4 muxer writes a frame's fragment as the next frame
comes in, so the bytes run one frame behind the camera.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from typing import Any

import av
import av.container
import av.stream

from agent.frames import StreamInfo
from agent.recording.writer import add_video_stream, mux_packet

MOVFLAGS = "empty_moov+default_base_moof+frag_every_frame"


class CodecStringError(ValueError):
    """An init segment without an H.264 track to name."""


class _Sink:
    """What the muxer writes to: its bytes, until taken."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def write(self, data: bytes) -> int:
        self._chunks.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        data = b"".join(self._chunks)
        self._chunks.clear()
        return data


class FragmentedMp4:
    """Packets in, bytes out: the first `write` returns the init segment (and then fragments)."""

    def __init__(self, info: StreamInfo, template: av.stream.Stream | None) -> None:
        self._sink = _Sink()
        self._out: av.container.OutputContainer = av.open(
            self._sink, "w", format="mp4", options={"movflags": MOVFLAGS, "flush_packets": "1"}
        )
        self._stream = add_video_stream(self._out, info, template)  # as the recorder does

    def write(self, packet: av.Packet[Any], pts_us: int, duration_us: int, keyframe: bool) -> bytes:
        mux_packet(self._out, self._stream, packet, pts_us, duration_us, keyframe)
        return self._sink.take()

    def close(self) -> bytes:
        """The last fragment."""
        self._out.close()
        return self._sink.take()


def codec_string(init: bytes) -> str:
    """The RFC 6381 codec of the H.264 track in an MP4 init segment, e.g. "avc1.64001f": the
    sample entry's type, then profile, constraint flags and level from its avcC box."""
    path = (b"moov", b"trak", b"mdia", b"minf", b"stbl", b"stsd")
    start, end = 0, len(init)
    for kind in path:
        start, end = _child(init, start, end, {kind})[1:]
    start += 8  # stsd: version, flags, entry count
    entry, start, end = _child(init, start, end, {b"avc1", b"avc3"})
    start += 78  # VisualSampleEntry fields before its boxes
    _, start, end = _child(init, start, end, {b"avcC"})
    if end - start < 4:
        raise CodecStringError("avcC box too short")
    profile, flags, level = init[start + 1 : start + 4]
    return f"{entry.decode()}.{profile:02x}{flags:02x}{level:02x}"


def _child(data: bytes, start: int, end: int, kinds: set[bytes]) -> tuple[bytes, int, int]:
    """The first box of one of `kinds` in data[start:end]: its type, body start, end."""
    for kind, body, box_end in _boxes(data, start, end):
        if kind in kinds:
            return kind, body, box_end
    names = "/".join(k.decode() for k in sorted(kinds))
    raise CodecStringError(f"no {names} box in the init segment (not H.264?)")


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        header = 8
        if size == 1 and pos + 16 <= end:  # a 64-bit size follows the type
            size, header = struct.unpack_from(">Q", data, pos + 8)[0], 16
        elif size == 0:  # to the end of the enclosing box
            size = end - pos
        if size < header or pos + size > end:
            raise CodecStringError(f"truncated {kind!r} box in the init segment")
        yield kind, pos + header, pos + size
        pos += size
