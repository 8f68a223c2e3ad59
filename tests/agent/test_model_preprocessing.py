"""Crop -> extractor input: resampling, lighting-invariant standardisation, the mask, brightness."""

from __future__ import annotations

import numpy as np
import pytest

from agent.detection.model.extractor import Preprocessing
from agent.detection.model.preprocessing import STD_FLOOR, brightness, prepare

STANDARD = Preprocessing(kind="luma-standardised", height=32, width=48, channels=1)
UNIT = Preprocessing(kind="luma-unit-range", height=32, width=48, channels=3)
RNG = np.random.default_rng(5)
CROP = RNG.integers(20, 110, (64, 96)).astype(np.uint8)
ALL = np.ones(CROP.shape, bool)


def test_standardised_input_ignores_gain_and_offset() -> None:
    x = prepare(STANDARD, CROP, ALL)
    assert x.shape == (1, 32, 48, 1) and x.dtype == np.float32
    brighter = (CROP.astype(np.int32) * 2 + 15).astype(np.uint8)  # exact: no clipping
    np.testing.assert_allclose(prepare(STANDARD, brighter, ALL), x, atol=1e-5)
    # the area-averaged 2x2 blocks keep the mean at 0; the std shrinks as the noise averages
    assert abs(float(x.mean())) < 1e-5 and 0.2 < float(x.std()) < 1


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
    expected_left = CROP[:, :48].reshape(32, 2, 24, 2).mean(axis=(1, 3)) - inside.mean()
    np.testing.assert_allclose(x[0, :, :24, 0], expected_left / inside.std(), atol=1e-4)
    assert brightness(other, mask) == pytest.approx(inside.mean())


def test_flat_crop_does_not_amplify_noise() -> None:
    flat = np.full((64, 96), 12, np.uint8)
    flat[::7, ::5] = 13  # one level of noise
    x = prepare(STANDARD, flat, ALL)
    assert np.isfinite(x).all()
    assert float(np.abs(x).max()) <= 1 / STD_FLOOR


def test_bad_shapes_are_refused() -> None:
    with pytest.raises(ValueError, match="mask of its shape"):
        prepare(STANDARD, CROP, ALL[:10])
    with pytest.raises(ValueError, match="covers no pixel"):
        prepare(STANDARD, CROP, np.zeros(CROP.shape, bool))
