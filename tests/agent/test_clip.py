"""Clips and single frames out of the recording: exact frames, exact stamps, no re-encode."""

from __future__ import annotations

from pathlib import Path

import av
import pytest
from test_recording import (
    T0,
    decoded_lumas,
    demuxed,
    ffprobe,
    file_packets,
    info_of,
    record,
    stamp_of,
    stamped,
)

from agent.recording.clip import ClipError, decode_frame_at, extract_clip
from agent.recording.index import Index
from agent.recording.verify import luma_sha256


@pytest.fixture
def recorded(tmp_path: Path) -> Index:
    """Six seconds in 2 s segments (frames 0-29, 30-59, 60-89); keyframes every 15 frames."""
    stream, packets = demuxed(6)
    return record(tmp_path / "data", stamped(packets, info_of(stream)))


def test_clip_spans_segments_from_the_keyframe_before(recorded: Index, tmp_path: Path) -> None:
    out = tmp_path / "clip.mp4"
    result = extract_clip(recorded, "cam1", "main", stamp_of(20), stamp_of(50) + 10, out)
    assert (result.first_us, result.last_us, result.frames) == (stamp_of(15), stamp_of(50), 36)
    probe = ffprobe(out)
    assert probe["codec_name"] == "h264" and int(probe["nb_read_frames"]) == 36
    originals = [bytes(p) for p in demuxed(6)[1]]
    assert file_packets(out) == originals[15:51]  # the camera's own bytes
    head = out.read_bytes()[:4096]
    assert head.find(b"moov") < head.find(b"mdat")  # faststart: playable while downloading
    with av.open(str(out)) as c:
        pts = [p.pts * p.time_base for p in c.demux(c.streams.video[0]) if p.size]
    expected = [stamp_of(i) - stamp_of(15) for i in range(15, 51)]
    assert [round(t * 1_000_000) for t in pts] == expected  # the stamps, from the clip's start


def test_clip_inside_one_gop_starts_at_its_keyframe(recorded: Index, tmp_path: Path) -> None:
    result = extract_clip(recorded, "cam1", "main", stamp_of(47), stamp_of(47), tmp_path / "c.mp4")
    assert (result.first_us, result.last_us, result.frames) == (stamp_of(45), stamp_of(47), 3)


def test_clip_from_before_the_recording_starts_at_its_start(
    recorded: Index, tmp_path: Path
) -> None:
    result = extract_clip(recorded, "cam1", "main", T0 - 10**6, stamp_of(3), tmp_path / "c.mp4")
    assert (result.first_us, result.frames) == (T0, 4)


def test_clip_without_a_recording_is_a_clip_error(recorded: Index, tmp_path: Path) -> None:
    out = tmp_path / "c.mp4"
    with pytest.raises(ClipError, match="no recording"):
        extract_clip(recorded, "cam1", "main", T0 + 10**8, T0 + 2 * 10**8, out)
    with pytest.raises(ClipError, match="ends before"):
        extract_clip(recorded, "cam1", "main", stamp_of(5), stamp_of(4), out)
    assert not out.exists() and not list(tmp_path.glob("*.part"))
    recorded.resolve(recorded.segments("cam1")[0].path).unlink()
    with pytest.raises(ClipError, match="cannot make a clip"):
        extract_clip(recorded, "cam1", "main", stamp_of(5), stamp_of(40), out)
    with pytest.raises(ClipError, match="cannot read"):
        decode_frame_at(recorded, "cam1", "main", stamp_of(5))
    assert not out.exists() and not list(tmp_path.glob("*.part"))


def test_decoded_frame_at_a_stamp_is_the_frame_that_was_stamped(recorded: Index) -> None:
    direct = decoded_lumas(*demuxed(6))
    for i in (0, 1, 14, 29, 30, 44, 59, 73, 89):  # keyframes, GOP ends, segment ends
        frame = decode_frame_at(recorded, "cam1", "main", stamp_of(i))
        assert luma_sha256(frame) == direct[i], f"frame {i}"
    near = decode_frame_at(recorded, "cam1", "main", stamp_of(40) + 20, tolerance_us=100)
    assert luma_sha256(near) == direct[40]
    with pytest.raises(ClipError, match="no recorded frame"):
        decode_frame_at(recorded, "cam1", "main", stamp_of(40) + 20)


def test_clip_stops_where_the_stream_parameters_change(tmp_path: Path) -> None:
    """The camera came back 3 s later at another size: one clip cannot hold both."""
    big, big_packets = demuxed(2)
    small, small_packets = demuxed(2, 160, 90)
    t1 = T0 + 5_000_000
    sps = stamped(big_packets, info_of(big))
    sps += stamped(small_packets, info_of(small, gen=1), first=30, t0=t1 - 2_000_000)
    index = record(tmp_path / "data", sps)
    assert [g.reason for g in index.gaps("cam1")] == ["camera_lost"]
    result = extract_clip(index, "cam1", "main", stamp_of(20), t1 + 10**6, tmp_path / "a.mp4")
    assert (result.first_us, result.last_us, result.frames) == (stamp_of(15), stamp_of(29), 15)
    assert int(ffprobe(result.path)["nb_read_frames"]) == 15
    # From inside the gap, the clip starts where recording resumed.
    result = extract_clip(index, "cam1", "main", T0 + 3_000_000, t1 + 10**6, tmp_path / "b.mp4")
    assert (result.first_us, result.frames) == (t1, 16)
    assert ffprobe(result.path)["width"] == 160
