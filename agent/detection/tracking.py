"""Camera-drift tracking for one inspected camera: registration against a reference view, run on
a few decoded frames a second in its own thread.

The sub stream is registered when the camera has one (registration works on a downscaled copy
anyway, and decoding the sub stream is cheaper); the adjustment is reported in main-stream
pixels, scaled by the widths of the two streams. The first frame with enough contrast becomes
the reference view; `recapture()` takes the next one instead, and so does a change of frame size
(a reconnect with other parameters). The tracker's transitions become camera-wide events, raised
when a state begins (a camera that stays moved would never end an event).
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import av

from agent.detection.drift import DriftSettings, DriftTracker, DriftTransition
from agent.detection.luma import Luma, luma_plane
from agent.detection.registration import Registrar, Registration, RegistrationError
from agent.detection.roi_geometry import rescale
from agent.fanout.consumer import Consumer
from agent.fanout.hub import DecodedFrame
from agent.frames import StampedPacket
from fleet.messages import Event, RoiAdjustment

log = logging.getLogger("camfleet.agent.tracking")

DRIFT_FPS = 2.0  # registration costs a few ms a frame; drift is slow, a bump is held
EventListener = Callable[[Event], None]


@dataclass(frozen=True, slots=True)
class DriftStats:
    stream: str  # the stream registered
    reference_us: int | None  # stamp of the reference view; None until one is taken
    registered: int  # frames registered against it (all references)
    failed: int  # registrations below the tracker's confidence
    errors: int  # frames that raised
    last_us: int | None  # stamp of the latest registered frame
    last: RoiAdjustment | None  # its own registration, main-stream px (unsmoothed)
    confidence: float
    adjustment: RoiAdjustment | None  # smoothed, main-stream px; None before a reference
    moved: bool
    view_lost: bool


class DriftConsumer:
    """Owns its frame consumer (and, registering the sub stream, a packet consumer of the main
    stream that only tells the main frame size); stop() closes both."""

    def __init__(
        self,
        camera: str,
        frames: Consumer[DecodedFrame],
        on_event: EventListener,
        main_packets: Consumer[StampedPacket] | None = None,
        settings: DriftSettings | None = None,
    ) -> None:
        self.camera = camera
        self.frames = frames
        self.on_event = on_event
        self.main_packets = main_packets
        self.settings = settings or DriftSettings()
        self._lock = threading.Lock()  # guards _stats against the stats readers
        self._stats = DriftStats("", None, 0, 0, 0, None, None, 0.0, None, False, False)
        self._recapture = threading.Event()
        self._stop = threading.Event()
        self._registrar: Registrar | None = None
        self._tracker = DriftTracker(self.settings)
        self._open: dict[str, Event] = {}  # camera_moved / view_lost events going on, by kind
        self._main_width: int | None = None
        self._thread = threading.Thread(target=self._run, name=f"drift-{camera}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.frames.close()
        if self.main_packets is not None:
            self.main_packets.close()
        if self._thread.is_alive():
            self._thread.join(10)

    def recapture(self) -> None:
        """Take the next good frame as the new reference view (after the camera was re-aimed)."""
        self._recapture.set()

    def stats(self) -> DriftStats:
        with self._lock:
            return self._stats

    def adjustment(self) -> RoiAdjustment | None:
        return self.stats().adjustment

    @property
    def main_width(self) -> int | None:
        """Width of the main stream when registering the sub stream (None: registering main)."""
        return self._main_width

    def _run(self) -> None:
        while not self._stop.is_set():
            self._read_main_width()
            item = self.frames.get(timeout=0.2)
            if item is None:
                continue
            sp, frame = item
            try:
                self._track(sp, frame)
            except Exception:  # one bad frame must not end tracking
                log.exception("%s: drift tracking failed on frame %d", self.camera,
                              sp.stamp.seq)  # fmt: skip
                self._update(errors=self._stats.errors + 1)

    def _track(self, sp: StampedPacket, frame: av.VideoFrame) -> None:
        if self.main_packets is not None and self._main_width is None:
            return  # nothing to scale to yet: the main stream is still connecting
        luma = luma_plane(frame)
        stamp_us = sp.stamp.capture_us
        if self._recapture.is_set() or self._registrar is None:
            self._take_reference(sp, luma.copy())
            return
        try:
            registration = self._registrar.register(luma)
        except RegistrationError:  # the stream came back at another size
            self._take_reference(sp, luma.copy())
            return
        transitions = self._tracker.update(registration, stamp_us)
        self._record(sp, registration)
        for t in transitions:
            self._raise(t)

    def _take_reference(self, sp: StampedPacket, luma: Luma) -> None:
        self._recapture.clear()
        try:
            self._registrar = Registrar(luma)
        except RegistrationError as exc:  # e.g. lights out: try the next frame
            log.info("%s: no reference view yet: %s", self.camera, exc)
            self._registrar = None
            return
        self._tracker = DriftTracker(self.settings)
        # A new reference view is the camera's state from now on: what was going on has ended.
        for kind in list(self._open):
            self._close(kind, sp.stamp.capture_us)
        self._update(stream=sp.info.stream, reference_us=sp.stamp.capture_us,
                     adjustment=self._to_main(self._tracker.adjustment, sp), moved=False,
                     view_lost=False)  # fmt: skip
        log.info("%s: reference view taken at %d", self.camera, sp.stamp.capture_us)

    def _record(self, sp: StampedPacket, registration: Registration) -> None:
        state = self._tracker.state
        s = self._stats
        failed = registration.confidence < self.settings.min_confidence
        self._update(
            registered=s.registered + 1,
            failed=s.failed + failed,
            last_us=sp.stamp.capture_us,
            last=self._to_main(registration.adjustment, sp),
            confidence=registration.confidence,
            adjustment=self._to_main(state.adjustment, sp),
            moved=state.moved,
            view_lost=state.view_lost,
        )

    def _to_main(self, adj: RoiAdjustment, sp: StampedPacket) -> RoiAdjustment:
        """`adj` (px of the registered stream) in px of the main stream."""
        if self._main_width is None:  # registering the main stream
            return adj
        return rescale(adj, self._main_width / sp.info.width)

    def _read_main_width(self) -> None:
        """Drain the main stream's packets (drained every 0.2 s, so none are dropped)."""
        while self.main_packets and (packet := self.main_packets.get(timeout=0)) is not None:
            self._main_width = packet.info.width

    def _raise(self, t: DriftTransition) -> None:
        """An event opens when the state begins and the same event closes when it ends, so the
        controller can show the camera in alarm meanwhile."""
        if not t.active:
            log.info("%s: %s ended at %d", self.camera, t.kind, t.stamp_us)
            self._close(t.kind, t.stamp_us)
            return
        adjustment = self.stats().adjustment
        assert adjustment is not None  # set with the reference view, before any transition
        detail = (
            f"camera moved: dx {adjustment.dx:.1f} px, dy {adjustment.dy:.1f} px, "
            f"angle {adjustment.angle_deg:.2f} deg, scale {adjustment.scale:.3f}"
            if t.kind == "camera_moved"
            else "view lost: frames no longer match the reference view"
        )
        event = Event(id=uuid.uuid4(), camera=self.camera, kind=t.kind, start_us=t.stamp_us,
                      peak_us=t.stamp_us, end_us=t.stamp_us, detail=detail,
                      adjustment=adjustment, open=True)  # fmt: skip
        self._open[t.kind] = event
        self._send(event)

    def _close(self, kind: str, stamp_us: int) -> None:
        event = self._open.pop(kind, None)
        if event is not None:
            self._send(event.model_copy(update={"end_us": max(stamp_us, event.end_us),
                                                "open": False}))  # fmt: skip

    def _send(self, event: Event) -> None:
        try:
            self.on_event(event)
        except Exception:  # the listener's failure is not tracking's
            log.exception("%s: could not raise %s", self.camera, event.kind)

    def _update(self, **changes: Any) -> None:
        with self._lock:
            self._stats = replace(self._stats, **changes)
