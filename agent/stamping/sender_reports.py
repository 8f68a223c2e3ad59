"""The camera's wall clock for an RTP time, from its RTCP sender reports (sans-IO)."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

_RTP_WRAP = 1 << 32
_HALF_WRAP = 1 << 31
# A sender report further than this from a frame (in RTP ticks) cannot be matched to it
# unambiguously modulo 2**32: about 3.3 h at 90 kHz.
_SR_REACH_TICKS = 1 << 30
# A report further than this off the line of the reports before it means the camera's clock
# stepped (or its RTP timeline restarted): the rate is measured afresh from there.
_SR_STEP_US = 1_000
_SR_MIN_FIT_US = 1_000_000  # reports closer together say little about the rate


def signed32(delta: int) -> int:
    """`delta` modulo 2**32, as the value nearest zero."""
    return ((delta + _HALF_WRAP) % _RTP_WRAP) - _HALF_WRAP


@dataclass(frozen=True, slots=True)
class _Report:
    ntp_us: int
    rtp: int


class SenderReports:
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
            self._us_per_tick, self._fitted = span_us / signed32(rtp - first.rtp), True

    def _continues(self, report: _Report) -> bool:
        """Whether `report` lies on the line of those before it."""
        if not self._reports:
            return False
        last = self._reports[-1]
        ticks = signed32(report.rtp - last.rtp)
        predicted = ticks * self._us_per_tick
        slack = _SR_STEP_US + (0.0 if self._fitted else abs(predicted) * self._max_rate)
        return ticks > 0 and abs(report.ntp_us - last.ntp_us - predicted) <= slack

    def clear(self) -> None:
        self._reports.clear()

    def camera_us(self, ticks: int) -> float | None:
        if not self._reports:
            return None
        last = self._reports[-1]
        delta = signed32(ticks - last.rtp)
        if abs(delta) > _SR_REACH_TICKS:
            return None
        return last.ntp_us + delta * self._us_per_tick
