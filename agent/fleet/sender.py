"""Publishes the outbox oldest first and deletes each row once its PUBACK has come back.

A window bounds what is in flight. The MQTT client keeps unacknowledged QoS 1 messages across
reconnects and sends them again, so a broker outage only pauses the sender; after an agent
restart every row still in the outbox is published again (at least once, never lost).
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Final, Protocol

from agent.fleet.outbox import Outbox, OutboxRow, Qos

log = logging.getLogger("camfleet.agent.fleet.outbox")

WINDOW: Final = 16  # messages in flight
WINDOW_BYTES: Final = 4 * 1024 * 1024
IDLE_WAIT_S: Final = 1.0  # longest sleep; puts and acks wake the sender at once


class Publisher(Protocol):
    def publish(self, topic: str, payload: bytes, qos: Qos, retain: bool) -> int:
        """Queue a message for the broker (also while disconnected); returns its message id."""
        ...


@dataclass(frozen=True, slots=True)
class SenderStats:
    in_flight: int
    published: int
    acked: int
    refused: int  # rows the client would not take (dropped, logged)


class OutboxSender:
    def __init__(
        self,
        outbox: Outbox,
        publisher: Publisher,
        window: int = WINDOW,
        window_bytes: int = WINDOW_BYTES,
    ) -> None:
        self.outbox, self.publisher = outbox, publisher
        self.window, self.window_bytes = window, window_bytes
        self._acks: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._wake = threading.Event()
        self._stop = threading.Event()
        # Only the sender's thread touches these (plus the counters, read by stats()).
        self._in_flight: dict[int, OutboxRow] = {}  # by message id
        self._cursor = 0  # id of the last row published
        self._published = self._acked = self._refused = 0
        self._thread = threading.Thread(target=self._run, name="outbox-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(10)

    def wake(self) -> None:
        """Something was put in the outbox."""
        self._wake.set()

    def acked(self, mid: int) -> None:
        """The broker acknowledged message `mid` (any thread; ids not ours are ignored)."""
        self._acks.put(mid)
        self._wake.set()

    def stats(self) -> SenderStats:
        return SenderStats(len(self._in_flight), self._published, self._acked, self._refused)

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.clear()  # before working: a wake-up that comes after is not slept through
            try:
                self._settle_acks()
                self._publish_more()
            except Exception:  # a locked or full disk: keep everything and try again
                log.exception("outbox sender failed; retrying")
            self._wake.wait(IDLE_WAIT_S)

    def _settle_acks(self) -> None:
        done: list[int] = []
        while not self._acks.empty():
            row = self._in_flight.pop(self._acks.get(), None)
            if row is not None:
                done.append(row.id)
        if done:
            self.outbox.delete(done)
            self._acked += len(done)

    def _publish_more(self) -> None:
        room = self.window - len(self._in_flight)
        in_flight_bytes = sum(len(r.message.payload) for r in self._in_flight.values())
        if room <= 0 or in_flight_bytes >= self.window_bytes:
            return
        for row in self.outbox.after(self._cursor, room):
            m = row.message
            try:
                mid = self.publisher.publish(m.topic, m.payload, m.qos, m.retain)
            except ValueError as exc:  # e.g. a payload too large for MQTT: it never will go
                log.error("outbox: dropping message %d on %s: %s", row.id, m.topic, exc)
                self.outbox.delete([row.id])
                self._refused += 1
            else:
                self._in_flight[mid] = row
                self._published += 1
            self._cursor = row.id
            in_flight_bytes += len(m.payload)
            if in_flight_bytes >= self.window_bytes:
                break
