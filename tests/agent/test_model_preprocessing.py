"""Crop -> extractor input: resampling, gain-invariant standardisation, the mask, brightness."""

from __future__ import annotations

import numpy as np
import pytest

from agent.detection.model.extractor import Preprocessing
from agent.detection.model.preprocessing import (
    CONTRAST_SHARE,
    LEVEL_FLOOR,
    brightness,
    prepare,
)

STANDARD = Preprocessing(kind="luma-standardised", height=32, width=48, channels=1)
UNIT = Preprocessing(kind="luma-unit-range", height=32, width=48, channels=3)
RNG = np.random.default_rng(5)
CROP = RNG.integers(20, 110, (64, 96)).astype(np.uint8)
ALL = np.ones(CROP.shape, bool)


def test_standardised_input_ignores_gain_and_barely_moves_with_an_offset() -> None:
    x = prepare(STANDARD, CROP, ALL)
    assert x.shape == (1, 32, 48, 1) and x.dtype == np.float32
    brighter = (CROP.astype(np.int32) * 2).astype(np.uint8)  # exact: no clipping
    np.testing.assert_allclose(prepare(STANDARD, brighter, ALL), x, atol=1e-5)
    offset = prepare(STANDARD, CROP + np.uint8(8), ALL)  # 8 levels on a level of about 65
    assert float(np.abs(offset - x).max()) < 0.15 * float(np.abs(x).max())
    # centred on the median; +-25 % of it maps to +-1 (the 2x2 blocks average the noise down)
    assert abs(float(np.median(x))) < 0.1 and 0.2 < float(x.std()) < 1.5


def test_a_flat_patch_stays_flat_and_unlike_texture() -> None:
    flat = np.full(CROP.shape, 18, np.uint8)
    flat[::7, ::5] = 20  # a little noise on a dark occluder
    x = prepare(STANDARD, flat, ALL)
    # its noise is not scaled up to the contrast of texture, as dividing by its own std would
    assert float(np.abs(x).max()) <= 2 / (CONTRAST_SHARE * LEVEL_FLOOR)
    assert float(x.std()) < 0.1 * float(prepare(STANDARD, CROP, ALL).std())


def test_a_small_object_does_not_rescale_the_rest_of_the_roi() -> None:
    paving = RNG.normal(100, 6, CROP.shape).clip(0, 255).astype(np.uint8)
    other = paving.copy()
    other[:16, :24] = 250  # a bright object on an eighth of the crop
    x, y = prepare(STANDARD, paving, ALL), prepare(STANDARD, other, ALL)
    rest = np.ones((32, 48), bool)
    rest[:9, :13] = False
    # the median hardly moves: elsewhere the input stays as it was
    assert float(np.abs(x[0, :, :, 0] - y[0, :, :, 0])[rest].max()) < 0.1


def test_area_resampling_of_whole_blocks_is_their_mean() -> None:
    x = prepare(UNIT, CROP, ALL)
    blocks = CROP.reshape(32, 2, 48, 2).mean(axis=(1, 3)) / 255
    assert x.shape == (1, 32, 48, 3)
    for channel in range(3):
        np.testing.assert_allclose(x[0, :, :, channel], blocks, atol=1e-6)


def test_upsampling_is_bilinear() -> None:
    ramp = np.tile(np.arange(0, 240, 10, dtype=np.uint8), (16, 1))  # 16 x 24, +10 per column
    x = prepare(UNIT, ramp, np.ones(ramp.shape, bool))[0, :, :, 0] * 255
    steps = np.diff(x[:, 1:-1], axis=1)  # away from the clamped edges
    np.testing.assert_allclose(steps, 5.0, atol=1e-3)  # twice the samples: half the step
    np.testing.assert_allclose(x[:, 0], 0.0, atol=1e-4)


def test_outside_the_mask_is_zero_and_does_not_count() -> None:
    mask = np.zeros(CROP.shape, bool)
    mask[:, :48] = True
    other = CROP.copy()
    other[:, 48:] = 255  # outside the mask: must change nothing
    x = prepare(STANDARD, other, mask)
    assert not x[0, :, 24:].any()
    np.testing.assert_allclose(x, prepare(STANDARD, CROP, mask), atol=1e-6)
    inside = CROP[:, :48].astype(np.float64)
    level = float(np.median(inside))
    expected_left = CROP[:, :48].reshape(32, 2, 24, 2).mean(axis=(1, 3)) - level
    expected_left /= CONTRAST_SHARE * max(level, LEVEL_FLOOR)
    np.testing.assert_allclose(x[0, :, :24, 0], expected_left, atol=1e-4)
    assert brightness(other, mask) == pytest.approx(inside.mean())


def test_a_dark_crop_does_not_amplify_noise() -> None:
    flat = np.full((64, 96), 12, np.uint8)
    flat[::7, ::5] = 13  # one level of noise
    x = prepare(STANDARD, flat, ALL)
    assert np.isfinite(x).all()
    assert float(np.abs(x).max()) <= 1 / (CONTRAST_SHARE * LEVEL_FLOOR)


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="mask of its shape"):
        prepare(STANDARD, CROP, ALL[:10])
    with pytest.raises(ValueError, match="covers no pixel"):
        prepare(STANDARD, CROP, np.zeros(CROP.shape, bool))
