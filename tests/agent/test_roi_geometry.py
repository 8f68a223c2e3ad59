"""ROI geometry: adjustments as transforms, placed polygons, crop boxes and masks."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.detection.roi_geometry import (
    adjustment_from_matrix,
    adjustment_matrix,
    compose,
    crop_box,
    displacement,
    invert,
    place,
    place_polygon,
    polygon_mask,
    rescale,
)
from fleet.messages import IDENTITY, Box, RoiAdjustment

adjustments = st.builds(
    RoiAdjustment,
    dx=st.floats(-200, 200),
    dy=st.floats(-200, 200),
    angle_deg=st.floats(-180, 180),
    scale=st.floats(0.25, 4),
)
sizes = st.tuples(st.integers(16, 2000), st.integers(16, 2000))
point_sets = st.lists(
    st.tuples(st.floats(-500, 2500), st.floats(-500, 2500)), min_size=1, max_size=20
).map(lambda p: np.array(p, np.float64))


def _close(a: np.ndarray, b: np.ndarray, tol: float = 1e-6) -> bool:
    return bool(np.allclose(a, b, atol=tol, rtol=1e-9))


@given(point_sets, sizes)
def test_identity_places_points_where_they_are(points: np.ndarray, size: tuple[int, int]) -> None:
    assert _close(place(points, IDENTITY, *size), points)


@given(point_sets, adjustments, sizes)
def test_inverse_round_trips(points: np.ndarray, adj: RoiAdjustment, size: tuple[int, int]) -> None:
    back = place(place(points, adj, *size), invert(adj), *size)
    assert _close(back, points, 1e-6)
    both = compose(adj, invert(adj))
    assert _close(place(points, both, *size), points, 1e-6)


@given(point_sets, adjustments, adjustments, sizes)
def test_compose_applies_first_then_second(
    points: np.ndarray, first: RoiAdjustment, then: RoiAdjustment, size: tuple[int, int]
) -> None:
    one_by_one = place(place(points, first, *size), then, *size)
    assert _close(place(points, compose(first, then), *size), one_by_one, 1e-6)


@given(adjustments)
def test_matrix_round_trips(adj: RoiAdjustment) -> None:
    again = adjustment_from_matrix(adjustment_matrix(adj))
    assert again.dx == pytest.approx(adj.dx, abs=1e-9) and again.dy == pytest.approx(
        adj.dy, abs=1e-9
    )
    assert again.scale == pytest.approx(adj.scale)
    turn = (again.angle_deg - adj.angle_deg + 180) % 360 - 180  # -180 and 180 are one angle
    assert turn == pytest.approx(0, abs=1e-9)


@given(point_sets, adjustments, sizes, st.sampled_from([2, 3]))
def test_rescale_matches_a_scaled_frame(
    points: np.ndarray, adj: RoiAdjustment, size: tuple[int, int], factor: int
) -> None:
    """Sub stream -> main stream: the same adjustment on a frame `factor` times larger."""
    w, h = size
    big = place(points * factor, rescale(adj, factor), w * factor, h * factor)
    assert _close(big, place(points, adj, w, h) * factor, 1e-6)


def test_positive_angle_turns_clockwise_on_screen_about_the_centre() -> None:
    """The simulator's convention: image y points down, a positive angle turns clockwise."""
    quarter = RoiAdjustment(dx=0, dy=0, angle_deg=90, scale=1)
    corners = np.array([[0.0, 0.0], [100.0, 0.0], [100.0, 50.0]])
    # (0, 0) is up and left of the centre (50, 25); a clockwise quarter turn puts it up-right.
    assert _close(
        place(corners, quarter, 100, 50), np.array([[75.0, -25.0], [75.0, 75.0], [25.0, 75.0]])
    )
    shift = RoiAdjustment(dx=3.5, dy=-1.25, angle_deg=0, scale=1)
    assert _close(place(corners, shift, 100, 50), corners + np.array([3.5, -1.25]))


def test_place_polygon_takes_normalised_vertices() -> None:
    polygon = [(0.0, 0.0), (1.0, 0.0), (0.5, 1.0)]
    assert _close(
        place_polygon(polygon, IDENTITY, 640, 360), np.array([[0, 0], [640, 0], [320, 360.0]])
    )
    zoom = RoiAdjustment(dx=0, dy=0, angle_deg=0, scale=2)
    assert _close(place_polygon([(0.25, 0.25), (0.75, 0.25), (0.5, 0.75)], zoom, 640, 360),
                  np.array([[0, 0], [640, 0], [320, 360.0]]))  # fmt: skip


@given(adjustments, adjustments)
def test_displacement_is_the_largest_gap_at_any_frame_point(
    a: RoiAdjustment, b: RoiAdjustment
) -> None:
    w, h = 640, 360
    gap = displacement(a, b, w, h)
    assert displacement(a, a, w, h) == pytest.approx(0, abs=1e-9)
    grid = np.stack(np.meshgrid(np.linspace(0, w, 9), np.linspace(0, h, 7)), -1).reshape(-1, 2)
    seen = np.hypot(*(place(grid, a, w, h) - place(grid, b, w, h)).T).max()
    assert seen <= gap + 1e-6
    shift = RoiAdjustment(dx=3, dy=4, angle_deg=0, scale=1)
    assert displacement(shift, IDENTITY, w, h) == pytest.approx(5)


def test_crop_box_covers_the_polygon_and_is_clipped_to_the_frame() -> None:
    inside = np.array([[10.2, 20.7], [50.0, 20.7], [50.0, 40.1]])
    assert crop_box(inside, 640, 360) == Box(x=10, y=20, w=40, h=21, frame_w=640, frame_h=360)
    hanging = np.array([[-30.0, -5.0], [700.0, -5.0], [700.0, 30.5]])
    assert crop_box(hanging, 640, 360) == Box(x=0, y=0, w=640, h=31, frame_w=640, frame_h=360)
    outside = np.array([[-30.0, -5.0], [-1.0, -5.0], [-1.0, 30.0]])
    assert crop_box(outside, 640, 360) is None
    below = np.array([[10.0, 360.0], [50.0, 360.0], [50.0, 400.0]])
    assert crop_box(below, 640, 360) is None


def _inside_by_ray_casting(x: float, y: float, polygon: np.ndarray) -> bool:
    """Plain even-odd test of one point, the textbook way."""
    inside = False
    n = len(polygon)
    for i in range(n):
        (x1, y1), (x2, y2) = polygon[i], polygon[(i + 1) % n]
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


polygons = st.lists(st.tuples(st.floats(-10, 50), st.floats(-10, 40)), min_size=3, max_size=9).map(
    lambda p: np.array(p, np.float64)
)


@given(polygons)
def test_mask_matches_a_per_pixel_point_in_polygon_test(polygon: np.ndarray) -> None:
    box = crop_box(polygon, 40, 30)
    if box is None:
        return
    mask = polygon_mask(polygon, box)
    assert mask.shape == (box.h, box.w)
    expected = np.array(
        [
            [
                _inside_by_ray_casting(box.x + j + 0.5, box.y + i + 0.5, polygon)
                for j in range(box.w)
            ]
            for i in range(box.h)
        ]
    )
    assert (mask == expected).all()


@given(st.integers(0, 30), st.integers(0, 20), st.integers(1, 30), st.integers(1, 20), adjustments)
def test_mask_of_a_rectangle_has_its_area(
    x: int, y: int, w: int, h: int, adj: RoiAdjustment
) -> None:
    """Any rectangle's pixel-centre count is within its perimeter of its area; an axis-aligned
    one on whole pixels is exact."""
    rect = np.array([[x, y], [x + w, y], [x + w, y + h], [x, y + h]], np.float64)
    box = crop_box(rect, 64, 48)
    assert box is not None and int(polygon_mask(rect, box).sum()) == w * h
    moved = place(rect, adj.model_copy(update={"dx": 500.0, "dy": 500.0}), 64, 48)
    big = crop_box(moved, 10**4, 10**4)
    assert big is not None
    area = w * h * adj.scale**2
    perimeter = 2 * (w + h) * adj.scale
    assert abs(int(polygon_mask(moved, big).sum()) - area) <= perimeter + 4


def test_mask_works_for_a_large_many_sided_roi() -> None:
    angles = np.linspace(0, 2 * math.pi, 256, endpoint=False)
    circle = np.stack([320 + 150 * np.cos(angles), 180 + 150 * np.sin(angles)], 1)
    box = crop_box(circle, 640, 360)
    assert box is not None
    assert int(polygon_mask(circle, box).sum()) == pytest.approx(math.pi * 150**2, rel=0.002)
