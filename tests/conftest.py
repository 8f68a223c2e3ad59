"""Shared test helpers: free ports, real tools, waiting on conditions (never sleep-and-hope)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NoReturn, TypeVar

import httpx
import pytest

T = TypeVar("T")

# Which Debian package provides each system tool the tests drive.
TOOL_PACKAGES = {
    "ffmpeg": "ffmpeg",
    "ffprobe": "ffmpeg",
    "mosquitto": "mosquitto",
    "gst-launch-1.0": "gstreamer1.0-tools",
    "chromium": "chromium",
}


def unavailable(msg: str) -> NoReturn:
    """A real peer this test needs is missing: fail under CI (nothing skips silently there),
    otherwise skip; either way saying what to install."""
    if os.environ.get("CI"):
        pytest.fail(msg)
    pytest.skip(msg)


def require_tool(name: str) -> str:
    """Path of a system tool, or `unavailable` with the package that provides it."""
    path = shutil.which(name) or (
        f"/usr/bin/{name}" if os.path.exists(f"/usr/bin/{name}") else None
    )
    if path:
        return path
    pkg = TOOL_PACKAGES.get(name, name)
    unavailable(f"{name} not found: install it with `apt-get install {pkg}` (or `make sysdeps`)")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(
    probe: Callable[[], T | None], timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    last_exc: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = probe()
            if value:
                return value
        except Exception as exc:  # the condition may not be reachable yet
            last_exc = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}: {last_exc!r}")


# -- the camera simulator as a real process -------------------------------------------------------

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Encoded scene loops are cached across test runs (deterministic from the seed).
SIM_CACHE = os.path.join(REPO, ".cache", "sim-test")


class SimProcess:
    def __init__(self, proc: subprocess.Popen[bytes], port: int, http_port: int, log: str) -> None:
        self.proc, self.port, self.http_port, self.log = proc, port, http_port, log
        self.rtsp = f"rtsp://127.0.0.1:{port}"
        self.http = f"http://127.0.0.1:{http_port}"

    def get(self, path: str) -> object:
        return httpx.get(self.http + path, timeout=5).raise_for_status().json()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def start_sim(
    tmp_dir: str, *args: str, cameras: int = 2, timeout: float = 120, port: int | None = None
) -> SimProcess:
    """Start `camfleet sim` on free ports (RTSP on `port` if given); wait until HTTP answers."""
    port, http_port = port or free_port(), free_port()
    log = os.path.join(tmp_dir, f"sim-{port}.log")
    cmd = [
        sys.executable, "-m", "fleet.cli.main", "sim",
        "--cameras", str(cameras), "--port", str(port), "--http-port", str(http_port),
        "--cache-dir", SIM_CACHE, *args,
    ]  # fmt: skip
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, cwd=REPO)
    sim = SimProcess(proc, port, http_port, log)

    def ready() -> bool:
        if proc.poll() is not None:
            raise RuntimeError(f"sim exited {proc.returncode}: {Path(log).read_text()[-2000:]}")
        return bool(sim.get("/health"))

    try:
        wait_for(ready, timeout=timeout, interval=0.2, what="camfleet sim to answer /health")
    except BaseException:
        sim.stop()
        raise
    return sim


@pytest.fixture
def sim_factory(tmp_path: Path) -> Iterator[Callable[..., SimProcess]]:
    started: list[SimProcess] = []

    def factory(*args: str, cameras: int = 2) -> SimProcess:
        sim = start_sim(str(tmp_path), *args, cameras=cameras)
        started.append(sim)
        return sim

    yield factory
    for sim in started:
        sim.stop()
