"""Frame stamper: a capture time (UTC epoch µs) and a sequence number for every frame, at ingest.

Sans-IO: time is passed in, nothing here reads a clock. The stamp follows the stream's PTS (the
camera's cadence) anchored to the agent's clock by the *lowest-delay* rule: a frame cannot have
been captured after it arrived, so the anchor is the lowest (arrival - PTS time) over a sliding
window, which network jitter and the burst after a stall cannot push later, and which follows the
slow drift of the camera's crystal against the agent's clock (that rate is measured and reported
too). Where the camera sends RTCP sender reports, PTS is anchored to the camera's wall clock
instead, as long as that clock agrees with the agent's within the re-anchor bound.

Stamps follow packet (decode) order: with B-frames a reordered frame gets previous + 1 µs.
"""

from __future__ import annotations

import statistics
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from agent.frames import Stamp

ReanchorReason = Literal[
    "first",  # the first anchor of this stamper (not counted as a re-anchor)
    "reset",  # a new connection
    "pts_jump",  # PTS jumped (camera reboot, new RTP timeline) and arrival did not follow
    "time_base",  # the stream's time base changed
    "drift_ahead",  # stamps would run ahead of arrival by more than the bound
    "drift_behind",  # stamps stayed behind arrival by more than the bound for settle_s
    "sr_start",  # switched to the camera's wall clock (sender reports)
    "sr_stop",  # left the camera's wall clock (it disagrees with the agent's, or went stale)
]

_RTP_WRAP = 1 << 32
_HALF_WRAP = 1 << 31
# A sender report further than this from a frame (in RTP ticks) cannot be matched to it
# unambiguously modulo 2**32: about 3.3 h at 90 kHz.
_SR_REACH_TICKS = 1 << 30
# A report further than this off the line of the reports before it means the camera's clock
# stepped (or its RTP timeline restarted): the rate is measured afresh from there.
_SR_STEP_US = 1_000
_SR_MIN_FIT_US = 1_000_000  # reports closer together say little about the rate
_RATE_MIN_POINTS = 4
_NOMINAL_MAX_STEP_US = 1_000_000  # longer PTS steps are gaps, not the frame interval


class StampError(ValueError):
    """Input the stamper cannot use (a non-positive time base or clock rate, a bad config)."""


def _signed32(delta: int) -> int:
    """`delta` modulo 2**32, as the value nearest zero."""
    return ((delta + _HALF_WRAP) % _RTP_WRAP) - _HALF_WRAP


@dataclass(frozen=True, slots=True)
class StamperConfig:
    reanchor_bound_us: int = 500_000  # |stamp - arrival| beyond this -> re-anchor
    max_pts_jump_s: float = 5.0  # a forward PTS step this long that arrival did not follow
    max_pts_backstep_s: float = 0.5  # a longer backward PTS step is a jump, not reordering
    jitter_window: int = 64  # paced frames per block; the lowest-delay window is one to two blocks
    settle_s: float = 2.0  # stamps behind arrival beyond the bound this long -> re-anchor
    rate_blocks: int = 16  # blocks whose lowest delays measure the camera's clock rate
    max_rate_ppm: float = 1000.0  # a camera crystal is within this of the agent's clock

    def __post_init__(self) -> None:
        positive = {
            "reanchor_bound_us": self.reanchor_bound_us,
            "max_pts_jump_s": self.max_pts_jump_s,
            "max_pts_backstep_s": self.max_pts_backstep_s,
            "jitter_window": self.jitter_window,
            "settle_s": self.settle_s,
            "max_rate_ppm": self.max_rate_ppm,
        }
        for name, value in positive.items():
            if not value > 0:
                raise StampError(f"StamperConfig.{name} must be positive, got {value!r}")
        if self.rate_blocks < _RATE_MIN_POINTS:
            raise StampError(
                f"StamperConfig.rate_blocks must be at least {_RATE_MIN_POINTS}, "
                f"got {self.rate_blocks!r}"
            )


@dataclass(frozen=True, slots=True)
class StamperStats:
    frames: int
    reanchors: int  # anchors started after the first one
    last_reanchor_reason: ReanchorReason | None
    drift_us: int | None  # arrival - stamp, smoothed: delay above the anchor (+ clock offset w/ SR)
    jitter_us: int | None  # p95 - min of (arrival - stamp) over the last jitter_window frames
    rate_ppm: float | None  # how much faster the camera's clock runs than the agent's
    camera_offset_us: int | None  # arrival-anchored stamp - camera wall time (needs SRs)
    sr_anchored: bool  # stamping on the camera's wall clock now
    sender_reports: int
    pts_missing: int  # frames without PTS, extrapolated (or stamped at arrival)
    clamped: int  # stamps pushed to previous + 1 µs to stay strictly increasing
    wraps: int  # 32-bit PTS wraps taken as continuation
    unsynced: int  # frames stamped while the agent's clock was not synchronised


@dataclass(slots=True)
class _Block:
    min_value: float
    min_key: int
    min_arrival: int
    paced: int  # frames that did not arrive in a burst


class _Window:
    """Minimum of a per-frame value over the last one to two blocks of frames (O(1) a frame).

    A block closes after `block_frames` paced frames: a burst after a stall does not fill it, so
    the window keeps a block's worth of arrivals at the camera's pace to show the lowest delay.
    """

    __slots__ = ("_cur", "_prev", "_size")

    def __init__(self, block_frames: int) -> None:
        self._size = block_frames
        self._prev: _Block | None = None
        self._cur: _Block | None = None

    def push(self, key: int, arrival: int, value: float, paced: bool) -> _Block | None:
        """Add a frame; returns the block it completed, if any."""
        cur = self._cur
        if cur is None:
            cur = self._cur = _Block(value, key, arrival, int(paced))
        else:
            if value < cur.min_value:
                cur.min_value, cur.min_key, cur.min_arrival = value, key, arrival
            cur.paced += paced
        if cur.paced < self._size:
            return None
        self._prev, self._cur = cur, None
        return cur

    def _blocks(self) -> list[_Block]:
        return [b for b in (self._prev, self._cur) if b is not None]

    @property
    def minimum(self) -> float:
        return min(b.min_value for b in self._blocks())

    def rebase(self, line: Callable[[int], float | None]) -> None:
        """Re-evaluate the stored minima against a new line (value = arrival - line(key))."""
        for b in self._blocks():
            at = line(b.min_key)
            b.min_value = float("inf") if at is None else b.min_arrival - at


class _RateEstimator:
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
        if len(self._points) < _RATE_MIN_POINTS:
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


class _ArrivalAnchor:
    """PTS anchored to the agent's clock: stamp(u) = arrival0 + PTS time since u0 + offset.

    `u` is the unwrapped PTS; the offset is the lowest delay relative to the first frame. It
    follows a lower arrival at once (a frame cannot arrive before it was captured) and moves
    later when a whole window of paced arrivals says the lowest delay rose (the camera's clock
    runs slow, or the agent's clock stepped forward).
    """

    __slots__ = (
        "_arrival0",
        "_cfg",
        "_lag_since",
        "_offset",
        "_rates",
        "_u0",
        "_us",
        "_window",
        "rate_ppm",
    )

    def __init__(self, cfg: StamperConfig, u: int, arrival: int, us_per_pts: float) -> None:
        self._cfg = cfg
        self._u0, self._arrival0, self._us = u, arrival, us_per_pts
        self._offset = 0.0
        self._lag_since: int | None = None
        self._window = _Window(cfg.jitter_window)
        self._window.push(u, arrival, 0.0, True)
        self._rates = _RateEstimator(cfg.rate_blocks, cfg.max_rate_ppm)
        self.rate_ppm: float | None = None

    def _line(self, u: int) -> float:
        return self._arrival0 + (u - self._u0) * self._us

    def stamp_at(self, u: int) -> float:
        return self._line(u) + self._offset

    def update(self, u: int, arrival: int, paced: bool) -> ReanchorReason | None:
        """Feed a frame; returns why the anchor no longer holds, if it does not."""
        cfg = self._cfg
        value = arrival - self._line(u)
        behind = value - self._offset  # arrival - stamp, before this frame moves the anchor
        if behind < -cfg.reanchor_bound_us:
            return "drift_ahead"
        if behind <= cfg.reanchor_bound_us:
            self._lag_since = None
        elif self._lag_since is None:
            self._lag_since = arrival
        elif arrival - self._lag_since >= cfg.settle_s * 1e6:
            return "drift_behind"
        done = self._window.push(u, arrival, value, paced)
        # Lower at once; later only once the block that held the lowest delay left the window.
        self._offset = self._window.minimum
        if done is not None:
            camera_us = (done.min_key - self._u0) * self._us
            rate = self._rates.add(camera_us, done.min_arrival - camera_us)
            self.rate_ppm = self.rate_ppm if rate is None else rate
        return None


@dataclass(frozen=True, slots=True)
class _Report:
    ntp_us: int
    rtp: int


class _SenderReports:
    """The camera's wall clock for an RTP time, from its RTCP sender reports.

    The camera's RTP clock (its crystal) is measured against its wall clock over the reports
    since that clock last stepped or the RTP timeline restarted.
    """

    __slots__ = ("_clock_rate", "_fitted", "_max_rate", "_reports", "_us_per_tick")

    def __init__(self, max_rate_ppm: float) -> None:
        self._max_rate = max_rate_ppm * 1e-6
        self._reports: deque[_Report] = deque(maxlen=32)
        self._clock_rate = 0
        self._us_per_tick = 0.0
        self._fitted = False

    @property
    def clock_rate(self) -> int:
        return self._clock_rate

    def __bool__(self) -> bool:
        return bool(self._reports)

    def add(self, ntp_us: int, rtp: int, clock_rate: int) -> None:
        report = _Report(ntp_us, rtp)
        if clock_rate != self._clock_rate or not self._continues(report):
            self._reports.clear()
            self._clock_rate = clock_rate
            self._us_per_tick, self._fitted = 1e6 / clock_rate, False
        self._reports.append(report)
        first = self._reports[0]
        span_us = ntp_us - first.ntp_us
        if span_us >= _SR_MIN_FIT_US:
            self._us_per_tick, self._fitted = span_us / _signed32(rtp - first.rtp), True

    def _continues(self, report: _Report) -> bool:
        """Whether `report` lies on the line of those before it."""
        if not self._reports:
            return False
        last = self._reports[-1]
        ticks = _signed32(report.rtp - last.rtp)
        predicted = ticks * self._us_per_tick
        slack = _SR_STEP_US + (0.0 if self._fitted else abs(predicted) * self._max_rate)
        return ticks > 0 and abs(report.ntp_us - last.ntp_us - predicted) <= slack

    def clear(self) -> None:
        self._reports.clear()

    def camera_us(self, ticks: int) -> float | None:
        if not self._reports:
            return None
        last = self._reports[-1]
        delta = _signed32(ticks - last.rtp)
        if abs(delta) > _SR_REACH_TICKS:
            return None
        return last.ntp_us + delta * self._us_per_tick


class Stamper:
    """Stamps one stream's frames; one per stream, kept across reconnects (see `reset`)."""

    def __init__(self, config: StamperConfig | None = None, first_seq: int = 0) -> None:
        self._cfg = config or StamperConfig()
        self._next_seq = first_seq
        self._last_stamp: int | None = None
        self._frames = self._reanchors = self._pts_missing = 0
        self._clamped = self._wraps = self._unsynced = self._sender_reports = 0
        self._last_reason: ReanchorReason | None = None
        self._pending: ReanchorReason = "first"
        self._drift: float | None = None
        self._gaps: deque[int] = deque(maxlen=self._cfg.jitter_window)
        self._steps_us: deque[float] = deque(maxlen=9)  # recent PTS steps: the nominal cadence
        self._rate_ppm: float | None = None  # the camera's crystal outlives an anchor
        # The PTS timeline of the current connection.
        self._time_base: Fraction | None = None
        self._us_per_pts = 0.0
        self._last_raw: int | None = None
        self._last_arrival = 0
        self._wrap_offset = 0
        self._anchor: _ArrivalAnchor | None = None
        # Sender reports.
        self._srs = _SenderReports(self._cfg.max_rate_ppm)
        self._sr_window = _Window(self._cfg.jitter_window)
        self._sr_dirty = False
        self._sr_mode = False
        self._ticks_per_pts = 1.0
        self._camera_offset: float | None = None

    def reset(self) -> None:
        """A new connection: keep seq and monotonicity, drop the anchor and the PTS timeline."""
        self._drop_anchor()
        self._last_raw = None
        self._time_base = None
        self._pending = "reset"
        self._srs.clear()
        self._sr_mode = False
        self._camera_offset = None

    def sender_report(self, ntp_unix_us: int, rtp_timestamp: int, clock_rate: int = 90000) -> None:
        """An RTCP sender report: camera wall time `ntp_unix_us` at RTP time `rtp_timestamp`.

        `rtp_timestamp` must be on the timeline of the PTS given to `stamp` (modulo 2**32), and
        `clock_rate` is the RTP clock in ticks per second.
        """
        if clock_rate <= 0:
            raise StampError(f"RTP clock rate must be positive, got {clock_rate}")
        self._srs.add(ntp_unix_us, rtp_timestamp, clock_rate)
        self._sender_reports += 1
        self._sr_dirty = True
        self._update_ticks_per_pts()

    def stamp(self, pts: int | None, time_base: Fraction, arrival_us: int, synced: bool) -> Stamp:
        """Stamp a frame that arrived at `arrival_us` (agent clock, UTC epoch µs)."""
        if time_base <= 0:
            raise StampError(f"time base must be positive, got {time_base}")
        reason: ReanchorReason | None = None
        if pts is None:
            self._pts_missing += 1
            candidate = self._extrapolate(arrival_us)
        else:
            candidate, reason = self._stamp_pts(pts, time_base, arrival_us)
        self._frames += 1
        if not synced:
            self._unsynced += 1
        if reason is not None:
            self._last_reason = reason
            if reason != "first":
                self._reanchors += 1
        capture = min(int(candidate), arrival_us)
        if self._last_stamp is not None and capture <= self._last_stamp:
            capture = self._last_stamp + 1
            self._clamped += 1
        self._last_stamp = capture
        self._track_gap(arrival_us - capture)
        seq = self._next_seq
        self._next_seq += 1
        return Stamp(seq=seq, capture_us=capture, synced=synced, reanchored=reason is not None)

    def _extrapolate(self, arrival_us: int) -> float:
        if self._anchor is None or self._last_stamp is None or not self._steps_us:
            return arrival_us
        return self._last_stamp + statistics.median(self._steps_us)

    def _drop_anchor(self) -> None:
        if self._anchor is not None and self._anchor.rate_ppm is not None:
            self._rate_ppm = self._anchor.rate_ppm
        self._anchor = None
        self._sr_window = _Window(self._cfg.jitter_window)

    def _stamp_pts(
        self, pts: int, time_base: Fraction, arrival_us: int
    ) -> tuple[float, ReanchorReason | None]:
        reason, paced = self._unwrap(pts, time_base, arrival_us)
        u = pts + self._wrap_offset
        if self._anchor is not None and reason is None:
            reason = self._anchor.update(u, arrival_us, paced)
        if reason is not None:
            self._drop_anchor()
        if self._anchor is None:
            reason = reason or self._pending
            self._anchor = _ArrivalAnchor(self._cfg, u, arrival_us, self._us_per_pts)
        arrival_stamp = self._anchor.stamp_at(u)
        sr_stamp = self._sr_stamp(u, arrival_us, arrival_stamp, paced)
        if (sr_stamp is not None) != self._sr_mode:
            self._sr_mode = sr_stamp is not None
            if reason is None or reason in ("drift_ahead", "drift_behind"):
                reason = "sr_start" if self._sr_mode else "sr_stop"  # only the clock changed
        elif self._sr_mode and reason in ("drift_ahead", "drift_behind"):
            reason = None  # the arrival anchor moved, but stamps stay on the camera's clock
        return (arrival_stamp if sr_stamp is None else sr_stamp), reason

    def _unwrap(
        self, pts: int, time_base: Fraction, arrival_us: int
    ) -> tuple[ReanchorReason | None, bool]:
        """Follow the PTS timeline: why it broke, if it did, and whether the frame came paced."""
        cfg = self._cfg
        reason: ReanchorReason | None = None
        paced = True
        if time_base != self._time_base:
            if self._time_base is not None:
                reason = "time_base"
            self._time_base = time_base
            self._us_per_pts = float(time_base * 1_000_000)
            self._last_raw = None
            self._update_ticks_per_pts()
        if self._last_raw is not None:
            delta = pts - self._last_raw
            wrapped = _signed32(delta)
            if wrapped != delta and abs(wrapped) * self._us_per_pts <= cfg.max_pts_jump_s * 1e6:
                self._wrap_offset += wrapped - delta  # an RTP timestamp wrapped: continuation
                self._wraps += 1
                delta = wrapped
            step = delta * self._us_per_pts
            followed = arrival_us - self._last_arrival
            # A frame that came much sooner after the last than the camera sent it is in a burst.
            paced = 2 * followed >= step
            if step < -cfg.max_pts_backstep_s * 1e6 or (
                step > cfg.max_pts_jump_s * 1e6 and step - followed > cfg.max_pts_jump_s * 1e6
            ):
                # Reports on the old timeline now map PTS far from arrival: they go unused.
                reason = "pts_jump"
            elif 0 < step <= _NOMINAL_MAX_STEP_US:
                self._steps_us.append(step)
        self._last_raw, self._last_arrival = pts, arrival_us
        return reason, paced

    def _update_ticks_per_pts(self) -> None:
        if self._time_base is not None and self._srs.clock_rate:
            self._ticks_per_pts = float(self._time_base * self._srs.clock_rate)

    def _camera_line(self, u: int) -> float | None:
        ticks = u if self._ticks_per_pts == 1.0 else round(u * self._ticks_per_pts)
        return self._srs.camera_us(ticks)

    def _sr_stamp(self, u: int, arrival_us: int, arrival_stamp: float, paced: bool) -> float | None:
        """The stamp on the camera's wall clock, or None when there is no trustworthy one."""
        camera = self._camera_line(u) if self._srs else None
        if camera is None:
            self._camera_offset = None
            return None
        self._camera_offset = arrival_stamp - camera
        if abs(self._camera_offset) > self._cfg.reanchor_bound_us:
            return None  # one of the clocks is wrong; the agent's is the one we answer for
        if self._sr_dirty:
            self._sr_window.rebase(self._camera_line)
            self._sr_dirty = False
        self._sr_window.push(u, arrival_us, arrival_us - camera, paced)
        # Never ahead of arrival: where the camera's clock runs ahead, shift down by as much.
        return camera + min(0.0, self._sr_window.minimum)

    def _track_gap(self, gap: int) -> None:
        self._gaps.append(gap)
        alpha = 1.0 / self._cfg.jitter_window
        self._drift = gap if self._drift is None else self._drift + alpha * (gap - self._drift)

    @property
    def stats(self) -> StamperStats:
        gaps = sorted(self._gaps)
        jitter = gaps[(len(gaps) * 95) // 100] - gaps[0] if gaps else None
        anchor_rate = None if self._anchor is None else self._anchor.rate_ppm
        offset = self._camera_offset
        return StamperStats(
            frames=self._frames,
            reanchors=self._reanchors,
            last_reanchor_reason=self._last_reason,
            drift_us=None if self._drift is None else round(self._drift),
            jitter_us=jitter,
            rate_ppm=self._rate_ppm if anchor_rate is None else anchor_rate,
            camera_offset_us=None if offset is None else round(offset),
            sr_anchored=self._sr_mode,
            sender_reports=self._sender_reports,
            pts_missing=self._pts_missing,
            clamped=self._clamped,
            wraps=self._wraps,
            unsynced=self._unsynced,
        )
