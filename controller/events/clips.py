"""Clips sent by agents as a manifest and chunks, assembled and checked before they are served.

Manifest and chunks travel on different topics, so chunks may come first, and any of them more
than once. Parts wait on disk (`ClipParts`) until the manifest is known and every chunk is
there; then the clip is assembled, checked against the manifest's size and sha256 and moved to
ROOT/<clip_id>.mp4 in one rename, so a served clip is always whole. What is known about each
clip is in ROOT/clips.db.

The MQTT link calls `manifest` and `chunk` from its thread while HTTP threads call `info` and
`path`: changes are serialised by one lock; reads go to the database without waiting for it.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Final
from uuid import UUID

import sqlite_utils

from controller.events.clip_info import ClipInfo, ClipRejected, ClipState, expected_chunk_size
from controller.events.clip_parts import ClipParts
from controller.events.database import Database
from fleet.messages import ClipChunk, ClipManifest, encode_message, parse_message

log = logging.getLogger("camfleet.controller.clips")

CLIPS_FILE: Final = "clips.db"
PARTS_DIR: Final = ".parts"
CONTENT_TYPE: Final = "video/mp4"
MAX_CLIP_BYTES: Final = 1024 * 1024 * 1024
PART_TTL_S: Final = 24 * 3600.0  # an agent's outbox may hold the rest of a clip through an outage

_COLUMNS: Final = (
    "clip_id, agent_id, state, reason, manifest, chunks_received, first_seen_us, updated_us,"
    " completed_us"
)


class ClipStore:
    def __init__(
        self,
        root: Path,
        *,
        on_complete: Callable[[ClipInfo], None] = lambda info: None,
        max_clip_bytes: int = MAX_CLIP_BYTES,
        part_ttl_s: float = PART_TTL_S,
    ) -> None:
        """`on_complete` is called (outside the store's lock) whenever a manifest or chunk finds
        its clip complete, repeats included, so it must be idempotent: that is what lets it
        catch up after a crash between assembling a clip and recording it elsewhere."""
        root.mkdir(parents=True, exist_ok=True)
        self.root = root
        self._on_complete = on_complete
        self._max_clip_bytes = max_clip_bytes
        self._part_ttl_us = round(part_ttl_s * 1_000_000)
        self._parts = ClipParts(root / PARTS_DIR)
        self._db = Database(root / CLIPS_FILE, _create_schema)
        self._lock = threading.Lock()
        self._resume()

    def _resume(self) -> None:
        """Finish clips whose last chunk was stored just before a crash: nothing resends it."""
        with self._db.read() as conn:
            waiting = conn.execute(
                "SELECT clip_id, updated_us FROM clips"
                " WHERE state = 'pending' AND manifest IS NOT NULL"
            ).fetchall()
        for clip_id, updated_us in waiting:
            with self._lock:
                info = self._advance(UUID(clip_id), updated_us)
            self._announce(info)

    def close(self) -> None:
        self._db.close()

    # -- receiving --------------------------------------------------------------------------------

    def manifest(self, agent_id: str, m: ClipManifest, now_us: int) -> ClipInfo:
        """Take a clip's manifest; raises ClipRejected if it cannot be accepted."""
        with self._lock:
            info = self._take_manifest(agent_id, m, now_us)
        return self._announce(info)

    def chunk(self, agent_id: str, c: ClipChunk, now_us: int) -> ClipInfo:
        """Take one chunk; raises ClipRejected if it does not fit the clip."""
        with self._lock:
            info = self._take_chunk(agent_id, c, now_us)
        return self._announce(info)

    def _take_manifest(self, agent_id: str, m: ClipManifest, now_us: int) -> ClipInfo:
        clip = f"clip {m.clip_id}"
        if m.content_type != CONTENT_TYPE:
            raise ClipRejected(f"{clip}: content type {m.content_type} (only {CONTENT_TYPE})")
        if m.size == 0:
            raise ClipRejected(f"{clip}: empty clip")
        if m.size > self._max_clip_bytes:
            raise ClipRejected(f"{clip}: {m.size} bytes, more than {self._max_clip_bytes}")
        known = self._owned(agent_id, m.clip_id)
        if known is not None and known.manifest is not None:
            if known.manifest != m:
                raise ClipRejected(f"{clip}: manifest differs from the one received first")
            return known  # a repeat
        with self._db.write() as conn:
            if known is None:
                _insert(conn, m.clip_id, agent_id, now_us, manifest=m)
            else:
                conn.execute(
                    "UPDATE clips SET manifest = ?, updated_us = ? WHERE clip_id = ?",
                    (encode_message(m).decode(), now_us, str(m.clip_id)),
                )
        self._discard_misfits(m)
        return self._advance(m.clip_id, now_us)

    def _take_chunk(self, agent_id: str, c: ClipChunk, now_us: int) -> ClipInfo:
        known = self._owned(agent_id, c.clip_id)
        if known is not None and known.state != "pending":
            return known  # a repeat after assembly, or a chunk of a clip already refused
        if known is not None and known.manifest is not None:
            problem = _misfit(known.manifest, c.index, len(c.data))
            if problem:
                raise ClipRejected(f"clip {c.clip_id}: chunk {c.index}: {problem}")
        if known is None:
            with self._db.write() as conn:
                _insert(conn, c.clip_id, agent_id, now_us, manifest=None)
        self._parts.put(c.clip_id, c.index, c.data)
        return self._advance(c.clip_id, now_us)

    def _owned(self, agent_id: str, clip_id: UUID) -> ClipInfo | None:
        """The clip as known, after checking that `agent_id` is the agent that sent it first."""
        known = self.info(clip_id)
        if known is not None and known.agent_id != agent_id:
            raise ClipRejected(f"clip {clip_id} belongs to agent {known.agent_id}, not {agent_id}")
        return known

    def _discard_misfits(self, m: ClipManifest) -> None:
        """Drop parts that arrived before the manifest and do not fit it."""
        for index, size in self._parts.sizes(m.clip_id).items():
            problem = _misfit(m, index, size)
            if problem:
                log.warning("clip %s: dropping chunk %d: %s", m.clip_id, index, problem)
                self._parts.remove(m.clip_id, index)

    def _advance(self, clip_id: UUID, now_us: int) -> ClipInfo:
        """Count the parts; assemble, check and publish the clip once all of them are here."""
        received = self._parts.count(clip_id)
        with self._db.write() as conn:
            conn.execute(
                "UPDATE clips SET chunks_received = ?, updated_us = ? WHERE clip_id = ?",
                (received, now_us, str(clip_id)),
            )
        info = self.info(clip_id)
        assert info is not None
        m = info.manifest
        if m is None or received < m.chunk_count:
            return info
        assembled, size, sha256 = self._parts.assemble(clip_id, m.chunk_count)
        if (size, sha256) != (m.size, m.sha256):
            reason = (
                f"assembled clip has {size} bytes and sha256 {sha256};"
                f" the manifest says {m.size} bytes and sha256 {m.sha256}"
            )
            log.warning("clip %s from %s is corrupt: %s", clip_id, info.agent_id, reason)
            self._parts.drop(clip_id)
            self._set_state(clip_id, "corrupt", now_us, reason=reason)
        else:
            # Rename first, record second, drop the parts last: a crash in between leaves a
            # pending clip whose next repeated chunk finishes the job.
            os.replace(assembled, self._clip_path(clip_id))
            self._set_state(clip_id, "complete", now_us)
            self._parts.drop(clip_id)
        done = self.info(clip_id)
        assert done is not None
        return done

    def _set_state(
        self, clip_id: UUID, state: ClipState, now_us: int, reason: str | None = None
    ) -> None:
        with self._db.write() as conn:
            conn.execute(
                "UPDATE clips SET state = ?, reason = ?, updated_us = ?, completed_us = ?"
                " WHERE clip_id = ?",
                (state, reason, now_us, now_us if state == "complete" else None, str(clip_id)),
            )

    def _announce(self, info: ClipInfo) -> ClipInfo:
        if info.state == "complete":
            self._on_complete(info)
        return info

    # -- housekeeping -----------------------------------------------------------------------------

    def collect_garbage(self, now_us: int) -> int:
        """Forget pending clips untouched for longer than the TTL, and parts no clip claims
        (left by a crash); the number of clips whose parts were dropped."""
        cutoff = now_us - self._part_ttl_us
        with self._lock:
            with self._db.read() as conn:
                pending = {
                    UUID(row[0]): row[1]
                    for row in conn.execute(
                        "SELECT clip_id, updated_us FROM clips WHERE state = 'pending'"
                    )
                }
            expired = [clip_id for clip_id, updated_us in pending.items() if updated_us < cutoff]
            unclaimed = [clip_id for clip_id in self._parts.held() if clip_id not in pending]
            for clip_id in expired:
                log.info("clip %s: dropping parts unfinished for over the TTL", clip_id)
            with self._db.write() as conn:
                conn.executemany(
                    "DELETE FROM clips WHERE clip_id = ?", [(str(c),) for c in expired]
                )
            for clip_id in [*expired, *unclaimed]:
                self._parts.drop(clip_id)
        return len(expired) + len(unclaimed)

    # -- serving ----------------------------------------------------------------------------------

    def info(self, clip_id: UUID) -> ClipInfo | None:
        with self._db.read() as conn:
            row = conn.execute(
                f"SELECT {_COLUMNS} FROM clips WHERE clip_id = ?", (str(clip_id),)
            ).fetchone()
        if row is None:
            return None
        fields = dict(zip(_COLUMNS.split(", "), row, strict=True))
        if fields["manifest"] is not None:
            fields["manifest"] = parse_message(fields["manifest"], ClipManifest)
        return ClipInfo.model_validate(fields)

    def path(self, clip_id: UUID) -> Path | None:
        """The clip's file, if it is complete (and still on disk)."""
        info = self.info(clip_id)
        if info is None or info.state != "complete":
            return None
        path = self._clip_path(clip_id)
        return path if path.is_file() else None

    def _clip_path(self, clip_id: UUID) -> Path:
        return self.root / f"{clip_id}.mp4"


def _misfit(m: ClipManifest, index: int, size: int) -> str | None:
    """Why a chunk cannot belong to the clip of manifest `m`, or None if it can."""
    if index >= m.chunk_count:
        return f"index {index} beyond the clip's {m.chunk_count} chunks"
    expected = expected_chunk_size(m, index)
    if size != expected:
        return f"{size} bytes where the manifest implies {expected}"
    return None


def _insert(
    conn: sqlite3.Connection,
    clip_id: UUID,
    agent_id: str,
    now_us: int,
    manifest: ClipManifest | None,
) -> None:
    conn.execute(
        "INSERT INTO clips (clip_id, agent_id, state, manifest, chunks_received, first_seen_us,"
        " updated_us) VALUES (?, ?, 'pending', ?, 0, ?, ?)",
        (
            str(clip_id),
            agent_id,
            None if manifest is None else encode_message(manifest).decode(),
            now_us,
            now_us,
        ),
    )


def _create_schema(db: sqlite_utils.Database) -> None:
    db.table("clips").create(
        {
            "clip_id": str, "agent_id": str, "state": str, "reason": str, "manifest": str,
            "chunks_received": int, "first_seen_us": int, "updated_us": int, "completed_us": int,
        },
        pk="clip_id",
        not_null=["agent_id", "state", "chunks_received", "first_seen_us", "updated_us"],
        if_not_exists=True,
    )  # fmt: skip
    db.table("clips").create_index(["state", "updated_us"], if_not_exists=True)
