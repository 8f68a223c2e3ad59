"""What the simulated camera answers to each RTSP request: plain logic, no sockets.

The asyncio server (`fleet.sim.server`) feeds parsed requests in and writes the bytes out; this
module owns routing, sessions, session limits and keep-alive expiry.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from urllib.parse import urlsplit

from fleet.profiles import StreamKind
from fleet.rtsp.message import Request, render_response
from fleet.rtsp.sdp import h264_sdp
from fleet.rtsp.transport import TransportError, TransportSpec, format_transport, parse_transport
from fleet.sim.camera import SimCamera
from fleet.sim.session import PacketSink, SimSession

SUPPORTED = ("OPTIONS", "DESCRIBE", "SETUP", "PLAY", "PAUSE", "GET_PARAMETER", "TEARDOWN")
_CONTROL_SUFFIX = re.compile(r"/trackID=\d+$")


@dataclass
class RtspClient:
    """One TCP control connection and what it set up."""

    id: int
    peer_host: str
    # Opens the sink for a transport we answer with, completing it (e.g. our UDP ports);
    # None when that transport is not possible on this connection.
    make_sink: Callable[[TransportSpec], tuple[TransportSpec, PacketSink] | None]
    session_ids: set[str] = field(default_factory=set)


class RtspService:
    def __init__(
        self,
        cameras: Iterable[SimCamera],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.cameras = {c.name: c for c in cameras}
        self.sessions: dict[str, SimSession] = {}
        self.clock = clock
        self.routes: dict[str, tuple[SimCamera, StreamKind]] = {}
        for cam in self.cameras.values():
            self.routes[f"/{cam.name}"] = (cam, "main")
            self.routes[cam.profile.stream_path("main", cam.channel)] = (cam, "main")
            if "sub" in cam.streams:
                self.routes[f"/{cam.name}/sub"] = (cam, "sub")
                self.routes[cam.profile.stream_path("sub", cam.channel)] = (cam, "sub")

    # -- routing -------------------------------------------------------------------------------

    def resolve(self, uri: str) -> tuple[SimCamera, StreamKind] | None:
        """Map a request URI (with or without the track control suffix) to a camera stream."""
        try:
            parts = urlsplit(uri)
        except ValueError:
            return None
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        target = _CONTROL_SUFFIX.sub("", target)
        if len(target) > 1:
            target = target.rstrip("/")
        return self.routes.get(target)

    # -- requests ------------------------------------------------------------------------------

    def handle(self, req: Request, client: RtspClient) -> bytes:
        session = self._session_of(req)
        if session is not None:
            session.last_activity = self.clock()
        method = req.method.upper()
        if method not in SUPPORTED:
            return render_response(501, req.cseq, [("Public", ", ".join(SUPPORTED))])
        if method == "OPTIONS":
            return render_response(200, req.cseq, [("Public", ", ".join(SUPPORTED))])
        if method == "DESCRIBE":
            return self._describe(req)
        if method == "SETUP":
            return self._setup(req, client)
        if session is None:
            # Keep-alives without a session are harmless; stateful methods need one.
            if method == "GET_PARAMETER":
                return render_response(200, req.cseq)
            return render_response(454, req.cseq)
        session_header = [("Session", session.id)]
        if method == "PLAY":
            return self._play(req, session)
        if method == "PAUSE":
            session.playing = False
            return render_response(200, req.cseq, session_header)
        if method == "TEARDOWN":
            self.close_session(session.id)
            return render_response(200, req.cseq, session_header)
        return render_response(200, req.cseq, session_header)  # GET_PARAMETER keep-alive

    def _describe(self, req: Request) -> bytes:
        route = self.resolve(req.uri)
        if route is None:
            return render_response(404, req.cseq)
        cam, kind = route
        loop = cam.streams[kind].normal.loop
        sdp = h264_sdp(
            session_id=secrets.randbits(31),
            origin_address="127.0.0.1",
            sps=loop.sps,
            pps=loop.pps,
            framerate=loop.encoding.fps,
            width=loop.encoding.width,
            height=loop.encoding.height,
            session_name=f"{cam.name} {kind}",
        )
        base = req.uri if req.uri.endswith("/") else req.uri + "/"
        return render_response(
            200,
            req.cseq,
            [("Content-Base", base), ("Content-Type", "application/sdp")],
            sdp.encode(),
        )

    def _setup(self, req: Request, client: RtspClient) -> bytes:
        route = self.resolve(req.uri)
        if route is None:
            return render_response(404, req.cseq)
        if req.headers.get("Session"):
            # One track per stream: a second SETUP in the same session is not meaningful.
            return render_response(459, req.cseq)
        cam, kind = route
        try:
            offers = parse_transport(req.headers.get("Transport") or "")
        except TransportError:
            return render_response(461, req.cseq)
        chosen: tuple[TransportSpec, PacketSink] | None = None
        for offer in offers:
            answer = _answer_for(offer)
            chosen = client.make_sink(answer) if answer else None
            if chosen:
                break
        if chosen is None:
            return render_response(461, req.cseq)
        if not cam.can_admit():
            cam.sessions_rejected += 1
            return render_response(453, req.cseq)
        spec, sink = chosen
        session = SimSession(
            id=secrets.token_hex(8),
            camera=cam.name,
            kind=kind,
            sink=sink,
            transport="",
            connection_id=client.id,
            last_activity=self.clock(),
        )
        session.transport = format_transport(replace(spec, ssrc=session.ssrc))
        self.sessions[session.id] = session
        cam.sessions[session.id] = session
        cam.sessions_total += 1
        client.session_ids.add(session.id)
        timeout = cam.profile.keepalive.session_timeout_s
        return render_response(
            200,
            req.cseq,
            [("Transport", session.transport), ("Session", f"{session.id};timeout={timeout}")],
        )

    def _play(self, req: Request, session: SimSession) -> bytes:
        cam = self.cameras[session.camera]
        if not session.playing:
            session.frame_offset = cam.frame_offset_for_new_client(session.kind)
            session.waiting_keyframe = True
            session.playing = True
        rtptime = session.rtp_timestamp(cam.next_frame, cam.clock.fps)
        base = req.uri.rstrip("/")
        rtp_info = f"url={base}/trackID=0;seq={session.sequencer.seq};rtptime={rtptime}"
        return render_response(
            200,
            req.cseq,
            [("Session", session.id), ("Range", "npt=0.000-"), ("RTP-Info", rtp_info)],
        )

    # -- session life --------------------------------------------------------------------------

    def _session_of(self, req: Request) -> SimSession | None:
        value = req.headers.get("Session")
        if not value:
            return None
        return self.sessions.get(value.split(";", 1)[0].strip())

    def touch(self, session_id: str) -> None:
        """Liveness from RTCP receiver reports, which count as keep-alive (RFC 2326 §A)."""
        session = self.sessions.get(session_id)
        if session is not None:
            session.last_activity = self.clock()

    def close_session(self, session_id: str) -> None:
        session = self.sessions.pop(session_id, None)
        if session is not None:
            self.cameras[session.camera].sessions.pop(session_id, None)

    def drop_client(self, client: RtspClient) -> None:
        for sid in client.session_ids:
            self.close_session(sid)
        client.session_ids.clear()

    def expire(self) -> list[str]:
        """Close sessions whose keep-alive lapsed, as the camera's firmware would."""
        now = self.clock()
        expired = [
            sid
            for sid, s in self.sessions.items()
            if now - s.last_activity > self.cameras[s.camera].profile.keepalive.session_timeout_s
        ]
        for sid in expired:
            self.close_session(sid)
        return expired


def _answer_for(offer: TransportSpec) -> TransportSpec | None:
    """The transport we would answer to a client's offer, or None if we can't serve it."""
    if not offer.unicast:
        return None
    if offer.lower == "TCP":
        return TransportSpec(
            protocol="RTP/AVP/TCP",
            lower="TCP",
            unicast=True,
            interleaved=offer.interleaved or (0, 1),
            client_port=None,
            server_port=None,
            ssrc=None,
            mode=None,
        )
    if offer.client_port is None:
        return None
    return TransportSpec(
        protocol="RTP/AVP",
        lower="UDP",
        unicast=True,
        interleaved=None,
        client_port=offer.client_port,
        server_port=None,  # filled in by the sink factory, which owns the UDP sockets
        ssrc=None,
        mode=None,
    )
