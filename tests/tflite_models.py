"""Real .tflite models for tests, built with camfleet's own graph builder (no TensorFlow): chains
of 3x3 CONV_2D + ReLU layers that also compute their output in numpy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import NDArray

from agent.detection.model.tflite_builder import GraphBuilder

Array = NDArray[np.float32]


def conv_model(
    x_shape: tuple[int, int, int, int], channels: Sequence[int], seed: int = 1
) -> ConvModel:
    """A chain of 3x3 CONV_2D (VALID) + ReLU layers with `channels` outputs each: one thin layer
    for a fast model, several wide ones for a slow model. Keeps its weights for numpy."""
    rng = np.random.default_rng(seed)
    graph = GraphBuilder()
    x = graph.input(x_shape)
    layers = []
    for out in channels:
        depth = x.shape[3]
        weights = (rng.standard_normal((out, 3, 3, depth)) / depth).astype(np.float32)
        bias = rng.standard_normal(out).astype(np.float32) * 0.1
        layers.append((weights, bias))
        x = graph.conv2d(x, weights, bias, padding="VALID", relu=True)
    return ConvModel(graph.build([x], "camfleet pool test"), layers)


class ConvModel:
    def __init__(self, content: bytes, layers: list[tuple[Array, Array]]) -> None:
        self.content, self.layers = content, layers

    def expected(self, x: Array) -> Array:
        for weights, bias in self.layers:
            windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))
            x = np.maximum(np.einsum("nhwcij,oijc->nhwo", windows, weights) + bias, 0)
        return x.astype(np.float32)


SMALL = (1, 32, 32, 1)  # microseconds per invoke
SLOW = (1, 96, 96, 1)  # with six 64-channel layers, tens of milliseconds
