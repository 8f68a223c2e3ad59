"""A tiny builder of float32 .tflite graphs over the flatbuffer object API (no TensorFlow).

Just the operators camfleet's own extractors need: stride-1 CONV_2D with an optional fused ReLU,
non-overlapping AVERAGE_POOL_2D and CONCATENATION. Shapes are NHWC with a batch of one; weights
are OHWI as TFLite stores them. The builder infers every output shape, so the graph it writes
is fully shaped and `allocate_tensors` needs no resizing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

Padding = Literal["SAME", "VALID"]
Shape = tuple[int, ...]


@dataclass(frozen=True)
class Tensor:
    """A tensor of the graph being built: its index in the subgraph and its shape."""

    index: int
    shape: Shape


class GraphBuilder:
    """Adds tensors and operators to one subgraph; `build` returns the model file's bytes."""

    def __init__(self) -> None:
        self._tensors: list[Any] = []
        self._buffers: list[Any] = [schema.BufferT()]  # buffer 0: the empty sentinel
        self._operators: list[Any] = []
        self._opcodes: list[int] = []  # builtin operator codes, in opcode index order
        self._inputs: list[int] = []

    def input(self, shape: Sequence[int]) -> Tensor:
        tensor = self._tensor(tuple(shape))
        self._inputs.append(tensor.index)
        return tensor

    def conv2d(
        self,
        x: Tensor,
        weights: npt.NDArray[np.float32],
        bias: npt.NDArray[np.float32],
        padding: Padding = "SAME",
        relu: bool = True,
    ) -> Tensor:
        """Stride-1 convolution with weights (out, kh, kw, in) and bias (out,)."""
        out, kh, kw, depth = weights.shape
        if depth != x.shape[3] or bias.shape != (out,):
            raise ValueError(f"conv weights {weights.shape}, bias {bias.shape} for input {x.shape}")
        n, h, w, _ = x.shape
        if padding == "VALID":
            h, w = h - kh + 1, w - kw + 1
        options = schema.Conv2DOptionsT()
        options.padding = _padding(padding)
        options.strideW = options.strideH = 1
        options.fusedActivationFunction = _activation(relu)
        inputs = [x.index, self._constant(weights).index, self._constant(bias).index]
        return self._operator(
            schema.BuiltinOperator.CONV_2D,
            schema.BuiltinOptions.Conv2DOptions,
            options,
            inputs,
            (n, h, w, out),
        )

    def average_pool(self, x: Tensor, size: int) -> Tensor:
        """Mean over non-overlapping size x size windows; height and width must divide by size."""
        n, h, w, c = x.shape
        if size < 1 or h % size or w % size:
            raise ValueError(f"cannot pool {x.shape} by {size}")
        options = schema.Pool2DOptionsT()
        options.padding = _padding("VALID")
        options.strideW = options.strideH = options.filterWidth = options.filterHeight = size
        options.fusedActivationFunction = _activation(False)
        return self._operator(
            schema.BuiltinOperator.AVERAGE_POOL_2D,
            schema.BuiltinOptions.Pool2DOptions,
            options,
            [x.index],
            (n, h // size, w // size, c),
        )

    def concatenate(self, parts: Sequence[Tensor]) -> Tensor:
        """Along the channel axis; every other dimension must agree."""
        if not parts or len({p.shape[:3] for p in parts}) != 1:
            raise ValueError(f"cannot concatenate {[p.shape for p in parts]} along channels")
        options = schema.ConcatenationOptionsT()
        options.axis = 3
        options.fusedActivationFunction = _activation(False)
        return self._operator(
            schema.BuiltinOperator.CONCATENATION,
            schema.BuiltinOptions.ConcatenationOptions,
            options,
            [p.index for p in parts],
            (*parts[0].shape[:3], sum(p.shape[3] for p in parts)),
        )

    def build(self, outputs: Sequence[Tensor], description: str) -> bytes:
        graph = schema.SubGraphT()
        graph.tensors, graph.operators = self._tensors, self._operators
        graph.inputs, graph.outputs = list(self._inputs), [t.index for t in outputs]
        codes = []
        for builtin in self._opcodes:
            code = schema.OperatorCodeT()
            code.builtinCode = code.deprecatedBuiltinCode = builtin
            code.version = 1
            codes.append(code)
        model = schema.ModelT()
        model.version, model.description = 3, description
        model.operatorCodes, model.subgraphs, model.buffers = codes, [graph], self._buffers
        return bytes(flatbuffer_utils.convert_object_to_bytearray(model))

    def _tensor(self, shape: Shape, data: npt.NDArray[np.float32] | None = None) -> Tensor:
        tensor, buffer = schema.TensorT(), schema.BufferT()
        tensor.name, tensor.shape = f"t{len(self._tensors)}", list(shape)
        tensor.type, tensor.buffer = schema.TensorType.FLOAT32, len(self._buffers)
        if data is not None:
            buffer.data = np.frombuffer(np.ascontiguousarray(data, np.float32).tobytes(), np.uint8)
        self._tensors.append(tensor)
        self._buffers.append(buffer)
        return Tensor(len(self._tensors) - 1, shape)

    def _constant(self, data: npt.NDArray[np.float32]) -> Tensor:
        return self._tensor(tuple(data.shape), data)

    def _operator(
        self, builtin: int, options_type: int, options: Any, inputs: list[int], shape: Shape
    ) -> Tensor:
        if builtin not in self._opcodes:
            self._opcodes.append(builtin)
        output = self._tensor(shape)
        op = schema.OperatorT()
        op.opcodeIndex = self._opcodes.index(builtin)
        op.inputs, op.outputs = inputs, [output.index]
        op.builtinOptionsType, op.builtinOptions = options_type, options
        self._operators.append(op)
        return output


def _padding(padding: Padding) -> int:
    return int(schema.Padding.SAME if padding == "SAME" else schema.Padding.VALID)


def _activation(relu: bool) -> int:
    return int(schema.ActivationFunctionType.RELU if relu else schema.ActivationFunctionType.NONE)
