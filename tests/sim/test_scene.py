"""Synthetic scenes: deterministic, seamless, drift as specified, anomalies where scheduled."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.sim.render.renderer import canvas_margin
from fleet.sim.scene import (
    ANOMALY_KINDS,
    DEFAULT_REGIONS,
    AnomalySpec,
    Region,
    SceneError,
    SceneRenderer,
    SceneSpec,
    default_scene,
)

W, H, FPS = 320, 180, 10.0


def still_scene(**changes: object) -> SceneSpec:
    """A 4 s scene without drift, shifts or anomalies, for controlled experiments."""
    spec = SceneSpec(
        seed=7,
        width=W,
        height=H,
        fps=FPS,
        frame_count=40,
        anomalies=(),
        drift_px=0.0,
        drift_deg=0.0,
        shifts=(),
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


def phase_shift(ref: np.ndarray, img: np.ndarray) -> tuple[float, float]:
    """(dx, dy) moving `ref` onto `img`: phase correlation with a parabolic sub-pixel peak."""
    window = np.outer(np.hanning(ref.shape[0]), np.hanning(ref.shape[1]))
    a = np.fft.rfft2((ref - ref.mean()) * window)
    b = np.fft.rfft2((img - img.mean()) * window)
    cross = b * np.conj(a)
    corr = np.fft.irfft2(cross / (np.abs(cross) + 1e-9), s=ref.shape)
    py, px = np.unravel_index(int(np.argmax(corr)), corr.shape)

    def refine(c_minus: float, c0: float, c_plus: float) -> float:
        return 0.5 * (c_minus - c_plus) / (c_minus - 2 * c0 + c_plus)

    rows, cols = corr.shape
    dy = py + refine(corr[py - 1, px], corr[py, px], corr[(py + 1) % rows, px])
    dx = px + refine(corr[py, px - 1], corr[py, px], corr[py, (px + 1) % cols])
    return (dx - cols if dx > cols / 2 else dx), (dy - rows if dy > rows / 2 else dy)


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 2**32),
    fps=st.sampled_from([5.0, 7.5, 12.5, 15.0, 25.0, 30.0]),
    gop=st.integers(1, 60),
    loop_seconds=st.floats(3.0, 120.0),
    shift=st.sampled_from([None, True, False]),
)
def test_default_schedule(
    seed: int, fps: float, gop: int, loop_seconds: float, shift: bool | None
) -> None:
    spec = default_scene(seed, 640, 360, fps, gop, loop_seconds, sudden_shift=shift)
    assert spec.frame_count % gop == 0
    assert loop_seconds * fps - 1e-6 <= spec.frame_count < loop_seconds * fps + gop
    kinds = [a.kind for a in spec.anomalies]
    assert 2 <= len(kinds) <= 4 and len(set(kinds)) == len(kinds)
    assert {a.region for a in spec.anomalies} <= set(DEFAULT_REGIONS)
    # Normal footage first, then anomalies one after another with normal gaps, inside the loop.
    assert spec.anomalies[0].start_s >= 0.3 * spec.loop_seconds
    for a, b in zip(spec.anomalies, spec.anomalies[1:], strict=False):
        assert a.end_s < b.start_s
    assert spec.anomalies[-1].end_s < spec.loop_seconds
    assert all(a.end_s - a.start_s <= 4.0 for a in spec.anomalies)
    if shift is not None:
        assert len(spec.shifts) == int(shift)
    for at_s, *_ in spec.shifts:
        assert not any(a.start_s <= at_s < a.end_s for a in spec.anomalies)


def test_schedule_uses_given_regions() -> None:
    regions = [Region(0.0, 0.0, 0.5, 0.5), Region(0.5, 0.5, 0.5, 0.5)]
    spec = default_scene(3, W, H, FPS, 10, anomaly_regions=regions)
    assert {a.region for a in spec.anomalies} == set(regions)


def test_same_seed_same_frames_other_seed_other_frames() -> None:
    a, b = (SceneRenderer(default_scene(11, W, H, FPS, 10, 4.0)) for _ in range(2))
    other = SceneRenderer(default_scene(12, W, H, FPS, 10, 4.0))
    for i in (0, 17, 33):
        ya, yb, yo = a.render(i)[0], b.render(i)[0], other.render(i)[0]
        assert np.array_equal(ya, yb)
        assert np.abs(ya.astype(int) - yo).mean() > 10


def test_frames_do_not_depend_on_render_order() -> None:
    spec = default_scene(11, W, H, FPS, 10, 4.0)
    renderer = SceneRenderer(spec)
    frame = [p.copy() for p in renderer.render(25)]
    for i in (3, 24, 26):  # leave objects and anomalies drawn elsewhere
        renderer.render(i)
    for again in (renderer.render(25), SceneRenderer(spec).render(25)):
        assert all(np.array_equal(a, b) for a, b in zip(frame, again, strict=True))


def test_planes_are_yuv420p() -> None:
    y, u, v = SceneRenderer(default_scene(1, W, H, FPS, 10, 4.0)).render(5)
    assert (y.shape, u.shape, v.shape) == ((H, W), (H // 2, W // 2), (H // 2, W // 2))
    assert y.dtype == u.dtype == v.dtype == np.uint8
    assert y.std() > 20  # textured, not flat
    assert max(np.abs(u.astype(int) - 128).max(), np.abs(v.astype(int) - 128).max()) > 20


def test_drift_is_smooth_bounded_and_periodic() -> None:
    spec = default_scene(5, W, H, FPS, 10, 6.0, sudden_shift=False)
    renderer = SceneRenderer(spec)
    poses = np.array([dataclasses.astuple(renderer.pose(i)) for i in range(spec.frame_count + 1)])
    assert np.abs(poses[:, :2]).max() <= spec.drift_px
    assert np.abs(poses[:, 2]).max() <= spec.drift_deg
    assert np.ptp(poses[:, 0]) > 0.5 * spec.drift_px  # it does drift
    # Sum of sines with up to 3 cycles per loop: steps are bounded, including across the wrap.
    max_step = 2 * math.pi * 3 / spec.frame_count * np.array([spec.drift_px] * 2 + [spec.drift_deg])
    assert np.all(np.abs(np.diff(poses, axis=0)) <= max_step)
    assert np.array_equal(poses[-1], poses[0])  # pose(frame_count) is pose(0)


def test_sudden_shift_is_held_until_the_loop_ends() -> None:
    spec = still_scene(shifts=((2.0, 5.0, -3.0, 0.5),))
    renderer = SceneRenderer(spec)
    assert dataclasses.astuple(renderer.pose(19)) == (0.0, 0.0, 0.0)
    assert dataclasses.astuple(renderer.pose(20)) == (5.0, -3.0, 0.5)
    assert dataclasses.astuple(renderer.pose(39)) == (5.0, -3.0, 0.5)
    assert dataclasses.astuple(renderer.pose(40)) == (0.0, 0.0, 0.0)


def test_image_moves_as_the_pose_says() -> None:
    spec = still_scene(shifts=((2.0, 4.6, -2.3, 0.0),))
    renderer = SceneRenderer(spec)
    before, after = (renderer.render(i)[0].astype(np.float64) for i in (19, 20))
    dx, dy = phase_shift(before, after)
    assert abs(dx - 4.6) < 0.3 and abs(dy + 2.3) < 0.3


def test_positive_angle_turns_content_clockwise() -> None:
    spec = still_scene(shifts=((2.0, 0.0, 0.0, 3.0),))
    renderer = SceneRenderer(spec)
    before, after = (renderer.render(i)[0].astype(np.float64) for i in (19, 20))
    # Right of the centre content moves down, left of it up: r * sin(3 deg).
    r = W / 2 - 40
    expected = r * math.sin(math.radians(3))
    right = phase_shift(before[50:130, -80:], after[50:130, -80:])
    left = phase_shift(before[50:130, :80], after[50:130, :80])
    assert abs(right[1] - expected) < 1.0 and abs(left[1] + expected) < 1.0


def test_loop_is_seamless() -> None:
    spec = default_scene(2, W, H, FPS, 10, 4.0, sudden_shift=False)
    renderer = SceneRenderer(spec)
    n = spec.frame_count
    ys = [renderer.render(i)[0].astype(np.int16) for i in range(n)]
    steps = [np.abs(ys[i + 1] - ys[i]).mean() for i in range(n - 1)]
    assert np.abs(ys[0] - ys[-1]).mean() <= 2 * np.median(steps)
    assert np.array_equal(renderer.render(n)[0], ys[0])


@pytest.mark.parametrize("kind", ANOMALY_KINDS)
def test_anomaly_changes_its_region_only(kind: str) -> None:
    region = Region(0.55, 0.4, 0.3, 0.35)
    anomaly = AnomalySpec(kind, region, 1.0, 3.0)  # type: ignore[arg-type]
    spec = dataclasses.replace(
        default_scene(4, W, H, FPS, 10, 4.0, sudden_shift=False), anomalies=(anomaly,)
    )
    with_it, without = SceneRenderer(spec), SceneRenderer(dataclasses.replace(spec, anomalies=()))
    assert with_it.active_anomalies(20) == [anomaly]
    assert with_it.active_anomalies(9) == [] == with_it.active_anomalies(30)
    assert np.array_equal(with_it.render(9)[0], without.render(9)[0])

    changed = np.abs(with_it.render(20)[0].astype(int) - without.render(20)[0]) > 12
    # The anomaly is in the world, so it moves with the drift: allow that much around the region.
    pad = math.ceil(spec.drift_px + math.radians(spec.drift_deg) * W) + 2
    x0, y0 = int(region.x * W) - pad, int(region.y * H) - pad
    x1, y1 = int((region.x + region.w) * W) + pad, int((region.y + region.h) * H) + pad
    inside = changed[y0:y1, x0:x1].sum()
    assert inside >= 0.97 * changed.sum()
    area = region.w * W * region.h * H
    assert inside >= (0.5 if kind in ("occlusion", "texture_change") else 0.03) * area


def test_moving_objects_move() -> None:
    renderer = SceneRenderer(still_scene())
    a, b = (renderer.render(i)[0].astype(int) for i in (10, 11))
    assert (np.abs(a - b) > 30).sum() > 100


@pytest.mark.parametrize(
    "changes",
    [
        {"width": 321},
        {"height": 16},
        {"fps": 0.0},
        {"seed": -1},
        {"drift_px": -1.0},
        {"anomalies": (AnomalySpec("occlusion", Region(0.1, 0.1, 0.2, 0.2), 1.0, 9.0),)},
        {"shifts": ((4.0, 1.0, 1.0, 0.0),)},
    ],
)
def test_bad_specs_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(SceneError):
        still_scene(**changes)


def test_oversized_frames_are_refused() -> None:
    with pytest.raises(SceneError, match="too large"):
        SceneRenderer(still_scene(width=5120, height=3840))


def test_bad_parts_are_refused() -> None:
    with pytest.raises(SceneError, match="region"):
        Region(0.8, 0.1, 0.3, 0.2)
    with pytest.raises(SceneError, match="kind"):
        AnomalySpec("explosion", Region(0.1, 0.1, 0.2, 0.2), 0.0, 1.0)  # type: ignore[arg-type]
    with pytest.raises(SceneError, match="start_s"):
        AnomalySpec("occlusion", Region(0.1, 0.1, 0.2, 0.2), 2.0, 1.0)
    with pytest.raises(SceneError, match="gop"):
        default_scene(1, W, H, FPS, 0)


def test_another_take_of_a_place_keeps_its_background_and_anomalies() -> None:
    spec = default_scene(11, W, H, FPS, 10, 8.0, sudden_shift=True)
    spec = dataclasses.replace(spec, margin_px=canvas_margin(spec))
    normal = dataclasses.replace(spec, anomalies=(), shifts=())
    one, two = (SceneRenderer(dataclasses.replace(normal, variant=v)) for v in (1, 2))
    # Other passers-by, drift and light: the frames differ...
    assert one.pose(20) != two.pose(20)
    assert np.abs(one.render(20)[0].astype(int) - two.render(20)[0]).mean() > 1
    # ...but it is the same place: undo each take's pose and the views match.
    a = one.render(0)[0].astype(float)
    b = two.render(0)[0].astype(float)
    dx, dy = phase_shift(a, b)
    p1, p2 = one.pose(0), two.pose(0)
    assert (dx, dy) == pytest.approx((p2.dx - p1.dx, p2.dy - p1.dy), abs=1.0)
    with pytest.raises(SceneError, match="variant must be >= 0"):
        dataclasses.replace(normal, variant=-1)
