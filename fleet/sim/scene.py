"""Synthetic CCTV scenes: a deterministic, seamlessly looping street view rendered as YUV420.

Everything comes from the spec's seed, and everything that changes over time is periodic in the
loop (period loop/k), so a loop can be encoded once and streamed forever without a visible seam.

Geometry: the static world (background, moving objects, anomalies) is drawn on a canvas a little
larger than the frame; each frame samples it through the camera pose with bilinear interpolation.
A pose (dx, dy, angle_deg) moves the image content by (dx, dy) px and rotates it by angle_deg
about the frame centre, clockwise on screen (image y points down), relative to the reference
view that regions are defined in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

AnomalyKind = Literal["object_appears", "intrusion", "occlusion", "texture_change"]
ANOMALY_KINDS: tuple[AnomalyKind, ...] = (
    "object_appears",
    "intrusion",
    "occlusion",
    "texture_change",
)

F32 = npt.NDArray[np.float32]
U8 = npt.NDArray[np.uint8]
Yuv = tuple[float, float, float]


class SceneError(ValueError):
    """A scene description that cannot be rendered."""


@dataclass(frozen=True)
class Region:
    """A rectangle in normalised frame coordinates (0..1) of the reference view."""

    x: float
    y: float
    w: float
    h: float

    def __post_init__(self) -> None:
        inside = self.x >= 0 and self.y >= 0 and self.x + self.w <= 1 and self.y + self.h <= 1
        if not (self.w > 0 and self.h > 0 and inside):
            raise SceneError(f"region must be non-empty and inside 0..1: {self}")


@dataclass(frozen=True)
class AnomalySpec:
    kind: AnomalyKind
    region: Region
    start_s: float  # offsets inside the loop
    end_s: float

    def __post_init__(self) -> None:
        if self.kind not in ANOMALY_KINDS:
            raise SceneError(f"unknown anomaly kind {self.kind!r}; known: {ANOMALY_KINDS}")
        if not 0 <= self.start_s < self.end_s:
            raise SceneError(f"anomaly needs 0 <= start_s < end_s: {self}")


@dataclass(frozen=True)
class CameraPose:
    """Camera drift at one frame: content offset in px (scene resolution) and rotation."""

    dx: float
    dy: float
    angle_deg: float


@dataclass(frozen=True)
class SceneSpec:
    seed: int
    width: int
    height: int
    fps: float
    frame_count: int  # loop length in frames
    anomalies: tuple[AnomalySpec, ...]
    drift_px: float
    drift_deg: float
    # (at_s, dx, dy, angle_deg): a sudden camera shift, held until the loop ends
    shifts: tuple[tuple[float, float, float, float], ...]

    def __post_init__(self) -> None:
        if self.seed < 0:
            raise SceneError(f"seed must be >= 0, got {self.seed}")
        if self.width < 32 or self.height < 32 or self.width % 2 or self.height % 2:
            raise SceneError(f"frame size must be even and >= 32: {self.width}x{self.height}")
        if not (self.fps > 0 and self.frame_count > 0):
            raise SceneError(
                f"fps and frame_count must be positive: {self.fps}, {self.frame_count}"
            )
        if self.drift_px < 0 or self.drift_deg < 0:
            raise SceneError("drift amplitudes must be >= 0")
        for a in self.anomalies:
            if a.end_s > self.loop_seconds:
                raise SceneError(f"anomaly ends after the loop ({self.loop_seconds:.3f} s): {a}")
        for shift in self.shifts:
            if not 0 <= shift[0] < self.loop_seconds:
                raise SceneError(f"shift time outside the loop: {shift}")

    @property
    def loop_seconds(self) -> float:
        return self.frame_count / self.fps


# Two plaza areas the default anomalies happen in; tests draw their ROIs here.
DEFAULT_REGIONS = (Region(0.10, 0.45, 0.28, 0.30), Region(0.60, 0.45, 0.28, 0.30))

# Independent random streams per aspect, so e.g. a new anomaly schedule keeps the background.
_SCHEDULE, _BACKGROUND, _DRIFT, _MOVERS, _ANOMALIES, _NOISE, _LIGHT = range(7)


def _rng(seed: int, stream: int, *more: int) -> np.random.Generator:
    return np.random.default_rng([seed, stream, *more])


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
    rng = _rng(seed, _SCHEDULE)

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


# ---- sprites: small YUV images with alpha, drawn into the world canvas ----


@dataclass(frozen=True, eq=False)
class _Sprite:
    luma: F32  # (h, w)
    alpha: F32  # (h, w)
    chroma: F32  # (2, h/2, w/2)
    alpha_c: F32  # (h/2, w/2)

    @classmethod
    def from_planes(cls, yuv: F32, alpha: F32) -> _Sprite:
        """Half-resolution chroma is alpha-weighted so edges keep the sprite's colour."""
        _, h, w = yuv.shape
        a4 = alpha.reshape(h // 2, 2, w // 2, 2)
        weight = a4.sum(axis=(1, 3))
        uv = (yuv[1:].reshape(2, h // 2, 2, w // 2, 2) * a4).sum(axis=(2, 4))
        chroma = uv / np.maximum(weight, 1e-6)
        return cls(yuv[0], alpha, chroma.astype(np.float32), (weight / 4).astype(np.float32))


class _Painter:
    """Composites soft-edged shapes into a sprite (premultiplied 'over')."""

    def __init__(self, h: float, w: float) -> None:
        self.h, self.w = _even(h), _even(w)
        self.yy = np.arange(self.h, dtype=np.float32)[:, None] + 0.5
        self.xx = np.arange(self.w, dtype=np.float32)[None, :] + 0.5
        self._acc = np.zeros((3, self.h, self.w), np.float32)
        self._alpha = np.zeros((self.h, self.w), np.float32)

    def ellipse(self, cy: float, cx: float, ry: float, rx: float) -> F32:
        norm = np.sqrt(((self.xx - cx) / rx) ** 2 + ((self.yy - cy) / ry) ** 2)
        return _soft((norm - 1) * min(rx, ry))

    def rect(self, y0: float, x0: float, y1: float, x1: float) -> F32:
        dist = np.maximum(
            np.maximum(y0 - self.yy, self.yy - y1), np.maximum(x0 - self.xx, self.xx - x1)
        )
        return _soft(dist)

    def paint(self, alpha: F32, colour: Yuv | F32) -> None:
        col = np.asarray(colour, np.float32)
        if col.ndim == 1:
            col = col[:, None, None]
        self._acc = self._acc * (1 - alpha) + alpha * col
        self._alpha = self._alpha * (1 - alpha) + alpha

    def sprite(self) -> _Sprite:
        yuv = self._acc / np.maximum(self._alpha, 1e-6)
        return _Sprite.from_planes(yuv.astype(np.float32), self._alpha)


def _soft(distance: npt.NDArray[np.floating[Any]]) -> F32:
    """Anti-aliased coverage from a signed distance in px (negative inside)."""
    coverage: F32 = np.clip(0.5 - distance, 0.0, 1.0).astype(np.float32)
    return coverage


def _even(n: float) -> int:
    return max(2, 2 * round(n / 2))


def _person(height: float, rng: np.random.Generator, clothes: Yuv | None = None) -> _Sprite:
    p = _Painter(height, 0.42 * height)
    h, w = p.h, p.w
    top = clothes or (rng.uniform(40, 200), rng.uniform(90, 170), rng.uniform(90, 170))
    trousers = (rng.uniform(30, 110), rng.uniform(118, 138), rng.uniform(118, 138))
    p.paint(p.rect(0.55 * h, 0.22 * w, 0.97 * h, 0.46 * w), trousers)
    p.paint(p.rect(0.55 * h, 0.54 * w, 0.97 * h, 0.78 * w), trousers)
    p.paint(p.ellipse(0.40 * h, 0.5 * w, 0.2 * h, 0.45 * w), top)
    p.paint(p.ellipse(0.12 * h, 0.5 * w, 0.09 * h, 0.2 * w), (150.0, 112.0, 148.0))
    return p.sprite()


def _car(length: float, rng: np.random.Generator) -> _Sprite:
    p = _Painter(0.4 * length, length)
    h, w = p.h, p.w
    body = (rng.uniform(40, 220), rng.uniform(100, 160), rng.uniform(100, 170))
    p.paint(p.rect(0.18 * h, 0.25 * w, 0.55 * h, 0.75 * w), body)
    p.paint(p.rect(0.25 * h, 0.3 * w, 0.5 * h, 0.7 * w), (45.0, 135.0, 122.0))  # windows
    p.paint(p.rect(0.45 * h, 0.02 * w, 0.85 * h, 0.98 * w), body)
    for cx in (0.22 * w, 0.78 * w):
        p.paint(p.ellipse(0.85 * h, cx, 0.14 * h, 0.09 * w), (20.0, 128.0, 128.0))
    return p.sprite()


def _box(h: float, w: float) -> _Sprite:
    """An abandoned suitcase-like object: bright, shaded, outlined."""
    p = _Painter(h, w)
    shade = 150 + 50 * (1 - p.yy / p.h) + np.zeros_like(p.xx)
    p.paint(p.rect(1, 1, p.h - 1, p.w - 1), (40.0, 128.0, 128.0))
    p.paint(p.rect(3, 3, p.h - 3, p.w - 3), np.stack([shade, shade * 0 + 80, shade * 0 + 190]))
    p.paint(p.rect(0.45 * p.h, 3, 0.52 * p.h, p.w - 3), (60.0, 110.0, 160.0))
    return p.sprite()


def _flat_patch(h: float, w: float) -> _Sprite:
    """Something covering the view: dark, flat, opaque."""
    p = _Painter(h, w)
    p.paint(p.rect(0, 0, p.h, p.w), (18.0, 128.0, 128.0))
    return p.sprite()


def _texture_patch(h: float, w: float, rng: np.random.Generator) -> _Sprite:
    """A changed surface (spill, graffiti): bold stripes and blotches in a new colour."""
    p = _Painter(h, w)
    period = max(4.0, 0.12 * min(p.h, p.w))
    angle = rng.uniform(0, np.pi)
    phase = (p.xx * math.cos(angle) + p.yy * math.sin(angle)) * (2 * np.pi / period)
    luma = 120 + 80 * np.tanh(3 * np.sin(phase)) + 25 * _value_noise(rng, (p.h, p.w), period)
    u, v = rng.uniform(80, 110), rng.uniform(150, 190)
    planes = np.stack([luma, np.full_like(luma, u), np.full_like(luma, v)]).astype(np.float32)
    p.paint(p.rect(0, 0, p.h, p.w) * np.float32(0.9), planes)
    return p.sprite()


# ---- background ----


def _interp_matrix(n: int, cell: float) -> F32:
    """(n, m) linear-interpolation weights from a coarse grid with one node per `cell` px."""
    pos = np.arange(n) / cell
    i0 = np.floor(pos).astype(np.intp)
    frac = (pos - i0).astype(np.float32)
    mat = np.zeros((n, int(i0[-1]) + 2), np.float32)
    mat[np.arange(n), i0] = 1 - frac
    mat[np.arange(n), i0 + 1] = frac
    return mat


def _value_noise(rng: np.random.Generator, shape: tuple[int, int], cell: float) -> F32:
    """Smooth random texture (unit variance at the nodes), interpolated by two matrix products."""
    rows, cols = _interp_matrix(shape[0], cell), _interp_matrix(shape[1], cell)
    grid = rng.standard_normal((rows.shape[1], cols.shape[1])).astype(np.float32)
    noise: F32 = (rows @ grid @ cols.T).astype(np.float32, copy=False)
    return noise


def _fill(zone: F32, colour: Yuv) -> None:
    zone[:] = np.asarray(colour, np.float32)[:, None, None]


def _buildings(zone: F32, rng: np.random.Generator, h: int, w: int, margin: int) -> None:
    """Facades of varied width, colour, height and window grids, sky above."""
    rows = zone.shape[1]
    sky = 215 - 50 * np.arange(rows, dtype=np.float32) / rows
    x = 0
    while x < zone.shape[2]:
        bw = max(4, int(rng.uniform(0.07, 0.2) * w))
        roof = min(rows - 1, margin + int(rng.uniform(0.03, 0.2) * h))
        block = zone[:, :, x : x + bw]
        block[0] = sky[:, None]
        block[1], block[2] = 140, 118
        facade = block[:, roof:]
        luma = rng.uniform(70, 190)
        shading = 1 - 0.3 * np.arange(facade.shape[1], dtype=np.float32) / rows
        facade[0] = luma * shading[:, None]
        facade[1], facade[2] = rng.choice([110.0, 118.0, 128.0, 140.0]), rng.uniform(115, 155)
        pitch_y, pitch_x = (
            max(3, int(rng.uniform(0.035, 0.06) * h)),
            max(3, int(rng.uniform(0.03, 0.05) * h)),
        )
        ly, lx = np.arange(facade.shape[1]), np.arange(facade.shape[2])
        lit = rng.uniform(20, 235, (ly[-1] // pitch_y + 1, lx[-1] // pitch_x + 1)).astype(
            np.float32
        )
        win_y = ((ly % pitch_y) < 0.6 * pitch_y) & (ly >= pitch_y)
        win_x = ((lx % pitch_x) < 0.6 * pitch_x) & ((lx % pitch_x) >= 1)
        windows = win_y[:, None] & win_x[None, :]
        facade[0] = np.where(windows, lit[ly // pitch_y][:, lx // pitch_x], facade[0])
        facade[1:] = np.where(windows, np.float32(132), facade[1:])
        block[0, roof : roof + max(1, h // 120)] = 40  # roof edge
        x += bw


def _plaza(zone: F32, rng: np.random.Generator, h: int) -> None:
    """Paving tiles with grout, planters and benches."""
    _fill(zone, (150.0, 124.0, 134.0))
    rows, cols = zone.shape[1:]
    tile = max(4, int(0.045 * h))
    ly, lx = np.arange(rows), np.arange(cols)
    tone = rng.normal(0, 9, (rows // tile + 1, cols // tile + 1)).astype(np.float32)
    zone[0] += tone[ly // tile][:, lx // tile]
    grout = ((ly % tile) < max(1, tile // 10))[:, None] | ((lx % tile) < max(1, tile // 10))[
        None, :
    ]
    zone[0] -= 30 * grout
    yy = np.arange(rows, dtype=np.float32)[:, None]
    xx = np.arange(cols, dtype=np.float32)[None, :]
    for _ in range(4):
        cy, cx = rng.uniform(0, rows), rng.uniform(0, cols)
        ry, rx = rng.uniform(0.04, 0.07) * h, rng.uniform(0.06, 0.12) * h
        a = _soft((np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) - 1) * ry)
        leaves = 85 + 30 * _value_noise(rng, (rows, cols), max(2.0, 0.01 * h))
        zone[0] += a * (leaves - zone[0])
        zone[1] += a * (105 - zone[1])
        zone[2] += a * (110 - zone[2])
    for _ in range(2):
        y0, x0 = rng.uniform(0, rows), rng.uniform(0, cols)
        bench = (slice(int(y0), int(y0 + 0.03 * h) + 1), slice(int(x0), int(x0 + 0.15 * h) + 1))
        zone[(slice(None), *bench)] = np.asarray([85.0, 115.0, 148.0], np.float32)[:, None, None]
    # A soft diagonal shadow band, as from a neighbouring building.
    band = np.sin((xx / cols + yy / rows) * np.pi * rng.uniform(0.8, 1.6) + rng.uniform(0, 6))
    zone[0] *= 1 - 0.18 * np.clip(band, 0, 1)


def _road(zone: F32, h: int, w: int) -> None:
    _fill(zone, (72.0, 128.0, 126.0))
    rows = zone.shape[1]
    zone[0, : max(1, h // 90)] = 185  # kerb
    mid, half = rows // 2, max(1, h // 200)
    dashes = (np.arange(zone.shape[2]) % max(4, int(0.11 * w))) < 0.06 * w
    zone[0, mid - half : mid + half + 1, dashes] = 215


def _background(spec: SceneSpec, margin: int) -> tuple[F32, F32]:
    """World canvas (frame + margin on every side): luma and half-resolution (U, V)."""
    h, w = spec.height, spec.width
    rng = _rng(spec.seed, _BACKGROUND)
    canvas = np.empty((3, h + 2 * margin, w + 2 * margin), np.float32)

    def row(fraction: float) -> int:
        return margin + round(fraction * h)

    horizon, road_top, road_bottom = row(0.36), row(0.80), row(0.95)
    _buildings(canvas[:, :horizon], rng, h, w, margin)
    _plaza(canvas[:, horizon:road_top], rng, h)
    _road(canvas[:, road_top:road_bottom], h, w)
    _fill(canvas[:, road_bottom:], (140.0, 126.0, 130.0))
    shape = canvas.shape[1:]
    # Texture at several scales is what image registration locks on to.
    canvas[0] += 12 * _value_noise(rng, shape, 0.08 * w) + 7 * _value_noise(rng, shape, 0.02 * w)
    canvas[0] += 5 * _value_noise(rng, shape, max(2.0, 0.005 * w))
    canvas[0] += rng.normal(0, 3, shape).astype(np.float32)
    canvas[1:] += 2 * _value_noise(rng, shape, 0.05 * w)
    np.clip(canvas, 0, 255, out=canvas)
    hc, wc = shape
    chroma = canvas[1:].reshape(2, hc // 2, 2, wc // 2, 2).mean(axis=(2, 4), dtype=np.float32)
    return np.ascontiguousarray(canvas[0]), np.ascontiguousarray(chroma)


class _Canvas:
    """The world canvas; sprites are drawn per frame and undone from a pristine copy."""

    def __init__(self, luma: F32, chroma: F32) -> None:
        self._pristine = (luma, chroma)
        self.luma, self.chroma = luma.copy(), chroma.copy()
        self._dirty: list[tuple[slice, slice]] = []

    def draw(self, sprite: _Sprite, cx: float, cy: float) -> None:
        """Blend `sprite` centred at canvas px (cx, cy), on even px so chroma lines up."""
        h, w = sprite.luma.shape
        x0, y0 = 2 * round((cx - w / 2) / 2), 2 * round((cy - h / 2) / 2)
        xa, ya = max(x0, 0), max(y0, 0)
        xb, yb = min(x0 + w, self.luma.shape[1]), min(y0 + h, self.luma.shape[0])
        if xa >= xb or ya >= yb:
            return
        src = (slice(ya - y0, yb - y0), slice(xa - x0, xb - x0))
        dst = self.luma[ya:yb, xa:xb]
        dst += sprite.alpha[src] * (sprite.luma[src] - dst)
        src_c = (
            slice(src[0].start // 2, src[0].stop // 2),
            slice(src[1].start // 2, src[1].stop // 2),
        )
        dst_c = self.chroma[:, ya // 2 : yb // 2, xa // 2 : xb // 2]
        dst_c += sprite.alpha_c[src_c] * (sprite.chroma[(slice(None), *src_c)] - dst_c)
        self._dirty.append((slice(ya, yb), slice(xa, xb)))

    def reset(self) -> None:
        luma, chroma = self._pristine
        for ys, xs in self._dirty:
            self.luma[ys, xs] = luma[ys, xs]
            cs = (
                slice(None),
                slice(ys.start // 2, ys.stop // 2),
                slice(xs.start // 2, xs.stop // 2),
            )
            self.chroma[cs] = chroma[cs]
        self._dirty.clear()


# ---- things that move ----


@dataclass(frozen=True, eq=False)
class _Mover:
    """A normal object crossing the scene `cycles` times per loop, off-canvas at the wrap."""

    sprite: _Sprite
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
    sprite: _Sprite, y: float, slope: float, speed: float, canvas_w: int, spec: SceneSpec
) -> tuple[tuple[float, float], tuple[float, float], int]:
    """Start, travel and cycles per loop for a left-to-right crossing at about `speed` px/s."""
    span = canvas_w + sprite.luma.shape[1] + 4
    cycles = max(1, int(speed * spec.loop_seconds / span))
    length = max(span, speed * spec.loop_seconds / cycles)
    x0 = -sprite.luma.shape[1] / 2 - 2 - (length - span) / 2
    return (x0, y - slope * length / 2), (length, slope * length), cycles


def _movers(spec: SceneSpec, margin: int) -> list[_Mover]:
    rng = _rng(spec.seed, _MOVERS)
    h, w = spec.height, spec.width
    canvas_w = w + 2 * margin
    out = []
    specs = [("car", margin + 0.85 * h, 0.0, 0.25 * w), ("car", margin + 0.91 * h, 0.0, 0.3 * w)]
    specs += [
        (
            "person",
            margin + rng.uniform(0.38, 0.78) * h,
            rng.uniform(-0.15, 0.15),
            rng.uniform(0.04, 0.07) * w,
        )
        for _ in range(int(rng.integers(3, 5)))
    ]
    for kind, y, slope, speed in specs:
        sprite = _car(0.3 * h, rng) if kind == "car" else _person(0.13 * h, rng)
        start, travel, cycles = _crossing(sprite, y, slope, speed, canvas_w, spec)
        if rng.random() < 0.5:  # walk/drive the other way
            start, travel = (start[0] + travel[0], start[1] + travel[1]), (-travel[0], -travel[1])
        bob = 0.01 * h if kind == "person" else 0.0
        out.append(_Mover(sprite, start, travel, cycles, float(rng.random()), bob, 0.05 * h))
    return out


@dataclass(frozen=True, eq=False)
class _AnomalyArt:
    """How one anomaly looks: a sprite that enters from `entry`, then stays or orbits."""

    spec: AnomalySpec
    sprite: _Sprite
    entry: tuple[float, float]
    centre: tuple[float, float]
    orbit: tuple[float, float]

    def position(self, progress: float) -> tuple[float, float]:
        (ex, ey), (cx, cy), (rx, ry) = self.entry, self.centre, self.orbit
        ox = cx + rx  # the orbit starts at angle 0
        if progress < 0.2:
            f = progress / 0.2
            return ex + f * (ox - ex), ey + f * (cy - ey)
        angle = 2 * math.pi * (progress - 0.2) / 0.8
        return cx + rx * math.cos(angle), cy + ry * math.sin(angle)


def _anomaly_art(spec: SceneSpec, anomaly: AnomalySpec, index: int, margin: int) -> _AnomalyArt:
    rng = _rng(spec.seed, _ANOMALIES, index)
    r = anomaly.region
    x0, y0 = margin + r.x * spec.width, margin + r.y * spec.height
    rw, rh = r.w * spec.width, r.h * spec.height
    centre = (x0 + rw / 2, y0 + rh / 2)
    if anomaly.kind == "occlusion":
        return _AnomalyArt(anomaly, _flat_patch(rh, rw), centre, centre, (0.0, 0.0))
    if anomaly.kind == "texture_change":
        return _AnomalyArt(anomaly, _texture_patch(rh, rw, rng), centre, centre, (0.0, 0.0))
    if anomaly.kind == "object_appears":
        sprite = _box(max(4.0, 0.35 * rh), max(4.0, 0.3 * rw))
        sh, sw = sprite.luma.shape
        spot = (
            x0 + sw / 2 + rng.uniform(0, max(0.0, rw - sw)),
            y0 + sh / 2 + rng.uniform(0, max(0.0, rh - sh)),
        )
        return _AnomalyArt(anomaly, sprite, spot, spot, (0.0, 0.0))
    sprite = _person(min(0.15 * spec.height, 0.8 * rh), rng, clothes=(30.0, 140.0, 120.0))
    sh, sw = sprite.luma.shape
    orbit = (max(0.0, 0.35 * (rw - sw)), max(0.0, 0.35 * (rh - sh)))
    side = int(rng.integers(4))
    entry = [(x0, centre[1]), (x0 + rw, centre[1]), (centre[0], y0), (centre[0], y0 + rh)][side]
    return _AnomalyArt(anomaly, sprite, entry, centre, orbit)


# ---- sampling the world through the camera ----


class _Warper:
    """Bilinear inverse warp of a canvas into an output grid, with reusable scratch buffers."""

    def __init__(self, out_h: int, out_w: int, canvas_w: int, margin: int) -> None:
        self._xr = np.arange(out_w, dtype=np.float32) - np.float32((out_w - 1) / 2)
        self._yr = np.arange(out_h, dtype=np.float32) - np.float32((out_h - 1) / 2)
        self._centre = ((out_w - 1) / 2 + margin, (out_h - 1) / 2 + margin)
        self._stride = canvas_w
        shape = (out_h, out_w)
        self._sx, self._sy, self._fx, self._fy = (np.empty(shape, np.float32) for _ in range(4))
        self._idx = np.empty(shape, np.intp)
        self._taps = [np.empty(shape, np.float32) for _ in range(4)]

    def prepare(self, dx: float, dy: float, angle_deg: float) -> None:
        """Source position of every output px: p0 = R^-1 (p - c - d) + c (+ margin)."""
        c, s = math.cos(math.radians(angle_deg)), math.sin(math.radians(angle_deg))
        cx, cy = self._centre
        xs, ys = self._xr - np.float32(dx), self._yr - np.float32(dy)
        sx, sy, fx, fy = self._sx, self._sy, self._fx, self._fy
        np.add((c * xs)[None, :], (s * ys + cx)[:, None], out=sx)
        np.add((-s * xs)[None, :], (c * ys + cy)[:, None], out=sy)
        np.floor(sx, out=fx)
        np.floor(sy, out=fy)
        # Flat index computed in float32 (exact below 2**24) and cast once.
        np.subtract(sx, fx, out=sx)
        np.subtract(sy, fy, out=sy)
        np.multiply(fy, np.float32(self._stride), out=fy)
        np.add(fy, fx, out=fy)
        np.copyto(self._idx, fy, casting="unsafe")

    def sample(self, plane: F32) -> F32:
        """The warped plane (a scratch buffer, valid until the next call)."""
        flat, n = plane.reshape(-1), self._stride
        a, b, c, d = self._taps
        for tap, offset in zip(self._taps, (0, 1, n, n + 1), strict=True):
            np.take(flat[offset:], self._idx, out=tap, mode="clip")
        fx, fy = self._sx, self._sy  # fractional parts after prepare()
        np.subtract(b, a, out=b)
        np.multiply(b, fx, out=b)
        np.add(a, b, out=a)
        np.subtract(d, c, out=d)
        np.multiply(d, fx, out=d)
        np.add(c, d, out=c)
        np.subtract(c, a, out=c)
        np.multiply(c, fy, out=c)
        np.add(a, c, out=a)
        return a


def _margin(spec: SceneSpec) -> int:
    """Canvas border wide enough for the largest drift + shift (+2 px for bilinear taps)."""
    sdx = sum(abs(s[1]) for s in spec.shifts)
    sdy = sum(abs(s[2]) for s in spec.shifts)
    angle = math.radians(spec.drift_deg + sum(abs(s[3]) for s in spec.shifts))
    reach = spec.drift_px * math.sqrt(2) + math.hypot(sdx, sdy)
    reach += 2 * math.sin(angle / 2) * math.hypot(spec.width, spec.height) / 2
    return _even(math.ceil(reach) + 5)


class SceneRenderer:
    """Renders frames of one scene loop. Reuses buffers: use one renderer per thread."""

    _NOISE_PAD = 64

    def __init__(self, spec: SceneSpec) -> None:
        self.spec = spec
        h, w = spec.height, spec.width
        margin = _margin(spec)
        if (h + 2 * margin) * (w + 2 * margin) >= 2**24:  # _Warper's float32 index limit
            raise SceneError(f"frame too large to render: {w}x{h} (+{margin} px margin)")
        luma, chroma = _background(spec, margin)
        self._canvas = _Canvas(luma, chroma)
        drift = _rng(spec.seed, _DRIFT)
        self._drift = tuple(
            _Wave.random(drift, amp, (1, 2, 3))
            for amp in (spec.drift_px, spec.drift_px, spec.drift_deg)
        )
        light = _rng(spec.seed, _LIGHT)
        self._gain = _Wave.random(light, 0.1, (1, 2))
        self._offset = _Wave.random(light, 8.0, (1, 3))
        self._movers = _movers(spec, margin)
        self._arts = [_anomaly_art(spec, a, i, margin) for i, a in enumerate(spec.anomalies)]
        # Sensor noise: one field a little larger than the frame, a different window per frame.
        noise = _rng(spec.seed, _NOISE)
        pad = self._NOISE_PAD
        self._noise_y = noise.normal(0, 2.0, (h + pad, w + pad)).astype(np.float32)
        self._noise_c = noise.normal(0, 1.0, (2, h // 2 + pad, w // 2 + pad)).astype(np.float32)
        self._noise_at = noise.integers(0, pad, (spec.frame_count, 2))
        self._warp_y = _Warper(h, w, w + 2 * margin, margin)
        self._warp_c = _Warper(h // 2, w // 2, w // 2 + margin, margin // 2)

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
        return [a for a in self.spec.anomalies if a.start_s <= t < a.end_s]

    def render(self, index: int) -> tuple[U8, U8, U8]:
        """Y (H, W), U and V (H/2, W/2) of loop frame `index`: views into `render_i420`."""
        h, w = self.spec.height, self.spec.width
        flat = self.render_i420(index).reshape(-1)
        n = h * w
        return (
            flat[:n].reshape(h, w),
            flat[n : n * 5 // 4].reshape(h // 2, w // 2),
            flat[n * 5 // 4 :].reshape(h // 2, w // 2),
        )

    def render_i420(self, index: int) -> U8:
        """Loop frame `index` packed as yuv420p (H*3/2, W), as av.VideoFrame.from_ndarray takes."""
        spec = self.spec
        i = index % spec.frame_count
        f, t = i / spec.frame_count, i / spec.fps
        canvas = self._canvas
        canvas.reset()
        for mover in self._movers:
            canvas.draw(mover.sprite, *mover.position(f))
        for art in self._arts:
            a = art.spec
            if a.start_s <= t < a.end_s:
                canvas.draw(art.sprite, *art.position((t - a.start_s) / (a.end_s - a.start_s)))

        h, w = spec.height, spec.width
        out = np.empty((h * 3 // 2, w), np.uint8)
        flat = out.reshape(-1)
        pose = self.pose(i)
        oy, ox = (int(v) for v in self._noise_at[i])

        self._warp_y.prepare(pose.dx, pose.dy, pose.angle_deg)
        luma = self._warp_y.sample(canvas.luma)
        luma *= np.float32(1 + self._gain.at(f))
        luma += self._noise_y[oy : oy + h, ox : ox + w]
        luma += np.float32(self._offset.at(f) + 0.5)  # +0.5: the uint8 cast truncates
        self._store(luma, flat[: h * w])

        self._warp_c.prepare(pose.dx / 2, pose.dy / 2, pose.angle_deg)
        n, q = h * w, h * w // 4
        for plane in range(2):
            c = self._warp_c.sample(canvas.chroma[plane])
            c += self._noise_c[plane, oy // 2 : oy // 2 + h // 2, ox // 2 : ox // 2 + w // 2]
            c += np.float32(0.5)
            self._store(c, flat[n + plane * q : n + (plane + 1) * q])
        return out

    @staticmethod
    def _store(values: F32, dest: U8) -> None:
        np.clip(values, 0, 255, out=values)
        np.copyto(dest.reshape(values.shape), values, casting="unsafe")
