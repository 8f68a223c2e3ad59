"""Frame stamper on generated PTS/arrival sequences: jitter, bursts, drift, wraps, jumps, resets.

A simulated 15 fps camera: true capture times on the agent's clock, PTS from the camera's own
90 kHz clock (which may drift), arrival = capture + a network delay of 5-80 ms (gamma).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from itertools import pairwise

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.frames import Stamp
from agent.stamping.stamper import Stamper, StamperConfig, StampError

TB = Fraction(1, 90000)
FPS = 15
FRAME_US = 1_000_000 / FPS
T0 = 1_760_000_000_000_000  # a UTC epoch in µs
D_MIN = 5_000  # the network's lowest delay
WARMUP = 128  # frames before the lowest-delay anchor has seen enough arrivals
# With 5-80 ms of jitter a window's lowest delay can exceed the network's by a few ms, and a
# drifting camera (100 ppm) can move the lowest delay earlier by up to 1 ms before a window sees it.
LATE_SLACK, EARLY_SLACK = 8_000, 1_000


@dataclass
class Seq:
    capture: np.ndarray  # true capture time on the agent's clock, µs
    pts: list[int | None]
    arrival: np.ndarray  # agent clock, µs


def delivered(arrival: np.ndarray) -> np.ndarray:
    """In order (TCP, or a jitter buffer): a frame is not handed over before the one before it."""
    steps = np.arange(len(arrival))  # reading a packet takes at least 1 µs
    return np.maximum.accumulate(arrival - steps) + steps


def camera(
    seconds: float,
    *,
    seed: int = 1,
    ppm: float = 0.0,
    pts0: int = 123_456,
    jitter: bool = True,
) -> Seq:
    """Frames of a camera whose clock runs `ppm` fast, through a jittery network."""
    rng = np.random.default_rng(seed)
    n = int(seconds * FPS)
    capture = T0 + np.arange(n) * FRAME_US
    ticks = np.round((capture - T0) * (1 + ppm * 1e-6) * 0.09).astype(np.int64)
    delay = D_MIN + (np.minimum(rng.gamma(2.0, 10_000.0, n), 75_000) if jitter else 0)
    arrival = delivered(np.round(capture + delay).astype(np.int64))
    return Seq(capture, [pts0 + int(t) for t in ticks], arrival)


def stall(seq: Seq, at_s: float, seconds: float) -> Seq:
    """The network stalls: frames sent meanwhile arrive together when it resumes."""
    start, end = T0 + at_s * 1e6, T0 + (at_s + seconds) * 1e6
    held = (seq.arrival >= start) & (seq.capture < end)
    arrival = seq.arrival.copy()
    arrival[held] = np.maximum(arrival[held], end + np.arange(held.sum()) * 200)
    return replace(seq, arrival=delivered(arrival))


def run(seq: Seq, stamper: Stamper | None = None) -> tuple[list[Stamp], Stamper]:
    stamper = stamper or Stamper()
    stamps = [
        stamper.stamp(p, TB, a, True) for p, a in zip(seq.pts, seq.arrival.tolist(), strict=True)
    ]
    return stamps, stamper


def captures(stamps: Sequence[Stamp]) -> np.ndarray:
    return np.array([s.capture_us for s in stamps], dtype=np.int64)


def reanchored_at(stamps: Sequence[Stamp]) -> list[int]:
    return [i for i, s in enumerate(stamps) if s.reanchored]


def assert_well_formed(stamps: Sequence[Stamp], arrival: np.ndarray, first_seq: int = 0) -> None:
    got = captures(stamps)
    assert [s.seq for s in stamps] == list(range(first_seq, first_seq + len(stamps)))
    assert (np.diff(got) > 0).all(), "stamps must be strictly increasing"
    assert (got <= arrival).all(), "a frame cannot have been captured after it arrived"


def assert_anchored(
    got: np.ndarray, capture: np.ndarray, frames: slice = slice(WARMUP, None)
) -> None:
    """Stamps are capture + the network's lowest delay, within the anchor's slack."""
    offset = got[frames] - capture[frames]
    assert offset.min() > D_MIN - EARLY_SLACK
    assert offset.max() < D_MIN + LATE_SLACK


def spacing_error(times: np.ndarray, capture: np.ndarray) -> np.ndarray:
    error: np.ndarray = np.abs(np.diff(times) - np.diff(capture))
    return error


# -- jitter, bursts, drift --------------------------------------------------------------------


def test_jitter_is_absorbed_and_spacing_follows_the_camera() -> None:
    seq = camera(300)
    stamps, stamper = run(seq)
    got = captures(stamps)
    assert_well_formed(stamps, seq.arrival)

    stamp_err = spacing_error(got, seq.capture)
    arrival_err = spacing_error(seq.arrival, seq.capture)
    assert np.percentile(stamp_err[WARMUP:], 99) < 2_000
    assert np.percentile(arrival_err, 99) > 30_000  # what stamping at arrival would give
    assert np.percentile(arrival_err, 50) > 20 * np.percentile(stamp_err, 50)

    assert_anchored(got, seq.capture)
    stats = stamper.stats
    assert stats.reanchors == 0 and stats.last_reanchor_reason == "first"
    assert stats.clamped == 0 and stats.frames == len(stamps)
    assert stamps[0].reanchored and not any(s.reanchored for s in stamps[1:])


def test_stats_report_delay_and_jitter() -> None:
    seq = camera(120)
    stamps, stamper = run(seq)
    gap = seq.arrival - captures(stamps)
    stats = stamper.stats
    assert stats.drift_us is not None and stats.jitter_us is not None
    assert abs(stats.drift_us - gap[-200:].mean()) < 5_000
    assert 25_000 < stats.jitter_us < 75_000  # gamma(2, 10 ms): p95 - min is about 45 ms

    stats = run(camera(20, jitter=False))[1].stats
    assert stats.jitter_us is not None and stats.jitter_us <= 1
    assert stats.drift_us is not None and abs(stats.drift_us) <= 1


def test_without_jitter_stamps_are_capture_plus_delay_exactly() -> None:
    seq = camera(30, jitter=False)
    stamps, _ = run(seq)
    assert np.abs(captures(stamps) - (seq.capture + D_MIN)).max() <= 1


@pytest.mark.parametrize("seconds", [2.0, 10.0])
def test_a_stall_and_its_burst_do_not_move_the_anchor(seconds: float) -> None:
    seq = stall(camera(120, seed=3), at_s=60, seconds=seconds)
    stamps, stamper = run(seq)
    got = captures(stamps)
    assert_well_formed(stamps, seq.arrival)
    burst = (seq.arrival - seq.capture) > 100_000  # beyond any jitter
    assert burst.sum() >= seconds * FPS - 2  # the scenario holds back what it should

    assert stamper.stats.reanchors == 0
    assert np.percentile(spacing_error(got, seq.capture)[WARMUP:], 99) < 2_000
    assert_anchored(got, seq.capture)  # the burst's frames too


@pytest.mark.parametrize("ppm", [100.0, -100.0])
def test_camera_clock_drift_is_tracked(ppm: float) -> None:
    seq = camera(600, ppm=ppm, seed=5)
    stamps, stamper = run(seq)
    got = captures(stamps)
    assert_well_formed(stamps, seq.arrival)
    stats = stamper.stats
    assert stats.reanchors == 0
    assert stats.rate_ppm is not None and abs(stats.rate_ppm - ppm) < 25
    # 100 ppm over 10 min is 60 ms: tracked, the offset stays at the lowest delay throughout.
    assert_anchored(got, seq.capture)
    assert np.percentile(spacing_error(got, seq.capture)[WARMUP:], 99) < 2_000


# -- PTS discontinuities ------------------------------------------------------------------------


def test_32_bit_rtp_wrap_is_continuation() -> None:
    wrap = 1 << 32
    seq = camera(120, pts0=wrap - 60 * 90_000)
    seq.pts = [None if p is None else p % wrap for p in seq.pts]
    stamps, stamper = run(seq)
    got = captures(stamps)
    assert_well_formed(stamps, seq.arrival)
    stats = stamper.stats
    assert stats.wraps == 1 and stats.reanchors == 0
    at = next(i for i in range(1, len(seq.pts)) if seq.pts[i] < seq.pts[i - 1])  # type: ignore[operator]
    assert abs((got[at] - got[at - 1]) - FRAME_US) < 1_000


def test_camera_reset_to_pts_zero_reanchors_once() -> None:
    seq = camera(120)
    cut = 60 * FPS
    seq.pts = [p if i < cut else p - seq.pts[cut] for i, p in enumerate(seq.pts)]  # type: ignore[operator]
    stamps, stamper = run(seq)
    got = captures(stamps)
    assert_well_formed(stamps, seq.arrival)
    assert reanchored_at(stamps) == [0, cut]
    stats = stamper.stats
    assert stats.reanchors == 1 and stats.last_reanchor_reason == "pts_jump"
    after = slice(cut + WARMUP, None)
    assert_anchored(got, seq.capture, after)


def test_pts_jump_forward_that_arrival_does_not_follow_reanchors() -> None:
    seq = camera(120)
    cut = 50 * FPS
    seq.pts = [p if i < cut else p + 3600 * 90_000 for i, p in enumerate(seq.pts)]  # type: ignore[operator]
    stamps, stamper = run(seq)
    assert_well_formed(stamps, seq.arrival)
    assert reanchored_at(stamps) == [0, cut]
    assert stamper.stats.last_reanchor_reason == "pts_jump"
    # Not an hour ahead: the new anchor is the agent's clock again.
    assert abs(stamps[-1].capture_us - seq.capture[-1]) < 100_000


def test_an_outage_with_pts_continuing_keeps_the_anchor() -> None:
    seq = camera(120)
    keep = [i for i in range(len(seq.pts)) if not 50 * FPS <= i < 70 * FPS]  # 20 s lost
    seq = Seq(seq.capture[keep], [seq.pts[i] for i in keep], seq.arrival[keep])
    stamps, stamper = run(seq)
    got = captures(stamps)
    assert stamper.stats.reanchors == 0
    assert_anchored(got, seq.capture)


def test_reordered_pts_stay_strictly_increasing_without_reanchor() -> None:
    seq = camera(30, jitter=False)
    order = [0]  # decode order of I P B B P B B ...: each P is sent before the two B before it
    for i in range(1, len(seq.pts) - 2, 3):
        order += [i + 2, i, i + 1]
    seq = Seq(seq.capture[order], [seq.pts[i] for i in order], np.sort(seq.arrival[order]))
    stamps, stamper = run(seq)
    assert_well_formed(stamps, seq.arrival)
    assert stamper.stats.reanchors == 0
    assert stamper.stats.clamped > 0


def test_time_base_change_reanchors() -> None:
    stamper = Stamper()
    stamper.stamp(0, TB, T0, True)
    stamper.stamp(6000, TB, T0 + 66_667, True)
    stamp = stamper.stamp(200, Fraction(1, 1000), T0 + 133_333, True)
    assert stamp.reanchored and stamper.stats.last_reanchor_reason == "time_base"


# -- the agent's clock ----------------------------------------------------------------------------


def test_agent_clock_step_forward_reanchors_after_settling() -> None:
    seq = camera(120)
    cut = 60 * FPS
    seq.arrival[cut:] += 2_000_000
    stamps, stamper = run(seq)
    got = captures(stamps)
    assert_well_formed(stamps, seq.arrival)
    at = reanchored_at(stamps)
    assert len(at) == 2 and stamper.stats.last_reanchor_reason == "drift_behind"
    # At the first frame that arrived settle_s after the step: no burst lasts that long.
    settle_us = StamperConfig().settle_s * 1e6
    assert seq.arrival[at[1] - 1] - seq.arrival[cut] < settle_us
    assert seq.arrival[at[1]] - seq.arrival[cut] >= settle_us
    after = slice(at[1] + WARMUP, None)
    assert_anchored(got, seq.capture + 2_000_000, after)


def test_agent_clock_step_back_reanchors_at_once_and_stays_monotonic() -> None:
    seq = camera(120)
    cut = 60 * FPS
    seq.arrival[cut:] -= 2_000_000
    stamps, stamper = run(seq)
    got = captures(stamps)
    assert reanchored_at(stamps) == [0, cut]
    assert stamper.stats.last_reanchor_reason == "drift_ahead"
    assert (np.diff(got) > 0).all()
    # Until the clock catches up with the stamps already given, they advance by 1 µs.
    assert 2 * FPS - 3 <= stamper.stats.clamped <= 2 * FPS + 3
    assert_anchored(got, seq.capture - 2_000_000, slice(cut + 2 * FPS + WARMUP, None))


def test_small_clock_step_is_followed_without_reanchor() -> None:
    seq = camera(120)
    cut = 60 * FPS
    seq.arrival[cut:] += 200_000  # within the re-anchor bound
    stamps, stamper = run(seq)
    got = captures(stamps)
    assert stamper.stats.reanchors == 0
    after = slice(cut + 20 * FPS, None)  # a few windows later
    assert_anchored(got, seq.capture + 200_000, after)


def test_synced_flag_travels_with_the_stamp() -> None:
    stamper = Stamper()
    flags = [True, False, False, True]
    stamps = [stamper.stamp(i * 6000, TB, T0 + i * 66_667, f) for i, f in enumerate(flags)]
    assert [s.synced for s in stamps] == flags
    assert stamper.stats.unsynced == 2


# -- missing PTS and reconnects -------------------------------------------------------------------


def test_missing_pts_at_start_and_midstream() -> None:
    seq = camera(30, jitter=False)
    seq.pts[0] = seq.pts[1] = seq.pts[2] = None
    seq.pts[100] = None
    stamps, stamper = run(seq)
    got = captures(stamps)
    assert_well_formed(stamps, seq.arrival)
    assert (got[:3] == seq.arrival[:3]).all()  # nothing to extrapolate from: arrival
    assert abs((got[100] - got[99]) - FRAME_US) <= 1  # the nominal cadence
    assert stamper.stats.pts_missing == 4
    assert reanchored_at(stamps) == [3]


def test_reset_keeps_seq_and_monotonicity() -> None:
    stamper = Stamper(first_seq=1000)
    first = camera(20, seed=7)
    stamps, _ = run(first, stamper)
    stamper.reset()
    # Reconnected 100 ms later; the camera starts a new timeline and its first packet has no PTS.
    second = camera(20, seed=8, pts0=0)
    second.arrival += int(first.arrival[-1] - T0) + 100_000
    second.capture += first.arrival[-1] - T0 + 100_000
    second.pts[0] = None
    more, _ = run(second, stamper)
    every = stamps + more
    assert_well_formed(every, np.concatenate([first.arrival, second.arrival]), first_seq=1000)
    assert reanchored_at(more) == [1]
    stats = stamper.stats
    assert stats.reanchors == 1 and stats.last_reanchor_reason == "reset"
    assert more[0].capture_us == second.arrival[0]  # no anchor yet after reset: arrival


# -- sender reports -------------------------------------------------------------------------------


def with_sender_reports(
    seq: Seq,
    stamper: Stamper,
    *,
    camera_behind_us: int | np.ndarray,
    ppm: float,
    from_frame: int = 0,
) -> list[Stamp]:
    """Stamp `seq`, feeding an SR every 5 s from `from_frame` on, as RTCP interleaves them.

    `camera_behind_us` (per frame, or one for all) is how far the camera's wall clock is behind
    the agent's.
    """
    behind = np.broadcast_to(camera_behind_us, len(seq.pts))
    stamps = []
    for i, (p, a) in enumerate(zip(seq.pts, seq.arrival.tolist(), strict=True)):
        if i >= from_frame and (i - from_frame) % (5 * FPS) == 0:
            t = float(seq.capture[i]) + 20_000  # sent between two frames
            rtp = seq.pts[0] + round((t - T0) * (1 + ppm * 1e-6) * 0.09)  # type: ignore[operator]
            stamper.sender_report(round(t) - int(behind[i]), rtp % (1 << 32))
        stamps.append(stamper.stamp(p, TB, a, True))
    return stamps


@pytest.mark.parametrize("ppm", [100.0, -100.0])
def test_sender_reports_anchor_to_the_camera_wall_clock(ppm: float) -> None:
    seq = camera(300, ppm=ppm, seed=11)
    stamper = Stamper()
    behind = 3_000  # the camera's clock is 3 ms behind the agent's
    stamps = with_sender_reports(seq, stamper, camera_behind_us=behind, ppm=ppm)
    got = captures(stamps)
    assert_well_formed(stamps, seq.arrival)
    error = np.abs(got - (seq.capture - behind))
    assert error.max() < 1_000
    # From the second report on, the camera's RTP clock is measured against its wall clock.
    assert error[5 * FPS + 1 :].max() < 50
    stats = stamper.stats
    assert stats.sr_anchored and stats.reanchors == 0 and stats.sender_reports == 60
    # Agent clock minus camera clock, plus the lowest delay the arrival anchor sees.
    assert stats.camera_offset_us is not None
    assert behind + D_MIN - EARLY_SLACK < stats.camera_offset_us < behind + D_MIN + LATE_SLACK


def test_sender_reports_arriving_later_switch_clocks_once() -> None:
    seq = camera(120, seed=12)
    stamper = Stamper()
    start = 20 * FPS
    stamps = with_sender_reports(seq, stamper, camera_behind_us=0, ppm=0, from_frame=start)
    got = captures(stamps)
    assert_well_formed(stamps, seq.arrival)
    assert reanchored_at(stamps) == [0, start]
    assert stamper.stats.last_reanchor_reason == "sr_start"
    assert np.abs(got[start:] - seq.capture[start:]).max() < 1_000


def test_camera_clock_ahead_never_puts_stamps_ahead_of_arrival() -> None:
    seq = camera(120, seed=13, ppm=100)
    behind = np.full(len(seq.pts), -20_000)
    behind[60 * FPS :] = -10_000  # the camera's NTP steps its clock back 10 ms
    stamper = Stamper()
    stamps = with_sender_reports(seq, stamper, camera_behind_us=behind, ppm=100)
    got = captures(stamps)
    assert_well_formed(stamps, seq.arrival)
    assert stamper.stats.sr_anchored and stamper.stats.reanchors == 0
    # Shifted down to the lowest delay, as without reports, across the camera's clock step.
    assert_anchored(got, seq.capture)
    assert np.percentile(spacing_error(got, seq.capture)[WARMUP:], 99) < 2_000
    offset = stamper.stats.camera_offset_us  # now 10 ms ahead
    assert offset is not None
    assert -10_000 + D_MIN - EARLY_SLACK < offset < -10_000 + D_MIN + LATE_SLACK


def test_camera_clock_far_off_is_not_trusted_but_reported() -> None:
    seq = camera(60, seed=14)
    stamper = Stamper()
    hour = 3_600_000_000
    stamps = with_sender_reports(seq, stamper, camera_behind_us=hour, ppm=0)
    got = captures(stamps)
    assert_well_formed(stamps, seq.arrival)
    stats = stamper.stats
    assert not stats.sr_anchored and stats.reanchors == 0
    assert stats.camera_offset_us is not None and abs(stats.camera_offset_us - hour) < 10_000
    assert_anchored(got, seq.capture)


def test_after_a_pts_jump_only_new_sender_reports_count() -> None:
    seq = camera(60, seed=15, ppm=100)
    cut, report = 30 * FPS + 10, 35 * FPS  # the reboot, and the first report after it
    # The camera reboots onto a new RTP timeline: its old reports no longer describe it.
    seq.pts = [p if i < cut else 1000 + p - seq.pts[cut] for i, p in enumerate(seq.pts)]  # type: ignore[operator]
    stamper = Stamper()
    stamps = []
    for i, (p, a) in enumerate(zip(seq.pts, seq.arrival.tolist(), strict=True)):
        if i % (5 * FPS) == 0:  # a report at each fifth second's frame
            stamper.sender_report(int(seq.capture[i]), p)  # type: ignore[arg-type]
        stamps.append(stamper.stamp(p, TB, a, True))
        if i == cut:
            assert stamps[-1].reanchored and not stamper.stats.sr_anchored
            assert stamper.stats.last_reanchor_reason == "pts_jump"
    assert reanchored_at(stamps) == [0, cut, report]
    assert stamper.stats.last_reanchor_reason == "sr_start"
    error = np.abs(captures(stamps) - seq.capture)
    assert error[:cut].max() < 1_000 and error[report:].max() < 1_000
    # The camera's rate is measured again from the new timeline's reports only.
    assert error[5 * FPS + 1 : cut].max() < 50 and error[report + 5 * FPS + 1 :].max() < 50


# -- invariants over arbitrary input --------------------------------------------------------------

pts_steps = st.one_of(
    st.none(),
    st.integers(0, 12_000),  # cadence and jitter
    st.integers(-20_000, 0),  # reordering
    st.integers(-(1 << 33), 1 << 33),  # jumps and wraps
)
events = st.lists(
    st.one_of(
        st.tuples(st.just("frame"), pts_steps, st.integers(1, 3_000_000)),
        st.tuples(st.just("sr"), st.integers(-(1 << 32), 1 << 32), st.integers(-(10**9), 10**9)),
        st.tuples(st.just("reset"), st.none(), st.none()),
        st.tuples(st.just("time_base"), st.none(), st.none()),
    ),
    max_size=150,
)
Plan = list[tuple[str, int | None, int | None]]


def replay(plan: Plan, clock_back_every: int = 0) -> list[tuple[int, int]]:
    """Replay frames, sender reports, reconnects and time-base changes: (stamp, arrival) each.

    With `clock_back_every`, the agent's clock steps back every so many frames.
    """
    stamper = Stamper(first_seq=7)
    pts, arrival, time_base = 0, T0, TB
    frames: list[tuple[int, int]] = []
    for kind, a, b in plan:
        if kind == "reset":
            stamper.reset()
        elif kind == "time_base":
            time_base = Fraction(1, 1000) if time_base == TB else TB
        elif kind == "sr":
            assert a is not None and b is not None
            stamper.sender_report(arrival + b, (pts + a) % (1 << 32))
        else:
            assert b is not None
            back = clock_back_every and len(frames) % clock_back_every == 0
            arrival += -b if back else b
            pts += a or 0
            stamp = stamper.stamp(None if a is None else pts, time_base, arrival, True)
            assert stamp.seq == 7 + len(frames)
            if frames:
                assert stamp.capture_us > frames[-1][0], "strictly increasing"
            frames.append((stamp.capture_us, arrival))
    assert stamper.stats.frames == len(frames)
    return frames


@settings(max_examples=200, deadline=None)
@given(events)
def test_invariants_with_increasing_arrival(plan: Plan) -> None:
    assert all(stamp <= arrival for stamp, arrival in replay(plan))


@settings(max_examples=100, deadline=None)
@given(events)
def test_invariants_when_the_agent_clock_goes_back(plan: Plan) -> None:
    frames = replay(plan, clock_back_every=3)
    # Only strict monotonicity can put a stamp past its arrival.
    for (prev, _), (stamp, arrival) in pairwise(frames):
        assert stamp <= arrival or stamp == prev + 1


# -- bad input ------------------------------------------------------------------------------------


def test_bad_input_is_a_clear_error() -> None:
    stamper = Stamper()
    with pytest.raises(StampError, match="time base"):
        stamper.stamp(0, Fraction(0), T0, True)
    with pytest.raises(StampError, match="clock rate"):
        stamper.sender_report(T0, 0, clock_rate=0)
    with pytest.raises(StampError, match="jitter_window"):
        StamperConfig(jitter_window=0)
    with pytest.raises(StampError, match="rate_blocks"):
        StamperConfig(rate_blocks=1)
    assert stamper.stats.frames == 0


def test_time_base_is_checked_by_value_whichever_object_carries_it() -> None:
    stamper = Stamper(first_seq=100)
    stamper.stamp(0, TB, T0, True)
    stamper.stamp(6000, Fraction(1, 90000), T0 + 66_667, True)  # equal value, new object
    assert stamper.stats.reanchors == 0 and stamper.stats.frames == 2
    with pytest.raises(StampError, match="time base"):
        stamper.stamp(12000, Fraction(-1, 90000), T0 + 133_333, True)
    assert stamper.stats.frames == 2
