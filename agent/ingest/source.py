"""The PyAV edge of ingest: open one RTSP stream, hand out its video packets, say why it failed.

What was measured here (PyAV 18.1 wheels, which bundle their own FFmpeg, libavformat 62):

- Opening with FFmpeg's default probing buffers ~2 s of packets (28 at 15 fps) inside
  `avformat_find_stream_info` before the first one is returned. `analyzeduration=0` and
  `probesize=32` cut that to the first packet, with codec, size and rate still known (from the
  SDP's sprop-parameter-sets): faster reconnects and arrival times closer to the wire.
- Keep-alive: FFmpeg's RTSP demuxer sends GET_PARAMETER (OPTIONS when the server's Public
  header lacks it) every half of the session timeout the server announced (60 s when it
  announces none), from inside `av_read_frame`. Checked against the simulator with a 2 s session
  timeout, TCP and UDP: a request every ~1 s, the session never expired. So the profile's
  keep-alive is honoured as long as packets are being read; nothing is reimplemented here.
- Silence: a container cannot be closed safely from another thread while a read blocks in it,
  and PyAV does not expose FFmpeg's interrupt callback to Python. PyAV's own read timeout
  (`av.open(timeout=(open_s, read_s))`) is that callback: it aborts a read that has waited
  `read_s` (ExitError). The H.264 parser holds the last frame until the next one starts, so on a
  stall the first timeout flushes that frame and the second raises: silence is reported about
  2 x `read_s` after the last data arrived (measured 2.0 s for 1 s, 6.0 s for 3 s).
- A silent or garbage-speaking server fails the open with InvalidDataError once the open timeout
  has passed; a refused port fails at once (ConnectionRefusedError).
- Packets are Annex-B; parameter-set changes inside the stream are not reflected in the stream's
  codec parameters (checked with two concatenated encodes of different sizes), so they are
  detected here from the SPS/PPS that cameras repeat before each keyframe.
"""

from __future__ import annotations

import contextlib
import errno
import io
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Literal, Protocol
from urllib.parse import urlsplit

import av
import av.stream
from av.container import InputContainer
from av.video.stream import VideoStream

from fleet.rtsp.rtp import join_annexb

FailureKind = Literal["unreachable", "timeout", "protocol", "stall", "corrupt", "lost"]
# Failures where the camera did not answer at all: worth probing for its return.
UNREACHABLE_KINDS: frozenset[FailureKind] = frozenset({"unreachable", "timeout"})

_UNREACHABLE_ERRNOS = {errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN}
# Only the first packet is probed; the SDP already gives codec, size and rate.
FAST_OPEN_OPTIONS = {"analyzeduration": "0", "probesize": "32"}
DEFAULT_RTSP_PORT = 554


class SourceError(Exception):
    """Why a stream could not be opened or read. `corrupt` leaves the source usable."""

    def __init__(self, kind: FailureKind, message: str) -> None:
        super().__init__(f"{kind}: {message}")
        self.kind: FailureKind = kind
        self.message = message


@dataclass(frozen=True, slots=True)
class StreamParams:
    """What the demuxer says about the video stream (StreamInfo without camera or generation)."""

    codec: str
    width: int
    height: int
    time_base: Fraction
    extradata: bytes | None
    fps: float | None
    template: av.stream.Stream | None = field(default=None, compare=False, repr=False)


class PacketSource(Protocol):
    """One connection to one stream. Not thread-safe: one thread opens, reads and closes."""

    def open(
        self, url: str, transport: str, open_timeout_s: float, read_timeout_s: float
    ) -> StreamParams: ...

    def read(self) -> av.Packet[Any]:
        """The next video packet; raises SourceError (kind "corrupt": try reading again)."""
        ...

    @property
    def params(self) -> StreamParams:
        """Current parameters: a new object when they changed mid-stream."""
        ...

    def close(self) -> None: ...


def parameter_sets(codec: str, data: bytes) -> tuple[bytes, ...]:
    """The VPS/SPS/PPS NAL units ahead of the first slice of an Annex-B access unit."""
    if codec == "h264":
        params, first_vcl, vcl_end, shift, mask = {7, 8}, 1, 6, 0, 0x1F
    elif codec in ("hevc", "h265"):
        params, first_vcl, vcl_end, shift, mask = {32, 33, 34}, 0, 32, 1, 0x3F
    else:
        return ()
    found: list[bytes] = []
    start = data.find(b"\x00\x00\x01")
    while 0 <= start < len(data) - 3:
        begin = start + 3
        kind = (data[begin] >> shift) & mask
        if first_vcl <= kind < vcl_end:
            break
        start = data.find(b"\x00\x00\x01", begin)
        if kind in params:
            # NAL units never end in 0x00: trailing zeros belong to a 4-byte start code.
            found.append(data[begin : start if start >= 0 else len(data)].rstrip(b"\x00"))
    return tuple(found)


def detached_template(stream: av.stream.Stream) -> av.stream.Stream:
    """A copy of a demuxer stream's codec parameters that stays valid after its container is
    closed: a stream of a private output container that is never written (and that the copy
    keeps alive). A closed demuxer's own stream crashes a muxer that copies from it."""
    holder = av.open(io.BytesIO(), "w", format="mp4")
    return holder.add_stream_from_template(stream)


def tcp_reachable(url: str, timeout_s: float = 0.5) -> bool:
    """Whether the URL's host accepts a TCP connection on its RTSP port (a cheap liveness probe)."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port or DEFAULT_RTSP_PORT
    except ValueError:
        return False
    if not host:
        return False
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return True
    except OSError:
        return False


def _describe(exc: BaseException) -> str:
    # strerror, not str(): PyAV's message repeats the URL, credentials included.
    text = getattr(exc, "strerror", None) or type(exc).__name__
    return str(text)


def _open_failure(exc: BaseException, elapsed_s: float, timeout_s: float) -> SourceError:
    code = getattr(exc, "errno", None)
    if code in _UNREACHABLE_ERRNOS or isinstance(exc, ConnectionRefusedError):
        return SourceError("unreachable", _describe(exc))
    if isinstance(exc, (av.error.ExitError, TimeoutError)) or elapsed_s >= timeout_s:
        # A silent server surfaces as InvalidDataError once the open timeout interrupts it.
        return SourceError("timeout", f"no stream within {timeout_s:g} s ({_describe(exc)})")
    return SourceError("protocol", _describe(exc))


def _read_failure(exc: BaseException, read_timeout_s: float) -> SourceError:
    if isinstance(exc, (av.error.ExitError, TimeoutError)):
        return SourceError("stall", f"no packet for {read_timeout_s:g} s")
    if isinstance(exc, av.error.InvalidDataError):
        return SourceError("corrupt", _describe(exc))
    return SourceError("lost", _describe(exc))


class PyAVSource:
    """PacketSource over `av.open`; see the module docstring for the options and why."""

    def __init__(self) -> None:
        self._container: InputContainer | None = None
        self._stream: VideoStream | None = None
        self._packets: Iterator[av.Packet[Any]] = iter(())
        self._pending: av.Packet[Any] | None = None
        self._params: StreamParams | None = None
        self._sets: tuple[bytes, ...] = ()
        self._read_timeout_s = 0.0

    @property
    def params(self) -> StreamParams:
        if self._params is None:
            raise SourceError("protocol", "not open")
        return self._params

    def open(
        self, url: str, transport: str, open_timeout_s: float, read_timeout_s: float
    ) -> StreamParams:
        options = {
            "rtsp_transport": transport,
            # FFmpeg's socket I/O timeout (µs); PyAV's timeout below also bounds the whole open.
            "timeout": str(round(open_timeout_s * 1_000_000)),
            **FAST_OPEN_OPTIONS,
        }
        started = time.monotonic()
        try:
            self._container = av.open(
                url,
                "r",
                options=options,
                # Camera SDPs are not always UTF-8; a session name must not fail the stream.
                metadata_errors="replace",
                timeout=(open_timeout_s, read_timeout_s),
            )
            if not self._container.streams.video:
                raise SourceError("protocol", "no video stream")
            self._stream = self._container.streams.video[0]
            self._read_timeout_s = read_timeout_s
            self._params = self._initial_params(self._stream)
            self._packets = self._container.demux(self._stream)
            # The first packet makes the open complete: a keyframe's in-band parameter sets
            # correct the SDP's before anyone sees them.
            self._pending = self._next()
        except SourceError:
            self.close()
            raise
        except (av.FFmpegError, OSError) as exc:
            self.close()
            raise _open_failure(exc, time.monotonic() - started, open_timeout_s) from None
        return self._params

    def read(self) -> av.Packet[Any]:
        if self._pending is not None:
            packet, self._pending = self._pending, None
            return packet
        return self._next()

    def close(self) -> None:
        if self._container is not None:
            container, self._container = self._container, None
            # Sends TEARDOWN; when the connection is already gone there is nothing to release.
            with contextlib.suppress(av.FFmpegError, OSError):
                container.close()
        self._stream, self._pending, self._packets = None, None, iter(())

    def _initial_params(self, stream: VideoStream) -> StreamParams:
        ctx = stream.codec_context
        extradata = bytes(ctx.extradata) if ctx.extradata else None
        self._sets = parameter_sets(ctx.name, extradata or b"")
        rate = stream.average_rate
        return StreamParams(
            codec=ctx.name,
            width=ctx.width,
            height=ctx.height,
            time_base=stream.time_base or Fraction(1, 90_000),
            extradata=extradata,
            fps=float(rate) if rate else None,
            template=detached_template(stream),
        )

    def _next(self) -> av.Packet[Any]:
        while True:
            try:
                packet = next(self._packets)
            except StopIteration:
                raise SourceError("lost", "the stream ended") from None
            except av.error.InvalidDataError as exc:
                # A generator that raised is finished; demux again from where the demuxer is.
                if self._container is not None and self._stream is not None:
                    self._packets = self._container.demux(self._stream)
                raise _read_failure(exc, self._read_timeout_s) from None
            except (av.FFmpegError, OSError) as exc:
                raise _read_failure(exc, self._read_timeout_s) from None
            if packet.size == 0:
                continue  # demux's flush packets after end of stream; StopIteration follows
            if packet.is_keyframe:
                self._check_parameters(packet)
            return packet

    def _check_parameters(self, packet: av.Packet[Any]) -> None:
        params = self.params
        sets = parameter_sets(params.codec, bytes(packet))
        if not sets or sets == self._sets:
            return
        self._sets = sets
        size = _decoded_size(params.codec, packet)
        width, height = size or (params.width, params.height)
        self._params = replace(params, extradata=join_annexb(sets), width=width, height=height)


def _decoded_size(codec: str, packet: av.Packet[Any]) -> tuple[int, int] | None:
    """Size of a keyframe, by decoding it alone: only when its parameter sets changed."""
    try:
        ctx = av.CodecContext.create(codec, "r")
        if not isinstance(ctx, av.VideoCodecContext):
            return None
        frames = [*ctx.decode(packet), *ctx.decode(None)]
    except (av.FFmpegError, ValueError):
        return None
    return (frames[0].width, frames[0].height) if frames else None
