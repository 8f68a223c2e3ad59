"""CameraDetector.judge: a verdict takes in the change since the ROI's previous judged verdict
only when that frame is at most CHANGE_GAP_US older; late results are counted and ignored.

The model is scripted through the detector's own Protocols (ScoringModel, Verdict, Region): its
output for a crop is (frame stamp, plain score), and a verdict's `after(previous)` adds the
change |score - previous.score| to its own score and logs which frame it was compared with.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Self

import numpy as np
import pytest
from numpy.typing import NDArray

from agent.detection.detector import CHANGE_GAP_US, CameraDetector, Detection
from agent.detection.luma import Luma
from agent.detection.persistence import PersistenceSettings
from agent.detection.pool import InferencePool
from agent.detection.roi_geometry import Mask
from agent.detection.scheduler import DetectScheduler, RoiOutput
from fleet.messages import Box, RoiSpec

T0 = 1_700_000_000_000_000  # a capture stamp (µs) like the cameras'
ROI = RoiSpec(id="door", polygon=[(0.1, 0.1), (0.9, 0.1), (0.5, 0.9)])
THRESHOLD = 1.0
# Both below THRESHOLD on their own; one after the other, the change lifts the later above it.
LOW, HIGH = 0.25, 0.75  # binary fractions, so the sums compare exactly
BOX = Box(x=8, y=4, w=16, h=12, frame_w=64, frame_h=48)
# Opens an event at the first score above threshold, so one frame decides it.
AT_ONCE = PersistenceSettings(k=1, n=1, min_open_us=0, fast_k=1)


class WholeCrop:
    """What scored high: the whole crop."""

    def in_frame(self, crop: Box) -> Box:
        return crop


@dataclass(frozen=True)
class ScriptedVerdict:
    frame_us: int
    score: float
    threshold: float
    region: WholeCrop
    # (this frame, the frame `after` was given), shared by all verdicts of a model
    changes: list[tuple[int, int]] = field(compare=False, repr=False)

    def after(self, previous: Self) -> Self:
        self.changes.append((self.frame_us, previous.frame_us))
        return replace(self, score=self.score + abs(self.score - previous.score))


class ScriptedModel:
    """Judges an output (frame stamp, plain score) to that score at THRESHOLD."""

    model_version = "scripted-1"
    model_key = "scripted"

    def __init__(self) -> None:
        self.changes: list[tuple[int, int]] = []

    @property
    def roi_ids(self) -> Sequence[str]:
        return [ROI.id]

    # The tests hand `judge` its outputs directly, so nothing is ever prepared.
    def prepare(self, crop: Luma, mask: Mask) -> NDArray[np.float32]:
        raise AssertionError("no crop is offered in these tests")

    def brightness(self, crop: Luma, mask: Mask) -> float:
        raise AssertionError("no crop is offered in these tests")

    def judge(
        self, roi_id: str, output: NDArray[Any], brightness: float, sensitivity: float, mask: Mask
    ) -> ScriptedVerdict:
        frame_us, score = output
        return ScriptedVerdict(int(frame_us), float(score), THRESHOLD, WholeCrop(), self.changes)


class Rig:
    """A detector on the scripted model, with what its listeners heard."""

    def __init__(self, pool: InferencePool, persistence: PersistenceSettings | None = None) -> None:
        self.model = ScriptedModel()
        self.verdicts: list[tuple[int, float]] = []  # (frame stamp - T0, score)
        self.detections: list[Detection] = []
        scheduler = DetectScheduler(pool, lambda out: self.detector.judge(out))
        self.detector = CameraDetector(
            "cam", self.model, [ROI], scheduler, lambda width: None, self.detections.append,
            persistence, self.on_verdict,
        )  # fmt: skip

    def on_verdict(self, roi: str, stamp_us: int, score: float, threshold: float) -> None:
        assert (roi, threshold) == (ROI.id, THRESHOLD)
        self.verdicts.append((stamp_us - T0, score))

    def judge(self, at_us: int, score: float) -> None:
        """The model's output for the frame `at_us` after T0, as a pool thread delivers it."""
        stamp = T0 + at_us
        output = np.array([stamp, score], np.float64)  # stamps < 2**53 stay exact
        mask = np.ones((BOX.h, BOX.w), np.bool_)
        self.detector.judge(RoiOutput("cam", ROI.id, stamp, output, 128.0, BOX, mask, 1.0))

    @property
    def changes(self) -> list[tuple[int, int]]:
        """(frame, the frame its change was taken from), as µs after T0."""
        return [(a - T0, b - T0) for a, b in self.model.changes]

    def roi_stats(self) -> dict[str, Any]:
        stats: dict[str, Any] = self.detector.stats()["rois"][ROI.id]
        return stats


@pytest.fixture
def pool() -> Iterator[InferencePool]:
    pool = InferencePool(size=1)
    try:
        yield pool
    finally:
        pool.close()


def test_frames_a_detect_interval_apart_take_in_the_change(pool: InferencePool) -> None:
    r = Rig(pool)
    r.judge(0, LOW)
    r.judge(200_000, HIGH)
    r.judge(400_000, LOW)
    assert r.changes == [(200_000, 0), (400_000, 200_000)]
    # The previous verdict is the plain one: .25 + |.25 - .75|, not .25 + |.25 - 1.25|.
    assert r.verdicts == [
        (0, LOW),
        (200_000, HIGH + (HIGH - LOW)),
        (400_000, LOW + (HIGH - LOW)),
    ]
    assert r.roi_stats()["last_score"] == LOW + (HIGH - LOW)


def test_after_a_gap_the_change_is_dropped_and_the_new_frame_is_the_previous(
    pool: InferencePool,
) -> None:
    r = Rig(pool)
    r.judge(0, LOW)
    r.judge(600_000, HIGH)
    assert r.changes == []
    assert r.verdicts == [(0, LOW), (600_000, HIGH)]
    r.judge(800_000, LOW)
    assert r.changes == [(800_000, 600_000)]
    assert r.verdicts[-1] == (800_000, LOW + (HIGH - LOW))
    assert r.roi_stats()["scores"] == 3


def test_exactly_the_gap_apart_still_counts_and_a_microsecond_more_does_not(
    pool: InferencePool,
) -> None:
    r = Rig(pool)
    r.judge(0, LOW)
    r.judge(CHANGE_GAP_US, HIGH)
    r.judge(2 * CHANGE_GAP_US + 1, LOW)
    assert r.changes == [(CHANGE_GAP_US, 0)]
    assert r.verdicts == [
        (0, LOW),
        (CHANGE_GAP_US, HIGH + (HIGH - LOW)),
        (2 * CHANGE_GAP_US + 1, LOW),
    ]


def test_a_late_result_is_counted_and_ignored(pool: InferencePool) -> None:
    r = Rig(pool)
    r.judge(0, LOW)
    r.judge(200_000, HIGH)
    r.judge(200_000, 0.9)  # the same frame again
    r.judge(100_000, 0.9)  # an older one, finished after a newer
    stats = r.roi_stats()
    assert (stats["late"], stats["scores"]) == (2, 2)
    assert stats["last_score"] == HIGH + (HIGH - LOW)
    assert [stamp for stamp, _ in r.verdicts] == [0, 200_000]
    assert r.changes == [(200_000, 0)]  # no verdict was even compared with them
    # Nor did they become the previous: the next frame is compared with the .75 at 200 ms.
    r.judge(400_000, LOW)
    assert r.changes[-1] == (400_000, 200_000)
    assert r.verdicts[-1] == (400_000, LOW + (HIGH - LOW))
    assert r.roi_stats()["late"] == 2


def test_the_change_opens_an_event_that_the_same_scores_across_gaps_do_not(
    pool: InferencePool,
) -> None:
    close = Rig(pool, AT_ONCE)
    close.judge(0, LOW)
    assert close.detections == []
    close.judge(200_000, HIGH)
    [opened] = close.detections
    assert not opened.closed
    assert opened.decided_us == T0 + 200_000
    assert opened.event.open
    assert (opened.event.start_us, opened.event.peak_us) == (T0 + 200_000, T0 + 200_000)
    assert opened.event.peak_score == HIGH + (HIGH - LOW)
    assert opened.event.threshold == THRESHOLD
    assert close.roi_stats()["event_open"]

    apart = Rig(pool, AT_ONCE)
    for i, score in enumerate([LOW, HIGH, LOW, HIGH]):
        apart.judge(i * (CHANGE_GAP_US + 100_000), score)
    assert apart.detections == []
    stats = apart.roi_stats()
    assert (stats["scores"], stats["above_threshold"], stats["event_open"]) == (4, 0, False)
    assert max(score for _, score in apart.verdicts) == HIGH
