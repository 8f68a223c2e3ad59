"""The one place that imports a TFLite runtime.

Prefers `ai-edge-litert` (works with numpy 2); falls back to `tflite-runtime` where only that is
installed. Everything else loads models through `load_interpreter` and types them as
`Interpreter`, so the runtime can be swapped here alone.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import metadata
from typing import Any, Protocol

from numpy.typing import NDArray

# (import name, distribution name), in order of preference.
_CANDIDATES = (("ai_edge_litert", "ai-edge-litert"), ("tflite_runtime", "tflite-runtime"))


class LiteRTError(RuntimeError):
    """No TFLite runtime is installed, or a model cannot be loaded."""


class Interpreter(Protocol):
    """The part of the TFLite `Interpreter` API camfleet uses."""

    def allocate_tensors(self) -> None: ...
    def get_input_details(self) -> list[dict[str, Any]]: ...
    def get_output_details(self) -> list[dict[str, Any]]: ...
    def resize_tensor_input(
        self, input_index: int, tensor_size: Sequence[int], strict: bool = False
    ) -> None: ...
    def set_tensor(self, tensor_index: int, value: NDArray[Any]) -> None: ...
    def invoke(self) -> None: ...
    def get_tensor(self, tensor_index: int) -> NDArray[Any]: ...


@dataclass(frozen=True)
class _Runtime:
    name: str
    interpreter: Callable[..., Interpreter]


def _version(module_name: str, dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:  # e.g. vendored without dist-info
        return str(getattr(importlib.import_module(module_name), "__version__", "unknown"))


def _runtime() -> _Runtime:
    # Not cached: after the first success this is a sys.modules lookup, and tests can swap runtimes.
    failures = []
    for module_name, dist in _CANDIDATES:
        try:
            module = importlib.import_module(f"{module_name}.interpreter")
        except ImportError as exc:
            failures.append(f"{module_name}: {exc}")
            continue
        return _Runtime(f"{dist} {_version(module_name, dist)}", module.Interpreter)
    raise LiteRTError(
        "no TFLite runtime available; install ai-edge-litert (`pip install ai-edge-litert`) "
        f"or tflite-runtime ({'; '.join(failures)})"
    )


def runtime_name() -> str:
    """The runtime in use with its version, e.g. "ai-edge-litert 2.3.0"."""
    return _runtime().name


def load_interpreter(
    model: str | os.PathLike[str] | bytes | bytearray, num_threads: int = 1
) -> Interpreter:
    """An interpreter for a .tflite file or its bytes, with tensors allocated, ready to invoke."""
    if num_threads < 1:
        raise LiteRTError(f"num_threads must be >= 1, got {num_threads}")
    runtime = _runtime()
    if isinstance(model, bytes | bytearray):
        what = f"model of {len(model)} bytes"
        source: dict[str, Any] = {"model_content": bytes(model)}
    else:
        what = f"model {os.fspath(model)!r}"
        if not os.path.isfile(model):
            raise LiteRTError(f"cannot load {what}: no such file")
        source = {"model_path": os.fspath(model)}
    try:
        interpreter = runtime.interpreter(**source, num_threads=num_threads)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:  # what the runtimes raise for a bad flatbuffer
        raise LiteRTError(f"cannot load {what} with {runtime.name}: {exc}") from exc
    return interpreter
