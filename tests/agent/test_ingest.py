"""Ingest: StreamConnection against scripted sources, PyAVSource against files, and the whole
thing against the real simulator (loss, return on the same port, silence, garbage, keep-alive)."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import random
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any, TypeAlias

import av
import pytest
from conftest import SIM_CACHE, SimProcess, free_port, start_sim, wait_for

from agent.frames import Stamp, StampedPacket
from agent.ingest.backoff import Backoff, ConnectionState
from agent.ingest.connection import IngestError, StreamConnection
from agent.ingest.source import PyAVSource, SourceError, StreamParams, parameter_sets
from fleet.profiles import FirmwareProfile, load_profile
from fleet.rtsp.rtp import join_annexb

SIM_ARGS = ("--main-size", "320x180", "--loop-seconds", "4")
HIK = load_profile("hikvision")  # TCP interleaved
ONVIF = load_profile("generic-onvif")  # UDP, the simulator's default profile
PARAMS = StreamParams("h264", 320, 180, Fraction(1, 90_000), None, 15.0)


# -- test doubles ------------------------------------------------------------------------------


class PtsStamper:
    """A trivial stamper: the first arrival anchors the PTS line; stamps never go backwards."""

    def __init__(self) -> None:
        self.seq, self.last_us, self.resets = 0, 0, 0
        self._anchor: tuple[int, int] | None = None  # (pts, arrival_us)

    def stamp(self, pts: int | None, time_base: Fraction, arrival_us: int, synced: bool) -> Stamp:
        reanchored = False
        if pts is None:
            capture = arrival_us
        else:
            if self._anchor is None:
                self._anchor, reanchored = (pts, arrival_us), True
            capture = self._anchor[1] + round((pts - self._anchor[0]) * time_base * 1_000_000)
        self.seq += 1
        self.last_us = max(capture, self.last_us + 1)
        return Stamp(self.seq, self.last_us, synced, reanchored)

    def reset(self) -> None:
        self.resets += 1
        self._anchor = None


class TickClock:
    """Each reading is 1 ms after the previous one."""

    def __init__(self) -> None:
        self.us = 1_700_000_000_000_000

    def now_us(self) -> int:
        self.us += 1000
        return self.us

    def synced(self) -> bool:
        return True


Step: TypeAlias = "av.Packet[Any] | SourceError"  # one read: a packet, or a failure


@dataclass
class Script:
    """One connection of a fake camera: how open goes, then what each read gives."""

    opened: StreamParams | SourceError = PARAMS
    reads: list[Step] = field(default_factory=list)
    change_params_after: int | None = None  # reads before params change (mid-stream)


class FakeCamera:
    """Hands out scripted sources; when the scripts run out, the camera refuses connections."""

    def __init__(self, *scripts: Script) -> None:
        self.scripts = list(scripts)
        self.opened: list[tuple[str, str, float, float]] = []

    def source(self) -> FakeSource:
        script = self.scripts.pop(0) if self.scripts else Script(SourceError("unreachable", "x"))
        return FakeSource(self, script)


class FakeSource:
    def __init__(self, camera: FakeCamera, script: Script) -> None:
        self.camera, self.script, self.reads = camera, script, 0
        self._params = PARAMS

    @property
    def params(self) -> StreamParams:
        return self._params

    def open(self, url: str, transport: str, open_s: float, read_s: float) -> StreamParams:
        self.camera.opened.append((url, transport, open_s, read_s))
        if isinstance(self.script.opened, SourceError):
            raise self.script.opened
        self._params = self.script.opened
        return self._params

    def read(self) -> av.Packet[Any]:
        if self.reads == self.script.change_params_after:
            self._params = replace(self._params, width=160, height=96)
        if self.reads >= len(self.script.reads):
            raise SourceError("lost", "the stream ended")
        step = self.script.reads[self.reads]
        self.reads += 1
        if isinstance(step, SourceError):
            raise step
        return step

    def close(self) -> None:
        pass


def packets(n: int, start: int = 0) -> list[Step]:
    out: list[Step] = []
    for i in range(start, start + n):
        p = av.Packet(bytes(100 + i % 7))
        p.pts = i * 6000
        p.is_keyframe = i % 10 == 0
        out.append(p)
    return out


@dataclass
class Recorded:
    """What a connection handed on."""

    packets: list[StampedPacket] = field(default_factory=list)
    gaps: list[tuple[str, Any]] = field(default_factory=list)

    def gap_start(self, reason: str, last_us: int | None) -> None:
        self.gaps.append(("start", (reason, last_us)))

    def gap_end(self, first_us: int) -> None:
        self.gaps.append(("end", first_us))


@pytest.fixture
def connect() -> Iterator[Callable[..., tuple[StreamConnection, Recorded]]]:
    started: list[StreamConnection] = []

    def make(
        url: str,
        profile: FirmwareProfile = HIK,
        source_factory: Callable[[], Any] = PyAVSource,
        **kwargs: Any,
    ) -> tuple[StreamConnection, Recorded]:
        rec = Recorded()
        conn = StreamConnection(
            "cam1",
            "main",
            url,
            profile,
            kwargs.pop("stamper", None) or PtsStamper(),
            rec.packets.append,
            source_factory,
            kwargs.pop("clock", None) or TickClock(),
            on_gap_start=kwargs.pop("on_gap_start", rec.gap_start),
            on_gap_end=rec.gap_end,
            backoff=kwargs.pop("backoff", None) or Backoff(0.05, 0.2, rng=random.Random(1)),
            **kwargs,
        )
        conn.start()
        started.append(conn)
        return conn, rec

    yield make
    for conn in started:
        conn.stop()


def state_is(conn: StreamConnection, state: ConnectionState, reason: str = "") -> bool:
    status = conn.status
    return status.state == state and reason in status.reason


# -- StreamConnection with scripted sources ------------------------------------------------------


def test_packets_are_stamped_in_order_and_a_loss_is_a_gap_closed_by_the_next_packet(
    connect: Any,
) -> None:
    stamper = PtsStamper()
    camera = FakeCamera(Script(reads=packets(10)), Script(reads=packets(5, 100)))
    conn, rec = connect("rtsp://cam/x", source_factory=camera.source, stamper=stamper)
    wait_for(lambda: len(rec.packets) == 15, what="15 packets over two connections")
    wait_for(lambda: state_is(conn, ConnectionState.BACKOFF, "lost: the stream ended"))
    first, second = rec.packets[:10], rec.packets[10:]
    assert [sp.stamp.seq for sp in rec.packets] == list(range(1, 16))
    assert all(b.stamp.capture_us > a.stamp.capture_us for a, b in itertools.pairwise(rec.packets))
    assert {sp.info.generation for sp in first} == {1} and {
        sp.info.generation for sp in second
    } == {2}
    assert (first[0].info.camera, first[0].info.stream, first[0].info.width) == (
        "cam1",
        "main",
        320,
    )
    assert [sp.keyframe for sp in first] == [i == 0 for i in range(10)]
    assert [sp.pts for sp in first] == [i * 6000 for i in range(10)]
    assert rec.gaps[:2] == [
        ("start", ("lost: the stream ended", first[-1].stamp.capture_us)),
        ("end", second[0].stamp.capture_us),
    ]
    assert camera.opened[0][:2] == ("rtsp://cam/x", "tcp")  # the profile's transport
    assert stamper.resets == 1  # the reconnection starts a new PTS timeline
    stats = conn.stats()
    assert (stats.packets, stats.reconnects >= 1, stats.generation) == (15, True, 2)
    assert stats.bytes == sum(sp.packet.size for sp in rec.packets)
    assert stats.last_packet_at_us is not None and stats.since_us >= stats.last_packet_at_us


def test_corrupt_reads_are_skipped_and_counted_until_too_many_in_a_row(connect: Any) -> None:
    bad = SourceError("corrupt", "Invalid data found when processing input")
    reads = [*packets(3), bad, *packets(2, 3), bad, bad, *packets(1, 5), bad, bad, bad]
    source = FakeCamera(Script(reads=reads)).source
    conn, rec = connect("rtsp://cam/x", source_factory=source, corrupt_limit=3)
    wait_for(lambda: state_is(conn, ConnectionState.BACKOFF, "corrupt: 3 corrupt reads in a row"))
    assert len(rec.packets) == 6  # the corrupt reads cost nothing else
    assert conn.stats().corrupt == 6
    assert rec.gaps[0] == ("start", (conn.status.reason, rec.packets[-1].stamp.capture_us))


def test_a_stall_is_counted_and_reported(connect: Any) -> None:
    reads = [*packets(4), SourceError("stall", "no packet for 2 s")]
    conn, rec = connect("rtsp://cam/x", source_factory=FakeCamera(Script(reads=reads)).source)
    wait_for(lambda: conn.stats().stalls == 1, what="the stall to be counted")
    assert rec.gaps[0] == ("start", ("stall: no packet for 2 s", rec.packets[-1].stamp.capture_us))


def test_changed_parameters_mid_stream_start_a_new_generation(connect: Any) -> None:
    camera = FakeCamera(Script(reads=packets(6), change_params_after=3))
    _conn, rec = connect("rtsp://cam/x", source_factory=camera.source)
    wait_for(lambda: len(rec.packets) == 6)
    sizes = [(sp.info.generation, sp.info.width, sp.info.height) for sp in rec.packets]
    assert sizes == [(1, 320, 180)] * 3 + [(2, 160, 96)] * 3


def test_an_unreachable_camera_is_retried_as_soon_as_it_answers_a_probe(connect: Any) -> None:
    probes: list[float] = []
    answer_after = 3

    def reachable(url: str) -> bool:
        probes.append(time.monotonic())
        return len(probes) >= answer_after

    camera = FakeCamera(
        Script(SourceError("unreachable", "Connection refused")), Script(reads=packets(2))
    )
    long_backoff = Backoff(60.0, 120.0, rng=random.Random(1))
    _conn, rec = connect(
        "rtsp://cam/x",
        source_factory=camera.source,
        backoff=long_backoff,
        reachable=reachable,
        probe_interval_s=0.05,
    )
    wait_for(lambda: len(rec.packets) == 2, timeout=5, what="streaming despite a 60 s backoff")
    assert len(probes) == answer_after
    assert rec.gaps[:2] == [
        ("start", ("unreachable: Connection refused", None)),
        ("end", rec.packets[0].stamp.capture_us),
    ]


def test_a_camera_that_answers_but_refuses_waits_out_the_backoff_without_probes(
    connect: Any,
) -> None:
    probed = threading.Event()

    def reachable(url: str) -> bool:
        probed.set()
        return True

    camera = FakeCamera(Script(SourceError("protocol", "Server returned 404 Not Found")))
    conn, _ = connect(
        "rtsp://cam/x",
        source_factory=camera.source,
        backoff=Backoff(60.0, 120.0, rng=random.Random(1)),
        reachable=reachable,
        probe_interval_s=0.01,
    )
    wait_for(lambda: state_is(conn, ConnectionState.BACKOFF, "protocol: Server returned 404"))
    assert not probed.wait(0.3)
    assert conn.stats().reconnects == 0
    started = time.monotonic()
    conn.stop()
    assert time.monotonic() - started < 1.0  # stop interrupts the backoff wait
    assert conn.status.state == ConnectionState.STOPPED


def test_a_failing_gap_callback_does_not_stop_reconnecting(connect: Any) -> None:
    camera = FakeCamera(Script(reads=packets(2)), Script(reads=packets(2)))
    calls: list[str] = []

    def broken_recorder(reason: str, last_us: int | None) -> None:
        calls.append(reason)
        raise RuntimeError("disk on fire")

    _, rec = connect("rtsp://cam/x", source_factory=camera.source, on_gap_start=broken_recorder)
    wait_for(lambda: len(rec.packets) == 4, what="the second connection's packets")
    assert calls[0] == "lost: the stream ended"


def test_an_unknown_stream_or_bad_timeouts_are_refused() -> None:
    no_sub = HIK.model_copy(update={"sub": None})
    with pytest.raises(IngestError, match="has no 'sub' stream"):
        StreamConnection("cam1", "sub", "rtsp://x", no_sub, PtsStamper(), print)
    with pytest.raises(IngestError, match="must be > 0"):
        StreamConnection("cam1", "main", "rtsp://x", HIK, PtsStamper(), print, stall_timeout_s=0)


# -- PyAVSource and parameter sets ---------------------------------------------------------------

SPS, PPS, IDR = b"\x67\x42\xc0\x0c\xda", b"\x68\xce\x3c\x80", b"\x65\x88\x82\x02"


def test_parameter_sets_are_read_up_to_the_first_slice() -> None:
    aud, sei = b"\x09\xf0", b"\x06\x05\x01\x00\x80"
    au = (
        b"\x00\x00\x00\x01"
        + aud
        + join_annexb((sei, SPS))
        + b"\x00\x00\x01"
        + PPS
        + join_annexb((IDR,))
    )
    assert parameter_sets("h264", au) == (SPS, PPS)
    assert parameter_sets("h264", join_annexb((IDR, SPS))) == ()  # after the slice: not ours
    vps, sps, pps, idr = b"\x40\x01\x0c", b"\x42\x01\x01", b"\x44\x01\xc1", b"\x26\x01\xaf"
    assert parameter_sets("hevc", join_annexb((vps, sps, pps, idr))) == (vps, sps, pps)
    assert parameter_sets("mjpeg", join_annexb((SPS,))) == ()
    assert parameter_sets("h264", b"\x00\x00\x01") == ()  # a start code with nothing after it


def write_h264(path: Path, *sizes: tuple[int, int], frames: int = 15) -> None:
    """Concatenated Annex-B encodes, one per size: a stream whose SPS changes mid-way."""
    with path.open("wb") as out:
        for width, height in sizes:
            enc = av.CodecContext.create("libx264", "w")
            assert isinstance(enc, av.VideoCodecContext)
            enc.width, enc.height, enc.pix_fmt = width, height, "yuv420p"
            enc.time_base, enc.gop_size = Fraction(1, 15), 5
            enc.options = {"bframes": "0"}
            for i in [*range(frames), None]:
                frame = None if i is None else av.VideoFrame(width, height, "yuv420p")
                if frame is not None:
                    frame.pts = i
                for packet in enc.encode(frame):
                    out.write(bytes(packet))


def test_pyav_source_reports_a_size_change_inside_the_stream(tmp_path: Path) -> None:
    path = tmp_path / "two-sizes.h264"
    write_h264(path, (320, 180), (160, 96))
    source = PyAVSource()
    first = source.open(str(path), "tcp", 5.0, 2.0)
    assert (first.codec, first.width, first.height) == ("h264", 320, 180)
    seen = []
    with pytest.raises(SourceError, match="lost: the stream ended"):
        while True:
            source.read()
            seen.append((source.params.width, source.params.height))
    source.close()
    assert seen == [(320, 180)] * 15 + [(160, 96)] * 15
    assert source.params.extradata is not None and SPS[:1] in source.params.extradata


def test_pyav_source_errors_name_the_failure_but_not_the_credentials() -> None:
    with pytest.raises(SourceError) as info:
        PyAVSource().open(f"rtsp://admin:s3cret@127.0.0.1:{free_port()}/x", "tcp", 2.0, 1.0)
    assert info.value.kind == "unreachable"
    assert "s3cret" not in str(info.value) and "Connection refused" in str(info.value)


# -- against the simulator -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def hik_sim(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SimProcess]:
    sim = start_sim(
        str(tmp_path_factory.mktemp("sim")), *SIM_ARGS, "--profile", "hikvision", cameras=1
    )
    yield sim
    sim.proc.send_signal(signal.SIGCONT)  # in case a test stopped it
    sim.stop()


def clients(sim: SimProcess) -> tuple[int, int]:
    cameras: list[dict[str, Any]] = sim.get("/cameras")  # type: ignore[assignment]
    cam = next(c for c in cameras if c["name"] == "cam1")
    return int(cam["clients"]), int(cam["sessions_total"])


def streaming_more(conn: StreamConnection, rec: Recorded, after: int, n: int = 5) -> bool:
    return conn.status.state == ConnectionState.STREAMING and len(rec.packets) >= after + n


def test_one_connection_reads_the_camera_with_increasing_stamps(
    connect: Any, hik_sim: SimProcess
) -> None:
    before = clients(hik_sim)[1]
    conn, rec = connect(hik_sim.rtsp + "/cam1")
    wait_for(lambda: len(rec.packets) >= 30, timeout=10, what="30 packets from cam1")
    assert clients(hik_sim) == (1, before + 1)  # one session, ours
    got = rec.packets[:30]
    assert all(b.stamp.capture_us > a.stamp.capture_us for a, b in itertools.pairwise(got))
    pts = [sp.pts for sp in got if sp.pts is not None]
    assert len(pts) >= 29 and all(b > a for a, b in itertools.pairwise(pts))
    assert got[0].keyframe and {sp.info.generation for sp in got} == {1}
    info = got[0].info
    assert (info.codec, info.width, info.height, info.fps) == ("h264", 320, 180, 25.0)
    assert info.extradata is not None and info.extradata.startswith(b"\x00\x00\x00\x01\x67")
    conn.stop()
    # The recorder's copy of the codec parameters outlives the connection's demuxer.
    assert info.template is not None and (info.template.width, info.template.height) == (320, 180)
    assert conn.status.state == ConnectionState.STOPPED
    wait_for(lambda: clients(hik_sim)[0] == 0, what="our session to be torn down")


def test_a_silent_camera_is_noticed_within_five_seconds(connect: Any, hik_sim: SimProcess) -> None:
    conn, rec = connect(hik_sim.rtsp + "/cam1")
    wait_for(lambda: len(rec.packets) >= 10, timeout=10, what="streaming")
    hik_sim.proc.send_signal(signal.SIGSTOP)  # the connection stays up; nothing arrives
    try:
        silent_at = time.monotonic()
        wait_for(lambda: state_is(conn, ConnectionState.BACKOFF, "stall"), timeout=6)
        assert time.monotonic() - silent_at < 5.5
        assert conn.stats().stalls == 1
        assert rec.gaps[0][0] == "start" and rec.gaps[0][1][0].startswith("stall")
    finally:
        hik_sim.proc.send_signal(signal.SIGCONT)
    count = len(rec.packets)
    wait_for(lambda: streaming_more(conn, rec, count), timeout=15, what="streaming again")
    assert rec.gaps[1][0] == "end"
    # Connections given up on while the camera was frozen leave no session behind.
    wait_for(lambda: clients(hik_sim)[0] == 1, timeout=10, what="exactly our one session")


def test_a_camera_that_goes_away_and_comes_back_on_the_same_port(
    connect: Any, tmp_path: Path
) -> None:
    sims: list[SimProcess] = [start_sim(str(tmp_path), *SIM_ARGS, cameras=1)]
    try:
        port = sims[0].port
        conn, rec = connect(sims[0].rtsp + "/cam1", profile=ONVIF)  # RTP over UDP
        wait_for(lambda: len(rec.packets) >= 10, timeout=10, what="streaming")
        sims[0].stop()
        gone_at = time.monotonic()
        wait_for(lambda: state_is(conn, ConnectionState.BACKOFF), timeout=3, what="loss noticed")
        assert time.monotonic() - gone_at < 3.0
        assert rec.gaps[0] == ("start", (rec.gaps[0][1][0], rec.packets[-1].stamp.capture_us))

        back = threading.Thread(
            target=lambda: sims.append(start_sim(str(tmp_path), *SIM_ARGS, cameras=1, port=port))
        )
        back.start()
        wait_for(lambda: reachable(port), timeout=60, interval=0.02, what="the new simulator")
        count = len(rec.packets)
        wait_for(lambda: streaming_more(conn, rec, count, 1), timeout=5, what="streaming again")
        back.join(60)
        assert rec.packets[-1].info.generation >= 2 and rec.gaps[1][0] == "end"
        assert conn.stats().reconnects >= 1
    finally:
        for sim in sims:
            sim.stop()


def reachable(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def garbage_server(reply: bytes) -> Iterator[int]:
    """Accepts RTSP clients and answers every request with `reply`, never with a stream."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    done = threading.Event()
    conns: list[socket.socket] = []

    def serve() -> None:
        while not done.is_set():
            try:
                conn, _ = server.accept()
            except TimeoutError:
                continue
            conns.append(conn)
            conn.settimeout(1.0)
            try:
                if conn.recv(4096):
                    conn.sendall(reply)
            except OSError:
                pass

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield server.getsockname()[1]
    finally:
        done.set()
        thread.join(5)
        for c in (*conns, server):
            c.close()


@pytest.mark.parametrize(
    ("reply", "reason"),
    [
        (bytes(random.Random(7).randbytes(4000)), "Invalid data found"),
        (b"RTSP/1.0 200 OK\r\nCSeq: 1\r\n\r\n" * 3, "protocol: Invalid data found"),
    ],
    ids=["binary", "rtsp-shaped"],
)
def test_garbage_from_the_camera_is_an_error_state_not_a_crash(
    connect: Any, reply: bytes, reason: str
) -> None:
    with garbage_server(reply) as port:
        conn, rec = connect(f"rtsp://127.0.0.1:{port}/cam1", open_timeout_s=1.0)
        wait_for(lambda: conn.stats().reconnects >= 1, timeout=8, what="a second attempt")
        wait_for(lambda: state_is(conn, ConnectionState.BACKOFF, reason), timeout=4)
        assert rec.packets == [] and conn._thread is not None and conn._thread.is_alive()
        assert rec.gaps == [("start", (rec.gaps[0][1][0], None))]


@contextmanager
def inprocess_sim(profile: FirmwareProfile) -> Iterator[tuple[Any, int, list[str]]]:
    """The simulator in this process, so a test can shorten its session timeout and see
    every request it receives."""
    from fleet.sim.build import SimOptions, build_cameras, encode_all, plan_cameras
    from fleet.sim.server import ServeOptions, Simulator

    opts = SimOptions(
        cameras=1, profile=profile, loop_seconds=4, main_size=(320, 180), cache_dir=Path(SIM_CACHE)
    )
    plans = plan_cameras(opts)
    encode_all(plans, opts.cache_dir)
    port = free_port()
    sim = Simulator(build_cameras(opts, plans), ServeOptions(port=port, http_port=free_port()))
    methods: list[str] = []
    handle = sim.service.handle

    def recording(req: Any, client: Any) -> bytes:
        methods.append(req.method)
        return handle(req, client)

    sim.service.handle = recording  # type: ignore[method-assign]
    running: list[tuple[asyncio.AbstractEventLoop, asyncio.Task[Any]]] = []

    async def serve() -> None:
        running.append((asyncio.get_running_loop(), asyncio.current_task()))  # type: ignore[arg-type]
        await sim.serve()

    def run() -> None:
        with contextlib.suppress(asyncio.CancelledError):
            asyncio.run(serve())  # cancels whatever the server left running when it ends

    thread = threading.Thread(target=run)
    thread.start()
    try:
        wait_for(lambda: reachable(port), timeout=10, what="the in-process simulator")
        yield sim, port, methods
    finally:
        loop, task = running[0]
        loop.call_soon_threadsafe(task.cancel)
        thread.join(10)


def test_ffmpeg_keeps_the_session_alive_with_the_profiles_keepalive(connect: Any) -> None:
    short = HIK.model_copy(
        update={"keepalive": HIK.keepalive.model_copy(update={"session_timeout_s": 2})}
    )
    with inprocess_sim(short) as (sim, port, methods):
        conn, rec = connect(f"rtsp://127.0.0.1:{port}/cam1", profile=short)
        wait_for(lambda: rec.packets, timeout=10, what="streaming")
        (session,) = sim.service.sessions
        # Sent every timeout/2 from inside the reads: 4 of them span twice the timeout.
        wait_for(lambda: methods.count("GET_PARAMETER") >= 4, timeout=8, what="keep-alives")
        assert list(sim.service.sessions) == [session]  # never expired
        assert conn.stats().reconnects == 0 and conn.status.state == ConnectionState.STREAMING
        conn.stop()
