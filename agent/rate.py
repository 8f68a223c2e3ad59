"""Rates from cumulative counters, looked at now and then (e.g. packets → frames per second)."""

from __future__ import annotations


class RateMeter:
    """Per key, the rate of a cumulative counter since the previous look."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, int]] = {}  # key -> (count, at µs)

    def rate(self, key: str, count: int, now_us: int) -> float | None:
        """Per second since the last look; None on the first look or after the counter
        restarted (a restarted pipeline counts from 0 again)."""
        last = self._last.get(key)
        self._last[key] = (count, now_us)
        if last is None or now_us <= last[1] or count < last[0]:
            return None
        return (count - last[0]) * 1e6 / (now_us - last[1])

    def keep_only(self, keys: set[str]) -> None:
        """Forget keys no longer looked at (a removed camera)."""
        self._last = {k: v for k, v in self._last.items() if k in keys}
