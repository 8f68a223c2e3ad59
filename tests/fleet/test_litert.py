"""The TFLite runtime shim, exercised with a .tflite built from numpy (no TensorFlow)."""

from __future__ import annotations

import sys
import types
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter as LiteRTInterpreter
from ai_edge_litert.tools import flatbuffer_utils
from numpy.typing import NDArray

from fleet.litert import LiteRTError, load_interpreter, runtime_name

Array = NDArray[np.float32]


def _tensor(name: str, shape: tuple[int, ...], buffer: int) -> Any:
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.buffer = name, list(shape), buffer
    tensor.type = schema.TensorType.FLOAT32
    return tensor


def _buffer(data: Array | None = None) -> Any:
    buffer = schema.BufferT()
    if data is not None:
        buffer.data = np.frombuffer(data.tobytes(), np.uint8)
    return buffer


def conv_relu_model(x_shape: tuple[int, ...], weights: Array, bias: Array) -> bytes:
    """A one-op model: 3x3 CONV_2D (VALID, stride 1) + fused ReLU; weights are OHWI."""
    n, h, w, _ = x_shape
    out_shape = (n, h - 2, w - 2, weights.shape[0])
    code = schema.OperatorCodeT()
    code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.CONV_2D
    code.version = 1
    options = schema.Conv2DOptionsT()
    options.padding = schema.Padding.VALID
    options.strideW = options.strideH = 1
    options.fusedActivationFunction = schema.ActivationFunctionType.RELU
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = 0, [0, 1, 2], [3]
    op.builtinOptionsType = schema.BuiltinOptions.Conv2DOptions
    op.builtinOptions = options
    graph = schema.SubGraphT()
    graph.tensors = [
        _tensor("x", x_shape, 1),
        _tensor("w", weights.shape, 2),
        _tensor("b", bias.shape, 3),
        _tensor("y", out_shape, 4),
    ]
    graph.inputs, graph.outputs, graph.operators = [0], [3], [op]
    model = schema.ModelT()
    model.version, model.description = 3, "camfleet test conv"
    model.operatorCodes, model.subgraphs = [code], [graph]
    # Buffer 0 is the conventional empty sentinel; x and y have no constant data.
    model.buffers = [_buffer(), _buffer(), _buffer(weights), _buffer(bias), _buffer()]
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def conv_relu_numpy(x: Array, weights: Array, bias: Array) -> Array:
    windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(1, 2))  # n,h,w,c,i,j
    out = np.einsum("nhwcij,oijc->nhwo", windows, weights) + bias
    result: Array = np.maximum(out, 0).astype(np.float32)
    return result


@pytest.fixture
def model() -> tuple[bytes, Array, Array]:
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 8, 10, 3)).astype(np.float32)
    weights = rng.standard_normal((4, 3, 3, 3)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    return conv_relu_model(x.shape, weights, bias), x, conv_relu_numpy(x, weights, bias)


def run(interpreter: Any, x: Array) -> Array:
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    result: Array = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return result


@pytest.mark.parametrize("num_threads", [1, 2])
def test_model_bytes_match_numpy(model: tuple[bytes, Array, Array], num_threads: int) -> None:
    content, x, expected = model
    interpreter = load_interpreter(content, num_threads=num_threads)
    y = run(interpreter, x)
    assert y.shape == expected.shape == (1, 6, 8, 4)
    assert (expected == 0).any() and (expected > 0).any()  # the ReLU is actually exercised
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_model_file_matches_numpy(model: tuple[bytes, Array, Array], tmp_path: Path) -> None:
    content, x, expected = model
    path = tmp_path / "conv.tflite"
    path.write_bytes(content)
    np.testing.assert_allclose(run(load_interpreter(path), x), expected, atol=1e-5)
    np.testing.assert_allclose(run(load_interpreter(str(path)), x), expected, atol=1e-5)


def test_runtime_name_prefers_ai_edge_litert() -> None:
    assert runtime_name() == f"ai-edge-litert {metadata.version('ai-edge-litert')}"


@pytest.mark.parametrize(
    ("model", "threads", "message"),
    [
        (b"not a flatbuffer" * 8, 1, "cannot load model of 128 bytes"),
        ("/nonexistent/model.tflite", 1, "no such file"),
        (b"", 0, "num_threads must be >= 1"),
    ],
)
def test_bad_input_raises_litert_error(model: str | bytes, threads: int, message: str) -> None:
    with pytest.raises(LiteRTError, match=message):
        load_interpreter(model, num_threads=threads)


def _hide(monkeypatch: pytest.MonkeyPatch, *modules: str) -> None:
    for name in modules:  # None in sys.modules makes `import name` raise ImportError
        monkeypatch.setitem(sys.modules, name, None)


def test_falls_back_to_tflite_runtime(
    monkeypatch: pytest.MonkeyPatch, model: tuple[bytes, Array, Array]
) -> None:
    content, x, expected = model
    package = types.ModuleType("tflite_runtime")
    package.__version__ = "2.14.0"  # type: ignore[attr-defined]
    submodule = types.ModuleType("tflite_runtime.interpreter")
    submodule.Interpreter = LiteRTInterpreter  # type: ignore[attr-defined]  # same API
    _hide(monkeypatch, "ai_edge_litert.interpreter")
    monkeypatch.setitem(sys.modules, "tflite_runtime", package)
    monkeypatch.setitem(sys.modules, "tflite_runtime.interpreter", submodule)
    assert runtime_name() == "tflite-runtime 2.14.0"
    np.testing.assert_allclose(run(load_interpreter(content), x), expected, atol=1e-5)


def test_no_runtime_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    _hide(monkeypatch, "ai_edge_litert.interpreter", "tflite_runtime.interpreter")
    with pytest.raises(LiteRTError, match="no TFLite runtime available; install ai-edge-litert"):
        runtime_name()
    with pytest.raises(LiteRTError, match="no TFLite runtime"):
        load_interpreter(b"x")
