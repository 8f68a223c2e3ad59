"""Where an ROI is in the current view: adjustments as matrices, placed polygons, crops, masks.

An adjustment moves reference-view positions p to current-view positions
p' = scale * R(angle) (p - c) + c + (dx, dy), with c the frame centre and R turning clockwise on
screen for a positive angle (image y points down) — the simulator's camera pose convention.
Positions are continuous pixel coordinates: pixel (i, j) covers [j, j + 1) x [i, i + 1), so a
normalised ROI vertex (x, y) is at (x * width, y * height). Because the transform is about the
centre, composing and inverting adjustments does not depend on the frame size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from fleet.messages import Box, RoiAdjustment

Points = npt.NDArray[np.float64]  # (N, 2): x, y in pixels
Matrix = npt.NDArray[np.float64]  # 3x3 homogeneous, centred pixel coordinates
Mask = npt.NDArray[np.bool_]


def adjustment_matrix(adj: RoiAdjustment) -> Matrix:
    c = adj.scale * math.cos(math.radians(adj.angle_deg))
    s = adj.scale * math.sin(math.radians(adj.angle_deg))
    return np.array([[c, -s, adj.dx], [s, c, adj.dy], [0.0, 0.0, 1.0]])


def adjustment_from_matrix(m: Matrix) -> RoiAdjustment:
    """The adjustment of a similarity matrix (any shear or anisotropy is not representable)."""
    return RoiAdjustment(
        dx=float(m[0, 2]),
        dy=float(m[1, 2]),
        angle_deg=math.degrees(math.atan2(m[1, 0], m[0, 0])),
        scale=math.hypot(m[0, 0], m[1, 0]),
    )


def compose(first: RoiAdjustment, then: RoiAdjustment) -> RoiAdjustment:
    """The adjustment that applies `first`, then `then`."""
    return adjustment_from_matrix(adjustment_matrix(then) @ adjustment_matrix(first))


def invert(adj: RoiAdjustment) -> RoiAdjustment:
    m = adjustment_matrix(adj)
    back = m[:2, :2].T / adj.scale**2  # a similarity's inverse linear part
    inverse = np.eye(3)
    inverse[:2, :2], inverse[:2, 2] = back, -back @ m[:2, 2]
    return adjustment_from_matrix(inverse)


def rescale(adj: RoiAdjustment, factor: float) -> RoiAdjustment:
    """The same adjustment for frames `factor` times larger (e.g. sub stream -> main: 3)."""
    return adj.model_copy(update={"dx": adj.dx * factor, "dy": adj.dy * factor})


def place(points: Points, adj: RoiAdjustment, width: int, height: int) -> Points:
    """Reference-view pixel positions moved onto the current view of a width x height frame."""
    centre = np.array([width / 2, height / 2])
    m = adjustment_matrix(adj)
    placed: Points = (np.asarray(points, np.float64) - centre) @ m[:2, :2].T + m[:2, 2] + centre
    return placed


def place_polygon(
    polygon: Sequence[tuple[float, float]], adj: RoiAdjustment, width: int, height: int
) -> Points:
    """An ROI polygon in normalised coordinates, in pixels of the current view."""
    return place(np.asarray(polygon, np.float64) * (width, height), adj, width, height)


def displacement(a: RoiAdjustment, b: RoiAdjustment, width: int, height: int) -> float:
    """How far apart (px) `a` and `b` put any point of the frame: the most at a corner."""
    corners = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float64)
    gap = place(corners, a, width, height) - place(corners, b, width, height)
    return float(np.hypot(gap[:, 0], gap[:, 1]).max())


def crop_box(points: Points, width: int, height: int) -> Box | None:
    """The whole pixels covering a placed polygon, clipped to the frame; None if none are left."""
    x0 = max(0, math.floor(float(points[:, 0].min())))
    y0 = max(0, math.floor(float(points[:, 1].min())))
    x1 = min(width, math.ceil(float(points[:, 0].max())))
    y1 = min(height, math.ceil(float(points[:, 1].max())))
    if x1 <= x0 or y1 <= y0:
        return None
    return Box(x=x0, y=y0, w=x1 - x0, h=y1 - y0, frame_w=width, frame_h=height)


def polygon_mask(points: Points, box: Box) -> Mask:
    """(box.h, box.w): which pixels of the crop have their centre inside the polygon.

    Even-odd rule, so self-intersecting polygons behave predictably. Per row, each edge the
    row's centre line crosses flips every pixel left of the crossing; a suffix sum counts flips.
    """
    rows = box.y + 0.5 + np.arange(box.h)
    x1, y1 = points[:, 0], points[:, 1]
    x2, y2 = np.roll(x1, -1), np.roll(y1, -1)
    # Half-open in y so a row through a vertex counts each edge pair once.
    crosses = (y1[None, :] > rows[:, None]) != (y2[None, :] > rows[:, None])
    with np.errstate(divide="ignore", invalid="ignore"):
        at_x = np.where(crosses, x1 + (rows[:, None] - y1) * (x2 - x1) / (y2 - y1), 0.0)
    # Pixels j with centre box.x + j + 0.5 < at_x lie left of the crossing: j < first_right.
    first_right = np.clip(np.ceil(at_x - box.x - 0.5), 0, box.w).astype(np.intp)
    flips = np.zeros((box.h, box.w + 1), np.int32)
    row_idx = np.broadcast_to(np.arange(box.h)[:, None], crosses.shape)
    np.add.at(flips, (row_idx[crosses], first_right[crosses]), 1)
    left_of = np.cumsum(flips[:, ::-1], axis=1)[:, ::-1]  # crossings at index > j
    mask: Mask = (left_of[:, 1:] % 2).astype(bool)
    return mask
