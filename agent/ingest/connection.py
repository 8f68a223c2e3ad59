"""One camera stream's only connection: connect, stamp every packet at arrival, hand it on,
notice loss and silence, reconnect with backoff, and report what happened.

Runs in its own thread. Loss handling, decided here:
- EOF, reset and other read errors end the connection at once ("lost").
- Silence: the source's read timeout (`stall_timeout_s`) ends it ("stall"); see source.py for
  why that is an interrupt inside the read and not a watchdog closing the container.
- Corrupt data (InvalidDataError while reading) is skipped and counted; only `corrupt_limit`
  corrupt reads in a row, with no good packet between them, end the connection. A camera that
  hiccups keeps its stream; one that sends only garbage is reconnected.
Every loss opens a gap (`on_gap_start(reason, last_capture_us)`, None when nothing was stamped
yet) that the first stamped packet afterwards closes (`on_gap_end(first_capture_us)`), so the
recorder can write down every gap with its reason.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import av

from agent.frames import Stamp, StampedPacket, StreamInfo
from agent.ingest.backoff import PROBE_INTERVAL_S, Backoff, ConnectionState, ConnectionStatus
from agent.ingest.source import (
    UNREACHABLE_KINDS,
    PacketSource,
    PyAVSource,
    SourceError,
    StreamParams,
    tcp_reachable,
)
from fleet.profiles import FirmwareProfile, StreamKind
from fleet.utc import now_us

log = logging.getLogger("camfleet.agent.ingest")

GapStart = Callable[[str, int | None], None]
GapEnd = Callable[[int], None]

DEFAULT_STALL_TIMEOUT_S = 2.0  # silence is reported ~2x this after the last data (source.py)
DEFAULT_CORRUPT_LIMIT = 10


class IngestError(ValueError):
    """A stream connection that cannot be set up as asked."""


class StampSource(Protocol):
    """What ingest needs from the stamper (agent.stamping.stamper.Stamper fits)."""

    def stamp(
        self, pts: int | None, time_base: Fraction, arrival_us: int, synced: bool
    ) -> Stamp: ...

    def reset(self) -> None: ...


class WallClock(Protocol):
    def now_us(self) -> int:
        """UTC epoch microseconds."""
        ...

    def synced(self) -> bool:
        """Whether the clock is known to be synchronised (NTP)."""
        ...


class SystemClock:
    """The host clock; `synced` is whatever the caller knows (unknown counts as unsynced)."""

    def __init__(self, synced: Callable[[], bool] = lambda: False) -> None:
        self._synced = synced

    def now_us(self) -> int:
        return now_us()

    def synced(self) -> bool:
        return self._synced()


@dataclass(frozen=True, slots=True)
class ConnectionStats:
    camera: str
    stream: str
    state: ConnectionState
    reason: str
    since_us: int
    generation: int
    reconnects: int  # connection attempts after the first
    packets: int
    bytes: int
    corrupt: int  # corrupt reads skipped plus packets the demuxer flagged corrupt
    stalls: int
    last_packet_at_us: int | None


class StreamConnection:
    def __init__(
        self,
        camera: str,
        stream: StreamKind,
        url: str,
        profile: FirmwareProfile,
        stamper: StampSource,
        on_packet: Callable[[StampedPacket], None],
        source_factory: Callable[[], PacketSource] = PyAVSource,
        clock: WallClock | None = None,
        *,
        on_gap_start: GapStart | None = None,
        on_gap_end: GapEnd | None = None,
        backoff: Backoff | None = None,
        stall_timeout_s: float = DEFAULT_STALL_TIMEOUT_S,
        open_timeout_s: float | None = None,
        corrupt_limit: int = DEFAULT_CORRUPT_LIMIT,
        reachable: Callable[[str], bool] = tcp_reachable,
        probe_interval_s: float = PROBE_INTERVAL_S,
    ) -> None:
        stream_profile = {"main": profile.main, "sub": profile.sub}.get(stream)
        if stream_profile is None:
            raise IngestError(f"{camera}: profile {profile.name} has no {stream!r} stream")
        if stall_timeout_s <= 0 or corrupt_limit < 1 or probe_interval_s <= 0:
            raise IngestError(
                f"{camera}/{stream}: stall timeout and probe interval must be > 0 and the "
                f"corrupt limit >= 1, got {stall_timeout_s}, {probe_interval_s}, {corrupt_limit}"
            )
        self.camera, self.stream, self.url = camera, stream, url
        self.transport = profile.transport
        self.stall_timeout_s = stall_timeout_s
        # A camera starts sending at a keyframe at the latest one GOP after PLAY.
        gop_s = stream_profile.gop / stream_profile.fps
        self.open_timeout_s = open_timeout_s or stall_timeout_s + 2 * gop_s
        self._stamper, self._on_packet = stamper, on_packet
        self._source_factory, self._clock = source_factory, clock or SystemClock()
        self._on_gap_start, self._on_gap_end = on_gap_start, on_gap_end
        self._backoff = backoff or Backoff()
        self._corrupt_limit, self._reachable = corrupt_limit, reachable
        self._probe_interval_s = probe_interval_s

        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._status = ConnectionStatus(ConnectionState.STOPPED, "not started", self._now())
        self._generation = 0
        self._attempts = self._packets = self._bytes = self._corrupt = self._stalls = 0
        self._last_packet_at_us: int | None = None
        self._last_capture_us: int | None = None
        self._gap_open = False

    # -- control -------------------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            raise IngestError(f"{self.camera}/{self.stream}: already started")
        self._thread = threading.Thread(
            target=self._run, name=f"ingest-{self.camera}-{self.stream}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float | None = None) -> None:
        """Stop and wait; a blocked read ends within the stall (or open) timeout."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(self.open_timeout_s + 1.0 if timeout is None else timeout)

    @property
    def status(self) -> ConnectionStatus:
        return self._status

    def stats(self) -> ConnectionStats:
        with self._lock:
            return ConnectionStats(
                camera=self.camera,
                stream=self.stream,
                state=self._status.state,
                reason=self._status.reason,
                since_us=self._status.since_us,
                generation=self._generation,
                reconnects=max(0, self._attempts - 1),
                packets=self._packets,
                bytes=self._bytes,
                corrupt=self._corrupt,
                stalls=self._stalls,
                last_packet_at_us=self._last_packet_at_us,
            )

    # -- the thread ----------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            failure = self._connect_and_stream()
            if failure is None:
                break
            self._lost(failure)
            self._wait_before_retry(failure)
        self._set(ConnectionState.STOPPED, "stopped")

    def _connect_and_stream(self) -> SourceError | None:
        """One connection, until it fails (returned) or we are stopped (None)."""
        with self._lock:
            self._attempts += 1
        self._set(ConnectionState.CONNECTING, f"opening ({self.transport})")
        source = self._source_factory()
        try:
            params = source.open(
                self.url, self.transport, self.open_timeout_s, self.stall_timeout_s
            )
            if self._attempts > 1:  # a new connection is a new PTS timeline
                self._stamper.reset()
            info = self._new_info(params)
            first = True
            while not self._stop.is_set():
                packet = self._read(source)
                if source.params is not params:
                    params = source.params
                    info = self._new_info(params)
                    log.info("%s/%s: stream parameters changed", self.camera, self.stream)
                self._deliver(info, params.time_base, packet, first)
                first = False
            return None
        except SourceError as exc:
            return exc
        except Exception as exc:  # a bug in a callback or a source must not end ingest
            log.exception("%s/%s: unexpected error", self.camera, self.stream)
            return SourceError("lost", f"internal error: {exc!r}")
        finally:
            source.close()

    def _read(self, source: PacketSource) -> av.Packet[Any]:
        corrupt_in_a_row = 0
        while True:
            try:
                return source.read()
            except SourceError as exc:
                if exc.kind != "corrupt":
                    raise
                corrupt_in_a_row += 1
                with self._lock:
                    self._corrupt += 1
                if corrupt_in_a_row >= self._corrupt_limit:
                    raise SourceError(
                        "corrupt", f"{corrupt_in_a_row} corrupt reads in a row: {exc.message}"
                    ) from None

    def _deliver(
        self, info: StreamInfo, time_base: Fraction, packet: av.Packet[Any], first: bool
    ) -> None:
        arrival_us = self._clock.now_us()
        pts = packet.pts
        stamp = self._stamper.stamp(pts, time_base, arrival_us, self._clock.synced())
        with self._lock:
            self._packets += 1
            self._bytes += packet.size
            self._corrupt += packet.is_corrupt
            self._last_packet_at_us = arrival_us
            self._last_capture_us = stamp.capture_us
        if first:
            self._backoff.reset()
            self._set(ConnectionState.STREAMING, f"streaming ({self.transport})")
            if self._gap_open:
                self._gap_open = False
                self._notify(self._on_gap_end, stamp.capture_us)
        self._on_packet(StampedPacket(info, stamp, packet, packet.is_keyframe, pts))

    def _lost(self, failure: SourceError) -> None:
        reason = str(failure)
        log.warning("%s/%s: %s", self.camera, self.stream, reason)
        with self._lock:
            self._stalls += failure.kind == "stall"
        self._set(ConnectionState.BACKOFF, reason)
        if not self._gap_open:
            self._gap_open = True
            self._notify(self._on_gap_start, reason, self._last_capture_us)

    def _wait_before_retry(self, failure: SourceError) -> None:
        """Back off; for a camera that did not answer at all, retry as soon as it is reachable."""
        deadline = time.monotonic() + self._backoff.next_delay()
        probe = failure.kind in UNREACHABLE_KINDS
        while (remaining := deadline - time.monotonic()) > 0:
            if self._stop.wait(min(remaining, self._probe_interval_s) if probe else remaining):
                return
            if probe and self._reachable(self.url):
                return

    def _notify(self, callback: Callable[..., None] | None, *args: object) -> None:
        # The recorder's problem must neither stop streaming nor reconnecting.
        if callback is None:
            return
        try:
            callback(*args)
        except Exception:
            log.exception("%s/%s: gap callback failed", self.camera, self.stream)

    def _new_info(self, params: StreamParams) -> StreamInfo:
        with self._lock:
            self._generation += 1
            generation = self._generation
        return StreamInfo(
            camera=self.camera,
            stream=self.stream,
            codec=params.codec,
            width=params.width,
            height=params.height,
            time_base=params.time_base,
            extradata=params.extradata,
            fps=params.fps,
            generation=generation,
            template=params.template,
        )

    def _set(self, state: ConnectionState, reason: str) -> None:
        with self._lock:
            self._status = self._status.moved(state, reason, self._now())

    def _now(self) -> int:
        return self._clock.now_us()
