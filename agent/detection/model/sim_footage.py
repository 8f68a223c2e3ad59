"""Normal footage of a simulated camera, for demos and tests: the loop the simulator serves on the
stream the agent scores, decoded from the simulator's own cache, keeping the frames without an
anomaly on screen. A model trained on it knows the very loop it will score, which a site's model
(trained on recordings, `camfleet model train`) never does."""

from __future__ import annotations

from collections.abc import Iterator

import av

from agent.detection.model.train import TrainSettings
from agent.detection.scheduler import StampBucket
from fleet.profiles import FirmwareProfile
from fleet.sim.build import SimOptions, plan_cameras
from fleet.sim.encoded import EncodedLoop, encode_loops, to_annexb
from fleet.sim.scene import SceneRenderer, SceneSpec

# One loop at 5 fps is 50-150 frames once its anomalies are cut out; the model scores that very
# loop, so fewer frames than a site's footage needs will do.
SIM_TRAIN_SETTINGS = TrainSettings(min_frames=40)


class SimFootageError(ValueError):
    """No such simulated camera; the text says which there are."""


def scored_stream(profile: FirmwareProfile) -> str:
    """The stream the agent analyses: the sub stream where the camera has one."""
    return "sub" if profile.sub is not None else "main"


def served_normal_frames(
    options: SimOptions, camera: str, fps: float
) -> Iterator[tuple[int, av.VideoFrame]]:
    """(stamp, frame) of `camera`'s scored stream as `camfleet sim` with these options serves
    it, one loop, thinned to at most `fps` by their stamps (as recordings are for training),
    anomaly frames left out.
    Stamps count from the loop's start. The loop comes from `options.cache_dir` (encoded there
    first if the simulator has not done it yet)."""
    plans = plan_cameras(options)
    plan = next((p for p in plans if p.name == camera), None)
    if plan is None:
        raise SimFootageError(
            f"the simulator with these options has no camera {camera!r}: "
            f"it serves {plans[0].name} .. {plans[-1].name}"
        )
    stream = scored_stream(options.profile)
    loops = encode_loops(plan.spec, list(plan.encodings.values()), options.cache_dir)
    return _normal_frames(plan.spec, loops[stream], plan.encodings[stream].frame_step, fps)


def _normal_frames(
    spec: SceneSpec, loop: EncodedLoop, step: int, fps: float
) -> Iterator[tuple[int, av.VideoFrame]]:
    renderer, bucket = SceneRenderer(spec), StampBucket(fps, burst=1.0)
    decoder = av.CodecContext.create("h264", "r")
    assert isinstance(decoder, av.VideoCodecContext)
    packets = [*decoder.parse(to_annexb(loop.units)), None]  # None flushes the decoder
    n = 0
    for packet in packets:
        for frame in decoder.decode(packet):
            scene_index = n * step  # the stream shows every step-th scene frame
            n += 1
            stamp_us = round(scene_index / spec.fps * 1e6)
            if bucket.admit(stamp_us) and not renderer.active_anomalies(scene_index):
                yield stamp_us, frame
