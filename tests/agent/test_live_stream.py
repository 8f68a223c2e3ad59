"""The live view's stream: the camera's own H.264 remuxed to fragmented MP4 (never re-encoded),
one fan-out consumer per viewer, checked by ffprobe — first packet by packet, then over real
HTTP from `camfleet agent run` against the simulator."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import free_port, require_tool, start_sim, wait_for
from test_agent_cli_config import camera_toml, start_configured
from test_agent_e2e import SIM_ARGS, Agent, Agents, streaming
from test_hub import FRAME_US, GOP, h264, info, stamped

from agent.fanout.hub import StreamHub
from agent.frames import StampedPacket
from agent.live.gop import GopCache
from agent.live.remux import LiveRemux, StreamChanged
from agent.live.viewer import QUEUE, LiveViewer

# H.264 profile_idc by the name ffprobe gives it.
PROFILES = {"Constrained Baseline": 66, "Baseline": 66, "Main": 77, "High": 100}


def probe(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The file's video stream and its frames as ffprobe decodes them; fails on any error."""
    out = subprocess.run(
        [require_tool("ffprobe"), "-v", "error", "-select_streams", "v:0", "-show_streams",
         "-show_frames", "-show_entries", "frame=key_frame,pts", "-of", "json", str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert out.returncode == 0 and not out.stderr, out.stderr
    parsed = json.loads(out.stdout)
    return parsed["streams"][0], parsed["frames"]


def assert_codec_matches(codec: str, stream: dict[str, Any]) -> None:
    """The RFC 6381 string says what ffprobe reads from the same file's SPS."""
    kind, _, hex_ = codec.partition(".")
    assert kind == "avc1" and len(hex_) == 6, codec
    assert int(hex_[:2], 16) == PROFILES[stream["profile"]], (codec, stream["profile"])
    assert int(hex_[4:], 16) == stream["level"], (codec, stream["level"])


def from_keyframe(packets: list[StampedPacket], start: int, stop: int) -> list[int]:
    """Indices start..stop-1 from the first keyframe on: what a stream resuming at `start` shows."""
    first = next(i for i in range(start, stop) if packets[i].keyframe)
    return list(range(first, stop))


def keyframes(packets: list[StampedPacket], indices: list[int]) -> list[int]:
    return [int(packets[i].keyframe) for i in indices]


def remuxed(tmp_path: Path, packets: list[StampedPacket]) -> tuple[LiveRemux, Path]:
    remux = LiveRemux()
    data = b"".join(remux.feed(sp) for sp in packets) + remux.close()
    path = tmp_path / "live.mp4"
    path.write_bytes(data)
    return remux, path


def test_remux_starts_at_a_keyframe_and_skips_to_the_next_after_a_gap(tmp_path: Path) -> None:
    packets = stamped(h264(5 * GOP))
    # Joined mid-GOP; packets 23..26 lost (a viewer that fell behind).
    remux, path = remuxed(tmp_path, packets[3:23] + packets[27:])
    stream, frames = probe(path)
    # 3..9 wait for keyframe 10; after the gap, packets wait for the next keyframe.
    kept = from_keyframe(packets, 3, 23) + from_keyframe(packets, 27, 5 * GOP)
    assert kept[0] == 10 and remux.skipped == len(packets) - 3 - 4 - len(kept)
    assert [f["key_frame"] for f in frames] == keyframes(packets, kept)
    # The media timeline has no hole: across the gap it goes on by one frame.
    assert [f["pts"] for f in frames] == [round(i * FRAME_US) for i in range(len(kept))]
    assert remux.codec is not None
    assert_codec_matches(remux.codec, stream)
    assert (stream["width"], stream["height"]) == (64, 48)


def test_remux_ends_where_the_stream_parameters_change() -> None:
    first = stamped(h264(GOP))
    resized = info(generation=2, width=96, height=64)
    later = stamped(h264(GOP, 96, 64), resized)
    remux = LiveRemux()
    for sp in first:
        remux.feed(sp)
    with pytest.raises(StreamChanged):
        remux.feed(later[0])


def test_a_viewer_starts_with_the_cached_gop_and_skips_ahead_when_it_falls_behind(
    tmp_path: Path,
) -> None:
    hub = StreamHub("cam1/main")
    gop = GopCache(hub)  # drained as a viewer subscribes (its thread is not needed here)
    packets = stamped(h264(12 * GOP))
    try:
        for sp in packets[:14]:
            hub.publish(sp)
        viewer = LiveViewer(hub, gop)  # mid-GOP: starts at once, at keyframe 10
        for sp in packets[14:30]:
            hub.publish(sp)
        data = viewer.read()
        assert viewer.codec is not None and viewer.read() == b""
        behind = packets[30 : 30 + QUEUE + 8]  # more than its queue holds
        for sp in behind:
            hub.publish(sp)
        data += viewer.read()
        views = [c for c in hub.stats().consumers if c.name == viewer.name]
        assert views[0].dropped == 8 and views[0].policy == "drop_oldest"
        viewer.close()
        assert viewer.name not in {c.name for c in hub.stats().consumers}
    finally:
        gop.stop()
        hub.close()
    path = tmp_path / "viewer.mp4"
    path.write_bytes(data)
    _, frames = probe(path)
    # 10..29 without a miss or a repeat, then 30..37 lost to the full queue: from 38 on it
    # waits for a keyframe; the muxer holds the last frame back.
    kept = list(range(10, 30)) + from_keyframe(packets, 38, 30 + QUEUE + 8 - 1)
    assert kept[20] > 38
    assert [f["key_frame"] for f in frames] == keyframes(packets, kept)
    assert [f["pts"] for f in frames] == [round(i * FRAME_US) for i in range(len(kept))]


# -- over HTTP, against the simulator ---------------------------------------------------------


@pytest.fixture
def configured(tmp_path: Path) -> Iterator[Agents]:
    agents = Agents(tmp_path)
    yield agents
    agents.kill_all()


def live_views(agent: Agent) -> dict[str, list[str]]:
    streams = agent.stats()["streams"]
    return {k: [c for c in s["consumers"] if c.startswith("live-view")] for k, s in streams.items()}


def read_live(agent: Agent, path: str, out: Path, seconds: float) -> httpx.Headers:
    """About `seconds` of the stream into `out`; closes the connection."""
    with httpx.stream("GET", agent.http + path, timeout=10) as r:
        assert r.status_code == 200, r.read()
        assert r.headers["content-type"] == "video/mp4"
        with out.open("wb") as f:
            end = time.monotonic() + seconds
            for chunk in r.iter_bytes():
                f.write(chunk)
                if time.monotonic() > end:
                    break
        return r.headers


def test_live_mp4_over_http_one_consumer_per_viewer(tmp_path: Path, configured: Agents) -> None:
    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=1)
    try:
        sim_cam = sim.get("/cameras")[0]  # type: ignore[index]
        streams = sim_cam["streams"]
        nowhere = f"rtsp://127.0.0.1:{free_port()}/Streaming/Channels/101"
        config = tmp_path / "agent.toml"
        config.write_text('data_dir = "data"\n'
                          + camera_toml("cam1", streams["main"]["url"], streams["sub"]["url"])
                          + camera_toml("dead", nowhere))  # fmt: skip
        port = free_port()
        agent = start_configured(configured, port, "--config", str(config),
                                 "--http-port", str(port), "--segment-seconds", "2")  # fmt: skip
        wait_for(lambda: streaming(agent, "cam1/main", "cam1/sub"), 30, what="streaming")
        assert agent.get("/cameras/nope/live.mp4").status_code == 404
        assert agent.get("/cameras/dead/live.mp4").status_code == 503
        assert agent.get("/cameras/dead/live.mp4?stream=sub").status_code == 404

        headers = read_live(agent, "/cameras/cam1/live.mp4", tmp_path / "sub.mp4", 3)
        stream, frames = probe(tmp_path / "sub.mp4")  # the default: the sub stream
        assert (stream["width"], stream["height"]) == (streams["sub"]["width"],
                                                       streams["sub"]["height"])  # fmt: skip
        assert frames[0]["key_frame"] == 1 and len(frames) >= 10
        assert_codec_matches(headers["x-camfleet-codec"], stream)
        wait_for(lambda: live_views(agent) == {"cam1/main": [], "cam1/sub": [], "dead/main": []},
                 10, what="the viewer's consumer gone")  # fmt: skip

        # Two viewers of the main stream at once: a consumer each, still one camera session.
        main = f"{agent.http}/cameras/cam1/live.mp4?stream=main"
        with httpx.stream("GET", main) as one, httpx.stream("GET", main) as two:
            assert one.status_code == two.status_code == 200
            # Kept: an iterator dropped early closes its connection.
            chunks = [r.iter_bytes() for r in (one, two)]
            assert all(next(c) for c in chunks)
            assert len(live_views(agent)["cam1/main"]) == 2
        headers = read_live(agent, "/cameras/cam1/live.mp4?stream=main", tmp_path / "main.mp4", 2)
        stream, frames = probe(tmp_path / "main.mp4")
        assert (stream["width"], stream["height"]) == (320, 180)
        assert frames[0]["key_frame"] == 1 and len(frames) >= 10
        assert_codec_matches(headers["x-camfleet-codec"], stream)
        wait_for(lambda: live_views(agent)["cam1/main"] == [], 10, what="both viewers gone")

        sim_cam = sim.get("/cameras")[0]  # type: ignore[index]
        assert {k: s["clients"] for k, s in sim_cam["streams"].items()} == {"main": 1, "sub": 1}
        assert sim_cam["sessions_total"] == 2, sim_cam

        # The agent stops while someone watches: the stream ends, the agent exits cleanly.
        with httpx.stream("GET", f"{agent.http}/cameras/cam1/live.mp4") as watching:
            chunks = watching.iter_bytes()
            assert next(chunks)
            assert live_views(agent)["cam1/sub"]
            agent.stop()
    finally:
        sim.stop()
