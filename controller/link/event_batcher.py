"""Events are written in batches by one thread, so a burst costs one transaction per batch
rather than one per event, and the network thread never waits on the disk."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence
from typing import Final, Protocol

from fleet.messages import Event

log = logging.getLogger("camfleet.controller.events")

# A batch is whatever queued up while the previous one was written (at most this many): no
# waiting to fill it, so an event becomes queryable one write after it arrives, and batches grow
# by themselves under load.
MAX_BATCH: Final = 1000

Item = tuple[str, Event, int]


class BatchStore(Protocol):
    def store_many(self, items: Sequence[Item]) -> int: ...


class EventBatcher:
    def __init__(self, store: BatchStore) -> None:
        self.store = store
        self.stored = 0  # new events written (repeats of known ids excluded)
        self._queue: queue.Queue[Item | None] = queue.Queue()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._run, name="event-writer", daemon=True)
        self._thread.start()

    def add(self, agent_id: str, event: Event, received_us: int) -> None:
        self._idle.clear()
        self._queue.put((agent_id, event, received_us))

    def flush(self, timeout: float = 10.0) -> bool:
        """Wait until everything added so far is stored."""
        return self._idle.wait(timeout)

    def stop(self) -> None:
        self._queue.put(None)
        self._thread.join(10)

    def _run(self) -> None:
        while True:
            first = self._queue.get()
            if first is None:
                return
            batch = [first]
            stop = False
            try:
                while len(batch) < MAX_BATCH:
                    item = self._queue.get_nowait()
                    if item is None:
                        stop = True
                        break
                    batch.append(item)
            except queue.Empty:
                pass
            self._write(batch)
            if stop:
                return
            if self._queue.empty():
                self._idle.set()

    def _write(self, batch: list[Item]) -> None:
        try:
            self.stored += self.store.store_many(batch)
        except Exception:
            # Not acked to the agent differently either way (QoS 1 acks on receipt), so log loudly;
            # the agent's outbox cannot resend these. Retrying once covers a transient lock.
            log.exception("storing %d events failed; retrying once", len(batch))
            try:
                self.stored += self.store.store_many(batch)
            except Exception:
                log.exception("storing %d events failed again: they are lost", len(batch))
