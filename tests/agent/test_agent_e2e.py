"""The standalone agent against the simulator, as a user runs it: `camfleet agent run` + verify."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from conftest import REPO, free_port, require_tool, start_sim, wait_for

SIM_ARGS = ("--main-size", "320x180", "--loop-seconds", "4", "--profile", "hikvision")


class Agent:
    def __init__(self, data: Path, cameras: dict[str, str], log: Path) -> None:
        self.data, self.port = data, free_port()
        self.http = f"http://127.0.0.1:{self.port}"
        args = [arg for name, url in cameras.items() for arg in ("--camera", f"{name}={url}")]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "fleet.cli.main", "agent", "run", "--data", str(data),
             "--http-port", str(self.port), "--profile", "hikvision", "--segment-seconds", "2",
             "--detect-fps", "5", *args],
            stdout=log.open("wb"), stderr=subprocess.STDOUT, cwd=REPO,
        )  # fmt: skip
        self.log = log

    def get(self, path: str) -> httpx.Response:
        if self.proc.poll() is not None:
            raise AssertionError(f"agent exited: {self.log.read_text()[-3000:]}")
        return httpx.get(self.http + path, timeout=10)

    def stats(self) -> dict:  # type: ignore[type-arg]
        return self.get("/stats").raise_for_status().json()  # type: ignore[no-any-return]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(30)
        assert self.proc.returncode == 0, self.log.read_text()[-3000:]


class Agents:
    """Starts agents for a test (each with its own log) and kills what a failed test left."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.started: list[Agent] = []

    def __call__(self, cameras: dict[str, str], data: Path | None = None) -> Agent:
        log = self.tmp_path / f"agent{len(self.started)}.log"
        agent = Agent(data or self.tmp_path / "data", cameras, log)
        self.started.append(agent)
        return agent

    def kill_all(self) -> None:
        for a in self.started:
            if a.proc.poll() is None:
                a.proc.kill()
                a.proc.wait()


@pytest.fixture
def agent_factory(tmp_path: Path) -> Iterator[Agents]:
    agents = Agents(tmp_path)
    yield agents
    agents.kill_all()


def verify(data: Path, camera: str) -> tuple[int, str]:
    out = subprocess.run(
        [sys.executable, "-m", "fleet.cli.main", "agent", "verify", "--data", str(data),
         "--camera", camera],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )  # fmt: skip
    return out.returncode, out.stdout + out.stderr


def streaming(agent: Agent, *streams: str) -> bool:
    s = agent.stats()["streams"]
    return all(s[k]["state"] == "streaming" for k in streams)


def test_one_session_per_stream_recordings_clip_frame_and_verify(tmp_path, agent_factory) -> None:  # type: ignore[no-untyped-def]
    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=2)
    try:
        agent = agent_factory({"cam1": f"{sim.rtsp}/Streaming/Channels/101",
                               "cam2": f"{sim.rtsp}/Streaming/Channels/201"})  # fmt: skip
        wait_for(lambda: streaming(agent, "cam1/main", "cam2/main"), timeout=30, what="streaming")
        # Two live viewers pull snapshots while recording and audit run: still one session each.
        for _ in range(2):
            wait_for(lambda: agent.get("/cameras/cam1/snapshot.jpg").status_code == 200,
                     timeout=15, what="snapshot")  # fmt: skip
        wait_for(lambda: agent.stats()["streams"]["cam1/main"]["analysed"] >= 10, timeout=30,
                 what="audited frames")  # fmt: skip
        wait_for(lambda: len(agent.get("/cameras/cam1/recordings").json()["segments"]) >= 3,
                 timeout=30, what="three segments")  # fmt: skip
        for cam in sim.get("/cameras"):  # type: ignore[attr-defined]
            assert cam["clients"] == 1 and cam["sessions_total"] == 1, cam
            assert not cam["degraded"]

        rec = agent.get("/cameras/cam1/recordings").json()
        closed = [s for s in rec["segments"] if s["status"] == "closed"]
        ffprobe = require_tool("ffprobe")
        for seg in closed:
            assert seg["frames"] > 0 and seg["sha256"]
        files = sorted((tmp_path / "data" / "recordings" / "cam1").rglob("*.mp4"))
        assert len(files) >= len(closed)
        for f in files[: len(closed)]:
            subprocess.run([ffprobe, "-v", "error", str(f)], check=True, timeout=30)

        frm, to = closed[0]["start"], closed[-1]["end"]
        clip = agent.get(f"/cameras/cam1/clip?from={frm}&to={to}")
        assert clip.status_code == 200, clip.text
        path = tmp_path / "clip.mp4"
        path.write_bytes(clip.content)
        probe = subprocess.run(
            [ffprobe, "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)],
            capture_output=True, text=True, check=True, timeout=30,
        )  # fmt: skip
        stream = json.loads(probe.stdout)["streams"][0]
        assert stream["codec_name"] == "h264" and stream["width"] == 320
        assert int(stream["nb_read_frames"]) == int(clip.headers["X-Camfleet-Frames"])

        jpeg = agent.get(f"/cameras/cam1/frame?at={frm}")
        assert jpeg.status_code == 200 and jpeg.content[:2] == b"\xff\xd8"
        assert agent.get("/cameras/nope/recordings").status_code == 404
        assert agent.get("/cameras/cam1/frame?at=yesterday").status_code == 422
        assert "camfleet_packets_total" in agent.get("/metrics").text
        agent.stop()
    finally:
        sim.stop()
    for cam in ("cam1", "cam2"):
        code, out = verify(tmp_path / "data", cam)
        assert code == 0, out
        checked = int(out.split("frames checked")[1].split()[0])
        assert checked >= 10, out


def test_camera_lost_and_back_is_a_known_gap_and_verify_passes(tmp_path, agent_factory) -> None:  # type: ignore[no-untyped-def]
    port = free_port()
    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=1, port=port)
    agent = agent_factory({"cam1": f"{sim.rtsp}/cam1"})
    try:
        wait_for(lambda: streaming(agent, "cam1/main"), timeout=30, what="streaming")
        wait_for(lambda: agent.stats()["streams"]["cam1/main"]["analysed"] >= 10, timeout=30,
                 what="audited frames")  # fmt: skip
        sim.stop()
        wait_for(lambda: agent.stats()["streams"]["cam1/main"]["state"] == "backoff",
                 timeout=10, what="loss detected")  # fmt: skip
        sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=1, port=port)
        wait_for(lambda: streaming(agent, "cam1/main"), timeout=15, what="streaming again")

        def lost_gaps() -> list[dict[str, str]]:
            gaps = agent.get("/cameras/cam1/recordings").json()["gaps"]
            return [g for g in gaps if g["reason"] == "camera_lost"]

        wait_for(lost_gaps, timeout=10, what="the camera_lost gap in the ledger")
        assert all(g["detail"] for g in lost_gaps()), lost_gaps()  # ingest's reason is kept
        before = agent.stats()["streams"]["cam1/main"]["analysed"]
        wait_for(lambda: agent.stats()["streams"]["cam1/main"]["analysed"] >= before + 10,
                 timeout=30, what="analysed after reconnect")  # fmt: skip
        agent.stop()
    finally:
        sim.stop()
    code, out = verify(tmp_path / "data", "cam1")
    assert code == 0, out
    gaps = int(out.split("known gaps")[1].split()[0])
    assert gaps >= 1, out
    assert os.path.exists(tmp_path / "data" / "index.db")
