from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.rtsp.transport import (
    TransportError,
    TransportSpec,
    format_session,
    format_transport,
    parse_session,
    parse_transport,
)


def test_ffmpeg_tcp_request() -> None:
    (spec,) = parse_transport("RTP/AVP/TCP;unicast;interleaved=0-1")
    assert spec == TransportSpec(protocol="RTP/AVP/TCP", lower="TCP", interleaved=(0, 1))


def test_udp_request_with_alternatives_in_order() -> None:
    specs = parse_transport(
        'RTP/AVP;unicast;client_port=5000-5001;mode="PLAY", RTP/AVP/UDP;multicast, '
        "rtp/avp/tcp;interleaved=2"
    )
    assert specs[0] == TransportSpec(
        protocol="RTP/AVP", lower="UDP", client_port=(5000, 5001), mode="PLAY"
    )
    assert (specs[1].protocol, specs[1].lower, specs[1].unicast) == ("RTP/AVP", "UDP", False)
    assert (specs[2].protocol, specs[2].interleaved) == ("RTP/AVP/TCP", (2, 3))


def test_server_reply_fields_and_unknown_parameters() -> None:
    (spec,) = parse_transport(
        "RTP/AVP;unicast;client_port=6000;server_port=7000-7001;ssrc=1a2B3c4D;"
        "destination=127.0.0.1;ttl=4;append"
    )
    assert spec.client_port == (6000, 6001)
    assert spec.server_port == (7000, 7001)
    assert spec.ssrc == 0x1A2B3C4D
    assert spec.extra == (("destination", "127.0.0.1"), ("ttl", "4"), ("append", None))


def test_other_profiles_are_returned_for_the_server_to_refuse() -> None:
    (spec,) = parse_transport("RTP/SAVP;unicast;client_port=5000-5001")
    assert spec.protocol == "RTP/SAVP"


def test_format() -> None:
    spec = TransportSpec(
        protocol="RTP/AVP",
        lower="UDP",
        client_port=(5000, 5001),
        server_port=(6970, 6971),
        ssrc=0xABC,
    )
    assert format_transport(spec) == (
        "RTP/AVP;unicast;client_port=5000-5001;server_port=6970-6971;ssrc=00000ABC"
    )
    tcp = TransportSpec(protocol="RTP/AVP/TCP", lower="TCP", interleaved=(0, 1), mode="PLAY")
    assert format_transport(tcp) == 'RTP/AVP/TCP;unicast;interleaved=0-1;mode="PLAY"'


def test_spec_rejects_contradictory_lower_transport() -> None:
    with pytest.raises(TransportError):
        TransportSpec(protocol="RTP/AVP/TCP", lower="UDP")


@pytest.mark.parametrize(
    "value",
    [
        "",
        "  ",
        "RTP",
        "RTP/AVP/SCTP",
        "RTP/AVP/TCP/X",
        "RTP/AVP;client_port=0-1",
        "RTP/AVP;client_port=70000-70001",
        "RTP/AVP;client_port=5001-5000",
        "RTP/AVP;client_port=65535",
        "RTP/AVP;client_port=a-b",
        "RTP/AVP;client_port",
        "RTP/AVP/TCP;interleaved=255",
        "RTP/AVP/TCP;interleaved=-1",
        "RTP/AVP;ssrc=123456789",
        "RTP/AVP;ssrc=xyz",
        "RTP/AVP;unicast;multicast",
        "RTP/AVP;client_port=1-2;client_port=3-4",
        'RTP/AVP;mode="PLAY',
        "RTP/AVP;mode=",
        "RTP/AVP;bad param=1",
        "RTP/AVP,",
        "\x00\x01",
    ],
    ids=repr,
)
def test_garbage_is_a_transport_error(value: str) -> None:
    with pytest.raises(TransportError):
        parse_transport(value)


_pairs = st.integers(1, 65534).map(lambda p: (p, p + 1))


@given(
    st.sampled_from(["UDP", "TCP"]),
    st.booleans(),
    st.none() | st.integers(0, 254).map(lambda c: (c, c + 1)),
    st.none() | _pairs,
    st.none() | _pairs,
    st.none() | st.integers(0, 2**32 - 1),
    st.none() | st.sampled_from(["PLAY", "RECORD"]),
)
def test_format_then_parse_round_trips(
    lower: str,
    unicast: bool,
    channels: tuple[int, int] | None,
    client: tuple[int, int] | None,
    server: tuple[int, int] | None,
    ssrc: int | None,
    mode: str | None,
) -> None:
    spec = TransportSpec(
        protocol="RTP/AVP/TCP" if lower == "TCP" else "RTP/AVP",
        lower="TCP" if lower == "TCP" else "UDP",
        unicast=unicast,
        interleaved=channels,
        client_port=client,
        server_port=server,
        ssrc=ssrc,
        mode=mode,
    )
    assert parse_transport(format_transport(spec)) == [spec]


@given(st.text(max_size=60))
def test_parse_transport_raises_only_transport_error(value: str) -> None:
    try:
        specs = parse_transport(value)
    except TransportError:
        return
    assert specs and all(isinstance(s, TransportSpec) for s in specs)


def test_session_header() -> None:
    assert parse_session("12345678;timeout=60") == ("12345678", 60)
    assert parse_session(" abc-DEF_1.2+$ ") == ("abc-DEF_1.2+$", None)
    assert parse_session("s1; Timeout = 30 ;other=x") == ("s1", 30)
    assert format_session("s1", 60) == "s1;timeout=60"
    assert format_session("s1") == "s1"
    assert parse_session(format_session("Zz9", 5)) == ("Zz9", 5)


@pytest.mark.parametrize(
    "value", ["", ";timeout=5", "a b", "s1;timeout=", "s1;timeout=-1", "s1;timeout=x", "é"]
)
def test_bad_session_header(value: str) -> None:
    with pytest.raises(TransportError):
        parse_session(value)
