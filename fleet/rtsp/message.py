"""RTSP/1.0 message framing (RFC 2326), sans-IO: bytes in, events out.

The same byte stream also carries RTP/RTCP interleaved frames (RFC 2326 §10.12): `$`, a
channel byte and a 16-bit big-endian length, then the packet.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

RTSP_VERSION = "RTSP/1.0"

REASONS: dict[int, str] = {
    100: "Continue",
    200: "OK",
    201: "Created",
    250: "Low on Storage Space",
    300: "Multiple Choices",
    301: "Moved Permanently",
    302: "Moved Temporarily",
    303: "See Other",
    304: "Not Modified",
    305: "Use Proxy",
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    406: "Not Acceptable",
    407: "Proxy Authentication Required",
    408: "Request Time-out",
    410: "Gone",
    411: "Length Required",
    412: "Precondition Failed",
    413: "Request Entity Too Large",
    414: "Request-URI Too Large",
    415: "Unsupported Media Type",
    451: "Parameter Not Understood",
    452: "Conference Not Found",
    453: "Not Enough Bandwidth",
    454: "Session Not Found",
    455: "Method Not Valid in This State",
    456: "Header Field Not Valid for Resource",
    457: "Invalid Range",
    458: "Parameter Is Read-Only",
    459: "Aggregate Operation Not Allowed",
    460: "Only Aggregate Operation Allowed",
    461: "Unsupported Transport",
    462: "Destination Unreachable",
    463: "Destination Prohibited",
    500: "Internal Server Error",
    501: "Not Implemented",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Time-out",
    505: "RTSP Version Not Supported",
    551: "Option Not Supported",
}

_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_TOKEN_RE = re.compile(_TOKEN)
_REQUEST_LINE = re.compile(rf"({_TOKEN}) ([^\x00-\x20\x7f]+) ({_TOKEN}/[0-9]+\.[0-9]+)")
_STATUS_LINE = re.compile(r"(RTSP/[0-9]+\.[0-9]+) ([0-9]{3})(?: ([^\x00-\x08\x0a-\x1f\x7f]*))?")
_HEADER_LINE = re.compile(rf"({_TOKEN}):[ \t]*(.*?)[ \t]*")
_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
_DIGITS = re.compile(r"[0-9]{1,10}")
# RFC 2326 §4: lines end in CRLF, but receivers also take a bare CR or LF as a line end.
_EOL = rb"(?:\r\n|\r(?!\n)|\n)"
_HEAD_END = re.compile(_EOL + _EOL)
_LINE_SPLIT = re.compile(r"\r\n|\r|\n")
_MAX_CSEQ = 2**32 - 1


class Headers:
    """Case-insensitive, order-preserving, multi-valued header fields (immutable)."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items = tuple((name, value) for name, value in items)

    def get(self, name: str, default: str | None = None) -> str | None:
        """First value of `name`, or `default`."""
        key = name.lower()
        return next((v for n, v in self._items if n.lower() == key), default)

    def get_all(self, name: str) -> list[str]:
        key = name.lower()
        return [v for n, v in self._items if n.lower() == key]

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __len__(self) -> int:
        return len(self._items)

    def _key(self) -> tuple[tuple[str, str], ...]:
        return tuple((n.lower(), v) for n, v in self._items)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"Headers({list(self._items)!r})"


def _parse_cseq(headers: Headers) -> int | None:
    """The CSeq value; None when missing, malformed, out of range or given twice differently."""
    values = {v.strip() for v in headers.get_all("CSeq")}
    if len(values) != 1:
        return None
    (value,) = values
    if not _DIGITS.fullmatch(value) or int(value) > _MAX_CSEQ:
        return None
    return int(value)


class _CSeqMessage:
    """What requests and responses share: headers, and the CSeq read from them."""

    headers: Headers

    @property
    def cseq(self) -> int | None:
        return _parse_cseq(self.headers)


@dataclass(frozen=True)
class Request(_CSeqMessage):
    method: str
    uri: str
    version: str
    headers: Headers
    body: bytes


@dataclass(frozen=True)
class Response(_CSeqMessage):
    status: int
    reason: str
    version: str
    headers: Headers
    body: bytes


@dataclass(frozen=True)
class InterleavedFrame:
    channel: int
    payload: bytes


@dataclass(frozen=True)
class ProtocolError:
    """Something the peer sent that is answered with `status` (and closed if `fatal`)."""

    status: int
    reason: str
    cseq: int | None
    fatal: bool  # framing is lost: close the connection after answering


_Message = TypeVar("_Message", Request, Response)
_Start = tuple[str, str, str]


class _Connection(ABC, Generic[_Message]):
    """Shared framing; subclasses say how to read the start line and what to yield."""

    def __init__(
        self, max_header_bytes: int = 8192, max_headers: int = 64, max_body: int = 65536
    ) -> None:
        self._max_header_bytes = max_header_bytes
        self._max_headers = max_headers
        self._max_body = max_body
        self._buf = bytearray()
        self._dead = False
        # A parsed head waiting for its body: start line, headers, and the body's start and end
        # relative to the message start. Spares re-parsing the head for every trickled byte.
        self._pending: tuple[_Start, Headers, int, int] | None = None

    def receive_data(self, data: bytes) -> list[_Message | InterleavedFrame | ProtocolError]:
        """Feed bytes; get every complete event they finish. Never raises on peer input."""
        if self._dead:
            return []
        self._buf += data
        events: list[_Message | InterleavedFrame | ProtocolError] = []
        pos = 0
        while True:
            # Empty lines between messages are harmless padding; skip them.
            while pos < len(self._buf) and self._buf[pos] in b"\r\n":
                pos += 1
            found = self._next_event(pos)
            if found is None:
                break
            event, pos = found
            events.append(event)
            if isinstance(event, ProtocolError) and event.fatal:
                self._dead = True
                self._buf.clear()
                return events
        del self._buf[:pos]
        return events

    def _next_event(
        self, pos: int
    ) -> tuple[_Message | InterleavedFrame | ProtocolError, int] | None:
        buf = self._buf
        if self._pending is not None:
            start, headers, body_start, end = self._pending
            if len(buf) < pos + end:
                return None
            self._pending = None
            return self._make(start, headers, bytes(buf[pos + body_start : pos + end])), pos + end
        if pos >= len(buf):
            return None
        if buf[pos] == 0x24:  # "$"
            if len(buf) < pos + 4:
                return None
            end = pos + 4 + int.from_bytes(buf[pos + 2 : pos + 4], "big")
            if len(buf) < end:
                return None
            return InterleavedFrame(buf[pos + 1], bytes(buf[pos + 4 : end])), end
        # A terminator starting past the limit ends at most 4 bytes later, so this window decides.
        window_end = pos + self._max_header_bytes + 4
        head_end = _HEAD_END.search(buf, pos, window_end)
        if head_end is None or head_end.start() > pos + self._max_header_bytes:
            if head_end is None and len(buf) < window_end:
                return None
            return _fatal(400, "Header Section Too Large"), pos
        parsed = self._parse_head(bytes(buf[pos : head_end.start()]))
        if isinstance(parsed, ProtocolError):
            return parsed, pos
        start, headers = parsed
        length = self._content_length(headers)
        if isinstance(length, ProtocolError):
            return length, pos
        body_start = head_end.end()
        end = body_start + length
        if len(buf) < end:
            # A head ending in a bare CR at the buffer's end may yet get an LF that belongs to
            # its terminator: where the body starts is known only with the next byte.
            if body_start < len(buf) or buf[body_start - 1] != 0x0D:
                self._pending = (start, headers, body_start - pos, end - pos)
            return None
        return self._make(start, headers, bytes(buf[body_start:end])), end

    def _parse_head(self, raw: bytes) -> tuple[_Start, Headers] | ProtocolError:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            return _fatal(400, "Bad Request (not UTF-8)")
        first, *lines = _LINE_SPLIT.split(text)
        start = self._parse_start(first)
        if start is None:
            return _fatal(400, "Bad Request (malformed start line)")
        fields: list[tuple[str, str]] = []
        for line in lines:
            if _CONTROL_CHARS.search(line):
                return _fatal(400, "Bad Request (control character in header)")
            if line[:1] in (" ", "\t") and fields:  # folded continuation line
                name, value = fields[-1]
                fields[-1] = (name, f"{value} {line.strip()}".strip())
                continue
            match = _HEADER_LINE.fullmatch(line)
            if match is None:
                return _fatal(400, "Bad Request (malformed header line)")
            if len(fields) >= self._max_headers:
                return _fatal(400, "Too Many Header Fields")
            fields.append((match[1], match[2]))
        return start, Headers(fields)

    def _content_length(self, headers: Headers) -> int | ProtocolError:
        values = {v.strip() for v in headers.get_all("Content-Length")}
        if not values:
            return 0  # RFC 2326 §12.14: absent means no body
        cseq = _parse_cseq(headers)
        value = values.pop()
        if values or not _DIGITS.fullmatch(value):
            return ProtocolError(400, "Bad Request (invalid Content-Length)", cseq, True)
        if int(value) > self._max_body:
            return ProtocolError(413, REASONS[413], cseq, True)
        return int(value)

    @abstractmethod
    def _parse_start(self, line: str) -> _Start | None: ...

    @abstractmethod
    def _make(self, start: _Start, headers: Headers, body: bytes) -> _Message | ProtocolError: ...


def _fatal(status: int, reason: str) -> ProtocolError:
    return ProtocolError(status, reason, None, True)


class ServerConnection(_Connection[Request]):
    """Parses what an RTSP client sends. Unknown methods are yielded: the server answers 501."""

    def _parse_start(self, line: str) -> _Start | None:
        match = _REQUEST_LINE.fullmatch(line)
        return None if match is None else (match[1], match[2], match[3])

    def _make(self, start: _Start, headers: Headers, body: bytes) -> Request | ProtocolError:
        method, uri, version = start
        request = Request(method, uri, version, headers, body)
        if version != RTSP_VERSION:
            return ProtocolError(505, REASONS[505], request.cseq, False)
        if request.cseq is None:
            return ProtocolError(400, "Bad Request (missing or invalid CSeq)", None, False)
        return request


class ClientConnection(_Connection[Response]):
    """Parses what an RTSP server sends (tests and diagnostics); lenient about CSeq."""

    def _parse_start(self, line: str) -> _Start | None:
        match = _STATUS_LINE.fullmatch(line)
        return None if match is None else (match[1], match[2], match[3] or "")

    def _make(self, start: _Start, headers: Headers, body: bytes) -> Response:
        version, status, reason = start
        return Response(int(status), reason, version, headers, body)


def _render(start_line: str, headers: Iterable[tuple[str, str]], body: bytes) -> bytes:
    lines = [start_line]
    for name, value in headers:
        if not _TOKEN_RE.fullmatch(name) or _CONTROL_CHARS.search(value):
            raise ValueError(f"invalid header field {name!r}: {value!r}")
        if name.lower() == "content-length":
            raise ValueError("Content-Length is computed from the body; do not pass it")
        lines.append(f"{name}: {value}")
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _check_cseq(cseq: int) -> None:
    if not 0 <= cseq <= _MAX_CSEQ:
        raise ValueError(f"CSeq out of range: {cseq}")


def render_request(
    method: str, uri: str, cseq: int, headers: Iterable[tuple[str, str]] = (), body: bytes = b""
) -> bytes:
    if not _TOKEN_RE.fullmatch(method) or not re.fullmatch(r"[^\x00-\x20\x7f]+", uri):
        raise ValueError(f"invalid request line: {method!r} {uri!r}")
    _check_cseq(cseq)
    return _render(f"{method} {uri} {RTSP_VERSION}", [("CSeq", str(cseq)), *headers], body)


def render_response(
    status: int,
    cseq: int | None,
    headers: Iterable[tuple[str, str]] = (),
    body: bytes = b"",
    reason: str | None = None,
) -> bytes:
    """A response; `cseq` None omits CSeq (answering a request whose CSeq was unusable)."""
    if not 100 <= status <= 999:
        raise ValueError(f"status out of range: {status}")
    if reason is None:
        if status not in REASONS:
            raise ValueError(f"no standard reason for status {status}; pass reason=")
        reason = REASONS[status]
    if _CONTROL_CHARS.search(reason):
        raise ValueError(f"invalid reason phrase: {reason!r}")
    fields = list(headers)
    if cseq is not None:
        _check_cseq(cseq)
        fields.insert(0, ("CSeq", str(cseq)))
    return _render(f"{RTSP_VERSION} {status} {reason}", fields, body)


def interleaved(channel: int, payload: bytes) -> bytes:
    """An RTP/RTCP packet framed for the RTSP connection."""
    if not 0 <= channel <= 255:
        raise ValueError(f"interleaved channel out of range: {channel}")
    if len(payload) > 0xFFFF:
        raise ValueError(f"interleaved payload too large: {len(payload)} bytes")
    return b"$" + bytes((channel,)) + len(payload).to_bytes(2, "big") + payload
