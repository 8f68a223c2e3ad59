"""SDP (RFC 4566) for RTSP DESCRIBE: writing H.264 descriptions (RFC 6184) and reading them back."""

from __future__ import annotations

import base64
import binascii
import math
import re
from dataclasses import dataclass, field

from fleet.rtsp.rtp import NAL_PPS, NAL_SPS, nal_type

_LINE = re.compile(r"([a-z])=(.*)")
_RTPMAP = re.compile(r"([0-9]{1,3}) ([^/\s]+)/([0-9]{1,10})(?:/.*)?")
_FMT_ATTR = re.compile(r"([0-9]{1,3})(?: (.*))?")
_NO_SPACE = re.compile(r"[^\x00-\x20\x7f]+")
# RFC 3551 static payload types a camera may use without an rtpmap line.
_STATIC_TYPES = {0: ("PCMU", 8000), 8: ("PCMA", 8000), 14: ("MPA", 90000), 26: ("JPEG", 90000)}


class SdpError(ValueError):
    """A session description that cannot be understood."""


@dataclass(frozen=True)
class MediaDescription:
    media: str
    payload_type: int
    encoding: str
    clock_rate: int
    fmtp: dict[str, str]  # names lower-cased (they are case-insensitive)
    control: str | None
    attributes: list[tuple[str, str | None]]


@dataclass(frozen=True)
class SessionDescription:
    origin: str
    name: str
    media: list[MediaDescription]
    attributes: list[tuple[str, str | None]] = field(default_factory=list)

    @property
    def control(self) -> str | None:
        return next((v for k, v in self.attributes if k == "control"), None)


def h264_sdp(
    *,
    session_id: int,
    origin_address: str,
    sps: bytes,
    pps: bytes,
    payload_type: int = 96,
    control: str = "trackID=0",
    framerate: float | None = None,
    width: int | None = None,
    height: int | None = None,
    session_name: str = "camfleet",
) -> str:
    """A one-track H.264 description; SPS and PPS are NAL units without start codes."""
    if len(sps) < 4 or nal_type(sps) != NAL_SPS:
        raise ValueError("sps must be a sequence parameter set NAL unit (type 7, >= 4 bytes)")
    if nal_type(pps) != NAL_PPS:
        raise ValueError("pps must be a picture parameter set NAL unit (type 8)")
    if not 96 <= payload_type <= 127:
        raise ValueError(f"payload type {payload_type} is not dynamic (96-127)")
    if session_id < 0:
        raise ValueError(f"negative session id {session_id}")
    for name, text in (("origin_address", origin_address), ("control", control)):
        if not _NO_SPACE.fullmatch(text):
            raise ValueError(f"{name} must be non-empty without spaces: {text!r}")
    if not session_name or re.search(r"[\x00-\x1f\x7f]", session_name):
        raise ValueError(f"session name must be one non-empty line: {session_name!r}")
    if (width is None) != (height is None):
        raise ValueError("give both width and height, or neither")
    sprop = ",".join(base64.b64encode(nal).decode() for nal in (sps, pps))
    lines = [
        "v=0",
        f"o=- {session_id} 1 IN {'IP6' if ':' in origin_address else 'IP4'} {origin_address}",
        f"s={session_name}",
        "c=IN IP4 0.0.0.0",
        "t=0 0",
        "a=control:*",
        f"m=video 0 RTP/AVP {payload_type}",
        f"a=rtpmap:{payload_type} H264/90000",
        f"a=fmtp:{payload_type} packetization-mode=1;profile-level-id={sps[1:4].hex().upper()};"
        f"sprop-parameter-sets={sprop}",
        f"a=control:{control}",
    ]
    if framerate is not None:
        if not (math.isfinite(framerate) and framerate > 0):
            raise ValueError(f"bad framerate {framerate}")
        lines.append(f"a=framerate:{framerate:g}")
    if width is not None and height is not None:
        lines.append(f"a=x-dimensions:{width},{height}")
    return "\r\n".join(lines) + "\r\n"


def _parse_fmtp(text: str) -> dict[str, str]:
    params: dict[str, str] = {}
    for item in text.split(";"):
        name, _, value = item.strip().partition("=")
        if name:
            params[name.strip().lower()] = value.strip()
    return params


def _media(line_no: int, value: str, attributes: list[tuple[str, str | None]]) -> MediaDescription:
    fields = value.split()
    if len(fields) < 4 or not re.fullmatch(r"[0-9]+(/[0-9]+)?", fields[1]):
        raise SdpError(f"line {line_no}: bad media line m={value!r}")
    if not fields[3].isdigit() or int(fields[3]) > 127:
        raise SdpError(f"line {line_no}: media format {fields[3]!r} is not an RTP payload type")
    payload_type = int(fields[3])
    rtpmap = fmtp = None
    for name, attr in attributes:
        match = _FMT_ATTR.fullmatch(attr or "")
        if match is None or int(match[1]) != payload_type:
            continue
        if name == "rtpmap":
            rtpmap = _RTPMAP.fullmatch(attr or "")
            if rtpmap is None:
                raise SdpError(f"media at line {line_no}: bad a=rtpmap:{attr}")
        elif name == "fmtp":
            fmtp = _parse_fmtp(match[2] or "")
    if rtpmap is not None:
        encoding, clock_rate = rtpmap[2], int(rtpmap[3])
    elif payload_type in _STATIC_TYPES:
        encoding, clock_rate = _STATIC_TYPES[payload_type]
    else:
        raise SdpError(f"media at line {line_no}: no a=rtpmap for payload type {payload_type}")
    return MediaDescription(
        media=fields[0],
        payload_type=payload_type,
        encoding=encoding,
        clock_rate=clock_rate,
        fmtp=fmtp or {},
        control=next((v for k, v in attributes if k == "control"), None),
        attributes=attributes,
    )


def parse_sdp(text: str) -> SessionDescription:
    """Parse a session description (CRLF or LF line ends)."""
    session: dict[str, str] = {}
    session_attrs: list[tuple[str, str | None]] = []
    media_lines: list[tuple[int, str, list[tuple[str, str | None]]]] = []
    lines = [line.rstrip("\r") for line in text.split("\n")]
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        match = _LINE.fullmatch(line)
        if match is None:
            raise SdpError(f"line {number}: not a `x=value` line: {line[:80]!r}")
        kind, value = match[1], match[2]
        if not session and kind != "v":
            raise SdpError(f"line {number}: a description must start with v=, got {kind}=")
        if kind == "m":
            media_lines.append((number, value, []))
        elif kind == "a":
            name, colon, attr_value = value.partition(":")
            attrs = media_lines[-1][2] if media_lines else session_attrs
            attrs.append((name, attr_value if colon else None))
        elif not media_lines:
            session.setdefault(kind, value)
    if session.get("v") != "0":
        raise SdpError("missing or unsupported v= line (expected v=0)")
    for required in ("o", "s"):
        if required not in session:
            raise SdpError(f"missing {required}= line")
    return SessionDescription(
        origin=session["o"],
        name=session["s"],
        media=[_media(number, value, attrs) for number, value, attrs in media_lines],
        attributes=session_attrs,
    )


def sprop_parameter_sets(md: MediaDescription) -> list[bytes]:
    """The NAL units (normally SPS, PPS) of the fmtp `sprop-parameter-sets`."""
    value = md.fmtp.get("sprop-parameter-sets", "")
    try:
        return [base64.b64decode(part, validate=True) for part in value.split(",") if part]
    except binascii.Error as exc:
        raise SdpError(f"bad base64 in sprop-parameter-sets {value!r}: {exc}") from None
