"""The simulated cameras every benchmark measures against, as their own pinned process."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "camfleet" / "sim"
PROFILE = "generic-onvif"  # 1080p15, 4 Mbit/s, GOP 30
LOOP_SECONDS = 30


def pinned(cpu: int) -> dict[str, Any]:
    """Popen arguments that run the child on one CPU (when there are two or more)."""
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return {}
    return {"preexec_fn": lambda: os.sched_setaffinity(0, {cpu})}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def camera_urls(port: int, n: int) -> list[str]:
    return [f"rtsp://127.0.0.1:{port}/cam{i + 1}" for i in range(n)]


def _wait_http(url: str, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited with {proc.returncode}")
        try:
            httpx.get(url, timeout=1).raise_for_status()
            return
        except httpx.HTTPError:
            time.sleep(0.3)
    raise SystemExit(f"{url} did not answer within {timeout}s")


@contextlib.contextmanager
def simulator(
    n: int, distinct_scenes: int, cpu: int = 0, timeout: float = 1800
) -> Iterator[tuple[subprocess.Popen[bytes], list[str]]]:
    """`camfleet sim` with n 1080p15 cameras pinned to `cpu`; yields it and its camera URLs.

    The first run encodes the distinct scene loops (minutes); later runs load them from CACHE.
    """
    port, http_port = free_port(), free_port()
    sim = subprocess.Popen(
        [sys.executable, "-m", "fleet.cli.main", "sim", "--cameras", str(n), "--port", str(port),
         "--http-port", str(http_port), "--profile", PROFILE, "--loop-seconds", str(LOOP_SECONDS),
         "--distinct-scenes", str(distinct_scenes), "--cache-dir", str(CACHE)],
        cwd=REPO, **pinned(cpu),
    )  # fmt: skip
    try:
        _wait_http(f"http://127.0.0.1:{http_port}/health", sim, timeout)
        yield sim, camera_urls(port, n)
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(20)
