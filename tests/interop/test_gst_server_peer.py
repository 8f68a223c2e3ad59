"""GStreamer's RTSP server as a third-party peer: PyAV, ffprobe and GStreamer's rtspsrc read it."""

from __future__ import annotations

import itertools
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import av
import pytest
from conftest import free_port, require_tool
from media import (
    PEERS_DIR,
    gst_rtsp_play,
    gst_rtsp_server,
    make_h264_mp4,
    require_gst_python,
    stop_process,
)

WIDTH, HEIGHT, FPS, SECONDS = 640, 360, 15, 2
# One second past the file's end: reading this many frames proves the server loops it.
FRAMES_PAST_END = FPS * (SECONDS + 1)


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gst") / "pattern.mp4"
    return make_h264_mp4(path, WIDTH, HEIGHT, FPS, SECONDS)


@pytest.fixture(scope="module")
def url(media: Path) -> Iterator[str]:
    with gst_rtsp_server(media, udp=True) as (server_url, _proc):
        yield server_url


def test_pyav_reads_past_the_end_of_the_file_with_rising_pts(url: str) -> None:
    pts: list[int] = []
    decoded = 0
    with av.open(url, options={"rtsp_transport": "tcp", "timeout": "5000000"}) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert (stream.codec_context.width, stream.codec_context.height) == (WIDTH, HEIGHT)
        for packet in container.demux(stream):
            if packet.pts is not None:  # the first packet over RTSP may have none
                pts.append(packet.pts)
            for frame in packet.decode():
                assert (frame.width, frame.height) == (WIDTH, HEIGHT)
                decoded += 1
            if decoded >= FRAMES_PAST_END:
                break
    assert decoded >= FRAMES_PAST_END
    assert all(later > earlier for earlier, later in itertools.pairwise(pts)), pts


def test_ffprobe_sees_an_endless_h264_stream(url: str) -> None:
    probe = subprocess.run(
        [
            require_tool("ffprobe"),
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-show_streams",
            "-show_format",
            "-of",
            "json",
            url,
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=True,
    )
    report = json.loads(probe.stdout)
    (video,) = report["streams"]
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", WIDTH, HEIGHT)
    # A looped file must look like a camera: no duration for clients to stop at.
    assert "duration" not in report["format"]


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_gst_play_decodes_frames_past_the_end(url: str, protocol: str) -> None:
    code, report = gst_rtsp_play(url, protocol=protocol, frames=FRAMES_PAST_END, timeout=15)
    assert report == {
        "frames": FRAMES_PAST_END,
        "width": WIDTH,
        "height": HEIGHT,
        "protocol": protocol,
        "error": None,
    }
    assert code == 0


def test_gst_play_reports_an_unreachable_server() -> None:
    code, report = gst_rtsp_play(f"rtsp://127.0.0.1:{free_port()}/stream", frames=5, timeout=5)
    assert code == 1
    assert report["frames"] == 0
    assert report["error"]


def test_server_without_udp_refuses_udp(media: Path) -> None:
    with gst_rtsp_server(media) as (tcp_only, _proc):
        code, report = gst_rtsp_play(tcp_only, protocol="udp", frames=5, timeout=5)
    assert code == 1
    assert report["frames"] == 0
    assert report["error"]


def test_server_exits_cleanly_on_sigterm(media: Path) -> None:
    with gst_rtsp_server(media) as (_url, proc):
        assert stop_process(proc) == 0


def test_server_rejects_a_missing_file(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            require_gst_python(),
            str(PEERS_DIR / "gst_rtsp_server.py"),
            "--port",
            str(free_port()),
            "--file",
            str(tmp_path / "absent.mp4"),
        ],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert done.returncode == 2
    assert "no such file" in done.stderr
