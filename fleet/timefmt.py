"""Times in camfleet's APIs: UTC ISO 8601 with microseconds out; that or epoch µs in."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US = timedelta(microseconds=1)


def iso_us(epoch_us: int) -> str:
    return (_EPOCH + epoch_us * _US).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def parse_time_us(value: str) -> int:
    """Epoch microseconds from an integer string or ISO 8601 (naive means UTC); ValueError else."""
    text = value.strip()
    if text.lstrip("-").isdigit():
        return int(text)
    dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if dt.tzinfo is None:
        dt = dt.replace(tzinfo=UTC)
    return (dt - _EPOCH) // _US
