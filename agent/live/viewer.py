"""One live viewer of a stream: a drop-oldest packet consumer of the stream's hub (it never opens
a camera connection), remuxed to fragmented MP4 as it is read. A viewer that falls behind loses
the oldest packets of its queue (counted in /stats like any live consumer's) and skips to the
next keyframe; closing it unsubscribes."""

from __future__ import annotations

import itertools
import logging
import threading

import av

from agent.fanout.hub import StreamHub
from agent.frames import StampedPacket
from agent.live.fmp4 import CodecStringError
from agent.live.gop import GopCache
from agent.live.remux import LiveRemux, StreamChanged

log = logging.getLogger("camfleet.agent.live")

QUEUE = 32  # packets (1-2 s of video): a viewer further behind than that skips ahead
_names = itertools.count(1)


class LiveUnavailable(RuntimeError):
    """No live stream to give: not streaming, no keyframe yet, or not H.264."""


class LiveViewer:
    def __init__(
        self, hub: StreamHub, gop: GopCache | None, wakeup: threading.Event | None = None
    ) -> None:
        """Subscribes now; with a GOP cache the stream starts at its last keyframe, else at the
        next one. `wakeup` is set whenever a packet is queued."""
        self.stream = hub.name
        name = f"live-view-{next(_names)}"
        self._backlog: list[StampedPacket]
        if gop is not None:
            self._backlog, self.consumer = gop.subscribe(name, QUEUE, wakeup)
        else:
            self._backlog = []
            self.consumer = hub.subscribe(name, "drop_oldest", QUEUE, wakeup=wakeup)
        # The GOP's packets reach up to here; the consumer's queue may hold some of them too.
        self._after = self._backlog[-1].stamp.seq if self._backlog else -1
        self._remux = LiveRemux()
        self.ended = False  # nothing more will come: the hub closed or the stream changed

    @property
    def name(self) -> str:
        return self.consumer.name

    @property
    def codec(self) -> str | None:
        """RFC 6381 codec string, once the init segment has been read."""
        return self._remux.codec

    def read(self) -> bytes:
        """The MP4 bytes of the packets queued now, without waiting (b"" if none are)."""
        queued = self.consumer.take(QUEUE)
        if not queued and not self._backlog and self.consumer.closed:
            self.ended = True
        packets = self._backlog + [sp for sp in queued if sp.stamp.seq > self._after]
        self._backlog = []
        out: list[bytes] = []
        try:
            for sp in packets:
                out.append(self._remux.feed(sp))
        except CodecStringError as exc:
            self.close()
            raise LiveUnavailable(f"{self.stream}: {exc}") from None
        except (StreamChanged, av.FFmpegError) as exc:
            log.info("%s: live view %s ends: %s", self.stream, self.name, exc)
            self.ended = True
            self.close()
        return b"".join(out)

    def close(self) -> None:
        """Unsubscribe (idempotent)."""
        self.consumer.close()
