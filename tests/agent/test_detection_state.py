"""The detector's live state for the web view: each ROI's score series (events carry theirs,
opened and closed), and GET /cameras/{name}/detection against the simulator — ROIs listed with
or without a model, scored with one, placed where the camera's drift has moved them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import av
import httpx
import numpy as np
import pytest
import uvicorn
from conftest import free_port, start_sim, wait_for
from tiny_model import ROIS, tiny_artifact

from agent.api.app import create_app
from agent.detection.detector import SCORES_LEAD_US, Detection, ScoreHistory
from agent.detection.loaded_model import load_model
from agent.detection.roi_geometry import displacement, place_polygon
from agent.detection.service import DetectionService
from agent.runtime import AgentRuntime
from fleet.config import AgentConfig, CameraConfig, Defaults
from fleet.messages import IDENTITY, MAX_EVENT_SCORES, Event, RoiAdjustment, RoiSpec
from fleet.sim.scene import SceneRenderer, default_scene

STEP_US = 100_000


def tiny_model(path: Path, camera: str) -> list[RoiSpec]:
    """The controller tests' tiny real model (trained on 160x96 renders of the default scene,
    one ROI), written to `path`; returns its ROIs."""
    path.write_bytes(tiny_artifact(camera))
    return ROIS


def assert_series(scores: list[tuple[int, float]], first_us: int, last_us: int) -> None:
    stamps = [s for s, _ in scores]
    assert stamps == sorted(set(stamps)), "strictly increasing"
    assert (stamps[0], stamps[-1]) == (first_us, last_us)


# -- the score history -------------------------------------------------------------------------


def test_an_events_series_starts_before_it_and_ends_with_it() -> None:
    history = ScoreHistory()
    for i in range(100):  # 10 s of scores
        history.add(i * STEP_US, float(i))
    opened = history.open(50 * STEP_US)
    assert_series(opened, 50 * STEP_US - SCORES_LEAD_US, 99 * STEP_US)
    for i in range(100, 130):
        history.add(i * STEP_US, float(i))
    closed = history.close(120 * STEP_US)  # scores after the end do not belong to it
    assert_series(closed, 50 * STEP_US - SCORES_LEAD_US, 120 * STEP_US)
    assert len(closed) == 120 - 20 + 1
    # Closed: the next scores are history only, until another event opens.
    history.add(130 * STEP_US, 0.0)
    assert_series(history.open(130 * STEP_US), 100 * STEP_US, 130 * STEP_US)


def test_a_long_events_series_is_thinned_evenly_to_the_limit() -> None:
    history = ScoreHistory()
    history.add(0, 0.0)
    history.open(0)
    n = 7 * MAX_EVENT_SCORES + 3  # stays bounded while open: thinned on the way in
    for i in range(1, n):
        history.add(i * STEP_US, float(i))
    closed = history.close((n - 1) * STEP_US)
    assert len(closed) == MAX_EVENT_SCORES
    assert_series(closed, 0, (n - 1) * STEP_US)
    gaps = np.diff([s for s, _ in closed])
    assert gaps.max() <= 2 * gaps.min() + 2 * STEP_US, "evenly spread"
    Event(id="00000000-0000-0000-0000-000000000001", camera="cam1", kind="anomaly", start_us=0,
          peak_us=0, end_us=(n - 1) * STEP_US, adjustment=IDENTITY, scores=closed)  # fmt: skip


# -- events from a real model -------------------------------------------------------------------


def test_an_roi_event_opens_and_closes_with_its_threshold_and_scores(tmp_path: Path) -> None:
    """Rendered frames of the scene the model knows, then some with the ROI scrambled: an event
    opens (open=True), and closes (open=False) once the scene is back, with its score series."""
    rois = tiny_model(tmp_path / "cam1.camfleet-model", "cam1")
    model, extractor = load_model(tmp_path / "cam1.camfleet-model", "cam1")
    scene = replace(default_scene(7, 160, 96, 10.0, 10, loop_seconds=10), anomalies=())
    renderer = SceneRenderer(scene)
    rng = np.random.default_rng(1)
    seen: list[Detection] = []
    service = DetectionService(1)
    try:
        detector = service.attach("cam1", model, extractor, rois, 5.0, lambda w: None,
                                  seen.append)  # fmt: skip
        # 1.1 s apart: every frame passes the change gate (its heartbeat), so every one is scored.
        stamps = [(n + 1) * 1_100_000 for n in range(24)]
        for n, stamp in enumerate(stamps):
            frame = renderer.render_i420(n).copy()
            if 6 <= n < 14:
                frame[10:58, 16:96] = rng.integers(0, 255, (48, 80), np.uint8)  # the ROI, scrambled
            detector.offer(stamp, av.VideoFrame.from_ndarray(frame, format="yuv420p"))
            wait_for(lambda stamp=stamp: detector.live()["yard"].stamp_us == stamp, 10,  # type: ignore[misc]
                     what=f"frame {n} scored")  # fmt: skip
    finally:
        service.close()
    events = [d.event for d in seen]
    assert [e.open for e in events] == [True, False], events
    opened, closed = events
    assert opened.id == closed.id and closed.threshold == opened.threshold
    assert closed.threshold == detector.live()["yard"].threshold and closed.threshold
    assert closed.start_us >= 7 * 1_100_000 and closed.end_us <= 15 * 1_100_000
    assert closed.peak_score > closed.threshold
    # Scores from the lead-in on: the open message up to the frame that opened it.
    lead_in = min(s for s in stamps if s >= closed.start_us - SCORES_LEAD_US)
    assert_series(opened.scores, lead_in, seen[0].decided_us)
    assert_series(closed.scores, opened.scores[0][0], closed.end_us)
    assert max(s for _, s in closed.scores) == closed.peak_score


# -- GET /cameras/{name}/detection ---------------------------------------------------------------

W, H = 1280, 720  # the sub stream is then 426x240
# Seed 4's scene bumps the camera in every 4 s loop: the ROIs must follow.
SIM_ARGS = ("--main-size", f"{W}x{H}", "--loop-seconds", "4", "--seed", "4",
            "--profile", "generic-onvif")  # fmt: skip
DOOR = RoiSpec(id="door", polygon=[(0.7, 0.2), (0.9, 0.2), (0.8, 0.8)], sensitivity=0.8)


class Served:
    """The agent's HTTP API on a free port, in this process."""

    def __init__(self, runtime: AgentRuntime) -> None:
        self.port = free_port()
        config = uvicorn.Config(create_app(runtime), port=self.port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started, 10, what="agent API")

    def get(self, path: str) -> httpx.Response:
        return httpx.get(f"http://127.0.0.1:{self.port}{path}", timeout=10)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[AgentRuntime, Served]]:
    config = AgentConfig(data_dir=tmp_path / "data", defaults=Defaults(segment_seconds=2.0))
    runtime = AgentRuntime(config, snapshots=False)
    runtime.start()
    api = Served(runtime)
    yield runtime, api
    api.stop()
    runtime.stop()


def test_detection_state_lists_rois_where_they_are_now_with_their_scores(
    tmp_path: Path, served: tuple[AgentRuntime, Served]
) -> None:
    runtime, api = served
    rois = [*tiny_model(tmp_path / "cam1.camfleet-model", "cam1"), DOOR]
    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=1)
    try:
        streams = sim.get("/cameras")[0]["streams"]  # type: ignore[index]
        cam = CameraConfig(name="cam1", url=streams["main"]["url"], sub_url=streams["sub"]["url"],
                           profile="generic-onvif", detect_fps=5.0, rois=rois)  # fmt: skip
        assert api.get("/cameras/nope/detection").status_code == 404

        # No model: the ROIs as drawn, nothing scored.
        assert runtime.apply_cameras([cam]) == {}

        def state() -> dict[str, Any]:
            answer = api.get("/cameras/cam1/detection")
            assert answer.status_code == 200, answer.text
            return answer.json()  # type: ignore[no-any-return]

        got = wait_for(lambda: (s := state())["width"] and s, 20, what="the sub stream's size")
        assert (got["stream"], got["width"], got["height"]) == ("sub", 426, 240)
        assert got["inspection"] is True and got["model_version"] is None
        assert [r["id"] for r in got["rois"]] == ["yard", "door"]
        for roi, spec in zip(got["rois"], rois, strict=True):
            assert roi["polygon"] == [list(p) for p in spec.polygon]
            assert roi["sensitivity"] == spec.sensitivity
            assert (roi["trained"], roi["score"], roi["threshold"], roi["event_open"]) == (
                False, None, None, False)  # fmt: skip

        # With the model: its ROI scored, the other listed as not trained.
        with_model = cam.model_copy(update={"model": tmp_path / "cam1.camfleet-model"})
        assert runtime.apply_cameras([with_model]) == {}
        got = wait_for(lambda: (s := state())["rois"][0]["score"] is not None and s, 20,
                       what="a score")  # fmt: skip
        assert got["model_version"].startswith("cam1-")
        yard, door = got["rois"]
        assert yard["trained"] and yard["threshold"] > 0 and yard["stamp_us"] > 0
        assert not door["trained"] and door["score"] is None

        # The camera moves: the ROIs are placed where they are now, as in the main stream.
        def moved() -> dict[str, Any] | None:
            s = state()
            adj = s["adjustment"]
            return s if adj and displacement(RoiAdjustment(**adj), IDENTITY, W, H) > 8 else None

        got = wait_for(moved, 15, what="the camera's bump")
        adj = RoiAdjustment(**got["adjustment"])
        for roi, spec in zip(got["rois"], rois, strict=True):
            in_main = place_polygon(spec.polygon, adj, W, H) / (W, H)
            assert np.abs(np.array(roi["placed"]) - in_main).max() < 0.01, (roi, in_main)
            assert np.abs(np.array(roi["placed"]) - np.array(spec.polygon)).max() > 0.005
        assert got["view_lost"] is False
    finally:
        sim.stop()
