from __future__ import annotations

import socket
import struct
import threading
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import free_port, wait_for
from hypothesis import given, settings
from hypothesis import strategies as st

from fleet.rtsp.rtcp import goodbye, sender_report
from fleet.rtsp.rtp import (
    H264Depacketizer,
    RtpError,
    RtpPacket,
    RtpSequencer,
    packetize_h264,
    parse_rtp,
    rtp_header,
    split_annexb,
)
from fleet.rtsp.sdp import h264_sdp, parse_sdp, sprop_parameter_sets

SPS = bytes.fromhex("6742c00ada11e8400000030040000007a3c489a8")
PPS = bytes.fromhex("68ce0fc8")


def nal(nal_type: int, size: int, nri: int = 3, fill: int = 0xAB) -> bytes:
    return bytes((nri << 5 | nal_type,)) + bytes([fill]) * (size - 1)


# --- Annex B ---------------------------------------------------------------------------------


def test_split_annexb_three_and_four_byte_start_codes() -> None:
    stream = b"\x00\x00\x00\x01" + SPS + b"\x00\x00\x01" + PPS + b"\x00\x00\x00\x01\x65\x88\x00"
    assert split_annexb(stream) == [SPS, PPS, b"\x65\x88"]


def test_split_annexb_edges() -> None:
    assert split_annexb(b"") == []
    assert split_annexb(b"\x00\x00\x00\x00\x01\x09\xf0\x00\x00") == [b"\x09\xf0"]
    assert split_annexb(b"\x00\x00\x01\x00\x00\x01\x41\x01") == [b"\x41\x01"]
    with pytest.raises(ValueError, match="start code"):
        split_annexb(b"\x67\x42\x00\x00\x01\x68")
    with pytest.raises(ValueError, match="start code"):
        split_annexb(SPS)


# --- packetizing -----------------------------------------------------------------------------


def test_sps_and_pps_share_a_stap_a() -> None:
    idr = nal(5, 3000)
    payloads = packetize_h264([SPS, PPS, idr], mtu=1400)
    stap = payloads[0]
    assert stap[0] == 0x78  # F=0, NRI=3 (max of SPS/PPS), type 24
    assert stap[1:] == struct.pack("!H", len(SPS)) + SPS + struct.pack("!H", len(PPS)) + PPS
    assert [p[0] & 0x1F for p in payloads[1:]] == [28, 28, 28]


def test_stap_a_header_takes_max_nri_and_or_of_f() -> None:
    payload = packetize_h264([nal(6, 10, nri=0), bytes((0x80 | 1 << 5 | 1,)) + b"x"])[0]
    assert payload[0] == 0x80 | 1 << 5 | 24


def test_fu_a_start_and_end_bits_and_nri() -> None:
    idr = bytes((0x45,)) + bytes(range(256)) * 20  # NRI 2, type 5
    payloads = packetize_h264([idr], mtu=1000)
    assert len(payloads) == 6
    assert all(len(p) <= 1000 for p in payloads)
    assert all(p[0] == 0x40 | 28 for p in payloads)  # indicator keeps F and NRI
    assert [p[1] & 0xE0 for p in payloads] == [0x80, 0, 0, 0, 0, 0x40]
    assert all(p[1] & 0x1F == 5 for p in payloads)
    assert bytes((0x45,)) + b"".join(p[2:] for p in payloads) == idr


def test_mid_sized_nal_is_a_single_nal_packet() -> None:
    slice_ = nal(1, 1400)
    assert packetize_h264([SPS, slice_, PPS], mtu=1400) == [SPS, slice_, PPS]


def test_aggregation_stops_at_the_mtu() -> None:
    small = [nal(6, 10) for _ in range(5)]  # each takes 12 bytes in a STAP-A
    payloads = packetize_h264(small, mtu=1 + 12 * 3)
    assert [len(p) for p in payloads] == [37, 25]


@pytest.mark.parametrize(
    ("nals", "mtu"),
    [([b""], 1400), ([nal(0, 5)], 1400), ([nal(24, 5)], 1400), ([nal(5, 10)], 2), ([], 70000)],
)
def test_packetize_rejects_bad_input(nals: list[bytes], mtu: int) -> None:
    with pytest.raises(ValueError):
        packetize_h264(nals, mtu)


# --- RTP header and sequencer ----------------------------------------------------------------


def test_rtp_header_layout() -> None:
    header = rtp_header(payload_type=96, seq=0x1234, timestamp=0xDEADBEEF, ssrc=7, marker=True)
    assert header == bytes.fromhex("80e01234deadbeef00000007")
    packet = parse_rtp(header + b"xyz")
    assert packet == RtpPacket(96, True, 0x1234, 0xDEADBEEF, 7, b"xyz")


@pytest.mark.parametrize(
    "kwargs",
    [{"payload_type": 128}, {"seq": 65536}, {"timestamp": -1}, {"ssrc": 2**32}],
)
def test_rtp_header_rejects_out_of_range(kwargs: dict[str, int]) -> None:
    args = {"payload_type": 96, "seq": 0, "timestamp": 0, "ssrc": 0, **kwargs}
    with pytest.raises(ValueError):
        rtp_header(marker=False, **args)


def test_sequencer_marks_last_packet_and_wraps_seq_and_timestamp() -> None:
    sequencer = RtpSequencer(0xCAFE, payload_type=97, initial_seq=65534)
    packets = [parse_rtp(p) for p in sequencer.packets([b"\x41a", b"\x41bb", b"\x41c"], 2**32 + 5)]
    assert [p.seq for p in packets] == [65534, 65535, 0]
    assert [p.marker for p in packets] == [False, False, True]
    assert {(p.timestamp, p.ssrc, p.payload_type) for p in packets} == {(5, 0xCAFE, 97)}
    assert (sequencer.seq, sequencer.packet_count, sequencer.octet_count) == (1, 3, 7)
    assert sequencer.packets([], 0) == []
    assert parse_rtp(sequencer.packets([b"\x41"], 9)[0]).seq == 1


def test_depacketizer_across_seq_wrap_counts_no_loss() -> None:
    nals = [nal(5, 5000)]
    depacketizer = H264Depacketizer()
    sequencer = RtpSequencer(1, initial_seq=65533)
    units = []
    for packet in sequencer.packets(packetize_h264(nals, mtu=1000), 0):
        units.extend(depacketizer.push(parse_rtp(packet)))
    assert units == [nals]
    assert (depacketizer.lost, depacketizer.late, depacketizer.garbled) == (0, 0, 0)


# --- parsing ---------------------------------------------------------------------------------


def test_parse_rtp_with_csrcs_extension_and_padding() -> None:
    first = 0x80 | 0x20 | 0x10 | 2  # padding, extension, two CSRCs
    packet = (
        bytes((first, 96)) + struct.pack("!HII", 9, 1000, 5)
        + struct.pack("!II", 11, 12)
        + struct.pack("!HH", 0xBEDE, 1) + b"\x01\x02\x03\x04"
        + b"payload"
        + b"\x00\x00\x03"
    )  # fmt: skip
    assert parse_rtp(packet) == RtpPacket(96, False, 9, 1000, 5, b"payload")


@pytest.mark.parametrize(
    "packet",
    [
        b"",
        bytes(11),
        bytes.fromhex("40e01234deadbeef00000007"),  # version 1
        bytes.fromhex("a0e01234deadbeef0000000700"),  # padding count 0
        bytes.fromhex("a0e01234deadbeef00000007ff"),  # padding longer than packet
        bytes.fromhex("90e01234deadbeef00000007be"),  # truncated extension header
        bytes.fromhex("90e01234deadbeef00000007bede0009"),  # extension longer than packet
        bytes.fromhex("8fe01234deadbeef00000007"),  # 15 CSRCs missing
    ],
)
def test_parse_rtp_rejects_malformed(packet: bytes) -> None:
    with pytest.raises(RtpError):
        parse_rtp(packet)


@given(st.binary(max_size=64))
def test_parse_rtp_raises_only_rtp_error(data: bytes) -> None:
    try:
        packet = parse_rtp(data)
    except RtpError:
        return
    assert len(packet.payload) <= len(data) - 12


# --- round trips -----------------------------------------------------------------------------

_nals = st.builds(
    lambda t, nri, body: bytes((nri << 5 | t,)) + body,
    st.integers(1, 23),
    st.integers(0, 3),
    st.binary(max_size=4999),
)


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.lists(_nals, min_size=1, max_size=6), min_size=1, max_size=4),
    st.integers(3, 3000),
    st.integers(0, 65535),
    st.integers(0, 2**32 - 1),
)
def test_packetize_then_depacketize_round_trips(
    access_units: list[list[bytes]], mtu: int, first_seq: int, first_ts: int
) -> None:
    sequencer = RtpSequencer(0x1234, initial_seq=first_seq)
    depacketizer = H264Depacketizer()
    received = []
    for index, unit in enumerate(access_units):
        payloads = packetize_h264(unit, mtu)
        assert all(len(p) <= mtu for p in payloads)
        for packet in sequencer.packets(payloads, first_ts + 3000 * index):
            received.extend(depacketizer.push(parse_rtp(packet)))
    assert received == access_units
    assert (depacketizer.lost, depacketizer.late, depacketizer.garbled) == (0, 0, 0)
    assert sequencer.packet_count == (sequencer.seq - first_seq) % 65536


# --- damage ----------------------------------------------------------------------------------


def _packets(units: list[list[bytes]], mtu: int = 1000) -> list[RtpPacket]:
    sequencer = RtpSequencer(1)
    return [
        parse_rtp(p)
        for ts, unit in enumerate(units)
        for p in sequencer.packets(packetize_h264(unit, mtu), 3000 * ts)
    ]


def _push_all(depacketizer: H264Depacketizer, packets: list[RtpPacket]) -> list[list[bytes]]:
    return [unit for p in packets for unit in depacketizer.push(p)]


def test_lost_fragment_drops_only_that_nal() -> None:
    big, small = nal(5, 2000), nal(6, 20)
    packets = _packets([[big, small], [small]])
    assert [p.payload[1] & 0xC0 for p in packets[:3]] == [0x80, 0, 0x40]  # FU-A S, -, E
    del packets[1]
    depacketizer = H264Depacketizer()
    assert _push_all(depacketizer, packets) == [[small], [small]]
    assert (depacketizer.lost, depacketizer.garbled) == (1, 2)  # the cut NAL, the orphan end


def test_lost_start_fragment_is_counted_not_raised() -> None:
    packets = _packets([[nal(5, 2000)], [nal(1, 50)]])
    depacketizer = H264Depacketizer()
    assert _push_all(depacketizer, packets[1:]) == [[nal(1, 50)]]
    assert depacketizer.garbled == 2  # two fragments without their start


def test_lost_marker_packet_ends_unit_at_timestamp_change() -> None:
    first, second = [nal(7, 10), nal(1, 990)], [nal(1, 800)]  # too big to share a STAP-A
    packets = _packets([first, second], mtu=1000)
    packets = [p for p in packets if not p.marker or p.timestamp != 0]
    depacketizer = H264Depacketizer()
    assert _push_all(depacketizer, packets) == [first[:1], second]
    assert depacketizer.lost == 1


def test_duplicates_and_late_packets_are_dropped() -> None:
    units = [[nal(1, 500)], [nal(1, 600)], [nal(1, 700)]]
    p0, p1, p2 = _packets(units)
    depacketizer = H264Depacketizer()
    assert _push_all(depacketizer, [p0, p0, p2, p1]) == [units[0], units[2]]
    assert (depacketizer.late, depacketizer.lost) == (2, 1)


def test_restart_with_new_ssrc_or_far_jump_resyncs() -> None:
    unit = [nal(1, 10)]
    depacketizer = H264Depacketizer()
    restarted = [
        RtpPacket(96, True, 100, 0, 1, unit[0]),
        RtpPacket(96, True, 40000, 90, 1, unit[0]),  # far back: a restarted count
        RtpPacket(96, True, 40001, 180, 1, unit[0]),
        RtpPacket(96, True, 7, 270, 2, unit[0]),  # a new sender
        RtpPacket(96, True, 8, 360, 2, unit[0]),
    ]
    assert _push_all(depacketizer, restarted) == [unit] * 5
    assert (depacketizer.lost, depacketizer.late) == (0, 0)


@pytest.mark.parametrize(
    "payload",
    [
        b"",
        b"\x00\x01",  # NAL type 0
        b"\x7c",  # FU-A without header
        b"\x7c\xc5\x01",  # FU-A with both S and E
        b"\x7d\x85\x01",  # FU-B
        b"\x78",  # empty STAP-A
        b"\x78\x00\x05\x41",  # STAP-A unit running past the end
        b"\x78\x00\x00\x41",  # STAP-A zero-size unit
        b"\x7e\x00",  # reserved type 30
    ],
)
def test_garbled_payloads_are_counted(payload: bytes) -> None:
    depacketizer = H264Depacketizer()
    assert depacketizer.push(RtpPacket(96, True, 1, 0, 1, payload)) == []
    assert depacketizer.garbled == 1
    assert depacketizer.push(RtpPacket(96, True, 2, 1, 1, b"\x41z")) == [[b"\x41z"]]


@given(st.lists(st.tuples(st.integers(0, 65535), st.integers(0, 5), st.binary(max_size=30))))
def test_depacketizer_never_raises(packets: list[tuple[int, int, bytes]]) -> None:
    depacketizer = H264Depacketizer()
    for seq, ts, payload in packets:
        for unit in depacketizer.push(RtpPacket(96, seq % 3 == 0, seq, ts, 1, payload)):
            assert unit and all(unit)
    depacketizer.flush()


# --- with a real encoder and decoder ---------------------------------------------------------


def _encode(frames: int) -> list[bytes]:
    """Annex-B access units from libx264 (64x48, IDR every 5 frames, no B-frames)."""
    codec = av.CodecContext.create("libx264", "w")
    codec.width, codec.height, codec.pix_fmt = 64, 48, "yuv420p"
    codec.time_base = Fraction(1, 15)
    codec.options = {"preset": "ultrafast", "tune": "zerolatency", "x264-params": "keyint=5"}
    units: list[bytes] = []
    for index in range(frames):
        pixels = np.random.default_rng(index).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        frame = av.VideoFrame.from_ndarray(pixels, format="rgb24").reformat(format="yuv420p")
        frame.pts = index
        units.extend(bytes(p) for p in codec.encode(frame))
    units.extend(bytes(p) for p in codec.encode(None))
    return units


def _decode(units: list[bytes], extradata: bytes | None = None) -> list[np.ndarray]:
    codec = av.CodecContext.create("h264", "r")
    if extradata is not None:
        codec.extradata = extradata
    planes = []
    for unit in [*units, None]:
        for frame in codec.decode(None if unit is None else av.Packet(unit)):
            planes.append(frame.to_ndarray())
    return planes


@dataclass(frozen=True)
class _Stream:
    sps: bytes
    pps: bytes
    without_parameter_sets: list[list[bytes]]  # receivers must take SPS/PPS from the SDP
    frames: list[np.ndarray]  # what decoding the encoder's own output gives


@pytest.fixture(scope="module")
def stream() -> _Stream:
    units = _encode(12)
    nal_units = [split_annexb(u) for u in units]
    sps, pps = nal_units[0][0], nal_units[0][1]
    assert (sps[0] & 0x1F, pps[0] & 0x1F) == (7, 8)
    stripped = [[n for n in unit if n[0] & 0x1F not in (7, 8)] for unit in nal_units]
    frames = _decode(units)
    assert len(frames) == 12
    return _Stream(sps, pps, stripped, frames)


def test_real_stream_through_sdp_and_rtp_decodes_identically(stream: _Stream) -> None:
    sdp = h264_sdp(session_id=1, origin_address="127.0.0.1", sps=stream.sps, pps=stream.pps)
    sprop = sprop_parameter_sets(parse_sdp(sdp).media[0])
    received = _push_all(H264Depacketizer(), _packets(stream.without_parameter_sets, mtu=300))
    assert received == stream.without_parameter_sets
    annexb = [b"".join(b"\x00\x00\x00\x01" + n for n in unit) for unit in received]
    decoded = _decode(annexb, extradata=b"".join(b"\x00\x00\x00\x01" + n for n in sprop))
    assert len(decoded) == len(stream.frames)
    assert all(np.array_equal(a, b) for a, b in zip(decoded, stream.frames, strict=True))


def _udp_queue(port: int) -> int | None:
    """Bytes waiting in the receive queue of the local UDP socket on `port` (None: unbound)."""
    with open("/proc/net/udp") as table:
        for line in table.read().splitlines()[1:]:
            fields = line.split()
            if fields[1].endswith(f":{port:04X}"):
                return int(fields[4].split(":")[1], 16)
    return None


def _free_udp_pair() -> int:
    """An RTP port whose RTCP neighbour is free too."""
    for _ in range(20):
        port = free_port(socket.SOCK_DGRAM)
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise AssertionError("no free UDP port pair")


def test_ffmpeg_receives_our_sdp_rtp_and_rtcp(stream: _Stream, tmp_path: Path) -> None:
    """FFmpeg's own SDP parser and H.264 depacketizer take what we produce; BYE ends it."""
    port = _free_udp_pair()
    sdp = h264_sdp(session_id=1, origin_address="127.0.0.1", sps=stream.sps, pps=stream.pps)
    sdp = sdp.replace("m=video 0 ", f"m=video {port} ").replace("0.0.0.0", "127.0.0.1")
    (tmp_path / "stream.sdp").write_text(sdp)
    outcome: dict[str, object] = {}

    def receive() -> None:
        options = {"protocol_whitelist": "file,udp,rtp"}
        try:
            with av.open(str(tmp_path / "stream.sdp"), format="sdp", options=options) as media:
                outcome["frames"] = [f.to_ndarray() for f in media.decode(video=0)]
        except Exception as exc:
            outcome["error"] = exc

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    wait_for(lambda: _udp_queue(port) is not None, what="ffmpeg to bind the RTP port")
    sequencer = RtpSequencer(0x5EED)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sender:
        for index, unit in enumerate(stream.without_parameter_sets):
            for packet in sequencer.packets(packetize_h264(unit, mtu=1000), 6000 * index):
                sender.sendto(packet, ("127.0.0.1", port))
        # A BYE ends ffmpeg's session at once, so let it read every RTP packet first.
        wait_for(lambda: _udp_queue(port) == 0, what="ffmpeg to read the RTP packets")
        report = sender_report(
            ssrc=0x5EED,
            unix_time=time.time(),
            rtp_timestamp=6000 * 11,
            packet_count=sequencer.packet_count,
            octet_count=sequencer.octet_count,
        )
        sender.sendto(report + goodbye([0x5EED]), ("127.0.0.1", port + 1))
    receiver.join(timeout=20)
    assert not receiver.is_alive(), "ffmpeg did not end the session on RTCP BYE"
    assert "error" not in outcome, outcome
    frames = outcome["frames"]
    assert isinstance(frames, list)
    assert len(frames) == len(stream.frames)
    assert all(np.array_equal(a, b) for a, b in zip(frames, stream.frames, strict=True))
