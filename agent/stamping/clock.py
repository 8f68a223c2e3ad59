"""The agent's clock: wall time in µs, and whether NTP keeps it synchronised.

Stamps made while the clock is not synchronised are flagged. The kernel knows: NTP daemons
(chrony, ntpd, systemd-timesyncd) clear STA_UNSYNC and keep the maximum error current, which
adjtimex(2) reads without privileges. Where that cannot be called, `timedatectl` is asked.
"""

from __future__ import annotations

import ctypes
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from fleet.utc import now_us

STA_UNSYNC = 0x0040  # status bit: the clock is not synchronised
TIME_ERROR = 5  # adjtimex state: the clock is not synchronised
DEFAULT_MAX_ERROR_US = 100_000  # a clock possibly further off than this is not synchronised
# A read whose own wall clock is this far from Python's did not lay the structure out right.
_SANE_READ_US = 3600 * 1_000_000
TIMEDATECTL = ("timedatectl", "show", "-p", "NTPSynchronized", "--value")


class ClockError(ValueError):
    """A clock probe configured with values it cannot use."""


class _Timeval(ctypes.Structure):
    _fields_ = (("tv_sec", ctypes.c_long), ("tv_usec", ctypes.c_long))


class _Timex(ctypes.Structure):
    """struct timex (<sys/timex.h>); glibc pads it with eleven ints for growth."""

    _fields_ = (
        ("modes", ctypes.c_uint),
        ("offset", ctypes.c_long),
        ("freq", ctypes.c_long),
        ("maxerror", ctypes.c_long),
        ("esterror", ctypes.c_long),
        ("status", ctypes.c_int),
        ("constant", ctypes.c_long),
        ("precision", ctypes.c_long),
        ("tolerance", ctypes.c_long),
        ("time", _Timeval),
        ("tick", ctypes.c_long),
        ("ppsfreq", ctypes.c_long),
        ("jitter", ctypes.c_long),
        ("shift", ctypes.c_int),
        ("stabil", ctypes.c_long),
        ("jitcnt", ctypes.c_long),
        ("calcnt", ctypes.c_long),
        ("errcnt", ctypes.c_long),
        ("stbcnt", ctypes.c_long),
        ("tai", ctypes.c_int),
        ("_padding", ctypes.c_int * 11),
    )


@dataclass(frozen=True, slots=True)
class KernelClock:
    state: int  # what adjtimex returned: TIME_OK (0) .. TIME_ERROR (5)
    status: int  # STA_* bits
    maxerror_us: int  # how far off the clock may be, as NTP last told the kernel


def read_kernel_clock() -> KernelClock | None:
    """The kernel's NTP state by adjtimex(2) (read only); None where it cannot be read."""
    try:
        adjtimex = ctypes.CDLL(None, use_errno=True).adjtimex
    except (OSError, AttributeError):  # not Linux, or no C library to call
        return None
    timex = _Timex()  # modes 0: read, change nothing
    state = int(adjtimex(ctypes.byref(timex)))
    kernel_us = int(timex.time.tv_sec) * 1_000_000 + int(timex.time.tv_usec)
    if state < 0 or abs(kernel_us - now_us()) > _SANE_READ_US:
        return None
    return KernelClock(state=state, status=int(timex.status), maxerror_us=int(timex.maxerror))


def kernel_synchronised(clock: KernelClock, max_error_us: int = DEFAULT_MAX_ERROR_US) -> bool:
    return (
        clock.state != TIME_ERROR
        and not clock.status & STA_UNSYNC
        and clock.maxerror_us <= max_error_us
    )


def read_timedatectl(command: Sequence[str] = TIMEDATECTL, timeout_s: float = 2.0) -> str | None:
    """What `timedatectl` says about NTP synchronisation; None where it cannot say."""
    try:
        done = subprocess.run(
            list(command), capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def parse_timedatectl(output: str) -> bool | None:
    return {"yes": True, "no": False}.get(output.strip())


def clock_synchronised(
    max_error_us: int = DEFAULT_MAX_ERROR_US,
    kernel: Callable[[], KernelClock | None] = read_kernel_clock,
    timedatectl: Callable[[], str | None] = read_timedatectl,
) -> bool | None:
    """Whether NTP keeps the agent's clock synchronised; None when nothing can tell."""
    clock = kernel()
    if clock is not None:
        return kernel_synchronised(clock, max_error_us)
    output = timedatectl()
    return None if output is None else parse_timedatectl(output)


class ClockSyncProbe:
    """`clock_synchronised`, asked at most every `interval_s`: cheap enough for every frame.

    Share one per agent: the `timedatectl` fallback runs a process.
    """

    def __init__(
        self,
        check: Callable[[], bool | None] = clock_synchronised,
        interval_s: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if not interval_s > 0:
            raise ClockError(f"interval_s must be positive, got {interval_s!r}")
        self._check, self._interval, self._monotonic = check, interval_s, monotonic
        self._checked_at: float | None = None
        self._synced: bool | None = None

    def now_synced(self) -> bool | None:
        now = self._monotonic()
        if self._checked_at is None or now - self._checked_at >= self._interval:
            self._synced = self._check()
            self._checked_at = now
        return self._synced
