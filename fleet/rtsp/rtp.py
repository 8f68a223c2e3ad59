"""RTP (RFC 3550) headers and the H.264 payload format (RFC 6184, packetization-mode 1)."""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

_HEADER = struct.Struct("!BBHII")
_STAP_A = 24
_FU_A = 28
MIN_MTU = 3  # an FU-A packet needs its two header bytes and at least one NAL byte
MAX_MTU = 0xFFFF - _HEADER.size  # an interleaved frame's 16-bit length covers the RTP header
# A packet this far behind is taken as reordered; further behind, the sender restarted its count.
_REORDER_WINDOW = 100


class RtpError(ValueError):
    """A packet that is not valid RTP."""


# H.264 NAL unit types camfleet looks at (ITU-T H.264 table 7-1).
NAL_IDR, NAL_SEI, NAL_SPS, NAL_PPS, NAL_AUD = 5, 6, 7, 8, 9


def nal_type(nal: bytes) -> int:
    """The H.264 NAL unit type; -1 for an empty unit."""
    return nal[0] & 0x1F if nal else -1


START_CODE = b"\x00\x00\x00\x01"


def join_annexb(nals: Iterable[bytes]) -> bytes:
    """An Annex-B byte stream of NAL units (4-byte start codes); split_annexb's inverse."""
    return b"".join(START_CODE + nal for nal in nals)


def split_annexb(data: bytes) -> list[bytes]:
    """NAL units (without start codes) of an Annex-B byte stream."""
    nals: list[bytes] = []
    start = data.find(b"\x00\x00\x01")
    if (data if start < 0 else data[:start]).strip(b"\x00"):
        raise ValueError("not an Annex-B stream: data before the first start code")
    while start >= 0:
        begin = start + 3
        start = data.find(b"\x00\x00\x01", begin)
        # NAL units never end in 0x00, so trailing zeros belong to the next (4-byte) start code.
        nal = data[begin : start if start >= 0 else len(data)].rstrip(b"\x00")
        if nal:
            nals.append(nal)
    return nals


def _check_nal(nal: bytes) -> None:
    if not nal:
        raise ValueError("empty NAL unit")
    if not 1 <= nal_type(nal) <= 23:
        raise ValueError(f"NAL unit type {nal_type(nal)} cannot be carried (only 1-23)")


def _stap_a(group: list[bytes]) -> bytes:
    # F is the OR and NRI the maximum of the aggregated units' (RFC 6184 §5.7.1).
    header = max(nal[0] & 0x60 for nal in group) | any(nal[0] & 0x80 for nal in group) << 7
    return bytes((header | _STAP_A,)) + b"".join(len(n).to_bytes(2, "big") + n for n in group)


def _fu_a(nal: bytes, mtu: int) -> list[bytes]:
    indicator = (nal[0] & 0xE0) | _FU_A
    nal_type = nal[0] & 0x1F
    body = memoryview(nal)[1:]
    chunk = mtu - 2
    payloads = []
    for offset in range(0, len(body), chunk):
        start_bit = 0x80 if offset == 0 else 0
        end_bit = 0x40 if offset + chunk >= len(body) else 0
        header = bytes((indicator, start_bit | end_bit | nal_type))
        payloads.append(header + body[offset : offset + chunk])
    return payloads


def packetize_h264(nals: Sequence[bytes], mtu: int = 1400) -> list[bytes]:
    """RTP payloads (no header) for one access unit; `mtu` bounds each payload's size.

    Runs of small NAL units share a STAP-A, a unit larger than `mtu` is cut into FU-As,
    anything else travels as a single NAL unit packet.
    """
    if not MIN_MTU <= mtu <= MAX_MTU:
        raise ValueError(f"mtu {mtu} outside {MIN_MTU}-{MAX_MTU}")
    payloads: list[bytes] = []
    group: list[bytes] = []

    def flush() -> None:
        if len(group) == 1:
            payloads.append(bytes(group[0]))
        elif group:
            payloads.append(_stap_a(group))
        group.clear()

    for nal in nals:
        _check_nal(nal)
        if len(nal) > mtu:
            flush()
            payloads.extend(_fu_a(nal, mtu))
            continue
        # A STAP-A is one header byte, then a 16-bit size before each unit.
        if group and 1 + sum(2 + len(n) for n in group) + 2 + len(nal) > mtu:
            flush()
        group.append(nal)
    flush()
    return payloads


def rtp_header(*, payload_type: int, seq: int, timestamp: int, ssrc: int, marker: bool) -> bytes:
    """The 12-byte fixed RTP header (version 2, no padding, extension or CSRCs)."""
    if not 0 <= payload_type <= 127:
        raise ValueError(f"payload type out of range: {payload_type}")
    if not (0 <= seq <= 0xFFFF and 0 <= timestamp <= 0xFFFFFFFF and 0 <= ssrc <= 0xFFFFFFFF):
        raise ValueError(f"seq/timestamp/ssrc out of range: {seq}/{timestamp}/{ssrc}")
    return _HEADER.pack(0x80, marker << 7 | payload_type, seq, timestamp, ssrc)


class RtpSequencer:
    """Per-session sender state: numbers packets and counts them for RTCP sender reports."""

    def __init__(self, ssrc: int, payload_type: int = 96, initial_seq: int = 0) -> None:
        # Building a header checks the fields' ranges once, so packets() need not.
        rtp_header(payload_type=payload_type, seq=initial_seq, timestamp=0, ssrc=ssrc, marker=False)
        self.ssrc = ssrc
        self.payload_type = payload_type
        self.seq = initial_seq  # sequence number of the next packet
        self.packet_count = 0
        self.octet_count = 0  # payload octets, as RTCP SR counts them

    def packets(self, payloads: Sequence[bytes], timestamp: int) -> list[bytes]:
        """Full RTP packets for one access unit; the marker goes on the last one."""
        timestamp &= 0xFFFFFFFF
        packets = []
        for index, payload in enumerate(payloads):
            header = _HEADER.pack(
                0x80,
                (index == len(payloads) - 1) << 7 | self.payload_type,
                self.seq,
                timestamp,
                self.ssrc,
            )
            packets.append(header + payload)
            self.seq = (self.seq + 1) & 0xFFFF
            self.octet_count += len(payload)
        self.packet_count += len(payloads)
        return packets


@dataclass(frozen=True)
class RtpPacket:
    payload_type: int
    marker: bool
    seq: int
    timestamp: int
    ssrc: int
    payload: bytes


def parse_rtp(packet: bytes) -> RtpPacket:
    """Parse one RTP packet, skipping CSRCs and header extension and removing padding."""
    if len(packet) < _HEADER.size:
        raise RtpError(f"RTP packet too short: {len(packet)} bytes")
    first, second, seq, timestamp, ssrc = _HEADER.unpack_from(packet)
    if first >> 6 != 2:
        raise RtpError(f"not RTP version 2 (version {first >> 6})")
    offset = _HEADER.size + 4 * (first & 0x0F)
    end = len(packet)
    if first & 0x10:  # header extension: 16-bit profile, 16-bit length in words
        if end < offset + 4:
            raise RtpError("truncated RTP header extension")
        offset += 4 + 4 * int.from_bytes(packet[offset + 2 : offset + 4], "big")
    if first & 0x20:
        padding = packet[-1]
        if padding == 0:
            raise RtpError("RTP padding count of zero")
        end -= padding
    if offset > end:
        raise RtpError("RTP header, extension or padding longer than the packet")
    return RtpPacket(second & 0x7F, bool(second & 0x80), seq, timestamp, ssrc, packet[offset:end])


class H264Depacketizer:
    """Reassembles access units (lists of NAL units) from RTP packets in arrival order.

    An access unit ends at a marker bit or a timestamp change. Damage is counted, not raised:
    `lost` packets missing by sequence number, `late` packets that arrived out of order or twice
    (dropped), `garbled` payloads or fragment runs that could not be used. A new SSRC or a jump far
    back in sequence numbers starts over, as after a sender restart.
    """

    def __init__(self) -> None:
        self.lost = 0
        self.late = 0
        self.garbled = 0
        self._ssrc: int | None = None
        self._next_seq: int | None = None
        self._timestamp: int | None = None
        self._nals: list[bytes] = []
        self._fragment: bytearray | None = None

    def push(self, packet: RtpPacket) -> list[list[bytes]]:
        """Feed one packet; get the access units it completed (usually none or one)."""
        done: list[list[bytes]] = []
        if packet.ssrc != self._ssrc:
            done.extend(self.flush())
            self._ssrc, self._next_seq = packet.ssrc, None
        if self._next_seq is not None:
            gap = (packet.seq - self._next_seq) & 0xFFFF
            if 0x10000 - gap <= _REORDER_WINDOW:
                self.late += 1
                return done
            if gap < 0x8000:
                self.lost += gap
            if gap:
                self._drop_fragment()
        self._next_seq = (packet.seq + 1) & 0xFFFF
        if packet.timestamp != self._timestamp:
            done.extend(self.flush())
            self._timestamp = packet.timestamp
        self._take(packet.payload)
        if packet.marker:
            done.extend(self.flush())
        return done

    def flush(self) -> list[list[bytes]]:
        """End the current access unit (e.g. at end of stream); an unfinished NAL is dropped."""
        self._drop_fragment()
        nals, self._nals = self._nals, []
        return [nals] if nals else []

    def _drop_fragment(self) -> None:
        if self._fragment is not None:
            self.garbled += 1
            self._fragment = None

    def _take(self, payload: bytes) -> None:
        nal_type = payload[0] & 0x1F if payload else 0
        if 1 <= nal_type <= 23:
            self._drop_fragment()
            self._nals.append(payload)
        elif nal_type == _STAP_A:
            self._drop_fragment()
            self._take_stap_a(payload)
        elif nal_type == _FU_A and len(payload) >= 2:
            self._take_fu_a(payload)
        else:  # empty, reserved, or a mode-2 type (STAP-B, MTAP, FU-B) we never negotiate
            self._drop_fragment()
            self.garbled += 1

    def _take_stap_a(self, payload: bytes) -> None:
        units: list[bytes] = []
        offset = 1
        while offset < len(payload):
            size = int.from_bytes(payload[offset : offset + 2], "big")
            unit = payload[offset + 2 : offset + 2 + size]
            if size == 0 or len(unit) != size:
                self.garbled += 1
                return
            units.append(unit)
            offset += 2 + size
        if not units:
            self.garbled += 1
            return
        self._nals.extend(units)

    def _take_fu_a(self, payload: bytes) -> None:
        indicator, header = payload[0], payload[1]
        start, end = header & 0x80, header & 0x40
        if start:
            self._drop_fragment()
            if end:  # a NAL unit in one FU-A is forbidden (RFC 6184 §5.8)
                self.garbled += 1
                return
            self._fragment = bytearray(((indicator & 0xE0) | (header & 0x1F),))
        elif self._fragment is None:  # its start was lost
            self.garbled += 1
            return
        self._fragment += payload[2:]
        if end:
            self._nals.append(bytes(self._fragment))
            self._fragment = None
