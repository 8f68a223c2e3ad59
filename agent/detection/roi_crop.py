"""An ROI's pixels in the current view: the drawn polygon moved by the drift adjustment, the whole
pixels covering it (a view into the frame, no copy) and which of them lie inside it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agent.detection.luma import Luma
from agent.detection.roi_geometry import Mask, crop_box, place_polygon, polygon_mask
from fleet.messages import Box, RoiAdjustment

Polygon = Sequence[tuple[float, float]]  # normalised 0..1 in the reference view


@dataclass(frozen=True, eq=False)
class RoiCrop:
    box: Box  # in pixels of the luma the crop was taken from
    mask: Mask  # (box.h, box.w): pixel centres inside the placed polygon
    pixels: Luma  # (box.h, box.w) view of the luma

    def detached(self) -> RoiCrop:
        """The same crop owning its pixels, so keeping it does not keep the whole frame alive."""
        return RoiCrop(self.box, self.mask, self.pixels.copy())


@dataclass(frozen=True, eq=False)
class _Placement:
    box: Box
    mask: Mask


def crop_roi(luma: Luma, polygon: Polygon, adj: RoiAdjustment) -> RoiCrop | None:
    """The ROI's crop of `luma` under adjustment `adj` (in luma pixels); None if the placed
    polygon covers no pixel of the frame."""
    placement = _place(polygon, adj, luma.shape[1], luma.shape[0])
    return None if placement is None else _cut(luma, placement)


class RoiCropper:
    """`crop_roi` for one ROI frame after frame: the box and mask are recomputed only when the
    adjustment or the frame size changes, which drift tracking does a few times a second."""

    def __init__(self, polygon: Polygon) -> None:
        self._polygon = tuple(polygon)
        # One tuple, swapped whole, so a reader never pairs a key with another key's placement.
        self._cached: tuple[tuple[RoiAdjustment, int, int], _Placement | None] | None = None

    def crop(self, luma: Luma, adj: RoiAdjustment) -> RoiCrop | None:
        height, width = luma.shape
        key = (adj, width, height)
        cached = self._cached
        if cached is None or cached[0] != key:
            cached = self._cached = (key, _place(self._polygon, adj, width, height))
        placement = cached[1]
        return None if placement is None else _cut(luma, placement)


def _place(polygon: Polygon, adj: RoiAdjustment, width: int, height: int) -> _Placement | None:
    points = place_polygon(polygon, adj, width, height)
    box = crop_box(points, width, height)
    if box is None:
        return None
    mask = polygon_mask(points, box)
    if not mask.any():  # a sliver between pixel centres
        return None
    mask.flags.writeable = False  # shared by every crop until the placement changes
    return _Placement(box, mask)


def _cut(luma: Luma, placement: _Placement) -> RoiCrop:
    box = placement.box
    pixels: Luma = luma[box.y : box.y + box.h, box.x : box.x + box.w]
    return RoiCrop(box, placement.mask, pixels)
