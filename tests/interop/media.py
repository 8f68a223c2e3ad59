"""Test media made with PyAV, and the GStreamer RTSP peers (tests/peers) that serve and play it."""

from __future__ import annotations

import functools
import json
import selectors
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from fractions import Fraction
from pathlib import Path
from typing import Any

import av
import numpy as np
from conftest import free_port, unavailable

PEERS_DIR = Path(__file__).resolve().parent.parent / "peers"
REPO_DIR = PEERS_DIR.parent.parent
# The peers need the python3-gi bindings, which only Debian's interpreter has (the venv has not).
GST_PYTHON = "/usr/bin/python3"


def make_h264_mp4(
    path: Path | str,
    width: int = 640,
    height: int = 360,
    fps: int = 15,
    seconds: float = 6,
    gop: int = 30,
) -> Path:
    """Write an H.264 MP4 of a moving pattern: fixed GOP, no B-frames, like an IP camera's."""
    if width <= 0 or height <= 0 or width % 2 or height % 2:
        raise ValueError(f"width and height must be positive and even, got {width}x{height}")
    if fps <= 0 or seconds <= 0 or gop <= 0:
        raise ValueError(f"fps, seconds and gop must be positive, got {fps}, {seconds}, {gop}")
    out = Path(path)
    ys, xs = np.mgrid[0:height, 0:width]
    box = min(width, height) // 4
    with av.open(str(out), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.time_base = Fraction(1, fps)
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = 0
        # scenecut=0 keeps keyframes exactly every `gop` frames, as cameras send them.
        stream.options = {
            "preset": "ultrafast",
            "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0",
        }
        for i in range(round(fps * seconds)):
            rgb = np.empty((height, width, 3), dtype=np.uint8)
            rgb[..., 0] = (xs + 4 * i) % 256
            rgb[..., 1] = (ys + 2 * i) % 256
            rgb[..., 2] = 96
            x0 = (8 * i) % (width - box)
            y0 = (4 * i) % (height - box)
            rgb[y0 : y0 + box, x0 : x0 + box] = 255
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            frame.pts = i
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    return out


@functools.cache
def _missing_gst_python() -> str | None:
    """What the install script says is missing for the GStreamer peers, or None."""
    check = subprocess.run(
        [
            "bash",
            str(REPO_DIR / "scripts" / "install-system-deps.sh"),
            "--check",
            "--only",
            "gstreamer",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return check.stdout.strip() if check.returncode else None


def require_gst_python() -> str:
    """Debian's python with GStreamer RTSP bindings; fails (CI) or skips, saying what to install."""
    missing = _missing_gst_python()
    if missing is None:
        return GST_PYTHON
    unavailable(f"GStreamer RTSP peers unavailable (or run `make sysdeps`):\n{missing}")


def _await_ready(proc: subprocess.Popen[str], timeout: float) -> str | None:
    """The URL from the peer's READY line, or None if it exits or stays silent past `timeout`."""
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while (left := deadline - time.monotonic()) > 0 and sel.select(left):
            line = proc.stdout.readline()
            if not line:
                return None
            if line.startswith("READY "):
                return line.split(maxsplit=1)[1].strip()
    return None


def stop_process(proc: subprocess.Popen[str], timeout: float = 5.0) -> int:
    """SIGTERM, then SIGKILL if it does not exit in `timeout` s; the exit code."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
    return proc.wait()


@contextmanager
def gst_rtsp_server(
    media: Path, *, path: str = "/stream", udp: bool = False, timeout: float = 10.0
) -> Iterator[tuple[str, subprocess.Popen[str]]]:
    """Run tests/peers/gst_rtsp_server.py on a free port; yield its URL and process."""
    cmd = [
        require_gst_python(),
        str(PEERS_DIR / "gst_rtsp_server.py"),
        "--port",
        str(free_port()),
        "--file",
        str(media),
        "--path",
        path,
    ]
    if udp:
        cmd.append("--udp")
    with tempfile.TemporaryFile("w+") as stderr:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=stderr, text=True)
        try:
            url = _await_ready(proc, timeout)
            if url is None:
                stop_process(proc)
                stderr.seek(0)
                raise AssertionError(
                    f"gst_rtsp_server.py not READY within {timeout}s (exit {proc.returncode}):\n"
                    f"{stderr.read()}"
                )
            yield url, proc
        finally:
            stop_process(proc)
            assert proc.stdout is not None
            proc.stdout.close()


def gst_rtsp_play(
    url: str, *, protocol: str = "tcp", frames: int = 30, timeout: float = 10.0
) -> tuple[int, dict[str, Any]]:
    """Run tests/peers/gst_rtsp_play.py; its exit code and its JSON report."""
    cmd = [
        require_gst_python(),
        str(PEERS_DIR / "gst_rtsp_play.py"),
        url,
        "--protocol",
        protocol,
        "--frames",
        str(frames),
        "--timeout",
        str(timeout),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout + 10, check=False)
    try:
        report: dict[str, Any] = json.loads(done.stdout)
    except json.JSONDecodeError as exc:
        raise AssertionError(
            f"gst_rtsp_play.py printed no report:\n{done.stdout}{done.stderr}"
        ) from exc
    return done.returncode, report
