"""RTCP (RFC 3550 §6): sender reports with the wall clock, receiver reports, goodbyes."""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

_SR, _RR, _SDES, _BYE = 200, 201, 202, 203
_NTP_UNIX_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
_SENDER_INFO = struct.Struct("!IIIIII")  # ssrc, NTP seconds, NTP fraction, RTP ts, packets, octets


class RtcpError(ValueError):
    """A packet that is not valid RTCP."""


def unix_to_ntp(t: float) -> tuple[int, int]:
    """NTP seconds and 32-bit fraction for a Unix time (seconds wrap in 2036, RFC 4330 §3)."""
    seconds = math.floor(t)
    fraction = round((t - seconds) * 2**32)
    if fraction == 2**32:  # rounding carried into the next second
        seconds, fraction = seconds + 1, 0
    return (seconds + _NTP_UNIX_OFFSET) & 0xFFFFFFFF, fraction


def ntp_to_unix(sec: int, frac: int) -> float:
    """Unix time of an NTP timestamp; seconds without the top bit are in era 1 (from 2036)."""
    era = 0 if sec & 0x80000000 else 2**32
    return sec + era - _NTP_UNIX_OFFSET + frac / 2**32


def _header(count: int, packet_type: int, body_len: int) -> bytes:
    # The length field counts 32-bit words minus one, header included.
    return struct.pack("!BBH", 0x80 | count, packet_type, (body_len + 4) // 4 - 1)


def _sdes_cname(ssrc: int, cname: str) -> bytes:
    text = cname.encode()
    if not 0 < len(text) <= 255:
        raise ValueError(f"CNAME must be 1-255 bytes: {cname!r}")
    chunk = struct.pack("!IBB", ssrc, 1, len(text)) + text + b"\x00"  # CNAME item, END
    chunk += b"\x00" * (-len(chunk) % 4)
    return _header(1, _SDES, len(chunk)) + chunk


def sender_report(
    *,
    ssrc: int,
    unix_time: float,
    rtp_timestamp: int,
    packet_count: int,
    octet_count: int,
    cname: str = "camfleet-sim",
) -> bytes:
    """Compound SR + SDES(CNAME). Counters and timestamp wrap modulo 2**32 as on the wire."""
    ntp_sec, ntp_frac = unix_to_ntp(unix_time)
    body = _SENDER_INFO.pack(
        ssrc,
        ntp_sec,
        ntp_frac,
        rtp_timestamp & 0xFFFFFFFF,
        packet_count & 0xFFFFFFFF,
        octet_count & 0xFFFFFFFF,
    )
    return _header(0, _SR, len(body)) + body + _sdes_cname(ssrc, cname)


def receiver_report(*, ssrc: int, cname: str = "camfleet-client") -> bytes:
    """Compound empty RR + SDES(CNAME): what a client sends to show it is still there."""
    return _header(0, _RR, 4) + struct.pack("!I", ssrc) + _sdes_cname(ssrc, cname)


def goodbye(ssrcs: Sequence[int]) -> bytes:
    if not 0 < len(ssrcs) <= 31:
        raise ValueError(f"a BYE names 1-31 sources, got {len(ssrcs)}")
    body = b"".join(struct.pack("!I", s) for s in ssrcs)
    return _header(len(ssrcs), _BYE, len(body)) + body


@dataclass(frozen=True)
class SenderReport:
    ssrc: int
    ntp_unix_time: float
    rtp_timestamp: int
    packet_count: int
    octet_count: int


@dataclass(frozen=True)
class ReceiverReport:
    ssrc: int


@dataclass(frozen=True)
class Goodbye:
    ssrcs: list[int]


def parse_rtcp(data: bytes) -> list[SenderReport | ReceiverReport | Goodbye]:
    """The SR, RR and BYE packets of a compound RTCP packet; other types are skipped."""
    if not data:
        raise RtcpError("empty RTCP packet")
    reports: list[SenderReport | ReceiverReport | Goodbye] = []
    offset = 0
    while offset < len(data):
        if len(data) - offset < 4:
            raise RtcpError(f"truncated RTCP header at byte {offset}")
        first, packet_type, words = struct.unpack_from("!BBH", data, offset)
        if first >> 6 != 2:
            raise RtcpError(f"not RTCP version 2 at byte {offset}")
        end = offset + 4 * (words + 1)
        if end > len(data):
            raise RtcpError(f"RTCP packet at byte {offset} runs past the data")
        body = data[offset + 4 : end]
        if first & 0x20:
            if not body or not 0 < body[-1] <= len(body):
                raise RtcpError(f"bad RTCP padding at byte {offset}")
            body = body[: -body[-1]]
        count = first & 0x1F
        if packet_type == _SR:
            if len(body) < _SENDER_INFO.size:
                raise RtcpError("sender report too short")
            ssrc, sec, frac, rtp_ts, packets, octets = _SENDER_INFO.unpack_from(body)
            reports.append(SenderReport(ssrc, ntp_to_unix(sec, frac), rtp_ts, packets, octets))
        elif packet_type == _RR:
            if len(body) < 4:
                raise RtcpError("receiver report too short")
            reports.append(ReceiverReport(int.from_bytes(body[:4], "big")))
        elif packet_type == _BYE:
            if len(body) < 4 * count:
                raise RtcpError("goodbye shorter than its source count")
            reports.append(
                Goodbye([int.from_bytes(body[4 * i : 4 * i + 4], "big") for i in range(count)])
            )
        offset = end
    return reports
