"""The recorder: every stream's packets into keyframe-aligned segments, every frame into the index.

Use it from one thread (the fan-out's recorder consumer): it owns the index's writer connection.
`push` never raises for one stream's trouble and never waits: a failed write closes that
stream's segment, the interval goes down as a gap, and recording resumes at a later keyframe
(each keyframe is a probe); the other streams go on.

Frames are indexed one fragment late, once the muxer has written their fragment out, so the
index never points at a frame that is not in the file.
"""

from __future__ import annotations

import errno
import logging
import sqlite3
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

from agent.frames import StampedPacket
from agent.recording.chain import file_sha256
from agent.recording.index import FrameRow, Gap, GapReason, Index
from agent.recording.segmenter import Action, Segmenter, nominal_frame_us, segment_relpath
from agent.recording.writer import (
    Opener,
    SegmentWriter,
    count_readable_packets,
    cut_incomplete_fragment,
    open_exclusive,
    packet_duration_us,
)

log = logging.getLogger(__name__)

_DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT})

StreamState = Literal["idle", "recording", "waiting_keyframe", "disk_full", "error"]


class RecordingError(RuntimeError):
    """A recorder that cannot be set up, or a packet it cannot take (a stamp going backwards)."""


@dataclass(slots=True)
class StreamStats:
    """packets == recorded + before_keyframe + lost + (frames of the open fragment)."""

    packets: int = 0  # pushed
    recorded: int = 0  # on disk and indexed
    before_keyframe: int = 0  # not recordable: no segment open and not a keyframe
    lost: int = 0  # not recorded because a write failed (disk full, error)
    segments: int = 0  # closed
    state: StreamState = "idle"


@dataclass(frozen=True, slots=True)
class RecorderStats:
    streams: dict[str, StreamStats]  # "camera/stream" -> its stats
    disk_full: bool  # alarm: a stream cannot write for lack of space
    errors: int  # failures other than a full disk


@dataclass(slots=True)
class _Open:
    """The segment being written."""

    segment_id: int
    start_us: int
    writer: SegmentWriter
    rows: list[FrameRow] = field(default_factory=list)  # in the file, not yet indexed
    end_us: int = 0  # last frame's stamp + duration


@dataclass(slots=True)
class _Stream:
    camera: str
    stream: str
    segmenter: Segmenter
    # Written-down history (segments, gaps) ends here. Packets after it that are not being
    # recorded, and why, become a gap when recording resumes or the recorder closes.
    covered_until: int | None
    gap_reason: GapReason | None
    gap_detail: str = ""
    seg: _Open | None = None
    orphan: int | None = None  # a segment a failure left open in the index
    last_stamp_us: int | None = None
    interval_us: int | None = None  # between the last two stamps of this generation
    frame_us: int = 0  # duration of the last frame written
    stats: StreamStats = field(default_factory=StreamStats)


class Recorder:
    def __init__(
        self,
        data_dir: Path | str,
        index: Index,
        segment_seconds: float = 10.0,
        opener: Opener = open_exclusive,
    ) -> None:
        if Path(data_dir).resolve() != index.root:
            raise RecordingError(f"index {index.path} is not in data dir {data_dir}")
        if segment_seconds <= 0:
            raise RecordingError(f"segment_seconds must be positive, got {segment_seconds}")
        self.index = index
        self._segment_us = round(segment_seconds * 1_000_000)
        self._opener = opener
        self._streams: dict[tuple[str, str], _Stream] = {}
        self._errors = 0
        for seg in index.segments(status="recording"):  # the agent stopped without closing them
            try:
                recover_segment(index, seg.id)
            except Exception:  # left as it is, tried again at the next start
                log.exception("recorder: cannot recover segment %d (%s)", seg.id, seg.path)

    def push(self, sp: StampedPacket) -> None:
        st = self._stream(sp.info.camera, sp.info.stream)
        st.stats.packets += 1
        try:
            self._push(st, sp)
        except Exception as exc:  # one stream's failure must not stop the others
            self._fail(st, exc, sp.stamp.capture_us)

    def gap(
        self,
        camera: str,
        stream: str,
        start_us: int,
        end_us: int,
        reason: GapReason,
        detail: str = "",
    ) -> None:
        """Write down a gap someone else noticed (e.g. ingest lost the camera, and how).

        While the stream is not recording, what was pending before `start_us` goes down first,
        and the time from `end_us` until recording resumes is put down to the same reason.
        """
        gap = Gap(camera, stream, start_us, end_us, reason, detail)
        st = self._stream(camera, stream)
        if st.seg is None:
            self._write_gap(st, start_us)
        self.index.add_gap(gap)
        _cover(st, end_us)
        if st.seg is None:
            st.gap_reason, st.gap_detail = reason, "until recording resumed"

    def close(self) -> None:
        """Close open segments and write down what went unrecorded up to the last packet."""
        for st in self._streams.values():
            self._finish(st)

    def close_stream(self, camera: str, stream: str) -> None:
        """`close` for one stream, which is then forgotten: its next packet starts it afresh
        (the time between goes down as a gap), and its stats are gone."""
        st = self._streams.pop((camera, stream), None)
        if st is not None:
            self._finish(st)

    def _finish(self, st: _Stream) -> None:
        try:
            if st.seg is not None:
                self._close(st)
                st.segmenter.stopped()
            elif st.last_stamp_us is not None:
                self._write_gap(st, st.last_stamp_us + (st.interval_us or 0))
            st.stats.state = "idle"
        except Exception as exc:
            self._fail(st, exc, None)

    def stats(self) -> RecorderStats:
        # Copies: the recorder's thread keeps counting while another thread reads these.
        streams = {f"{c}/{s}": replace(st.stats) for (c, s), st in self._streams.items()}
        disk_full = any(s.state == "disk_full" for s in streams.values())
        return RecorderStats(streams, disk_full, self._errors)

    # -- per packet -------------------------------------------------------------------------------

    def _stream(self, camera: str, stream: str) -> _Stream:
        st = self._streams.get((camera, stream))
        if st is None:
            covered = self.index.coverage_end(camera, stream)
            # From the last recording to this process's first one, the agent was not recording.
            reason: GapReason | None = "agent_stopped" if covered is not None else None
            st = _Stream(camera, stream, Segmenter(self._segment_us), covered, reason)
            self._streams[(camera, stream)] = st
        return st

    def _push(self, st: _Stream, sp: StampedPacket) -> None:
        stamp = sp.stamp.capture_us
        if st.last_stamp_us is not None and stamp <= st.last_stamp_us:
            raise RecordingError(f"stamp {stamp} does not follow {st.last_stamp_us}")
        decision = st.segmenter.decide(sp.keyframe, sp.info.generation, stamp)
        fresh = decision.restarted or st.last_stamp_us is None
        st.interval_us = None if fresh else stamp - (st.last_stamp_us or 0)
        st.last_stamp_us = stamp
        if decision.action in (Action.START, Action.CLOSE) and st.seg is not None:
            self._close(st)
        if decision.restarted and st.gap_reason is None:
            st.gap_reason = "camera_lost"
            st.gap_detail = f"stream restarted (generation {sp.info.generation})"
        if decision.action is Action.START:
            self._start(st, sp)
        if decision.action in (Action.START, Action.APPEND):
            self._write(st, sp)
        elif st.stats.state in ("disk_full", "error"):
            st.stats.lost += 1
        else:
            st.stats.before_keyframe += 1
            st.stats.state = "waiting_keyframe"

    def _start(self, st: _Stream, sp: StampedPacket) -> None:
        if st.orphan is not None:
            _cover(st, recover_segment(self.index, st.orphan))
            st.orphan = None
        stamp = sp.stamp.capture_us
        rel = segment_relpath(st.camera, st.stream, stamp)
        # Exact codec parameters: ingest's copy, which outlives its connection (this packet may
        # have waited in the queue while ingest reconnected). Without one, the demuxer's stream,
        # which its caller keeps open (None for a detached packet).
        template = sp.info.template if sp.info.template is not None else sp.packet.stream
        writer = SegmentWriter(self.index.resolve(rel), sp.info, template, self._opener)
        try:
            seg_id = self.index.open_segment(st.camera, st.stream, rel, stamp, sp.info.generation)
        except BaseException:
            writer.abort()
            writer.path.unlink(missing_ok=True)
            raise
        st.seg = _Open(seg_id, stamp, writer)

    def _write(self, st: _Stream, sp: StampedPacket) -> None:
        seg = st.seg
        assert seg is not None
        stamp = sp.stamp.capture_us
        pts = stamp - seg.start_us
        # The stamp interval follows the camera's cadence, so it wins; the packet's own duration
        # (Fraction arithmetic, a third of push's time) is worked out only when there is none.
        st.frame_us = st.interval_us or nominal_frame_us(packet_duration_us(sp.packet), sp.info.fps)
        seg.writer.write(sp.packet, pts, st.frame_us, sp.keyframe)
        row = FrameRow(
            st.camera, st.stream, sp.stamp.seq, stamp, seg.segment_id,
            seg.writer.written - 1, pts, sp.keyframe,
        )  # fmt: skip
        seg.rows.append(row)
        seg.end_us = stamp + st.frame_us
        st.stats.state = "recording"
        self._index_confirmed(st, seg)

    def _index_confirmed(self, st: _Stream, seg: _Open) -> None:
        """Index the frames the writer has confirmed on disk (one batch per fragment).

        The segment's first batch ends the pending gap: only now is recording really back.
        """
        done = seg.writer.confirmed - (seg.writer.written - len(seg.rows))
        if done > 0:
            if seg.rows[0].index_in_segment == 0:
                self._write_gap(st, seg.start_us)
            self.index.add_frames(seg.rows[:done])
            del seg.rows[:done]
            st.stats.recorded += done

    def _close(self, st: _Stream) -> None:
        seg = st.seg
        assert seg is not None
        seg.writer.close()
        self._index_confirmed(st, seg)
        path = seg.writer.path
        self.index.close_segment(
            seg.segment_id, seg.end_us, seg.writer.written, path.stat().st_size, seg.writer.sha256
        )
        st.seg = None
        st.stats.segments += 1
        _cover(st, seg.end_us)

    def _write_gap(self, st: _Stream, end_us: int) -> None:
        """Write down the pending gap up to `end_us`, unless it is shorter than half a frame."""
        start, reason = st.covered_until, st.gap_reason
        if reason is not None and start is not None and end_us - start > st.frame_us // 2:
            self.index.add_gap(Gap(st.camera, st.stream, start, end_us, reason, st.gap_detail))
            st.covered_until = end_us
        st.gap_reason, st.gap_detail = None, ""

    # -- failures ---------------------------------------------------------------------------------

    def _fail(self, st: _Stream, exc: Exception, stamp_us: int | None) -> None:
        """Close what can be closed; the stream retries at its next keyframe."""
        disk_full = _is_disk_full(exc)
        state: StreamState = "disk_full" if disk_full else "error"
        if st.stats.state != state:  # once per episode: every keyframe retries
            log.error("recorder: %s/%s: %s", st.camera, st.stream, exc, exc_info=not disk_full)
        if not disk_full:
            self._errors += 1
        st.stats.state = state
        st.segmenter.stopped()
        seg, st.seg = st.seg, None
        if stamp_us is not None and not (seg and seg.rows and seg.rows[-1].stamp_us == stamp_us):
            st.stats.lost += 1  # the packet being pushed did not get into the file
        if seg is not None:
            seg.writer.abort()
            st.stats.lost += seg.writer.written - seg.writer.confirmed
            try:
                self._index_confirmed(st, seg)
                _cover(st, recover_segment(self.index, seg.segment_id))
            except Exception:  # e.g. the index's disk is full too: retried before the next start
                st.orphan = seg.segment_id
        if st.gap_reason is None:
            st.gap_reason = "disk_full" if disk_full else "recorder_error"
            st.gap_detail = str(exc)


def recover_segment(index: Index, segment_id: int) -> int | None:
    """Close a segment from what is on disk; returns its end, or None if nothing was in it.

    Keeps the frames that are both indexed and readable in the file; the last one is given
    the mean frame interval of the segment as its duration.
    """
    seg = index.segment(segment_id)
    path = index.resolve(seg.path)
    frames = index.segment_frames(segment_id)
    if path.exists():
        cut_incomplete_fragment(path)
    keep = min(len(frames), count_readable_packets(path) if path.exists() else 0)
    if keep == 0:
        path.unlink(missing_ok=True)
        index.discard_segment(segment_id)
        return None
    index.truncate_frames(segment_id, keep)
    first, last = frames[0].stamp_us, frames[keep - 1].stamp_us
    end_us = last + (round((last - first) / (keep - 1)) if keep > 1 else 0)
    index.close_segment(segment_id, end_us, keep, path.stat().st_size, file_sha256(path))
    return end_us


def _cover(st: _Stream, until: int | None) -> None:
    if until is not None:
        st.covered_until = until if st.covered_until is None else max(st.covered_until, until)


def _is_disk_full(exc: BaseException) -> bool:
    if isinstance(exc, OSError):
        return exc.errno in _DISK_FULL_ERRNOS
    return isinstance(exc, sqlite3.OperationalError) and exc.sqlite_errorcode == sqlite3.SQLITE_FULL
