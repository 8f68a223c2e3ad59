"""Time in camfleet: stamps are UTC epoch microseconds; APIs speak UTC ISO 8601 with µs.

The one home of these conversions, so every part of the fleet agrees on them to the microsecond.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def now_us() -> int:
    """The current time as a stamp."""
    return time.time_ns() // 1000


def to_stamp_us(when: datetime) -> int:
    """A timezone-aware datetime as a stamp (exact to the microsecond)."""
    if when.tzinfo is None:
        raise ValueError("naive datetime: stamps are UTC, give a timezone-aware datetime")
    return (when - _EPOCH) // _US


def from_stamp_us(stamp: int) -> datetime:
    """A stamp as a UTC datetime."""
    return _EPOCH + stamp * _US


def iso_us(epoch_us: int) -> str:
    """A stamp as UTC ISO 8601 with microseconds, e.g. 2026-11-24T16:41:04.125302Z."""
    return from_stamp_us(epoch_us).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time_us(value: str) -> int:
    """A stamp from an epoch-µs integer string or ISO 8601 (naive means UTC); ValueError else."""
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return to_stamp_us(dt if dt.tzinfo else dt.replace(tzinfo=UTC))
