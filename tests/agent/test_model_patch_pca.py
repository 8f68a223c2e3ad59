"""The self-trained patch-PCA extractor: its .tflite in the real runtime computes what the numpy
reference computes, its filters are what PCA promises, and one invoke is cheap."""

from __future__ import annotations

import time

import numpy as np
import numpy.typing as npt
import pytest

from agent.detection.model import patch_pca
from agent.detection.model.preprocessing import prepare
from agent.detection.model.tflite_builder import GraphBuilder
from agent.detection.roi_crop import RoiCrop
from fleet.litert import Interpreter, load_interpreter
from fleet.messages import Box

SETTINGS = patch_pca.PatchPcaSettings(patches=5000)


def textured_crops(count: int, seed: int, shape: tuple[int, int] = (60, 100)) -> list[RoiCrop]:
    """Crops of one blotchy texture (as a plaza floor), shifted a little and with sensor noise."""
    rng = np.random.default_rng(seed)
    h, w = shape
    coarse = rng.normal(size=(h // 6 + 2, w // 6 + 2)).repeat(6, 0).repeat(6, 1)
    base = 110 + 25 * coarse + 10 * rng.normal(size=coarse.shape)
    crops = []
    for _ in range(count):
        dy, dx = rng.integers(0, 6, 2)
        pixels = base[dy : dy + h, dx : dx + w] + rng.normal(0, 2, shape)
        luma = np.clip(pixels, 0, 255).astype(np.uint8)
        box = Box(x=0, y=0, w=w, h=h, frame_w=w, frame_h=h)
        crops.append(RoiCrop(box, np.ones(shape, bool), luma))
    return crops


def run(interpreter: Interpreter, x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    out: npt.NDArray[np.float32] = interpreter.get_tensor(
        interpreter.get_output_details()[0]["index"]
    )
    return out


@pytest.fixture(scope="module")
def crops() -> list[RoiCrop]:
    return textured_crops(40, seed=3)


def test_tflite_matches_the_numpy_forward(crops: list[RoiCrop]) -> None:
    built = patch_pca.build(crops, SETTINGS)
    p = built.preprocessing
    assert (built.name, p.kind, p.channels) == ("patch-pca", "luma-standardised", 1)
    assert (p.height, p.width) == (64, 104)  # ~6400 px at the crops' 5:3
    assert built.feature_shape == (16, 26, 1 + 2 * 8 + 2 * 16)
    inputs = np.concatenate([prepare(p, c.pixels, c.mask) for c in crops])
    filters = patch_pca.learn(inputs, SETTINGS)
    assert filters.tflite() == built.tflite  # learning is deterministic
    interpreter = load_interpreter(built.tflite)
    expected = filters.forward(inputs[:6])
    assert expected.shape == (6, *built.feature_shape)
    for i in range(6):
        np.testing.assert_allclose(run(interpreter, inputs[i : i + 1])[0], expected[i], atol=1e-4)


def test_filters_are_orthonormal_principal_components(crops: list[RoiCrop]) -> None:
    built = patch_pca.build(crops, SETTINGS)
    inputs = np.concatenate([prepare(built.preprocessing, c.pixels, c.mask) for c in crops])
    filters = patch_pca.learn(inputs, SETTINGS)
    first = filters.first.reshape(len(filters.first), -1)
    second = filters.second.reshape(len(filters.second), -1)
    for bank in (first, second):
        np.testing.assert_allclose(bank @ bank.T, np.eye(len(bank)), atol=1e-5)
    # mean-removed patches have no component along the constant patch: blind to local level
    np.testing.assert_allclose(first.sum(axis=1), 0, atol=1e-4)
    # the leading component captures more of the patches than a random direction would
    windows = np.lib.stride_tricks.sliding_window_view(inputs[:, :, :, 0], (5, 5), axis=(1, 2))
    patches = windows.reshape(-1, 25)
    patches = patches - patches.mean(axis=1, keepdims=True)
    random = np.random.default_rng(0).normal(size=25)
    random -= random.mean()
    random /= np.linalg.norm(random)
    assert np.var(patches @ first[0]) > 2 * np.var(patches @ random)


def test_invoke_is_cheap(crops: list[RoiCrop]) -> None:
    built = patch_pca.build(crops, SETTINGS)
    interpreter = load_interpreter(built.tflite, num_threads=1)
    x = prepare(built.preprocessing, crops[0].pixels, crops[0].mask)
    run(interpreter, x)
    started = time.perf_counter()
    for _ in range(50):
        run(interpreter, x)
    per_invoke_ms = (time.perf_counter() - started) / 50 * 1000
    assert per_invoke_ms < 2.0  # ~0.15 ms measured; the bound leaves room for a busy machine


def test_builder_pools_and_concatenates_as_tflite_does() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(1, 8, 12, 2)).astype(np.float32)
    weights = rng.normal(size=(3, 3, 3, 2)).astype(np.float32)
    bias = rng.normal(size=3).astype(np.float32)
    graph = GraphBuilder()
    source = graph.input(x.shape)
    conv = graph.conv2d(source, weights, bias, padding="SAME", relu=False)
    out = graph.concatenate([graph.average_pool(source, 4), graph.average_pool(conv, 4)])
    assert out.shape == (1, 2, 3, 5)
    padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))
    conv_np = np.einsum("nhwcij,oijc->nhwo", windows, weights) + bias
    pooled = [a.reshape(1, 2, 4, 3, 4, -1).mean(axis=(2, 4)) for a in (x, conv_np)]
    expected = np.concatenate(pooled, axis=3)
    got = run(load_interpreter(graph.build([out], "test")), x)
    np.testing.assert_allclose(got, expected, atol=1e-5)
    with pytest.raises(ValueError, match="cannot pool"):
        graph.average_pool(source, 5)


def test_too_little_inside_the_masks_is_refused() -> None:
    crop = textured_crops(1, seed=1)[0]
    hollow = np.zeros(crop.mask.shape, bool)
    hollow[0, 0] = True
    with pytest.raises(ValueError, match="too few training patches"):
        patch_pca.build([RoiCrop(crop.box, hollow, crop.pixels)], SETTINGS)
