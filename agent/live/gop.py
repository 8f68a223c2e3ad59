"""The packets of a stream's current GOP (from its last keyframe on), so a new live viewer starts
at once instead of waiting up to a GOP for the next keyframe.

The cache is a packet consumer of the stream's hub, drained a few times a second by its own
thread (not per packet: that would cost a thread wake-up per frame for every stream) and at once
when a viewer starts, both under one lock. A viewer subscribed under that lock gets the GOP up to
its subscription and its own queue from there: no packet missed, none twice (by seq).
"""

from __future__ import annotations

import threading

from agent.fanout.consumer import Consumer
from agent.fanout.hub import StreamHub
from agent.frames import StampedPacket
from agent.live.remux import follows

DRAIN_S = 0.25
QUEUE = 128  # packets between drains; more only if the thread was held up (then: next keyframe)
MAX_GOP = 600  # a longer GOP is not kept (memory); its viewers wait for the next keyframe


class GopCache:
    def __init__(self, hub: StreamHub) -> None:
        self.hub = hub
        self.consumer = hub.subscribe("live-gop", "drop_oldest", QUEUE)
        self._gop: list[StampedPacket] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"gop-{hub.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.consumer.close()
        if self._thread.is_alive():
            self._thread.join(5)

    def subscribe(
        self, name: str, maxsize: int, wakeup: threading.Event | None = None
    ) -> tuple[list[StampedPacket], Consumer[StampedPacket]]:
        """A drop-oldest packet consumer of the stream, and the GOP's packets before its first."""
        with self._lock:
            consumer = self.hub.subscribe(name, "drop_oldest", maxsize, wakeup=wakeup)
            self._drain()
            return list(self._gop), consumer

    def _run(self) -> None:
        while not self._stop.wait(DRAIN_S):
            with self._lock:
                self._drain()

    def _drain(self) -> None:
        gop = self._gop
        for sp in self.consumer.take(QUEUE):
            if sp.keyframe:
                gop = [sp]
            elif gop and len(gop) < MAX_GOP and follows(gop[-1], sp):
                gop.append(sp)
            else:  # packets were dropped, or the GOP is too long: keep none until a keyframe
                gop = []
        self._gop = gop
