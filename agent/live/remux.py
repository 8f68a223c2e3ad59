"""One viewer's live stream, packet by packet (sans-IO): stamped packets in, fragmented MP4 out.

It starts at a keyframe. Packets follow one another by seq; after a gap (the viewer's queue
dropped packets because it fell behind, or the camera reconnected) it skips to the next keyframe,
since a P-frame without its references would not decode. The media timeline runs on the
packets' capture stamps and is kept gapless: across a skip it advances by one frame, so a
player never stalls at a hole in its buffer. A change of stream parameters (codec, size,
SPS/PPS) cannot go on in the same MP4: the stream ends there and the viewer reconnects.
"""

from __future__ import annotations

from agent.frames import StampedPacket, StreamInfo
from agent.live.fmp4 import FragmentedMp4, codec_string

DEFAULT_FRAME_US = 40_000  # a frame's duration when neither stamps nor the stream tell


class StreamChanged(Exception):
    """The stream's parameters changed: this MP4 cannot take the packet."""


def _params(info: StreamInfo) -> tuple[object, ...]:
    return info.codec, info.width, info.height, info.extradata


def follows(last: StampedPacket, sp: StampedPacket) -> bool:
    """`sp` comes right after `last`: nothing lost between them, same connection."""
    return sp.stamp.seq == last.stamp.seq + 1 and sp.info.generation == last.info.generation


class LiveRemux:
    def __init__(self) -> None:
        self._mp4: FragmentedMp4 | None = None
        self._params: tuple[object, ...] = ()
        self._last: StampedPacket | None = None  # the last packet muxed
        self._media_us = 0  # its time in the MP4
        self._frame_us = DEFAULT_FRAME_US  # the last interval between packets muxed
        self.codec: str | None = None  # RFC 6381, once the init segment is out
        self.skipped = 0  # packets left out waiting for a keyframe

    def feed(self, sp: StampedPacket) -> bytes:
        """The MP4 bytes this packet completes (b"" while waiting for a keyframe)."""
        last = self._last
        contiguous = last is not None and follows(last, sp)
        if not contiguous and not sp.keyframe:
            self.skipped += 1
            return b""
        if self._mp4 is None:
            self._start(sp)
        elif _params(sp.info) != self._params:
            raise StreamChanged(f"{sp.info.camera}/{sp.info.stream}: stream parameters changed")
        if last is not None:
            if contiguous:
                self._frame_us = sp.stamp.capture_us - last.stamp.capture_us
            self._media_us += self._frame_us
        self._last = sp
        assert self._mp4 is not None
        data = self._mp4.write(sp.packet, self._media_us, self._frame_us, sp.keyframe)
        if self.codec is None and data:
            self.codec = codec_string(data)
        return data

    def close(self) -> bytes:
        """The last fragment (a stream that ends for good)."""
        return self._mp4.close() if self._mp4 is not None else b""

    def _start(self, sp: StampedPacket) -> None:
        info = sp.info
        # The connection's copy of the codec parameters, else the demuxer's stream (as the
        # recorder does); None for a packet of no stream.
        template = info.template if info.template is not None else sp.packet.stream
        self._mp4 = FragmentedMp4(info, template)
        self._params = _params(info)
        if info.fps:
            self._frame_us = round(1_000_000 / info.fps)
