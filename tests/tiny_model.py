"""A tiny real anomaly model for tests on either side (agent and controller): trained with
camfleet's own trainer on renders of the default scene, one ROI ("yard")."""

from __future__ import annotations

import functools
from dataclasses import replace

from agent.detection import padim
from agent.detection.model import patch_pca
from agent.detection.model.train import TrainingFrame, TrainSettings, train
from fleet.messages import IDENTITY, RoiSpec
from fleet.sim.scene import SceneRenderer, default_scene

ROIS = [RoiSpec(id="yard", polygon=[(0.1, 0.1), (0.6, 0.1), (0.6, 0.6), (0.1, 0.6)])]
_SMALL = TrainSettings(
    padim=padim.PadimSettings(channels=8, folds=2),
    patch_pca=patch_pca.PatchPcaSettings(input_area=32 * 48, patches=2000),
    extractor_crops=24,
    min_frames=12,
)


def tiny_artifact(camera: str, seed: int = 7) -> bytes:
    """A real model for `camera` (ROI "yard"), trained on 24 rendered 160x96 frames (~0.5 s);
    the same one for the same arguments (its manifest holds the time it was made)."""
    return _trained(camera, seed)


@functools.cache
def _trained(camera: str, seed: int) -> bytes:
    scene = replace(default_scene(seed, 160, 96, 10.0, 10, loop_seconds=10), anomalies=())
    renderer = SceneRenderer(scene)
    frames = [TrainingFrame(i * 100_000, renderer.render(i)[0].copy(), IDENTITY)
              for i in range(24)]  # fmt: skip
    return train(frames, camera, ROIS, _SMALL).to_bytes()
