"""The agent's clock: adjtimex(2) read for real, the timedatectl fallback, the cached probe."""

from __future__ import annotations

import sys

import pytest

from agent.stamping.clock import (
    STA_UNSYNC,
    TIME_ERROR,
    ClockError,
    ClockSyncProbe,
    KernelClock,
    clock_synchronised,
    kernel_synchronised,
    parse_timedatectl,
    read_kernel_clock,
    read_timedatectl,
)

SYNCED = KernelClock(state=0, status=0x2001, maxerror_us=20_000)  # TIME_OK, PLL + NANO


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="adjtimex(2) is Linux's")
def test_kernel_clock_is_read_for_real() -> None:
    clock = read_kernel_clock()
    assert clock is not None  # the read's own wall clock agreed with Python's: layout is right
    assert 0 <= clock.state <= TIME_ERROR and clock.maxerror_us >= 0
    assert clock_synchronised() == kernel_synchronised(clock)


@pytest.mark.parametrize(
    ("clock", "synced"),
    [
        (SYNCED, True),
        (KernelClock(state=0, status=0x2001 | STA_UNSYNC, maxerror_us=20_000), False),
        (KernelClock(state=TIME_ERROR, status=0x2001, maxerror_us=20_000), False),
        (KernelClock(state=0, status=0x2001, maxerror_us=16_000_000), False),
        (KernelClock(state=1, status=0x2011, maxerror_us=100_000), True),  # leap second ahead
    ],
)
def test_kernel_state_says_whether_synchronised(clock: KernelClock, synced: bool) -> None:
    assert kernel_synchronised(clock) is synced


def test_max_error_is_configurable() -> None:
    assert not kernel_synchronised(SYNCED, max_error_us=10_000)
    assert clock_synchronised(max_error_us=10_000, kernel=lambda: SYNCED) is False


def never(*_: object) -> str:
    raise AssertionError("the fallback must not run while the kernel answers")


def test_kernel_answer_wins_over_timedatectl() -> None:
    assert clock_synchronised(kernel=lambda: SYNCED, timedatectl=never) is True


@pytest.mark.parametrize(
    ("output", "synced"), [("yes\n", True), ("no\n", False), ("", None), ("maybe", None)]
)
def test_timedatectl_is_the_fallback(output: str, synced: bool | None) -> None:
    assert parse_timedatectl(output) is synced
    assert clock_synchronised(kernel=lambda: None, timedatectl=lambda: output) is synced


def test_nothing_can_tell() -> None:
    assert clock_synchronised(kernel=lambda: None, timedatectl=lambda: None) is None


def test_timedatectl_runs_a_command_and_gives_up_cleanly() -> None:
    assert read_timedatectl([sys.executable, "-c", "print('yes')"]) == "yes\n"
    assert read_timedatectl([sys.executable, "-c", "raise SystemExit(1)"]) is None
    assert read_timedatectl(["/nonexistent/timedatectl"]) is None
    slow = [sys.executable, "-c", "import time; time.sleep(10)"]
    assert read_timedatectl(slow, timeout_s=0.2) is None


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_probe_checks_at_most_every_interval() -> None:
    answers: list[bool | None] = [False, None, True]
    calls: list[bool | None] = []

    def check() -> bool | None:
        calls.append(answers[len(calls)])
        return calls[-1]

    clock = FakeClock()
    probe = ClockSyncProbe(check, interval_s=5.0, monotonic=clock)
    assert probe.now_synced() is False
    clock.now += 4.9
    assert probe.now_synced() is False and len(calls) == 1  # cached
    clock.now += 0.1
    assert probe.now_synced() is None and len(calls) == 2  # unknown is an answer too
    clock.now += 1.0
    assert probe.now_synced() is None and len(calls) == 2
    clock.now += 4.0
    assert probe.now_synced() is True and len(calls) == 3


def test_probe_rejects_a_bad_interval() -> None:
    with pytest.raises(ClockError, match="interval_s"):
        ClockSyncProbe(lambda: True, interval_s=0)
