"""Frame stamper: a capture time (UTC epoch µs) and a sequence number for every frame, at ingest.

Sans-IO: time is passed in, nothing here reads a clock. The stamp follows the stream's PTS (the
camera's cadence) anchored to the agent's clock by the *lowest-delay* rule (lowest_delay.py).
Where the camera sends RTCP sender reports (sender_reports.py), PTS is anchored to the camera's
wall clock instead, as long as that clock agrees with the agent's within the re-anchor bound.
This module follows the PTS timeline (wraps, jumps, time base changes), picks the clock, keeps
stamps strictly increasing and reports what happened.

Stamps follow packet (decode) order: with B-frames a reordered frame gets previous + 1 µs.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from agent.frames import Stamp
from agent.stamping.lowest_delay import RATE_MIN_POINTS, AnchorLimits, ArrivalAnchor, Window
from agent.stamping.sender_reports import SenderReports, signed32

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

_NOMINAL_MAX_STEP_US = 1_000_000  # longer PTS steps are gaps, not the frame interval


class StampError(ValueError):
    """Input the stamper cannot use (a non-positive time base or clock rate, a bad config)."""


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
        if self.rate_blocks < RATE_MIN_POINTS:
            raise StampError(
                f"StamperConfig.rate_blocks must be at least {RATE_MIN_POINTS}, "
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


class Stamper:
    """Stamps one stream's frames; one per stream, kept across reconnects (see `reset`)."""

    def __init__(self, config: StamperConfig | None = None, first_seq: int = 0) -> None:
        cfg = self._cfg = config or StamperConfig()
        # Per-frame limits, in µs, worked out once.
        self._limits = AnchorLimits(
            bound_us=cfg.reanchor_bound_us,
            settle_us=cfg.settle_s * 1e6,
            block_frames=cfg.jitter_window,
            rate_blocks=cfg.rate_blocks,
            max_rate_ppm=cfg.max_rate_ppm,
        )
        self._max_jump_us = cfg.max_pts_jump_s * 1e6
        self._max_backstep_us = cfg.max_pts_backstep_s * 1e6
        self._drift_alpha = 1.0 / cfg.jitter_window
        self._first_seq = self._next_seq = first_seq  # frames stamped: the difference
        self._last_stamp: int | None = None
        self._reanchors = self._pts_missing = 0
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
        self._anchor: ArrivalAnchor | None = None
        # Sender reports.
        self._srs = SenderReports(self._cfg.max_rate_ppm)
        self._sr_window = Window(self._cfg.jitter_window)
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
        # The time base in use was checked when it came in: skip a Fraction comparison a frame.
        if time_base is not self._time_base and not time_base > 0:
            raise StampError(f"time base must be positive, got {time_base}")
        reason: ReanchorReason | None = None
        if pts is None:
            self._pts_missing += 1
            candidate = self._extrapolate(arrival_us)
        else:
            candidate, reason = self._stamp_pts(pts, time_base, arrival_us)
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
        gap = arrival_us - capture
        self._gaps.append(gap)
        drift = self._drift
        self._drift = gap if drift is None else drift + self._drift_alpha * (gap - drift)
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
        self._sr_window = Window(self._cfg.jitter_window)

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
            self._anchor = ArrivalAnchor(self._limits, u, arrival_us, self._us_per_pts)
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
        reason: ReanchorReason | None = None
        paced = True
        if time_base is not self._time_base:
            reason = self._new_time_base(time_base)
        if self._last_raw is not None:
            delta = pts - self._last_raw
            wrapped = signed32(delta)
            if wrapped != delta and abs(wrapped) * self._us_per_pts <= self._max_jump_us:
                self._wrap_offset += wrapped - delta  # an RTP timestamp wrapped: continuation
                self._wraps += 1
                delta = wrapped
            step = delta * self._us_per_pts
            followed = arrival_us - self._last_arrival
            # A frame that came much sooner after the last than the camera sent it is in a burst.
            paced = 2 * followed >= step
            if step < -self._max_backstep_us or (
                step > self._max_jump_us and step - followed > self._max_jump_us
            ):
                # Reports on the old timeline now map PTS far from arrival: they go unused.
                reason = "pts_jump"
            elif 0 < step <= _NOMINAL_MAX_STEP_US:
                self._steps_us.append(step)
        self._last_raw, self._last_arrival = pts, arrival_us
        return reason, paced

    def _new_time_base(self, time_base: Fraction) -> ReanchorReason | None:
        """Take `time_base` (not the object in use); "time_base" when its value changed."""
        if time_base == self._time_base:
            self._time_base = time_base  # the same value: identity suffices from now on
            return None
        reason: ReanchorReason | None = None if self._time_base is None else "time_base"
        self._time_base = time_base
        self._us_per_pts = float(time_base * 1_000_000)
        self._last_raw = None
        self._update_ticks_per_pts()
        return reason

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

    @property
    def stats(self) -> StamperStats:
        gaps = sorted(self._gaps)
        jitter = gaps[(len(gaps) * 95) // 100] - gaps[0] if gaps else None
        anchor_rate = None if self._anchor is None else self._anchor.rate_ppm
        offset = self._camera_offset
        return StamperStats(
            frames=self._next_seq - self._first_seq,
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
