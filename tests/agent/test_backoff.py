"""Backoff schedules (property tests) and the connection status record."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.ingest.backoff import (
    Backoff,
    BackoffError,
    ConnectionState,
    ConnectionStatus,
)

bases = st.floats(min_value=0.01, max_value=5.0)
factors = st.floats(min_value=1.0, max_value=100.0)
seeds = st.integers(min_value=0, max_value=2**32)
counts = st.integers(min_value=1, max_value=200)


@given(base=bases, factor=factors, seed=seeds, n=counts)
def test_full_jitter_stays_under_the_doubling_ceiling_and_the_cap(
    base: float, factor: float, seed: int, n: int
) -> None:
    cap = base * factor
    b = Backoff(base, cap, "full", random.Random(seed))
    for attempt in range(n):
        assert 0.0 <= b.next_delay() <= min(cap, base * 2.0**attempt)
    assert b.attempts == n


@given(base=bases, factor=factors, seed=seeds, n=counts)
def test_decorrelated_jitter_stays_between_base_and_cap_and_at_most_triples(
    base: float, factor: float, seed: int, n: int
) -> None:
    cap = base * factor
    b = Backoff(base, cap, "decorrelated", random.Random(seed))
    previous = base
    for _ in range(n):
        delay = b.next_delay()
        assert base <= delay <= cap
        assert delay <= 3.0 * previous + 1e-9
        previous = delay


@given(seed=seeds, n=counts, jitter=st.sampled_from(["full", "decorrelated"]))
def test_reset_starts_the_schedule_over(seed: int, n: int, jitter: str) -> None:
    b = Backoff(0.5, 15.0, jitter, random.Random(seed))  # type: ignore[arg-type]
    for _ in range(n):
        b.next_delay()
    b.reset()
    assert b.attempts == 0
    # Right after a reset the first delay is bounded as for a fresh schedule.
    assert b.next_delay() <= (0.5 if jitter == "full" else 1.5)


@given(seed=seeds, jitter=st.sampled_from(["full", "decorrelated"]))
def test_the_same_seed_gives_the_same_schedule(seed: int, jitter: str) -> None:
    def schedule() -> list[float]:
        b = Backoff(0.5, 15.0, jitter, random.Random(seed))  # type: ignore[arg-type]
        return [b.next_delay() for _ in range(20)]

    assert schedule() == schedule()


def test_the_schedule_grows_until_the_cap_and_stays_there() -> None:
    b = Backoff(0.5, 15.0, "decorrelated", random.Random(1))
    delays = [b.next_delay() for _ in range(300)]
    assert max(delays) == pytest.approx(15.0)  # reached: min(cap, ...) clamps exactly
    # It lives in the upper range (decorrelated jitter can fall back below the cap: mean ~7 s).
    assert sum(delays[-100:]) / 100 > 5.0
    full = Backoff(0.5, 15.0, "full", random.Random(1))
    assert all(full.next_delay() <= 15.0 for _ in range(2000))  # 2**2000 would overflow


@pytest.mark.parametrize(
    ("base", "cap", "jitter", "message"),
    [
        (0.0, 1.0, "full", "base must be > 0"),
        (2.0, 1.0, "full", r"cap \(1.0 s\) must be >= base \(2.0 s\)"),
        (0.5, 1.0, "linear", "jitter must be"),
    ],
)
def test_bad_parameters_are_refused_with_a_readable_error(
    base: float, cap: float, jitter: str, message: str
) -> None:
    with pytest.raises(BackoffError, match=message):
        Backoff(base, cap, jitter)  # type: ignore[arg-type]


def test_status_moves_only_when_state_or_reason_changes() -> None:
    status = ConnectionStatus(ConnectionState.CONNECTING, "opening", 100)
    assert status.moved(ConnectionState.CONNECTING, "opening", 200) is status
    streaming = status.moved(ConnectionState.STREAMING, "streaming", 300)
    assert (streaming.state, streaming.reason, streaming.since_us) == (
        "streaming",
        "streaming",
        300,
    )
    lost = streaming.moved(ConnectionState.BACKOFF, "lost: reset", 400)
    assert lost.moved(ConnectionState.BACKOFF, "unreachable: refused", 500).since_us == 500
