"""How many simulated 1080p15 cameras one core serves, against GStreamer's RTSP server.

Both servers are pinned to CPU 0 and stream the same encoded loop to the same lean TCP client
(pinned to CPU 1) for the same time; we compare CPU seconds per camera-minute.

    python benchmarks/sim_serving.py [--cameras 32] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path

import av
import httpx

from benchmarks.machine import CpuWindow, describe
from fleet.profiles import load_profile
from fleet.sim.build import SimOptions, plan_cameras
from fleet.sim.encoded import EncodedLoop, encode_loops

REPO = Path(__file__).resolve().parents[1]
CACHE = Path.home() / ".cache" / "camfleet" / "sim"
PROFILE = "generic-onvif"  # 1080p15, 4 Mbit/s, GOP 30


def _pinned(cpu: int) -> dict[str, object]:
    if not hasattr(os, "sched_setaffinity") or (os.cpu_count() or 1) < 2:
        return {}
    return {"preexec_fn": lambda: os.sched_setaffinity(0, {cpu})}


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


def measure(server: subprocess.Popen[bytes], urls: list[str], seconds: float) -> dict[str, float]:
    """Run the reader against `urls` and account the server's CPU over the same window."""
    reader = subprocess.Popen(
        [
            sys.executable,
            str(REPO / "benchmarks" / "rtsp_reader.py"),
            "--seconds",
            str(seconds),
            *urls,
        ],
        stdout=subprocess.PIPE,
        cwd=REPO,
        **_pinned(1),  # type: ignore[call-overload]
    )
    with CpuWindow([server.pid]) as window:
        out, _ = reader.communicate(timeout=seconds + 60)
    counts = json.loads(out)
    errors = [c["error"] for c in counts if c["error"]]
    if errors:
        raise SystemExit(f"reader errors: {errors[:3]}")
    fps = load_profile(PROFILE).main.fps
    # Frames a camera should have delivered after its first keyframe arrived.
    expected = sum(int((seconds - c["first_frame_s"]) * fps) for c in counts)
    received = sum(int(c["frames"]) for c in counts)
    return {
        "cores": window.cores,
        "cpu_s_per_camera_minute": window.cpu / len(urls) / (window.wall / 60),
        "frames": received,
        "expected": expected,
        "mbit_s": sum(int(c["bytes"]) for c in counts) * 8 / seconds / 1e6,
    }


def loop_as_mp4(loop: EncodedLoop, path: Path) -> Path:
    """The simulator's cached loop, remuxed (not re-encoded) for GStreamer to serve."""
    enc = loop.encoding
    with av.open(str(path), "w") as out:
        stream = out.add_stream("h264", rate=Fraction(enc.fps).limit_denominator(1000))
        stream.width, stream.height = enc.width, enc.height
        stream.time_base = Fraction(1, 90000)
        stream.codec_context.extradata = b"\0\0\0\1" + loop.sps + b"\0\0\0\1" + loop.pps
        step = round(90000 / enc.fps)
        for i, unit in enumerate(loop.units):
            pkt = av.Packet(b"".join(b"\0\0\0\1" + n for n in unit.nals))
            pkt.pts = pkt.dts = i * step
            pkt.time_base = stream.time_base
            pkt.stream = stream
            pkt.is_keyframe = unit.keyframe
            out.mux(pkt)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cameras", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--distinct-scenes", type=int, default=4)
    args = ap.parse_args()
    n = args.cameras
    port, http_port, gst_port = 18554, 18080, 18555

    print(f"machine: {describe()}")
    print(f"preparing {args.distinct_scenes} distinct 1080p15 scene loops (cached after first run)")
    sim = subprocess.Popen(
        [sys.executable, "-m", "fleet.cli.main", "sim", "--cameras", str(n), "--port", str(port),
         "--http-port", str(http_port), "--profile", PROFILE, "--loop-seconds", "30",
         "--distinct-scenes", str(args.distinct_scenes), "--cache-dir", str(CACHE)],
        cwd=REPO, **_pinned(0),  # type: ignore[call-overload]
    )  # fmt: skip
    try:
        _wait_http(f"http://127.0.0.1:{http_port}/health", sim, timeout=1800)
        ours = measure(sim, [f"rtsp://127.0.0.1:{port}/cam{i + 1}" for i in range(n)], args.seconds)
    finally:
        sim.send_signal(signal.SIGTERM)
        sim.wait(20)

    opts = SimOptions(cameras=1, profile=load_profile(PROFILE), loop_seconds=30, cache_dir=CACHE)
    plan = plan_cameras(opts)[0]
    loop = encode_loops(plan.spec, [plan.encodings["main"]], CACHE)["main"]
    mp4 = loop_as_mp4(loop, Path("/tmp/camfleet-bench-loop.mp4"))
    gst = subprocess.Popen(
        ["/usr/bin/python3", str(REPO / "tests/peers/gst_rtsp_server.py"), "--port", str(gst_port),
         "--file", str(mp4), "--path", "/cam", "--mounts", str(n)],
        cwd=REPO, stdout=subprocess.PIPE, **_pinned(0),  # type: ignore[call-overload]
    )  # fmt: skip
    try:
        assert gst.stdout is not None
        ready = gst.stdout.readline().decode()
        if not ready.startswith("READY"):
            raise SystemExit(f"gst-rtsp-server did not start: {ready!r}")
        peer = measure(
            gst, [f"rtsp://127.0.0.1:{gst_port}/cam{i + 1}" for i in range(n)], args.seconds
        )
    finally:
        gst.send_signal(signal.SIGTERM)
        gst.wait(20)

    for name, r in (("camfleet sim", ours), ("gst-rtsp-server", peer)):
        print(
            f"{name:16s} {n} cams 1080p15: {r['cores'] * 100:5.1f}% of one core, "
            f"{r['cpu_s_per_camera_minute']:.3f} CPU s per camera-minute, "
            f"{r['mbit_s']:.0f} Mbit/s, frames {r['frames']}/{r['expected']} expected"
        )
    per_core = n / ours["cores"] if ours["cores"] else float("inf")
    print(f"cameras one core serves (sim): {per_core:.0f}")
    ratio = ours["cpu_s_per_camera_minute"] / peer["cpu_s_per_camera_minute"]
    print(f"ratio sim/gst CPU per camera: {ratio:.2f}")


if __name__ == "__main__":
    main()
