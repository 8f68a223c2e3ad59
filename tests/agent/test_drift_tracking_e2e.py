"""Camera-drift tracking in the running agent, against the simulator: the sub stream registered
against a reference view, the adjustment in main-stream pixels checked against GET /truth/pose,
a camera_moved event on the scene's sudden shift, and tracking gone with inspection.

Seed 4's scene bumps the camera 1.75 s into every 4 s loop and snaps back when the loop restarts,
so the tracker sees a shift beyond its bound within a loop whichever frame became the reference.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SimProcess, start_sim, wait_for

from agent.detection.roi_geometry import compose, displacement, invert
from agent.fleet.reconcile import reported_state
from agent.runtime import AgentRuntime
from fleet.config import AgentConfig, CameraConfig, Defaults
from fleet.messages import IDENTITY, Event, RoiAdjustment

W, H = 1280, 720  # the sub stream is then 426x240: registered there, reported at 1280x720
SIM_ARGS = ("--main-size", f"{W}x{H}", "--loop-seconds", "4", "--seed", "4",
            "--profile", "generic-onvif")  # fmt: skip
SUB_FRAME_US = 100_000  # the sub stream runs at 10 fps


class Events:
    def __init__(self) -> None:
        self.seen: list[Event] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event, clip: tuple[int, int] | None) -> None:
        assert clip is None  # only closed ROI events come with a clip
        with self._lock:
            self.seen.append(event)

    def of(self, kind: str) -> list[Event]:
        with self._lock:
            return [e for e in self.seen if e.kind == kind]


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[SimProcess]:
    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=1)
    yield sim
    sim.stop()


def camera(sim: SimProcess, inspect: bool = True) -> CameraConfig:
    streams = sim.get("/cameras")[0]["streams"]  # type: ignore[index]
    return CameraConfig(name="cam1", url=streams["main"]["url"], sub_url=streams["sub"]["url"],
                        profile="generic-onvif", detect_fps=2.0, inspect=inspect)  # fmt: skip


def drift_stats(runtime: AgentRuntime, stream: str = "sub") -> dict[str, Any] | None:
    stats = runtime.stats()["streams"].get(f"cam1/{stream}", {})
    return stats.get("drift")  # type: ignore[no-any-return]


def pose(sim: SimProcess, at_us: int) -> RoiAdjustment:
    p: dict[str, Any] = sim.get(f"/truth/pose?camera=cam1&at={at_us}")  # type: ignore[assignment]
    return RoiAdjustment(dx=p["dx"], dy=p["dy"], angle_deg=p["angle_deg"], scale=1.0)


def truth_gap(sim: SimProcess, reference_us: int, stamp_us: int, measured: RoiAdjustment) -> float:
    """How far (px, at a frame corner) the measured adjustment is from the simulator's truth.

    A stamp is when the agent received the frame, a frame or two after the simulator sent it
    (the demuxer holds packets back), so the truth is taken with the same lag for both frames,
    trying 0..3 frame intervals, and the best match counts.
    """
    gaps = []
    for lag in range(4):
        back = lag * SUB_FRAME_US
        truth = compose(invert(pose(sim, reference_us - back)), pose(sim, stamp_us - back))
        gaps.append(displacement(truth, measured, W, H))
    return min(gaps)


def test_drift_is_tracked_on_the_sub_stream_and_a_bump_raises_camera_moved(
    tmp_path: Path, sim: SimProcess
) -> None:
    events = Events()
    config = AgentConfig(data_dir=tmp_path / "data", defaults=Defaults(segment_seconds=1.0))
    runtime = AgentRuntime(config, snapshots=False, on_event=events)
    runtime.start()
    try:
        assert runtime.apply_cameras([camera(sim)]) == {}
        wait_for(lambda: (drift_stats(runtime) or {}).get("registered", 0) >= 1, 30,
                 what="a reference view and a registration")  # fmt: skip

        # Each registered frame against the truth: several samples, across the drift and the bump.
        gaps: list[float] = []
        moves: list[float] = []
        seen: set[int] = set()
        while len(gaps) < 8:
            wait_for(lambda: drift_stats(runtime)["last_us"] not in seen, 10,  # type: ignore[index]
                     what="a new registration")  # fmt: skip
            d = drift_stats(runtime)
            assert d is not None and d["stream"] == "sub" and d["confidence"] > 0.5, d
            seen.add(d["last_us"])
            measured = RoiAdjustment(**d["last"])
            gaps.append(truth_gap(sim, d["reference_us"], d["last_us"], measured))
            moves.append(displacement(measured, IDENTITY, W, H))
        assert max(gaps) <= 2.0, gaps
        assert max(moves) > 10.0, moves  # a whole loop of samples: the bump is among them

        # The bump (or the snap back, had the reference been taken while bumped) is an event.
        wait_for(lambda: events.of("camera_moved"), 15, what="a camera_moved event")
        moved = events.of("camera_moved")[0]
        assert moved.camera == "cam1" and moved.roi_id is None
        assert moved.start_us == moved.peak_us == moved.end_us and moved.open
        assert displacement(moved.adjustment, IDENTITY, W, H) > 6.0 and moved.detail
        # The 4 s loop snaps the camera back: the same event closes (the web view's alarm ends).
        wait_for(lambda: any(e.id == moved.id and not e.open for e in events.of("camera_moved")),
                 15, what="the camera_moved event closing")  # fmt: skip
        closed = next(e for e in events.of("camera_moved") if e.id == moved.id and not e.open)
        assert closed.end_us > moved.start_us and closed.detail == moved.detail
        assert events.of("view_lost") == []

        adjustment = runtime.adjustment("cam1")
        assert adjustment is not None and adjustment != IDENTITY
        stats = runtime.stats()["streams"]
        report = reported_state(1, runtime.camera_configs(), stats, {}, 0).cameras[0]
        assert report.adjustment is not None
        assert stats["cam1/main"]["consumers"]["drift-size"]["dropped"] == 0
        assert "drift" in stats["cam1/sub"]["consumers"]

        # Inspection off: the tracker and its subscriptions go, the adjustment with them.
        assert runtime.apply_cameras([camera(sim, inspect=False)]) == {}
        stats = runtime.stats()["streams"]
        assert stats["cam1/sub"]["drift"] is None and runtime.adjustment("cam1") is None
        assert "drift" not in stats["cam1/sub"]["consumers"]
        assert "drift-size" not in stats["cam1/main"]["consumers"]
        assert (
            reported_state(1, runtime.camera_configs(), stats, {}, 0).cameras[0].adjustment is None
        )

        # On again: a new tracker with a new reference view.
        assert runtime.apply_cameras([camera(sim)]) == {}
        wait_for(lambda: runtime.adjustment("cam1") is not None, 15, what="tracking again")
        assert runtime.recapture("cam1")

        # Without a sub stream the main one is registered, in its own pixels.
        assert runtime.apply_cameras([camera(sim).model_copy(update={"sub_url": None})]) == {}
        wait_for(lambda: (drift_stats(runtime, "main") or {}).get("registered", 0) >= 2, 30,
                 what="tracking the main stream")  # fmt: skip
        assert runtime.adjustment("cam1") is not None
        assert drift_stats(runtime, "main")["stream"] == "main"  # type: ignore[index]
    finally:
        runtime.stop()
