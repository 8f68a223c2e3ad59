"""The pose-backbone extractor against the real mediapipe model in the models cache: the cut runs
in camfleet's runtime, holds only what its output needs, and computes exactly what the original
model computes for the same tensor. The fetch script is run offline (cached copy, dead index)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from ai_edge_litert import schema_py_generated as schema
from ai_edge_litert.interpreter import Interpreter as ReferenceInterpreter
from ai_edge_litert.tools import flatbuffer_utils
from conftest import REPO, free_port, unavailable
from tflite_models import SMALL, conv_model

from agent.detection.model.extractor import BuiltExtractor
from agent.detection.model.pose_backbone import (
    FETCH_COMMAND,
    LICENSE_FILE,
    MEDIAPIPE_VERSION,
    MODEL_FILE,
    NOTICE,
    cut_backbone,
    find_pose_backbone,
    pose_backbone_extractor,
    pose_backbone_licence,
)
from fleet.litert import Interpreter, load_interpreter

FETCH = os.path.join(REPO, "scripts", "fetch-pose-backbone.py")
Image = npt.NDArray[np.float32]


@pytest.fixture(scope="module")
def original() -> Path:
    path = find_pose_backbone()
    if path is None:
        unavailable(f"the pose backbone is not fetched: run `{FETCH_COMMAND}`")
    return path


@pytest.fixture(scope="module")
def extractor(original: Path) -> BuiltExtractor:
    return pose_backbone_extractor(original)


def luma_images(size: int) -> list[Image]:
    """Noise, a gradient and the extremes: each pixel range the [0, 1] contract allows."""
    noise = np.random.default_rng(7).uniform(0, 1, (1, size, size, 1))
    ramp = np.linspace(0, 1, size)
    gradient = np.outer(ramp, ramp[::-1]).reshape(1, size, size, 1)
    return [
        x.astype(np.float32)
        for x in (noise, gradient, np.zeros((1, size, size, 1)), np.ones((1, size, size, 1)))
    ]


def run(interpreter: Interpreter, x: Image) -> Image:
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    return np.array(interpreter.get_tensor(interpreter.get_output_details()[0]["index"]))


def test_the_cut_is_a_luma_model_with_one_stride8_output(
    original: Path, extractor: BuiltExtractor
) -> None:
    assert extractor.name == "pose-backbone"
    pre = extractor.preprocessing
    assert (pre.kind, pre.height, pre.width, pre.channels) == ("luma-unit-range", 224, 224, 1)
    assert extractor.feature_shape == (28, 28, 240)
    interpreter = load_interpreter(extractor.tflite)
    (inp,), (out,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert list(inp["shape"]) == [1, 224, 224, 1]
    assert list(out["shape"]) == [1, *extractor.feature_shape]
    assert cut_backbone(original.read_bytes()) == extractor.tflite


def test_the_cut_holds_nothing_its_output_does_not_need(
    original: Path, extractor: BuiltExtractor
) -> None:
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(extractor.tflite))
    (graph,) = model.subgraphs
    referenced = {*graph.inputs, *graph.outputs}
    for op in graph.operators:
        referenced.update(t for t in [*op.inputs, *op.outputs] if t >= 0)
    assert referenced == set(range(len(graph.tensors)))
    data_buffers = [b for b in model.buffers[1:] if b.data is not None and len(b.data)]
    assert len(data_buffers) == len(model.buffers) - 1
    assert len({t.buffer for t in graph.tensors if t.buffer}) == len(data_buffers)
    names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    used = {
        names[flatbuffer_utils.get_builtin_code_from_operator_code(model.operatorCodes[i])]
        for i in {op.opcodeIndex for op in graph.operators}
    }
    # The heads' ops (RESHAPE, CONCATENATION, RESIZE_BILINEAR, DEPTH_TO_SPACE) are gone.
    assert used == {"MUL", "ADD", "PAD", "CONV_2D", "DEPTHWISE_CONV_2D", "DENSIFY", "DEQUANTIZE"}
    assert len(model.operatorCodes) == len(used)
    assert len(extractor.tflite) < original.stat().st_size / 10


# The reference run keeps every intermediate tensor on purpose; the runtime warns about memory.
@pytest.mark.filterwarnings("ignore:Warning. Enabling `experimental_preserve_all_tensors`")
def test_the_cut_computes_what_the_original_computes(
    original: Path, extractor: BuiltExtractor
) -> None:
    cut = load_interpreter(extractor.tflite)
    reference = ReferenceInterpreter(
        model_path=str(original), num_threads=1, experimental_preserve_all_tensors=True
    )
    reference.allocate_tensors()
    (out,) = cut.get_output_details()
    (same,) = [t["index"] for t in reference.get_tensor_details() if t["name"] == out["name"]]
    for luma in luma_images(224):
        features = run(cut, luma)
        # The detector's own input: RGB in [-1, 1].
        reference.set_tensor(
            reference.get_input_details()[0]["index"], np.repeat(2 * luma - 1, 3, 3)
        )
        reference.invoke()
        expected = reference.get_tensor(same)
        assert features.shape == expected.shape == (1, 28, 28, 240)
        np.testing.assert_allclose(features, expected, rtol=0, atol=1e-4)
    assert np.ptp(run(cut, luma_images(224)[0])) > 1  # the map is not constant


def test_the_cut_runs_at_smaller_inputs(extractor: BuiltExtractor) -> None:
    cut = load_interpreter(extractor.tflite)
    cut.resize_tensor_input(cut.get_input_details()[0]["index"], [1, 128, 128, 1])
    cut.allocate_tensors()
    features = run(cut, luma_images(128)[0])
    assert features.shape == (1, 16, 16, 240)
    assert np.isfinite(features).all() and np.ptp(features) > 1


def test_the_licence_travels_with_the_model(original: Path, extractor: BuiltExtractor) -> None:
    licence = pose_backbone_licence(original)
    assert licence.startswith(NOTICE)
    assert "Apache License" in licence and "Version 2.0, January 2004" in licence
    assert (original.parent / LICENSE_FILE).read_text(encoding="utf-8") in licence
    model = flatbuffer_utils.read_model_from_bytearray(bytearray(extractor.tflite))
    assert model.description.decode() == NOTICE  # the change notice inside the file too


def test_models_dir_is_honoured_and_foreign_models_refused(
    original: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CAMFLEET_MODELS_DIR", str(tmp_path))
    assert find_pose_backbone() is None
    stored = tmp_path / f"mediapipe-{MEDIAPIPE_VERSION}"
    stored.mkdir()
    (stored / MODEL_FILE).write_bytes(original.read_bytes())
    assert find_pose_backbone() is None  # not without its licence
    shutil.copy(original.parent / LICENSE_FILE, stored / LICENSE_FILE)
    assert find_pose_backbone() == stored / MODEL_FILE
    (stored / MODEL_FILE).write_bytes(conv_model(SMALL, [4]).content)
    with pytest.raises(ValueError, match="fetch-pose-backbone"):
        pose_backbone_extractor()


def fetch(models_dir: Path) -> subprocess.CompletedProcess[str]:
    """The fetch script with a package index that refuses connections and no pip config."""
    env = {
        **os.environ,
        "CAMFLEET_MODELS_DIR": str(models_dir),
        "PIP_CONFIG_FILE": os.devnull,
        "PIP_INDEX_URL": f"http://127.0.0.1:{free_port()}/simple",
    }
    return subprocess.run(
        [sys.executable, FETCH], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def test_fetch_keeps_an_intact_copy_without_asking_the_index(original: Path) -> None:
    result = fetch(original.parent.parent)
    assert result.returncode == 0, result.stderr
    assert f"already in {original.parent}" in result.stdout


def test_fetch_fails_clearly_when_the_index_is_unreachable(tmp_path: Path) -> None:
    result = fetch(tmp_path)
    assert result.returncode == 1
    assert "cannot download mediapipe==0.10.21 from the package index" in result.stderr
    assert list(tmp_path.rglob("*")) == []
