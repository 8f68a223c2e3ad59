"""The simulator as real clients see it: ffprobe, PyAV (TCP and UDP), GStreamer's rtspsrc."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
from pathlib import Path

import av
import pytest
from conftest import REPO, require_tool, wait_for

from fleet.profiles import load_profile
from fleet.rtsp.message import ClientConnection, Response

# Small frames keep the first (uncached) encode cheap; the profile's fps and GOP are kept.
SIZE = "320x180"


@pytest.fixture(scope="module")
def hik(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    from conftest import start_sim

    truth = tmp_path_factory.mktemp("truth") / "truth.jsonl"
    sim = start_sim(
        str(tmp_path_factory.mktemp("sim")),
        "--profile", "hikvision", "--main-size", SIZE, "--loop-seconds", "4",
        "--truth", str(truth), "--seed", "7",
        cameras=2,
    )  # fmt: skip
    sim.truth_path = truth  # type: ignore[attr-defined]
    yield sim
    sim.stop()


def ffprobe(url: str, transport: str = "tcp") -> dict:  # type: ignore[type-arg]
    out = subprocess.run(
        [require_tool("ffprobe"), "-v", "error", "-rtsp_transport", transport,
         "-show_streams", "-of", "json", url],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    return json.loads(out.stdout)["streams"][0]  # type: ignore[no-any-return]


def decode(url: str, frames: int, transport: str = "tcp") -> list[av.VideoFrame]:
    with av.open(url, options={"rtsp_transport": transport, "timeout": "5000000"}) as c:
        out = []
        for frame in c.decode(video=0):
            out.append(frame)
            if len(out) >= frames:
                return out
    raise AssertionError(f"stream ended after {len(out)} frames")


def test_ffprobe_reads_main_and_sub_with_profile_fps(hik) -> None:  # type: ignore[no-untyped-def]
    prof = load_profile("hikvision")
    main = ffprobe(hik.rtsp + "/Streaming/Channels/101")
    assert (main["codec_name"], main["width"], main["height"]) == ("h264", 320, 180)
    num, den = (int(v) for v in main["avg_frame_rate"].split("/"))
    assert abs(num / den - prof.main.fps) < 0.5
    sub = ffprobe(hik.rtsp + "/Streaming/Channels/102")
    assert sub["codec_name"] == "h264"
    assert sub["width"] < main["width"]
    assert ffprobe(hik.rtsp + "/cam2")["width"] == 320


@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_pyav_decodes_over_tcp_and_udp(hik, transport: str) -> None:  # type: ignore[no-untyped-def]
    frames = decode(hik.rtsp + "/cam1", 20, transport)
    assert {(f.width, f.height) for f in frames} == {(320, 180)}
    pts = [f.pts for f in frames if f.pts is not None]
    assert pts == sorted(pts) and len(set(pts)) == len(pts)


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_gstreamer_rtspsrc_plays(hik, protocol: str) -> None:  # type: ignore[no-untyped-def]
    from interop.media import require_gst_python

    python = require_gst_python()
    out = subprocess.run(
        [python, str(Path(REPO) / "tests/peers/gst_rtsp_play.py"), hik.rtsp + "/cam1",
         "--protocol", protocol, "--frames", "20", "--timeout", "20"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert out.returncode == 0, result
    assert (result["frames"], result["width"], result["height"]) == (20, 320, 180)


def rtsp_exchange(port: int, *requests: bytes) -> list[Response]:
    """Send raw requests on one connection and collect the responses."""
    parser = ClientConnection()
    responses: list[Response] = []
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        for req in requests:
            s.sendall(req)
            while True:
                events = parser.receive_data(s.recv(65536))
                got = [e for e in events if isinstance(e, Response)]
                responses.extend(got)
                if got:
                    break
    return responses


def test_hostile_input_gets_an_error_and_others_are_served(hik) -> None:  # type: ignore[no-untyped-def]
    garbage = [
        b"FOO rtsp://x RTSP/1.0\r\nCSeq: 1\r\n\r\n",
        b"OPTIONS * RTSP/1.0\r\nCSeq: banana\r\n\r\n",
        b"DESCRIBE rtsp://127.0.0.1/nope RTSP/1.0\r\nCSeq: 3\r\n\r\n",
        b"PLAY rtsp://127.0.0.1/cam1 RTSP/1.0\r\nCSeq: 4\r\nSession: 123\r\n\r\n",
    ]
    statuses = [r.status for r in rtsp_exchange(hik.port, *garbage)]
    assert statuses == [501, 400, 404, 454]
    with socket.create_connection(("127.0.0.1", hik.port), timeout=5) as s:
        s.sendall(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX: " + b"a" * 100_000 + b"\r\n\r\n")
        reply = s.recv(4096)
    assert reply.startswith(b"RTSP/1.0 4")
    assert len(decode(hik.rtsp + "/cam1", 3)) == 3


def test_truth_is_served_and_written(hik) -> None:  # type: ignore[no-untyped-def]
    truth = wait_for(lambda: hik.get("/truth?camera=cam1"), timeout=10, what="truth records")
    rec = truth[0]
    assert rec["camera"] == "cam1" and rec["end_us"] > rec["start_us"]
    assert rec["kind"] in {"object_appears", "intrusion", "occlusion", "texture_change"}
    assert 0 <= rec["region"]["x"] <= 1 and rec["region_px"][2] > 0
    lines = wait_for(lambda: hik.truth_path.read_text().splitlines(), what="truth file")
    assert json.loads(lines[0])["camera"] in {"cam1", "cam2"}
    pose = hik.get(f"/truth/pose?camera=cam1&at={rec['start_us']}")
    assert pose["width"] == 320 and abs(pose["dx"]) < 50


def test_ws_discovery_names_rtsp_endpoints(sim_factory) -> None:  # type: ignore[no-untyped-def]
    from conftest import free_port

    from fleet.onvif.probe import discover

    port = free_port(socket.SOCK_DGRAM)
    sim = sim_factory("--main-size", SIZE, "--loop-seconds", "4", "--discovery-port", str(port))
    matches = discover(timeout=2.0, address="127.0.0.1", port=port)
    xaddrs = {x for m in matches for x in m.xaddrs}
    assert f"{sim.rtsp}/onvif/media/profile1/main" in xaddrs or any(
        x.startswith(sim.rtsp) for x in xaddrs
    )
    assert len(matches) == 2


def test_cli_reports_bad_profile() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "fleet.cli.main", "sim", "--profile", "nosuch"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 2
    assert "nosuch" in out.stderr


def test_truth_file_in_a_new_directory_is_created_and_cameras_stream(sim_factory, tmp_path) -> None:  # type: ignore[no-untyped-def]
    truth = tmp_path / "not" / "yet" / "truth.jsonl"
    sim = sim_factory("--main-size", SIZE, "--loop-seconds", "4", "--truth", str(truth),
                      cameras=1)  # fmt: skip
    wait_for(truth.exists, what="truth file")
    assert len(decode(sim.rtsp + "/cam1", 5)) == 5
