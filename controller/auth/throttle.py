"""Failed logins per client address: past `limit` in `window_s`, refuse until the oldest ages
out. Refusing is immediate (no sleeping): a waiting request would tie up a worker thread."""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable


class LoginThrottle:
    def __init__(
        self,
        limit: int = 10,
        window_s: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        max_clients: int = 10_000,
    ) -> None:
        self.limit = limit
        self.window_s = window_s
        self.clock = clock
        self.max_clients = max_clients  # bounds memory against many source addresses
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> float:
        """Seconds until `client` may try again; 0 if it may now."""
        with self._lock:
            failures = self._recent(client)
            if len(failures) < self.limit:
                return 0.0
            return max(failures[-self.limit] + self.window_s - self.clock(), 0.001)

    def failed(self, client: str) -> None:
        with self._lock:
            failures = self._recent(client)
            failures.append(self.clock())
            self._failures[client] = failures
            if len(self._failures) > self.max_clients:
                del self._failures[next(iter(self._failures))]  # the longest-known client

    def succeeded(self, client: str) -> None:
        with self._lock:
            self._failures.pop(client, None)

    def _recent(self, client: str) -> deque[float]:
        failures = self._failures.get(client, deque(maxlen=self.limit))
        horizon = self.clock() - self.window_s
        while failures and failures[0] <= horizon:
            failures.popleft()
        if not failures:
            self._failures.pop(client, None)
        return failures
