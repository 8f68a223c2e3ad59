"""Detection cost: how many cameras (sub stream 640x360 at 15 fps, 5 detect fps, 3 ROIs each)
one agent core analyses with no skipped frames.

1. The cost of a camera-second on one core, part by part, on a simulated scene's footage:
   decode (every 15 fps frame; PyAV against `ffmpeg -benchmark` on the same H.264 stream),
   registration at the drift tracker's rate, then per ROI at 5 fps: placement, change gate,
   inference (preparation + TFLite invoke, beside a raw back-to-back invoke) and event logic
   (PaDiM judge + persistence) — for the ROIs the gate passed on this footage and for the worst
   case where every crop passes. Hence a predicted number of cameras per core.
2. Sustain runs that check it: N cameras in one process pinned to one core, a thread each
   decoding its stream at real-time pace into the agent's DetectionService (pool of one
   interpreter thread), counting skipped frames, late frames and CPU. A short search from the
   prediction for the most cameras the core keeps pace with (no frame late), then one below
   any run that skipped for the most with no frame skipped. On this shared machine the pinned
   core is not all ours: each run prints what the rest of the machine used, and its CPU per
   camera-second gives the cameras a whole core would carry.

    python -m benchmarks.detect [--cameras N] [--seconds 20] [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.detection.gate import ChangeGate
from agent.detection.luma import luma_plane
from agent.detection.model.footage import FollowedView
from agent.detection.persistence import ScorePersistence
from agent.detection.roi_crop import RoiCropper
from agent.detection.service import DetectionService
from agent.detection.stats import CameraDetectStats
from agent.detection.tracking import DRIFT_FPS
from agent.evaluation.run import DETECT_FPS, FPS
from agent.fanout.hub import Decimator
from benchmarks.cpu_meter import OTHERS, CpuMeter
from benchmarks.detect_rig import ROIS, CameraFeed, Scene, say
from benchmarks.ingest import measure_decode
from benchmarks.machine import describe
from benchmarks.simulator import REPO, pinned
from fleet.litert import load_interpreter, runtime_name

CPU = 1  # the core every measured process is pinned to
POOL_SIZE = 1  # inference threads: one core
RAW_INVOKES = 500
WARMUP_S = 3.0  # gates learn their backgrounds, the first frames pass every ROI
MAX_CAMERAS = 200
SPREAD_FRAMES = 37  # cameras showing one scene start this many frames (~2.5 s) apart
STAGES = ("registration", "placement", "gate", "preparation", "invoke", "event logic")


@dataclass(frozen=True)
class Settings:
    seconds: float  # of each sustain window
    pace_runs: int  # sustain runs searching for the most cameras one core keeps pace with
    skip_runs: int  # more, below any that skipped, for the most with no skipped frame
    scenes: int  # distinct scenes (seeds 1..) the cameras cycle through
    footage_s: float  # of footage the cost split is measured on
    decode_loops: int  # the stream file for the decode comparison holds the loop this often


FULL = Settings(seconds=20.0, pace_runs=3, skip_runs=4, scenes=2, footage_s=60.0, decode_loops=3)
QUICK = Settings(seconds=8.0, pace_runs=2, skip_runs=2, scenes=1, footage_s=20.0, decode_loops=1)


# -- part 1: the cost split (runs in its own process, pinned) ---------------------------------


class Stages:
    """CPU time of this process per named stage; nothing else runs in it meanwhile."""

    def __init__(self) -> None:
        self.ns: dict[str, int] = dict.fromkeys(STAGES, 0)
        self.calls: dict[str, int] = dict.fromkeys(STAGES, 0)

    @contextlib.contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.process_time_ns()
        yield
        self.ns[stage] += time.process_time_ns() - start
        self.calls[stage] += 1


def costs_worker(workdir: Path, seed: int, seconds: float) -> None:
    """Each part of the detection of one camera over `seconds` of its footage, run one after
    the other on one thread: every ROI crop goes through inference and event logic whether the
    gate passed it or not, so both the gated and the worst case follow. Prints JSON."""
    scene = Scene.of(seed)
    model, extractor = scene.model(workdir)
    interpreter = load_interpreter(extractor)  # one thread, as the pool's
    x_index = interpreter.get_input_details()[0]["index"]
    y_index = interpreter.get_output_details()[0]["index"]
    view = FollowedView(scene.reference())
    drift, detect = Decimator(DRIFT_FPS), Decimator(DETECT_FPS)
    croppers = {r.id: RoiCropper(r.polygon) for r in ROIS}
    gates = {r.id: ChangeGate() for r in ROIS}
    persistence: dict[str, ScorePersistence] = {}
    stages, passed, crops, frames = Stages(), 0, 0, round(seconds * FPS)
    for n, f in enumerate(scene.frames(scene.detect, frames)):
        if n % 150 == 0:
            say(f"cost split: frame {n}/{frames}")
        luma = luma_plane(f.image)
        if drift.admit(f.stamp_us):
            with stages.timed("registration"):
                view.follow(luma, f.stamp_us)
        if not detect.admit(f.stamp_us):
            continue
        for roi in ROIS:
            with stages.timed("placement"):
                crop = croppers[roi.id].crop(luma, view.tracker.adjustment)
            if crop is None:
                continue
            crops += 1
            with stages.timed("gate"):
                passed += gates[roi.id].check(crop.pixels, crop.mask, f.stamp_us).passed
            with stages.timed("preparation"):
                x = model.prepare(crop.pixels, crop.mask)
                light = model.brightness(crop.pixels, crop.mask)
            with stages.timed("invoke"):
                interpreter.set_tensor(x_index, x)
                interpreter.invoke()
                y = interpreter.get_tensor(y_index).copy()
            with stages.timed("event logic"):
                verdict = model.judge(roi.id, y, light, roi.sensitivity, crop.mask)
                if roi.id not in persistence:  # made with the first verdict, as the detector does
                    persistence[roi.id] = ScorePersistence(verdict.threshold)
                persistence[roi.id].update(f.stamp_us, verdict.score)
    start = time.process_time_ns()
    for _ in range(RAW_INVOKES):
        interpreter.invoke()
    raw_ms = (time.process_time_ns() - start) / RAW_INVOKES / 1e6
    print(json.dumps({"seconds": frames / FPS, "ns": stages.ns, "calls": stages.calls,
                      "crops": crops, "passed": passed, "raw_invoke_ms": raw_ms}))  # fmt: skip


@dataclass(frozen=True)
class CostSplit:
    """Milliseconds of one core per camera-second, by part."""

    decode_ms_frame: float
    per_call_ms: dict[str, float]
    per_second: dict[str, float]  # calls per camera-second, every crop scored
    pass_rate: float  # share of crops the gate passed on the footage
    raw_invoke_ms: float

    @classmethod
    def of(cls, costs: dict[str, Any], decode_ms_frame: float) -> CostSplit:
        seconds = costs["seconds"]
        calls = costs["calls"]
        return cls(
            decode_ms_frame,
            {s: costs["ns"][s] / 1e6 / calls[s] if calls[s] else 0.0 for s in STAGES},
            {s: calls[s] / seconds for s in STAGES},
            costs["passed"] / costs["crops"] if costs["crops"] else 0.0,
            costs["raw_invoke_ms"],
        )

    def parts(self, pass_rate: float) -> dict[str, float]:
        """ms per camera-second when `pass_rate` of the crops pass the gate."""
        ms = {s: self.per_call_ms[s] * self.per_second[s] for s in STAGES}
        inference = (ms["preparation"] + ms["invoke"]) * pass_rate
        return {
            "decode": self.decode_ms_frame * FPS,
            "registration": ms["registration"],
            "placement": ms["placement"],
            "gate": ms["gate"],
            "inference": inference,
            "event logic": ms["event logic"] * pass_rate,
        }

    def cameras(self, pass_rate: float) -> float:
        return 1000.0 / sum(self.parts(pass_rate).values())

    @property
    def inference_ms(self) -> float:
        """Preparation and invoke of one crop, in the pipeline."""
        return self.per_call_ms["preparation"] + self.per_call_ms["invoke"]


def measure_costs(workdir: Path, seed: int, seconds: float) -> dict[str, Any]:
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.detect", "--costs-worker", "--workdir", str(workdir),
         "--seed", str(seed), "--seconds", str(seconds)],
        cwd=REPO, stdout=subprocess.PIPE, text=True, check=True,
        **pinned(CPU),
    )  # fmt: skip
    result: dict[str, Any] = json.loads(out.stdout)
    return result


# -- part 2: sustain runs (each in its own process, pinned) ----------------------------------


def sustain_worker(workdir: Path, scenes: int, cameras: int, seconds: float) -> None:
    """`cameras` cameras at real-time pace into one DetectionService; after WARMUP_S, count
    over a window of `seconds`. Prints JSON."""
    service = DetectionService(pool_size=POOL_SIZE)
    feeds = []
    models = [(s, s.model(workdir), s.reference()) for s in map(Scene.of, range(1, scenes + 1))]
    for i in range(cameras):
        scene, model, reference = models[i % scenes]
        skip = i // scenes * SPREAD_FRAMES % scene.detect.frame_count
        feed = CameraFeed(i, scene, model, reference, service, skip)
        feed.prime()
        feeds.append(feed)
    say(f"sustain {cameras}: {cameras} cameras ready")
    start = time.monotonic() + 0.2
    for feed in feeds:
        feed.start(start)
    meter = CpuMeter({"detect": [os.getpid()]})
    time.sleep(WARMUP_S)
    before, late0 = _totals(service.scheduler.stats.snapshot()), sum(f.late for f in feeds)
    for feed in feeds:
        feed.max_lag_s = 0.0
    r0 = meter.read()
    time.sleep(seconds)
    r1 = meter.read()
    stats = service.scheduler.stats.snapshot()
    after, late1 = _totals(stats), sum(f.late for f in feeds)
    max_lag = max(f.max_lag_s for f in feeds)
    for feed in feeds:
        feed.stop()
    service.close()
    print(json.dumps({
        "cameras": cameras, "seconds": r1.at - r0.at, "cores": CpuMeter.cores(r0, r1),
        **{k: after[k] - before[k] for k in after}, "late": late1 - late0,
        "max_lag_s": max_lag, "events": sum(f.events for f in feeds),
        "invoke_p50_ms": _worst(c["inference_ms_p50"] for c in stats.values()),
        "invoke_p99_ms": _worst(c["inference_ms_p99"] for c in stats.values()),
    }))  # fmt: skip


def _totals(cameras: dict[str, CameraDetectStats]) -> dict[str, int]:
    """The scheduler's counters summed over cameras: frames_*, and crops_* over their ROIs."""
    totals = {f"frames_{k}": 0 for k in ("analysed", "gated", "skipped", "over_rate")}
    totals |= {f"crops_{k}": 0 for k in ("analysed", "gated", "skipped")}
    for c in cameras.values():
        totals["frames_analysed"] += c["frames_analysed"]
        totals["frames_gated"] += c["frames_gated"]
        totals["frames_skipped"] += c["frames_skipped"]
        totals["frames_over_rate"] += c["frames_over_rate"]
        for roi in c["rois"].values():
            totals["crops_analysed"] += roi["analysed"]
            totals["crops_gated"] += roi["gated"]
            totals["crops_skipped"] += roi["skipped"]
    return totals


def _worst(values: Iterable[float | None]) -> float | None:
    return max((v for v in values if v is not None), default=None)


@dataclass(frozen=True)
class SustainRun:
    cameras: int
    result: dict[str, Any]

    @property
    def kept_pace(self) -> bool:
        late: int = self.result["late"]
        return late == 0

    @property
    def ok(self) -> bool:
        skipped: int = self.result["frames_skipped"]
        return skipped == 0 and self.kept_pace

    @property
    def ms_per_camera_second(self) -> float:
        cores: float = self.result["cores"]["detect"]
        return cores * 1000 / self.cameras

    def line(self, predicted: float) -> str:
        r = self.result
        offered = r["frames_analysed"] + r["frames_gated"] + r["frames_skipped"]
        scored = r["crops_analysed"] + r["crops_gated"] + r["crops_skipped"]
        passed = (r["crops_analysed"] + r["crops_skipped"]) / scored if scored else 0.0
        ms = self.ms_per_camera_second
        return (
            f"  {self.cameras:3d} cameras, {r['seconds']:.0f} s: skipped {r['frames_skipped']} "
            f"of {offered} frames, late {r['late']} (max lag {r['max_lag_s'] * 1000:.0f} ms), "
            f"gate passed {passed:.0%} of crops, CPU {r['cores']['detect']:.2f} core "
            f"(rest of the machine {r['cores'][OTHERS]:.2f}), {ms:.1f} ms per camera-second "
            f"(x{ms * predicted / 1000:.2f} the prediction), invoke p50/p99 (worst camera) "
            f"{_ms(r['invoke_p50_ms'])}/{_ms(r['invoke_p99_ms'])} ms, events {r['events']} "
            f"-> {'sustained' if self.ok else 'kept pace' if self.kept_pace else 'fell behind'}"
        )


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def sustain(workdir: Path, scenes: int, cameras: int, seconds: float) -> SustainRun:
    say(f"sustain {cameras}: starting ({WARMUP_S:g} s warm-up, {seconds:g} s window)")
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.detect", "--sustain-worker", "--workdir", str(workdir),
         "--scenes", str(scenes), "--cameras", str(cameras), "--seconds", str(seconds)],
        cwd=REPO, stdout=subprocess.PIPE, text=True, check=True,
        **pinned(CPU),
    )  # fmt: skip
    return SustainRun(cameras, json.loads(out.stdout))


@dataclass
class Search:
    best: int  # the most cameras that passed (0: not even one)
    first_failed: int | None  # the fewest that did not; best + 1 once the search converged
    tried: list[tuple[int, bool]] = field(default_factory=list)

    @property
    def converged(self) -> bool:
        return self.first_failed is not None and self.first_failed - self.best <= 1

    def text(self, at_least: str = "at least ", fewer: str = "fewer than ", sep: str = ", ") -> str:
        if self.converged:
            return str(self.best)
        below = "" if self.first_failed is None else f"{fewer}{self.first_failed}"
        return f"{at_least}{self.best}{below and sep}{below}" if self.best else below

    def compact(self) -> str:
        """For the summary line: 17, >=25<47, <3 or >=36."""
        return self.text(">=", "<", "")


def search(
    start: int, passes: Callable[[int], bool], runs: int, first_failed: int | None = None
) -> Search:
    """The largest n >= 1 with passes(n), assumed monotone, in at most `runs` calls (fewer once
    it converges), knowing that `first_failed` fails: from `start` in growing steps down while
    nothing passed, up while nothing failed or up to halfway to the failure, then bisecting."""
    found = Search(0, first_failed)
    n, step = min(max(1, start), (first_failed or sys.maxsize) - 1), max(1, start // 5)
    while n >= 1 and len(found.tried) < runs:
        ok = passes(n)
        found.tried.append((n, ok))
        if ok:
            found.best = n
        else:
            found.first_failed = n
        high = found.first_failed
        if found.converged:
            break
        if found.best == 0:
            assert high is not None
            n = max(1, high - step)
        else:
            n = found.best + step if high is None else min(found.best + step,
                                                           (found.best + high) // 2)  # fmt: skip
        step *= 2
    return found


# -- the run ------------------------------------------------------------------------------------


def run(cameras: int | None, s: Settings) -> None:
    print(f"machine: {describe()}, TFLite {runtime_name()}; measured work pinned to CPU {CPU}")
    workdir = Path(tempfile.mkdtemp(prefix="camfleet-bench-detect-"))
    try:
        scenes = [Scene.of(seed) for seed in range(1, s.scenes + 1)]
        for scene in scenes:
            say(f"scene {scene.seed}: training its model (encoding its takes if not cached)")
            scene.train_model(workdir)
        stream = workdir / "detect.h264"
        frames = scenes[0].write_stream(stream, s.decode_loops)
        say(f"decode: PyAV against ffmpeg -benchmark on {frames} frames")
        decode = measure_decode(stream)
        say("cost split")
        split = CostSplit.of(measure_costs(workdir, scenes[0].seed, s.footage_s),
                             decode["pyav_ms"])  # fmt: skip
        _print_split(split, decode, s.footage_s)
        predicted = split.cameras(split.pass_rate)
        runs: dict[int, SustainRun] = {}

        def measured(n: int) -> SustainRun:
            if n not in runs:
                runs[n] = sustain(workdir, s.scenes, n, s.seconds)
                say(runs[n].line(predicted))
            return runs[n]

        if cameras is not None:
            one = measured(cameras)
            pace = Search(cameras if one.kept_pace else 0, None if one.kept_pace else cameras)
            sustained = Search(cameras if one.ok else 0, None if one.ok else cameras)
        else:
            start = min(MAX_CAMERAS, max(1, math.floor(predicted)))
            pace = search(start, lambda n: measured(n).kept_pace, s.pace_runs)
            failed = [n for n, r in runs.items() if not r.ok]
            # Without skips anywhere the pace search answered both; else look below them.
            sustained = (
                search(1, lambda n: measured(n).ok, s.skip_runs, min(failed)) if failed else pace
            )
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"sustain runs ({s.scenes} scene(s), pool of {POOL_SIZE} thread, one core, "
          f"{WARMUP_S:g} s warm-up, then {s.seconds:g} s counted):")  # fmt: skip
    for n in sorted(runs):
        print(runs[n].line(predicted))
    _print_summary(sustained, pace, runs, split, decode, predicted)


def _print_split(split: CostSplit, decode: dict[str, float], footage_s: float) -> None:
    print(f"cost per camera-second on one core ({footage_s:g} s of scene 1's footage, 640x360 "
          f"at {FPS:g} fps, detect {DETECT_FPS:g} fps, {len(ROIS)} ROIs, registration "
          f"{split.per_second['registration']:.2f}/s):")  # fmt: skip
    measured, worst = split.parts(split.pass_rate), split.parts(1.0)
    per_call = {
        "decode": split.decode_ms_frame,
        "registration": split.per_call_ms["registration"],
        "placement": split.per_call_ms["placement"],
        "gate": split.per_call_ms["gate"],
        "inference": split.inference_ms,
        "event logic": split.per_call_ms["event logic"],
    }
    print(f"  {'part':<13}{'ms per call':>12}{'gated ms/s':>12}{'worst ms/s':>12}")
    for part, ms in measured.items():
        print(f"  {part:<13}{per_call[part]:>12.3f}{ms:>12.2f}{worst[part]:>12.2f}")
    total, total_worst = sum(measured.values()), sum(worst.values())
    print(f"  {'total':<13}{'':>12}{total:>12.2f}{total_worst:>12.2f}")
    print(f"  gate passed {split.pass_rate:.1%} of crops on this footage; predicted cameras "
          f"per core: {1000 / total:.1f} (gated), {1000 / total_worst:.1f} (every crop "
          "passes)")  # fmt: skip
    print(f"  inference per crop {split.inference_ms:.3f} ms (preparation "
          f"{split.per_call_ms['preparation']:.3f} + invoke {split.per_call_ms['invoke']:.3f}) "
          f"against a raw back-to-back invoke {split.raw_invoke_ms:.3f} ms: ratio "
          f"{split.inference_ms / split.raw_invoke_ms:.2f}")  # fmt: skip
    print(f"  decode {decode['frames']:.0f} frames: PyAV {decode['pyav_ms']:.3f} ms/frame, "
          f"ffmpeg -benchmark {decode['ffmpeg_ms']:.3f} ms/frame, ratio "
          f"{decode['pyav_ms'] / decode['ffmpeg_ms']:.2f}")  # fmt: skip


def _print_summary(
    sustained: Search,
    pace: Search,
    runs: dict[int, SustainRun],
    split: CostSplit,
    decode: dict[str, float],
    predicted: float,
) -> None:
    biggest = runs.get(pace.best)
    ms = biggest.ms_per_camera_second if biggest else math.nan
    print(f"cameras per core with no skipped frames: {sustained.text()}; goal 24: "
          f"{'met' if sustained.best >= 24 else 'NOT met'}")  # fmt: skip
    print(f"cameras one core keeps pace with (skips allowed): {pace.text()}; at "
          f"{pace.best} cameras {ms:.1f} ms per camera-second, {1000 / ms:.0f} cameras per "
          f"whole core by CPU (predicted {predicted:.1f})")  # fmt: skip
    print(
        f"cameras_per_core={sustained.compact()} ms_per_camera_second={ms:.1f} "
        f"predicted={predicted:.1f} worst_case={split.cameras(1.0):.1f} pace={pace.compact()} "
        f"decode_vs_ffmpeg={decode['pyav_ms'] / decode['ffmpeg_ms']:.2f} "
        f"invoke_ms={split.raw_invoke_ms:.3f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--cameras", type=int, help="run this many cameras once instead of searching")
    ap.add_argument("--seconds", type=float, help="of each sustain window")
    ap.add_argument("--quick", action="store_true", help="shorter runs, one scene, fewer steps")
    ap.add_argument("--costs-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--sustain-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--workdir", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--scenes", type=int, default=1, help=argparse.SUPPRESS)
    args = ap.parse_args()
    settings = QUICK if args.quick else FULL
    seconds = args.seconds if args.seconds is not None else settings.seconds
    if args.costs_worker:
        costs_worker(args.workdir, args.seed, seconds)
    elif args.sustain_worker:
        sustain_worker(args.workdir, args.scenes, args.cameras, seconds)
    else:
        run(args.cameras, dataclasses.replace(settings, seconds=seconds))


if __name__ == "__main__":
    main()
