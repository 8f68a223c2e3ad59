from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.rtsp.rtcp import (
    Goodbye,
    ReceiverReport,
    RtcpError,
    SenderReport,
    goodbye,
    ntp_to_unix,
    parse_rtcp,
    receiver_report,
    sender_report,
    unix_to_ntp,
)


def test_ntp_epoch_and_known_values() -> None:
    assert unix_to_ntp(0.0) == (2_208_988_800, 0)
    assert unix_to_ntp(1.5) == (2_208_988_801, 2**31)
    assert ntp_to_unix(2_208_988_800, 2**30) == 0.25
    assert unix_to_ntp(0.9999999999999) == (2_208_988_801, 0)  # rounding carries


def test_ntp_era_1_after_2036() -> None:
    after_wrap = 2_085_978_496.0 + 10  # 2036-02-07T06:28:16Z + 10 s
    sec, frac = unix_to_ntp(after_wrap)
    assert (sec, frac) == (10, 0)
    assert ntp_to_unix(sec, frac) == after_wrap


@given(st.floats(min_value=0, max_value=4_000_000_000, allow_nan=False))
def test_ntp_round_trip_within_a_microsecond(t: float) -> None:
    sec, frac = unix_to_ntp(t)
    assert 0 <= sec < 2**32
    assert 0 <= frac < 2**32
    assert abs(ntp_to_unix(sec, frac) - t) < 1e-6


def test_sender_report_layout_and_parse() -> None:
    data = sender_report(
        ssrc=0x11223344,
        unix_time=1_700_000_000.25,
        rtp_timestamp=2**32 + 90_000,
        packet_count=10,
        octet_count=2**32 + 5,
        cname="cam-1",
    )
    assert len(data) % 4 == 0
    assert data[:4] == bytes((0x80, 200, 0, 6))  # SR, no report blocks, 7 words
    sdes = data[28:]
    assert sdes[:2] == bytes((0x81, 202))
    assert sdes[8:10] == bytes((1, 5))
    assert sdes[10:15] == b"cam-1"
    assert 4 * (struct.unpack("!H", sdes[2:4])[0] + 1) == len(sdes)
    (report,) = parse_rtcp(data)
    assert isinstance(report, SenderReport)
    assert report.ssrc == 0x11223344
    assert abs(report.ntp_unix_time - 1_700_000_000.25) < 1e-6
    assert (report.rtp_timestamp, report.packet_count, report.octet_count) == (90_000, 10, 5)


@pytest.mark.parametrize("cname", ["", "x" * 256])
def test_sender_report_rejects_bad_cname(cname: str) -> None:
    with pytest.raises(ValueError):
        sender_report(
            ssrc=1, unix_time=0, rtp_timestamp=0, packet_count=0, octet_count=0, cname=cname
        )


@given(st.text(min_size=1, max_size=60).filter(lambda s: len(s.encode()) <= 255))
def test_sdes_padding_keeps_word_alignment(cname: str) -> None:
    data = sender_report(
        ssrc=1, unix_time=1.0, rtp_timestamp=0, packet_count=0, octet_count=0, cname=cname
    )
    assert len(data) % 4 == 0
    assert parse_rtcp(data) == [SenderReport(1, 1.0, 0, 0, 0)]


def test_receiver_report_and_goodbye() -> None:
    data = receiver_report(ssrc=42) + goodbye([1, 2, 0xFFFFFFFF])
    assert parse_rtcp(data) == [ReceiverReport(42), Goodbye([1, 2, 0xFFFFFFFF])]
    with pytest.raises(ValueError):
        goodbye([])


def test_unknown_types_are_skipped_and_padding_removed() -> None:
    app = bytes((0x80, 204, 0, 2)) + b"\x00\x00\x00\x01name"
    padded_rr = bytes((0xA0, 201, 0, 2)) + b"\x00\x00\x00\x07" + b"\x00\x00\x00\x04"
    feedback = bytes((0x81, 206, 0, 2)) + bytes(8)
    assert parse_rtcp(app + padded_rr + feedback) == [ReceiverReport(7)]


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x80\xc8\x00",  # truncated header
        bytes((0x40, 200, 0, 0)),  # version 1
        bytes((0x80, 200, 0, 6)) + bytes(20),  # length past the data
        bytes((0x80, 200, 0, 1)) + bytes(4),  # SR without sender info
        bytes((0x80, 201, 0, 0)),  # RR without SSRC
        bytes((0x82, 203, 0, 1)) + bytes(4),  # BYE shorter than its count
        bytes((0xA0, 201, 0, 1)) + b"\x00\x00\x00\x00",  # padding count 0
        bytes((0xA0, 201, 0, 1)) + b"\x00\x00\x00\x09",  # padding longer than the packet
    ],
)
def test_malformed_is_an_rtcp_error(data: bytes) -> None:
    with pytest.raises(RtcpError):
        parse_rtcp(data)


@given(st.binary(max_size=80))
def test_parse_rtcp_raises_only_rtcp_error(data: bytes) -> None:
    with contextlib.suppress(RtcpError):
        parse_rtcp(data)
