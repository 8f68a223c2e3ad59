from __future__ import annotations

import contextlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fleet.rtsp.sdp import SdpError, h264_sdp, parse_sdp, sprop_parameter_sets

# Parameter sets libx264 wrote for a 64x48 stream (Constrained Baseline, level 1.0).
SPS = bytes.fromhex("6742c00ada11e8400000030040000007a3c489a8")
PPS = bytes.fromhex("68ce0fc8")


def make(**overrides: object) -> str:
    args: dict[str, object] = {
        "session_id": 1234,
        "origin_address": "192.0.2.10",
        "sps": SPS,
        "pps": PPS,
    }
    return h264_sdp(**{**args, **overrides})  # type: ignore[arg-type]


def test_h264_sdp_lines() -> None:
    text = make(framerate=15, width=64, height=48)
    assert text.endswith("\r\n")
    assert "\n" not in text.replace("\r\n", "")
    lines = text.split("\r\n")[:-1]
    assert lines[:6] == [
        "v=0",
        "o=- 1234 1 IN IP4 192.0.2.10",
        "s=camfleet",
        "c=IN IP4 0.0.0.0",
        "t=0 0",
        "a=control:*",
    ]
    assert lines[6:] == [
        "m=video 0 RTP/AVP 96",
        "a=rtpmap:96 H264/90000",
        "a=fmtp:96 packetization-mode=1;profile-level-id=42C00A;"
        "sprop-parameter-sets=Z0LACtoR6EAAAAMAQAAAB6PEiag=,aM4PyA==",
        "a=control:trackID=0",
        "a=framerate:15",
        "a=x-dimensions:64,48",
    ]


def test_h264_sdp_parses_back() -> None:
    text = make(payload_type=97, control="track1", framerate=29.97, session_name="cam 7")
    session = parse_sdp(text)
    assert session.origin == "- 1234 1 IN IP4 192.0.2.10"
    assert session.name == "cam 7"
    assert session.control == "*"
    (media,) = session.media
    assert (media.media, media.payload_type, media.encoding, media.clock_rate) == (
        "video",
        97,
        "H264",
        90000,
    )
    assert media.control == "track1"
    assert media.fmtp["packetization-mode"] == "1"
    assert media.fmtp["profile-level-id"] == "42C00A"
    assert ("framerate", "29.97") in media.attributes
    assert sprop_parameter_sets(media) == [SPS, PPS]


def test_ipv6_origin() -> None:
    assert "o=- 1 1 IN IP6 ::1\r\n" in make(session_id=1, origin_address="::1")


@pytest.mark.parametrize(
    "overrides",
    [
        {"sps": PPS},
        {"sps": SPS[:3]},
        {"pps": SPS},
        {"pps": b""},
        {"payload_type": 33},
        {"session_id": -1},
        {"control": "track 0"},
        {"origin_address": ""},
        {"session_name": "a\r\nb=c"},
        {"session_name": ""},
        {"framerate": 0},
        {"framerate": float("nan")},
        {"width": 640},
    ],
    ids=repr,
)
def test_h264_sdp_rejects_bad_arguments(overrides: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        make(**overrides)


CAMERA_SDP = "\n".join(
    [
        "v=0",
        "o=- 1700000000000000 1 IN IP4 10.0.0.5",
        "s=Media Presentation",
        "e=NONE",
        "b=AS:5100",
        "t=0 0",
        "a=control:rtsp://10.0.0.5:554/Streaming/Channels/101/?transportmode=unicast",
        "m=video 0 RTP/AVP 96",
        "c=IN IP4 0.0.0.0",
        "b=AS:5000",
        "a=recvonly",
        "a=x-dimensions:1920,1080",
        "a=control:rtsp://10.0.0.5:554/Streaming/Channels/101/trackID=1?transportmode=unicast",
        "a=rtpmap:96 H264/90000",
        "a=fmtp:96 profile-level-id=420029; packetization-mode=1;"
        " sprop-parameter-sets=Z01AKI2NQDwBE/LCAAAOEAACvyAI,aO44gA==",
        "m=audio 0 RTP/AVP 0",
        "a=control:trackID=2",
        "m=application 0 RTP/AVP 107",
        "a=rtpmap:107 vnd.onvif.metadata/90000",
        "",
    ]
)


def test_parses_a_camera_style_description() -> None:
    session = parse_sdp(CAMERA_SDP)
    assert session.name == "Media Presentation"
    video, audio, meta = session.media
    assert video.fmtp == {
        "profile-level-id": "420029",
        "packetization-mode": "1",
        "sprop-parameter-sets": "Z01AKI2NQDwBE/LCAAAOEAACvyAI,aO44gA==",
    }
    assert video.control is not None and video.control.endswith("trackID=1?transportmode=unicast")
    assert ("recvonly", None) in video.attributes
    sps, pps = sprop_parameter_sets(video)
    assert (sps[0] & 0x1F, pps[0] & 0x1F) == (7, 8)
    assert (audio.encoding, audio.clock_rate, audio.payload_type) == ("PCMU", 8000, 0)
    assert sprop_parameter_sets(audio) == []
    assert (meta.media, meta.encoding) == ("application", "vnd.onvif.metadata")


@pytest.mark.parametrize(
    "text",
    [
        "",
        "hello",
        "o=- 1 1 IN IP4 h\ns=x\n",
        "v=1\no=- 1 1 IN IP4 h\ns=x\n",
        "v=0\ns=x\n",
        "v=0\no=- 1 1 IN IP4 h\n",
        "v=0\no=x\ns=x\nm=video\n",
        "v=0\no=x\ns=x\nm=video 0 RTP/AVP\n",
        "v=0\no=x\ns=x\nm=video x RTP/AVP 96\n",
        "v=0\no=x\ns=x\nm=video 0 RTP/AVP 96\n",
        "v=0\no=x\ns=x\nm=video 0 RTP/AVP 300\n",
        "v=0\no=x\ns=x\nm=video 0 RTP/AVP 96\na=rtpmap:96 H264\n",
        "v=0\no=x\ns=x\nm=video 0 RTP/AVP 96\nnot a line\n",
        "v=0\no=x\ns=x\nV=0\n",
    ],
    ids=repr,
)
def test_garbage_is_an_sdp_error(text: str) -> None:
    with pytest.raises(SdpError):
        parse_sdp(text)


def test_bad_sprop_base64_is_an_sdp_error() -> None:
    text = make().replace("aM4PyA==", "not*base64")
    (media,) = parse_sdp(text).media
    with pytest.raises(SdpError):
        sprop_parameter_sets(media)


@given(st.text(max_size=200))
def test_parse_sdp_raises_only_sdp_error(text: str) -> None:
    with contextlib.suppress(SdpError):
        parse_sdp(text)
