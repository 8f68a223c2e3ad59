"""The media index: segments, every recorded frame, gaps, audits and clip pins, in DATA/index.db.

Threading: an `Index` owns one SQLite connection and must be used from the thread that made it
(sqlite3 enforces this). The recorder's thread holds the one writer; anything else (verification,
clips, playback) opens its own `Index` on the same file — WAL lets readers run beside the writer,
and a second writer waits on the lock for up to `busy_timeout_s`.

Paths in the index are relative to the directory holding index.db (the agent's DATA dir), so the
data directory can move as a whole.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, get_args

import sqlite_utils

from agent.recording.chain import chain_link, genesis

INDEX_FILE = "index.db"

SegmentStatus = Literal["recording", "closed", "deleted"]
GapReason = Literal["camera_lost", "disk_full", "agent_stopped", "recorder_error"]
GAP_REASONS: frozenset[str] = frozenset(get_args(GapReason))


class MediaIndexError(ValueError):
    """A request the index cannot satisfy (unknown segment, bad gap, wrong state)."""


@dataclass(frozen=True, slots=True)
class SegmentRow:
    id: int
    camera: str
    stream: str
    path: str  # relative to the index's root
    start_us: int
    end_us: int | None  # last frame stamp + its duration; None while recording
    frames: int
    bytes: int
    sha256: str | None
    link: int | None  # position in the camera-stream's hash chain, from 1
    chain: str | None
    status: SegmentStatus
    generation: int


@dataclass(frozen=True, slots=True)
class FrameRow:
    """One recorded frame as the recorder inserts it."""

    camera: str
    stream: str
    seq: int
    stamp_us: int
    segment_id: int
    index_in_segment: int
    pts: int  # µs from the segment's start, as written to the file
    keyframe: bool


@dataclass(frozen=True, slots=True)
class FrameRef:
    """A recorded frame and where to find it."""

    camera: str
    stream: str
    seq: int
    stamp_us: int
    segment_id: int
    index_in_segment: int
    pts: int
    keyframe: bool
    path: Path  # absolute


@dataclass(frozen=True, slots=True)
class Gap:
    """An interval with no recording, and why."""

    camera: str
    stream: str
    start_us: int
    end_us: int
    reason: GapReason
    detail: str = ""

    def __post_init__(self) -> None:
        if self.reason not in GAP_REASONS:
            reasons = ", ".join(sorted(GAP_REASONS))
            raise MediaIndexError(f"gap reason must be one of {reasons}, got {self.reason!r}")
        if self.end_us <= self.start_us:
            raise MediaIndexError(f"gap must end after it starts: {self.start_us}..{self.end_us}")


@dataclass(frozen=True, slots=True)
class Audit:
    """What the detector saw: the luma hash of the frame it analysed."""

    camera: str
    stream: str
    seq: int
    stamp_us: int
    luma_sha256: str


@dataclass(frozen=True, slots=True)
class Pin:
    """An event clip's claim on recordings; retention keeps them until it is delivered."""

    clip_id: str
    camera: str
    stream: str
    from_us: int
    to_us: int
    delivered: bool = False

    def __post_init__(self) -> None:
        if self.to_us < self.from_us:
            raise MediaIndexError(f"pin {self.clip_id!r} ends before it starts")


_SEGMENT_COLS = (
    "id, camera, stream, path, start_us, end_us, frames, bytes, sha256, link, chain, status,"
    " generation"
)
_FRAME_JOIN = (
    "SELECT f.camera, f.stream, f.seq, f.stamp_us, f.segment_id, f.index_in_segment, f.pts,"
    " f.keyframe, s.path FROM frames f JOIN segments s ON s.id = f.segment_id"
)


class Index:
    def __init__(
        self, path: Path | str, busy_timeout_s: float = 5.0, handed_between_threads: bool = False
    ) -> None:
        """`handed_between_threads`: used by one thread at a time, but not always the same one
        (an HTTP request's dependency opens it, the route and the teardown may run elsewhere)."""
        self.path = Path(path)
        self.root = self.path.parent.resolve()
        self._conn = sqlite3.connect(
            self.path, timeout=busy_timeout_s, check_same_thread=not handed_between_threads
        )
        self.db = sqlite_utils.Database(self._conn)
        self.db.enable_wal()
        # WAL + NORMAL: a power cut may lose the last transactions, never corrupts; recovery
        # trusts only frames that are both indexed and on disk.
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._create_schema()

    @classmethod
    def open(cls, data_dir: Path | str, handed_between_threads: bool = False) -> Index:
        Path(data_dir).mkdir(parents=True, exist_ok=True)
        return cls(Path(data_dir) / INDEX_FILE, handed_between_threads=handed_between_threads)

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Index:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve(self, rel_path: str) -> Path:
        return self.root / rel_path

    # -- segments ---------------------------------------------------------------------------------

    def open_segment(
        self, camera: str, stream: str, rel_path: str, start_us: int, generation: int
    ) -> int:
        with self._tx():
            cur = self._conn.execute(
                "INSERT INTO segments (camera, stream, path, start_us, frames, bytes, status,"
                " generation) VALUES (?, ?, ?, ?, 0, 0, 'recording', ?)",
                (camera, stream, rel_path, start_us, generation),
            )
        assert cur.lastrowid is not None
        return cur.lastrowid

    def close_segment(
        self, segment_id: int, end_us: int, frames: int, size: int, sha256: str
    ) -> SegmentRow:
        """Close a recording segment and append it to its camera-stream's hash chain."""
        seg = self.segment(segment_id)
        if seg.status != "recording":
            raise MediaIndexError(f"segment {segment_id} is {seg.status}, not recording")
        with self._tx():
            prev = self._conn.execute(
                "SELECT link, chain FROM segments WHERE camera = ? AND stream = ?"
                " AND link IS NOT NULL ORDER BY link DESC LIMIT 1",
                (seg.camera, seg.stream),
            ).fetchone()
            link, prev_chain = (
                (prev[0] + 1, prev[1]) if prev else (1, genesis(seg.camera, seg.stream))
            )
            self._conn.execute(
                "UPDATE segments SET end_us = ?, frames = ?, bytes = ?, sha256 = ?, link = ?,"
                " chain = ?, status = 'closed' WHERE id = ?",
                (end_us, frames, size, sha256, link, chain_link(prev_chain, sha256), segment_id),
            )
        return self.segment(segment_id)

    def discard_segment(self, segment_id: int) -> None:
        """Forget a segment that never got a frame to disk (it was never chained)."""
        with self._tx():
            self._conn.execute("DELETE FROM frames WHERE segment_id = ?", (segment_id,))
            self._conn.execute("DELETE FROM segments WHERE id = ? AND link IS NULL", (segment_id,))

    def mark_deleted(self, segment_ids: Sequence[int]) -> None:
        """Retention removed these segments: keep their chain links, drop their frames."""
        with self._tx():
            self._conn.executemany(
                "UPDATE segments SET status = 'deleted' WHERE id = ? AND status = 'closed'",
                [(i,) for i in segment_ids],
            )
            self._conn.executemany(
                "DELETE FROM frames WHERE segment_id = ?", [(i,) for i in segment_ids]
            )

    def segment(self, segment_id: int) -> SegmentRow:
        row = self._conn.execute(
            f"SELECT {_SEGMENT_COLS} FROM segments WHERE id = ?", (segment_id,)
        ).fetchone()
        if row is None:
            raise MediaIndexError(f"no segment {segment_id}")
        return SegmentRow(*row)

    def segments(
        self,
        camera: str | None = None,
        stream: str | None = None,
        status: SegmentStatus | None = None,
        from_us: int | None = None,
        to_us: int | None = None,
    ) -> list[SegmentRow]:
        """Segments matching every given filter, overlapping [from_us, to_us], oldest first."""
        where, args = _where(
            ("camera = ?", camera),
            ("stream = ?", stream),
            ("status = ?", status),
            ("coalesce(end_us, 9223372036854775807) > ?", from_us),
            ("start_us <= ?", to_us),
        )
        rows = self._conn.execute(
            f"SELECT {_SEGMENT_COLS} FROM segments{where} ORDER BY start_us, id", args
        )
        return [SegmentRow(*r) for r in rows]

    def recorded_bytes(self) -> int:
        """Bytes of every segment still on disk."""
        row = self._conn.execute(
            "SELECT coalesce(sum(bytes), 0) FROM segments WHERE status != 'deleted'"
        ).fetchone()
        return int(row[0])

    def chain_rows(self, camera: str, stream: str) -> list[SegmentRow]:
        """The camera-stream's chained segments in chain order."""
        rows = self._conn.execute(
            f"SELECT {_SEGMENT_COLS} FROM segments WHERE camera = ? AND stream = ?"
            " AND link IS NOT NULL ORDER BY link",
            (camera, stream),
        )
        return [SegmentRow(*r) for r in rows]

    def streams(self, camera: str) -> list[str]:
        rows = self._conn.execute(
            "SELECT DISTINCT stream FROM segments WHERE camera = ?"
            " UNION SELECT DISTINCT stream FROM audits WHERE camera = ? ORDER BY 1",
            (camera, camera),
        )
        return [r[0] for r in rows]

    def coverage_end(self, camera: str, stream: str) -> int | None:
        """Where the stream's written history (segments and gaps) ends, or None if it has none."""
        row = self._conn.execute(
            "SELECT max(e) FROM (SELECT max(end_us) AS e FROM segments WHERE camera = ?"
            " AND stream = ? UNION ALL SELECT max(end_us) FROM gaps WHERE camera = ?"
            " AND stream = ?)",
            (camera, stream, camera, stream),
        ).fetchone()
        return None if row[0] is None else int(row[0])

    # -- frames -----------------------------------------------------------------------------------

    def add_frames(self, rows: Sequence[FrameRow]) -> None:
        """One transaction per batch: the recorder calls this once per fragment."""
        with self._tx():
            self._conn.executemany(
                "INSERT INTO frames (camera, stream, seq, stamp_us, segment_id, index_in_segment,"
                " pts, keyframe) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    (r.camera, r.stream, r.seq, r.stamp_us, r.segment_id, r.index_in_segment,
                     r.pts, int(r.keyframe))
                    for r in rows
                ],
            )  # fmt: skip

    def truncate_frames(self, segment_id: int, keep: int) -> None:
        with self._tx():
            self._conn.execute(
                "DELETE FROM frames WHERE segment_id = ? AND index_in_segment >= ?",
                (segment_id, keep),
            )

    def segment_frames(self, segment_id: int) -> list[FrameRef]:
        rows = self._conn.execute(
            f"{_FRAME_JOIN} WHERE f.segment_id = ? ORDER BY f.index_in_segment", (segment_id,)
        )
        return [self._frame(r) for r in rows]

    def frame_at(
        self, camera: str, stream: str, stamp_us: int, tolerance_us: int = 0
    ) -> FrameRef | None:
        """The frame stamped `stamp_us`, else the nearest within `tolerance_us`."""
        if tolerance_us < 0:
            raise MediaIndexError(f"tolerance must be >= 0, got {tolerance_us}")
        before = self._one_frame(
            "f.stamp_us <= ? ORDER BY f.stamp_us DESC", camera, stream, stamp_us
        )
        if before is not None and before.stamp_us == stamp_us:
            return before
        after = self._one_frame("f.stamp_us > ? ORDER BY f.stamp_us", camera, stream, stamp_us)
        near = [f for f in (before, after) if f and abs(f.stamp_us - stamp_us) <= tolerance_us]
        return min(near, key=lambda f: abs(f.stamp_us - stamp_us), default=None)

    def keyframe_at_or_before(self, camera: str, stream: str, stamp_us: int) -> FrameRef | None:
        return self._one_frame(
            "f.keyframe = 1 AND f.stamp_us <= ? ORDER BY f.stamp_us DESC", camera, stream, stamp_us
        )

    def first_keyframe_after(self, camera: str, stream: str, stamp_us: int) -> FrameRef | None:
        return self._one_frame(
            "f.keyframe = 1 AND f.stamp_us > ? ORDER BY f.stamp_us", camera, stream, stamp_us
        )

    def frame_by_seq(self, camera: str, stream: str, seq: int, stamp_us: int) -> FrameRef | None:
        """The frame numbered `seq`; sequence numbers may restart, so the nearest stamp wins."""
        row = self._conn.execute(
            f"{_FRAME_JOIN} WHERE f.camera = ? AND f.stream = ? AND f.seq = ?"
            " ORDER BY abs(f.stamp_us - ?) LIMIT 1",
            (camera, stream, seq, stamp_us),
        ).fetchone()
        return None if row is None else self._frame(row)

    def frames_between(self, camera: str, stream: str, from_us: int, to_us: int) -> list[FrameRef]:
        rows = self._conn.execute(
            f"{_FRAME_JOIN} WHERE f.camera = ? AND f.stream = ? AND f.stamp_us BETWEEN ? AND ?"
            " ORDER BY f.stamp_us",
            (camera, stream, from_us, to_us),
        )
        return [self._frame(r) for r in rows]

    # -- gaps, audits, pins -----------------------------------------------------------------------

    def add_gap(self, gap: Gap) -> None:
        with self._tx():
            self._conn.execute(
                "INSERT INTO gaps (camera, stream, start_us, end_us, reason, detail)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (gap.camera, gap.stream, gap.start_us, gap.end_us, gap.reason, gap.detail),
            )

    def gaps(
        self,
        camera: str,
        stream: str | None = None,
        from_us: int | None = None,
        to_us: int | None = None,
    ) -> list[Gap]:
        where, args = _where(
            ("camera = ?", camera),
            ("stream = ?", stream),
            ("end_us > ?", from_us),
            ("start_us <= ?", to_us),
        )
        rows = self._conn.execute(
            f"SELECT camera, stream, start_us, end_us, reason, detail FROM gaps{where}"
            " ORDER BY start_us",
            args,
        )
        return [Gap(*r) for r in rows]

    def add_audits(self, audits: Iterable[Audit]) -> None:
        with self._tx():
            self._conn.executemany(
                "INSERT INTO audits (camera, stream, seq, stamp_us, luma_sha256)"
                " VALUES (?, ?, ?, ?, ?)",
                [(a.camera, a.stream, a.seq, a.stamp_us, a.luma_sha256) for a in audits],
            )

    def audits(
        self, camera: str, from_us: int | None = None, to_us: int | None = None
    ) -> list[Audit]:
        where, args = _where(
            ("camera = ?", camera), ("stamp_us >= ?", from_us), ("stamp_us <= ?", to_us)
        )
        rows = self._conn.execute(
            f"SELECT camera, stream, seq, stamp_us, luma_sha256 FROM audits{where}"
            " ORDER BY stream, stamp_us",
            args,
        )
        return [Audit(*r) for r in rows]

    def add_pin(self, pin: Pin) -> None:
        with self._tx():
            self._conn.execute(
                "INSERT OR REPLACE INTO pins (clip_id, camera, stream, from_us, to_us, delivered)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (pin.clip_id, pin.camera, pin.stream, pin.from_us, pin.to_us, int(pin.delivered)),
            )

    def mark_delivered(self, clip_id: str) -> None:
        with self._tx():
            cur = self._conn.execute("UPDATE pins SET delivered = 1 WHERE clip_id = ?", (clip_id,))
        if cur.rowcount == 0:
            raise MediaIndexError(f"no pin for clip {clip_id!r}")

    def pins(self) -> list[Pin]:
        rows = self._conn.execute(
            "SELECT clip_id, camera, stream, from_us, to_us, delivered FROM pins ORDER BY from_us"
        )
        return [Pin(r[0], r[1], r[2], r[3], r[4], bool(r[5])) for r in rows]

    # -- internals --------------------------------------------------------------------------------

    @contextmanager
    def _tx(self) -> Iterator[None]:
        with self._conn:
            yield

    def _one_frame(
        self, cond_order: str, camera: str, stream: str, stamp_us: int
    ) -> FrameRef | None:
        row = self._conn.execute(
            f"{_FRAME_JOIN} WHERE f.camera = ? AND f.stream = ? AND {cond_order} LIMIT 1",
            (camera, stream, stamp_us),
        ).fetchone()
        return None if row is None else self._frame(row)

    def _frame(self, row: Sequence[Any]) -> FrameRef:
        camera, stream, seq, stamp_us, segment_id, index_in_segment, pts, key, path = row
        return FrameRef(
            camera, stream, seq, stamp_us, segment_id, index_in_segment, pts, bool(key),
            self.resolve(path),
        )  # fmt: skip

    def _create_schema(self) -> None:
        db = self.db
        db.table("segments").create(
            {
                "id": int, "camera": str, "stream": str, "path": str, "start_us": int,
                "end_us": int, "frames": int, "bytes": int, "sha256": str, "link": int,
                "chain": str, "status": str, "generation": int,
            },
            pk="id",
            not_null=["camera", "stream", "path", "start_us", "frames", "bytes", "status"],
            if_not_exists=True,
        )  # fmt: skip
        db.table("segments").create_index(["camera", "stream", "start_us"], if_not_exists=True)
        db.table("segments").create_index(
            ["camera", "stream", "link"], unique=True, if_not_exists=True
        )
        db.table("segments").create_index(["status"], if_not_exists=True)
        db.table("frames").create(
            {
                "camera": str, "stream": str, "seq": int, "stamp_us": int, "segment_id": int,
                "index_in_segment": int, "pts": int, "keyframe": int,
            },
            not_null=["camera", "stream", "seq", "stamp_us", "segment_id", "index_in_segment"],
            if_not_exists=True,
        )  # fmt: skip
        # Stamps are looked up by time, audits by sequence number; deletions go by segment.
        db.table("frames").create_index(["camera", "stream", "stamp_us"], if_not_exists=True)
        db.table("frames").create_index(["camera", "stream", "seq"], if_not_exists=True)
        db.table("frames").create_index(["segment_id", "index_in_segment"], if_not_exists=True)
        db.table("gaps").create(
            {
                "id": int, "camera": str, "stream": str, "start_us": int, "end_us": int,
                "reason": str, "detail": str,
            },
            pk="id",
            not_null=["camera", "stream", "start_us", "end_us", "reason"],
            if_not_exists=True,
        )  # fmt: skip
        db.table("gaps").create_index(["camera", "stream", "start_us"], if_not_exists=True)
        db.table("audits").create(
            {"camera": str, "stream": str, "seq": int, "stamp_us": int, "luma_sha256": str},
            not_null=["camera", "stream", "seq", "stamp_us", "luma_sha256"],
            if_not_exists=True,
        )
        db.table("audits").create_index(["camera", "stamp_us"], if_not_exists=True)
        db.table("pins").create(
            {
                "clip_id": str, "camera": str, "stream": str, "from_us": int, "to_us": int,
                "delivered": int,
            },
            pk="clip_id",
            not_null=["camera", "stream", "from_us", "to_us", "delivered"],
            if_not_exists=True,
        )  # fmt: skip


def _where(*conds: tuple[str, object | None]) -> tuple[str, list[object]]:
    """A WHERE clause from the conditions whose value is not None."""
    used = [(sql, value) for sql, value in conds if value is not None]
    if not used:
        return "", []
    return " WHERE " + " AND ".join(sql for sql, _ in used), [value for _, value in used]
