"""A camera's main and sub streams end to end: one connection each, both recorded and served."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import SimProcess, free_port, require_tool, start_sim, wait_for
from test_agent_cli_config import ConfiguredAgent, camera_toml, start_configured
from test_agent_e2e import SIM_ARGS, Agents, streaming, verify

from agent.recording.index import Index
from fleet.utc import parse_time_us


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[Agents]:
    agents = Agents(tmp_path)
    yield agents
    agents.kill_all()


def _probe(ffprobe: str, path: Path) -> dict[str, Any]:
    """The video stream of a file as ffprobe reads it (frames counted); fails on any error."""
    out = subprocess.run(
        [ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_streams",
         "-of", "json", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0 and not out.stderr, (path, out.stderr)
    return json.loads(out.stdout)["streams"][0]  # type: ignore[no-any-return]


def _sim_camera(sim: SimProcess) -> dict[str, Any]:
    cameras = sim.get("/cameras")
    assert isinstance(cameras, list) and len(cameras) == 1, cameras
    camera: dict[str, Any] = cameras[0]
    return camera


def _closed(agent: ConfiguredAgent, stream: str) -> list[dict[str, Any]]:
    rec = agent.get(f"/cameras/cam1/recordings?stream={stream}").json()
    return [s for s in rec["segments"] if s["status"] == "closed"]


def test_main_and_sub_stream_recorded_with_one_session_each(
    tmp_path: Path, configured: Agents
) -> None:
    ffprobe = require_tool("ffprobe")
    data, port = tmp_path / "data", free_port()
    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=1)
    try:
        sim_cam = _sim_camera(sim)
        urls = {kind: s["url"] for kind, s in sim_cam["streams"].items()}
        assert urls["sub"].endswith("/Streaming/Channels/102"), urls  # the profile's sub path
        config = tmp_path / "agent.toml"
        config.write_text('data_dir = "data"\n' + camera_toml("cam1", urls["main"], urls["sub"]))
        agent = start_configured(
            configured, port, "--config", str(config), "--data", str(data),
            "--http-port", str(port), "--segment-seconds", "2", "--detect-fps", "5",
        )  # fmt: skip
        wait_for(lambda: streaming(agent, "cam1/main", "cam1/sub"), timeout=30,
                 what="main and sub streaming")  # fmt: skip
        for stream in ("main", "sub"):
            wait_for(lambda stream=stream: len(_closed(agent, stream)) >= 2, timeout=20,  # type: ignore[misc]
                     what=f"two closed {stream} segments")  # fmt: skip
        # Detection (and so the audit) looks at the sub stream when there is one.
        wait_for(lambda: agent.stats()["streams"]["cam1/sub"]["analysed"] >= 10, timeout=20,
                 what="audited frames")  # fmt: skip
        assert agent.stats()["streams"]["cam1/main"]["analysed"] == 0
        snap = agent.get("/cameras/cam1/snapshot.jpg?stream=sub")
        assert snap.status_code == 200 and snap.content[:2] == b"\xff\xd8"

        sim_cam = _sim_camera(sim)
        assert {k: s["clients"] for k, s in sim_cam["streams"].items()} == {"main": 1, "sub": 1}
        assert sim_cam["sessions_total"] == 2 and sim_cam["sessions_rejected"] == 0, sim_cam
        # Main and sub are the camera's two encoders: one client on each degrades neither.
        assert not sim_cam["degraded"], sim_cam
        stats = agent.stats()
        assert set(stats["streams"]) == {"cam1/main", "cam1/sub"}
        assert stats["recorder"]["streams"]["cam1/sub"]["state"] == "recording", stats["recorder"]

        sub = _closed(agent, "sub")
        sub_size = (sim_cam["streams"]["sub"]["width"], sim_cam["streams"]["sub"]["height"])
        main_size = (sim_cam["streams"]["main"]["width"], sim_cam["streams"]["main"]["height"])
        assert sub_size != main_size
        # Up to the last closed frame: the next segment's keyframe is stamped at this one's end.
        frm, to_us = sub[0]["start"], parse_time_us(sub[-1]["end"]) - 1
        clip = agent.get(f"/cameras/cam1/clip?stream=sub&from={frm}&to={to_us}")
        assert clip.status_code == 200, clip.text
        (tmp_path / "sub-clip.mp4").write_bytes(clip.content)
        probed = _probe(ffprobe, tmp_path / "sub-clip.mp4")
        assert (probed["width"], probed["height"]) == sub_size
        assert int(probed["nb_read_frames"]) == int(clip.headers["X-Camfleet-Frames"])
        assert int(clip.headers["X-Camfleet-Frames"]) == sum(s["frames"] for s in sub)
        frame = agent.get(f"/cameras/cam1/frame?stream=sub&at={frm}")
        assert frame.status_code == 200 and frame.content[:2] == b"\xff\xd8"
        agent.stop()
    finally:
        sim.stop()

    code, out = verify(data, "cam1")  # checks both streams' hash chains, and the audits
    assert code == 0, out
    assert int(out.split("frames checked")[1].split()[0]) >= 10, out
    with Index.open(data) as index:
        for stream, size in (("main", main_size), ("sub", sub_size)):
            segments = index.segments("cam1", stream, status="closed")
            assert len(segments) >= 2
            for seg in segments:
                probed = _probe(ffprobe, index.resolve(seg.path))
                assert (probed["width"], probed["height"]) == size, (stream, probed)
                assert int(probed["nb_read_frames"]) == seg.frames, (seg, probed)
