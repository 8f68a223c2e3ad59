"""Live video and detection state through the controller: the controller's app served by
uvicorn, a real upstream standing in for the agent (a real fragmented MP4 made by ffmpeg, sent
slowly in pieces), and real httpx clients."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import free_port, require_tool, wait_for
from web_fixtures import CODEC, Served, StandInAgent, served_controller, stand_in_agent


@pytest.fixture(scope="module")
def fmp4(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """Two seconds of H.264 as the agent's live.mp4 is: init segment, then moof+mdat pairs."""
    out = tmp_path_factory.mktemp("video") / "live.mp4"
    subprocess.run(
        [require_tool("ffmpeg"), "-hide_banner", "-loglevel", "error", "-f", "lavfi",
         "-i", "testsrc=size=160x96:rate=10", "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p",
         "-movflags", "frag_keyframe+empty_moov+default_base_moof", "-f", "mp4", str(out)],
        check=True, timeout=60,
    )  # fmt: skip
    return out.read_bytes()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    with served_controller(tmp_path / "controller") as s:
        yield s


def on_agent(served: Served, agent: StandInAgent) -> None:
    served.camera("cam1", owner=served.agent_serving("edge-01", agent.url))


def test_live_video_passes_through_unchanged_with_its_codec(served: Served, fmp4: bytes) -> None:
    assert fmp4[4:8] == b"ftyp" and b"moof" in fmp4  # fragmented, as the agent sends it
    with stand_in_agent(StandInAgent(video=fmp4, chunk=700)) as agent, served.browser() as web:
        on_agent(served, agent)
        with web.stream("GET", "/cameras/cam1/live.mp4", params={"stream": "main"}) as live:
            assert live.status_code == 200
            assert live.headers["content-type"] == "video/mp4"
            assert live.headers["x-camfleet-codec"] == CODEC
            received = b"".join(live.iter_bytes())
        assert received == fmp4
        assert agent.live_requests == [{"stream": "main"}]


def test_a_viewer_leaving_closes_the_upstream_request(served: Served, fmp4: bytes) -> None:
    with (
        stand_in_agent(StandInAgent(video=fmp4, chunk=700, endless=True)) as agent,
        served.browser() as web,
    ):
        on_agent(served, agent)
        with web.stream("GET", "/cameras/cam1/live.mp4") as live:
            chunks = live.iter_raw()
            got = b""
            while len(got) < 3 * len(fmp4):  # endless: more than the file, again and again
                got += next(chunks)
            assert got.startswith(fmp4)
            assert not agent.live_ended.is_set()
        assert agent.live_ended.wait(10), "the controller kept reading from the agent"
        wait_for(lambda: not served.server.server_state.tasks, 5, what="the relay to end")


def test_live_video_refusals_say_why(served: Served) -> None:
    with served.client() as anonymous:
        assert anonymous.get("/cameras/cam1/live.mp4").status_code == 401
    with served.browser() as web:
        missing = web.get("/cameras/ghost/live.mp4")
        assert missing.status_code == 404 and missing.json()["detail"] == "no camera 'ghost'"
        served.camera("idle", owner=None)
        idle = web.get("/cameras/idle/live.mp4")
        assert idle.status_code == 503 and "not assigned" in idle.json()["detail"]
        nobody_there = f"http://127.0.0.1:{free_port()}"
        served.camera("cam1", owner=served.agent_serving("edge-01", nobody_there))
        down = web.get("/cameras/cam1/live.mp4")
        assert down.status_code == 502
        assert down.json()["detail"].startswith("the agent serving 'cam1' did not answer")


def test_the_agents_own_refusal_is_passed_on(served: Served) -> None:
    with stand_in_agent(StandInAgent(refuse_live=503)) as agent, served.browser() as web:
        on_agent(served, agent)
        refused = web.get("/cameras/cam1/live.mp4")
        assert refused.status_code == 503
        assert refused.json() == {"detail": "stream not streaming"}


def test_detection_state_is_passed_through_as_json(served: Served) -> None:
    state = {"camera": "cam1", "inspection": True, "model_version": None, "rois": []}
    with stand_in_agent(StandInAgent(detection=state)) as agent, served.browser() as web:
        on_agent(served, agent)
        answer = web.get("/cameras/cam1/detection")
        assert answer.status_code == 200 and answer.json() == state
        assert answer.headers["content-type"] == "application/json"
        assert web.get("/cameras/ghost/detection").status_code == 404
