"""Fan-out of one stream: every consumer sees the same stamped packets, decoded at most once.

`publish` runs on the ingest thread and never blocks: it only appends to per-consumer queues
(consumer.py) and, when someone wants pictures, to the stream's decode queue. Decoding happens
in one worker thread per stream, so a slow decode never holds up ingest or recording; when the
worker falls `decode_queue` packets behind it drops its backlog and resumes at the next
keyframe (P-frames cannot be decoded without their references), counting what it skipped.

Frame consumers may ask for `max_fps` (decimated after decoding, by stamp time, so every packet
of the GOP is still decoded) or `keyframes_only`; when every frame consumer is keyframe-only,
only keyframes are decoded (`skip_frame = "NONKEY"`).
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol, overload

import av

from agent.fanout.consumer import Consumer, ConsumerError, ConsumerStats, Policy
from agent.frames import StampedPacket, StreamInfo

log = logging.getLogger("camfleet.agent.fanout")

DecodedFrame = tuple[StampedPacket, av.VideoFrame]
DEFAULT_MAXSIZE = 64
DEFAULT_DECODE_QUEUE = 64
_PENDING_LIMIT = 32  # packets a decoder may hold back (reordering) before we forget them


class HubError(ConsumerError):
    """A subscription the hub cannot make."""


class Decoder(Protocol):
    def decode(self, packet: av.Packet[Any]) -> list[av.VideoFrame]: ...


DecoderFactory = Callable[[StreamInfo, bool], Decoder]  # (info, keyframes_only)


class PyAVDecoder:
    """A codec context for one generation of a stream."""

    def __init__(self, info: StreamInfo, keyframes_only: bool) -> None:
        ctx = av.CodecContext.create(info.codec, "r")
        if not isinstance(ctx, av.VideoCodecContext):
            raise HubError(f"{info.camera}/{info.stream}: {info.codec!r} is not a video codec")
        if info.extradata:
            ctx.extradata = info.extradata
        if keyframes_only:
            ctx.skip_frame = "NONKEY"
        self._ctx = ctx

    def decode(self, packet: av.Packet[Any]) -> list[av.VideoFrame]:
        return self._ctx.decode(packet)


class Decimator:
    """Admits frames at most `max_fps`, judged by capture stamps (not by when they arrive)."""

    _TOLERANCE_US = 1_000  # stamps are whole µs: 1/15 s three times is not exactly 0.2 s

    def __init__(self, max_fps: float | None) -> None:
        if max_fps is not None and not max_fps > 0:
            raise HubError(f"max_fps must be > 0, got {max_fps}")
        self._gap_us = None if max_fps is None else 1_000_000 / max_fps
        self._last_us: int | None = None

    def admit(self, capture_us: int) -> bool:
        if self._gap_us is None:
            return True
        if self._last_us is not None and capture_us - self._last_us < self._gap_us - (
            self._TOLERANCE_US
        ):
            return False
        self._last_us = capture_us
        return True


@dataclass(frozen=True, slots=True)
class DecoderStats:
    decoded: int  # packets fed to a decoder: at most one decode per packet
    frames: int
    errors: int
    skipped: int  # packets not decoded: backlog dropped, or waiting for a keyframe
    depth: int
    keyframes_only: bool


@dataclass(frozen=True, slots=True)
class HubStats:
    consumers: tuple[ConsumerStats, ...]
    decoder: DecoderStats | None  # None until someone wants frames


@dataclass(frozen=True, slots=True)
class _FrameSubscription:
    consumer: Consumer[DecodedFrame]
    keyframes_only: bool
    decimator: Decimator


class _DecodeWorker:
    def __init__(
        self,
        name: str,
        factory: DecoderFactory,
        deliver: Callable[[StampedPacket, av.VideoFrame], None],
        queue_size: int,
    ) -> None:
        self._factory, self._deliver, self._queue_size = factory, deliver, queue_size
        self._queue: deque[StampedPacket] = deque()
        self._ready = threading.Condition(threading.Lock())
        self._closed = False
        self._active = False  # some frame consumer is subscribed
        self._keyframes_only = False
        self._need_keyframe = True  # the next packet decoded must start a GOP
        self._decoded = self._frames = self._errors = self._skipped = 0
        self._thread = threading.Thread(target=self._run, name=f"decode-{name}", daemon=True)
        self._thread.start()

    def configure(self, active: bool, keyframes_only: bool) -> None:
        with self._ready:
            self._active, self._keyframes_only = active, keyframes_only

    def submit(self, sp: StampedPacket) -> None:
        """Queue a packet for decoding (ingest thread); never blocks."""
        with self._ready:
            if self._closed or not self._active or (self._keyframes_only and not sp.keyframe):
                self._need_keyframe = True  # a packet the decoder misses breaks its GOP
                return
            if len(self._queue) >= self._queue_size:
                self._skipped += len(self._queue)
                self._queue.clear()
                self._need_keyframe = True
            if self._need_keyframe and not sp.keyframe:
                self._skipped += 1
                return
            self._need_keyframe = False
            self._queue.append(sp)
            self._ready.notify()

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()
        if self._thread is not threading.current_thread():
            self._thread.join()

    def stats(self) -> DecoderStats:
        with self._ready:
            return DecoderStats(
                decoded=self._decoded,
                frames=self._frames,
                errors=self._errors,
                skipped=self._skipped,
                depth=len(self._queue),
                keyframes_only=self._keyframes_only,
            )

    def _take(self) -> tuple[StampedPacket, bool] | None:
        with self._ready:
            self._ready.wait_for(lambda: self._queue or self._closed)
            if self._closed:
                return None
            return self._queue.popleft(), self._keyframes_only

    def _run(self) -> None:
        decoder: Decoder | None = None
        decoding: tuple[int, bool] | None = None  # (generation, keyframes_only) of `decoder`
        # Packets by pts until their frame comes out: a decoder may return an earlier
        # packet's frame, and the frame must keep that packet's stamp.
        pending: dict[int | None, StampedPacket] = {}
        while (taken := self._take()) is not None:
            sp, keyframes_only = taken
            if decoder is None or decoding != (sp.info.generation, keyframes_only):
                if not sp.keyframe:
                    with self._ready:
                        self._skipped += 1
                    continue
                pending.clear()
                try:
                    decoder = self._factory(sp.info, keyframes_only)
                except (av.FFmpegError, ValueError) as exc:
                    decoder = None
                    self._failed(sp, exc)
                    continue
                decoding = (sp.info.generation, keyframes_only)
            pending[sp.pts] = sp
            if len(pending) > _PENDING_LIMIT:
                del pending[next(iter(pending))]
            try:
                frames = decoder.decode(sp.packet)
            except (av.FFmpegError, ValueError) as exc:
                decoder = None
                self._failed(sp, exc)
                continue
            with self._ready:
                self._decoded += 1
                self._frames += len(frames)
            for frame in frames:
                self._deliver(pending.pop(frame.pts, sp), frame)

    def _failed(self, sp: StampedPacket, exc: Exception) -> None:
        """Count a decode failure; decoding restarts at the next keyframe with a new decoder."""
        log.warning("%s/%s: decode failed: %s", sp.info.camera, sp.info.stream, exc)
        with self._ready:
            self._errors += 1


class StreamHub:
    """Per stream: consumers subscribe, ingest publishes."""

    def __init__(
        self,
        name: str = "stream",
        decoder_factory: DecoderFactory = PyAVDecoder,
        decode_queue: int = DEFAULT_DECODE_QUEUE,
    ) -> None:
        if decode_queue < 1:
            raise HubError(f"decode_queue must be >= 1, got {decode_queue}")
        self.name = name
        self._decoder_factory, self._decode_queue = decoder_factory, decode_queue
        self._lock = threading.Lock()
        # Replaced, never mutated: publish reads them without taking the lock.
        self._packet_subs: tuple[Consumer[StampedPacket], ...] = ()
        self._frame_subs: tuple[_FrameSubscription, ...] = ()
        self._worker: _DecodeWorker | None = None
        self._closed = False

    @overload
    def subscribe(
        self,
        name: str,
        policy: Policy = ...,
        maxsize: int = ...,
        wants_frames: Literal[False] = ...,
        *,
        wakeup: threading.Event | None = ...,
    ) -> Consumer[StampedPacket]: ...

    @overload
    def subscribe(
        self,
        name: str,
        policy: Policy = ...,
        maxsize: int = ...,
        *,
        wants_frames: Literal[True],
        max_fps: float | None = ...,
        keyframes_only: bool = ...,
        wakeup: threading.Event | None = ...,
    ) -> Consumer[DecodedFrame]: ...

    def subscribe(
        self,
        name: str,
        policy: Policy = "drop_oldest",
        maxsize: int = DEFAULT_MAXSIZE,
        wants_frames: bool = False,
        *,
        max_fps: float | None = None,
        keyframes_only: bool = False,
        wakeup: threading.Event | None = None,
    ) -> Consumer[StampedPacket] | Consumer[DecodedFrame]:
        """A consumer of stamped packets or, with `wants_frames`, of (packet, frame) pairs.

        `wakeup` is set whenever an item is queued, so one thread can wait on many consumers.
        """
        if not wants_frames and (max_fps is not None or keyframes_only):
            raise HubError(f"{name}: max_fps and keyframes_only need wants_frames=True")
        with self._lock:
            if self._closed:
                raise HubError(f"{self.name}: hub is closed")
            if name in (c.name for c in self._consumers()):
                raise HubError(f"{self.name}: a consumer named {name!r} exists")
            if not wants_frames:
                packets: Consumer[StampedPacket] = Consumer(
                    name, policy, maxsize, self._unsubscribe, wakeup
                )
                self._packet_subs = (*self._packet_subs, packets)
                return packets
            frames: Consumer[DecodedFrame] = Consumer(
                name, policy, maxsize, self._unsubscribe, wakeup
            )
            self._frame_subs = (
                *self._frame_subs,
                _FrameSubscription(frames, keyframes_only, Decimator(max_fps)),
            )
            if self._worker is None:
                self._worker = _DecodeWorker(
                    self.name, self._decoder_factory, self._fan_out_frame, self._decode_queue
                )
            self._configure_worker()
            return frames

    def publish(self, sp: StampedPacket) -> None:
        """Hand a packet to every consumer; never blocks, never decodes on this thread."""
        for consumer in self._packet_subs:
            consumer.offer(sp)
        worker = self._worker
        if worker is not None:
            worker.submit(sp)

    def stats(self) -> HubStats:
        worker = self._worker
        return HubStats(
            consumers=tuple(c.stats() for c in self._consumers()),
            decoder=worker.stats() if worker is not None else None,
        )

    def close(self) -> None:
        """End of stream: close every consumer (they can still drain) and stop decoding."""
        with self._lock:
            self._closed = True
            consumers = self._consumers()
            worker, self._worker = self._worker, None
        for consumer in consumers:
            consumer.close()
        if worker is not None:
            worker.close()

    def _consumers(self) -> tuple[Consumer[Any], ...]:
        return (*self._packet_subs, *(f.consumer for f in self._frame_subs))

    def _fan_out_frame(self, sp: StampedPacket, frame: av.VideoFrame) -> None:
        for sub in self._frame_subs:
            if (sub.keyframes_only and not sp.keyframe) or not sub.decimator.admit(
                sp.stamp.capture_us
            ):
                sub.consumer.skip()
            else:
                sub.consumer.offer((sp, frame))

    def _unsubscribe(self, consumer: Consumer[StampedPacket] | Consumer[DecodedFrame]) -> None:
        with self._lock:
            self._packet_subs = tuple(c for c in self._packet_subs if c is not consumer)
            self._frame_subs = tuple(f for f in self._frame_subs if f.consumer is not consumer)
            self._configure_worker()

    def _configure_worker(self) -> None:
        if self._worker is not None:
            self._worker.configure(
                active=bool(self._frame_subs),
                keyframes_only=bool(self._frame_subs)
                and all(f.keyframes_only for f in self._frame_subs),
            )
