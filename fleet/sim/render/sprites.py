"""Sprites: small YUV images with alpha (people, cars, anomaly props), drawn into the world."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fleet.sim.render.raster import F32, Yuv, ellipse, even, soft, value_noise


@dataclass(frozen=True, eq=False)
class Sprite:
    luma: F32  # (h, w)
    alpha: F32  # (h, w)
    chroma: F32  # (2, h/2, w/2)
    alpha_c: F32  # (h/2, w/2)

    @classmethod
    def from_planes(cls, yuv: F32, alpha: F32) -> Sprite:
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
        self.h, self.w = even(h), even(w)
        self.yy = np.arange(self.h, dtype=np.float32)[:, None] + 0.5
        self.xx = np.arange(self.w, dtype=np.float32)[None, :] + 0.5
        self._acc = np.zeros((3, self.h, self.w), np.float32)
        self._alpha = np.zeros((self.h, self.w), np.float32)

    def ellipse(self, cy: float, cx: float, ry: float, rx: float) -> F32:
        return ellipse(self.yy, self.xx, cy, cx, ry, rx, min(rx, ry))

    def rect(self, y0: float, x0: float, y1: float, x1: float) -> F32:
        dist = np.maximum(
            np.maximum(y0 - self.yy, self.yy - y1), np.maximum(x0 - self.xx, self.xx - x1)
        )
        return soft(dist)

    def paint(self, alpha: F32, colour: Yuv | F32) -> None:
        col = np.asarray(colour, np.float32)
        if col.ndim == 1:
            col = col[:, None, None]
        self._acc = self._acc * (1 - alpha) + alpha * col
        self._alpha = self._alpha * (1 - alpha) + alpha

    def sprite(self) -> Sprite:
        yuv = self._acc / np.maximum(self._alpha, 1e-6)
        return Sprite.from_planes(yuv.astype(np.float32), self._alpha)


def person(height: float, rng: np.random.Generator, clothes: Yuv | None = None) -> Sprite:
    p = _Painter(height, 0.42 * height)
    h, w = p.h, p.w
    top = clothes or (rng.uniform(40, 200), rng.uniform(90, 170), rng.uniform(90, 170))
    trousers = (rng.uniform(30, 110), rng.uniform(118, 138), rng.uniform(118, 138))
    p.paint(p.rect(0.55 * h, 0.22 * w, 0.97 * h, 0.46 * w), trousers)
    p.paint(p.rect(0.55 * h, 0.54 * w, 0.97 * h, 0.78 * w), trousers)
    p.paint(p.ellipse(0.40 * h, 0.5 * w, 0.2 * h, 0.45 * w), top)
    p.paint(p.ellipse(0.12 * h, 0.5 * w, 0.09 * h, 0.2 * w), (150.0, 112.0, 148.0))
    return p.sprite()


def car(length: float, rng: np.random.Generator) -> Sprite:
    p = _Painter(0.4 * length, length)
    h, w = p.h, p.w
    body = (rng.uniform(40, 220), rng.uniform(100, 160), rng.uniform(100, 170))
    p.paint(p.rect(0.18 * h, 0.25 * w, 0.55 * h, 0.75 * w), body)
    p.paint(p.rect(0.25 * h, 0.3 * w, 0.5 * h, 0.7 * w), (45.0, 135.0, 122.0))  # windows
    p.paint(p.rect(0.45 * h, 0.02 * w, 0.85 * h, 0.98 * w), body)
    for cx in (0.22 * w, 0.78 * w):
        p.paint(p.ellipse(0.85 * h, cx, 0.14 * h, 0.09 * w), (20.0, 128.0, 128.0))
    return p.sprite()


def box(h: float, w: float) -> Sprite:
    """An abandoned suitcase-like object: bright, shaded, outlined."""
    p = _Painter(h, w)
    shade = 150 + 50 * (1 - p.yy / p.h) + np.zeros_like(p.xx)
    p.paint(p.rect(1, 1, p.h - 1, p.w - 1), (40.0, 128.0, 128.0))
    planes = np.stack([shade, np.full_like(shade, 80.0), np.full_like(shade, 190.0)]).astype(
        np.float32
    )
    p.paint(p.rect(3, 3, p.h - 3, p.w - 3), planes)
    p.paint(p.rect(0.45 * p.h, 3, 0.52 * p.h, p.w - 3), (60.0, 110.0, 160.0))
    return p.sprite()


def flat_patch(h: float, w: float) -> Sprite:
    """Something covering the view: dark, flat, opaque."""
    p = _Painter(h, w)
    p.paint(p.rect(0, 0, p.h, p.w), (18.0, 128.0, 128.0))
    return p.sprite()


def texture_patch(h: float, w: float, rng: np.random.Generator) -> Sprite:
    """A changed surface (spill, graffiti): bold stripes and blotches in a new colour."""
    p = _Painter(h, w)
    period = max(4.0, 0.12 * min(p.h, p.w))
    angle = rng.uniform(0, np.pi)
    phase = (p.xx * math.cos(angle) + p.yy * math.sin(angle)) * (2 * np.pi / period)
    luma = 120 + 80 * np.tanh(3 * np.sin(phase)) + 25 * value_noise(rng, (p.h, p.w), period)
    u, v = rng.uniform(80, 110), rng.uniform(150, 190)
    planes = np.stack([luma, np.full_like(luma, u), np.full_like(luma, v)]).astype(np.float32)
    p.paint(p.rect(0, 0, p.h, p.w) * np.float32(0.9), planes)
    return p.sprite()
