"""Anomaly detection in the running agent, against the simulator: a model trained on the
simulator's own sub stream (its normal frames, decoded from the loop the simulator serves), the
agent scoring the live stream, ROI events opening and closing on the true anomalies, each closed
one with an annotated snapshot, a clip window, the model version and the adjustment in force —
and the audit proving the recording holds every scored frame.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import av
import pytest
from conftest import SIM_CACHE, SimProcess, start_sim, wait_for

from agent.detection.luma import luma_plane
from agent.detection.model.footage import training_frames
from agent.detection.model.sim_footage import SIM_TRAIN_SETTINGS, served_normal_frames
from agent.detection.model.train import train
from agent.evaluation.run import ROI_NAMES, rois
from agent.recording.verify import verify
from agent.runtime import AgentRuntime
from fleet.config import AgentConfig, CameraConfig, Defaults
from fleet.messages import Event
from fleet.profiles import load_profile
from fleet.sim.build import SimOptions
from fleet.sim.schedule import DEFAULT_REGIONS

W, H = 1280, 720  # the sub stream is then 426x240
SEED, LOOP_S = 3, 20.0
SIM_ARGS = ("--main-size", f"{W}x{H}", "--loop-seconds", str(LOOP_S), "--seed", str(SEED),
            "--profile", "generic-onvif")  # fmt: skip
DETECT_FPS = 5.0


def train_on_the_served_loop(out: Path) -> None:
    """A model of cam1 from the anomaly-free frames of the loop the simulator serves."""
    profile = load_profile("generic-onvif")
    options = SimOptions(cameras=1, profile=profile, seed=SEED, loop_seconds=LOOP_S,
                         main_size=(W, H), cache_dir=Path(SIM_CACHE))  # fmt: skip
    frames = training_frames(served_normal_frames(options, "cam1", DETECT_FPS))
    train(frames, "cam1", rois(), SIM_TRAIN_SETTINGS).write(out)


class Events:
    def __init__(self) -> None:
        self.seen: list[tuple[Event, tuple[int, int] | None]] = []
        self._lock = threading.Lock()

    def __call__(self, event: Event, clip: tuple[int, int] | None) -> None:
        with self._lock:
            self.seen.append((event, clip))

    def closed_anomalies(self) -> list[tuple[Event, tuple[int, int]]]:
        with self._lock:
            return [(e, c) for e, c in self.seen if e.kind == "anomaly" and c is not None]


def truth(sim: SimProcess) -> list[tuple[str, int, int]]:
    """(ROI, start, end) of every anomaly the simulator has shown."""
    records: list[dict[str, Any]] = sim.get("/truth?camera=cam1")  # type: ignore[assignment]
    regions = [(r.x, r.y, r.w, r.h) for r in DEFAULT_REGIONS]
    out = []
    for rec in records:
        r = rec["region"]
        roi = ROI_NAMES[regions.index((r["x"], r["y"], r["w"], r["h"]))]
        out.append((roi, rec["start_us"], rec["end_us"]))
    return out


@pytest.mark.slow
def test_live_anomalies_become_events_with_snapshots_and_clips(tmp_path: Path) -> None:
    model = tmp_path / "cam1.camfleet-model"
    train_on_the_served_loop(model)
    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=1)
    events = Events()
    config = AgentConfig(data_dir=tmp_path / "data", defaults=Defaults(segment_seconds=2.0))
    runtime = AgentRuntime(config, snapshots=False, on_event=events)
    runtime.start()
    try:
        streams = sim.get("/cameras")[0]["streams"]  # type: ignore[index]
        cam = CameraConfig(name="cam1", url=streams["main"]["url"], sub_url=streams["sub"]["url"],
                           profile="generic-onvif", detect_fps=DETECT_FPS, model=model)  # fmt: skip

        assert runtime.apply_cameras([cam]) == {}
        assert runtime.stats()["detection"]["errors"] == {}

        def found_one() -> bool:
            for event, _ in events.closed_anomalies():
                for roi, start, end in truth(sim):
                    if event.roi_id == roi and event.start_us <= end and start <= event.end_us:
                        return True
            return False

        wait_for(found_one, 2 * LOOP_S + 15, what="an ROI event on a true anomaly")
        event, (clip_from, clip_to) = events.closed_anomalies()[0]
        assert event.model_version is not None and event.model_version.startswith("cam1-")
        assert event.box is not None and (event.box.frame_w, event.box.frame_h) == (426, 240)
        assert event.peak_score > 0 and event.start_us <= event.peak_us <= event.end_us
        assert clip_from < event.start_us and clip_to > event.end_us
        # Sent when it opened, then closed under the same id, with its score series.
        assert [e.open for e, _ in events.seen if e.id == event.id] == [True, False]
        assert event.threshold is not None and event.peak_score > event.threshold
        stamps = [stamp for stamp, _ in event.scores]
        assert stamps[0] <= event.start_us and stamps[-1] == event.end_us
        assert (event.peak_us, event.peak_score) in event.scores
        snapshot = runtime.events.snapshot_path(event.id)
        with av.open(str(snapshot)) as jpeg:  # a real JPEG of the analysed frame's size
            image = next(jpeg.decode(video=0))
            assert (image.width, image.height) == (426, 240)
            assert luma_plane(image).std() > 5
        logged = {e.id: e for e in runtime.events.events("cam1")}
        assert logged[event.id].end_us == event.end_us  # the closed state replaced the open one

        stats = runtime.stats()["detection"]["cameras"]["cam1"]
        assert stats["frames_analysed"] > 0 and stats["inference_ms_p50"] is not None
        assert set(stats["model"]["rois"]) == set(ROI_NAMES)
    finally:
        runtime.stop()
        sim.stop()
    report = verify(tmp_path / "data", "cam1")
    assert report.ok and report.frames_checked > 0, report
