"""RoiModel: thresholds moved by sensitivity and the anomalous region in crop and frame
coordinates (scoring time is measured on the real model in test_model_train)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pytest
from test_model_artifact import ROIS, normal_maps, pack, small_extractor

from agent.detection import padim
from agent.detection.model.extractor import BuiltExtractor
from agent.detection.model.roi_model import CropRegion, RoiModel
from fleet.messages import Box

Maps = npt.NDArray[np.float32]


@pytest.fixture(scope="module")
def built() -> BuiltExtractor:
    return small_extractor()


@pytest.fixture(scope="module")
def normal(built: BuiltExtractor) -> Maps:
    return normal_maps(built.feature_shape, seed=0)


@pytest.fixture(scope="module")
def model(
    built: BuiltExtractor, normal: Maps, tmp_path_factory: pytest.TempPathFactory
) -> RoiModel:
    path = tmp_path_factory.mktemp("model") / "model.cfm"
    pack(built, {roi.id: normal for roi in ROIS}).write(path)
    return RoiModel.load(path, expect=built.preprocessing)


def test_model_exposes_what_the_detector_needs(model: RoiModel, built: BuiltExtractor) -> None:
    assert model.model_version.startswith("cam-1-")
    assert [r.id for r in model.rois] == ["gate", "yard"]
    assert model.input_shape == (1, 32, 48, 1)
    assert model.extractor_tflite == built.tflite
    crop = np.full((30, 40), 90, np.uint8)
    assert model.prepare(crop, np.ones(crop.shape, bool)).shape == model.input_shape


def test_sensitivity_moves_the_threshold(model: RoiModel) -> None:
    calibrated = model.threshold("gate")  # the ROI's sensitivity is 0.5
    assert calibrated > 0
    assert model.threshold("gate", 1.0) == pytest.approx(calibrated / 2)
    assert model.threshold("gate", 0.0) == pytest.approx(calibrated * 2)
    assert model.threshold("gate", 0.75) < calibrated < model.threshold("gate", 0.25)
    with pytest.raises(ValueError, match="sensitivity"):
        model.threshold("gate", 1.5)


def test_normal_map_is_below_and_its_region_is_the_peak_cell(model: RoiModel, normal: Maps) -> None:
    mask = np.ones((32, 48), bool)
    verdict = model.score("gate", normal[3][None], 100.0, mask)
    assert not verdict.anomalous and verdict.score < verdict.threshold
    h, w, _ = normal.shape[1:]
    assert verdict.region.w == pytest.approx(1 / w) and verdict.region.h == pytest.approx(1 / h)


def test_region_covers_the_changed_cells(model: RoiModel, normal: Maps) -> None:
    h, w, _ = normal.shape[1:]
    changed = normal.mean(axis=0).copy()
    changed[2:5, 3:7] += 3.0  # far outside the normal spread (0.2)
    verdict = model.score("yard", changed, 100.0, np.ones((32, 48), bool))
    assert verdict.anomalous
    assert verdict.region == CropRegion(3 / w, 2 / h, 4 / w, 3 / h)
    crop = Box(x=100, y=50, w=w * 10, h=h * 10, frame_w=640, frame_h=360)
    assert verdict.region.in_frame(crop) == Box(x=130, y=70, w=40, h=30, frame_w=640, frame_h=360)
    # cells outside the ROI's mask are not scored: the change there is not seen
    mask = np.ones((32, 48), bool)
    mask[:, :40] = False  # only the right sixth of the crop is in the polygon
    assert not model.score("yard", changed, 100.0, mask).anomalous


def test_a_crop_smaller_than_the_feature_map_still_scores(model: RoiModel, normal: Maps) -> None:
    tiny = np.ones((3, 5), bool)  # e.g. a thin ROI far away: fewer pixels than cells
    verdict = model.score("gate", normal[0], 100.0, tiny)
    assert not verdict.anomalous and 0 <= verdict.region.x < 1


def test_a_verdict_takes_in_the_change_since_the_previous_frame(
    model: RoiModel, normal: Maps
) -> None:
    mask = np.ones((32, 48), bool)
    here, there = normal.mean(axis=0).copy(), normal.mean(axis=0).copy()
    here[2:5, 3:7] += 3.0
    there[8:11, 20:24] += 3.0  # the same thing, moved: every cell it left or reached changed
    before, now = (model.score("yard", m, 100.0, mask) for m in (here, there))
    assert now.after(now) is now  # nothing moved: the frame's own verdict stands
    stats = now.stats
    moved = padim.change_map(now.score_map, before.score_map)
    change = padim.change_score(stats, moved, now.cells)
    assert change > 0
    combined = now.after(before)
    assert combined.score == pytest.approx(padim.combined(stats, now.score, change))
    assert combined.score >= now.score and combined.threshold == now.threshold
    assert combined.score_map is now.score_map  # later frames compare appearance maps
