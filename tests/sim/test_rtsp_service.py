"""The simulator's RTSP logic without sockets: sessions, limits, keep-alive expiry, degradation."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import SIM_CACHE

from fleet.profiles import load_profile
from fleet.rtsp.message import ClientConnection, Request, Response, ServerConnection, render_request
from fleet.rtsp.transport import TransportSpec
from fleet.sim.build import SimOptions, build_cameras, plan_cameras
from fleet.sim.player import tick
from fleet.sim.rtsp_service import RtspClient, RtspService
from fleet.sim.session import PacketSink


class FakeSink:
    def __init__(self) -> None:
        self.frames: list[list[bytes]] = []
        self.rtcp: list[bytes] = []
        self.queued = 0

    def send_rtp(self, packets: list[bytes]) -> None:
        self.frames.append(packets)

    def send_rtcp(self, packet: bytes) -> None:
        self.rtcp.append(packet)

    def backlog(self) -> int:
        return self.queued


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def service_for(profile: str, clock: Clock) -> RtspService:
    opts = SimOptions(
        cameras=1,
        profile=load_profile(profile),
        main_size=(160, 90),
        loop_seconds=4,
        cache_dir=Path(SIM_CACHE),
    )
    return RtspService(build_cameras(opts, plan_cameras(opts)), clock=clock)


def client(sinks: list[FakeSink]) -> RtspClient:
    def make_sink(spec: TransportSpec) -> tuple[TransportSpec, PacketSink]:
        sink = FakeSink()
        sinks.append(sink)
        return spec, sink

    return RtspClient(id=len(sinks), peer_host="127.0.0.1", make_sink=make_sink)


def ask(svc: RtspService, c: RtspClient, method: str, uri: str, **headers: str) -> Response:
    [req] = ServerConnection().receive_data(
        render_request(method, uri, 1, [(k.replace("_", "-"), v) for k, v in headers.items()])
    )
    assert isinstance(req, Request)
    [resp] = ClientConnection().receive_data(svc.handle(req, c))
    assert isinstance(resp, Response)
    return resp


def play(svc: RtspService, c: RtspClient, uri: str) -> str:
    setup = ask(
        svc, c, "SETUP", uri + "/trackID=0", Transport="RTP/AVP/TCP;unicast;interleaved=0-1"
    )
    assert setup.status == 200
    sid = (setup.headers.get("Session") or "").split(";")[0]
    assert ask(svc, c, "PLAY", uri, Session=sid).status == 200
    return sid


URI = "rtsp://127.0.0.1:554/cam1"


def test_routes_follow_the_profile_templates() -> None:
    svc = service_for("dahua", Clock())
    assert svc.resolve("rtsp://h/cam/realmonitor?channel=1&subtype=0") is not None
    assert svc.resolve("rtsp://h/cam/realmonitor?channel=1&subtype=1/trackID=0") is not None
    assert svc.resolve("rtsp://h/cam/realmonitor?channel=2&subtype=0") is None
    cam, kind = svc.resolve("rtsp://h/cam1/sub/") or (None, None)
    assert cam is not None and kind == "sub"


def test_session_expires_without_keepalive_and_survives_with_it() -> None:
    clock = Clock()
    svc = service_for("dahua", clock)
    timeout = load_profile("dahua").keepalive.session_timeout_s
    sid = play(svc, client([]), URI)
    clock.now += timeout - 1
    assert ask(svc, client([]), "GET_PARAMETER", URI, Session=sid).status == 200
    clock.now += timeout - 1
    assert svc.expire() == []
    clock.now += 2
    assert svc.expire() == [sid]
    assert svc.cameras["cam1"].clients == 0
    assert ask(svc, client([]), "PLAY", URI, Session=sid).status == 454


def test_new_session_starts_on_a_keyframe_and_gets_every_frame() -> None:
    svc = service_for("axis", Clock())
    sinks: list[FakeSink] = []
    play(svc, client(sinks), URI)
    cam = svc.cameras["cam1"]
    start = 3  # mid-GOP: nothing is sent until the next keyframe
    for n in range(start, start + 2 * cam.gop):
        tick(cam, n, 0.0)
    assert len(sinks[0].frames) == 2 * cam.gop - (cam.gop - start)
    assert cam.frames_sent["main"] == len(sinks[0].frames)


def test_frames_differ_between_clients_where_the_profile_says_so() -> None:
    svc = service_for("dahua", Clock())
    assert load_profile("dahua").multi_client.frames_differ
    sinks: list[FakeSink] = []
    play(svc, client(sinks), URI)
    play(svc, client(sinks), URI)
    cam = svc.cameras["cam1"]
    assert cam.degraded
    offsets = [s.frame_offset for s in cam.sessions.values()]
    assert offsets[0] != offsets[1]
    for n in range(cam.gop * 2):
        tick(cam, n, 0.0)
    # Same tick, different loop positions: the payloads differ.
    assert sinks[0].frames[0][-1][12:] != sinks[1].frames[0][-1][12:]


def test_slow_client_loses_frames_until_the_next_keyframe_others_unaffected() -> None:
    svc = service_for("axis", Clock())
    sinks: list[FakeSink] = []
    play(svc, client(sinks), URI)
    play(svc, client(sinks), URI)
    cam = svc.cameras["cam1"]
    for n in range(cam.gop):
        tick(cam, n, 0.0)
    sinks[0].queued = 10**9  # client 0 stops reading
    for n in range(cam.gop, cam.gop + 5):
        tick(cam, n, 0.0)
    sinks[0].queued = 0
    for n in range(cam.gop + 5, 2 * cam.gop):
        tick(cam, n, 0.0)
    assert len(sinks[1].frames) == 2 * cam.gop
    # The stall hit a keyframe: the client loses that whole GOP and resumes on the next one.
    assert len(sinks[0].frames) == cam.gop
    slow = next(s for s in cam.sessions.values() if s.sink is sinks[0])
    assert slow.frames_dropped == cam.gop


@pytest.mark.parametrize("profile", ["axis", "generic-onvif"])
def test_sender_reports_follow_the_profile(profile: str) -> None:
    svc = service_for(profile, Clock())
    sinks: list[FakeSink] = []
    play(svc, client(sinks), URI)
    cam = svc.cameras["cam1"]
    for n in range(cam.gop + 1):
        tick(cam, n, float(n))
    assert bool(sinks[0].rtcp) == load_profile(profile).rtcp_sender_reports
