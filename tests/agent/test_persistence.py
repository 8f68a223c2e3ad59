"""k-of-n persistence and hysteresis: score sequences in, the expected transitions out."""

from __future__ import annotations

import pytest

from agent.detection.persistence import (
    EventSpan,
    PersistenceSettings,
    ScorePersistence,
    Transition,
)

THRESHOLD = 10.0
FRAME_US = 200_000  # 5 detect fps
T0 = 1_700_000_000_000_000
SETTINGS = PersistenceSettings(
    k=3, n=5, min_open_us=600_000, hysteresis=0.8, min_close_us=1_000_000
)

# above threshold (below the fast path's x 1.5); between it and threshold x 0.8; below both
HI, MID, LO = 12.0, 9.0, 1.0
BLATANT = 15.0  # threshold x fast_level: fast_k (2) of these in a row open at once


def stamp(i: int) -> int:
    return T0 + i * FRAME_US


def run(scores: list[float]) -> list[tuple[int, Transition]]:
    """(frame index, transition) for every transition the sequence causes."""
    persistence = ScorePersistence(THRESHOLD, SETTINGS)
    out = []
    for i, score in enumerate(scores):
        transition = persistence.update(stamp(i), score)
        if transition is not None:
            out.append((i, transition))
    return out


def opened(at: int, start: int, peak: int, peak_score: float) -> tuple[int, Transition]:
    return at, Transition("opened", EventSpan(stamp(start), stamp(peak), peak_score, None))


def closed(at: int, start: int, peak: int, peak_score: float, end: int) -> tuple[int, Transition]:
    return at, Transition("closed", EventSpan(stamp(start), stamp(peak), peak_score, stamp(end)))


CASES = {
    "single spikes never open": ([LO, LO, 99.0, LO, LO, 99.0, LO, LO, LO, 99.0] + [LO] * 5, []),
    "two of five above do not arm (k=3)": ([HI, LO, HI, LO, LO] * 4, []),
    "three above frames are too short for min_open (600 ms)": ([LO, HI, HI, HI] + [LO] * 10, []),
    "sustained: opens after k-of-n and the minimum time, closes after min_close": (
        [LO, LO, HI, 30.0, HI, HI, HI, HI, HI, HI, HI, HI] + [LO] * 8,
        # onset frame 2; k-of-n at 4; 600 ms after onset at 5; last active 11; quiet from 12,
        # 1 s later at 17
        [opened(5, start=2, peak=3, peak_score=30.0), closed(17, 2, 3, 30.0, end=11)],
    ),
    "3 of 5 intermittent scores open, starting at the first above frame": (
        [LO, HI, LO, HI, HI, LO, HI, HI] + [LO] * 6,
        # k-of-n at 4, which is also 600 ms after the onset; the dip at 5 is shorter than 1 s
        [opened(4, start=1, peak=1, peak_score=HI), closed(13, 1, 1, HI, end=7)],
    ),
    "a dip below hysteresis shorter than min_close does not close; the peak follows": (
        [HI] * 4 + [LO] * 4 + [40.0] + [LO] * 6,
        [opened(3, 0, 0, HI), closed(14, 0, 8, 40.0, end=8)],
    ),
    "scores between threshold x hysteresis and threshold keep it open": (
        [HI] * 4 + [MID] * 10 + [LO] * 6,
        [opened(3, 0, 0, HI), closed(19, 0, 0, HI, end=13)],
    ),
    "two blatant scores in a row open at once, starting at the first above frame": (
        [LO, HI, BLATANT, 40.0, HI] + [LO] * 6,
        [opened(3, start=1, peak=3, peak_score=40.0), closed(10, 1, 3, 40.0, end=4)],
    ),
    "blatant scores that are not consecutive wait for k-of-n and the minimum time": (
        [LO, 40.0, LO, 40.0, HI, HI, LO] + [LO] * 5,
        # k-of-n at 4, 600 ms after the onset: the same frame it would open at without them
        [opened(4, start=1, peak=1, peak_score=40.0), closed(11, 1, 1, 40.0, end=5)],
    ),
    "a second event opens after the first closed, with its own start and peak": (
        [HI] * 4 + [LO] * 6 + [LO, HI, 25.0, HI, HI] + [LO] * 6,
        [
            opened(3, 0, 0, HI),
            closed(9, 0, 0, HI, end=3),
            opened(14, start=11, peak=12, peak_score=25.0),
            closed(20, 11, 12, 25.0, end=14),
        ],
    ),
}


@pytest.mark.parametrize("scores, expected", CASES.values(), ids=CASES.keys())
def test_transitions(scores: list[float], expected: list[tuple[int, Transition]]) -> None:
    assert run(scores) == expected


def test_current_shows_the_open_event_and_its_peak_so_far() -> None:
    persistence = ScorePersistence(THRESHOLD, SETTINGS)
    for i, score in enumerate([HI, 33.0, HI, HI]):
        persistence.update(stamp(i), score)
    assert persistence.current == EventSpan(stamp(0), stamp(1), 33.0, None)
    persistence.update(stamp(4), 50.0)
    assert persistence.current == EventSpan(stamp(0), stamp(4), 50.0, None)


def test_stamps_must_increase() -> None:
    persistence = ScorePersistence(THRESHOLD, SETTINGS)
    persistence.update(stamp(1), LO)
    with pytest.raises(ValueError, match="increase"):
        persistence.update(stamp(1), LO)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"k": 0},
        {"k": 6, "n": 5},
        {"hysteresis": 1.5},
        {"hysteresis": 0},
        {"min_open_us": -1},
        {"fast_k": 0},
        {"fast_k": 6, "n": 5},
        {"fast_level": 1.0},
    ],
)
def test_bad_settings_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        PersistenceSettings(**kwargs)  # type: ignore[arg-type]


def test_threshold_must_be_positive() -> None:
    with pytest.raises(ValueError, match="threshold"):
        ScorePersistence(0.0)
