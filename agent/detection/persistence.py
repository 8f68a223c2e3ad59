"""When one ROI's per-frame scores become an event: k-of-n persistence, a minimum time, hysteresis.

Scores arrive with the analysed frames' own capture stamps (µs). An event opens at an
above-threshold frame once at least k of the last n scores are above the threshold and k-of-n has
held since a frame at least `min_open_us` earlier: the first above-threshold frame of the run that
met k-of-n, which is also the event's start stamp, so the event is found again frame-exact in the
recording. A score far above threshold needs less proof: `fast_k` consecutive scores at or
above threshold x `fast_level` open the event at once, so a blatant anomaly (a covered lens, a
new object) is raised a frame or two after it starts while a marginal one still needs k-of-n for
the minimum time. It closes once every score has stayed below threshold x hysteresis for
`min_close_us`; its end stamp is the last frame that was not. So a single spike never opens an
event and a single dip never closes one. Pure state, no clock, no I/O.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class PersistenceSettings:
    k: int = 3  # above-threshold scores among the last n that arm an event
    n: int = 5
    min_open_us: int = 400_000  # k-of-n must hold this long before the event opens
    hysteresis: float = 0.8  # the event stays open while scores reach threshold x this
    min_close_us: int = 1_000_000  # scores below that level for this long close it
    fast_k: int = 2  # this many consecutive scores at threshold x fast_level open at once
    fast_level: float = 1.5

    def __post_init__(self) -> None:
        if not 1 <= self.k <= self.n:
            raise ValueError(f"need 1 <= k <= n, got k={self.k} n={self.n}")
        if not 0 < self.hysteresis <= 1:
            raise ValueError(f"hysteresis must be in (0, 1], got {self.hysteresis}")
        if self.min_open_us < 0 or self.min_close_us < 0:
            raise ValueError("minimum times must not be negative")
        if not 1 <= self.fast_k <= self.n or not self.fast_level > 1:
            raise ValueError(f"need 1 <= fast_k <= n and fast_level > 1, got {self.fast_k}, "
                             f"{self.fast_level}")  # fmt: skip


@dataclass(frozen=True)
class EventSpan:
    start_us: int  # the first above-threshold frame of the run that opened it
    peak_us: int
    peak_score: float
    end_us: int | None  # the last frame at or above threshold x hysteresis; None while open


@dataclass(frozen=True)
class Transition:
    kind: Literal["opened", "closed"]
    span: EventSpan


class ScorePersistence:
    """Feed `update(stamp_us, score)` per analysed frame; it says when an event opens or closes."""

    def __init__(self, threshold: float, settings: PersistenceSettings = PersistenceSettings()):
        if not threshold > 0:
            raise ValueError(f"threshold must be positive, got {threshold}")
        self.threshold = threshold
        self.settings = settings
        self._recent: deque[tuple[int, float]] = deque(maxlen=settings.n)
        self._armed_since: int | None = None  # onset stamp while k-of-n holds and no event is open
        self._peak: tuple[float, int] = (0.0, 0)  # score, stamp since onset
        self._start_us: int | None = None  # the open event's start; None when none is open
        self._last_active_us = 0  # last frame at or above the hysteresis level, while open
        self._quiet_since: int | None = None  # first frame of the current run below it
        self._last_us: int | None = None

    @property
    def current(self) -> EventSpan | None:
        """The open event, its peak so far; None when no event is open."""
        return None if self._start_us is None else self._span(self._start_us, end_us=None)

    def update(self, stamp_us: int, score: float) -> Transition | None:
        if self._last_us is not None and stamp_us <= self._last_us:
            raise ValueError(f"stamps must increase: {stamp_us} after {self._last_us}")
        self._last_us = stamp_us
        if self._start_us is None:
            return self._while_closed(stamp_us, score)
        return self._while_open(self._start_us, stamp_us, score)

    def _while_closed(self, stamp_us: int, score: float) -> Transition | None:
        self._recent.append((stamp_us, score))
        above = [(t, v) for t, v in self._recent if v > self.threshold]
        if len(above) < self.settings.k and not self._blatant():
            self._armed_since = None
            return None
        if self._armed_since is None:
            self._armed_since = above[0][0]
            peak_us, peak_score = max(above, key=lambda entry: entry[1])  # the first highest
            self._peak = (peak_score, peak_us)
        else:
            self._track_peak(stamp_us, score)
        if score <= self.threshold:
            return None  # trailing low frames inside the window don't count towards the time
        if stamp_us - self._armed_since < self.settings.min_open_us and not self._blatant():
            return None
        self._start_us, self._armed_since = self._armed_since, None
        self._last_active_us, self._quiet_since = stamp_us, None
        return Transition("opened", self._span(self._start_us, end_us=None))

    def _blatant(self) -> bool:
        """The last fast_k scores are all at or above threshold x fast_level."""
        last = list(self._recent)[-self.settings.fast_k :]
        level = self.threshold * self.settings.fast_level
        return len(last) == self.settings.fast_k and all(v >= level for _, v in last)

    def _while_open(self, start_us: int, stamp_us: int, score: float) -> Transition | None:
        self._track_peak(stamp_us, score)
        if score >= self.threshold * self.settings.hysteresis:
            self._last_active_us, self._quiet_since = stamp_us, None
            return None
        if self._quiet_since is None:
            self._quiet_since = stamp_us
        if stamp_us - self._quiet_since < self.settings.min_close_us:
            return None
        closed = self._span(start_us, end_us=self._last_active_us)
        self._start_us = None
        self._recent.clear()
        return Transition("closed", closed)

    def _span(self, start_us: int, end_us: int | None) -> EventSpan:
        score, stamp = self._peak
        return EventSpan(start_us, stamp, score, end_us)

    def _track_peak(self, stamp_us: int, score: float) -> None:
        if score > self._peak[0]:
            self._peak = (score, stamp_us)
