"""ROI crops: where the drift-adjusted polygon lands, views not copies, and the per-ROI cache."""

from __future__ import annotations

import numpy as np

from agent.detection.roi_crop import RoiCropper, crop_roi
from fleet.messages import IDENTITY, Box, RoiAdjustment

FRAME = np.arange(360 * 640, dtype=np.uint32).reshape(360, 640).astype(np.uint8)
SQUARE = [(0.25, 0.25), (0.5, 0.25), (0.5, 0.5), (0.25, 0.5)]  # px 160..320 x 90..180
TRIANGLE = [(0.1, 0.1), (0.3, 0.1), (0.1, 0.4)]


def test_crop_is_a_view_of_the_polygons_pixels() -> None:
    crop = crop_roi(FRAME, SQUARE, IDENTITY)
    assert crop is not None
    assert crop.box == Box(x=160, y=90, w=160, h=90, frame_w=640, frame_h=360)
    assert crop.mask.all()
    assert np.shares_memory(crop.pixels, FRAME)
    np.testing.assert_array_equal(crop.pixels, FRAME[90:180, 160:320])
    detached = crop.detached()
    assert not np.shares_memory(detached.pixels, FRAME)
    np.testing.assert_array_equal(detached.pixels, crop.pixels)


def test_adjustment_moves_the_crop_with_the_view() -> None:
    moved = crop_roi(FRAME, SQUARE, RoiAdjustment(dx=10, dy=-5, angle_deg=0, scale=1))
    assert moved is not None
    assert (moved.box.x, moved.box.y, moved.box.w, moved.box.h) == (170, 85, 160, 90)
    turned = crop_roi(FRAME, SQUARE, RoiAdjustment(dx=0, dy=0, angle_deg=10, scale=1))
    assert turned is not None
    assert turned.box.w > 160 and turned.box.h > 90  # the turned square's bounding box grows
    assert 0.6 < turned.mask.mean() < 0.95  # and its corners are outside the polygon


def test_mask_follows_the_polygon() -> None:
    crop = crop_roi(FRAME, TRIANGLE, IDENTITY)
    assert crop is not None
    assert crop.mask[0, :-2].all() and crop.mask[:-2, 0].all()  # the two legs
    assert not crop.mask[-1, -1]
    assert abs(crop.mask.mean() - 0.5) < 0.02  # a right triangle fills half its box


def test_polygon_out_of_view_has_no_crop() -> None:
    assert crop_roi(FRAME, SQUARE, RoiAdjustment(dx=1000, dy=0, angle_deg=0, scale=1)) is None
    sliver = [(0.5, 0.5), (0.5001, 0.5), (0.5001, 0.5001)]  # no pixel centre inside
    assert crop_roi(FRAME, sliver, IDENTITY) is None


def test_cropper_recomputes_only_when_the_placement_changes() -> None:
    cropper = RoiCropper(TRIANGLE)
    first = cropper.crop(FRAME, IDENTITY)
    again = cropper.crop(FRAME[::-1].copy(), IDENTITY)  # new frame, same placement
    assert first is not None and again is not None
    assert again.mask is first.mask  # cached, not recomputed
    assert not again.mask.flags.writeable  # shared, so nobody may change it
    np.testing.assert_array_equal(
        again.pixels,
        FRAME[::-1][
            again.box.y : again.box.y + again.box.h, again.box.x : again.box.x + again.box.w
        ],
    )

    adj = RoiAdjustment(dx=3.5, dy=2.0, angle_deg=1.0, scale=1.0)
    moved = cropper.crop(FRAME, adj)
    expected = crop_roi(FRAME, TRIANGLE, adj)
    assert moved is not None and expected is not None
    assert moved.mask is not first.mask
    assert moved.box == expected.box
    np.testing.assert_array_equal(moved.mask, expected.mask)
    assert cropper.crop(FRAME[:200], adj) is not None  # another frame size: placed anew
    assert cropper.crop(FRAME, RoiAdjustment(dx=-900, dy=0, angle_deg=0, scale=1)) is None
