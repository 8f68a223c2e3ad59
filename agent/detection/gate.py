"""A cheap per-ROI change gate: no inference where nothing changed (as Frigate gates on motion).

The ROI crop's luma is averaged down to a small grid (averaging cells is what beats sensor
noise) and compared with a slowly updated background of the same grid. The background is scaled
by the ratio of the two medians before comparing, so lighting that brightens or dims the whole
ROI does not count as change. A frame passes when enough of the cells inside the polygon changed
by more than a threshold, and at least every `heartbeat_s` anyway so scores keep flowing.
Averaging to a fixed grid also makes the gate indifferent to the crop growing or shrinking a
pixel as the ROI follows the camera's drift.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from agent.detection.luma import Luma
from agent.detection.roi_geometry import Mask

Grid = npt.NDArray[np.float32]
Reason = Literal["first", "changed", "heartbeat", "still"]


class GateError(ValueError):
    """Gate settings or an input the gate cannot use."""


@dataclass(frozen=True, slots=True)
class GateSettings:
    grid: tuple[int, int] = (24, 24)  # cells (rows, cols); fewer if the crop is smaller
    cell_threshold: float = 10.0  # luma levels a cell must differ from the background
    changed_share: float = 0.02  # share of the polygon's cells that must change
    background_rate: float = 0.05  # weight of each checked frame in the running average
    # A frame passes at least this often regardless: so an open event hears a low score within
    # a second once its ROI is still again, and a parked object keeps being scored.
    heartbeat_s: float = 1.0

    def __post_init__(self) -> None:
        if min(self.grid) < 1 or self.cell_threshold <= 0 or self.heartbeat_s <= 0:
            raise GateError("grid, cell_threshold and heartbeat_s must be positive")
        if not (0 < self.changed_share <= 1 and 0 < self.background_rate <= 1):
            raise GateError("changed_share and background_rate must be in (0, 1]")


@dataclass(frozen=True, slots=True)
class GateDecision:
    passed: bool
    reason: Reason
    changed_share: float  # of the polygon's cells, against the background


def cell_means(values: npt.NDArray[np.generic], rows: int, cols: int) -> Grid:
    """(rows, cols) means of near-equal blocks of a 2-D array (rows, cols <= its shape)."""
    h, w = values.shape
    row_starts = (np.arange(rows) * h) // rows
    col_starts = (np.arange(cols) * w) // cols
    # Along rows first (contiguous) and in integers: several times faster than the other way.
    sums = np.add.reduceat(
        np.add.reduceat(values, col_starts, axis=1, dtype=np.int32), row_starts, axis=0
    )
    counts = np.outer(np.diff(np.append(row_starts, h)), np.diff(np.append(col_starts, w)))
    means: Grid = (sums / counts).astype(np.float32)
    return means


class ChangeGate:
    """The gate of one ROI; call `check` from one thread, in stamp order."""

    def __init__(self, settings: GateSettings | None = None) -> None:
        self.settings = settings or GateSettings()
        self._background: Grid | None = None
        self._last_pass_us = 0  # set by the first frame, which always passes
        self._mask: Mask | None = None
        self._inside_cells: Mask = np.zeros((0, 0), bool)

    def check(self, crop: Luma, mask: Mask, stamp_us: int) -> GateDecision:
        """Whether this crop (with its polygon mask, same shape) is worth scoring."""
        if crop.ndim != 2 or crop.shape != mask.shape or not mask.any():
            raise GateError(f"crop {crop.shape} and mask {mask.shape}: need equal 2-D, mask set")
        rows, cols = (
            min(self.settings.grid[0], crop.shape[0]),
            min(self.settings.grid[1], crop.shape[1]),
        )
        cells = cell_means(crop, rows, cols)
        inside = self._inside(mask, rows, cols)
        background = self._background
        if background is None or background.shape != cells.shape:
            self._background = cells
            return self._passed("first", 1.0, stamp_us)
        # Median ratio: lighting gain over the polygon, not moved by a small object.
        gain = float(np.median(cells[inside])) / max(float(np.median(background[inside])), 1.0)
        changed = np.abs(cells - background * gain) > self.settings.cell_threshold
        share = float(changed[inside].mean())
        rate = self.settings.background_rate
        background += rate * (cells - background)
        if share >= self.settings.changed_share:
            return self._passed("changed", share, stamp_us)
        if stamp_us - self._last_pass_us >= self.settings.heartbeat_s * 1_000_000:
            return self._passed("heartbeat", share, stamp_us)
        return GateDecision(False, "still", share)

    def _inside(self, mask: Mask, rows: int, cols: int) -> Mask:
        """Cells mostly inside the polygon, or any it touches if none is; kept while the caller
        passes the same mask object (the ROI did not move)."""
        if self._mask is not mask or self._inside_cells.shape != (rows, cols):
            cover = cell_means(mask, rows, cols)
            self._inside_cells = cover >= 0.5 if (cover >= 0.5).any() else cover > 0
            self._mask = mask
        return self._inside_cells

    def _passed(self, reason: Reason, share: float, stamp_us: int) -> GateDecision:
        self._last_pass_us = stamp_us
        return GateDecision(True, reason, share)
