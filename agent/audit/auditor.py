"""The detection consumer: what it analyses is written down, frame by frame.

Each analysed frame's luma hash goes into the media index (stream, seq, stamp, hash), so
`camfleet agent verify` can prove later that the recording holds exactly what was analysed;
then the frame goes to the camera's detector (when it has a model), on this same thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import av

from agent.fanout.consumer import Consumer
from agent.fanout.hub import DecodedFrame
from agent.recording.index import Audit, Index
from agent.recording.verify import luma_sha256

log = logging.getLogger("camfleet.agent.audit")

FLUSH_INTERVAL_S = 1.0
FrameListener = Callable[[int, av.VideoFrame], None]  # capture stamp (µs), frame


@dataclass
class AuditStats:
    analysed: int = 0
    last_stamp_us: int | None = None
    errors: int = 0


class FrameAuditor:
    """Runs in its own thread with its own index connection (SQLite: one connection per thread)."""

    def __init__(
        self,
        consumer: Consumer[DecodedFrame],
        data_dir: Path,
        on_frame: FrameListener | None = None,
    ) -> None:
        self.consumer = consumer
        self.data_dir = data_dir
        self.on_frame = on_frame
        self._stats = AuditStats()
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name=f"audit-{consumer.name}", daemon=True
        )

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self.consumer.close()
        self._thread.join(10)

    def stats(self) -> AuditStats:
        return AuditStats(self._stats.analysed, self._stats.last_stamp_us, self._stats.errors)

    def _run(self) -> None:
        pending: list[Audit] = []
        last_flush = time.monotonic()
        with Index.open(self.data_dir) as index:
            while not (self._stop.is_set() and not pending):
                item = None if self._stop.is_set() else self.consumer.get(timeout=0.2)
                if item is not None:
                    sp, frame = item
                    pending.append(
                        Audit(sp.info.camera, sp.info.stream, sp.stamp.seq,
                              sp.stamp.capture_us, luma_sha256(frame))
                    )  # fmt: skip
                    self._stats.analysed += 1
                    self._stats.last_stamp_us = sp.stamp.capture_us
                    self._analyse(sp.stamp.capture_us, frame)
                if pending and (
                    self._stop.is_set() or time.monotonic() - last_flush > FLUSH_INTERVAL_S
                ):
                    try:
                        index.add_audits(pending)
                        pending.clear()
                    except Exception:  # a locked or full database: keep them and retry
                        self._stats.errors += 1
                        if self._stop.is_set():
                            break
                    last_flush = time.monotonic()

    def _analyse(self, stamp_us: int, frame: av.VideoFrame) -> None:
        if self.on_frame is None:
            return
        try:
            self.on_frame(stamp_us, frame)
        except Exception:  # one frame the detector cannot take must not end the audit
            self._stats.errors += 1
            log.exception("%s: detection failed on the frame at %d", self.consumer.name, stamp_us)
