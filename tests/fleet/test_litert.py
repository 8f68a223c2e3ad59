"""The TFLite runtime shim, exercised with a .tflite built from numpy (no TensorFlow)."""

from __future__ import annotations

import sys
import types
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ai_edge_litert.interpreter import Interpreter as LiteRTInterpreter
from numpy.typing import NDArray
from tflite_models import conv_model

from fleet.litert import LiteRTError, load_interpreter, runtime_name

Array = NDArray[np.float32]


@pytest.fixture
def model() -> tuple[bytes, Array, Array]:
    x = np.random.default_rng(7).standard_normal((1, 8, 10, 3)).astype(np.float32)
    conv = conv_model((1, 8, 10, 3), [4], seed=7)
    return conv.content, x, conv.expected(x)


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
