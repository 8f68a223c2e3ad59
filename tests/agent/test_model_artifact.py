"""Model artifacts: one file that round-trips exactly, and that a reader refuses when any byte is
altered, when it is cut short, of another format, or made for other preprocessing."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Mapping
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from test_model_patch_pca import textured_crops

from agent.detection import padim
from agent.detection.model import patch_pca
from agent.detection.model.artifact import (
    DIGEST_FILE,
    MANIFEST_FILE,
    ModelArtifact,
    ModelArtifactError,
    sha256,
)
from agent.detection.model.extractor import BuiltExtractor, Preprocessing
from agent.detection.model.manifest import (
    RoiTraining,
    ScoreQuantiles,
    TrainingMetrics,
    TrainingRange,
)
from fleet.messages import RoiSpec

ROIS = [
    RoiSpec(id="gate", polygon=[(0.1, 0.1), (0.4, 0.1), (0.4, 0.5)], sensitivity=0.5),
    RoiSpec(id="yard", polygon=[(0.5, 0.5), (0.9, 0.5), (0.9, 0.9), (0.5, 0.9)]),
]
PADIM = padim.PadimSettings(channels=8, folds=3)
CREATED = datetime(2025, 3, 1, 12, 30, tzinfo=UTC)


def small_extractor() -> BuiltExtractor:
    settings = patch_pca.PatchPcaSettings(input_area=32 * 48, patches=2000)
    return patch_pca.build(textured_crops(12, seed=4, shape=(32, 48)), settings)


def pack(
    built: BuiltExtractor,
    maps: Mapping[str, npt.NDArray[np.float32]],
    license: str | None = None,
) -> ModelArtifact:
    """An artifact of PaDiM statistics fitted on the given normal feature maps per ROI."""
    statistics = {
        roi_id: padim.fit(m, np.full(len(m), 100.0), None, PADIM) for roi_id, m in maps.items()
    }
    held = ScoreQuantiles(frames=10, p50=1.0, p90=2.0, p99=3.0, max=3.5, above_threshold=0.0)
    return ModelArtifact.pack(
        camera="cam-1",
        rois=[roi for roi in ROIS if roi.id in maps],
        extractor=built,
        statistics=statistics,
        roi_training={r: RoiTraining(frames=40, held_back=held, fit_seconds=0.1) for r in maps},
        training=TrainingRange(from_us=1_000_000, to_us=5_000_000, frames=50),
        metrics=TrainingMetrics(
            frames=50,
            extractor_crops=12,
            extractor_seconds=0.1,
            features_seconds=0.1,
            total_seconds=0.5,
        ),
        created=CREATED,
        license=license,
    )


def normal_maps(shape: tuple[int, int, int], seed: int) -> npt.NDArray[np.float32]:
    rng = np.random.default_rng(seed)
    return rng.normal(1.0, 0.2, (40, *shape)).astype(np.float32)


@pytest.fixture(scope="module")
def built() -> BuiltExtractor:
    return small_extractor()


@pytest.fixture(scope="module")
def artifact(built: BuiltExtractor) -> ModelArtifact:
    maps = {roi.id: normal_maps(built.feature_shape, i) for i, roi in enumerate(ROIS)}
    return pack(built, maps, license="Weights: none. Apache-2.0.")


@pytest.fixture
def written(artifact: ModelArtifact, tmp_path: Path) -> Path:
    path = tmp_path / "model.cfm"
    artifact.write(path)
    return path


def test_round_trip(artifact: ModelArtifact, built: BuiltExtractor, tmp_path: Path) -> None:
    path = tmp_path / "model.cfm"
    identity = artifact.write(path)
    assert identity == sha256(path)
    back = ModelArtifact.read(path, expect=built.preprocessing)
    assert back.manifest == artifact.manifest
    assert back.extractor_tflite == built.tflite
    assert back.license == "Weights: none. Apache-2.0."
    for roi in ROIS:
        a, b = artifact.statistics[roi.id], back.statistics[roi.id]
        np.testing.assert_array_equal(a.precisions, b.precisions)
        assert a.threshold == b.threshold == back.manifest.roi_models[roi.id].threshold
    again = tmp_path / "again.cfm"
    assert back.write(again) == identity  # the same model is the same bytes
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind


def test_manifest_describes_the_model(artifact: ModelArtifact, built: BuiltExtractor) -> None:
    manifest = artifact.manifest
    assert manifest.format_version == 3
    assert manifest.model_version.startswith("cam-1-20250301T123000Z-")
    assert len(manifest.model_version.rsplit("-", 1)[1]) == 8
    assert manifest.extractor == "patch-pca"
    assert manifest.input_shape == (1, 32, 48, 1)
    assert manifest.feature_shape == built.feature_shape
    assert set(manifest.files) == {
        "extractor.tflite",
        "padim-gate.npz",
        "padim-yard.npz",
        "LICENSE",
    }
    assert manifest.roi_models["gate"].cells == built.feature_shape[:2]
    gate = artifact.statistics["gate"]
    assert manifest.roi_models["gate"].change_threshold == gate.change_threshold > 0
    assert _names(artifact.to_bytes())[:2] == [MANIFEST_FILE, DIGEST_FILE]


def test_every_altered_byte_is_refused(written: Path) -> None:
    content = written.read_bytes()
    # one byte in each file's data, in a tar header, and in the zero padding between files
    positions = [_data_offset(content, name) + 5 for name in _names(content)]
    positions += [100, _data_offset(content, "extractor.tflite") - 3, len(content) - 7]
    for position in positions:
        damaged = bytearray(content)
        damaged[position] ^= 0x01
        written.write_bytes(bytes(damaged))
        with pytest.raises(
            ModelArtifactError, match=r"altered or damaged|not a readable|truncated or damaged"
        ):
            ModelArtifact.read(written)


def test_truncated_file_is_refused(written: Path) -> None:
    content = written.read_bytes()
    for keep in (
        0,
        300,
        len(content) // 3,
        _data_offset(content, "padim-yard.npz"),
        len(content) - 1024,
    ):
        written.write_bytes(content[:keep])
        with pytest.raises(ModelArtifactError, match=r"truncated|not a model artifact"):
            ModelArtifact.read(written)


def test_unknown_format_is_refused(artifact: ModelArtifact, tmp_path: Path) -> None:
    manifest = json.loads(artifact.manifest_json)
    path = tmp_path / "other.cfm"
    # 2: an artifact from before change thresholds, which would score without its second cue
    for version in (2, 4):
        manifest["format_version"] = version
        _repack(path, {MANIFEST_FILE: json.dumps(manifest).encode(), **artifact.files})
        with pytest.raises(ModelArtifactError, match=rf"format {version} is not supported .* 3"):
            ModelArtifact.read(path)
    _repack(path, {"notes.txt": b"hello"})
    with pytest.raises(ModelArtifactError, match=r"no manifest\.json"):
        ModelArtifact.read(path)
    path.write_bytes(b"PK\x03\x04 this is a zip, not a tar" * 40)
    with pytest.raises(ModelArtifactError, match="not a readable model artifact"):
        ModelArtifact.read(path)


def test_other_preprocessing_is_refused(written: Path, built: BuiltExtractor) -> None:
    other_size = built.preprocessing.model_copy(update={"height": 64})
    other_kind = Preprocessing(kind="luma-unit-range", height=32, width=48, channels=3)
    for expect in (other_size, other_kind):
        with pytest.raises(
            ModelArtifactError, match=r"needs preprocessing luma-standardised 32x48x1"
        ):
            ModelArtifact.read(written, expect=expect)


def test_unlisted_or_rewritten_files_are_refused(artifact: ModelArtifact, tmp_path: Path) -> None:
    path = tmp_path / "extra.cfm"
    members = _members(artifact.to_bytes())
    _repack(path, {**members, "payload.sh": b"#!/bin/sh\n"})
    with pytest.raises(ModelArtifactError, match="does not list"):
        ModelArtifact.read(path)
    # a statistics file swapped for another valid one: its sha256 no longer matches
    swapped = {**members, "padim-gate.npz": members["padim-yard.npz"]}
    _repack(path, swapped)
    with pytest.raises(ModelArtifactError, match=r"padim-gate\.npz does not match"):
        ModelArtifact.read(path)


def _members(content: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(content)) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar}  # type: ignore[union-attr]


def _names(content: bytes) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(content)) as tar:
        return tar.getnames()


def _data_offset(content: bytes, name: str) -> int:
    with tarfile.open(fileobj=io.BytesIO(content)) as tar:
        return tar.getmember(name).offset_data


def _repack(path: Path, members: Mapping[str, bytes]) -> None:
    with tarfile.open(path, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
