"""Heartbeats from the runtime's stats: detection counted on whichever stream is analysed."""

from __future__ import annotations

from typing import Any

from agent.fleet.heartbeat import HeartbeatBuilder


def stream(analysed: int, dropped: int | None) -> dict[str, Any]:
    consumers = {} if dropped is None else {"detect": {"dropped": dropped}}
    return {"state": "streaming", "reason": "", "packets": 100, "analysed": analysed,
            "stamper": {"frames": 100, "drift_us": 1500}, "consumers": consumers}  # fmt: skip


def test_camera_detection_figures_come_from_the_analysed_stream_and_the_pool() -> None:
    stats = {
        "streams": {
            "cam1/main": stream(0, None),
            "cam1/sub": stream(40, 3),
            "cam2/main": stream(12, 1),
        },
        "detection": {
            "cameras": {
                "cam1": {
                    "frames_skipped": 5,
                    "inference_ms_p50": 0.4,
                    "inference_ms_p99": 1.5,
                    "model": {"model_version": "cam1-v3"},
                }
            }
        },
        "disk": {"used": 1, "free": 2},
        "clock_synced": True,
    }
    beat = HeartbeatBuilder(5.0, 8).build(stats, 1_750_000_000_000_000)
    cam1, cam2 = beat.cameras
    assert (cam1.frames_analysed, cam1.frames_skipped) == (40, 3 + 5)
    assert (cam1.inference_ms_p50, cam1.inference_ms_p99) == (0.4, 1.5)
    assert (cam1.model_version, cam2.model_version) == ("cam1-v3", None)  # what scores it now
    assert [s.stream for s in cam1.streams] == ["main", "sub"]
    assert (cam2.frames_analysed, cam2.frames_skipped, cam2.inference_ms_p50) == (12, 1, None)
