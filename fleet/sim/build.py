"""Turns simulator options into cameras: picks scenes and encodings, encodes (or loads) loops."""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

from fleet.profiles import FirmwareProfile, StreamKind
from fleet.sim.camera import PreparedLoop, SimCamera, StreamVariants
from fleet.sim.encoded import StreamEncoding, encode_loops
from fleet.sim.scene import SceneRenderer, SceneSpec, default_scene
from fleet.sim.truth import SceneClock


class SimConfigError(ValueError):
    """Options the simulator cannot honour, with what to change."""


@dataclass(frozen=True)
class SimOptions:
    cameras: int
    profile: FirmwareProfile
    seed: int = 1
    loop_seconds: float = 30.0
    main_size: tuple[int, int] | None = None  # override the profile's main resolution (tests)
    distinct_scenes: int | None = None  # cameras beyond this share scene loops (benchmarks)
    cache_dir: Path = Path.home() / ".cache" / "camfleet" / "sim"


@dataclass(frozen=True)
class CameraPlan:
    name: str
    channel: int
    spec: SceneSpec
    encodings: dict[str, StreamEncoding]  # "main", "sub", "main-degraded", "sub-degraded"


def _even(v: float) -> int:
    return max(2, round(v / 2) * 2)


def plan_cameras(opts: SimOptions) -> list[CameraPlan]:
    prof = opts.profile
    if prof.main.codec != "h264" or (prof.sub and prof.sub.codec != "h264"):
        raise SimConfigError(f"profile {prof.name}: the simulator serves H.264 only")
    if opts.cameras < 1:
        raise SimConfigError("--cameras must be at least 1")
    width, height = opts.main_size or (prof.main.width, prof.main.height)
    encodings = _stream_encodings(prof, width, height)
    distinct = opts.distinct_scenes or opts.cameras
    return [
        CameraPlan(
            name=f"cam{i + 1}",
            channel=i + 1,
            spec=default_scene(
                opts.seed * 1000 + i % distinct,
                width,
                height,
                prof.main.fps,
                prof.main.gop,
                opts.loop_seconds,
            ),
            encodings=encodings,
        )
        for i in range(opts.cameras)
    ]


def _stream_encodings(prof: FirmwareProfile, width: int, height: int) -> dict[str, StreamEncoding]:
    """Main and sub streams, plus the variants the camera sends while degraded by extra clients.

    Every variant takes whole frame steps of the main stream and whole divisors of its GOP, so
    all loops restart together on a keyframe.
    """
    fps, gop = prof.main.fps, prof.main.gop
    scale = width / prof.main.width  # bitrates follow the pixel count when the size is overridden
    divisor = prof.multi_client.fps_divisor

    def encoding(name: str, w: int, h: int, step: int, kbps: float) -> StreamEncoding:
        return StreamEncoding(
            name=name,
            width=w,
            height=h,
            fps=fps / step,
            gop=max(1, gop // step),
            bitrate_kbps=max(50, round(kbps * scale**2)),
            frame_step=step,
        )

    streams = [("main", width, height, 1, float(prof.main.bitrate_kbps))]
    if prof.sub is not None:
        step = _whole_step(fps / prof.sub.fps, gop)
        sub_size = _even(prof.sub.width * scale), _even(prof.sub.height * scale)
        streams.append(("sub", *sub_size, step, float(prof.sub.bitrate_kbps)))
    out = {}
    for name, w, h, step, kbps in streams:
        out[name] = encoding(name, w, h, step, kbps)
        if prof.multi_client.degrades:
            slow = step * divisor if gop % (step * divisor) == 0 else step
            out[f"{name}-degraded"] = encoding(
                f"{name}-degraded", w, h, slow, kbps * prof.multi_client.bitrate_factor
            )
    return out


def _whole_step(ratio: float, gop: int) -> int:
    """The frame step nearest `ratio` that divides the GOP."""
    step = max(1, round(ratio))
    while gop % step:
        step -= 1
    return step


def _encode_plan(plan: CameraPlan, cache_dir: Path) -> str:
    encode_loops(plan.spec, list(plan.encodings.values()), cache_dir)
    return plan.name


def encode_all(
    plans: list[CameraPlan], cache_dir: Path, progress: Callable[[int, int], None] | None = None
) -> None:
    """Render and encode every distinct scene loop not yet in the cache, on all cores."""
    distinct: dict[tuple[object, ...], CameraPlan] = {}
    for p in plans:
        distinct.setdefault((p.spec, tuple(p.encodings.values())), p)
    todo = list(distinct.values())
    done = 0
    if progress:
        progress(done, len(todo))
    with ProcessPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) as pool:
        futures = [pool.submit(_encode_plan, p, cache_dir) for p in todo]
        for fut in as_completed(futures):
            fut.result()
            done += 1
            if progress:
                progress(done, len(todo))


def build_cameras(opts: SimOptions, plans: list[CameraPlan]) -> list[SimCamera]:
    """Cameras with their loops loaded; their clocks are anchored when serving starts."""
    cameras = []
    for plan in plans:
        loops = encode_loops(plan.spec, list(plan.encodings.values()), opts.cache_dir)
        prepared = {
            name: PreparedLoop.prepare(loop, plan.encodings[name].frame_step)
            for name, loop in loops.items()
        }
        streams: dict[StreamKind, StreamVariants] = {}
        for kind in ("main", "sub"):
            if kind in prepared:
                streams[kind] = StreamVariants(
                    kind=kind, normal=prepared[kind], degraded=prepared.get(f"{kind}-degraded")
                )
        cameras.append(
            SimCamera(
                name=plan.name,
                channel=plan.channel,
                profile=opts.profile,
                spec=plan.spec,
                renderer=SceneRenderer(plan.spec),
                clock=SceneClock(0, plan.spec.fps, plan.spec.frame_count),
                streams=streams,
            )
        )
    return cameras
