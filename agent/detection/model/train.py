"""Training a camera's model from its own normal footage.

1. Crop every ROI out of every frame where drift tracking put it (the frame's adjustment).
2. Learn the extractor from an even spread of those crops (patch PCA unless another is given).
3. Run the written .tflite through the real TFLite runtime on every crop, so the statistics are
   fitted on exactly the features the agents will compute.
4. Fit each ROI's PaDiM statistics, holding back every `holdout_every`-th frame: their scores,
   by statistics that never saw them, go into the manifest as a check of the threshold.
5. Pack the artifact.

`progress(stage, done, total)` reports each stage ("crops", "extractor", "features",
"statistics"); total is 0 while it is unknown (frames from an iterator).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass, field
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from agent.detection import padim
from agent.detection.luma import Luma
from agent.detection.model import patch_pca
from agent.detection.model.artifact import ModelArtifact
from agent.detection.model.extractor import BuiltExtractor
from agent.detection.model.manifest import (
    RoiTraining,
    ScoreQuantiles,
    TrainingMetrics,
    TrainingRange,
)
from agent.detection.model.preprocessing import brightness, input_mask, prepare
from agent.detection.roi_crop import RoiCrop, RoiCropper
from fleet.litert import Interpreter, load_interpreter
from fleet.messages import RoiAdjustment, RoiSpec

Progress = Callable[[str, int, int], None]
ExtractorFactory = Callable[[Sequence[RoiCrop]], BuiltExtractor]


class TrainingError(ValueError):
    """Footage that cannot make a model: too few frames, an ROI never in view."""


@dataclass(frozen=True, eq=False)
class TrainingFrame:
    stamp_us: int
    luma: Luma  # (H, W)
    adjustment: RoiAdjustment  # drift at this frame, in pixels of this luma


@dataclass(frozen=True)
class TrainSettings:
    padim: padim.PadimSettings = field(default_factory=padim.PadimSettings)
    patch_pca: patch_pca.PatchPcaSettings = field(default_factory=patch_pca.PatchPcaSettings)
    extractor_crops: int = 240  # crops over all ROIs that the extractor learns from
    holdout_every: int = 10  # every n-th frame of an ROI is held back from fitting
    min_frames: int = 100  # per ROI
    threads: int = 2  # of the interpreter that computes the training features

    def __post_init__(self) -> None:
        if self.extractor_crops < 1 or self.holdout_every < 2 or self.threads < 1:
            raise ValueError("need extractor_crops >= 1, holdout_every >= 2, threads >= 1")
        if self.min_frames < 2 * self.padim.folds:
            raise ValueError(f"min_frames must be at least {2 * self.padim.folds} (two per fold)")


def train(
    frames: Iterable[TrainingFrame],
    camera: str,
    rois: Sequence[RoiSpec],
    settings: TrainSettings = TrainSettings(),
    progress: Progress | None = None,
    extractor: ExtractorFactory | None = None,
    *,
    license: str | None = None,
) -> ModelArtifact:
    """A model for `camera`'s ROIs from its normal footage; `license` is the notice of the given
    extractor's third-party weights, if it has any, shipped in the artifact."""
    started = time.perf_counter()
    report = progress or _quiet
    ids = [roi.id for roi in rois]
    if not ids or len(set(ids)) != len(ids):
        raise TrainingError(f"need ROIs with unique ids, got {ids}")
    crops, stamps = _crop_all(frames, rois, report)
    short = [roi.id for roi in rois if len(crops[roi.id]) < settings.min_frames]
    if short:
        raise TrainingError(
            f"ROIs {short} are in view in fewer than {settings.min_frames} of {len(stamps)} frames"
        )

    report("extractor", 0, 1)
    learn_from = _spread([c for roi in rois for c in crops[roi.id]], settings.extractor_crops)
    clock = time.perf_counter()
    built = (extractor or (lambda c: patch_pca.build(c, settings.patch_pca)))(learn_from)
    extractor_seconds = time.perf_counter() - clock
    report("extractor", 1, 1)

    clock = time.perf_counter()
    features = _features(built, crops, settings.threads, report)
    features_seconds = time.perf_counter() - clock

    statistics, roi_training = {}, {}
    for done, roi in enumerate(rois):
        report("statistics", done, len(rois))
        statistics[roi.id], roi_training[roi.id] = _fit_roi(
            features[roi.id], crops[roi.id], built, settings
        )
    report("statistics", len(rois), len(rois))

    return ModelArtifact.pack(
        camera=camera,
        rois=rois,
        extractor=built,
        statistics=statistics,
        roi_training=roi_training,
        training=TrainingRange(from_us=min(stamps), to_us=max(stamps), frames=len(stamps)),
        metrics=TrainingMetrics(
            frames=len(stamps),
            extractor_crops=len(learn_from),
            extractor_seconds=extractor_seconds,
            features_seconds=features_seconds,
            total_seconds=time.perf_counter() - started,
        ),
        created=datetime.now(UTC).replace(microsecond=0),
        license=license,
    )


def _quiet(stage: str, done: int, total: int) -> None:
    """No progress reporting."""


def _crop_all(
    frames: Iterable[TrainingFrame], rois: Sequence[RoiSpec], report: Progress
) -> tuple[dict[str, list[RoiCrop]], list[int]]:
    """Each ROI's crops in frame order (copies, so the frames can go) and the frames' stamps."""
    total = len(frames) if isinstance(frames, Sized) else 0
    croppers = {roi.id: RoiCropper(roi.polygon) for roi in rois}
    crops: dict[str, list[RoiCrop]] = {roi.id: [] for roi in rois}
    stamps = []
    for frame in frames:
        for roi_id, cropper in croppers.items():
            crop = cropper.crop(frame.luma, frame.adjustment)
            if crop is not None:
                crops[roi_id].append(crop.detached())
        stamps.append(frame.stamp_us)
        if len(stamps) % 50 == 0:
            report("crops", len(stamps), total)
    report("crops", len(stamps), len(stamps))
    return crops, stamps


def _spread(items: list[RoiCrop], count: int) -> list[RoiCrop]:
    """Up to `count` items evenly spaced over the list (over time and over the ROIs)."""
    if len(items) <= count:
        return items
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, count)]


def _features(
    built: BuiltExtractor, crops: dict[str, list[RoiCrop]], threads: int, report: Progress
) -> dict[str, npt.NDArray[np.float32]]:
    """Each ROI's feature maps (N, h, w, C), by the extractor's .tflite in the TFLite runtime."""
    interpreter = load_interpreter(built.tflite, num_threads=threads)
    source, sink = _io(interpreter, built)
    total, done = sum(len(c) for c in crops.values()), 0
    features = {}
    for roi_id, roi_crops in crops.items():
        maps = np.empty((len(roi_crops), *built.feature_shape), np.float32)
        for i, crop in enumerate(roi_crops):
            interpreter.set_tensor(source, prepare(built.preprocessing, crop.pixels, crop.mask))
            interpreter.invoke()
            maps[i] = interpreter.get_tensor(sink)[0]
            done += 1
            if done % 100 == 0:
                report("features", done, total)
        features[roi_id] = maps
    report("features", total, total)
    return features


def _io(interpreter: Interpreter, built: BuiltExtractor) -> tuple[int, int]:
    """Input and output tensor indices, once the model is checked against what it claims."""
    source, sink = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    p = built.preprocessing
    claimed = ((1, p.height, p.width, p.channels), (1, *built.feature_shape))
    actual = (tuple(source["shape"]), tuple(sink["shape"]))
    if actual != claimed:
        raise TrainingError(
            f"extractor maps {actual[0]} to {actual[1]}, not as it claims {claimed}"
        )
    return int(source["index"]), int(sink["index"])


def _fit_roi(
    maps: npt.NDArray[np.float32],
    crops: list[RoiCrop],
    built: BuiltExtractor,
    settings: TrainSettings,
) -> tuple[padim.PadimStats, RoiTraining]:
    """PaDiM statistics of one ROI, fitted without the held-back frames, which it then scores."""
    clock = time.perf_counter()
    lumas = np.array([brightness(c.pixels, c.mask) for c in crops])

    def cells(crop: RoiCrop) -> padim.Mask:
        return padim.cell_mask(input_mask(built.preprocessing, crop.mask), built.feature_shape[:2])

    held = np.arange(len(crops)) % settings.holdout_every == settings.holdout_every - 1
    stats = padim.fit(maps[~held], lumas[~held], cells(crops[0]), settings.padim)
    held_back = np.flatnonzero(held)
    scores = np.array(
        [padim.score(stats, maps[i], lumas[i], cells(crops[i])).score for i in held_back]
    )
    p50, p90, p99 = np.quantile(scores, [0.5, 0.9, 0.99]).tolist()
    quantiles = ScoreQuantiles(
        frames=len(scores),
        p50=p50,
        p90=p90,
        p99=p99,
        max=float(scores.max()),
        above_threshold=float((scores > stats.threshold).mean()),
    )
    return stats, RoiTraining(
        frames=int((~held).sum()), held_back=quantiles, fit_seconds=time.perf_counter() - clock
    )
