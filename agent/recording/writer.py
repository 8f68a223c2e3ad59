"""One segment file: a stream's own encoded packets remuxed into fragmented MP4, never re-encoded.

Fragmented MP4 (empty moov, a fragment per keyframe, flushed as it completes) plays in browsers
and ffprobe and survives a crash: everything up to the last complete fragment stays readable.
Files are opened through an `Opener`, the one place a test (or a quota layer) can step in.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import struct
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, BinaryIO

import av
import av.container
import av.stream

from agent.frames import StreamInfo

Opener = Callable[[Path], BinaryIO]

US = Fraction(1, 1_000_000)  # segment timestamps are µs from the segment's first stamp
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"


def open_exclusive(path: Path) -> BinaryIO:
    """Create a new segment file; never overwrite one (it is part of a hash chain)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # Unbuffered: PyAV's I/O layer already buffers, and a flushed fragment must reach the file.
    return path.open("xb", buffering=0)


class _HashingFile:
    """The segment file as the muxer sees it: write-only, so the muxer streams (fragmented MP4
    never needs to seek back), and every byte is hashed on its way in — the chain's file hash
    without reading the segment back at close."""

    def __init__(self, file: BinaryIO) -> None:
        self._file = file
        self.sha256 = hashlib.sha256()

    def write(self, data: bytes) -> int:
        n = self._file.write(data)
        if n is None or n >= len(data):  # None: a buffered file took it all
            self.sha256.update(data)
            return len(data)
        self.sha256.update(memoryview(data)[:n])  # a short write: what reached the file
        return n


def add_video_stream(
    out: av.container.OutputContainer, info: StreamInfo, template: av.stream.Stream | None
) -> av.stream.Stream:
    """The stream's track in `out`, in µs. The demuxer's stream carries the exact codec
    parameters (SPS/PPS); without one, PyAV takes them from the first keyframe's in-band
    parameter sets."""
    if template is not None:
        return out.add_stream_from_template(template, time_base=US)
    return out.add_mux_stream(info.codec, width=info.width, height=info.height, time_base=US)


def mux_packet(
    out: av.container.OutputContainer,
    stream: av.stream.Stream,
    packet: av.Packet[Any],
    pts_us: int,
    duration_us: int,
    keyframe: bool,
) -> None:
    """Mux `packet` into `stream` with the capture timing, through a view on the same bytes: the
    consumers' shared packet keeps its own timestamps."""
    view = av.Packet(packet)  # type: ignore[arg-type]  # any buffer works; the stub says bytes
    view.stream = stream
    view.time_base = US
    view.pts = view.dts = pts_us
    view.duration = duration_us
    view.is_keyframe = keyframe
    out.mux_one(view)


class SegmentWriter:
    """Writes one segment; `confirmed` counts the packets known to be in the file, `sha256` is
    the file's hash once closed."""

    def __init__(
        self, path: Path, info: StreamInfo, template: av.stream.Stream | None, opener: Opener
    ) -> None:
        self.path = path
        self.written = 0
        self.confirmed = 0
        self._file = opener(path)
        self._hashing = _HashingFile(self._file)
        try:
            self._out: av.container.OutputContainer = av.open(
                self._hashing,
                "w",
                format="mp4",
                options={"movflags": MOVFLAGS, "flush_packets": "1"},
            )
            self._stream = add_video_stream(self._out, info, template)
        except BaseException:
            self._file.close()
            raise

    def write(self, packet: av.Packet[Any], pts_us: int, duration_us: int, keyframe: bool) -> None:
        mux_packet(self._out, self._stream, packet, pts_us, duration_us, keyframe)
        if keyframe:
            # frag_keyframe: muxing a keyframe wrote out the fragment before it.
            self.confirmed = self.written
        self.written += 1

    def close(self) -> None:
        self._out.close()
        self._file.close()
        self.confirmed = self.written

    @property
    def sha256(self) -> str:
        """SHA-256 of everything written to the file (complete once closed)."""
        return self._hashing.sha256.hexdigest()

    def abort(self) -> None:
        """Close after a failed write; what reached the file stays, nothing more is confirmed."""
        with contextlib.suppress(Exception):
            self._out.close()
        with contextlib.suppress(Exception):
            self._file.close()


def packet_duration_us(packet: av.Packet[Any]) -> int | None:
    """The demuxer's duration of a packet in µs, if it gave one."""
    if not packet.duration or packet.time_base is None:
        return None
    return round(packet.duration * packet.time_base * 1_000_000)


def cut_incomplete_fragment(path: Path) -> int:
    """Cut a crashed or failed segment after its last complete box; returns the new size.

    A fragment is a moof box and the mdat after it: a file ending inside a box, or with a moof
    whose mdat is missing, loses that tail, so the file plays cleanly again.
    """
    with path.open("r+b") as f:
        size = os.fstat(f.fileno()).st_size
        pos = good = 0
        while pos + 8 <= size:
            f.seek(pos)
            head = f.read(16)
            box_size, kind = struct.unpack(">I4s", head[:8])
            if box_size == 1 and len(head) == 16:  # a 64-bit size follows the type
                box_size = struct.unpack(">Q", head[8:])[0]
            if box_size < 8 or pos + box_size > size:
                break
            pos += box_size
            if kind != b"moof":
                good = pos
        f.truncate(good)
    return good


def count_readable_packets(path: Path) -> int:
    """How many packets of a (possibly truncated) segment file can be read back."""
    count = 0
    try:
        with av.open(str(path)) as container:
            for packet in container.demux(container.streams.video[0]):
                count += packet.size > 0
    except (av.FFmpegError, OSError, IndexError):
        pass  # a crash cut the file: what was read so far is what there is
    return count
