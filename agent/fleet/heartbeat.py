"""Heartbeats from the runtime's stats (no I/O): per camera stream state and rates, disk,
clock, capacity. Counters are cumulative, so a lost heartbeat loses nothing."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, cast

from agent.fleet.reconcile import connection_state, short_text
from agent.rate import RateMeter
from fleet.messages import CameraStats, Capacity, Heartbeat, StreamStats
from fleet.profiles import StreamKind


class HeartbeatBuilder:
    """Remembers the previous packet counts: `fps_in` is the rate since the last heartbeat."""

    def __init__(self, interval_s: float, max_cameras: int) -> None:
        self.interval_s, self.max_cameras = interval_s, max_cameras
        self._fps = RateMeter()

    def build(self, stats: Mapping[str, Any], now_us: int) -> Heartbeat:
        by_camera: dict[str, dict[str, Mapping[str, Any]]] = {}
        for sid, s in stats["streams"].items():
            camera, stream = sid.split("/", 1)
            by_camera.setdefault(camera, {})[stream] = s
        self._fps.keep_only(set(stats["streams"]))
        detecting = stats.get("detection", {}).get("cameras", {})
        cameras = [
            self._camera(camera, streams, detecting.get(camera, {}), now_us)
            for camera, streams in sorted(by_camera.items())
        ]
        if self.max_cameras:
            load = min(1.0, len(cameras) / self.max_cameras)
        else:
            load = 1.0 if cameras else 0.0
        return Heartbeat(
            ts=now_us,
            interval_s=self.interval_s,
            cameras=cameras,
            disk_used_bytes=stats["disk"]["used"],
            disk_free_bytes=stats["disk"]["free"],
            clock_synced=bool(stats["clock_synced"]),
            capacity=Capacity(max_cameras=self.max_cameras, load=load),
        )

    def _camera(
        self,
        camera: str,
        streams: Mapping[str, Mapping[str, Any]],
        detecting: Mapping[str, Any],
        now_us: int,
    ) -> CameraStats:
        """Frames analysed are the audited ones (whichever stream is analysed); skipped, those
        the detect consumer dropped plus those the inference pool had no room for."""
        dropped = sum(s["consumers"].get("detect", {}).get("dropped", 0) for s in streams.values())
        return CameraStats(
            camera=camera,
            streams=[
                self._stream(f"{camera}/{kind}", cast(StreamKind, kind), s, now_us)
                for kind, s in sorted(streams.items())
            ],
            frames_analysed=sum(s["analysed"] for s in streams.values()),
            frames_skipped=dropped + detecting.get("frames_skipped", 0),
            inference_ms_p50=detecting.get("inference_ms_p50"),
            inference_ms_p99=detecting.get("inference_ms_p99"),
            model_version=detecting.get("model", {}).get("model_version"),
        )

    def _stream(self, sid: str, kind: StreamKind, s: Mapping[str, Any], now_us: int) -> StreamStats:
        fps = self._fps.rate(sid, s["packets"], now_us)
        drift_us = s["stamper"]["drift_us"]
        return StreamStats(
            stream=kind,
            state=connection_state(s["state"]),
            reason=short_text(s["reason"]) or None,
            fps_in=fps or 0.0,  # 0 until a rate has been seen over one interval
            frames_stamped=s["stamper"]["frames"],
            drift_ms=None if drift_us is None else drift_us / 1000,
        )
