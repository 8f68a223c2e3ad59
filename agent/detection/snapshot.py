"""An event's snapshot: its peak frame with the ROI (where it really was) and the anomalous
region drawn on, as JPEG."""

from __future__ import annotations

import itertools
import math

import av
import numpy as np
import numpy.typing as npt

from agent.api.jpeg import to_jpeg
from fleet.messages import Box

# (Y, U, V) of the two colours drawn: the ROI outline and the region found anomalous.
ROI_COLOUR = (180, 60, 30)  # green-blue: where the ROI was
REGION_COLOUR = (90, 90, 240)  # red: what scored high

Plane = npt.NDArray[np.uint8]


def annotated_jpeg(
    frame: av.VideoFrame, polygon: npt.NDArray[np.float64] | None, region: Box | None
) -> bytes:
    """JPEG of `frame` with the placed ROI polygon (px) and the region box outlined."""
    # (H * 3 / 2, W): Y, then the U and V quarter planes
    image: Plane = np.ascontiguousarray(frame.to_ndarray(format="yuv420p"), np.uint8)
    h, w = frame.height, frame.width
    y = image[:h]
    u = image[h : h + h // 4].reshape(h // 2, w // 2)
    v = image[h + h // 4 :].reshape(h // 2, w // 2)
    thickness = max(2, round(w / 320))
    if polygon is not None and len(polygon) >= 2:
        closed = np.vstack([polygon, polygon[:1]])
        for a, b in itertools.pairwise(closed):
            _line((y, u, v), a, b, thickness, ROI_COLOUR)
    if region is not None:
        x0, y0 = region.x * w / region.frame_w, region.y * h / region.frame_h
        x1 = (region.x + region.w) * w / region.frame_w
        y1 = (region.y + region.h) * h / region.frame_h
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1], [x0, y0]])
        for a, b in itertools.pairwise(corners):
            _line((y, u, v), a, b, thickness, REGION_COLOUR)
    out = av.VideoFrame.from_ndarray(image, format="yuv420p")
    return to_jpeg(out)


def _line(
    planes: tuple[Plane, Plane, Plane],
    a: npt.NDArray[np.float64],
    b: npt.NDArray[np.float64],
    thickness: int,
    colour: tuple[int, int, int],
) -> None:
    y, u, v = planes
    h, w = y.shape
    steps = max(2, math.ceil(float(np.hypot(*(b - a)))) * 2)
    points = a + (b - a) * np.linspace(0, 1, steps)[:, None]
    half = thickness // 2
    for oy in range(-half, thickness - half):
        for ox in range(-half, thickness - half):
            cols = np.clip(np.round(points[:, 0]).astype(int) + ox, 0, w - 1)
            rows = np.clip(np.round(points[:, 1]).astype(int) + oy, 0, h - 1)
            y[rows, cols] = colour[0]
            u[rows // 2, cols // 2] = colour[1]
            v[rows // 2, cols // 2] = colour[2]
