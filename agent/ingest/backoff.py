"""When to try a camera again, and the connection states a stream's stats report.

Pure: no clocks, no sockets. The caller asks for the next delay and says when a connection
succeeded.

Retry policy, and why the delay cap is not what brings a camera back quickly: the RTSP attempt
itself backs off exponentially (0.5 s base, 15 s cap) so a camera that answers but refuses
(session limit, 404, garbage) is not hammered. A camera that could not even be reached is
instead probed with a bare TCP connect every `PROBE_INTERVAL_S` while the backoff runs, and the
next attempt starts as soon as the probe succeeds. The worst case from "reachable again" to
"streaming" is then the probe interval plus the time to the camera's first packet (one GOP at
most, 2 s for the shipped profiles), well inside the 5 s target, and a capped interval alone
(≤ 4 s, plus up to a GOP) could not guarantee that.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from enum import StrEnum
from typing import Literal

Jitter = Literal["full", "decorrelated"]

DEFAULT_BASE_S = 0.5
DEFAULT_CAP_S = 15.0
# A TCP connect to the camera's RTSP port: cheap enough to repeat this often while it is away.
PROBE_INTERVAL_S = 0.5


class BackoffError(ValueError):
    """Backoff parameters that cannot make a sensible schedule."""


class Backoff:
    """Exponential backoff with jitter, capped; `reset()` after a success.

    "full": uniform(0, min(cap, base * 2**n)) — the AWS "full jitter" schedule.
    "decorrelated": min(cap, uniform(base, 3 * previous)) — never below base, spreads clients
    that failed together without tracking an attempt count.
    """

    def __init__(
        self,
        base_s: float = DEFAULT_BASE_S,
        cap_s: float = DEFAULT_CAP_S,
        jitter: Jitter = "decorrelated",
        rng: random.Random | None = None,
    ) -> None:
        if not base_s > 0:
            raise BackoffError(f"base must be > 0 s, got {base_s}")
        if not cap_s >= base_s:
            raise BackoffError(f"cap ({cap_s} s) must be >= base ({base_s} s)")
        if jitter not in ("full", "decorrelated"):
            raise BackoffError(f"jitter must be 'full' or 'decorrelated', got {jitter!r}")
        self.base_s, self.cap_s, self.jitter = base_s, cap_s, jitter
        self._rng = rng or random.Random()
        self.attempts = 0  # failures since the last success
        self._previous = base_s

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; each call counts one more failure."""
        if self.jitter == "full":
            # min() first: 2**attempts overflows a float long before it matters.
            ceiling = self.cap_s if self.attempts >= 64 else self.base_s * 2.0**self.attempts
            delay = self._rng.uniform(0.0, min(self.cap_s, ceiling))
        else:
            delay = min(self.cap_s, self._rng.uniform(self.base_s, 3.0 * self._previous))
            self._previous = delay
        self.attempts += 1
        return delay

    def reset(self) -> None:
        self.attempts = 0
        self._previous = self.base_s


class ConnectionState(StrEnum):
    CONNECTING = "connecting"
    STREAMING = "streaming"
    BACKOFF = "backoff"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class ConnectionStatus:
    """Where a stream's connection is, why, and since when (UTC epoch µs)."""

    state: ConnectionState
    reason: str
    since_us: int

    def moved(self, state: ConnectionState, reason: str, now_us: int) -> ConnectionStatus:
        """The status after a transition; `since` only moves when the state or reason does."""
        if state == self.state and reason == self.reason:
            return self
        return ConnectionStatus(state, reason, now_us)
