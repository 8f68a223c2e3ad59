"""Things that move through the world: normal traffic, and how each anomaly looks."""

from __future__ import annotations

import math
from dataclasses import dataclass

from fleet.sim.render.sprites import Sprite, box, car, flat_patch, person, texture_patch
from fleet.sim.scene_spec import (
    STREAM_ANOMALIES,
    STREAM_MOVERS,
    AnomalySpec,
    SceneSpec,
    seeded_rng,
)


@dataclass(frozen=True, eq=False)
class Mover:
    """A normal object crossing the scene `cycles` times per loop, off-canvas at the wrap."""

    sprite: Sprite
    start: tuple[float, float]
    travel: tuple[float, float]
    cycles: int
    phase: float
    bob_px: float  # walking bounce, once per stride
    stride_px: float

    def position(self, loop_fraction: float) -> tuple[float, float]:
        u = (self.cycles * loop_fraction + self.phase) % 1.0
        x, y = self.start[0] + u * self.travel[0], self.start[1] + u * self.travel[1]
        # Tied to the distance covered, so the bounce is as periodic as the path.
        steps = u * math.hypot(*self.travel) / self.stride_px
        return x, y - self.bob_px * abs(math.sin(math.pi * steps))


def _crossing(
    sprite: Sprite, y: float, slope: float, speed: float, canvas_w: int, spec: SceneSpec
) -> tuple[tuple[float, float], tuple[float, float], int]:
    """Start, travel and cycles per loop for a left-to-right crossing at about `speed` px/s."""
    span = canvas_w + sprite.luma.shape[1] + 4
    cycles = max(1, int(speed * spec.loop_seconds / span))
    length = max(span, speed * spec.loop_seconds / cycles)
    x0 = -sprite.luma.shape[1] / 2 - 2 - (length - span) / 2
    return (x0, y - slope * length / 2), (length, slope * length), cycles


def movers(spec: SceneSpec, margin: int) -> list[Mover]:
    """Two cars on the road and 3-4 people on the plaza, each crossing at its own pace."""
    rng = spec.rng(STREAM_MOVERS)
    h, w = spec.height, spec.width
    canvas_w = w + 2 * margin
    lanes = [("car", margin + 0.85 * h, 0.0, 0.25 * w), ("car", margin + 0.91 * h, 0.0, 0.3 * w)]
    lanes += [
        (
            "person",
            margin + rng.uniform(0.38, 0.78) * h,
            rng.uniform(-0.15, 0.15),
            rng.uniform(0.04, 0.07) * w,
        )
        for _ in range(int(rng.integers(3, 5)))
    ]
    out = []
    for kind, y, slope, speed in lanes:
        is_car = kind == "car"
        sprite = car(0.3 * h, rng) if is_car else person(0.13 * h, rng)
        start, travel, cycles = _crossing(sprite, y, slope, speed, canvas_w, spec)
        if rng.random() < 0.5:  # walk/drive the other way
            start, travel = (start[0] + travel[0], start[1] + travel[1]), (-travel[0], -travel[1])
        bob = 0.0 if is_car else 0.01 * h
        out.append(Mover(sprite, start, travel, cycles, float(rng.random()), bob, 0.05 * h))
    return out


@dataclass(frozen=True, eq=False)
class AnomalyArt:
    """How one anomaly looks: a sprite that enters from `entry`, then stays or orbits."""

    spec: AnomalySpec
    sprite: Sprite
    entry: tuple[float, float]
    centre: tuple[float, float]
    orbit: tuple[float, float]

    @classmethod
    def still(cls, spec: AnomalySpec, sprite: Sprite, at: tuple[float, float]) -> AnomalyArt:
        return cls(spec, sprite, at, at, (0.0, 0.0))

    def position(self, t: float) -> tuple[float, float]:
        """Canvas position at loop time `t`, which must lie inside the anomaly."""
        progress = (t - self.spec.start_s) / (self.spec.end_s - self.spec.start_s)
        (ex, ey), (cx, cy), (rx, ry) = self.entry, self.centre, self.orbit
        ox = cx + rx  # the orbit starts at angle 0
        if progress < 0.2:
            f = progress / 0.2
            return ex + f * (ox - ex), ey + f * (cy - ey)
        angle = 2 * math.pi * (progress - 0.2) / 0.8
        return cx + rx * math.cos(angle), cy + ry * math.sin(angle)


def anomaly_art(spec: SceneSpec, anomaly: AnomalySpec, index: int, margin: int) -> AnomalyArt:
    rng = seeded_rng(spec.seed, STREAM_ANOMALIES, index)
    r = anomaly.region
    x0, y0 = margin + r.x * spec.width, margin + r.y * spec.height
    rw, rh = r.w * spec.width, r.h * spec.height
    centre = (x0 + rw / 2, y0 + rh / 2)
    if anomaly.kind == "occlusion":
        return AnomalyArt.still(anomaly, flat_patch(rh, rw), centre)
    if anomaly.kind == "texture_change":
        return AnomalyArt.still(anomaly, texture_patch(rh, rw, rng), centre)
    if anomaly.kind == "object_appears":
        sprite = box(max(4.0, 0.35 * rh), max(4.0, 0.3 * rw))
        sh, sw = sprite.luma.shape
        spot = (
            x0 + sw / 2 + rng.uniform(0, max(0.0, rw - sw)),
            y0 + sh / 2 + rng.uniform(0, max(0.0, rh - sh)),
        )
        return AnomalyArt.still(anomaly, sprite, spot)
    # intrusion: someone walks in from one side of the region and loiters in it
    sprite = person(min(0.15 * spec.height, 0.8 * rh), rng, clothes=(30.0, 140.0, 120.0))
    sh, sw = sprite.luma.shape
    orbit = (max(0.0, 0.35 * (rw - sw)), max(0.0, 0.35 * (rh - sh)))
    side = int(rng.integers(4))
    entry = [(x0, centre[1]), (x0 + rw, centre[1]), (centre[0], y0), (centre[0], y0 + rh)][side]
    return AnomalyArt(anomaly, sprite, entry, centre, orbit)
