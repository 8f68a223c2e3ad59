"""How much a cumulative counter grew within a sliding time window."""

from __future__ import annotations

from collections import deque


class CounterWindow:
    def __init__(self, window_us: int) -> None:
        self.window_us = window_us
        self._samples: deque[tuple[int, int]] = deque()  # (time, counter), oldest first

    def add(self, now_us: int, value: int) -> None:
        if self._samples and value < self._samples[-1][1]:
            self._samples.clear()  # the counter restarted (the agent did)
        self._samples.append((now_us, value))
        while self._samples[0][0] < now_us - self.window_us:
            self._samples.popleft()

    def growth(self) -> tuple[int, int]:
        """(increase, since when): from the oldest sample inside the window to the newest."""
        if not self._samples:
            return 0, 0
        (first_us, first), (_, last) = self._samples[0], self._samples[-1]
        return last - first, first_us

    def restart(self) -> None:
        """Forget the history: what happened so far is not to be counted again."""
        if self._samples:
            self._samples = deque([self._samples[-1]])
