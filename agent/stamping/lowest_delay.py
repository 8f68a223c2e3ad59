"""The lowest-delay anchor: a stream's PTS pinned to the agent's clock.

A frame cannot have been captured after it arrived, so the anchor is the lowest
(arrival - PTS time) over a sliding window, which network jitter and the burst after a stall
cannot push later, and which follows the slow drift of the camera's crystal against the agent's
clock (that rate is measured too). Sans-IO, like the stamper that uses it.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

Drift = Literal["drift_ahead", "drift_behind"]

RATE_MIN_POINTS = 4


@dataclass(slots=True)
class Block:
    min_value: float
    min_key: int
    min_arrival: int
    paced: int  # frames that did not arrive in a burst


class Window:
    """Minimum of a per-frame value over the last one to two blocks of frames (O(1) a frame).

    A block closes after `block_frames` paced frames: a burst after a stall does not fill it, so
    the window keeps a block's worth of arrivals at the camera's pace to show the lowest delay.
    """

    __slots__ = ("_cur", "_prev", "_size")

    def __init__(self, block_frames: int) -> None:
        self._size = block_frames
        self._prev: Block | None = None
        self._cur: Block | None = None

    def push(self, key: int, arrival: int, value: float, paced: bool) -> Block | None:
        """Add a frame; returns the block it completed, if any."""
        cur = self._cur
        if cur is None:
            cur = self._cur = Block(value, key, arrival, int(paced))
        else:
            if value < cur.min_value:
                cur.min_value, cur.min_key, cur.min_arrival = value, key, arrival
            cur.paced += paced
        if cur.paced < self._size:
            return None
        self._prev, self._cur = cur, None
        return cur

    def _blocks(self) -> list[Block]:
        return [b for b in (self._prev, self._cur) if b is not None]

    @property
    def minimum(self) -> float:
        """The lowest value pushed into the window (valid once something was pushed)."""
        prev, cur = self._prev, self._cur
        # Read on every frame: no list or generator for two blocks.
        if prev is None or cur is None:
            block = prev or cur
            if block is None:
                raise ValueError("minimum of an empty window")
            return block.min_value
        return min(prev.min_value, cur.min_value)

    def rebase(self, line: Callable[[int], float | None]) -> None:
        """Re-evaluate the stored minima against a new line (value = arrival - line(key))."""
        for b in self._blocks():
            at = line(b.min_key)
            b.min_value = float("inf") if at is None else b.min_arrival - at


class RateEstimator:
    """How much faster the camera's clock runs than the agent's (ppm), from the lowest delays of
    whole blocks: a Theil-Sen slope, which shrugs off the odd block a congestion inflated.
    """

    __slots__ = ("_max", "_points")

    def __init__(self, blocks: int, max_ppm: float) -> None:
        self._points: deque[tuple[float, float]] = deque(maxlen=blocks)
        self._max = max_ppm

    def add(self, camera_us: float, offset_us: float) -> float | None:
        """Add a block's lowest (camera time, arrival - camera time); returns the estimate."""
        self._points.append((camera_us, offset_us))
        if len(self._points) < RATE_MIN_POINTS:
            return None
        pts = list(self._points)
        slopes = [
            (o2 - o1) / (x2 - x1)
            for i, (x1, o1) in enumerate(pts)
            for x2, o2 in pts[i + 1 :]
            if x2 != x1
        ]
        if not slopes:
            return None
        agent_per_camera = 1.0 + statistics.median(slopes)
        ppm = (1.0 / agent_per_camera - 1.0) * 1e6 if agent_per_camera > 0 else self._max
        return max(-self._max, min(self._max, ppm))


@dataclass(frozen=True, slots=True)
class AnchorLimits:
    """What an arrival anchor tolerates (the stamper's config, in the units used per frame)."""

    bound_us: int  # |stamp - arrival| beyond this -> the anchor no longer holds
    settle_us: float  # stamps behind arrival beyond the bound this long -> no longer holds
    block_frames: int
    rate_blocks: int
    max_rate_ppm: float


class ArrivalAnchor:
    """PTS anchored to the agent's clock: stamp(u) = arrival0 + PTS time since u0 + offset.

    `u` is the unwrapped PTS; the offset is the lowest delay relative to the first frame. It
    follows a lower arrival at once (a frame cannot arrive before it was captured) and moves
    later when a whole window of paced arrivals says the lowest delay rose (the camera's clock
    runs slow, or the agent's clock stepped forward).
    """

    __slots__ = (
        "_arrival0",
        "_lag_since",
        "_limits",
        "_offset",
        "_rates",
        "_u0",
        "_us",
        "_window",
        "rate_ppm",
    )

    def __init__(self, limits: AnchorLimits, u: int, arrival: int, us_per_pts: float) -> None:
        self._limits = limits
        self._u0, self._arrival0, self._us = u, arrival, us_per_pts
        self._offset = 0.0
        self._lag_since: int | None = None
        self._window = Window(limits.block_frames)
        self._window.push(u, arrival, 0.0, True)
        self._rates = RateEstimator(limits.rate_blocks, limits.max_rate_ppm)
        self.rate_ppm: float | None = None

    def _line(self, u: int) -> float:
        return self._arrival0 + (u - self._u0) * self._us

    def stamp_at(self, u: int) -> float:
        return self._line(u) + self._offset

    def update(self, u: int, arrival: int, paced: bool) -> Drift | None:
        """Feed a frame; returns why the anchor no longer holds, if it does not."""
        limits = self._limits
        value = arrival - self._line(u)
        behind = value - self._offset  # arrival - stamp, before this frame moves the anchor
        if behind < -limits.bound_us:
            return "drift_ahead"
        if behind <= limits.bound_us:
            self._lag_since = None
        elif self._lag_since is None:
            self._lag_since = arrival
        elif arrival - self._lag_since >= limits.settle_us:
            return "drift_behind"
        done = self._window.push(u, arrival, value, paced)
        # Lower at once; later only once the block that held the lowest delay left the window.
        self._offset = self._window.minimum
        if done is not None:
            camera_us = (done.min_key - self._u0) * self._us
            rate = self._rates.add(camera_us, done.min_arrival - camera_us)
            self.rate_ppm = self.rate_ppm if rate is None else rate
        return None
