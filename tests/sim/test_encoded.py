"""Encoded scene loops: decodable H.264 with fixed GOPs, cached on disk safely."""

from __future__ import annotations

import threading
from pathlib import Path

import av
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.rtsp.rtp import nal_type, split_annexb
from fleet.sim.encoded import (
    EncodedLoop,
    EncodeError,
    StreamEncoding,
    cache_key,
    encode_loops,
    to_annexb,
)
from fleet.sim.scene import SceneRenderer, SceneSpec, default_scene

SPEC = default_scene(9, 320, 180, 10.0, 10, 3.0)
ENCODINGS = (
    StreamEncoding("main", 320, 180, 10.0, 10, 400),
    StreamEncoding("sub", 160, 90, 10.0, 10, 120),
    StreamEncoding("degraded", 160, 90, 5.0, 5, 60, frame_step=2),
)


class Progress:
    def __init__(self) -> None:
        self.calls: list[tuple[int, int]] = []
        self._lock = threading.Lock()

    def __call__(self, done: int, total: int) -> None:
        with self._lock:
            self.calls.append((done, total))


@pytest.fixture(scope="module")
def cached(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, EncodedLoop]]:
    cache = tmp_path_factory.mktemp("loops")
    return cache, encode_loops(SPEC, ENCODINGS, cache)


def decode(loop: EncodedLoop) -> list[av.VideoFrame]:
    ctx = av.CodecContext.create("h264", "r")
    frames = []
    for unit in loop.units:
        frames += ctx.decode(av.Packet(to_annexb([unit])))
    return frames + ctx.decode(None)


def test_loops_decode_to_the_right_size_and_length(
    cached: tuple[Path, dict[str, EncodedLoop]],
) -> None:
    _, loops = cached
    assert set(loops) == {e.name for e in ENCODINGS}
    for e in ENCODINGS:
        loop = loops[e.name]
        frames = decode(loop)
        assert len(frames) == len(loop.units) == SPEC.frame_count // e.frame_step
        assert {(f.width, f.height) for f in frames} == {(e.width, e.height)}
        assert loop.frame_duration_s == pytest.approx(e.frame_step / SPEC.fps)
        assert loop.duration_s == pytest.approx(SPEC.loop_seconds)


def test_fixed_gops_with_headers_in_band(cached: tuple[Path, dict[str, EncodedLoop]]) -> None:
    _, loops = cached
    for e in ENCODINGS:
        loop = loops[e.name]
        keyframes = [i for i, unit in enumerate(loop.units) if unit.keyframe]
        assert keyframes == list(range(0, len(loop.units), e.gop))
        for i, unit in enumerate(loop.units):
            types = [nal_type(n) for n in unit.nals]
            assert 6 not in types and 9 not in types  # no SEI, no AUD
            if unit.keyframe:
                assert types == [7, 8, 5]
                assert unit.nals[:2] == (loop.sps, loop.pps)
            else:
                assert types == [1], f"unit {i}"
        assert loop.sps[1] == 66  # baseline profile


def test_main_stream_shows_the_rendered_scene(cached: tuple[Path, dict[str, EncodedLoop]]) -> None:
    _, loops = cached
    frames = decode(loops["main"])
    renderer = SceneRenderer(SPEC)
    for i in (0, 15):
        decoded = frames[i].to_ndarray(format="yuv420p")[: SPEC.height].astype(float)
        rendered = renderer.render(i)[0]
        psnr = 10 * np.log10(255**2 / np.mean((decoded - rendered) ** 2))
        assert psnr > 28, f"frame {i}: {psnr:.1f} dB"


def test_a_scaled_half_rate_stream_has_no_flat_keyframes(tmp_path: Path) -> None:
    """Like a camera's sub stream: scaled and at half the scene's rate. It once had a flat grey
    keyframe every other GOP (a buffer PyAV reused while x264 still read it), which detection,
    training and snapshots then saw."""
    main = StreamEncoding("main", 320, 180, 10.0, 10, 400)
    sub = StreamEncoding("sub", 160, 90, 5.0, 5, 120, frame_step=2)
    loops = encode_loops(SPEC, (main, sub), tmp_path)
    keyframes = [f for f in decode(loops["sub"]) if f.key_frame]
    assert len(keyframes) == SPEC.frame_count // sub.frame_step // sub.gop
    spread = [float(f.to_ndarray(format="yuv420p")[: sub.height].std()) for f in keyframes]
    assert min(spread) > 10, spread  # the scene has texture; a flat frame has none


def test_degraded_variant_takes_every_second_frame(
    cached: tuple[Path, dict[str, EncodedLoop]],
) -> None:
    _, loops = cached
    sub, degraded = decode(loops["sub"]), decode(loops["degraded"])
    for k in (3, 7):
        picture = degraded[k].to_ndarray(format="yuv420p")[:90].astype(float)
        same = np.abs(picture - sub[2 * k].to_ndarray(format="yuv420p")[:90]).mean()
        next_one = np.abs(picture - sub[2 * k + 1].to_ndarray(format="yuv420p")[:90]).mean()
        assert same < next_one


def test_cache_hit_returns_equal_loops_without_rendering(
    cached: tuple[Path, dict[str, EncodedLoop]],
) -> None:
    cache, loops = cached
    progress = Progress()
    assert encode_loops(SPEC, ENCODINGS, cache, progress) == loops
    assert progress.calls == []
    entry = cache / cache_key(SPEC, ENCODINGS)
    assert sorted(p.name for p in entry.iterdir()) == sorted(
        f"{e.name}.{ext}" for e in ENCODINGS for ext in ("h264", "json")
    )
    assert not list(cache.glob("*.tmp"))


def test_a_different_spec_is_a_different_entry(tmp_path: Path) -> None:
    other: SceneSpec = default_scene(10, 320, 180, 10.0, 10, 3.0)
    assert cache_key(other, ENCODINGS) != cache_key(SPEC, ENCODINGS)
    assert cache_key(SPEC, ENCODINGS[:1]) != cache_key(SPEC, ENCODINGS)


@pytest.mark.parametrize("damage", ["flip_stream_byte", "truncate_index", "remove_stream"])
def test_damaged_cache_entry_is_encoded_again(damage: str, tmp_path: Path) -> None:
    encodings = ENCODINGS[1:2]
    original = encode_loops(SPEC, encodings, tmp_path)["sub"]
    entry = tmp_path / cache_key(SPEC, encodings)
    stream, index = entry / "sub.h264", entry / "sub.json"
    if damage == "flip_stream_byte":
        data = bytearray(stream.read_bytes())
        data[len(data) // 2] ^= 0x40
        stream.write_bytes(bytes(data))
    elif damage == "truncate_index":
        index.write_text(index.read_text()[:100])
    else:
        stream.unlink()
    progress = Progress()
    again = encode_loops(SPEC, encodings, tmp_path, progress)["sub"]
    assert progress.calls[-1] == (SPEC.frame_count, SPEC.frame_count)
    assert len(decode(again)) == len(original.units)
    # The repaired entry is a hit again.
    hit = Progress()
    assert encode_loops(SPEC, encodings, tmp_path, hit)["sub"] == again
    assert hit.calls == []


def test_progress_counts_rendered_frames(tmp_path: Path) -> None:
    progress = Progress()
    encode_loops(SPEC, ENCODINGS[1:2], tmp_path, progress)
    total = SPEC.frame_count
    assert progress.calls == [(i, total) for i in range(1, total + 1)]


def test_concurrent_callers_encode_once(
    cached: tuple[Path, dict[str, EncodedLoop]], tmp_path: Path
) -> None:
    _, loops = cached
    progress = Progress()
    results: list[dict[str, EncodedLoop]] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(encode_loops(SPEC, ENCODINGS, tmp_path, progress))
        )
        for _ in range(2)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert len(results) == 2 and results[0] == results[1]
    assert results[0].keys() == loops.keys()
    assert len(progress.calls) == SPEC.frame_count  # one render pass between them


@pytest.mark.parametrize(
    ("encodings", "match"),
    [
        ((StreamEncoding("main", 320, 180, 15.0, 10, 400),), "fps"),
        ((StreamEncoding("x", 160, 90, 10.0, 10, 100),) * 2, "unique"),
        ((StreamEncoding("x", 160, 90, 10.0 / 7, 10, 100, frame_step=7),), "divide"),
        ((), "no encodings"),
    ],
)
def test_bad_encodings_are_refused(
    encodings: tuple[StreamEncoding, ...], match: str, tmp_path: Path
) -> None:
    with pytest.raises(EncodeError, match=match):
        encode_loops(SPEC, encodings, tmp_path)


@pytest.mark.parametrize(
    ("fields", "match"),
    [
        ({"name": "../x"}, "name"),
        ({"width": 161}, "even"),
        ({"bitrate_kbps": 0}, "positive"),
        ({"frame_step": 0}, "positive"),
    ],
)
def test_bad_encoding_fields_are_refused(fields: dict[str, object], match: str) -> None:
    args: dict[str, object] = {
        "name": "x",
        "width": 160,
        "height": 90,
        "fps": 10.0,
        "gop": 10,
        "bitrate_kbps": 100,
    }
    with pytest.raises(EncodeError, match=match):
        StreamEncoding(**{**args, **fields})  # type: ignore[arg-type]


# A NAL unit as it appears in a byte stream: no 00 00 0x inside, not ending in a zero byte.
nal_bytes = st.binary(min_size=1, max_size=40).map(
    lambda b: bytes([0x65]) + b.replace(b"\x00", b"\x00\x05") + b"\x80"
)


@given(nals=st.lists(nal_bytes, min_size=1, max_size=8), long_codes=st.lists(st.booleans()))
def test_split_annexb_recovers_nal_units(nals: list[bytes], long_codes: list[bool]) -> None:
    codes = [
        b"\x00\x00\x00\x01" if i < len(long_codes) and long_codes[i] else b"\x00\x00\x01"
        for i in range(len(nals))
    ]
    stream = b"".join(c + n for c, n in zip(codes, nals, strict=True))
    assert split_annexb(stream) == nals
