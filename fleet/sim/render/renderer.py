"""SceneRenderer: composes world, traffic and anomalies, and films them through the drifting camera.

The static world is drawn on a canvas a little larger than the frame; each frame samples it through
the camera pose with bilinear interpolation. Everything that changes over time is periodic in the
loop, so frame `frame_count` is frame 0 again.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fleet.sim.render.actors import anomaly_art, movers
from fleet.sim.render.background import background
from fleet.sim.render.canvas import Canvas
from fleet.sim.render.raster import F32, U8, even
from fleet.sim.render.warp import Warper
from fleet.sim.scene_spec import (
    STREAM_DRIFT,
    STREAM_LIGHT,
    STREAM_NOISE,
    AnomalySpec,
    CameraPose,
    SceneError,
    SceneSpec,
)


@dataclass(frozen=True)
class _Wave:
    """A sum of sines with whole cycles per loop: smooth and seamless, |value| <= amplitude."""

    amps: tuple[float, ...]
    cycles: tuple[int, ...]
    phases: tuple[float, ...]

    @classmethod
    def random(cls, rng: np.random.Generator, amplitude: float, cycles: tuple[int, ...]) -> _Wave:
        weights = rng.uniform(0.2, 1.0, len(cycles))
        amps = amplitude * weights / weights.sum()
        phases = rng.uniform(0, 2 * np.pi, len(cycles))
        return cls(tuple(amps.tolist()), cycles, tuple(phases.tolist()))

    def at(self, fraction: float) -> float:
        return sum(
            a * math.sin(2 * math.pi * k * fraction + p)
            for a, k, p in zip(self.amps, self.cycles, self.phases, strict=True)
        )


def canvas_margin(spec: SceneSpec) -> int:
    """Canvas border wide enough for the largest drift + shift (+2 px for bilinear taps)."""
    if spec.margin_px is not None:
        return spec.margin_px
    sdx = sum(abs(s[1]) for s in spec.shifts)
    sdy = sum(abs(s[2]) for s in spec.shifts)
    angle = math.radians(spec.drift_deg + sum(abs(s[3]) for s in spec.shifts))
    reach = spec.drift_px * math.sqrt(2) + math.hypot(sdx, sdy)
    reach += 2 * math.sin(angle / 2) * math.hypot(spec.width, spec.height) / 2
    return even(math.ceil(reach) + 5)


def _i420_planes(frame: U8, h: int, w: int) -> tuple[U8, U8, U8]:
    """Y (H, W), U and V (H/2, W/2) views of a packed yuv420p frame."""
    flat, n, q = frame.reshape(-1), h * w, h * w // 4
    return (
        flat[:n].reshape(h, w),
        flat[n : n + q].reshape(h // 2, w // 2),
        flat[n + q :].reshape(h // 2, w // 2),
    )


class SceneRenderer:
    """Renders frames of one scene loop. Reuses buffers: use one renderer per thread."""

    _NOISE_PAD = 64

    def __init__(self, spec: SceneSpec) -> None:
        self.spec = spec
        h, w = spec.height, spec.width
        margin = canvas_margin(spec)
        if (h + 2 * margin) * (w + 2 * margin) >= 2**24:  # Warper's float32 index limit
            raise SceneError(f"frame too large to render: {w}x{h} (+{margin} px margin)")
        self._canvas = Canvas(*background(spec, margin))
        drift = spec.rng(STREAM_DRIFT)
        self._drift = tuple(
            _Wave.random(drift, amp, (1, 2, 3))
            for amp in (spec.drift_px, spec.drift_px, spec.drift_deg)
        )
        light = spec.rng(STREAM_LIGHT)
        self._gain = _Wave.random(light, 0.1, (1, 2))
        self._offset = _Wave.random(light, 8.0, (1, 3))
        self._movers = movers(spec, margin)
        self._arts = [anomaly_art(spec, a, i, margin) for i, a in enumerate(spec.anomalies)]
        # Sensor noise: one field a little larger than the frame, a different window per frame.
        noise = spec.rng(STREAM_NOISE)
        pad = self._NOISE_PAD
        self._noise_y = noise.normal(0, 2.0, (h + pad, w + pad)).astype(np.float32)
        self._noise_c = noise.normal(0, 1.0, (2, h // 2 + pad, w // 2 + pad)).astype(np.float32)
        self._noise_at = noise.integers(0, pad, (spec.frame_count, 2))
        self._warp_y = Warper(h, w, w + 2 * margin, margin)
        self._warp_c = Warper(h // 2, w // 2, w // 2 + margin, margin // 2)

    def pose(self, index: int) -> CameraPose:
        """The true camera drift at loop frame `index` (taken modulo the loop)."""
        i = index % self.spec.frame_count
        f = i / self.spec.frame_count
        dx, dy, angle = (wave.at(f) for wave in self._drift)
        for at_s, sdx, sdy, sangle in self.spec.shifts:
            if i / self.spec.fps >= at_s:
                dx, dy, angle = dx + sdx, dy + sdy, angle + sangle
        return CameraPose(dx, dy, angle)

    def active_anomalies(self, index: int) -> list[AnomalySpec]:
        t = (index % self.spec.frame_count) / self.spec.fps
        return [a for a in self.spec.anomalies if a.active_at(t)]

    def render(self, index: int) -> tuple[U8, U8, U8]:
        """Y (H, W), U and V (H/2, W/2) of loop frame `index`: views into `render_i420`."""
        return _i420_planes(self.render_i420(index), self.spec.height, self.spec.width)

    def render_i420(self, index: int) -> U8:
        """Loop frame `index` packed as yuv420p (H*3/2, W), as av.VideoFrame.from_ndarray takes."""
        spec = self.spec
        i = index % spec.frame_count
        f, t = i / spec.frame_count, i / spec.fps
        self._draw_world(f, t)

        h, w = spec.height, spec.width
        out = np.empty((h * 3 // 2, w), np.uint8)
        y_out, u_out, v_out = _i420_planes(out, h, w)
        pose = self.pose(i)
        oy, ox = (int(v) for v in self._noise_at[i])

        self._warp_y.prepare(pose.dx, pose.dy, pose.angle_deg)
        luma = self._warp_y.sample(self._canvas.luma)
        luma *= np.float32(1 + self._gain.at(f))
        luma += self._noise_y[oy : oy + h, ox : ox + w]
        luma += np.float32(self._offset.at(f) + 0.5)  # +0.5: the uint8 cast truncates
        self._store(luma, y_out)

        self._warp_c.prepare(pose.dx / 2, pose.dy / 2, pose.angle_deg)
        for plane, dest in enumerate((u_out, v_out)):
            c = self._warp_c.sample(self._canvas.chroma[plane])
            c += self._noise_c[plane, oy // 2 : oy // 2 + h // 2, ox // 2 : ox // 2 + w // 2]
            c += np.float32(0.5)
            self._store(c, dest)
        return out

    def _draw_world(self, loop_fraction: float, t: float) -> None:
        """The canvas as the world is at loop time `t` (= loop_fraction of the loop)."""
        canvas = self._canvas
        canvas.reset()
        for mover in self._movers:
            canvas.draw(mover.sprite, *mover.position(loop_fraction))
        for art in self._arts:
            if art.spec.active_at(t):
                canvas.draw(art.sprite, *art.position(t))

    @staticmethod
    def _store(values: F32, dest: U8) -> None:
        np.clip(values, 0, 255, out=values)
        np.copyto(dest, values, casting="unsafe")
