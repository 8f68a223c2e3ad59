"""The standalone agent under faults: a third-party RTSP server, a restart, a garbage peer."""

from __future__ import annotations

import itertools
import random
import re
import socket
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import free_port, start_sim, wait_for
from interop.media import gst_rtsp_server, make_h264_mp4
from test_agent_e2e import SIM_ARGS, Agent, Agents, streaming, verify


@pytest.fixture
def agents(tmp_path: Path) -> Iterator[Agents]:
    """Agents on the hikvision profile (RTSP over TCP)."""
    started = Agents(tmp_path)
    yield started
    started.kill_all()


def _stream(agent: Agent, name: str) -> dict:  # type: ignore[type-arg]
    return agent.stats()["streams"][name]  # type: ignore[no-any-return]


def _closed_segments(agent: Agent, camera: str) -> int:
    segments = agent.get(f"/cameras/{camera}/recordings").json()["segments"]
    return sum(s["status"] == "closed" for s in segments)


def _verified(data: Path, camera: str) -> str:
    """`camfleet agent verify` output; it must pass and have checked at least 10 audited frames."""
    code, out = verify(data, camera)
    assert code == 0, out
    assert int(out.split("frames checked")[1].split()[0]) >= 10, out
    return out


def _query(data: Path, sql: str, *args: object) -> list[tuple]:  # type: ignore[type-arg]
    with sqlite3.connect(data / "index.db") as db:
        return db.execute(sql, args).fetchall()


def test_gstreamer_rtsp_server_as_the_camera(tmp_path: Path, agents: Agents) -> None:
    mp4 = make_h264_mp4(tmp_path / "cam.mp4", 320, 180, fps=15, seconds=6, gop=15)
    data = tmp_path / "data"
    # gst_rtsp_server serves TCP-interleaved only (udp=False); the hikvision profile asks for TCP.
    with gst_rtsp_server(mp4) as (url, _proc):
        agent = agents({"cam1": url}, data)
        wait_for(lambda: streaming(agent, "cam1/main"), timeout=20, what="streaming")
        wait_for(lambda: _stream(agent, "cam1/main")["analysed"] >= 10, timeout=20,
                 what="audited frames")  # fmt: skip
        wait_for(lambda: _closed_segments(agent, "cam1") >= 2, timeout=20, what="two segments")
        agent.stop()
    _verified(data, "cam1")
    stamps = [s for (s,) in _query(data, "SELECT stamp_us FROM frames WHERE camera = ? "
                                         "AND stream = 'main' ORDER BY seq", "cam1")]  # fmt: skip
    assert len(stamps) >= 30
    assert all(b > a for a, b in itertools.pairwise(stamps)), "stamps not increasing"


def _record_and_stop(agent: Agent) -> None:
    wait_for(lambda: streaming(agent, "cam1/main"), timeout=20, what="streaming")
    wait_for(lambda: _stream(agent, "cam1/main")["analysed"] >= 10, timeout=20,
             what="audited frames")  # fmt: skip
    agent.stop()  # SIGTERM; asserts exit code 0


def test_agent_restart_is_a_known_gap(tmp_path: Path, agents: Agents) -> None:
    data = tmp_path / "data"
    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=1)
    try:
        for _run in range(2):
            _record_and_stop(agents({"cam1": f"{sim.rtsp}/cam1"}, data))
    finally:
        sim.stop()
    out = _verified(data, "cam1")
    assert int(out.split("known gaps")[1].split()[0]) >= 1, out
    gaps = _query(data, "SELECT start_us, end_us FROM gaps WHERE camera = 'cam1' "
                        "AND reason = 'agent_stopped'")  # fmt: skip
    assert len(gaps) == 1 and gaps[0][1] > gaps[0][0], gaps
    # The gap lies between the two runs' frames: none recorded inside it.
    inside = _query(data, "SELECT count(*) FROM frames WHERE camera = 'cam1' "
                          "AND stamp_us > ? AND stamp_us < ?", *gaps[0])  # fmt: skip
    assert inside == [(0,)]


def random_bytes(request: bytes, rng: random.Random) -> bytes:
    return rng.randbytes(4096)


def sdp_of_garbage(request: bytes, rng: random.Random) -> bytes:
    """A well-formed RTSP 200 that echoes the CSeq, with random bytes where the SDP should be."""
    cseq = re.search(rb"CSeq:\s*(\d+)", request, re.IGNORECASE)
    body = rng.randbytes(256)
    head = (f"RTSP/1.0 200 OK\r\nCSeq: {int(cseq[1]) if cseq else 1}\r\n"
            f"Public: OPTIONS, DESCRIBE, SETUP, PLAY, TEARDOWN\r\n"
            f"Content-Type: application/sdp\r\nContent-Length: {len(body)}\r\n\r\n")  # fmt: skip
    return head.encode() + body


class GarbageServer:
    """A TCP peer on a free port that answers every request with `reply(request)`, never video."""

    def __init__(self, reply: Callable[[bytes, random.Random], bytes]) -> None:
        self.port = free_port()
        self.connections = 0
        self._reply = reply
        self._sock = socket.create_server(("127.0.0.1", self.port))
        self._sock.settimeout(0.2)
        self._stop = threading.Event()
        self._rng = random.Random(7)
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except TimeoutError:
                continue
            with conn:
                self.connections += 1
                conn.settimeout(2)
                try:
                    while not self._stop.is_set() and (request := conn.recv(4096)):
                        conn.sendall(self._reply(request, self._rng))
                except OSError:
                    pass  # the client gave up on us: exactly what it should do

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close()


@pytest.fixture(params=[random_bytes, sdp_of_garbage], ids=["random-bytes", "garbage-sdp"])
def garbage(request: pytest.FixtureRequest) -> Iterator[GarbageServer]:
    server = GarbageServer(request.param)
    yield server
    server.close()


def test_garbage_on_the_rtsp_socket_leaves_other_cameras_recording(
    tmp_path: Path, agents: Agents, garbage: GarbageServer
) -> None:
    data = tmp_path / "data"
    sim = start_sim(str(tmp_path), *SIM_ARGS, cameras=1)
    try:
        agent = agents({"good": f"{sim.rtsp}/cam1",
                        "bad": f"rtsp://127.0.0.1:{garbage.port}/stream"}, data)  # fmt: skip
        wait_for(lambda: streaming(agent, "good/main"), timeout=20, what="good camera streaming")
        bad = wait_for(
            lambda: (s := _stream(agent, "bad/main"))["state"] == "backoff" and s,
            timeout=20,
            what="bad camera in backoff",
        )
        assert bad["reason"].startswith("protocol:"), bad
        assert bad["packets"] == 0 and garbage.connections >= 1
        wait_for(lambda: _stream(agent, "good/main")["analysed"] >= 10, timeout=20,
                 what="audited frames")  # fmt: skip
        wait_for(lambda: _closed_segments(agent, "good") >= 1, timeout=20, what="a segment")
        assert agent.get("/health").status_code == 200
        assert _stream(agent, "bad/main")["state"] != "streaming"
        agent.stop()
    finally:
        sim.stop()
    _verified(data, "good")
