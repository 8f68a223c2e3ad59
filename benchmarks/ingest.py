"""Recording cost per camera: camfleet's agent (ingest + stamp + record, no decode) against one
`ffmpeg -c copy -f segment` process per camera (how Frigate records), in the same run.

The simulator is pinned to CPU 0; the agent, then the ffmpeg recorders, are pinned to CPU 1 and
measured over equal steady windows (every stream already streaming). Then the detection
consumer's decode cost: PyAV decoding a recorded 1080p15 segment against `ffmpeg -benchmark`.

    python -m benchmarks.ingest [--cameras 16] [--seconds 20]
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import av

from agent.fanout.hub import PyAVDecoder
from agent.frames import StreamInfo
from agent.runtime import AgentRuntime
from benchmarks.machine import CpuWindow, describe
from benchmarks.simulator import PROFILE, REPO, pinned, simulator
from fleet.config import AgentConfig
from fleet.profiles import load_profile

SEGMENT_SECONDS = 10.0
STARTUP_TIMEOUT_S = 30.0
DECODE_RUNS = 3  # best of: the machine may be shared
# Longest wait after the window for the recorder to index what was received in it (it indexes
# a fragment, one GOP of 2 s, late; more under load).
DRAIN_TIMEOUT_S = 30.0


# -- the agent side (runs in its own process, pinned) -----------------------------------------


def agent_worker(urls: list[str], data_dir: Path) -> None:
    """Record `urls` with the agent's own runtime, inspection and snapshots off (no decode);
    print READY once all stream. On a stdin line (the window's end) note what each stream has
    received, wait until the recorder has taken all of it to disk and index, stop, and print
    the counts as JSON."""
    config = AgentConfig(
        data_dir=data_dir,
        defaults={"segment_seconds": SEGMENT_SECONDS},
        cameras=[
            {"name": f"cam{i + 1}", "url": url, "profile": PROFILE, "inspect": False}
            for i, url in enumerate(urls)
        ],
    )
    runtime = AgentRuntime(config, snapshots=False)
    connections = [p.connection for p in runtime.pipelines.values()]
    runtime.start()
    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while any(c.stats().packets == 0 for c in connections):
        if time.monotonic() > deadline:
            raise SystemExit("agent worker: not every stream delivered a packet in time")
        time.sleep(0.1)
    print("READY", flush=True)
    sys.stdin.readline()
    cut = {f"{c.camera}/{c.stream}": c.stats().packets for c in connections}
    drained = _wait_recorded(runtime, cut)
    runtime.stop()
    rec = runtime.recording.stats()
    print(
        json.dumps(
            {
                "window_received": cut,
                "drained": drained,
                "received": sum(c.stats().packets for c in connections),
                "reconnects": sum(c.stats().reconnects for c in connections),
                "recorder": asdict(rec) if rec else None,
            }
        ),
        flush=True,
    )


def _wait_recorded(runtime: AgentRuntime, cut: dict[str, int]) -> bool:
    """Wait until the recorder has accounted for (recorded and indexed, or counted as not
    recordable) every packet received by the cut. Frames are indexed a fragment (a GOP) late, so
    this takes a GOP or two; False if it did not happen within DRAIN_TIMEOUT_S."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while time.monotonic() < deadline:
        rec = runtime.recording.stats()
        streams = rec.streams if rec else {}
        if all(
            (s := streams.get(name)) is not None
            and s.recorded + s.before_keyframe + s.lost >= received
            for name, received in cut.items()
        ):
            return True
        time.sleep(0.1)
    return False


def _window_counts(cut: dict[str, int], streams: dict[str, dict[str, int]]) -> dict[str, int]:
    """Frames received by the end of the window and what became of them, stream by stream. The
    recorder takes a stream's frames in order, so of its recorded frames the first ones are the
    window's; frames it lost are all put down to the window (exact when it lost none)."""
    received = recorded = before = 0
    for name, n in cut.items():
        s = streams.get(name, {"recorded": 0, "before_keyframe": 0, "lost": 0})
        before_keyframe = min(n, s["before_keyframe"])
        received += n
        before += before_keyframe
        recorded += max(0, min(n - before_keyframe - s["lost"], s["recorded"]))
    return {"received": received, "recorded": recorded, "before_keyframe": before,
            "lost": received - recorded - before}  # fmt: skip


def measure_agent(urls: list[str], seconds: float, data_dir: Path) -> dict[str, Any]:
    worker = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.ingest", "--agent-worker", "--data-dir", str(data_dir),
         *urls],
        cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        **pinned(1),
    )  # fmt: skip
    assert worker.stdin is not None and worker.stdout is not None
    try:
        if worker.stdout.readline().strip() != "READY":
            raise SystemExit(f"agent worker failed to start (exit {worker.wait(10)})")
        with CpuWindow([worker.pid]) as window:
            time.sleep(seconds)
        out, _ = worker.communicate("stop\n", timeout=60 + DRAIN_TIMEOUT_S)
    finally:
        if worker.poll() is None:
            worker.kill()
    stats = json.loads(out)
    streams = stats["recorder"]["streams"]
    pushed = sum(s["packets"] for s in streams.values())
    return {
        "window": window,
        "in_window": _window_counts(stats["window_received"], streams),
        "drained": stats["drained"],
        "received": stats["received"],
        "pushed": pushed,
        "recorded": sum(s["recorded"] for s in streams.values()),
        "recorder_lost": sum(s["lost"] for s in streams.values()),
        "after_recorder": stats["received"] - pushed,
        "reconnects": stats["reconnects"],
        "errors": stats["recorder"]["errors"],
    }


# -- the ffmpeg side ------------------------------------------------------------------------------


def measure_ffmpeg(urls: list[str], seconds: float, out_dir: Path) -> dict[str, Any]:
    procs: list[subprocess.Popen[bytes]] = []
    dirs = [out_dir / f"cam{i + 1}" for i in range(len(urls))]
    try:
        for url, d in zip(urls, dirs, strict=True):
            d.mkdir(parents=True)
            cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error",
                   "-rtsp_transport", "tcp", "-i", url, "-c", "copy", "-f", "segment",
                   "-segment_time", str(int(SEGMENT_SECONDS)), "-reset_timestamps", "1",
                   str(d / "out%03d.mp4")]  # fmt: skip
            procs.append(subprocess.Popen(cmd, stderr=subprocess.DEVNULL, **pinned(1)))
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        # Streaming once the first segment has data in it.
        while not all(
            (d / "out000.mp4").exists() and (d / "out000.mp4").stat().st_size for d in dirs
        ):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise SystemExit("ffmpeg recorders did not all start streaming")
            time.sleep(0.1)
        with CpuWindow([p.pid for p in procs]) as window:
            time.sleep(seconds)
    finally:
        for p in procs:
            p.send_signal(signal.SIGINT)  # finishes the open segment properly
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
    segments = sorted(out_dir.glob("cam*/out*.mp4"))
    return {
        "window": window,
        "recorded": sum(_count_packets(s) for s in segments),
        "segments": segments,
    }


def _count_packets(path: Path) -> int:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_packets", "-select_streams", "v:0", "-show_entries",
         "stream=nb_read_packets", "-of", "csv=p=0", str(path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    return int(out.stdout.strip() or 0)


# -- decode cost for the detection consumer ------------------------------------------------------


def decode_worker(path: Path) -> None:
    """Demux and decode `path` the way the hub's decoder does; print frames and CPU seconds."""
    t0 = time.process_time()
    with av.open(str(path)) as container:
        s = container.streams.video[0]
        assert s.time_base is not None
        info = StreamInfo("bench", "main", s.codec_context.name, s.width, s.height, s.time_base,
                          s.codec_context.extradata, None, 0)  # fmt: skip
        decoder = PyAVDecoder(info, keyframes_only=False)
        frames = sum(len(decoder.decode(p)) for p in container.demux(s))
    print(json.dumps({"frames": frames, "cpu": time.process_time() - t0}))


def measure_decode(path: Path) -> dict[str, float]:
    pyav, ff = [], []
    for _ in range(DECODE_RUNS):
        out = subprocess.run(
            [sys.executable, "-m", "benchmarks.ingest", "--decode-worker", str(path)],
            cwd=REPO, capture_output=True, text=True, check=True,
            **pinned(1),
        )  # fmt: skip
        pyav.append(json.loads(out.stdout))
        bench = subprocess.run(
            ["ffmpeg", "-hide_banner", "-nostdin", "-benchmark", "-i", str(path),
             "-f", "null", "-"],
            capture_output=True, text=True, check=True,
            **pinned(1),
        )  # fmt: skip
        m = re.search(r"utime=([\d.]+)s stime=([\d.]+)s", bench.stderr)
        frames = re.findall(r"frame=\s*(\d+)", bench.stderr)
        if m is None or not frames:
            raise SystemExit(f"cannot read ffmpeg -benchmark output: {bench.stderr[-300:]!r}")
        ff.append({"frames": int(frames[-1]), "cpu": float(m[1]) + float(m[2])})
    best_pyav = min(pyav, key=lambda r: r["cpu"])
    best_ff = min(ff, key=lambda r: r["cpu"])
    return {
        "pyav_ms": best_pyav["cpu"] / best_pyav["frames"] * 1000,
        "ffmpeg_ms": best_ff["cpu"] / best_ff["frames"] * 1000,
        "frames": best_pyav["frames"],
        "ffmpeg_frames": best_ff["frames"],
    }


# -- the run ----------------------------------------------------------------------------------


def _per_camera_minute(window: CpuWindow, n: int) -> float:
    return window.cpu / n / (window.wall / 60)


def run(n: int, seconds: float, distinct_scenes: int) -> None:
    print(f"machine: {describe()}")
    work = Path(tempfile.mkdtemp(prefix="camfleet-bench-ingest-"))
    with simulator(n, distinct_scenes, timeout=600) as (_sim, urls):
        ours = measure_agent(urls, seconds, work / "agent")
        peer = measure_ffmpeg(urls, seconds, work / "ffmpeg")
    # A full (not the last, cut-short) 10 s segment of one camera.
    sample = next((s for s in peer["segments"] if s.name == "out001.mp4"), peer["segments"][0])
    decode = measure_decode(sample)
    shutil.rmtree(work, ignore_errors=True)

    a, f = _per_camera_minute(ours["window"], n), _per_camera_minute(peer["window"], n)
    cores = ours["window"].cores
    print(f"cameras: {n} x 1080p15 4 Mbit/s ({PROFILE}), steady windows {seconds:.0f} s each")
    # The agent takes the transport from the camera's profile; the ffmpeg peer always uses TCP.
    print(f"RTSP transport: camfleet {load_profile(PROFILE).transport}, ffmpeg tcp")
    print(f"camfleet agent  : {a:.3f} CPU s per camera-minute ({cores * 100:.1f}% of one core)")
    print(
        f"ffmpeg x{n:<7d}: {f:.3f} CPU s per camera-minute "
        f"({peer['window'].cores * 100:.1f}% of one core)"
    )
    print(f"ratio camfleet/ffmpeg: {a / f:.2f}")
    w = ours["in_window"]
    print(
        f"camfleet frames received by the window's end: {w['received']}, recorded and indexed "
        f"{w['recorded']}, before first keyframe {w['before_keyframe']}, lost {w['lost']}"
        + ("" if ours["drained"] else f" (recorder not caught up within {DRAIN_TIMEOUT_S:g} s)")
    )
    print(
        f"camfleet frames by the stop: received {ours['received']}, pushed to recorder "
        f"{ours['pushed']}, recorded {ours['recorded']}, lost by recorder {ours['recorder_lost']}; "
        f"{ours['after_recorder']} arrived after the recorder stopped "
        f"(reconnects {ours['reconnects']}, recorder errors {ours['errors']})"
    )
    print(
        f"ffmpeg frames: recorded {peer['recorded']} in {len(peer['segments'])} segments "
        "(ffprobe -count_packets; ffmpeg does not report packets received, so no loss count)"
    )
    per_core = n / cores if cores else float("inf")
    print(f"cameras one core records (camfleet, extrapolated from CPU fraction): {per_core:.0f}")
    print(
        f"decode 1080p15 ({decode['frames']} frames of {sample.parent.name}/{sample.name}, "
        f"best of {DECODE_RUNS}, one core): PyAV {decode['pyav_ms']:.2f} ms/frame, "
        f"ffmpeg -benchmark {decode['ffmpeg_ms']:.2f} ms/frame "
        f"({decode['ffmpeg_frames']} frames), ratio {decode['pyav_ms'] / decode['ffmpeg_ms']:.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cameras", type=int, default=16)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--distinct-scenes", type=int, default=4)
    ap.add_argument("--agent-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--data-dir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--decode-worker", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("urls", nargs="*", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.agent_worker:
        agent_worker(args.urls, args.data_dir)
    elif args.decode_worker:
        decode_worker(args.decode_worker)
    else:
        run(args.cameras, args.seconds, args.distinct_scenes)


if __name__ == "__main__":
    main()
