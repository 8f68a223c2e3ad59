"""How many simulated 1080p15 cameras one core serves, against GStreamer's RTSP server.

Both servers are pinned to CPU 0 and stream the same encoded loop to the same lean TCP client
(pinned to CPU 1) for the same time; we compare CPU seconds per camera-minute.

    python benchmarks/sim_serving.py [--cameras 32] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import signal
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av

from benchmarks.machine import CpuWindow, describe
from benchmarks.simulator import CACHE, LOOP_SECONDS, PROFILE, REPO, free_port, pinned, simulator
from fleet.profiles import load_profile
from fleet.rtsp.rtp import join_annexb
from fleet.sim.build import SimOptions, plan_cameras
from fleet.sim.encoded import EncodedLoop, encode_loops


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
        **pinned(1),
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
        stream.codec_context.extradata = join_annexb((loop.sps, loop.pps))
        step = round(90000 / enc.fps)
        for i, unit in enumerate(loop.units):
            pkt = av.Packet(join_annexb(unit.nals))
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
    gst_port = free_port()

    print(f"machine: {describe()}")
    print(f"preparing {args.distinct_scenes} distinct 1080p15 scene loops (cached after first run)")
    with simulator(n, args.distinct_scenes) as (sim, urls):
        ours = measure(sim, urls, args.seconds)

    opts = SimOptions(
        cameras=1, profile=load_profile(PROFILE), loop_seconds=LOOP_SECONDS, cache_dir=CACHE
    )
    plan = plan_cameras(opts)[0]
    loop = encode_loops(plan.spec, [plan.encodings["main"]], CACHE)["main"]
    mp4 = loop_as_mp4(loop, Path("/tmp/camfleet-bench-loop.mp4"))
    gst = subprocess.Popen(
        ["/usr/bin/python3", str(REPO / "tests/peers/gst_rtsp_server.py"), "--port", str(gst_port),
         "--file", str(mp4), "--path", "/cam", "--mounts", str(n)],
        cwd=REPO, stdout=subprocess.PIPE, **pinned(0),
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
