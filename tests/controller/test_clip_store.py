"""Clip assembly from chunks on a real disk: any order, repeats, chunks before the manifest,
refusals (corrupt hash, foreign agent, misfit chunks), garbage collection, restarts, threads,
and a real H.264 MP4 that ffprobe reads back after the trip."""

from __future__ import annotations

import hashlib
import json
import math
import os
import random
import subprocess
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import require_tool
from interop.media import make_h264_mp4

from controller.events.clip_info import ClipInfo, ClipRejected
from controller.events.clip_parts import ClipParts
from controller.events.clips import PARTS_DIR, ClipStore
from fleet.messages import ClipChunk, ClipManifest

S = 1_000_000  # µs


def split(
    data: bytes, chunk_size: int, *, sha256: str | None = None, **fields: Any
) -> tuple[ClipManifest, list[ClipChunk]]:
    clip_id = fields.pop("clip_id", uuid.uuid4())
    manifest = ClipManifest(
        clip_id=clip_id,
        camera=fields.pop("camera", "gate"),
        from_us=0,
        to_us=10 * S,
        sha256=sha256 or hashlib.sha256(data).hexdigest(),
        size=len(data),
        chunk_size=chunk_size,
        chunk_count=math.ceil(len(data) / chunk_size),
        content_type=fields.pop("content_type", "video/mp4"),
        **fields,
    )
    chunks = [
        ClipChunk.of(clip_id, i, data[off : off + chunk_size])
        for i, off in enumerate(range(0, len(data), chunk_size))
    ]
    return manifest, chunks


class Completed:
    """An on_complete callback that remembers what it was told."""

    def __init__(self) -> None:
        self.calls: list[ClipInfo] = []

    def __call__(self, info: ClipInfo) -> None:
        self.calls.append(info)


@pytest.fixture
def completed() -> Completed:
    return Completed()


@pytest.fixture
def clips(tmp_path: Path, completed: Completed) -> Iterator[ClipStore]:
    store = ClipStore(tmp_path / "clips", on_complete=completed, part_ttl_s=3600)
    yield store
    store.close()


def parts_held(store: ClipStore, clip_id: uuid.UUID) -> list[str]:
    d = store.root / PARTS_DIR / str(clip_id)
    return sorted(os.listdir(d)) if d.exists() else []


DATA = random.Random(1).randbytes(10_000)


def test_chunks_out_of_order_and_repeated_assemble_to_the_exact_bytes(
    clips: ClipStore, completed: Completed
) -> None:
    manifest, chunks = split(DATA, 1024, event_id=uuid.uuid4())
    arrivals = chunks + chunks[2:5]  # some twice
    random.Random(2).shuffle(arrivals)
    clips.manifest("edge-01", manifest, now_us=1)
    states = [clips.chunk("edge-01", c, now_us=2 + i).state for i, c in enumerate(arrivals)]

    whole_at = max(arrivals.index(c) for c in chunks)  # the first time every chunk is here
    assert states[:whole_at] == ["pending"] * whole_at
    assert set(states[whole_at:]) == {"complete"}
    path = clips.path(manifest.clip_id)
    assert path == clips.root / f"{manifest.clip_id}.mp4"
    assert path.read_bytes() == DATA
    assert parts_held(clips, manifest.clip_id) == []  # parts dropped once assembled
    info = clips.info(manifest.clip_id)
    assert info is not None
    assert (info.state, info.chunks_received, info.manifest) == ("complete", 10, manifest)
    assert completed.calls and all(c.clip_id == manifest.clip_id for c in completed.calls)
    assert completed.calls[0].manifest is not None
    assert completed.calls[0].manifest.event_id == manifest.event_id
    # A repeat after assembly changes nothing, and says complete again (so links can catch up).
    again = clips.chunk("edge-01", chunks[0], now_us=99)
    assert again.state == "complete"
    assert path.read_bytes() == DATA


def test_chunks_that_come_before_the_manifest_wait_on_disk(clips: ClipStore) -> None:
    manifest, chunks = split(DATA, 4096)  # 3 chunks, the last one short
    for c in chunks:
        info = clips.chunk("edge-01", c, now_us=1)
        assert info.state == "pending"
    assert info.progress() == "3 chunks, manifest not received yet"
    assert parts_held(clips, manifest.clip_id) == ["0.part", "1.part", "2.part"]
    assert clips.path(manifest.clip_id) is None

    info = clips.manifest("edge-01", manifest, now_us=2)
    assert info.state == "complete"
    path = clips.path(manifest.clip_id)
    assert path is not None
    assert path.read_bytes() == DATA


def test_progress_counts_chunks_against_the_manifest(clips: ClipStore) -> None:
    manifest, chunks = split(DATA, 1000)
    clips.manifest("edge-01", manifest, now_us=1)
    for c in (chunks[3], chunks[7], chunks[3]):
        info = clips.chunk("edge-01", c, now_us=2)
    assert info.progress() == "2 of 10 chunks"
    assert clips.path(manifest.clip_id) is None


def test_a_clip_that_fails_its_whole_hash_is_corrupt_and_dropped(
    clips: ClipStore, completed: Completed
) -> None:
    manifest, chunks = split(DATA, 1024, sha256=hashlib.sha256(b"other").hexdigest())
    clips.manifest("edge-01", manifest, now_us=1)
    for c in chunks:
        info = clips.chunk("edge-01", c, now_us=2)
    assert info.state == "corrupt"
    assert info.reason is not None
    assert "sha256" in info.reason and manifest.sha256 in info.reason
    assert clips.path(manifest.clip_id) is None
    assert not (clips.root / f"{manifest.clip_id}.mp4").exists()
    assert parts_held(clips, manifest.clip_id) == []
    # Late repeats neither revive it nor leave parts behind.
    assert clips.chunk("edge-01", chunks[0], now_us=3).state == "corrupt"
    assert parts_held(clips, manifest.clip_id) == []
    assert completed.calls == []


def test_another_agent_cannot_add_to_a_clip(clips: ClipStore) -> None:
    manifest, chunks = split(DATA, 1024)
    clips.chunk("edge-01", chunks[0], now_us=1)
    with pytest.raises(ClipRejected, match="belongs to agent edge-01, not edge-02"):
        clips.manifest("edge-02", manifest, now_us=2)
    with pytest.raises(ClipRejected, match="belongs to agent edge-01, not edge-02"):
        clips.chunk("edge-02", chunks[1], now_us=2)
    assert parts_held(clips, manifest.clip_id) == ["0.part"]
    # The rightful agent carries on unaffected.
    clips.manifest("edge-01", manifest, now_us=3)
    for c in chunks[1:]:
        info = clips.chunk("edge-01", c, now_us=4)
    assert info.state == "complete"


def test_chunks_that_do_not_fit_the_manifest_are_refused(clips: ClipStore) -> None:
    manifest, chunks = split(DATA, 1024)  # 10 chunks, the last 784 bytes
    clips.manifest("edge-01", manifest, now_us=1)
    with pytest.raises(ClipRejected, match="index 10 beyond the clip's 10 chunks"):
        clips.chunk("edge-01", ClipChunk.of(manifest.clip_id, 10, b"x" * 1024), now_us=2)
    with pytest.raises(ClipRejected, match="chunk 3: 1000 bytes where the manifest implies 1024"):
        clips.chunk("edge-01", ClipChunk.of(manifest.clip_id, 3, b"x" * 1000), now_us=2)
    with pytest.raises(ClipRejected, match="chunk 9: 1024 bytes where the manifest implies 784"):
        clips.chunk("edge-01", ClipChunk.of(manifest.clip_id, 9, b"x" * 1024), now_us=2)
    assert parts_held(clips, manifest.clip_id) == []
    for c in chunks:
        info = clips.chunk("edge-01", c, now_us=3)
    assert info.state == "complete"


def test_early_chunks_that_do_not_fit_are_dropped_when_the_manifest_comes(
    clips: ClipStore,
) -> None:
    manifest, chunks = split(DATA, 1024)
    clips.chunk("edge-01", ClipChunk.of(manifest.clip_id, 12, b"x" * 1024), now_us=1)
    clips.chunk("edge-01", ClipChunk.of(manifest.clip_id, 0, b"x" * 10), now_us=1)
    info = clips.manifest("edge-01", manifest, now_us=2)
    assert info.chunks_received == 0
    assert parts_held(clips, manifest.clip_id) == []
    for c in chunks:
        info = clips.chunk("edge-01", c, now_us=3)
    assert info.state == "complete"


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"content_type": "video/mp2t"}, "content type video/mp2t"),
        ({"size": 2000}, "2000 bytes, more than 1000"),
    ],
)
def test_manifests_the_store_will_not_take(
    tmp_path: Path, fields: dict[str, Any], message: str
) -> None:
    store = ClipStore(tmp_path, max_clip_bytes=1000)
    try:
        size = fields.pop("size", 500)
        manifest, _ = split(bytes(size), 100, **fields)
        with pytest.raises(ClipRejected, match=message):
            store.manifest("edge-01", manifest, now_us=1)
        assert store.info(manifest.clip_id) is None
    finally:
        store.close()


def test_a_repeated_manifest_must_match_the_first(clips: ClipStore) -> None:
    manifest, _ = split(DATA, 1024)
    clips.manifest("edge-01", manifest, now_us=1)
    assert clips.manifest("edge-01", manifest, now_us=2).state == "pending"
    changed = manifest.model_copy(update={"to_us": 20 * S})
    with pytest.raises(ClipRejected, match="manifest differs from the one received first"):
        clips.manifest("edge-01", changed, now_us=3)


def test_garbage_collection_drops_stale_parts_only(clips: ClipStore) -> None:
    stale_m, stale_chunks = split(DATA, 1024)
    fresh_m, fresh_chunks = split(DATA, 1024)
    done_m, done_chunks = split(DATA, 1024)
    clips.manifest("edge-01", stale_m, now_us=0)
    clips.chunk("edge-01", stale_chunks[0], now_us=10 * S)
    clips.chunk("edge-01", fresh_chunks[0], now_us=3000 * S)
    clips.manifest("edge-01", done_m, now_us=0)
    for c in done_chunks:
        clips.chunk("edge-01", c, now_us=0)
    leftover = clips.root / PARTS_DIR / str(uuid.uuid4())  # e.g. left by a crash
    leftover.mkdir()
    (leftover / "0.part").write_bytes(b"x")

    assert clips.collect_garbage(now_us=3610 * S + 1) == 2  # TTL 3600 s
    assert clips.info(stale_m.clip_id) is None
    assert parts_held(clips, stale_m.clip_id) == []
    assert not leftover.exists()
    fresh = clips.info(fresh_m.clip_id)
    assert fresh is not None
    assert parts_held(clips, fresh_m.clip_id) == ["0.part"]
    assert clips.path(done_m.clip_id) is not None
    # A stale clip resent from scratch starts afresh.
    clips.manifest("edge-01", stale_m, now_us=3700 * S)
    for c in stale_chunks:
        info = clips.chunk("edge-01", c, now_us=3700 * S)
    assert info.state == "complete"


def test_a_pending_clip_survives_a_restart(tmp_path: Path) -> None:
    manifest, chunks = split(DATA, 1024)
    first = ClipStore(tmp_path)
    first.manifest("edge-01", manifest, now_us=1)
    for c in chunks[:6]:
        first.chunk("edge-01", c, now_us=2)
    first.close()
    second = ClipStore(tmp_path)
    try:
        info = second.info(manifest.clip_id)
        assert info is not None
        assert info.progress() == "6 of 10 chunks"
        with pytest.raises(ClipRejected, match="belongs to agent edge-01"):
            second.chunk("edge-02", chunks[6], now_us=3)
        for c in chunks[6:]:
            info = second.chunk("edge-01", c, now_us=3)
        assert info.state == "complete"
    finally:
        second.close()


def test_a_clip_whose_last_chunk_was_stored_before_a_crash_completes_on_restart(
    tmp_path: Path, completed: Completed
) -> None:
    manifest, chunks = split(DATA, 1024)
    first = ClipStore(tmp_path)
    first.manifest("edge-01", manifest, now_us=1)
    for c in chunks[:-1]:
        first.chunk("edge-01", c, now_us=2)
    # The last part reached the disk, then the process died before recording it.
    ClipParts(tmp_path / PARTS_DIR).put(manifest.clip_id, chunks[-1].index, chunks[-1].data)
    first.close()

    second = ClipStore(tmp_path, on_complete=completed)
    try:
        path = second.path(manifest.clip_id)
        assert path is not None
        assert path.read_bytes() == DATA
        assert [c.clip_id for c in completed.calls] == [manifest.clip_id]
    finally:
        second.close()


def test_clips_from_several_threads_while_others_read(clips: ClipStore) -> None:
    pieces = [split(random.Random(n).randbytes(50_000), 4096) for n in range(6)]
    errors: list[Exception] = []
    done = threading.Event()

    def deliver(n: int) -> None:
        manifest, chunks = pieces[n]
        arrivals: list[ClipManifest | ClipChunk] = [manifest, *chunks, *chunks[:3]]
        random.Random(n).shuffle(arrivals)
        try:
            for msg in arrivals:
                if isinstance(msg, ClipManifest):
                    clips.manifest("edge-01", msg, now_us=1)
                else:
                    clips.chunk("edge-01", msg, now_us=1)
        except Exception as exc:
            errors.append(exc)

    def read() -> None:
        try:
            while not done.is_set():
                for manifest, _ in pieces:
                    path = clips.path(manifest.clip_id)
                    if path is not None:  # a path handed out is always the whole clip
                        assert path.stat().st_size == manifest.size
        except Exception as exc:
            errors.append(exc)

    reader = threading.Thread(target=read)
    reader.start()
    writers = [threading.Thread(target=deliver, args=(n,)) for n in range(len(pieces))]
    for t in writers:
        t.start()
    for t in writers:
        t.join(60)
    done.set()
    reader.join(10)
    assert not errors, errors
    for manifest, _ in pieces:
        path = clips.path(manifest.clip_id)
        assert path is not None
        assert hashlib.sha256(path.read_bytes()).hexdigest() == manifest.sha256


def test_a_real_mp4_split_and_reassembled_plays(clips: ClipStore, tmp_path: Path) -> None:
    ffprobe = require_tool("ffprobe")
    source = make_h264_mp4(tmp_path / "source.mp4", seconds=4)
    data = source.read_bytes()
    manifest, chunks = split(data, 8 * 1024)
    assert len(chunks) > 5
    arrivals = [*chunks, chunks[0], chunks[-1]]
    random.Random(3).shuffle(arrivals)
    for c in arrivals[: len(arrivals) // 2]:
        clips.chunk("edge-01", c, now_us=1)
    clips.manifest("edge-01", manifest, now_us=2)
    for c in arrivals[len(arrivals) // 2 :]:
        info = clips.chunk("edge-01", c, now_us=3)
    assert info.state == "complete"
    path = clips.path(manifest.clip_id)
    assert path is not None

    probe = subprocess.run(
        [
            ffprobe, "-v", "error", "-count_frames", "-select_streams", "v:0",
            "-show_entries", "stream=codec_name,width,height,nb_read_frames", "-of", "json",
            str(path),
        ],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert probe.returncode == 0, probe.stderr
    assert probe.stderr == ""
    stream = json.loads(probe.stdout)["streams"][0]
    assert (stream["codec_name"], stream["width"], stream["height"]) == ("h264", 640, 360)
    assert int(stream["nb_read_frames"]) == 60  # 4 s at 15 fps, every frame decodable
