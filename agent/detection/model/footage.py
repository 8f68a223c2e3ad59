"""Normal footage to train on: a camera's recorded frames at its detect fps, each with the drift
in force (registered against the first frame, smoothed as the agent's tracker does), so the
training crops are the drift-compensated crops detection will score."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import av

from agent.detection.drift import DriftTracker
from agent.detection.luma import Luma, luma_plane
from agent.detection.model.train import TrainingFrame
from agent.detection.registration import Registrar
from agent.detection.scheduler import StampBucket
from agent.recording.clip import decode_segment
from agent.recording.index import Index
from fleet.messages import RoiAdjustment


class FollowedView:
    """Registration against a reference view, through the drift tracker the agent runs."""

    def __init__(self, reference: Luma) -> None:
        self.registrar, self.tracker = Registrar(reference), DriftTracker()
        self.moves: list[int] = []  # stamps at which a camera_moved state began

    def follow(self, luma: Luma, stamp_us: int) -> RoiAdjustment:
        for t in self.tracker.update(self.registrar.register(luma), stamp_us):
            if t.kind == "camera_moved" and t.active:
                self.moves.append(stamp_us)
        return self.tracker.adjustment


def training_frames(frames: Iterable[tuple[int, av.VideoFrame]]) -> Iterator[TrainingFrame]:
    """(stamp, frame) pairs as training frames, registered against the first one."""
    view: FollowedView | None = None
    for stamp_us, frame in frames:
        luma = luma_plane(frame).copy()
        view = view or FollowedView(luma)
        yield TrainingFrame(stamp_us, luma, view.follow(luma, stamp_us))


def recorded_frames(
    index: Index, camera: str, stream: str, from_us: int, to_us: int, fps: float
) -> Iterator[tuple[int, av.VideoFrame]]:
    """The recorded frames of one stream in [from_us, to_us], thinned to `fps` by their stamps."""
    bucket = StampBucket(fps, burst=1.0)
    refs = index.frames_between(camera, stream, from_us, to_us)
    by_segment: dict[int, list[int]] = {}
    for ref in refs:
        by_segment.setdefault(ref.segment_id, []).append(ref.stamp_us)
    paths = {ref.segment_id: ref.path for ref in refs}
    for segment_id, stamps in by_segment.items():
        first = next(r.index_in_segment for r in refs if r.segment_id == segment_id)
        key = index.keyframe_at_or_before(camera, stream, stamps[0])
        start = key.index_in_segment if key is not None and key.segment_id == segment_id else 0
        skip = first - start  # frames decoded only as references for the first one wanted
        for n, (_, frame) in enumerate(decode_segment(paths[segment_id], start)):
            i = n - skip
            if 0 <= i < len(stamps) and bucket.admit(stamps[i]):
                yield stamps[i], frame
