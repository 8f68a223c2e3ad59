"""Scene loops encoded once to H.264 and cached on disk, ready to stream in a loop.

One render pass feeds every encoding of a camera (main, sub, degraded variants). A cache entry is
cache_dir/<key>/ holding, per encoding, the Annex-B stream and a JSON index; entries are written
to a temporary directory and renamed into place, and a lock file keeps concurrent processes from
encoding the same loop twice.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import hashlib
import json
import logging
import math
import os
import re
import shutil
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
import numpy.typing as npt
from av.video.codeccontext import VideoCodecContext

from fleet.rtsp.rtp import (
    NAL_AUD,
    NAL_IDR,
    NAL_PPS,
    NAL_SEI,
    NAL_SPS,
    START_CODE,
    join_annexb,
    nal_type,
    split_annexb,
)
from fleet.sim.scene import SceneRenderer, SceneSpec

log = logging.getLogger(__name__)

# Bump when the renderer's pixels, the encoder settings or the cache layout change.
FORMAT_VERSION = 2  # 2: scaled streams no longer have flat grey keyframes (see _scaled)

_DROPPED_NALS = frozenset({NAL_SEI, NAL_AUD})
PRESET = "veryfast"  # x264 speed/quality trade-off for every encoding
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


class EncodeError(RuntimeError):
    """Encodings that cannot be produced for a scene, or an encoder failure."""


@dataclass(frozen=True)
class StreamEncoding:
    name: str
    width: int
    height: int
    fps: float
    gop: int
    bitrate_kbps: int
    frame_step: int = 1  # 2: every 2nd rendered frame (a degraded half-fps variant)

    def __post_init__(self) -> None:
        if not _NAME.fullmatch(self.name):
            raise EncodeError(f"encoding name must be a plain file name: {self.name!r}")
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise EncodeError(
                f"{self.name}: size must be even and >= 16: {self.width}x{self.height}"
            )
        if not (self.fps > 0 and self.gop >= 1 and self.bitrate_kbps > 0 and self.frame_step >= 1):
            raise EncodeError(f"{self.name}: fps, gop, bitrate and frame_step must be positive")


@dataclass(frozen=True)
class AccessUnit:
    nals: tuple[bytes, ...]  # without start codes; SPS and PPS precede the slice of every IDR
    keyframe: bool


@dataclass(frozen=True)
class EncodedLoop:
    encoding: StreamEncoding
    sps: bytes
    pps: bytes
    units: tuple[AccessUnit, ...]

    @property
    def frame_duration_s(self) -> float:
        return 1.0 / self.encoding.fps

    @property
    def duration_s(self) -> float:
        return len(self.units) * self.frame_duration_s


# ---- H.264 byte-stream handling (plain code, no I/O) ----


def to_annexb(units: Sequence[AccessUnit]) -> bytes:
    return join_annexb(nal for unit in units for nal in unit.nals)


def access_unit(packet: bytes) -> AccessUnit:
    """An encoder packet as a stored unit: AUD and SEI dropped, keyframe = has an IDR slice."""
    nals = tuple(n for n in split_annexb(packet) if nal_type(n) not in _DROPPED_NALS)
    return AccessUnit(nals, any(nal_type(n) == NAL_IDR for n in nals))


def encoded_loop(encoding: StreamEncoding, units: Sequence[AccessUnit]) -> EncodedLoop:
    """Checks the loop starts on an IDR carrying SPS and PPS, and takes those from it."""
    if not units or not units[0].keyframe:
        raise EncodeError(f"{encoding.name}: loop does not start with an IDR")
    first = {nal_type(n): n for n in units[0].nals}
    if NAL_SPS not in first or NAL_PPS not in first:
        raise EncodeError(f"{encoding.name}: first unit lacks SPS/PPS")
    return EncodedLoop(encoding, first[NAL_SPS], first[NAL_PPS], tuple(units))


def cache_key(spec: SceneSpec, encodings: Sequence[StreamEncoding]) -> str:
    doc = {
        "format": FORMAT_VERSION,
        "spec": dataclasses.asdict(spec),
        "encodings": [dataclasses.asdict(e) for e in encodings],
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _index_doc(loop: EncodedLoop) -> tuple[bytes, dict[str, Any]]:
    """The Annex-B stream of a loop and its JSON index (offsets of every NAL)."""
    stream = to_annexb(loop.units)
    units, offset = [], 0
    for unit in loop.units:
        spans = []
        for nal in unit.nals:
            offset += len(START_CODE)
            spans.append([offset, len(nal)])
            offset += len(nal)
        units.append({"keyframe": unit.keyframe, "nals": spans})
    doc = {
        "format": FORMAT_VERSION,
        "encoding": dataclasses.asdict(loop.encoding),
        "size": len(stream),
        "sha256": hashlib.sha256(stream).hexdigest(),
        "units": units,
    }
    return stream, doc


def _loop_from_index(encoding: StreamEncoding, stream: bytes, doc: Any) -> EncodedLoop:
    """Rebuilds a loop from its stored stream and index; any inconsistency raises."""
    if doc["format"] != FORMAT_VERSION or doc["encoding"] != dataclasses.asdict(encoding):
        raise ValueError("index is for another format or encoding")
    if doc["size"] != len(stream) or doc["sha256"] != hashlib.sha256(stream).hexdigest():
        raise ValueError("stream does not match its index")
    units = []
    for unit in doc["units"]:
        nals = []
        for offset, length in unit["nals"]:
            if stream[offset - len(START_CODE) : offset] != START_CODE or length < 1:
                raise ValueError(f"no NAL unit at offset {offset}")
            nals.append(stream[offset : offset + length])
        units.append(AccessUnit(tuple(nals), bool(unit["keyframe"])))
    return encoded_loop(encoding, units)


# ---- encoding ----


def _check(spec: SceneSpec, encodings: Sequence[StreamEncoding]) -> None:
    if not encodings:
        raise EncodeError("no encodings requested")
    names = [e.name for e in encodings]
    if len(set(names)) != len(names):
        raise EncodeError(f"encoding names must be unique: {names}")
    for e in encodings:
        if not math.isclose(e.fps * e.frame_step, spec.fps, rel_tol=1e-9):
            raise EncodeError(
                f"{e.name}: fps {e.fps} must equal scene fps {spec.fps} / frame_step {e.frame_step}"
            )
        if spec.frame_count % e.frame_step:
            raise EncodeError(
                f"{e.name}: frame_step {e.frame_step} does not divide the loop's "
                f"{spec.frame_count} frames"
            )


def _open_encoder(e: StreamEncoding) -> VideoCodecContext:
    ctx = av.CodecContext.create("libx264", "w")
    ctx.width, ctx.height, ctx.pix_fmt = e.width, e.height, "yuv420p"
    rate = Fraction(e.fps).limit_denominator(1001)
    ctx.framerate, ctx.time_base = rate, 1 / rate
    ctx.bit_rate = e.bitrate_kbps * 1000
    ctx.gop_size, ctx.max_b_frames = e.gop, 0
    # PyAV defaults to slice threads (several slices per picture); frame threads are faster.
    # Either way x264's threaded output is not bit-identical between runs: the cache keeps it.
    ctx.thread_type = "FRAME"
    kbps = e.bitrate_kbps
    # Constrained baseline decodes everywhere (browsers' WebRTC included). Fixed GOPs with
    # in-band SPS/PPS let a client join at any keyframe; CBR-ish VBV like a real camera.
    ctx.options = {
        "preset": PRESET,
        "profile": "baseline",
        "x264-params": (
            f"keyint={e.gop}:min-keyint={e.gop}:scenecut=0:bframes=0:repeat-headers=1:"
            f"vbv-maxrate={kbps}:vbv-bufsize={kbps}"
        ),
    }
    ctx.open()
    return ctx


def _video_frame(*planes: npt.NDArray[np.uint8]) -> av.VideoFrame:
    """A yuv420p frame from Y, U, V planes (VideoFrame.from_ndarray is 10x slower)."""
    frame = av.VideoFrame(planes[0].shape[1], planes[0].shape[0], "yuv420p")
    for plane, data in zip(frame.planes, planes, strict=True):
        flat = np.frombuffer(memoryview(plane), np.uint8)
        rows = flat[: plane.line_size * plane.height].reshape(plane.height, plane.line_size)
        rows[:, : plane.width] = data
    return frame


def _scaled(frame: av.VideoFrame, width: int, height: int) -> av.VideoFrame:
    """`frame` resized, in buffers of its own: PyAV's reformat may hand out a buffer it reuses
    on its next call while x264 (frame threads) still reads it, which gave the scaled streams
    a flat grey keyframe every other GOP."""
    out = frame.reformat(width=width, height=height)
    return _video_frame(*(_plane_array(p) for p in out.planes))


def _plane_array(plane: av.video.plane.VideoPlane) -> npt.NDArray[np.uint8]:
    flat = np.frombuffer(memoryview(plane), np.uint8)
    return flat[: plane.line_size * plane.height].reshape(plane.height, plane.line_size)[
        :, : plane.width
    ]


def _access_units(packets: Iterable[av.Packet[Any]]) -> list[AccessUnit]:
    return [access_unit(bytes(p)) for p in packets]


def _encode(
    spec: SceneSpec,
    encodings: Sequence[StreamEncoding],
    progress: Callable[[int, int], None] | None,
) -> dict[str, EncodedLoop]:
    renderer = SceneRenderer(spec)
    encoders = [(e, _open_encoder(e)) for e in encodings]
    units: dict[str, list[AccessUnit]] = {e.name: [] for e in encodings}
    total = spec.frame_count
    for index in range(total):
        frame = _video_frame(*renderer.render(index))
        scaled = {(spec.width, spec.height): frame}
        for e, ctx in encoders:
            if index % e.frame_step:
                continue
            size = (e.width, e.height)
            if size not in scaled:
                scaled[size] = _scaled(frame, e.width, e.height)
            out = scaled[size]
            out.pts = index // e.frame_step
            units[e.name] += _access_units(ctx.encode(out))
        if progress is not None:
            progress(index + 1, total)
    loops = {}
    for e, ctx in encoders:
        units[e.name] += _access_units(ctx.encode(None))
        expected = total // e.frame_step
        if len(units[e.name]) != expected:
            raise EncodeError(f"{e.name}: encoder gave {len(units[e.name])} of {expected} frames")
        loops[e.name] = encoded_loop(e, units[e.name])
    return loops


# ---- the cache (file I/O) ----


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _load(entry: Path, encodings: Sequence[StreamEncoding]) -> dict[str, EncodedLoop] | None:
    """The cached loops, or None when the entry is missing or damaged."""
    if not entry.is_dir():
        return None
    try:
        return {
            e.name: _loop_from_index(
                e,
                (entry / f"{e.name}.h264").read_bytes(),
                json.loads((entry / f"{e.name}.json").read_text()),
            )
            for e in encodings
        }
    except (OSError, ValueError, KeyError, TypeError, IndexError, EncodeError) as exc:
        log.warning("cache entry %s is damaged (%s); encoding again", entry, exc)
        return None


def _store(entry: Path, loops: dict[str, EncodedLoop]) -> None:
    tmp = entry.with_name(f".{entry.name}.{os.getpid()}.{uuid.uuid4().hex}.tmp")
    tmp.mkdir()
    try:
        for name, loop in loops.items():
            stream, doc = _index_doc(loop)
            (tmp / f"{name}.h264").write_bytes(stream)
            (tmp / f"{name}.json").write_text(json.dumps(doc))
        if entry.exists():  # a damaged entry: move it aside first, renames are atomic
            stale = entry.with_name(f".{entry.name}.{uuid.uuid4().hex}.stale")
            entry.rename(stale)
            shutil.rmtree(stale, ignore_errors=True)
        tmp.rename(entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def encode_loops(
    spec: SceneSpec,
    encodings: Sequence[StreamEncoding],
    cache_dir: Path,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, EncodedLoop]:
    """The scene's loop in every encoding, by name: from the cache, or rendered and encoded once.

    `progress(done_frames, total_frames)` is called while rendering and encoding.
    """
    _check(spec, encodings)
    cache_dir.mkdir(parents=True, exist_ok=True)
    entry = cache_dir / cache_key(spec, encodings)
    with _locked(cache_dir / f".{entry.name}.lock"):
        loops = _load(entry, encodings)
        if loops is None:
            try:
                loops = _encode(spec, encodings, progress)
            except av.FFmpegError as exc:
                raise EncodeError(f"encoding failed: {exc}") from exc
            _store(entry, loops)
        return loops
