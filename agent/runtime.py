"""Assembles the agent: per camera stream, ingest → stamp → fan-out → recorder, audit, live.

Nothing downstream calls back into ingest; each stage runs in its own thread and talks through
the stream's hub, so a slow consumer never holds up the camera connection.
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from agent.audit.auditor import FrameAuditor
from agent.fanout.hub import StreamHub
from agent.ingest.connection import StreamConnection, SystemClock
from agent.live.latest import LatestFrame
from agent.recording.index import Gap, Index
from agent.recording.service import RecordingService, RetentionPolicy
from agent.stamping.clock import ClockSyncProbe, clock_synchronised
from agent.stamping.stamper import Stamper
from fleet.config import AgentConfig, CameraConfig
from fleet.profiles import StreamKind, load_profile

log = logging.getLogger("camfleet.agent")


@dataclass
class StreamPipeline:
    camera: str
    stream: StreamKind
    hub: StreamHub
    stamper: Stamper
    connection: StreamConnection
    live: LatestFrame | None
    auditor: FrameAuditor | None

    def start(self) -> None:
        if self.live:
            self.live.start()
        if self.auditor:
            self.auditor.start()
        self.connection.start()

    def stop_ingest(self) -> None:
        self.connection.stop()

    def stop_consumers(self) -> None:
        if self.auditor:
            self.auditor.stop()
        if self.live:
            self.live.stop()

    def stats(self) -> dict[str, Any]:
        conn = self.connection.stats()
        hub = self.hub.stats()
        return {
            "state": conn.state.value,
            "reason": conn.reason,
            "since_us": conn.since_us,
            "reconnects": conn.reconnects,
            "packets": conn.packets,
            "bytes": conn.bytes,
            "corrupt": conn.corrupt,
            "stalls": conn.stalls,
            "last_packet_at_us": conn.last_packet_at_us,
            "generation": conn.generation,
            "stamper": asdict(self.stamper.stats),
            "consumers": {c.name: asdict(c) for c in hub.consumers},
            "decoder": asdict(hub.decoder) if hub.decoder else None,
            "analysed": self.auditor.stats().analysed if self.auditor else 0,
        }


class AgentRuntime:
    def __init__(self, config: AgentConfig, snapshots: bool = True) -> None:
        """`snapshots=False` leaves out the live consumer (and its keyframe decoding)."""
        self.config = config
        self.snapshots = snapshots
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
        probe = ClockSyncProbe(clock_synchronised)
        self.clock = SystemClock(lambda: probe.now_synced() is True)
        self.pipelines: dict[tuple[str, str], StreamPipeline] = {}
        for cam in config.cameras:
            self.pipelines[(cam.name, "main")] = self._pipeline(cam, "main", cam.url)
            if cam.sub_url:
                self.pipelines[(cam.name, "sub")] = self._pipeline(cam, "sub", cam.sub_url)

    @property
    def cameras(self) -> list[str]:
        return [c.name for c in self.config.cameras]

    def _pipeline(self, cam: CameraConfig, kind: StreamKind, url: str) -> StreamPipeline:
        profile = load_profile(cam.profile)
        hub = StreamHub(f"{cam.name}/{kind}")
        stamper = Stamper()
        self.recording.record(hub)
        live = None
        if self.snapshots:
            live = LatestFrame(hub.subscribe("live", "drop_oldest", 2, wants_frames=True,
                                             keyframes_only=True))  # fmt: skip
        auditor = None
        if kind == "main" and cam.inspect:  # detection looks at the main stream
            detect_fps = cam.detect_fps or self.config.defaults.detect_fps
            frames = hub.subscribe(
                "detect", "drop_oldest", 8, wants_frames=True, max_fps=detect_fps
            )
            auditor = FrameAuditor(frames, self.data_dir)
        # The open gap: last stamp before it and what ingest said happened; None: nothing to note.
        open_gap: tuple[int, str] | None = None

        def gap_start(reason: str, last_us: int | None) -> None:
            nonlocal open_gap
            open_gap = None if last_us is None else (last_us, reason)

        def gap_end(first_us: int) -> None:
            nonlocal open_gap
            if open_gap is not None and first_us > open_gap[0]:
                start_us, why = open_gap
                self.recording.note_gap(
                    Gap(cam.name, kind, start_us, first_us, "camera_lost", detail=why)
                )
            open_gap = None

        connection = StreamConnection(
            cam.name, kind, url, profile, stamper, hub.publish, clock=self.clock,
            on_gap_start=gap_start, on_gap_end=gap_end,
        )  # fmt: skip
        return StreamPipeline(cam.name, kind, hub, stamper, connection, live, auditor)

    def start(self) -> None:
        self.recording.start()
        for p in self.pipelines.values():
            p.start()
        log.info("agent started: %d streams", len(self.pipelines))

    def stop(self) -> None:
        for p in self.pipelines.values():
            p.stop_ingest()
        for p in self.pipelines.values():
            p.stop_consumers()
        self.recording.stop()
        for p in self.pipelines.values():
            p.hub.close()

    def pipeline(self, camera: str, stream: str = "main") -> StreamPipeline | None:
        return self.pipelines.get((camera, stream))

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
            "disk": self._disk_use(),
        }
