"""The RTSP Transport and Session headers (RFC 2326 §12.39, §12.37)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

_TOKEN = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_RANGE = re.compile(r"([0-9]{1,5})(?:-([0-9]{1,5}))?")
_SSRC = re.compile(r"[0-9A-Fa-f]{1,8}")
_SESSION_ID = re.compile(r"[A-Za-z0-9$_.+-]+")
_TIMEOUT = re.compile(r"[0-9]{1,9}")


class TransportError(ValueError):
    """A Transport or Session header that cannot be understood."""


@dataclass(frozen=True)
class TransportSpec:
    """One transport alternative. `protocol` is "RTP/AVP" (over UDP) or "RTP/AVP/TCP"."""

    protocol: str
    lower: Literal["UDP", "TCP"]
    unicast: bool = True
    interleaved: tuple[int, int] | None = None
    client_port: tuple[int, int] | None = None
    server_port: tuple[int, int] | None = None
    ssrc: int | None = None
    mode: str | None = None
    # Parameters this module does not interpret (destination, ttl, ...), kept in order.
    extra: tuple[tuple[str, str | None], ...] = ()

    def __post_init__(self) -> None:
        if self.protocol.endswith("/TCP") != (self.lower == "TCP"):
            raise TransportError(f"protocol {self.protocol!r} contradicts lower={self.lower}")


def _split(value: str, sep: str) -> list[str]:
    """Split on `sep` outside double quotes."""
    parts: list[str] = []
    current: list[str] = []
    quoted = False
    for char in value:
        if char == '"':
            quoted = not quoted
        if char == sep and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    if quoted:
        raise TransportError(f"unbalanced quote in {value!r}")
    parts.append("".join(current))
    return parts


def _range(name: str, value: str | None, low: int, high: int) -> tuple[int, int]:
    match = _RANGE.fullmatch(value or "")
    if match is None:
        raise TransportError(f"{name}: expected N or N-M, got {value!r}")
    first = int(match[1])
    # A single number names the RTP port/channel; RTCP takes the next one (RFC 3550 §11).
    second = int(match[2]) if match[2] is not None else first + 1
    if not low <= first <= second <= high:
        raise TransportError(f"{name}: {value!r} outside {low}-{high} or descending")
    return first, second


def _parse_protocol(text: str) -> tuple[str, Literal["UDP", "TCP"]]:
    parts = text.strip().upper().split("/")
    if len(parts) not in (2, 3) or not all(_TOKEN.fullmatch(p) for p in parts):
        raise TransportError(f"bad transport protocol {text!r}")
    lower = parts[2] if len(parts) == 3 else "UDP"
    if lower not in ("UDP", "TCP"):
        raise TransportError(f"bad lower transport {lower!r}")
    base = f"{parts[0]}/{parts[1]}"
    return (f"{base}/TCP", "TCP") if lower == "TCP" else (base, "UDP")


def _parse_one(text: str) -> TransportSpec:
    protocol_text, *params = _split(text, ";")
    protocol, lower = _parse_protocol(protocol_text)
    seen: set[str] = set()
    # Absent unicast/multicast is taken as unicast, as clients in the field mean it.
    unicast = True
    interleaved = client_port = server_port = None
    ssrc: int | None = None
    mode: str | None = None
    extra: list[tuple[str, str | None]] = []
    for param in params:
        name, eq, raw = param.strip().partition("=")
        name = name.strip().lower()
        value = raw.strip() if eq else None
        if not _TOKEN.fullmatch(name):
            raise TransportError(f"bad transport parameter {param!r}")
        key = "cast" if name in ("unicast", "multicast") else name
        if key in seen:
            raise TransportError(f"transport parameter {name!r} repeated or contradictory")
        seen.add(key)
        if name in ("unicast", "multicast"):
            unicast = name == "unicast"
        elif name == "interleaved":
            interleaved = _range(name, value, 0, 255)
        elif name == "client_port":
            client_port = _range(name, value, 1, 65535)
        elif name == "server_port":
            server_port = _range(name, value, 1, 65535)
        elif name == "ssrc":
            if value is None or not _SSRC.fullmatch(value):
                raise TransportError(f"ssrc: expected up to 8 hex digits, got {value!r}")
            ssrc = int(value, 16)
        elif name == "mode":
            mode = (value or "").strip('"').strip().upper()
            if not _TOKEN.fullmatch(mode):
                raise TransportError(f"bad mode {value!r}")
        else:
            extra.append((name, value))
    return TransportSpec(
        protocol, lower, unicast, interleaved, client_port, server_port, ssrc, mode, tuple(extra)
    )


def parse_transport(value: str) -> list[TransportSpec]:
    """The alternatives of a Transport header, in the client's order of preference."""
    if not value.strip():
        raise TransportError("empty Transport header")
    return [_parse_one(part) for part in _split(value, ",")]


def format_transport(spec: TransportSpec) -> str:
    parts = [spec.protocol, "unicast" if spec.unicast else "multicast"]
    for name, pair in (
        ("interleaved", spec.interleaved),
        ("client_port", spec.client_port),
        ("server_port", spec.server_port),
    ):
        if pair is not None:
            parts.append(f"{name}={pair[0]}-{pair[1]}")
    if spec.ssrc is not None:
        parts.append(f"ssrc={spec.ssrc:08X}")
    if spec.mode is not None:
        parts.append(f'mode="{spec.mode}"')
    parts.extend(name if value is None else f"{name}={value}" for name, value in spec.extra)
    return ";".join(parts)


def parse_session(value: str) -> tuple[str, int | None]:
    """Session id and timeout (seconds) from a Session header such as "id;timeout=60"."""
    session_id, *params = (p.strip() for p in value.split(";"))
    if not _SESSION_ID.fullmatch(session_id):
        raise TransportError(f"bad session id in {value!r}")
    timeout: int | None = None
    for param in params:
        name, _, raw = param.partition("=")
        if name.strip().lower() == "timeout":
            if not _TIMEOUT.fullmatch(raw.strip()):
                raise TransportError(f"bad session timeout in {value!r}")
            timeout = int(raw)
    return session_id, timeout


def format_session(session_id: str, timeout: int | None = None) -> str:
    if not _SESSION_ID.fullmatch(session_id):
        raise TransportError(f"bad session id {session_id!r}")
    return session_id if timeout is None else f"{session_id};timeout={timeout}"
