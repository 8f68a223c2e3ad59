"""The per-ROI change gate on synthetic frames: noise and lighting are gated, objects pass."""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from agent.detection.gate import ChangeGate, GateError, GateSettings, cell_means
from agent.detection.roi_geometry import Mask, crop_box, polygon_mask

FPS = 5
STEP_US = 1_000_000 // FPS
H, W = 120, 160
QUIET = GateSettings(heartbeat_s=3600)  # no heartbeat unless a test wants one


def scene(seed: int = 0) -> NDArray[np.float64]:
    """A textured view: smooth blobs and edges, mid-grey on average."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    view: NDArray[np.float64] = (
        110 + 40 * np.sin(xx / 9.0) * np.cos(yy / 13.0) + rng.normal(0, 12, (H, W))
    )
    view[30:70, 100:140] += 50  # a bright box, like a window
    return view


def shot(
    view: NDArray[np.float64], rng: np.random.Generator, noise: float = 4.0
) -> NDArray[np.uint8]:
    return np.clip(view + rng.normal(0, noise, view.shape), 0, 255).astype(np.uint8)


def triangle_mask() -> Mask:
    """A polygon covering the lower-left half of the crop."""
    points = np.array([[0, 0], [0, H], [W, H]], np.float64)
    box = crop_box(points, W, H)
    assert box is not None
    return polygon_mask(points, box)


FULL = np.ones((H, W), bool)


def run(gate: ChangeGate, frames: list[NDArray[np.uint8]], mask: Mask = FULL) -> list[str]:
    return [gate.check(f, mask, i * STEP_US).reason for i, f in enumerate(frames)]


def test_sensor_noise_is_gated() -> None:
    rng, view = np.random.default_rng(1), scene()
    reasons = run(ChangeGate(QUIET), [shot(view, rng, noise=6.0) for _ in range(300)])
    assert reasons[0] == "first" and set(reasons[1:]) == {"still"}


@pytest.mark.parametrize(
    "gain",
    [
        lambda i: 1.0 - 0.5 * i / 300,  # dusk: half as bright over a minute
        lambda i: 1.0 + 0.3 * (i >= 100),  # a cloud clears: 30% brighter at once
    ],
    ids=["slow_dimming", "sudden_brightening"],
)
def test_lighting_change_is_gated(gain: object) -> None:
    rng, view = np.random.default_rng(2), scene()
    assert callable(gain)
    reasons = run(ChangeGate(QUIET), [shot(view * gain(i), rng) for i in range(300)])
    assert set(reasons[1:]) == {"still"}


def test_object_appearing_passes_then_fades_into_the_background() -> None:
    rng, view = np.random.default_rng(3), scene()
    with_object = view.copy()
    with_object[60:84, 20:44] = 20  # a dark 24x24 object: 3% of the ROI
    frames = [shot(view, rng) for _ in range(20)] + [shot(with_object, rng) for _ in range(200)]
    reasons = run(ChangeGate(QUIET), frames)
    assert set(reasons[1:20]) == {"still"}
    assert reasons[20] == "changed"
    assert reasons[-1] == "still"  # a parked object becomes background (the heartbeat covers it)


def test_change_outside_the_polygon_is_gated() -> None:
    rng, view = np.random.default_rng(4), scene()
    moved = view.copy()
    moved[5:40, 100:150] = 250  # top right: outside the lower-left triangle
    frames = [shot(view, rng) for _ in range(5)] + [shot(moved, rng) for _ in range(5)]
    assert set(run(ChangeGate(QUIET), frames, triangle_mask())[1:]) == {"still"}
    assert "changed" in run(ChangeGate(QUIET), frames, FULL)  # it is a change, just not ours


def test_heartbeat_lets_a_still_frame_through_every_k_seconds() -> None:
    rng, view = np.random.default_rng(5), scene()
    gate = ChangeGate(GateSettings(heartbeat_s=2.0))
    reasons = run(gate, [shot(view, rng) for _ in range(41)])  # 8 s at 5 fps
    passed = [i for i, r in enumerate(reasons) if r != "still"]
    assert passed == [0, 10, 20, 30, 40]


def test_crop_one_pixel_larger_as_the_roi_drifts_is_not_change() -> None:
    rng, view = np.random.default_rng(6), scene()
    gate = ChangeGate(QUIET)
    for i in range(20):
        frame = shot(view, rng)
        crop = frame if i % 2 else frame[:-1, :-1]  # the crop box flickers by a pixel
        assert gate.check(crop, np.ones(crop.shape, bool), i * STEP_US).reason in {"first", "still"}


def test_cell_means_average_near_equal_blocks() -> None:
    values = np.arange(35, dtype=np.uint8).reshape(5, 7)
    means = cell_means(values, 2, 3)
    assert means.shape == (2, 3)
    assert means[0, 0] == pytest.approx(values[:2, :2].mean())
    assert means[1, 2] == pytest.approx(values[2:, 4:].mean())


@pytest.mark.parametrize(
    ("crop", "mask", "message"),
    [
        (np.zeros((4, 4), np.uint8), np.ones((4, 5), bool), "need equal 2-D"),
        (np.zeros((4, 4, 3), np.uint8), np.ones((4, 4, 3), bool), "need equal 2-D"),
        (np.zeros((4, 4), np.uint8), np.zeros((4, 4), bool), "mask set"),
    ],
)
def test_bad_input_is_a_clear_error(crop: NDArray[np.uint8], mask: Mask, message: str) -> None:
    with pytest.raises(GateError, match=message):
        ChangeGate().check(crop, mask, 0)


@pytest.mark.parametrize(
    "kwargs",
    [{"grid": (0, 4)}, {"changed_share": 0.0}, {"background_rate": 1.5}, {"heartbeat_s": 0}],
)
def test_bad_settings_are_refused(kwargs: dict[str, object]) -> None:
    with pytest.raises(GateError):
        GateSettings(**kwargs)  # type: ignore[arg-type]
