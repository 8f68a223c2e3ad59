"""Real .tflite models for tests, written with ai-edge-litert's flatbuffer utilities (no
TensorFlow): chains of 3x3 CONV_2D + ReLU layers that also compute their output in numpy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils
from numpy.typing import NDArray

Array = NDArray[np.float32]


def conv_model(
    x_shape: tuple[int, int, int, int], channels: Sequence[int], seed: int = 1
) -> ConvModel:
    """A chain of 3x3 CONV_2D (VALID) + ReLU layers with `channels` outputs each: one thin layer
    for a fast model, several wide ones for a slow model. Keeps its weights for numpy."""
    rng = np.random.default_rng(seed)
    layers, shape = [], x_shape
    for out in channels:
        weights = (rng.standard_normal((out, 3, 3, shape[3])) / shape[3]).astype(np.float32)
        layers.append((weights, rng.standard_normal(out).astype(np.float32) * 0.1))
        shape = (shape[0], shape[1] - 2, shape[2] - 2, out)
    graph, buffers = schema.SubGraphT(), [schema.BufferT()]  # buffer 0: the empty sentinel
    graph.tensors, graph.operators = [], []

    def tensor(shape: Sequence[int], data: Array | None = None) -> int:
        t, buffer = schema.TensorT(), schema.BufferT()
        t.name, t.shape, t.buffer = f"t{len(graph.tensors)}", list(shape), len(buffers)
        t.type = schema.TensorType.FLOAT32
        if data is not None:
            buffer.data = np.frombuffer(data.tobytes(), np.uint8)
        graph.tensors.append(t)
        buffers.append(buffer)
        return len(graph.tensors) - 1

    x = first = tensor(x_shape)
    n, h, w, _ = x_shape
    for weights, bias in layers:
        h, w = h - 2, w - 2
        options = schema.Conv2DOptionsT()
        options.padding, options.strideW, options.strideH = schema.Padding.VALID, 1, 1
        options.fusedActivationFunction = schema.ActivationFunctionType.RELU
        op = schema.OperatorT()
        y = tensor((n, h, w, weights.shape[0]))
        op.opcodeIndex, op.inputs, op.outputs = (
            0,
            [x, tensor(weights.shape, weights), tensor(bias.shape, bias)],
            [y],
        )
        op.builtinOptionsType, op.builtinOptions = schema.BuiltinOptions.Conv2DOptions, options
        graph.operators.append(op)
        x = y
    graph.inputs, graph.outputs = [first], [x]
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CONV_2D
    code.version = 1
    model = schema.ModelT()
    model.version, model.description = 3, "camfleet pool test"
    model.operatorCodes, model.subgraphs, model.buffers = [code], [graph], buffers
    return ConvModel(bytes(flatbuffer_utils.convert_object_to_bytearray(model)), layers)


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
