"""Assembles the agent: per camera stream, ingest → stamp → fan-out → recorder, audit, live.

Nothing downstream calls back into ingest; each stage runs in its own thread and talks through
the stream's hub, so a slow consumer never holds up the camera connection. The cameras can
change while the agent runs (`apply_cameras`, the controller's desired state): a camera is added
or removed as a whole, and switching its inspection touches neither its connection nor its
recording.
"""

from __future__ import annotations

import logging
import shutil
import threading
from collections.abc import Callable, Sequence
from dataclasses import asdict
from functools import partial
from pathlib import Path
from typing import Any, Literal

from agent.audit.auditor import FrameAuditor
from agent.detection.detector import Detection, View, view_from_drift
from agent.detection.drift import DriftSettings
from agent.detection.event_log import EventLog
from agent.detection.loaded_model import ModelLoadError, load_model
from agent.detection.service import DetectionService
from agent.detection.snapshot import annotated_jpeg
from agent.detection.tracking import DRIFT_FPS, DriftConsumer
from agent.fanout.hub import StreamHub
from agent.ingest.connection import IngestError, StreamConnection, SystemClock
from agent.live.detection_state import DetectionState, detection_state
from agent.live.gop import GopCache
from agent.live.latest import LatestFrame
from agent.pipeline import PacketTap, StreamPipeline
from agent.recording.index import Gap, Index
from agent.recording.service import RecordingService, RetentionPolicy
from agent.stamping.clock import ClockSyncProbe, clock_synchronised
from agent.stamping.stamper import Stamper
from fleet.config import AgentConfig, CameraConfig
from fleet.messages import Event, RoiAdjustment
from fleet.profiles import ProfileError, StreamKind, load_profile

log = logging.getLogger("camfleet.agent")

GapListener = Callable[[Gap], None]
ClipWindow = tuple[int, int]  # from_us, to_us
# Every event the cameras raise (detection, drift); a closed ROI event comes with its clip window.
EventSink = Callable[[Event, ClipWindow | None], None]


def _ignore_gap(gap: Gap) -> None:
    """Default gap listener: the recording's gap ledger is the only record."""


def _ignore_event(event: Event, clip: ClipWindow | None) -> None:
    """Default event listener: without a fleet link there is no one to tell."""


def _nothing() -> None:
    pass


_Phase = Literal["new", "running", "stopped"]


class AgentRuntime:
    def __init__(
        self,
        config: AgentConfig,
        snapshots: bool = True,
        on_gap: GapListener = _ignore_gap,
        on_event: EventSink = _ignore_event,
    ) -> None:
        """`snapshots=False` leaves out the live consumers (snapshots, with their keyframe
        decoding, and the GOP live viewers start with: they then wait for a keyframe);
        `on_gap` hears of every interval ingest lost (e.g. to raise a health event);
        `on_event` hears of detection events (ROI anomalies, camera_moved, view_lost), from
        tracking and inference threads, after the agent's own event log has them."""
        self.config = config
        self.snapshots = snapshots
        self.on_gap = on_gap
        self.on_event = on_event
        self.data_dir = Path(config.data_dir)
        self.data_dir.mkdir(parents=True, exist_ok=True)
        # Create the index (schema, WAL) once here: threads opening a new database together
        # would race on it.
        Index.open(self.data_dir).close()
        self.recording = RecordingService(
            self.data_dir,
            config.defaults.segment_seconds,
            RetentionPolicy(
                max_age_s=config.retention.max_age_hours * 3600,
                budget_bytes=int(config.retention.max_disk_gb * 1e9),
            ),
        )
        self.events = EventLog(self.data_dir)
        self.detection = DetectionService(config.defaults.inference_threads)
        self._detect_errors: dict[str, str] = {}  # camera: why its model is not in use
        probe = ClockSyncProbe(clock_synchronised)
        self.clock = SystemClock(lambda: probe.now_synced() is True)
        # _lock guards the two maps (HTTP and stats threads read them); _changing serialises
        # changes, whose slow parts (stopping threads, closing segments) run outside _lock.
        self._lock = threading.Lock()
        self._changing = threading.Lock()
        self._cameras: dict[str, CameraConfig] = {}
        self._pipelines: dict[tuple[str, str], StreamPipeline] = {}
        self._phase: _Phase = "new"
        for cam in config.cameras:
            self._add(cam)

    @property
    def cameras(self) -> list[str]:
        with self._lock:
            return list(self._cameras)

    def camera_configs(self) -> list[CameraConfig]:
        with self._lock:
            return list(self._cameras.values())

    @property
    def pipelines(self) -> dict[tuple[str, str], StreamPipeline]:
        """A snapshot: the pipelines running now."""
        with self._lock:
            return dict(self._pipelines)

    def pipeline(self, camera: str, stream: str = "main") -> StreamPipeline | None:
        with self._lock:
            return self._pipelines.get((camera, stream))

    def adjustment(self, camera: str) -> RoiAdjustment | None:
        """How the camera's ROIs are moved now (main-stream px); None without a reference view
        (inspection off, or no good frame yet)."""
        drift = self._tracked(camera)
        return drift.adjustment() if drift else None

    def recapture(self, camera: str) -> bool:
        """Take the camera's next good frame as its reference view; False if not tracked."""
        drift = self._tracked(camera)
        if drift:
            drift.recapture()
        return drift is not None

    def detection_state(self, camera: str) -> DetectionState | None:
        """The camera's ROIs, where they are now and how they score; None: no such camera."""
        with self._lock:
            cam = self._cameras.get(camera)
            analysed = self._analysed(camera)
        if cam is None or analysed is None:
            return None
        return detection_state(cam, analysed.stream, analysed.info, analysed.drift,
                               self.detection.detector(camera))  # fmt: skip

    def _tracked(self, camera: str) -> DriftConsumer | None:
        with self._lock:
            analysed = self._analysed(camera)
        return analysed.drift if analysed else None

    def _analysed(self, camera: str) -> StreamPipeline | None:
        """The stream detection and drift tracking look at: sub if any, else main (under _lock)."""
        return self._pipelines.get((camera, "sub")) or self._pipelines.get((camera, "main"))

    def start(self) -> None:
        with self._changing:
            self.recording.start()
            for p in self.pipelines.values():
                p.start()
            self._phase = "running"
        self._end_open_events(None, "the agent stopped while it was going on")
        log.info("agent started: %d streams", len(self.pipelines))

    def stop(self) -> None:
        with self._changing:
            end_recording = self.recording.stop if self._phase == "running" else _nothing
            self._shut_down(list(self.pipelines.values()), end_recording)
            self.detection.close()
            self._phase = "stopped"

    def apply_cameras(self, cameras: Sequence[CameraConfig]) -> dict[str, str]:
        """Run exactly these cameras: start new ones, stop and remove those not listed, restart
        one whose stream URLs or profile changed, and switch inspection where only that changed.

        Returns, by camera name, why a camera could not be started (it is retried by the next
        call); the others run.
        """
        errors = _shared_streams(cameras)
        wanted = {c.name: c for c in cameras if c.name not in errors}
        with self._changing:
            if self._phase == "stopped":
                raise RuntimeError("the agent runtime has stopped")
            with self._lock:
                current = dict(self._cameras)
            for name, old in current.items():
                new = wanted.get(name)
                if new is None or _connection(new) != _connection(old):
                    self._remove(name)
                elif self._inspection(new) != self._inspection(old):
                    self._switch_inspection(new)
            for name, new in wanted.items():
                was = current.get(name)
                if was is None or _connection(new) != _connection(was):
                    try:
                        self._add(new)
                    except (ProfileError, IngestError) as exc:
                        log.warning("camera %s not started: %s", name, exc)
                        errors[name] = str(exc)
        return errors

    def _inspection(self, cam: CameraConfig) -> tuple[object, ...]:
        return cam.inspect, self.config.detect_fps_for(cam), cam.rois, cam.model

    def _add(self, cam: CameraConfig) -> None:
        """Build the camera's pipelines (and start them if the runtime runs)."""
        profile = load_profile(cam.profile)
        streams: list[tuple[StreamKind, str]] = [("main", cam.url)]
        if cam.sub_url:
            streams.append(("sub", cam.sub_url))
        # Every connection is made before anything subscribes: a refused one leaves nothing.
        parts = []
        for kind, url in streams:
            hub, stamper = StreamHub(f"{cam.name}/{kind}"), Stamper()
            tap = PacketTap(hub)
            gap_start, gap_end = self._gap_callbacks(cam.name, kind)
            connection = StreamConnection(
                cam.name, kind, url, profile, stamper, tap, clock=self.clock,
                on_gap_start=gap_start, on_gap_end=gap_end,
            )  # fmt: skip
            parts.append(StreamPipeline(cam.name, kind, hub, stamper, connection, tap, None))
        for p in parts:
            self.recording.record(p.hub)
            if self.snapshots:
                p.live = LatestFrame(p.hub.subscribe("live", "drop_oldest", 2, wants_frames=True,
                                                     keyframes_only=True))  # fmt: skip
                p.gop = GopCache(p.hub)
        # Detection and drift tracking look at the sub stream if there is one (listed last):
        # the same frames, and the audit proves the recording of that stream.
        analysed = parts[-1]
        analysed.switch_drift(partial(self._drift, cam, analysed, parts[0]), running=False)
        analysed.switch_auditor(partial(self._auditor, analysed, cam), running=False)
        for p in parts:
            if self._phase == "running":
                p.start()
        with self._lock:
            self._cameras[cam.name] = cam
            self._pipelines.update({(p.camera, p.stream): p for p in parts})

    def _remove(self, name: str) -> None:
        """Stop the camera's consumers, end its recording (last segment closed and indexed),
        stop its connections, close its hubs."""
        with self._lock:
            del self._cameras[name]
            gone = [self._pipelines.pop(key) for key in list(self._pipelines) if key[0] == name]
        self.detection.detach(name)
        self._end_open_events(name, "the camera was removed from this agent")

        def end_recording() -> None:
            for p in gone:
                self.recording.release(p.hub, p.camera, p.stream)

        self._shut_down(gone, end_recording)
        log.info("camera %s removed", name)

    def _shut_down(
        self, pipelines: list[StreamPipeline], end_recording: Callable[[], None]
    ) -> None:
        """Consumers first, so every analysed frame is also recorded; then ingest; then the
        recording, which writes everything ingest received before it ends (segments carry
        their own copy of the codec parameters, so closed connections do not matter); hubs
        last."""
        running = self._phase == "running"
        if running:
            for p in pipelines:
                p.stop_consumers()
            for p in pipelines:
                p.stop_ingest()
        end_recording()
        for p in pipelines:
            p.hub.close()

    def _switch_inspection(self, cam: CameraConfig) -> None:
        switched_us = self.clock.now_us()
        with self._lock:
            self._cameras[cam.name] = cam
            main = self._pipelines.get((cam.name, "main"))
            analysed = self._pipelines.get((cam.name, "sub"), main)
        if main is not None and analysed is not None:
            running = self._phase == "running"
            analysed.switch_drift(partial(self._drift, cam, analysed, main), running)
            analysed.switch_auditor(partial(self._auditor, analysed, cam), running)
        self._end_open_events(cam.name, "inspection was changed", before_us=switched_us)
        log.info("camera %s: inspection %s", cam.name, "on" if cam.inspect else "off")

    def _auditor(self, p: StreamPipeline, cam: CameraConfig) -> FrameAuditor | None:
        self.detection.detach(cam.name)
        self._detect_errors.pop(cam.name, None)
        if not cam.inspect:
            return None
        fps = self.config.detect_fps_for(cam)
        frames = p.hub.subscribe("detect", "drop_oldest", 8, wants_frames=True, max_fps=fps)
        on_frame = None
        if cam.model is not None:
            try:
                model, extractor = load_model(cam.model, cam.name)
                detector = self.detection.attach(
                    cam.name, model, extractor, cam.rois or model.rois, fps,
                    partial(self._view, p), self._on_detection,
                )  # fmt: skip
                on_frame = detector.offer
            except ModelLoadError as exc:  # audit and record anyway; stats say why
                log.warning("camera %s: model not used: %s", cam.name, exc)
                self._detect_errors[cam.name] = str(exc)
        return FrameAuditor(frames, self.data_dir, on_frame)

    def _view(self, p: StreamPipeline, width: int) -> View | None:
        drift = p.drift
        if drift is None:
            return None
        stats = drift.stats()
        return view_from_drift(stats.adjustment, drift.main_width, stats.view_lost, width)

    def _on_detection(self, d: Detection) -> None:
        """An ROI event opened or closed (on a pool thread): snapshot, local log, then on."""
        snapshot = None
        if d.frame is not None:
            snapshot = annotated_jpeg(d.frame, d.polygon, d.event.box)
        self._raise(d.event, snapshot, self._clip_window(d.event) if d.closed else None)

    def _clip_window(self, event: Event) -> ClipWindow:
        d = self.config.defaults
        return event.start_us - round(d.clip_pre_s * 1e6), event.end_us + round(d.clip_post_s * 1e6)

    def _raise(self, event: Event, snapshot: bytes | None, clip: ClipWindow | None) -> None:
        try:
            self.events.record(event, snapshot)
        except Exception:  # e.g. a full disk: the event still goes on
            log.exception("camera %s: event %s not logged locally", event.camera, event.id)
        self.on_event(event, clip)

    def _end_open_events(self, camera: str | None, why: str, before_us: int | None = None) -> None:
        """Close the events left open by detectors that are gone (the controller would show
        them in alarm for ever), at the last stamp they were seen."""
        try:
            stale = self.events.open_events(camera)
        except Exception:
            log.exception("open events of %s not read", camera or "any camera")
            return
        for event in stale:
            if before_us is None or event.start_us < before_us:
                ended = event.model_copy(update={"open": False, "detail": f"ended unseen: {why}"})
                self._raise(ended, None, None)

    def _drift(
        self, cam: CameraConfig, tracked: StreamPipeline, main: StreamPipeline
    ) -> DriftConsumer | None:
        if not cam.inspect:
            return None
        frames = tracked.hub.subscribe(
            "drift", "drop_oldest", 2, wants_frames=True, max_fps=DRIFT_FPS
        )
        # Registering the sub stream, the main stream's packets tell its frame size.
        sizes = main.hub.subscribe("drift-size", "drop_oldest", 32) if tracked is not main else None
        bounds = DriftSettings(**self.config.drift.model_dump())
        return DriftConsumer(cam.name, frames, partial(self._raise, snapshot=None, clip=None),
                             sizes, bounds)  # fmt: skip

    def _gap_callbacks(
        self, camera: str, kind: StreamKind
    ) -> tuple[Callable[[str, int | None], None], Callable[[int], None]]:
        # The open gap: last stamp before it and what ingest said happened; None: nothing to note.
        open_gap: tuple[int, str] | None = None

        def gap_start(reason: str, last_us: int | None) -> None:
            nonlocal open_gap
            open_gap = None if last_us is None else (last_us, reason)

        def gap_end(first_us: int) -> None:
            nonlocal open_gap
            if open_gap is not None and first_us > open_gap[0]:
                start_us, why = open_gap
                gap = Gap(camera, kind, start_us, first_us, "camera_lost", detail=why)
                self.recording.note_gap(gap)
                self.on_gap(gap)
            open_gap = None

        return gap_start, gap_end

    def _disk_use(self) -> dict[str, int]:
        total, used, free = shutil.disk_usage(self.data_dir)
        recorded = self.recording.recorded_bytes
        return {"total": total, "used": used, "free": free, "recordings": recorded}

    def stats(self) -> dict[str, Any]:
        rec = self.recording.stats()
        return {
            "streams": {f"{c}/{s}": p.stats() for (c, s), p in self.pipelines.items()},
            "recorder": asdict(rec) if rec else None,
            "clock_synced": self.clock.synced(),
            "detection": {**self.detection.stats(), "errors": dict(self._detect_errors)},
            "disk": self._disk_use(),
        }


def _connection(cam: CameraConfig) -> tuple[str, str | None, str]:
    """What a camera's connections depend on: a change means reconnecting."""
    return cam.url, cam.sub_url, cam.profile


def _shared_streams(cameras: Sequence[CameraConfig]) -> dict[str, str]:
    """Cameras naming a stream an earlier camera has: two entries would open two connections."""
    owner: dict[str, str] = {}
    errors: dict[str, str] = {}
    for cam in cameras:
        urls = [u for u in (cam.url, cam.sub_url) if u]
        shared = next((owner[u] for u in urls if u in owner), None)
        if shared is not None:
            errors[cam.name] = f"shares a stream url with camera {shared!r}"
            continue
        owner.update(dict.fromkeys(urls, cam.name))
    return errors
