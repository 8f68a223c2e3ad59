"""The default scene: a keyframe-aligned loop with a few anomalies scheduled from the seed."""

from __future__ import annotations

import math
from collections.abc import Sequence

from fleet.sim.scene_spec import (
    ANOMALY_KINDS,
    STREAM_SCHEDULE,
    AnomalySpec,
    Region,
    SceneError,
    SceneSpec,
    seeded_rng,
)

# Two plaza areas the default anomalies happen in; tests draw their ROIs here.
DEFAULT_REGIONS = (Region(0.10, 0.45, 0.28, 0.30), Region(0.60, 0.45, 0.28, 0.30))


def default_scene(
    seed: int,
    width: int,
    height: int,
    fps: float,
    gop: int,
    loop_seconds: float = 30.0,
    anomaly_regions: Sequence[Region] | None = None,
    *,
    drift_px: float = 3.0,
    drift_deg: float = 0.3,
    sudden_shift: bool | None = None,
) -> SceneSpec:
    """A scene whose loop starts on a keyframe, with 2-4 anomalies scheduled from the seed.

    The first 30% of the loop and the gaps between anomalies are normal footage.
    `sudden_shift` None lets the seed decide whether the camera gets bumped once.
    """
    if gop < 1 or not loop_seconds > 0 or not fps > 0:
        raise SceneError(f"need gop >= 1, loop_seconds > 0, fps > 0: {gop}, {loop_seconds}, {fps}")
    regions = tuple(anomaly_regions) if anomaly_regions is not None else DEFAULT_REGIONS
    if not regions:
        raise SceneError("anomaly_regions must not be empty")
    frames = math.ceil(loop_seconds * fps - 1e-9)
    frame_count = -(-frames // gop) * gop
    loop = frame_count / fps
    rng = seeded_rng(seed, STREAM_SCHEDULE)

    count = int(rng.integers(2, 5))
    kinds = [ANOMALY_KINDS[i] for i in rng.permutation(len(ANOMALY_KINDS))[:count]]
    first_region = int(rng.integers(len(regions)))
    window_start, window_end = 0.3 * loop, 0.95 * loop
    slot = (window_end - window_start) / count
    anomalies = []
    for i, kind in enumerate(kinds):
        duration = min(float(rng.uniform(2.0, 4.0)), 0.6 * slot)
        start = window_start + i * slot + float(rng.uniform(0.1, 0.3)) * slot
        region = regions[(first_region + i) % len(regions)]
        anomalies.append(AnomalySpec(kind, region, start, start + duration))

    shifts: tuple[tuple[float, float, float, float], ...] = ()
    if sudden_shift is None:
        sudden_shift = bool(rng.random() < 0.5)
    if sudden_shift:
        # In a normal stretch right after an anomaly, so the bump is not hidden by one.
        after = anomalies[int(rng.integers(count))]
        at_s = after.end_s + 0.1 * slot
        dx, dy = (rng.uniform(0.01, 0.02, 2) * width * rng.choice([-1.0, 1.0], 2)).tolist()
        angle = float(rng.uniform(0.3, 1.0) * rng.choice([-1.0, 1.0]))
        shifts = ((at_s, dx, dy, angle),)
    return SceneSpec(
        seed=seed,
        width=width,
        height=height,
        fps=fps,
        frame_count=frame_count,
        anomalies=tuple(anomalies),
        drift_px=drift_px,
        drift_deg=drift_deg,
        shifts=shifts,
    )
