"""The recorder and its media index, fed the way ingest feeds it: demuxed PyAV packets, stamped.

The media helpers at the top are shared by test_verify, test_clip and test_retention.
"""

from __future__ import annotations

import errno
import functools
import io
import json
import sqlite3
import struct
import subprocess
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, BinaryIO

import av
import pytest
from conftest import require_tool
from interop.media import make_h264_mp4

from agent.frames import Stamp, StampedPacket, StreamInfo
from agent.ingest.source import detached_template
from agent.recording.chain import file_sha256, verify_chain
from agent.recording.index import FrameRow, Gap, Index, MediaIndexError
from agent.recording.recorder import Recorder
from agent.recording.segmenter import SegmentPathError, segment_relpath
from agent.recording.verify import luma_sha256
from agent.recording.writer import count_readable_packets, cut_incomplete_fragment, open_exclusive

FPS = 15
GOP = 15
T0 = 1_714_564_800_000_000  # 2024-05-01T12:00:00Z


def stamp_of(i: int, t0: int = T0) -> int:
    return t0 + i * 1_000_000 // FPS


@functools.cache
def _clip_bytes(seconds: int, width: int, height: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = make_h264_mp4(Path(tmp) / "clip.mp4", width, height, FPS, seconds, GOP)
        return path.read_bytes()


def demuxed(
    seconds: int = 6, width: int = 320, height: int = 180
) -> tuple[av.video.stream.VideoStream, list[av.Packet[Any]]]:
    """A fresh demux of a test clip (15 fps, a keyframe every 15 frames, no B-frames)."""
    container = av.open(io.BytesIO(_clip_bytes(seconds, width, height)))
    stream = container.streams.video[0]
    return stream, [p for p in container.demux(stream) if p.size]


def info_of(
    stream: av.video.stream.VideoStream, camera: str = "cam1", name: str = "main", gen: int = 0
) -> StreamInfo:
    ctx = stream.codec_context
    return StreamInfo(
        camera, name, "h264", ctx.width, ctx.height, stream.time_base, ctx.extradata, FPS, gen
    )


def stamped(
    packets: Sequence[av.Packet[Any]], info: StreamInfo, first: int = 0, t0: int = T0
) -> list[StampedPacket]:
    """Packet k gets seq first+k and the stamp of frame first+k after t0."""
    return [
        StampedPacket(info, Stamp(first + k, stamp_of(first + k, t0), True, False), p,
                      p.is_keyframe, p.pts)
        for k, p in enumerate(packets)
    ]  # fmt: skip


def decoded_lumas(
    stream: av.video.stream.VideoStream, packets: Sequence[av.Packet[Any]]
) -> list[str]:
    """Luma hashes of the packets decoded directly, as the detector would."""
    ctx = av.CodecContext.create(stream.codec_context.name, "r")
    ctx.extradata = stream.codec_context.extradata
    frames = [f for p in packets for f in ctx.decode(p)] + list(ctx.decode(None))
    assert len(frames) == len(packets)
    return [luma_sha256(f) for f in frames]


def record(data_dir: Path, sps: Sequence[StampedPacket], segment_seconds: float = 2.0) -> Index:
    index = Index.open(data_dir)
    recorder = Recorder(data_dir, index, segment_seconds)
    for sp in sps:
        recorder.push(sp)
    recorder.close()
    return index


def ffprobe(path: Path) -> dict[str, Any]:
    """The first stream as ffprobe counts it; fails on any error ffprobe reports."""
    out = subprocess.run(
        [require_tool("ffprobe"), "-v", "error", "-count_frames", "-show_entries",
         "stream=codec_name,nb_read_frames,width,height", "-of", "json", str(path)],
        capture_output=True, text=True, check=False, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0 and not out.stderr, f"ffprobe {path}: {out.stderr}"
    stream: dict[str, Any] = json.loads(out.stdout)["streams"][0]
    return stream


def file_packets(path: Path) -> list[bytes]:
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


class Disk:
    """An opener whose files fail with ENOSPC once `free` bytes are used up (for one camera)."""

    def __init__(self, free: int, camera: str = "cam1") -> None:
        self.free, self.camera = free, camera
        self.files: list[BinaryIO] = []

    def __call__(self, path: Path) -> BinaryIO:
        f = open_exclusive(path)
        self.files.append(f)
        return _Limited(self, f) if f"/{self.camera}/" in str(path) else f  # type: ignore[return-value]


class _Limited:
    def __init__(self, disk: Disk, f: BinaryIO) -> None:
        self.disk, self.f = disk, f

    def write(self, data: bytes) -> int:
        n = min(len(data), self.disk.free)
        self.f.write(bytes(data[:n]))
        self.disk.free -= n
        if n < len(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        return n

    def close(self) -> None:
        self.f.close()


# -- segments ---------------------------------------------------------------------------------


def test_segments_start_on_keyframes_with_the_right_length_and_play(tmp_path: Path) -> None:
    stream, packets = demuxed(6)
    sps = stamped(packets, info_of(stream))[5:]  # join mid-GOP, as a live stream does
    index = record(tmp_path, sps)
    segs = index.segments("cam1", "main")
    assert [s.status for s in segs] == ["closed"] * 3
    assert [s.frames for s in segs] == [30, 30, 15]  # frames 15..44, 45..74, 75..89
    assert [s.start_us for s in segs] == [stamp_of(15), stamp_of(45), stamp_of(75)]
    assert [s.end_us for s in segs] == [stamp_of(45), stamp_of(75), T0 + 6_000_000]
    for seg in segs:
        path = index.resolve(seg.path)
        assert path.relative_to(tmp_path).as_posix() == (
            f"recordings/cam1/main/2024-05-01/12/{seg.start_us}.mp4"
        )
        with av.open(str(path)) as c:
            first = next(p for p in c.demux(c.streams.video[0]) if p.size)
            assert first.is_keyframe
        probe = ffprobe(path)
        assert (probe["codec_name"], probe["width"], probe["height"]) == ("h264", 320, 180)
        assert int(probe["nb_read_frames"]) == seg.frames
        assert seg.bytes == path.stat().st_size
        assert seg.sha256 == file_sha256(path)  # hashed as written, never read back


def test_packets_are_recorded_byte_for_byte_and_not_touched(tmp_path: Path) -> None:
    stream, packets = demuxed(4)
    before = [(p.pts, p.dts, p.time_base, p.stream.index) for p in packets]
    index = record(tmp_path, stamped(packets, info_of(stream)))
    on_disk = [b for s in index.segments("cam1") for b in file_packets(index.resolve(s.path))]
    assert on_disk == [bytes(p) for p in packets]  # remuxed, never re-encoded
    assert [(p.pts, p.dts, p.time_base, p.stream.index) for p in packets] == before


def test_packets_before_the_first_keyframe_are_counted_not_recorded(tmp_path: Path) -> None:
    stream, packets = demuxed(2)
    index = Index.open(tmp_path)
    recorder = Recorder(tmp_path, index, 2.0)
    for sp in stamped(packets, info_of(stream))[3:]:
        recorder.push(sp)
    recorder.close()
    stats = recorder.stats().streams["cam1/main"]
    assert (stats.packets, stats.before_keyframe, stats.recorded) == (27, 12, 15)
    assert stats.state == "idle"


@pytest.mark.parametrize(("detached", "duration_us"), [(False, 66_667), (True, 100_000)])
def test_a_lone_frame_lasts_its_packet_duration_else_the_nominal_rate(
    tmp_path: Path, detached: bool, duration_us: int
) -> None:
    """No stamp interval to go by: the demuxer's duration (1/15 s), else the nominal fps (10)."""
    stream, packets = demuxed(2)
    key = av.Packet(bytes(packets[0])) if detached else packets[0]
    key.is_keyframe = True
    index = record(tmp_path, stamped([key], replace(info_of(stream), fps=10.0)))
    (seg,) = index.segments("cam1")
    assert (seg.frames, seg.end_us) == (1, T0 + duration_us)


def test_a_frame_lasts_the_stamp_interval_before_it(tmp_path: Path) -> None:
    """The camera's cadence (here 40 ms) wins over the demuxer's duration (1/15 s)."""
    stream, packets = demuxed(2)
    info = info_of(stream)
    sps = [
        StampedPacket(info, Stamp(k, T0 + k * 40_000, True, False), p, p.is_keyframe, p.pts)
        for k, p in enumerate(packets[:3])
    ]
    (seg,) = record(tmp_path, sps).segments("cam1")
    assert (seg.frames, seg.end_us) == (3, T0 + 3 * 40_000)


@pytest.mark.parametrize("detached", [False, True])
def test_annexb_packets_as_rtsp_gives_them(tmp_path: Path, detached: bool) -> None:
    """Annex-B packets from a raw H.264 demuxer (like RTSP's), or detached from any stream:
    then SPS/PPS come from the first keyframe."""
    stream, packets = demuxed(2)
    bsf = av.BitStreamFilterContext("h264_mp4toannexb", in_stream=stream)
    raw = b"".join(bytes(q) for p in packets for q in bsf.filter(p))  # consumes `packets`
    container = av.open(io.BytesIO(raw), format="h264")
    annexb = [p for p in container.demux(video=0) if p.size]
    if detached:
        keys = [p.is_keyframe for p in annexb]
        annexb = [av.Packet(bytes(p)) for p in annexb]
        for p, key in zip(annexb, keys, strict=True):
            p.is_keyframe = key
    index = record(tmp_path, stamped(annexb, info_of(container.streams.video[0])))
    (seg,) = index.segments("cam1")
    assert int(ffprobe(index.resolve(seg.path))["nb_read_frames"]) == 30
    with av.open(str(index.resolve(seg.path))) as c:
        recorded = [luma_sha256(f) for f in c.decode(video=0)]
    assert recorded == decoded_lumas(*demuxed(2))


def test_segments_start_from_queued_packets_after_their_connection_closed(tmp_path: Path) -> None:
    """Ingest reconnects while the recorder still has the old connection's packets queued:
    the closed demuxer's stream is gone, ingest's detached copy of its parameters is not."""
    stream, packets = demuxed(4)
    info = replace(info_of(stream), template=detached_template(stream))
    sps = stamped(packets, info)
    stream.container.close()  # what PyAVSource.close() does on a reconnect
    index = record(tmp_path, sps)
    segs = index.segments("cam1", "main")
    assert [s.frames for s in segs] == [30, 30]
    for seg in segs:
        path = index.resolve(seg.path)
        probe = ffprobe(path)
        assert (probe["width"], probe["height"], int(probe["nb_read_frames"])) == (320, 180, 30)
    assert [f for s in segs for f in file_packets(index.resolve(s.path))] == [
        bytes(p) for p in packets
    ]


def test_new_generation_closes_the_segment_and_waits_for_a_keyframe(tmp_path: Path) -> None:
    stream, packets = demuxed(4)
    first = stamped(packets[:20], info_of(stream))  # 0..19: ends mid-GOP
    # The camera came back 3 s later with a new connection, joining mid-GOP again.
    t1 = T0 + 3_000_000
    again = stamped(packets[25:], info_of(stream, gen=1), first=25, t0=t1)
    index = Index.open(tmp_path)
    recorder = Recorder(tmp_path, index, 10.0)
    for sp in first + again:
        recorder.push(sp)
    recorder.close()
    segs = index.segments("cam1", "main")
    assert [(s.generation, s.frames) for s in segs] == [(0, 20), (1, 30)]
    assert segs[1].start_us == stamp_of(30, t1)
    (gap,) = index.gaps("cam1")
    assert (gap.start_us, gap.end_us, gap.reason) == (
        segs[0].end_us,
        segs[1].start_us,
        "camera_lost",
    )
    stats = recorder.stats().streams["cam1/main"]
    assert stats.before_keyframe == 5 and stats.recorded == 50


def test_a_reported_gap_is_not_written_twice(tmp_path: Path) -> None:
    stream, packets = demuxed(2)
    index = Index.open(tmp_path)
    recorder = Recorder(tmp_path, index, 10.0)
    t1 = T0 + 5_000_000  # frame 15 arrives here, on a new connection
    for sp in stamped(packets[:15], info_of(stream)):
        recorder.push(sp)
    recorder.gap("cam1", "main", stamp_of(15), t1, "camera_lost")  # ingest noticed it
    for sp in stamped(packets[15:], info_of(stream, gen=1), first=15, t0=t1 - 1_000_000):
        recorder.push(sp)
    recorder.close()
    assert [(g.start_us, g.end_us) for g in index.gaps("cam1")] == [(stamp_of(15), t1)]


def test_a_gap_reported_while_not_recording_keeps_every_interval(tmp_path: Path) -> None:
    stream, packets = demuxed(4)
    index = record(tmp_path, stamped(packets[:30], info_of(stream)), 10.0)
    recorder = Recorder(tmp_path, index, 10.0)  # the agent restarts...
    lost, back = T0 + 10_000_000, T0 + 20_000_000
    recorder.gap("cam1", "main", lost, back, "camera_lost")  # ...and cannot reach the camera
    for sp in stamped(packets[35:], info_of(stream, gen=1), first=35, t0=back):
        recorder.push(sp)  # it comes back mid-GOP; the next keyframe is frame 45
    recorder.close()
    gaps = [(g.start_us, g.end_us, g.reason) for g in index.gaps("cam1")]
    assert gaps == [
        (stamp_of(30), lost, "agent_stopped"),
        (lost, back, "camera_lost"),
        (back, stamp_of(45, back), "camera_lost"),
    ]


def test_bad_input_is_a_clear_error(tmp_path: Path) -> None:
    index = Index.open(tmp_path)
    with pytest.raises(MediaIndexError, match="reason"):
        index.add_gap(Gap("cam1", "main", 1, 2, "bored"))  # type: ignore[arg-type]
    stream, packets = demuxed(2)
    recorder = Recorder(tmp_path, index)
    with pytest.raises(MediaIndexError, match="end after"):
        recorder.gap("cam1", "main", 2, 2, "camera_lost")
    recorder.push(stamped(packets[:1], info_of(stream, camera="../etc"))[0])
    assert recorder.stats().errors == 1  # refused, logged, and the recorder goes on
    with pytest.raises(SegmentPathError, match="camera name"):
        segment_relpath("Cam 1", "main", T0)


# -- frame index ------------------------------------------------------------------------------


def test_every_stamp_maps_to_its_frame(tmp_path: Path) -> None:
    stream, packets = demuxed(4)
    sps = stamped(packets, info_of(stream))
    index = record(tmp_path, sps)
    for sp in sps:
        ref = index.frame_at("cam1", "main", sp.stamp.capture_us)
        assert ref is not None
        seg = index.segment(ref.segment_id)
        assert (ref.seq, ref.keyframe) == (sp.stamp.seq, sp.keyframe)
        assert ref.pts == sp.stamp.capture_us - seg.start_us
        assert ref.index_in_segment == sp.stamp.seq % 30  # 2 s segments of 30 frames
        assert index.frame_by_seq("cam1", "main", sp.stamp.seq, sp.stamp.capture_us) == ref
    near = index.frame_at("cam1", "main", stamp_of(7) + 20_000, tolerance_us=30_000)
    assert near is not None and near.seq == 7
    assert index.frame_at("cam1", "main", stamp_of(7) + 20_000) is None
    assert index.frame_at("cam1", "main", stamp_of(7) + 40_000, tolerance_us=30_000).seq == 8  # type: ignore[union-attr]
    assert index.frame_at("cam1", "main", T0 - 1_000_000, tolerance_us=30_000) is None


def test_index_keeps_up_with_64_cameras(tmp_path: Path) -> None:
    """Ten seconds of 64 cameras x 2 streams x 15 fps, one batch per 1 s fragment."""
    index = Index.open(tmp_path)
    streams = [(f"cam{c}", s) for c in range(64) for s in ("main", "sub")]
    segment = {(c, s): index.open_segment(c, s, f"{c}-{s}.mp4", T0, 0) for c, s in streams}
    started = time.perf_counter()
    for second in range(10):
        for cam, stream in streams:
            rows = [
                FrameRow(cam, stream, i, stamp_of(i), segment[cam, stream], i, i, i % 15 == 0)
                for i in range(second * 15, second * 15 + 15)
            ]
            index.add_frames(rows)
    elapsed = time.perf_counter() - started
    assert elapsed < 5.0, f"{elapsed:.1f} s for 10 s of frames"
    assert len(index.frames_between("cam7", "sub", T0, stamp_of(150))) == 150


# -- failures ---------------------------------------------------------------------------------


# Segments here are about 28 kB (two 14 kB fragments): run out in the first segment's second
# fragment, in the second segment's header, and in its second fragment.
@pytest.mark.parametrize("free", [20_000, 40_000, 48_000])
def test_disk_full_closes_the_segment_writes_a_gap_and_resumes(tmp_path: Path, free: int) -> None:
    stream, packets = demuxed(8)
    sps = stamped(packets, info_of(stream))
    others = stamped(packets, info_of(stream, camera="cam2"))
    disk = Disk(free)  # only cam1's files use it up
    index = Index.open(tmp_path)
    recorder = Recorder(tmp_path, index, 2.0, opener=disk)
    resumed_at = 75
    for i, (sp, other) in enumerate(zip(sps, others, strict=True)):
        if i == resumed_at - 5:
            assert recorder.stats().disk_full
            assert recorder.stats().streams["cam1/main"].state == "disk_full"
            disk.free = 10**9  # retention freed space: the next keyframe (75) resumes
        recorder.push(sp)
        recorder.push(other)
    assert not recorder.stats().disk_full
    recorder.close()

    cam1 = index.segments("cam1", "main")
    assert all(s.status == "closed" for s in cam1)
    (gap,) = index.gaps("cam1")  # one gap, however many keyframes probed the full disk
    assert gap.reason == "disk_full" and "No space" in gap.detail
    before = [s for s in cam1 if s.start_us < gap.start_us]
    after = [s for s in cam1 if s.start_us >= gap.end_us]
    assert before and after and len(before) + len(after) == len(cam1)
    assert (gap.start_us, gap.end_us) == (before[-1].end_us, stamp_of(resumed_at))
    assert after[0].start_us == stamp_of(resumed_at)
    for seg in cam1:  # the cut fragment is gone: files play cleanly, every frame indexed
        assert int(ffprobe(index.resolve(seg.path))["nb_read_frames"]) == seg.frames
    stats = recorder.stats().streams["cam1/main"]
    assert stats.lost > 0
    assert stats.packets == stats.recorded + stats.lost + stats.before_keyframe
    assert stats.recorded == sum(s.frames for s in cam1)
    assert verify_chain(index, "cam1", "main").ok
    # The other camera did not notice.
    cam2 = index.segments("cam2", "main")
    assert sum(s.frames for s in cam2) == len(packets) and not index.gaps("cam2")


def test_crash_leaves_a_segment_that_the_next_start_closes(tmp_path: Path) -> None:
    stream, packets = demuxed(6)
    sps = stamped(packets, info_of(stream))
    disk = Disk(free=10**9)
    index = Index.open(tmp_path)
    crashed = Recorder(tmp_path, index, 10.0, opener=disk)
    for sp in sps[:40]:  # frames 0..39: two fragments are out, the third is in the muxer
        crashed.push(sp)
    for f in disk.files:  # the process dies: its files close where they are
        f.close()
    (seg,) = index.segments("cam1", status="recording")
    assert len(index.segment_frames(seg.id)) == 30

    index2 = Index.open(tmp_path)
    recorder = Recorder(tmp_path, index2, 10.0)
    seg = index2.segment(seg.id)
    assert (seg.status, seg.frames, seg.end_us) == ("closed", 30, stamp_of(30))
    assert int(ffprobe(index2.resolve(seg.path))["nb_read_frames"]) == 30
    restart = T0 + 60_000_000
    for sp in stamped(packets, info_of(stream, gen=0), first=200, t0=restart - stamp_of(200) + T0):
        recorder.push(sp)
    recorder.close()
    (gap,) = index2.gaps("cam1")
    assert (gap.reason, gap.start_us, gap.end_us) == ("agent_stopped", stamp_of(30), restart)
    assert verify_chain(index2, "cam1", "main").ok
    del crashed


def test_a_cut_segment_is_trimmed_to_its_last_complete_fragment(tmp_path: Path) -> None:
    stream, packets = demuxed(2)
    index = record(tmp_path / "data", stamped(packets, info_of(stream)))
    data = index.resolve(index.segments("cam1")[0].path).read_bytes()
    boxes, pos = [], 0
    while pos < len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        boxes.append((kind, pos, pos + size))
        pos += size
    assert [k for k, _, _ in boxes] == [
        b"ftyp",
        b"moov",
        b"moof",
        b"mdat",
        b"moof",
        b"mdat",
        b"mfra",
    ]
    moov_end, frag1_end, frag2_end = boxes[1][2], boxes[3][2], boxes[5][2]
    cases = {
        boxes[1][1] + 10: (boxes[1][1], 0),  # inside the moov: nothing playable
        boxes[2][2]: (moov_end, 0),  # a moof without its mdat
        boxes[3][1] + 100: (moov_end, 0),  # inside the first mdat
        frag1_end + 4: (frag1_end, 15),  # not even a box header
        boxes[5][2] - 1: (frag1_end, 15),
        frag2_end: (frag2_end, 30),  # no mfra (the trailer) is fine
    }
    for cut, (size, readable) in cases.items():
        path = tmp_path / f"cut-{cut}.mp4"
        path.write_bytes(data[:cut])
        assert cut_incomplete_fragment(path) == size == path.stat().st_size
        assert count_readable_packets(path) == readable


def test_recorder_needs_the_index_of_its_data_dir(tmp_path: Path) -> None:
    index = Index.open(tmp_path / "a")
    with pytest.raises(Exception, match="not in data dir"):
        Recorder(tmp_path / "b", index)


def test_an_index_opened_for_http_requests_may_be_handed_between_threads(tmp_path: Path) -> None:
    """FastAPI opens a request's index in one worker thread and may run the route in another."""

    def query_elsewhere(idx: Index) -> BaseException | None:
        failed: list[BaseException] = []

        def run() -> None:
            try:
                idx.segments("cam1", "main")
            except BaseException as exc:
                failed.append(exc)

        worker = threading.Thread(target=run)
        worker.start()
        worker.join(10)
        return failed[0] if failed else None

    with Index.open(tmp_path) as pinned:
        assert isinstance(query_elsewhere(pinned), sqlite3.ProgrammingError)
    with Index.open(tmp_path, handed_between_threads=True) as handed:
        assert query_elsewhere(handed) is None
