"""Proof that the recording is what the detector analysed.

The detector writes an audit record (stream, seq, stamp, luma hash) for each frame it looks at;
`verify` decodes the recording again, finds each audited frame through the frame index and
compares hashes, and checks the segments' hash chain. `luma_sha256` is the one hash both sides
use.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import av

from agent.recording.chain import ChainProblem, verify_chain
from agent.recording.clip import decode_from_keyframe
from agent.recording.index import INDEX_FILE, Audit, FrameRef, Gap, Index


class VerifyError(ValueError):
    """Nothing to verify against (no index), or a frame whose luma cannot be hashed."""


def luma_sha256(frame: av.VideoFrame) -> str:
    """sha256 of the luma plane's visible pixels, row by row, without the line padding."""
    fmt = frame.format
    luma = fmt.components[0]
    if not luma.is_luma or any(c.plane == 0 for c in fmt.components[1:]):
        raise VerifyError(f"pixel format {fmt.name} has no plane of luma alone")
    plane = frame.planes[0]
    row = plane.width * ((luma.bits + 7) // 8)
    data = memoryview(plane)
    if plane.line_size == row:  # no padding (the usual widths): one pass, no per-row loop
        return hashlib.sha256(data[: row * plane.height]).hexdigest()
    digest = hashlib.sha256()
    for y in range(plane.height):
        start = y * plane.line_size
        digest.update(data[start : start + row])
    return digest.hexdigest()


@dataclass(frozen=True, slots=True)
class Mismatch:
    stream: str
    seq: int
    stamp_us: int
    audited: str  # the detector's luma hash
    recorded: str | None  # the recording's; None when the stamps already disagree
    detail: str


@dataclass(slots=True)
class VerifyReport:
    camera: str
    frames_checked: int = 0
    mismatches: list[Mismatch] = field(default_factory=list)
    missing: list[Audit] = field(default_factory=list)  # not recorded, and no gap says why
    broken_links: list[ChainProblem] = field(default_factory=list)
    known_gaps: list[Gap] = field(default_factory=list)
    in_gaps: int = 0  # audited frames inside a known gap
    expired: int = 0  # audited frames whose segment retention deleted

    @property
    def ok(self) -> bool:
        return not (self.mismatches or self.missing or self.broken_links)


def verify(
    data_dir: Path | str, camera: str, from_us: int | None = None, to_us: int | None = None
) -> VerifyReport:
    db = Path(data_dir) / INDEX_FILE
    if not db.exists():
        raise VerifyError(f"no media index at {db}")
    with Index(db) as index:
        report = VerifyReport(camera, known_gaps=index.gaps(camera, None, from_us, to_us))
        for stream in index.streams(camera):
            chain = verify_chain(index, camera, stream, from_us, to_us)
            report.broken_links.extend(chain.problems)
        found: dict[int, list[tuple[Audit, FrameRef]]] = defaultdict(list)
        for audit in index.audits(camera, from_us, to_us):
            ref = index.frame_by_seq(camera, audit.stream, audit.seq, audit.stamp_us)
            if ref is not None and ref.stamp_us == audit.stamp_us:
                found[ref.segment_id].append((audit, ref))
            # Sequence numbers restart with the agent, so a frame of another run may carry this
            # one's number: a known gap or retention is asked first, a differing stamp after.
            elif not _explained(index, report, audit):
                if ref is None:
                    report.missing.append(audit)
                else:
                    detail = f"recorded with stamp {ref.stamp_us}"
                    report.mismatches.append(_mismatch(audit, None, detail))
        for items in found.values():
            _check_segment(index, report, items)
    return report


def _explained(index: Index, report: VerifyReport, audit: Audit) -> bool:
    """Count an audited frame the recording does not hold if a known gap or retention says why."""
    at = audit.stamp_us
    if any(g.stream == audit.stream and g.start_us <= at < g.end_us for g in report.known_gaps):
        report.in_gaps += 1
    elif index.segments(
        camera=audit.camera, stream=audit.stream, status="deleted", from_us=at, to_us=at
    ):
        report.expired += 1
    else:
        return False
    return True


def _check_segment(index: Index, report: VerifyReport, items: list[tuple[Audit, FrameRef]]) -> None:
    """Decode one segment from the keyframe before its first audited frame; compare hashes."""
    first = min((ref for _, ref in items), key=lambda r: r.index_in_segment)
    wanted = {ref.pts: audit for audit, ref in items}
    try:
        with contextlib.closing(decode_from_keyframe(index, first)) as frames:
            for pts, frame in frames:
                audit = wanted.pop(pts, None)
                if audit is not None:
                    report.frames_checked += 1
                    actual = luma_sha256(frame)
                    if actual != audit.luma_sha256:
                        report.mismatches.append(_mismatch(audit, actual, "luma differs"))
                if not wanted:
                    break
    except (OSError, av.FFmpegError):
        pass  # unreadable: what is left in `wanted` is missing; the chain check says why
    report.missing.extend(wanted.values())


def _mismatch(audit: Audit, recorded: str | None, detail: str) -> Mismatch:
    return Mismatch(audit.stream, audit.seq, audit.stamp_us, audit.luma_sha256, recorded, detail)
