"""One consumer's queue inside a stream hub: the hub offers without ever blocking, the consumer
takes at its own pace.

Policies:
- "drop_oldest" (live view, detection): bounded; when full the oldest item goes and is counted.
- "never_drop" (recorder): never loses an item; `maxsize` is a high-water mark that raises
  `alarm` in the stats while the queue is at or above it, so a stuck recorder is visible long
  before memory runs out.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Generic, Literal, TypeVar

T = TypeVar("T")
Policy = Literal["drop_oldest", "never_drop"]
POLICIES: tuple[Policy, ...] = ("drop_oldest", "never_drop")


class ConsumerError(ValueError):
    """A consumer that cannot be made as asked."""


@dataclass(frozen=True, slots=True)
class ConsumerStats:
    name: str
    policy: Policy
    maxsize: int
    depth: int  # items waiting now
    delivered: int  # items the consumer took
    dropped: int  # items lost to a full drop_oldest queue
    skipped: int  # items not offered by choice (decimation, keyframes only)
    high_water: int  # the deepest the queue has been
    alarm: bool  # never_drop queue at or above maxsize right now
    closed: bool


class Consumer(Generic[T]):
    def __init__(
        self,
        name: str,
        policy: Policy,
        maxsize: int,
        on_close: Callable[[Consumer[T]], None] | None = None,
        wakeup: threading.Event | None = None,
    ) -> None:
        if policy not in POLICIES:
            raise ConsumerError(f"{name}: policy must be one of {POLICIES}, got {policy!r}")
        if maxsize < 1:
            raise ConsumerError(f"{name}: maxsize must be >= 1, got {maxsize}")
        self.name, self.policy, self.maxsize = name, policy, maxsize
        self._on_close = on_close
        self._wakeup = wakeup  # shared with other consumers one thread waits on
        self._items: deque[T] = deque()
        # A plain lock for the per-item paths (a Condition's `with` goes through Python code);
        # the condition on it is only for get() callers that block.
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._waiting = 0  # threads blocked in get(): offer notifies only when there are some
        self._closed = False
        self._delivered = self._dropped = self._skipped = self._high_water = 0

    @property
    def closed(self) -> bool:
        return self._closed

    def offer(self, item: T) -> None:
        """Queue an item (the hub's side); never blocks, ignored once closed."""
        with self._lock:
            if self._closed:
                return
            items = self._items
            if self.policy == "drop_oldest" and len(items) >= self.maxsize:
                items.popleft()
                self._dropped += 1
            items.append(item)
            if len(items) > self._high_water:
                self._high_water = len(items)
            if self._waiting:
                self._ready.notify()
        # Still set means the woken thread has not cleared it yet, and it takes what it finds
        # only after clearing: this item is seen either way. Skipping the set saves a
        # Condition round trip for nearly every packet of a busy stream.
        wakeup = self._wakeup
        if wakeup is not None and not wakeup.is_set():
            wakeup.set()

    def skip(self) -> None:
        """Count an item deliberately not offered."""
        with self._lock:
            self._skipped += 1

    def get(self, timeout: float | None = None) -> T | None:
        """The next item; None after `timeout` s, or once closed and drained."""
        with self._lock:
            if not self._items and not self._closed and timeout != 0:
                self._waiting += 1
                try:
                    self._ready.wait_for(lambda: self._items or self._closed, timeout)
                finally:
                    self._waiting -= 1
            if not self._items:
                return None
            self._delivered += 1
            return self._items.popleft()

    def take(self, limit: int) -> list[T]:
        """Up to `limit` queued items, oldest first, without waiting: for a thread that serves
        many consumers woken by a shared `wakeup`."""
        if not self._items:  # no lock for the common empty case; a later offer sets wakeup
            return []
        with self._lock:
            items = self._items
            batch = [items.popleft() for _ in range(min(limit, len(items)))]
            self._delivered += len(batch)
        return batch

    def __iter__(self) -> Iterator[T]:
        """Items until the consumer is closed and drained."""
        while (item := self.get()) is not None:
            yield item

    def close(self) -> None:
        """Unsubscribe: nothing more is queued; what is queued can still be taken."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._ready.notify_all()
        if self._on_close is not None:
            self._on_close(self)

    def stats(self) -> ConsumerStats:
        with self._lock:
            return ConsumerStats(
                name=self.name,
                policy=self.policy,
                maxsize=self.maxsize,
                depth=len(self._items),
                delivered=self._delivered,
                dropped=self._dropped,
                skipped=self._skipped,
                high_water=self._high_water,
                alarm=self.policy == "never_drop" and len(self._items) >= self.maxsize,
                closed=self._closed,
            )
