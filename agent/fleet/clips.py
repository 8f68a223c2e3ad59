"""Event and command clips: remuxed from the recording once it covers the clip's end, then sent
through the outbox as a ClipManifest and 256 KiB ClipChunks.

A clip is promised (`ClipWorker.schedule`) before it can be made: the job is written down in
outbox.db, so it survives a restart, and the recording it needs is pinned, so retention keeps
it until the clip's bytes are safely in the outbox.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final
from uuid import UUID

from agent.fleet.outbox import OUTBOX_FILE, Outbox, OutboxMessage, connect_db
from agent.recording.chain import file_sha256
from agent.recording.clip import ClipError, ClipResult, extract_clip
from agent.recording.index import Index, MediaIndexError, Pin
from fleet.messages import ClipChunk, ClipManifest, CommandAck
from fleet.topics import TopicKind
from fleet.utc import now_us

log = logging.getLogger("camfleet.agent.fleet.clips")

CHUNK_BYTES: Final = 256 * 1024
MAX_CLIP_US: Final = 15 * 60 * 1_000_000
MAX_AHEAD_US: Final = 5 * 60 * 1_000_000
STREAM: Final = "main"  # clips are of the stream that is recorded at full quality
# How long past a clip's end the recording may take to cover it (fragments are indexed once
# written) before the clip is made from what there is.
WAIT_MARGIN_S: Final = 20.0
POLL_S: Final = 0.25
LOOKAHEAD_US: Final = 10_000_000


class ClipRequestError(ValueError):
    """A clip that cannot be promised (e.g. too long)."""


@dataclass(frozen=True, slots=True)
class ClipJob:
    clip_id: UUID
    camera: str
    from_us: int
    to_us: int
    event_id: UUID | None = None
    command_id: UUID | None = None  # answered with a CommandAck once the clip is queued

    def __post_init__(self) -> None:
        if self.to_us < self.from_us:
            raise ClipRequestError("a clip must not end before it starts")
        if self.to_us - self.from_us > MAX_CLIP_US:
            raise ClipRequestError(f"a clip is at most {MAX_CLIP_US // 1_000_000} s long")


class ClipJobs:
    """Promised clips not yet in the outbox, oldest first (a table in outbox.db)."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._conn = connect_db(path)
        self._conn.execute(
            "CREATE TABLE IF NOT EXISTS clip_jobs (clip_id TEXT PRIMARY KEY, camera TEXT NOT NULL,"
            " from_us INTEGER NOT NULL, to_us INTEGER NOT NULL, event_id TEXT, command_id TEXT,"
            " created_us INTEGER NOT NULL)"
        )

    @classmethod
    def open(cls, data_dir: Path) -> ClipJobs:
        return cls(data_dir / OUTBOX_FILE)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def add(self, job: ClipJob) -> None:
        """Idempotent: a job already waiting stays as it is."""
        with self._lock:
            self._conn.execute(
                "INSERT OR IGNORE INTO clip_jobs VALUES (?, ?, ?, ?, ?, ?, ?)",
                (str(job.clip_id), job.camera, job.from_us, job.to_us, _str(job.event_id),
                 _str(job.command_id), now_us()),
            )  # fmt: skip

    def pending(self) -> list[ClipJob]:
        with self._lock:
            rows = self._conn.execute(
                "SELECT clip_id, camera, from_us, to_us, event_id, command_id FROM clip_jobs"
                " ORDER BY created_us, rowid"
            ).fetchall()
        return [ClipJob(UUID(c), cam, f, t, _uuid(e), _uuid(cmd)) for c, cam, f, t, e, cmd in rows]

    def done(self, clip_id: UUID) -> None:
        with self._lock:
            self._conn.execute("DELETE FROM clip_jobs WHERE clip_id = ?", (str(clip_id),))


def clip_messages(agent_id: str, job: ClipJob, clip: ClipResult) -> Iterator[OutboxMessage]:
    """The manifest, then the chunks, read from the clip file as they are consumed."""
    size = clip.path.stat().st_size
    yield OutboxMessage.of(
        agent_id,
        TopicKind.CLIP_MANIFESTS,
        ClipManifest(
            clip_id=job.clip_id,
            event_id=job.event_id,
            camera=job.camera,
            from_us=clip.first_us,  # the clip's time 0 is this frame's stamp
            to_us=clip.last_us,
            sha256=file_sha256(clip.path),
            size=size,
            chunk_size=CHUNK_BYTES,
            chunk_count=math.ceil(size / CHUNK_BYTES),
            content_type="video/mp4",
        ),
    )
    with clip.path.open("rb") as f:
        for index in itertools.count():
            data = f.read(CHUNK_BYTES)
            if not data:
                return
            chunk = ClipChunk.of(job.clip_id, index, data)
            yield OutboxMessage.of(agent_id, TopicKind.CLIP_CHUNKS, chunk)


def recording_covers(index: Index, camera: str, to_us: int) -> bool:
    """Whether the recording's written history (segments, gaps, indexed frames) reaches to_us."""
    end = index.coverage_end(camera, STREAM)
    if end is not None and end >= to_us:
        return True
    return bool(index.frames_between(camera, STREAM, to_us, to_us + LOOKAHEAD_US))


class ClipWorker:
    """One thread makes the promised clips in order and queues them in the outbox."""

    def __init__(
        self,
        data_dir: Path,
        agent_id: str,
        outbox: Outbox,
        on_queued: Callable[[], None],
        on_ack: Callable[[CommandAck], None],
        wait_margin_s: float = WAIT_MARGIN_S,
    ) -> None:
        self.data_dir, self.agent_id, self.outbox = data_dir, agent_id, outbox
        self.on_queued, self.on_ack = on_queued, on_ack
        self.wait_margin_s = wait_margin_s
        self.jobs = ClipJobs.open(data_dir)
        self._clips_dir = data_dir / "clips"
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="fleet-clips", daemon=True)

    def start(self) -> None:
        self._clips_dir.mkdir(parents=True, exist_ok=True)
        self._thread.start()

    def stop(self) -> None:
        """Jobs not finished stay written down and resume at the next start."""
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(30)
        self.jobs.close()

    def schedule(self, job: ClipJob) -> None:
        """Promise a clip: pin its recording, write the job down, wake the worker.

        ClipRequestError for a clip ending too far ahead (the worker makes clips in order).
        """
        if job.to_us > now_us() + MAX_AHEAD_US:
            raise ClipRequestError(f"a clip may end at most {MAX_AHEAD_US // 1_000_000} s ahead")
        with Index.open(self.data_dir) as index:
            index.add_pin(Pin(str(job.clip_id), job.camera, STREAM, job.from_us, job.to_us))
        self.jobs.add(job)
        self._wake.set()

    def _run(self) -> None:
        with Index.open(self.data_dir) as index:
            while not self._stop.is_set():
                self._wake.clear()
                try:
                    for job in self.jobs.pending():
                        if not self._make(index, job):
                            return  # stopping
                except Exception:  # e.g. a full disk: the jobs stay, tried again
                    log.exception("clip worker failed; retrying")
                self._wake.wait(1.0)

    def _make(self, index: Index, job: ClipJob) -> bool:
        """Wait for the recording, make the clip, queue it (and the ack); False if stopping."""
        deadline = job.to_us / 1e6 + self.wait_margin_s
        recorded = STREAM in index.streams(job.camera)  # never recorded: nothing to wait for
        while (
            recorded
            and not recording_covers(index, job.camera, job.to_us)
            and time.time() < deadline
        ):
            if self._stop.wait(POLL_S):
                return False
        out = self._clips_dir / f"{job.clip_id}.mp4"
        try:
            clip: ClipResult | None = extract_clip(
                index, job.camera, STREAM, job.from_us, job.to_us, out
            )
            error = None
        except ClipError as exc:
            clip, error = None, str(exc)
            log.warning("clip %s of %s not made: %s", job.clip_id, job.camera, error)
        try:
            messages = clip_messages(self.agent_id, job, clip) if clip else iter(())
            ack = None
            if job.command_id is not None:
                ack = CommandAck(command_id=job.command_id, ts=now_us(), ok=clip is not None,
                                 error=error, clip_id=job.clip_id if clip else None)  # fmt: skip
                ack_message = OutboxMessage.of(self.agent_id, TopicKind.ACKS, ack)
                messages = itertools.chain(messages, [ack_message])
            queued = self.outbox.put_all(messages)
        finally:
            out.unlink(missing_ok=True)
        with contextlib.suppress(MediaIndexError):  # never pinned (a crash came between)
            index.mark_delivered(str(job.clip_id))
        self.jobs.done(job.clip_id)
        log.info("clip %s of %s queued (%d messages)", job.clip_id, job.camera, queued)
        self.on_queued()
        if ack is not None:
            self.on_ack(ack)
        return True


def _str(value: UUID | None) -> str | None:
    return None if value is None else str(value)


def _uuid(value: str | None) -> UUID | None:
    return None if value is None else UUID(value)
