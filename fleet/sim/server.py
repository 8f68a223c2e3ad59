"""The simulator's I/O edge: RTSP over TCP (with interleaved RTP) and UDP, HTTP, WS-Discovery.

All protocol decisions live in `rtsp_service`; this module only moves bytes and runs the clocks.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import uuid
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import uvicorn

from fleet.onvif.wsdiscovery import ProbeMatch
from fleet.rtsp.message import (
    InterleavedFrame,
    ProtocolError,
    Request,
    ServerConnection,
    interleaved,
    render_response,
)
from fleet.rtsp.transport import TransportSpec
from fleet.sim.camera import SimCamera
from fleet.sim.discovery import start_discovery_responder
from fleet.sim.http_api import create_app
from fleet.sim.player import play
from fleet.sim.rtsp_service import RtspClient, RtspService
from fleet.sim.session import PacketSink
from fleet.sim.truth import TruthRecord, iteration_truth
from fleet.utc import now_us

log = logging.getLogger("camfleet.sim")


@dataclass
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8554
    http_port: int = 8080
    discovery_port: int | None = None  # None: no WS-Discovery responder
    truth_path: Path | None = None


class TcpSink:
    """RTP over the RTSP connection itself (RFC 2326 §10.12 interleaved frames)."""

    def __init__(self, transport: asyncio.Transport, rtp_channel: int, rtcp_channel: int) -> None:
        self.transport = transport
        self.rtp_channel = rtp_channel
        self.rtcp_channel = rtcp_channel

    def send_rtp(self, packets: list[bytes]) -> None:
        if not self.transport.is_closing():
            self.transport.write(b"".join(interleaved(self.rtp_channel, p) for p in packets))

    def send_rtcp(self, packet: bytes) -> None:
        if not self.transport.is_closing():
            self.transport.write(interleaved(self.rtcp_channel, packet))

    def backlog(self) -> int:
        return self.transport.get_write_buffer_size()


class UdpSink:
    def __init__(
        self,
        rtp: asyncio.DatagramTransport,
        rtcp: asyncio.DatagramTransport,
        rtp_addr: tuple[str, int],
        rtcp_addr: tuple[str, int],
    ) -> None:
        self.rtp, self.rtcp = rtp, rtcp
        self.rtp_addr, self.rtcp_addr = rtp_addr, rtcp_addr

    def send_rtp(self, packets: list[bytes]) -> None:
        for p in packets:
            self.rtp.sendto(p, self.rtp_addr)

    def send_rtcp(self, packet: bytes) -> None:
        self.rtcp.sendto(packet, self.rtcp_addr)

    def backlog(self) -> int:
        return 0  # UDP never queues: a slow client loses packets, as with a real camera


class _Datagrams(asyncio.DatagramProtocol):
    """Our UDP RTP/RTCP socket; RTCP receiver reports from clients keep their sessions alive."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        sink = self.sim.udp_peers.get((str(addr[0]), int(addr[1])))
        for sid, session in list(self.sim.service.sessions.items()):
            if sink is not None and session.sink is sink:
                self.sim.service.touch(sid)


class _RtspProtocol(asyncio.Protocol):
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.parser = ServerConnection()
        self.transport: asyncio.Transport | None = None
        self.client: RtspClient | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("127.0.0.1", 0)
        self.client = RtspClient(
            id=next(self.sim.connection_ids), peer_host=str(peer[0]), make_sink=self._make_sink
        )

    def _make_sink(self, spec: TransportSpec) -> tuple[TransportSpec, PacketSink] | None:
        assert self.transport is not None and self.client is not None
        if spec.lower == "TCP":
            ch = spec.interleaved or (0, 1)
            return spec, TcpSink(self.transport, ch[0], ch[1])
        return self.sim.udp_sink(self.client.peer_host, spec)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None and self.client is not None
        for event in self.parser.receive_data(data):
            if isinstance(event, Request):
                try:
                    reply = self.sim.service.handle(event, self.client)
                except Exception:  # one bad request must not take the camera down
                    log.exception("error handling %s %s", event.method, event.uri)
                    reply = render_response(500, event.cseq)
                self.transport.write(reply)
            elif isinstance(event, InterleavedFrame):
                for sid in self.client.session_ids:  # interleaved RTCP from the client
                    self.sim.service.touch(sid)
            elif isinstance(event, ProtocolError):
                self.transport.write(render_response(event.status, event.cseq, reason=event.reason))
                if event.fatal:
                    self.transport.close()
                    return

    def connection_lost(self, exc: Exception | None) -> None:
        if self.client is not None:
            self.sim.service.drop_client(self.client)


@dataclass
class Simulator:
    cameras: list[SimCamera]
    options: ServeOptions
    service: RtspService = field(init=False)
    truth: list[TruthRecord] = field(default_factory=list)
    udp_peers: dict[tuple[str, int], UdpSink] = field(default_factory=dict)  # by RTCP address
    connection_ids: itertools.count[int] = field(default_factory=itertools.count)
    _udp: tuple[asyncio.DatagramTransport, asyncio.DatagramTransport] | None = None
    _udp_ports: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        self.service = RtspService(self.cameras)

    @property
    def rtsp_base(self) -> str:
        return f"rtsp://{self.options.host}:{self.options.port}"

    def udp_sink(
        self, peer_host: str, spec: TransportSpec
    ) -> tuple[TransportSpec, PacketSink] | None:
        if self._udp is None or spec.client_port is None:
            return None
        rtp_addr = (peer_host, spec.client_port[0])
        rtcp_addr = (peer_host, spec.client_port[1])
        sink = UdpSink(*self._udp, rtp_addr, rtcp_addr)
        self.udp_peers[rtcp_addr] = sink
        return replace(spec, server_port=self._udp_ports), sink

    def on_iteration(self, camera: SimCamera, iteration: int) -> None:
        records = iteration_truth(camera.name, camera.spec, camera.clock, iteration)
        self.truth.extend(records)
        if self.options.truth_path and records:
            try:
                with self.options.truth_path.open("a") as f:
                    for r in records:
                        f.write(json.dumps(r.to_json()) + "\n")
            except OSError as exc:  # the cameras keep streaming; GET /truth still has it
                log.error("cannot write truth to %s: %s", self.options.truth_path, exc)

    def discovery_matches(self) -> list[ProbeMatch]:
        http = f"http://{self.options.host}:{self.options.http_port}"
        return [
            ProbeMatch(
                endpoint=f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, self.rtsp_base + cam.name)}",
                types=("dn:NetworkVideoTransmitter", "tds:Device"),
                scopes=(
                    f"onvif://www.onvif.org/name/{cam.name}",
                    f"onvif://www.onvif.org/hardware/camfleet-sim-{cam.profile.name}",
                    "onvif://www.onvif.org/type/video_encoder",
                ),
                xaddrs=(
                    f"{http}/onvif/device_service/{cam.name}",
                    *(
                        self.rtsp_base + cam.profile.stream_path(k, cam.channel)
                        for k in cam.streams
                    ),
                ),
                relates_to="",
            )
            for cam in self.cameras
        ]

    async def _reap(self) -> None:
        while True:
            await asyncio.sleep(1.0)
            for sid in self.service.expire():
                log.info("session %s expired (no keep-alive)", sid)

    async def serve(self) -> None:
        """Serve until the HTTP server is told to stop (SIGINT/SIGTERM)."""
        loop = asyncio.get_running_loop()
        opts = self.options
        rtsp = await loop.create_server(lambda: _RtspProtocol(self), opts.host, opts.port)
        rtp_t, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=(opts.host, 0)
        )
        rtcp_t, _ = await loop.create_datagram_endpoint(
            lambda: _Datagrams(self), local_addr=(opts.host, 0)
        )
        self._udp = (rtp_t, rtcp_t)
        self._udp_ports = (
            rtp_t.get_extra_info("sockname")[1],
            rtcp_t.get_extra_info("sockname")[1],
        )
        # Frame 0 of every camera is "now": the wall clock and the event loop's clock are read
        # together so stamps in the truth match when frames are really sent.
        epoch_us, loop_start = now_us(), loop.time()
        for cam in self.cameras:
            cam.clock = replace(cam.clock, epoch_us=epoch_us)
        tasks = [loop.create_task(play(c, loop_start, self.on_iteration)) for c in self.cameras]
        tasks.append(loop.create_task(self._reap()))
        discovery = None
        if opts.discovery_port is not None:
            discovery, _ = await start_discovery_responder(
                opts.host, opts.discovery_port, self.discovery_matches
            )
        http = uvicorn.Server(
            uvicorn.Config(
                create_app(self), host=opts.host, port=opts.http_port, log_level="warning"
            )
        )
        print(f"camfleet sim: {len(self.cameras)} cameras at {self.rtsp_base}/cam1 ..", flush=True)
        try:
            await http.serve()
        finally:
            for t in tasks:
                t.cancel()
            for t in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await t
            rtsp.close()
            rtp_t.close()
            rtcp_t.close()
            if discovery is not None:
                discovery.close()
