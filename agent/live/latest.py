"""Keeps the newest decoded keyframe of a stream for snapshots; cheap (keyframes only)."""

from __future__ import annotations

import threading

from agent.fanout.consumer import Consumer
from agent.fanout.hub import DecodedFrame


class LatestFrame:
    def __init__(self, consumer: Consumer[DecodedFrame]) -> None:
        self.consumer = consumer
        self._latest: DecodedFrame | None = None
        self._thread = threading.Thread(target=self._run, name=f"live-{consumer.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.consumer.close()
        self._thread.join(5)

    @property
    def latest(self) -> DecodedFrame | None:
        return self._latest

    def _run(self) -> None:
        for item in self.consumer:
            self._latest = item
