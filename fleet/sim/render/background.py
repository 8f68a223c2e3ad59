"""The static world behind everything: skyline, plaza, road, with texture at several scales."""

from __future__ import annotations

import numpy as np

from fleet.sim.render.raster import F32, ellipse, fill, value_noise
from fleet.sim.scene_spec import STREAM_BACKGROUND, SceneSpec, seeded_rng


def background(spec: SceneSpec, margin: int) -> tuple[F32, F32]:
    """World canvas (frame + margin on every side): luma and half-resolution (U, V)."""
    h, w = spec.height, spec.width
    rng = seeded_rng(spec.seed, STREAM_BACKGROUND)
    canvas = np.empty((3, h + 2 * margin, w + 2 * margin), np.float32)

    def row(fraction: float) -> int:
        return margin + round(fraction * h)

    horizon, road_top, road_bottom = row(0.36), row(0.80), row(0.95)
    _buildings(canvas[:, :horizon], rng, h, w, margin)
    _plaza(canvas[:, horizon:road_top], rng, h)
    _road(canvas[:, road_top:road_bottom], h, w)
    fill(canvas[:, road_bottom:], (140.0, 126.0, 130.0))
    shape = canvas.shape[1:]
    # Texture at several scales is what image registration locks on to.
    canvas[0] += 12 * value_noise(rng, shape, 0.08 * w) + 7 * value_noise(rng, shape, 0.02 * w)
    canvas[0] += 5 * value_noise(rng, shape, max(2.0, 0.005 * w))
    canvas[0] += rng.normal(0, 3, shape).astype(np.float32)
    canvas[1:] += 2 * value_noise(rng, shape, 0.05 * w)
    np.clip(canvas, 0, 255, out=canvas)
    hc, wc = shape
    chroma = canvas[1:].reshape(2, hc // 2, 2, wc // 2, 2).mean(axis=(2, 4), dtype=np.float32)
    return np.ascontiguousarray(canvas[0]), np.ascontiguousarray(chroma)


def _buildings(zone: F32, rng: np.random.Generator, h: int, w: int, margin: int) -> None:
    """Facades of varied width, colour and height, sky above."""
    rows = zone.shape[1]
    sky = 215 - 50 * np.arange(rows, dtype=np.float32) / rows
    x = 0
    while x < zone.shape[2]:
        bw = max(4, int(rng.uniform(0.07, 0.2) * w))
        roof = min(rows - 1, margin + int(rng.uniform(0.03, 0.2) * h))
        block = zone[:, :, x : x + bw]
        block[0] = sky[:, None]
        block[1], block[2] = 140, 118
        _facade(block[:, roof:], rng, h, rows)
        block[0, roof : roof + max(1, h // 120)] = 40  # roof edge
        x += bw


def _facade(facade: F32, rng: np.random.Generator, h: int, rows: int) -> None:
    """One building front, shaded downwards, with a grid of randomly lit windows."""
    luma = rng.uniform(70, 190)
    shading = 1 - 0.3 * np.arange(facade.shape[1], dtype=np.float32) / rows
    facade[0] = luma * shading[:, None]
    facade[1], facade[2] = rng.choice([110.0, 118.0, 128.0, 140.0]), rng.uniform(115, 155)
    pitch_y = max(3, int(rng.uniform(0.035, 0.06) * h))
    pitch_x = max(3, int(rng.uniform(0.03, 0.05) * h))
    ly, lx = np.arange(facade.shape[1]), np.arange(facade.shape[2])
    lit = rng.uniform(20, 235, (ly[-1] // pitch_y + 1, lx[-1] // pitch_x + 1)).astype(np.float32)
    win_y = ((ly % pitch_y) < 0.6 * pitch_y) & (ly >= pitch_y)
    win_x = ((lx % pitch_x) < 0.6 * pitch_x) & ((lx % pitch_x) >= 1)
    windows = win_y[:, None] & win_x[None, :]
    facade[0] = np.where(windows, lit[ly // pitch_y][:, lx // pitch_x], facade[0])
    facade[1:] = np.where(windows, np.float32(132), facade[1:])


def _plaza(zone: F32, rng: np.random.Generator, h: int) -> None:
    """Paving tiles with grout, planters and benches."""
    fill(zone, (150.0, 124.0, 134.0))
    rows, cols = zone.shape[1:]
    tile = max(4, int(0.045 * h))
    ly, lx = np.arange(rows), np.arange(cols)
    tone = rng.normal(0, 9, (rows // tile + 1, cols // tile + 1)).astype(np.float32)
    zone[0] += tone[ly // tile][:, lx // tile]
    grout_px = max(1, tile // 10)
    grout = ((ly % tile) < grout_px)[:, None] | ((lx % tile) < grout_px)[None, :]
    zone[0] -= 30 * grout
    yy = np.arange(rows, dtype=np.float32)[:, None]
    xx = np.arange(cols, dtype=np.float32)[None, :]
    for _ in range(4):  # planters
        cy, cx = rng.uniform(0, rows), rng.uniform(0, cols)
        ry, rx = rng.uniform(0.04, 0.07) * h, rng.uniform(0.06, 0.12) * h
        a = ellipse(yy, xx, cy, cx, ry, rx, ry)
        leaves = 85 + 30 * value_noise(rng, (rows, cols), max(2.0, 0.01 * h))
        zone[0] += a * (leaves - zone[0])
        zone[1] += a * (105 - zone[1])
        zone[2] += a * (110 - zone[2])
    for _ in range(2):  # benches
        y0, x0 = rng.uniform(0, rows), rng.uniform(0, cols)
        fill(
            zone[:, int(y0) : int(y0 + 0.03 * h) + 1, int(x0) : int(x0 + 0.15 * h) + 1],
            (85.0, 115.0, 148.0),
        )
    # A soft diagonal shadow band, as from a neighbouring building.
    band = np.sin((xx / cols + yy / rows) * np.pi * rng.uniform(0.8, 1.6) + rng.uniform(0, 6))
    zone[0] *= 1 - 0.18 * np.clip(band, 0, 1)


def _road(zone: F32, h: int, w: int) -> None:
    fill(zone, (72.0, 128.0, 126.0))
    rows = zone.shape[1]
    zone[0, : max(1, h // 90)] = 185  # kerb
    mid, half = rows // 2, max(1, h // 200)
    dashes = (np.arange(zone.shape[2]) % max(4, int(0.11 * w))) < 0.06 * w
    zone[0, mid - half : mid + half + 1, dashes] = 215
