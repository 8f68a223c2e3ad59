"""`camfleet model train-sim`: a simulated camera's model from the loop the simulator serves, as
the demo trains them — a model the agent loads — and the footage it learns from: the scored
stream's anomaly-free frames, thinned to the fps asked for."""

from __future__ import annotations

import subprocess
import sys
from itertools import pairwise
from pathlib import Path

import pytest
from conftest import REPO, SIM_CACHE

from agent.detection.loaded_model import load_model
from agent.detection.model.artifact import ModelArtifact
from agent.detection.model.sim_footage import served_normal_frames
from agent.evaluation.run import ROI_NAMES
from fleet.profiles import load_profile
from fleet.sim.build import SimOptions, plan_cameras

# Small, so decoding and training take seconds: the sub stream is then 214x120.
SCENE = ("--profile", "hikvision", "--main-size", "640x360", "--cache-dir", SIM_CACHE)


def train_sim(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "fleet.cli.main", "model", "train-sim", *SCENE, *args],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )  # fmt: skip


@pytest.mark.slow
def test_train_sim_writes_a_model_the_agent_loads(tmp_path: Path) -> None:
    out = tmp_path / "cam2.camfleet-model"
    done = train_sim("--camera", "cam2", "--cameras", "2", "--out", str(out))
    assert done.returncode == 0, done.stderr[-2000:]
    assert "cam2/sub" in done.stdout and "cropping ROIs" in done.stderr  # source and progress

    loaded, extractor = load_model(out, "cam2")
    assert loaded.model_version.startswith("cam2-")
    assert loaded.roi_ids == list(ROI_NAMES)  # the evaluation's ROIs by default
    assert extractor[4:8] == b"TFL3"  # a .tflite flatbuffer for the inference pool
    trained = ModelArtifact.read(out).manifest.training.frames
    options = SimOptions(cameras=2, profile=load_profile("hikvision"), main_size=(640, 360),
                         cache_dir=Path(SIM_CACHE))  # fmt: skip
    assert trained == len(list(served_normal_frames(options, "cam2", 5.0)))


def test_the_footage_is_the_served_loops_normal_frames() -> None:
    options = SimOptions(cameras=1, profile=load_profile("hikvision"), main_size=(640, 360),
                         cache_dir=Path(SIM_CACHE))  # fmt: skip
    spec = plan_cameras(options)[0].spec
    assert spec.anomalies, "a loop without anomalies proves nothing here"
    frames = list(served_normal_frames(options, "cam1", 5.0))

    assert {(f.width, f.height) for _, f in frames} == {(214, 120)}  # the sub stream's size
    stamps = [stamp / 1e6 for stamp, _ in frames]
    for t in stamps:
        assert not any(a.start_s <= t < a.end_s for a in spec.anomalies), t
    assert all(b - a >= 1 / 5.0 - 1e-6 for a, b in pairwise(stamps))
    loop_s = spec.frame_count / spec.fps
    assert stamps[0] == 0 and stamps[-1] > 0.9 * loop_s  # the whole loop, once
    normal_s = loop_s - sum(a.end_s - a.start_s for a in spec.anomalies)
    assert len(frames) >= 0.75 * normal_s * 5.0  # thinned, not starved


def test_an_unknown_camera_is_refused_with_the_ones_there_are(tmp_path: Path) -> None:
    out = tmp_path / "cam3.camfleet-model"
    done = train_sim("--camera", "cam3", "--cameras", "2", "--out", str(out))
    assert done.returncode == 2
    assert "no camera 'cam3'" in done.stderr and "cam1 .. cam2" in done.stderr, done.stderr
    assert not out.exists()
