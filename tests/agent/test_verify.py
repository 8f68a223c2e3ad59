"""Verification: the recording is what the detector saw, and nobody changed it since."""

from __future__ import annotations

import hashlib
from pathlib import Path

import av
import numpy as np
import pytest
from test_recording import (
    T0,
    Disk,
    decoded_lumas,
    demuxed,
    info_of,
    record,
    stamp_of,
    stamped,
)

from agent.recording.chain import verify_chain
from agent.recording.index import Audit, Index
from agent.recording.recorder import Recorder
from agent.recording.retention import apply_retention
from agent.recording.verify import VerifyError, luma_sha256, verify


def audited_recording(data_dir: Path, seconds: int = 6) -> Index:
    """Record a clip and audit every frame with the hash of its packet decoded directly."""
    stream, packets = demuxed(seconds)
    sps = stamped(packets, info_of(stream))
    index = record(data_dir, sps)
    lumas = decoded_lumas(*demuxed(seconds))
    index.add_audits(
        Audit("cam1", "main", sp.stamp.seq, sp.stamp.capture_us, luma)
        for sp, luma in zip(sps, lumas, strict=True)
    )
    return index


def test_every_recorded_frame_is_the_frame_the_detector_saw(tmp_path: Path) -> None:
    audited_recording(tmp_path)
    report = verify(tmp_path, "cam1")
    assert report.ok, report
    assert report.frames_checked == 90
    assert not (report.mismatches or report.missing or report.broken_links or report.known_gaps)


def test_a_time_range_checks_only_its_frames(tmp_path: Path) -> None:
    audited_recording(tmp_path)
    report = verify(tmp_path, "cam1", stamp_of(20), stamp_of(39))
    assert report.ok and report.frames_checked == 20


def test_a_wrong_audit_hash_is_a_mismatch(tmp_path: Path) -> None:
    index = audited_recording(tmp_path)
    index.add_audits([Audit("cam1", "main", 100, stamp_of(50), "0" * 64)])  # seq 100 is not 50
    index.add_audits([Audit("cam1", "main", 51, stamp_of(51), "f" * 64)])
    report = verify(tmp_path, "cam1", stamp_of(50), stamp_of(51))
    assert not report.ok
    kinds = sorted((m.seq, m.detail.split()[0]) for m in report.mismatches)
    assert kinds == [(51, "luma")]
    assert [a.seq for a in report.missing] == [100]  # no frame 100 anywhere near that stamp


def test_a_flipped_byte_is_detected(tmp_path: Path) -> None:
    index = audited_recording(tmp_path)
    seg = index.segments("cam1")[1]
    path = index.resolve(seg.path)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01  # inside the frame data
    path.write_bytes(bytes(data))
    chain = verify_chain(index, "cam1", "main")
    assert chain.kinds() == {"altered"} and chain.problems[0].segment_id == seg.id
    report = verify(tmp_path, "cam1")
    assert not report.ok and [p.kind for p in report.broken_links] == ["altered"]
    assert report.mismatches  # the decoded picture changed too
    assert all(seg.start_us <= m.stamp_us < (seg.end_us or 0) for m in report.mismatches)


def test_a_deleted_segment_is_detected(tmp_path: Path) -> None:
    index = audited_recording(tmp_path)
    seg = index.segments("cam1")[0]
    index.resolve(seg.path).unlink()
    report = verify(tmp_path, "cam1")
    assert [(p.kind, p.segment_id) for p in report.broken_links] == [("deleted", seg.id)]
    assert len(report.missing) == seg.frames and report.frames_checked == 90 - seg.frames


def test_swapped_segment_files_are_reordered(tmp_path: Path) -> None:
    index = audited_recording(tmp_path)
    a, b = (index.resolve(s.path) for s in index.segments("cam1")[:2])
    data_a, data_b = a.read_bytes(), b.read_bytes()
    a.write_bytes(data_b)
    b.write_bytes(data_a)
    chain = verify_chain(index, "cam1", "main")
    assert [p.kind for p in chain.problems] == ["reordered", "reordered"]


def test_edited_index_records_break_the_chain(tmp_path: Path) -> None:
    index = audited_recording(tmp_path)
    _, second, third = index.segments("cam1")
    conn = index.db.conn
    with conn:  # move the second segment before the first
        conn.execute("UPDATE segments SET start_us = ? WHERE id = ?", (T0 - 10**6, second.id))
    assert verify_chain(index, "cam1", "main").kinds() == {"reordered"}
    with conn:
        conn.execute("UPDATE segments SET start_us = ? WHERE id = ?", (second.start_us, second.id))
        conn.execute("DELETE FROM segments WHERE id = ?", (second.id,))
    chain = verify_chain(index, "cam1", "main")
    assert [(p.kind, p.segment_id) for p in chain.problems] == [("missing", third.id)]
    with conn:  # hide the removal by renumbering: the hash does not follow
        conn.execute("UPDATE segments SET link = 2 WHERE id = ?", (third.id,))
    chain = verify_chain(index, "cam1", "main")
    assert [(p.kind, p.segment_id) for p in chain.problems] == [("altered", third.id)]


def test_retention_is_not_tampering(tmp_path: Path) -> None:
    index = audited_recording(tmp_path)
    first = index.segments("cam1")[0]
    deleted = apply_retention(index, (first.end_us or 0) + 1, max_age_s=0.0, budget_bytes=None)
    assert deleted == [s.id for s in index.segments("cam1", status="deleted")]
    # Retention at that moment takes exactly the segments that had ended by then.
    assert deleted == [first.id]
    report = verify(tmp_path, "cam1")
    assert report.ok, report
    assert report.expired == first.frames and report.frames_checked == 90 - first.frames


def test_frames_lost_to_a_full_disk_are_in_a_known_gap(tmp_path: Path) -> None:
    stream, packets = demuxed(8)
    sps = stamped(packets, info_of(stream))
    disk = Disk(free=40_000)
    index = Index.open(tmp_path)
    recorder = Recorder(tmp_path, index, 2.0, opener=disk)
    for i, sp in enumerate(sps):
        if i == 70:
            disk.free = 10**9
        recorder.push(sp)
    recorder.close()
    lumas = decoded_lumas(*demuxed(8))
    index.add_audits(
        Audit("cam1", "main", sp.stamp.seq, sp.stamp.capture_us, luma)
        for sp, luma in zip(sps, lumas, strict=True)
    )
    report = verify(tmp_path, "cam1")
    assert report.ok, report
    (gap,) = report.known_gaps
    assert report.in_gaps == sum(gap.start_us <= sp.stamp.capture_us < gap.end_us for sp in sps)
    assert report.frames_checked + report.in_gaps == len(sps)


def test_verify_needs_an_index(tmp_path: Path) -> None:
    with pytest.raises(VerifyError, match="no media index"):
        verify(tmp_path, "cam1")


@pytest.mark.parametrize(("width", "padded"), [(100, True), (128, False)])
def test_luma_hash_skips_line_padding(width: int, padded: bool) -> None:
    rng = np.random.default_rng(1)
    frame = av.VideoFrame.from_ndarray(
        rng.integers(0, 256, (90, width, 3), dtype=np.uint8), format="rgb24"
    ).reformat(format="yuv420p")
    plane = frame.planes[0]
    assert (plane.line_size > plane.width) == padded  # or the case proves nothing
    rows = np.frombuffer(plane, np.uint8).reshape(-1, plane.line_size)[: plane.height]
    visible = np.ascontiguousarray(rows[:, : plane.width])
    assert luma_sha256(frame) == hashlib.sha256(visible.tobytes()).hexdigest()
    with pytest.raises(VerifyError, match="rgb24"):
        luma_sha256(frame.reformat(format="rgb24"))
