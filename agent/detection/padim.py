"""PaDiM-style statistics of one ROI's normal appearance, and the anomaly score they give a frame.

Per feature-map cell: the mean and a shrinkage covariance of d channels drawn once at random
(seeded) from the extractor's C; a new frame's score map is the Mahalanobis distance of each cell
from its own Gaussian, and the ROI score is the max (or top-k mean) over the cells inside the ROI.
Lighting is handled twice: the baseline extractor (`features`) is gain-invariant, and the training
frames are clustered by mean luma (k-means, up to three sets, e.g. day, dusk, night) with one set
of statistics each; a frame is scored against the set whose brightness centre is nearest. The
alarm threshold is a high quantile of the ROI scores of held-back normal frames times a margin:
each cluster's frames are cross-fitted in folds, so every frame is scored once by statistics that
never saw it.

Appearance alone cannot tell someone loitering or running about in an ROI from the passers-by
that cross it: people are normal there. What differs is how the picture changes: a passer-by
walking through changes a few cells at its edges from one frame to the next, something darting
about or appearing changes many. So there is a second cue, the change score: the top-k mean over
the ROI of how much each cell's score moved since the previous analysed frame, with its own
threshold calibrated the same way on consecutive held-back frames. The ROI is anomalous when
either cue is above its threshold (`combined`).

Each cell's Gaussian pools the samples of the cells around it (`neighbourhood`): a passer-by
seen a cell higher in training is then normal here too, which a site's footage, with its paths
never all covered, needs; an object that is new anywhere near stays new.

Covariances are shrunk because there are few frames per cell for d x d entries: Ledoit-Wolf
towards a scaled identity by default (shrinkage chosen per cell from the data), or a fixed share
towards the diagonal. A ridge per channel, a share of that channel's variance over all cells,
keeps a cell whose background never changed from calling a change of a noise level an anomaly.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
import numpy.typing as npt

from agent.detection.features import grid_mean

FORMAT_VERSION = 2  # 2: the change score's threshold (change_threshold)

Floats = npt.NDArray[np.float64]
Mask = npt.NDArray[np.bool_]


class PadimFormatError(ValueError):
    """Saved statistics that are incomplete, inconsistent or of another format version."""


@dataclass(frozen=True)
class PadimSettings:
    channels: int = 48  # d: channels drawn from the feature map (all, if it has fewer)
    shrinkage: float | None = None  # None: Ledoit-Wolf per cell; else fixed, towards the diagonal
    ridge: float = 0.5  # added to each channel's variance, as a share of its mean variance
    neighbourhood: int = 1  # a cell's Gaussian pools the cells this many rows/columns around it
    max_clusters: int = 3  # brightness sets
    min_cluster_frames: int = 40  # a brightness set needs this many frames
    min_cluster_gap: float = 25.0  # luma levels between brightness centres
    folds: int = 5  # cross-fitting folds (blocks of time) that give every frame a held-back score
    quantile: float = 0.995  # of held-back ROI scores
    margin: float = 1.1  # threshold = quantile x margin
    top_k: int = 8  # ROI score: 0 = max over the ROI's cells, else the mean of the k highest
    seed: int = 0

    def __post_init__(self) -> None:
        if self.channels < 1:
            raise ValueError(f"channels must be at least 1, got {self.channels}")
        if self.shrinkage is not None and not 0 <= self.shrinkage <= 1:
            raise ValueError(f"shrinkage must be in 0..1, got {self.shrinkage}")
        if not 1 <= self.max_clusters <= 3:
            raise ValueError(f"max_clusters must be 1..3, got {self.max_clusters}")
        if self.folds < 2:
            raise ValueError(f"folds must be at least 2, got {self.folds}")
        if not 0 < self.quantile <= 1:
            raise ValueError(f"quantile must be in (0, 1], got {self.quantile}")
        if self.margin < 1 or self.top_k < 0 or self.ridge < 0 or self.neighbourhood < 0:
            raise ValueError("margin must be >= 1, top_k, ridge and neighbourhood >= 0")


@dataclass(frozen=True, eq=False)
class PadimStats:
    """Everything scoring needs; arrays are per brightness cluster, cells in row-major order."""

    feature_shape: tuple[int, int, int]  # H, W, C of the extractor's map
    channels: npt.NDArray[np.int64]  # (d,) indices into C, ascending
    centres: Floats  # (k,) mean luma of each brightness cluster, ascending
    means: npt.NDArray[np.float32]  # (k, H*W, d)
    precisions: npt.NDArray[np.float32]  # (k, H*W, d, d) inverse shrunk covariances
    threshold: float
    change_threshold: float  # of `change_score`, calibrated like `threshold`
    quantile: float
    margin: float
    top_k: int

    def cluster_for(self, brightness: float) -> int:
        return int(np.argmin(np.abs(self.centres - brightness)))


@dataclass(frozen=True)
class RoiScore:
    score: float
    cluster: int  # the brightness set the frame was scored against
    score_map: npt.NDArray[np.float32]  # (H, W) Mahalanobis distance per cell
    peak_cell: tuple[int, int]  # row, column of the highest cell inside the ROI


def fit(
    features: npt.NDArray[np.floating[Any]],
    brightness: npt.ArrayLike,
    mask: Mask | None = None,
    settings: PadimSettings = PadimSettings(),
) -> PadimStats:
    """Statistics of N normal frames' feature maps (N, H, W, C), in time order, with their mean
    luma (N,).

    `mask` (H, W) marks the ROI's cells (see `cell_mask`; None: all cells): the threshold is
    calibrated for the ROI score over exactly those cells, so score with the same mask.
    """
    maps = np.asarray(features)
    lumas = np.asarray(brightness, dtype=np.float64)
    if maps.ndim != 4 or lumas.shape != maps.shape[:1]:
        raise ValueError(
            f"need features (N, H, W, C) and brightness (N,), got {maps.shape}, {lumas.shape}"
        )
    if not (np.isfinite(maps).all() and np.isfinite(lumas).all()):
        raise ValueError("features and brightness must be finite")
    n, h, w, c = maps.shape
    d = min(settings.channels, c)
    roi = _checked_mask(mask, (h, w))
    rng = np.random.default_rng(settings.seed)
    channels = np.sort(rng.choice(c, d, replace=False)).astype(np.int64)
    cells = maps[..., channels].reshape(n, h * w, d).astype(np.float64)
    centres = brightness_centres(lumas, settings)
    labels = np.argmin(np.abs(lumas[:, None] - centres[None, :]), axis=1)
    held_back, changes, means, precisions = [], [], [], []
    for k in range(len(centres)):
        members = np.flatnonzero(labels == k)  # in time order: the folds are blocks of time
        if len(members) < 2 * settings.folds:
            raise ValueError(f"brightness cluster {k} has only {len(members)} of {n} frames")
        scores, change = _held_back_scores(cells[members], roi, settings)
        held_back.append(scores)
        changes.append(change)
        mean, precision = _gaussians(cells[members], (h, w), settings)
        means.append(mean)
        precisions.append(precision)
    quantile = float(np.quantile(np.concatenate(held_back), settings.quantile))
    change_quantile = float(np.quantile(np.concatenate(changes), settings.quantile))
    return PadimStats(
        feature_shape=(h, w, c),
        channels=channels,
        centres=centres,
        means=np.stack(means).astype(np.float32),
        precisions=np.stack(precisions).astype(np.float32),
        threshold=quantile * settings.margin,
        # floored: footage where nothing ever changed must not make every flicker an anomaly
        change_threshold=max(change_quantile, 1e-3 * quantile) * settings.margin,
        quantile=settings.quantile,
        margin=settings.margin,
        top_k=settings.top_k,
    )


def score(
    stats: PadimStats,
    features: npt.NDArray[np.floating[Any]],
    brightness: float,
    mask: Mask | None = None,
) -> RoiScore:
    """Score one frame's feature map (H, W, C) against the set for its mean luma."""
    h, w, c = stats.feature_shape
    if features.shape != stats.feature_shape:
        raise ValueError(f"feature map {features.shape} does not match {stats.feature_shape}")
    if not (math.isfinite(brightness) and np.isfinite(features).all()):
        raise ValueError("features and brightness must be finite")
    roi = _checked_mask(mask, (h, w))
    k = stats.cluster_for(brightness)
    cells = features.reshape(1, h * w, c)[:, :, stats.channels].astype(np.float32)
    score_map = _score_maps(cells, stats.means[k], stats.precisions[k])[0].reshape(h, w)
    masked = np.where(roi, score_map, -np.inf)
    row, col = np.unravel_index(int(np.argmax(masked)), (h, w))
    value = float(_roi_scores(score_map[None], roi, stats.top_k)[0])
    return RoiScore(value, k, score_map, (int(row), int(col)))


def change_map(score_map: npt.NDArray[np.float32], previous: npt.NDArray[np.float32]) -> Floats:
    """How far each cell's score moved since the previous analysed frame's map."""
    if score_map.shape != previous.shape:
        raise ValueError(f"score maps {score_map.shape} and {previous.shape} differ")
    moved: Floats = np.abs(score_map.astype(np.float64) - previous)
    return moved


def change_score(stats: PadimStats, moved: Floats, mask: Mask | None = None) -> float:
    """The ROI's change score: the top-k mean of `change_map` over its cells."""
    roi = _checked_mask(mask, moved.shape[:2])
    return float(_roi_scores(moved[None].astype(np.float32), roi, stats.top_k)[0])


def combined(stats: PadimStats, score: float, change: float | None) -> float:
    """One score for the ROI on the appearance scale: the appearance score, or the change score
    rescaled so that its threshold lands on the appearance threshold, whichever is higher."""
    if change is None:
        return score
    return max(score, change * stats.threshold / stats.change_threshold)


def _held_back_scores(cells: Floats, roi: Mask, settings: PadimSettings) -> tuple[Floats, Floats]:
    """ROI scores of one cluster's frames (n, cells, d), each by statistics fitted without it,
    and the change scores of each fold's consecutive frames.

    Cross-fitting over `folds` folds gives every frame a held-back score, so the quantile rests
    on all of them rather than on a small held-out share, and the statistics in use are fitted on
    all frames. The folds are contiguous blocks of time: frames a fifth of a second apart are
    near copies, so a random split would score each frame by statistics that saw its neighbours
    and calibrate for footage already seen; a block instead holds passers-by, paths and light the
    other blocks never saw, as new footage does.
    """
    folds = np.array_split(np.arange(len(cells)), settings.folds)
    scores, changes = [], []
    for fold in folds:
        mean, precision = _gaussians(np.delete(cells, fold, axis=0), roi.shape, settings)
        maps = _score_maps(cells[fold], mean, precision).reshape(len(fold), *roi.shape)
        scores.append(_roi_scores(maps, roi, settings.top_k))
        # Frames of a fold are consecutive, but for the few the trainer held back or that
        # fell in another brightness set: those gaps only make the threshold a little higher.
        changes.append(_roi_scores(np.abs(np.diff(maps, axis=0)), roi, settings.top_k))
    return np.concatenate(scores), np.concatenate(changes)


def _score_maps(
    cells: npt.NDArray[np.floating[Any]],
    means: npt.NDArray[np.floating[Any]],
    precisions: npt.NDArray[np.floating[Any]],
) -> npt.NDArray[np.float32]:
    """Mahalanobis distances (m, K) of m frames' cells (m, K, d) from K Gaussians."""
    delta = (cells - means[None]).transpose(1, 0, 2)  # (K, m, d)
    squared = np.einsum("kmd,kmd->km", np.matmul(delta, precisions), delta)
    distances: npt.NDArray[np.float32] = np.sqrt(np.maximum(squared.T, 0)).astype(np.float32)
    return distances


def _roi_scores(score_maps: npt.NDArray[np.float32], roi: Mask, top_k: int) -> Floats:
    """Per frame (m, H, W): the max, or the mean of the top_k, of the cells inside the ROI."""
    inside = score_maps[:, roi].astype(np.float64)
    first = inside.shape[1] - min(top_k, inside.shape[1]) if top_k else inside.shape[1] - 1
    scores: Floats = np.partition(inside, first, axis=1)[:, first:].mean(axis=1)
    return scores


def cell_mask(pixel_mask: Mask, grid: tuple[int, int], min_cover: float = 0.5) -> Mask:
    """An ROI's pixel mask over its crop -> the feature-map cells at least `min_cover` inside it."""
    cover = grid_mean(pixel_mask.astype(np.float64), grid)
    cells: Mask = cover >= min_cover
    if not cells.any():  # a thin ROI still covers its best cell
        cells.flat[int(np.argmax(cover))] = True
    return cells


def brightness_centres(brightness: Floats, settings: PadimSettings) -> Floats:
    """Mean-luma centres of the brightness sets: the most clusters (up to max_clusters) whose
    centres are at least min_cluster_gap apart and that each hold min_cluster_frames frames."""
    for k in range(settings.max_clusters, 1, -1):
        centres = _kmeans_1d(brightness, k)
        counts = np.bincount(
            np.argmin(np.abs(brightness[:, None] - centres[None, :]), axis=1), minlength=k
        )
        if counts.min() >= settings.min_cluster_frames and (
            np.diff(centres).min() >= settings.min_cluster_gap
        ):
            return centres
    return np.array([float(brightness.mean())])


def _kmeans_1d(values: Floats, k: int, rounds: int = 50) -> Floats:
    centres = np.quantile(values, (np.arange(k) + 0.5) / k)
    for _ in range(rounds):
        labels = np.argmin(np.abs(values[:, None] - centres[None, :]), axis=1)
        moved = np.array(
            [values[labels == j].mean() if (labels == j).any() else centres[j] for j in range(k)]
        )
        if np.array_equal(moved, centres):
            break
        centres = moved
    return np.sort(centres)


def _gaussians(
    cells: Floats, grid: tuple[int, int], settings: PadimSettings
) -> tuple[Floats, Floats]:
    """Mean (K, d) and inverse shrunk covariance (K, d, d) of samples (n, K = h * w, d), each
    cell's pooled with its neighbours'.

    Pooling needs each cell's moments only: the pooled covariance is the mean of the neighbours'
    second moments about the pooled mean, so it costs one pass over the samples whatever the
    neighbourhood."""
    n, _, d = cells.shape
    around = _neighbours(grid, settings.neighbourhood)  # (m, K)
    own_mean = cells.mean(axis=0)
    by_cell = np.ascontiguousarray((cells - own_mean).transpose(1, 0, 2))  # (K, n, d) for BLAS
    own_cov = np.matmul(by_cell.transpose(0, 2, 1), by_cell) / n
    # Ledoit-Wolf's mean of |x|^4, about each cell's own mean: it only sets how much to shrink
    own_fourth = ((by_cell**2).sum(axis=2) ** 2).mean(axis=1)
    mean = own_mean[around].mean(axis=0)
    offsets = own_mean[around] - mean  # (m, K, d): each neighbour's mean about the pooled one
    cov = own_cov[around].mean(axis=0) + np.einsum("mki,mkj->kij", offsets, offsets) / len(around)
    fourth = own_fourth[around].mean(axis=0)
    variances = np.diagonal(cov, axis1=1, axis2=2)
    if settings.shrinkage is None:
        mu = variances.mean(axis=1)  # (K,) scale of the identity target
        target = mu[:, None, None] * np.eye(d)
        alpha = _ledoit_wolf_shrinkage(fourth, n * len(around), cov, mu)
    else:
        target = variances[:, :, None] * np.eye(d)
        alpha = np.full(len(cov), settings.shrinkage)
    shrunk = (1 - alpha)[:, None, None] * cov + alpha[:, None, None] * target
    floor = settings.ridge * variances.mean(axis=0) + np.finfo(np.float32).tiny
    shrunk += floor[None, :, None] * np.eye(d)
    return mean, np.linalg.inv(shrunk)


def _neighbours(grid: tuple[int, int], radius: int) -> npt.NDArray[np.intp]:
    """(m, h * w): per offset within `radius` rows and columns, the cell each cell pools; at the
    map's edge the nearest cell inside stands in for the missing ones."""
    h, w = grid
    offsets = range(-radius, radius + 1)
    rows, cols = np.arange(h)[:, None], np.arange(w)[None, :]
    return np.stack(
        [
            (np.clip(rows + dy, 0, h - 1) * w + np.clip(cols + dx, 0, w - 1)).reshape(-1)
            for dy in offsets
            for dx in offsets
        ]
    )


def _ledoit_wolf_shrinkage(fourth: Floats, n: int, cov: Floats, mu: Floats) -> Floats:
    """Per cell, the Ledoit-Wolf (2004) shrinkage towards mu * I (as in scikit-learn), from the
    mean of |x|^4 over the n centred samples and their covariance."""
    d = cov.shape[1]
    cov_sq = (cov**2).sum(axis=(1, 2))
    beta = (fourth - cov_sq) / n
    delta = cov_sq - 2 * mu * np.trace(cov, axis1=1, axis2=2) + d * mu**2
    beta = np.minimum(beta, delta)
    shrinkage: Floats = np.divide(beta, delta, out=np.zeros_like(delta), where=delta > 0)
    return shrinkage


def _checked_mask(mask: Mask | None, shape: tuple[int, int]) -> Mask:
    if mask is None:
        return np.ones(shape, dtype=bool)
    if mask.shape != shape or mask.dtype != np.bool_:
        raise ValueError(f"ROI mask must be bool {shape}, got {mask.dtype} {mask.shape}")
    if not mask.any():
        raise ValueError("ROI mask covers no cell")
    return mask


def manifest(stats: PadimStats) -> dict[str, Any]:
    """The small, JSON-able description of saved statistics (for the model artifact's manifest)."""
    return {
        "format": FORMAT_VERSION,
        "feature_shape": list(stats.feature_shape),
        "channels": stats.channels.tolist(),
        "clusters": len(stats.centres),
        "brightness_centres": stats.centres.tolist(),
        "threshold": stats.threshold,
        "change_threshold": stats.change_threshold,
        "quantile": stats.quantile,
        "margin": stats.margin,
        "top_k": stats.top_k,
    }


def save(stats: PadimStats, file: str | Path | IO[bytes]) -> None:
    """Arrays and manifest in one .npz (no pickles)."""
    np.savez(
        file,
        manifest=np.array(json.dumps(manifest(stats))),
        channels=stats.channels,
        centres=stats.centres,
        means=stats.means,
        precisions=stats.precisions,
    )


def load(file: str | Path | IO[bytes]) -> PadimStats:
    try:
        with np.load(file, allow_pickle=False) as saved:
            meta = json.loads(str(saved["manifest"]))
            arrays = {name: saved[name] for name in ("channels", "centres", "means", "precisions")}
    except (KeyError, ValueError, OSError) as exc:
        raise PadimFormatError(f"not saved PaDiM statistics: {exc}") from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_VERSION:
        raise PadimFormatError(f"unsupported statistics format {meta!r:.80}")
    try:
        h, w, c = (int(v) for v in meta["feature_shape"])
        stats = PadimStats(
            feature_shape=(h, w, c),
            channels=arrays["channels"].astype(np.int64),
            centres=arrays["centres"].astype(np.float64),
            means=arrays["means"].astype(np.float32),
            precisions=arrays["precisions"].astype(np.float32),
            threshold=float(meta["threshold"]),
            change_threshold=float(meta["change_threshold"]),
            quantile=float(meta["quantile"]),
            margin=float(meta["margin"]),
            top_k=int(meta["top_k"]),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise PadimFormatError(f"incomplete statistics manifest: {exc}") from exc
    _check_consistent(stats, meta)
    return stats


def _check_consistent(stats: PadimStats, meta: dict[str, Any]) -> None:
    h, w, c = stats.feature_shape
    k, d = len(stats.centres), len(stats.channels)
    problems = [
        what
        for what, ok in (
            ("channels", meta.get("channels") == stats.channels.tolist()),
            ("channel range", d > 0 and stats.channels.min() >= 0 and stats.channels.max() < c),
            ("clusters", meta.get("clusters") == k),
            ("thresholds", stats.threshold > 0 and stats.change_threshold > 0),
            ("means shape", stats.means.shape == (k, h * w, d)),
            ("precisions shape", stats.precisions.shape == (k, h * w, d, d)),
        )
        if not ok
    ]
    if problems:
        raise PadimFormatError(f"inconsistent statistics: {', '.join(problems)}")
