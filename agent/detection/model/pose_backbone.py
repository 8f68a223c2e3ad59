"""The alternative feature extractor: the backbone of MediaPipe's person detector
(`pose_detection.tflite`, BlazePose), cut down to one mid-level feature map.

The model is not in the repository and never downloaded at run time: the install step
(`scripts/fetch-pose-backbone.py`) takes it out of the mediapipe 0.10.21 wheel (Apache-2.0) into
the models cache, with the wheel's licence beside it; `pose_backbone_licence` gives the text an
artifact must carry.

The cut keeps the encoder up to its deepest stride-8 map: the 240-channel expansion that the first
stride-16 depthwise convolution reads, [1, 28, 28, 240] at 224 px. The stride-16 and -32 stages,
the feature pyramid and the box heads are removed with their weights.

The detector expects RGB in [-1, 1] (its metadata normalises with mean 127.5 and std 127.5). The
cut model takes one luma channel in [0, 1] instead and computes `2 * luma - 1` into all three
channels itself (a broadcasting MUL and an ADD, microseconds), so its preprocessing is
"luma-unit-range" with one channel and the agent copies nothing.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.tools import flatbuffer_utils

from agent.detection.model.extractor import BuiltExtractor, Preprocessing

MEDIAPIPE_VERSION = "0.10.21"
# Where the install step finds the files inside the wheel, and what the model must hash to (the
# digest is the wheel's RECORD entry): `cut_backbone` relies on this exact graph.
WHEEL_MODEL = "mediapipe/modules/pose_detection/pose_detection.tflite"
WHEEL_LICENSE = f"mediapipe-{MEDIAPIPE_VERSION}.dist-info/LICENSE"
MODEL_SHA256 = "9ba9dd3d42efaaba86b4ff0122b06f29c4122e756b329d89dca1e297fd8f866c"
MODEL_FILE = "pose_detection.tflite"
LICENSE_FILE = "LICENSE"
FETCH_COMMAND = ".venv/bin/python scripts/fetch-pose-backbone.py"

NOTICE = (
    "camfleet's pose-backbone feature extractor is a part of pose_detection.tflite from MediaPipe "
    f"{MEDIAPIPE_VERSION} (https://github.com/google-ai-edge/mediapipe) by The MediaPipe Authors, "
    "licensed under the Apache License 2.0, whose text follows. camfleet modified it: it keeps "
    "only the layers up to the deepest stride-8 feature map and adds an input layer that turns "
    "one luma channel in [0, 1] into the model's RGB range."
)

_STRIDE = 8


def models_dir() -> Path:
    """The models cache: $CAMFLEET_MODELS_DIR, else ~/.cache/camfleet/models (outside the repo)."""
    configured = os.environ.get("CAMFLEET_MODELS_DIR")
    return Path(configured).expanduser() if configured else Path.home() / ".cache/camfleet/models"


def backbone_dir() -> Path:
    """Where the install step stores the original model and the wheel's LICENSE."""
    return models_dir() / f"mediapipe-{MEDIAPIPE_VERSION}"


def find_pose_backbone() -> Path | None:
    """The cached original `pose_detection.tflite`, if the install step stored it and licence."""
    model = backbone_dir() / MODEL_FILE
    return model if model.is_file() and (model.parent / LICENSE_FILE).is_file() else None


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def pose_backbone_licence(path: Path | None = None) -> str:
    """What an artifact built on this extractor must carry: the attribution and change notice,
    then the wheel's LICENSE stored beside the model at `path` (default: the cached one)."""
    model = path or _require_model()
    return f"{NOTICE}\n\n{(model.parent / LICENSE_FILE).read_text(encoding='utf-8')}"


def pose_backbone_extractor(path: Path | None = None) -> BuiltExtractor:
    """The cut backbone of the original model at `path` (default: the cached one)."""
    source = path or _require_model()
    content = source.read_bytes()
    if hashlib.sha256(content).hexdigest() != MODEL_SHA256:
        raise ValueError(
            f"{source} is not pose_detection.tflite from mediapipe {MEDIAPIPE_VERSION} (sha256 "
            f"differs); run `{FETCH_COMMAND}` to fetch it again"
        )
    model = _cut(_parse(content))
    (graph,) = model.subgraphs
    _, height, width, channels = graph.tensors[graph.inputs[0]].shape
    _, rows, cols, depth = graph.tensors[graph.outputs[0]].shape
    return BuiltExtractor(
        name="pose-backbone",
        tflite=_serialise(model),
        preprocessing=Preprocessing(
            kind="luma-unit-range", height=height, width=width, channels=channels
        ),
        feature_shape=(rows, cols, depth),
    )


def cut_backbone(model_bytes: bytes) -> bytes:
    """A .tflite whose single output is the deepest stride-8 feature map of `model_bytes` (the
    pose detector), whose input is luma in [0, 1], and which holds nothing else."""
    return _serialise(_cut(_parse(model_bytes)))


def _require_model() -> Path:
    model = find_pose_backbone()
    if model is None:
        raise FileNotFoundError(
            f"the pose backbone is not in {backbone_dir()}: "
            f"run `{FETCH_COMMAND}` (`make venv` does)"
        )
    return model


def _parse(model_bytes: bytes) -> Any:
    return flatbuffer_utils.read_model_from_bytearray(bytearray(model_bytes))


def _serialise(model: Any) -> bytes:
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def _cut(model: Any) -> Any:
    (graph,) = model.subgraphs
    feature = _deepest_stride8_map(model, graph)
    keep = _ops_computing(graph, feature)
    (image,) = graph.inputs
    luma, rescale = _luma_input(model, graph, image)
    graph.operators = rescale + [op for i, op in enumerate(graph.operators) if i in keep]
    graph.inputs, graph.outputs = [luma], [feature]
    _drop_unused(model, graph)
    # The original metadata describes the removed heads and the RGB input.
    model.metadata, model.signatureDefs, model.description = None, None, NOTICE
    return model


def _producers(graph: Any) -> dict[int, Any]:
    return {t: op for op in graph.operators for t in op.outputs}


def _deepest_stride8_map(model: Any, graph: Any) -> int:
    """The tensor the encoder's first stride-16 operator reads, past the PAD it is padded by."""
    height = graph.tensors[graph.inputs[0]].shape[1]
    producers = _producers(graph)
    first16 = next(
        op
        for op in graph.operators
        if len(shape := graph.tensors[op.outputs[0]].shape) == 4 and shape[1] == height // 16
    )
    tensor = int(first16.inputs[0])
    while (pad := producers.get(tensor)) is not None and _builtin(
        model, pad
    ) == schema.BuiltinOperator.PAD:
        tensor = int(pad.inputs[0])
    shape = graph.tensors[tensor].shape
    if len(shape) != 4 or shape[1] * _STRIDE != height:
        raise ValueError(f"expected a stride-{_STRIDE} map before the first stride-16 op: {shape}")
    return tensor


def _builtin(model: Any, op: Any) -> int:
    return int(
        flatbuffer_utils.get_builtin_code_from_operator_code(model.operatorCodes[op.opcodeIndex])
    )


def _ops_computing(graph: Any, tensor: int) -> set[int]:
    """Indices of the operators `tensor` depends on."""
    index = {id(op): i for i, op in enumerate(graph.operators)}
    producers = _producers(graph)
    keep: set[int] = set()
    pending = [tensor]
    while pending:
        op = producers.get(pending.pop())
        if op is None or index[id(op)] in keep:
            continue
        keep.add(index[id(op)])
        pending.extend(t for t in op.inputs if t >= 0)
    return keep


def _luma_input(model: Any, graph: Any, image: int) -> tuple[int, list[Any]]:
    """A [1, H, W, 1] input and the ops computing the RGB [-1, 1] `image` from it."""
    n, height, width, channels = graph.tensors[image].shape
    luma = _add_tensor(model, graph, "luma", [n, height, width, 1])
    scaled = _add_tensor(model, graph, "luma_x2_rgb", [n, height, width, channels])
    two = _add_tensor(model, graph, "two", [channels], np.full(channels, 2.0, np.float32))
    minus_one = _add_tensor(model, graph, "minus_one", [1], np.array([-1.0], np.float32))
    mul = _operator(model, schema.BuiltinOperator.MUL, [luma, two], scaled)
    mul.builtinOptionsType, mul.builtinOptions = (
        schema.BuiltinOptions.MulOptions,
        schema.MulOptionsT(),
    )
    add = _operator(model, schema.BuiltinOperator.ADD, [scaled, minus_one], image)
    add.builtinOptionsType, add.builtinOptions = (
        schema.BuiltinOptions.AddOptions,
        schema.AddOptionsT(),
    )
    return luma, [mul, add]


def _add_tensor(
    model: Any, graph: Any, name: str, shape: list[int], data: np.ndarray[Any, Any] | None = None
) -> int:
    tensor = schema.TensorT()
    tensor.name, tensor.shape, tensor.type = name, shape, schema.TensorType.FLOAT32
    tensor.buffer = 0  # 0 is the empty buffer of every non-constant tensor
    if data is not None:
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(data.tobytes(), np.uint8)
        tensor.buffer = len(model.buffers)
        model.buffers.append(buffer)
    graph.tensors.append(tensor)
    return len(graph.tensors) - 1


def _operator(model: Any, builtin: int, inputs: list[int], output: int) -> Any:
    codes = model.operatorCodes
    get_code = flatbuffer_utils.get_builtin_code_from_operator_code
    index = next((i for i, c in enumerate(codes) if get_code(c) == builtin), None)
    if index is None:
        code = schema.OperatorCodeT()
        code.builtinCode, code.deprecatedBuiltinCode, code.version = builtin, builtin, 1
        codes.append(code)
        index = len(codes) - 1
    op = schema.OperatorT()
    op.opcodeIndex, op.inputs, op.outputs = index, inputs, [output]
    return op


def _drop_unused(model: Any, graph: Any) -> None:
    """Renumbers the tensors, buffers and operator codes the kept operators use; drops the rest."""
    used = list(dict.fromkeys(_tensor_refs(graph)))
    renumber = {old: new for new, old in enumerate(used)}
    graph.tensors = [graph.tensors[t] for t in used]
    graph.inputs = [renumber[t] for t in graph.inputs]
    graph.outputs = [renumber[t] for t in graph.outputs]
    for op in graph.operators:
        op.inputs = [renumber[t] if t >= 0 else t for t in op.inputs]
        op.outputs = [renumber[t] for t in op.outputs]

    buffers, moved = [schema.BufferT()], {}
    for tensor in graph.tensors:
        data = model.buffers[tensor.buffer].data
        if data is None or len(data) == 0:
            tensor.buffer = 0
            continue
        if tensor.buffer not in moved:
            moved[tensor.buffer] = len(buffers)
            buffers.append(model.buffers[tensor.buffer])
        tensor.buffer = moved[tensor.buffer]
    model.buffers = buffers

    codes = sorted({op.opcodeIndex for op in graph.operators})
    model.operatorCodes = [model.operatorCodes[c] for c in codes]
    for op in graph.operators:
        op.opcodeIndex = codes.index(op.opcodeIndex)


def _tensor_refs(graph: Any) -> Iterator[int]:
    yield from graph.inputs
    for op in graph.operators:
        yield from (t for t in [*op.inputs, *op.outputs] if t >= 0)
    yield from graph.outputs
