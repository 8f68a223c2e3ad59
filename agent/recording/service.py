"""The recorder's thread: drains every stream's never-drop queue into one Recorder.

SQLite wants one writing connection per thread, so one thread owns the Recorder and its index;
gaps that ingest notices arrive here through a queue, and retention runs here too.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from agent.fanout.consumer import Consumer
from agent.fanout.hub import StreamHub
from agent.frames import StampedPacket
from agent.recording.index import Gap, Index
from agent.recording.recorder import Recorder, RecorderStats
from agent.recording.retention import apply_retention
from fleet.utc import now_us

log = logging.getLogger("camfleet.agent.recording")

# Packets a stream may have queued for the recorder before its queue raises the alarm (about a
# minute of a 15 fps stream); the queue never drops, the alarm says the disk is not keeping up.
RECORDER_QUEUE = 1000
IDLE_WAIT_S = 0.5  # longest sleep with every queue empty (queued packets wake the thread at once)
BATCH = 256  # packets taken from one queue before looking at the next (fairness)
RETENTION_INTERVAL_S = 60.0
STATS_INTERVAL_S = 0.5  # how stale the stats other threads read may be
USAGE_INTERVAL_S = 5.0  # how often the bytes on disk are summed from the index


@dataclass(frozen=True)
class RetentionPolicy:
    max_age_s: float | None
    budget_bytes: int | None


@dataclass(frozen=True)
class _Release:
    hub: StreamHub
    camera: str
    stream: str
    done: threading.Event


class RecordingService:
    def __init__(self, data_dir: Path, segment_seconds: float, retention: RetentionPolicy) -> None:
        self.data_dir = data_dir
        self.segment_seconds = segment_seconds
        self.retention = retention
        # Replaced under the lock, never mutated: the recorder's thread reads it without one.
        self._lock = threading.Lock()
        self._consumers: dict[StreamHub, Consumer[StampedPacket]] = {}
        self._gaps: queue.SimpleQueue[Gap] = queue.SimpleQueue()
        self._releases: queue.SimpleQueue[_Release] = queue.SimpleQueue()
        self._stop = threading.Event()
        self._wakeup = threading.Event()  # set by every queued packet and gap, and by stop()
        self._stats: RecorderStats | None = None
        self._recorded_bytes = 0
        self._thread = threading.Thread(target=self._run, name="recorder", daemon=True)

    def record(self, hub: StreamHub) -> None:
        """Record everything the stream's hub publishes (never dropping a packet)."""
        consumer = hub.subscribe("recorder", "never_drop", RECORDER_QUEUE, wakeup=self._wakeup)
        with self._lock:
            self._consumers = {**self._consumers, hub: consumer}

    def release(self, hub: StreamHub, camera: str, stream: str, timeout_s: float = 30.0) -> None:
        """Stop recording a stream whose ingest has stopped: what it queued is written, then its
        segment is closed and indexed. Waits for the recorder's thread (at most `timeout_s`)."""
        release = _Release(hub, camera, stream, threading.Event())
        if not self._thread.is_alive():  # not started, or stopped: nothing is open
            self._forget(hub)
            return
        self._releases.put(release)
        self._wakeup.set()
        if not release.done.wait(timeout_s):
            log.error("recorder: %s/%s not released within %.0f s", camera, stream, timeout_s)

    def note_gap(self, gap: Gap) -> None:
        """Called from any thread (ingest): the recorder's thread writes it down."""
        self._gaps.put(gap)
        self._wakeup.set()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Record what is queued, close the segments, and write the agent-stopped gap."""
        self._stop.set()
        self._wakeup.set()
        self._thread.join(30)

    def stats(self) -> RecorderStats | None:
        return self._stats

    @property
    def recorded_bytes(self) -> int:
        """Bytes of recordings on disk (not deleted by retention), a few seconds old at most."""
        return self._recorded_bytes

    def _run(self) -> None:
        with Index.open(self.data_dir) as index:
            recorder = Recorder(self.data_dir, index, self.segment_seconds)
            next_retention = next_stats = next_usage = time.monotonic()
            while True:
                stopping = self._stop.is_set()
                self._wakeup.clear()  # before draining: what arrives after is not slept through
                moved = self._drain(recorder)
                while not self._gaps.empty():
                    g = self._gaps.get()
                    recorder.gap(g.camera, g.stream, g.start_us, g.end_us, g.reason, g.detail)
                while not self._releases.empty():
                    self._release(recorder, self._releases.get())
                if stopping and not moved:
                    break
                now = time.monotonic()
                if now >= next_stats:
                    next_stats = now + STATS_INTERVAL_S
                    self._stats = recorder.stats()
                if now >= next_retention:
                    next_retention = now + RETENTION_INTERVAL_S
                    self._apply_retention(index)
                if now >= next_usage:
                    next_usage = now + USAGE_INTERVAL_S
                    self._recorded_bytes = index.recorded_bytes()
                if not moved:
                    self._wakeup.wait(IDLE_WAIT_S)
            recorder.close()
            self._stats = recorder.stats()
            self._recorded_bytes = index.recorded_bytes()

    def _release(self, recorder: Recorder, release: _Release) -> None:
        consumer = self._forget(release.hub)
        if consumer is not None:
            for sp in consumer:  # closed above: ends once drained
                recorder.push(sp)
        recorder.close_stream(release.camera, release.stream)
        release.done.set()

    def _forget(self, hub: StreamHub) -> Consumer[StampedPacket] | None:
        with self._lock:
            consumers = dict(self._consumers)
            consumer = consumers.pop(hub, None)
            self._consumers = consumers
        if consumer is not None:
            consumer.close()
        return consumer

    def _drain(self, recorder: Recorder) -> int:
        moved = 0
        for consumer in self._consumers.values():
            batch = consumer.take(BATCH)
            for sp in batch:
                recorder.push(sp)
            moved += len(batch)
        return moved

    def _apply_retention(self, index: Index) -> None:
        try:
            deleted = apply_retention(
                index,
                now_us(),
                self.retention.max_age_s,
                self.retention.budget_bytes,
            )
            if deleted:
                log.info("retention deleted %d segments", len(deleted))
        except Exception:
            log.exception("retention failed; will retry")
