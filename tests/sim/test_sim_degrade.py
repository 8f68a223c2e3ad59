"""Degradation and session limits, observed from the outside with real clients."""

from __future__ import annotations

import av
from conftest import wait_for
from test_sim_peers import rtsp_exchange

from fleet.profiles import load_profile
from fleet.rtsp.message import render_request


def _pts_step(container: av.container.InputContainer, packets: int) -> set[int]:
    """The set of pts differences over the next `packets` video packets."""
    last, steps = None, set()
    for pkt in container.demux(video=0):
        if pkt.pts is None:
            continue
        if last is not None:
            steps.add(pkt.pts - last)
        last = pkt.pts
        packets -= 1
        if packets <= 0:
            return steps
    raise AssertionError("stream ended")


def test_second_client_halves_fps_and_is_visible_in_stats(sim_factory) -> None:  # type: ignore[no-untyped-def]
    prof = load_profile("reolink")
    assert prof.multi_client.fps_divisor == 2
    sim = sim_factory("--profile", "reolink", "--main-size", "320x180", "--loop-seconds", "4",
                      cameras=1)  # fmt: skip
    url = sim.rtsp + prof.stream_path("main", 1)
    opts = {"rtsp_transport": "tcp", "timeout": "5000000"}
    with av.open(url, options=opts) as first:
        tb = first.streams.video[0].time_base
        one_frame = round(1 / (prof.main.fps * tb))
        assert _pts_step(first, 10) == {one_frame}
        cam = sim.get("/cameras")[0]
        assert (cam["clients"], cam["degraded"]) == (1, False)
        with av.open(url, options=opts) as second:
            wait_for(lambda: sim.get("/cameras")[0]["degraded"], what="degraded state")
            assert sim.get("/cameras")[0]["clients"] == 2
            # Both clients now get every second frame: the camera's encoder is split.
            _pts_step(first, 40)  # let the switch (at the next GOP) pass
            assert _pts_step(first, 10) == {2 * one_frame}
            assert _pts_step(second, 10) == {2 * one_frame}
        wait_for(lambda: not sim.get("/cameras")[0]["degraded"], what="recovery")
        _pts_step(first, 40)
        assert _pts_step(first, 10) == {one_frame}


def test_sessions_above_the_limit_get_453(sim_factory) -> None:  # type: ignore[no-untyped-def]
    prof = load_profile("reolink")
    sim = sim_factory("--profile", "reolink", "--main-size", "320x180", "--loop-seconds", "4",
                      cameras=1)  # fmt: skip
    url = sim.rtsp + "/cam1"
    setup = [
        render_request("SETUP", url + "/trackID=0", i + 1,
                       [("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1")])
        for i in range(prof.max_sessions + 1)
    ]  # fmt: skip
    statuses = [r.status for r in rtsp_exchange(sim.port, *setup)]
    assert statuses == [200] * prof.max_sessions + [453]
    cams = sim.get("/cameras")
    assert cams[0]["sessions_rejected"] == 1
    # The connection that held them is closed now: its sessions are released.
    wait_for(lambda: sim.get("/cameras")[0]["clients"] == 0, what="sessions released")
