"""The self-trained extractor: convolution filters learnt from the site's own ROI crops by PCA of
patches (after PCANet, Chan et al. 2015), so no outside weights are needed.

Two stages. The first learns 5x5 filters as the principal components of mean-removed input
patches (so they are blind to the local level and see structure: edges, bars, corners); the
second learns 3x3 filters across all first-stage channels from the principal components of
first-stage patches, centred on their mean (the bias). Each stage keeps both signs of every
filter followed by ReLU (CReLU), so whether a component comes out as w or -w does not matter and
no response is thrown away. The feature map concatenates three scales, each pooled to one cell
per 4x4 input pixels: the standardised level itself, the first stage (pooled twice) and the
second stage (which ran at half resolution, so it sees 10x10 input pixels).

With the default sizes (about 64 x 100 input, 8 + 16 filters) the map is 16 x 26 cells of 49
channels and one invoke takes well under a millisecond on one thread. `forward` computes the
same map in numpy, as the reference the .tflite is tested against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from agent.detection.model.extractor import BuiltExtractor, Preprocessing
from agent.detection.model.preprocessing import Input, prepare
from agent.detection.model.tflite_builder import GraphBuilder, Tensor
from agent.detection.roi_crop import RoiCrop

Floats = npt.NDArray[np.float32]
FIRST, SECOND = 5, 3  # filter sizes of the two stages
CELL = 4  # input pixels per feature cell side: a 2x2 pool after each stage
_SIDE_STEP = 8  # input sides are multiples of this (and so of CELL)
_CHUNK = 16  # images per numpy batch, to bound the memory of the patch arrays


@dataclass(frozen=True)
class PatchPcaSettings:
    input_area: int = 6400  # input pixels; the sides follow the crops' mean aspect ratio
    first_filters: int = 8
    second_filters: int = 16
    patches: int = 20_000  # sampled per stage
    seed: int = 0

    def __post_init__(self) -> None:
        if self.first_filters < 1 or self.first_filters > FIRST * FIRST:
            raise ValueError(f"first_filters must be 1..{FIRST * FIRST}")
        if (
            self.second_filters < 1
            or self.second_filters > SECOND * SECOND * 2 * self.first_filters
        ):
            raise ValueError("second_filters must be at least 1 and at most the patch size")
        if self.input_area < 16 * 16 or self.patches < 100:
            raise ValueError("input_area must be >= 256 and patches >= 100")


@dataclass(frozen=True, eq=False)
class PatchPcaFilters:
    """Learnt weights, OHWI as TFLite stores them, and the input they were learnt for."""

    input_shape: tuple[int, int, int, int]  # (1, H, W, 1)
    first: Floats  # (L1, 5, 5, 1), orthonormal, each summing to ~0
    second: Floats  # (L2, 3, 3, 2 * L1), orthonormal
    second_bias: Floats  # (L2,): minus each filter's response to the mean patch

    @property
    def feature_shape(self) -> tuple[int, int, int]:
        _, h, w, _ = self.input_shape
        return h // CELL, w // CELL, 1 + 2 * len(self.first) + 2 * len(self.second)

    def forward(self, x: Input) -> Floats:
        """The feature maps (N, h, w, C) of inputs (N, H, W, 1), in numpy, as the .tflite does."""
        first = _conv_relu(x, *_crelu(self.first, np.zeros(len(self.first), np.float32)))
        half = _pool(first, 2)
        second = _conv_relu(half, *_crelu(self.second, self.second_bias))
        features = np.concatenate([_pool(x, CELL), _pool(half, 2), _pool(second, 2)], axis=3)
        return features.astype(np.float32)

    def tflite(self) -> bytes:
        graph = GraphBuilder()
        x = graph.input(self.input_shape)
        first = graph.conv2d(x, *_crelu(self.first, np.zeros(len(self.first), np.float32)))
        half = graph.average_pool(first, 2)
        second = graph.conv2d(half, *_crelu(self.second, self.second_bias))
        parts: list[Tensor] = [
            graph.average_pool(x, CELL),
            graph.average_pool(half, 2),
            graph.average_pool(second, 2),
        ]
        return graph.build([graph.concatenate(parts)], "camfleet patch-pca extractor")


def build(
    crops: Sequence[RoiCrop], settings: PatchPcaSettings = PatchPcaSettings()
) -> BuiltExtractor:
    """Learn the extractor from training crops (of all the camera's ROIs) and write its .tflite."""
    if not crops:
        raise ValueError("no training crops to learn the extractor from")
    height, width = input_size([c.box.w / c.box.h for c in crops], settings.input_area)
    preprocessing = Preprocessing(kind="luma-standardised", height=height, width=width, channels=1)
    inputs = np.concatenate([prepare(preprocessing, c.pixels, c.mask) for c in crops])
    filters = learn(inputs, settings)
    return BuiltExtractor(
        name="patch-pca",
        tflite=filters.tflite(),
        preprocessing=preprocessing,
        feature_shape=filters.feature_shape,
    )


def input_size(aspects: Sequence[float], area: int) -> tuple[int, int]:
    """(height, width) of about `area` pixels at the geometric mean of the width/height ratios,
    multiples of 8 so every pooling divides evenly; sides 16..256."""
    aspect = math.exp(float(np.mean(np.log(aspects))))

    def side(length: float) -> int:
        return int(np.clip(round(length / _SIDE_STEP) * _SIDE_STEP, 16, 256))

    return side(math.sqrt(area / aspect)), side(math.sqrt(area * aspect))


def learn(inputs: Input, settings: PatchPcaSettings = PatchPcaSettings()) -> PatchPcaFilters:
    """Filters from prepared inputs (N, H, W, 1), H and W multiples of CELL."""
    n, h, w, channels = inputs.shape
    if channels != 1 or h % CELL or w % CELL:
        raise ValueError(
            f"need (N, H, W, 1) inputs with H, W multiples of {CELL}, got {inputs.shape}"
        )
    rng = np.random.default_rng(settings.seed)
    patches = _sample_patches(inputs, FIRST, settings.patches, rng)
    patches -= patches.mean(axis=1, keepdims=True)  # blind to the local level
    first = _components(patches, settings.first_filters).reshape(-1, FIRST, FIRST, 1)
    weights, bias = _crelu(first, np.zeros(len(first), np.float32))
    half = np.concatenate(
        [_pool(_conv_relu(inputs[i : i + _CHUNK], weights, bias), 2) for i in range(0, n, _CHUNK)]
    )
    patches = _sample_patches(half, SECOND, settings.patches, rng)
    mean = patches.mean(axis=0)
    second = _components(patches - mean, settings.second_filters)
    return PatchPcaFilters(
        input_shape=(1, h, w, 1),
        first=first,
        second=second.reshape(-1, SECOND, SECOND, half.shape[3]),
        second_bias=(-second @ mean).astype(np.float32),
    )


def _sample_patches(
    images: Floats, size: int, count: int, rng: np.random.Generator
) -> npt.NDArray[np.float64]:
    """Up to `count` random size x size windows (flattened as h, w, channel) that are not all
    zero, i.e. not wholly outside the ROI mask."""
    windows = np.lib.stride_tricks.sliding_window_view(images, (size, size), axis=(1, 2))
    n, rows, cols = windows.shape[:3]
    picks = rng.integers(0, (n, rows, cols), (count, 3))
    patches = windows[picks[:, 0], picks[:, 1], picks[:, 2]]  # (count, C, size, size)
    flat = patches.transpose(0, 2, 3, 1).reshape(count, -1).astype(np.float64)
    kept: npt.NDArray[np.float64] = flat[np.abs(flat).max(axis=1) > 0]
    if len(kept) < 2 * flat.shape[1]:
        raise ValueError("too few training patches inside the ROI masks")
    return kept


def _components(patches: npt.NDArray[np.float64], count: int) -> Floats:
    """The `count` leading principal directions (count, dim) of centred patches, each signed so
    its largest entry is positive (the CReLU makes the sign irrelevant; this makes it stable)."""
    values, vectors = np.linalg.eigh(patches.T @ patches / len(patches))
    leading = vectors[:, np.argsort(values)[::-1][:count]].T
    signs = np.sign(leading[np.arange(count), np.argmax(np.abs(leading), axis=1)])
    components: Floats = (leading * signs[:, None]).astype(np.float32)
    return components


def _crelu(weights: Floats, bias: Floats) -> tuple[Floats, Floats]:
    """Both signs of every filter: with ReLU after it, relu(r) and relu(-r) keep all of r."""
    return np.concatenate([weights, -weights]), np.concatenate([bias, -bias])


def _conv_relu(x: Floats, weights: Floats, bias: Floats) -> Floats:
    """relu(conv(x)) with zero "SAME" padding and stride 1, as TFLite's CONV_2D computes it."""
    out, k, _, depth = weights.shape
    n, h, w, _ = x.shape
    pad = k // 2
    padded = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (k, k), axis=(1, 2))
    flat = windows.transpose(0, 1, 2, 4, 5, 3).reshape(n * h * w, k * k * depth)
    response = flat @ weights.reshape(out, -1).T + bias
    result: Floats = np.maximum(response, 0).reshape(n, h, w, out).astype(np.float32)
    return result


def _pool(x: Floats, size: int) -> Floats:
    n, h, w, c = x.shape
    pooled: Floats = x.reshape(n, h // size, size, w // size, size, c).mean(axis=(2, 4))
    return pooled
