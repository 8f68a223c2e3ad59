from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from fleet.rtsp.message import (
    REASONS,
    ClientConnection,
    Headers,
    InterleavedFrame,
    ProtocolError,
    Request,
    Response,
    ServerConnection,
    interleaved,
    render_request,
    render_response,
)

Event = Request | Response | InterleavedFrame | ProtocolError


def feed(conn: ServerConnection | ClientConnection, *chunks: bytes) -> list[Event]:
    events: list[Event] = []
    for chunk in chunks:
        events.extend(conn.receive_data(chunk))
    return events


def one(data: bytes, **limits: int) -> Event:
    events = ServerConnection(**limits).receive_data(data)
    assert len(events) == 1, events
    return events[0]


def test_request_round_trip() -> None:
    data = render_request(
        "SETUP",
        "rtsp://cam/stream/trackID=0",
        7,
        [("Transport", "RTP/AVP/TCP;unicast;interleaved=0-1"), ("X-A", "1"), ("x-a", "2")],
        b"body",
    )
    request = one(data)
    assert isinstance(request, Request)
    assert (request.method, request.uri, request.version) == (
        "SETUP",
        "rtsp://cam/stream/trackID=0",
        "RTSP/1.0",
    )
    assert request.cseq == 7
    assert request.body == b"body"
    assert request.headers.get("transport") == "RTP/AVP/TCP;unicast;interleaved=0-1"
    assert request.headers.get_all("X-A") == ["1", "2"]
    assert request.headers.get("content-length") == "4"


def test_response_round_trip() -> None:
    data = render_response(200, 3, [("Content-Type", "application/sdp")], b"v=0\r\n")
    assert data.startswith(b"RTSP/1.0 200 OK\r\nCSeq: 3\r\n")
    (response,) = ClientConnection().receive_data(data)
    assert isinstance(response, Response)
    assert (response.status, response.reason, response.cseq) == (200, "OK", 3)
    assert response.body == b"v=0\r\n"


def test_response_without_cseq_or_reason() -> None:
    assert b"CSeq" not in render_response(400, None)
    (response,) = ClientConnection().receive_data(b"RTSP/1.0 200\r\n\r\n")
    assert isinstance(response, Response)
    assert (response.status, response.reason, response.cseq) == (200, "", None)


def test_reasons_cover_rtsp_codes() -> None:
    assert REASONS[453] == "Not Enough Bandwidth"
    assert REASONS[454] == "Session Not Found"
    assert REASONS[455] == "Method Not Valid in This State"
    assert REASONS[461] == "Unsupported Transport"
    assert all(code in REASONS for code in (*range(451, 464), 459, 501, 505))
    assert render_response(454, 1).startswith(b"RTSP/1.0 454 Session Not Found\r\n")
    assert render_response(299, 1, reason="Custom").startswith(b"RTSP/1.0 299 Custom\r\n")


@pytest.mark.parametrize(
    "call",
    [
        lambda: render_response(200, 1, [("X", "a\r\nInjected: yes")]),
        lambda: render_response(200, 1, [("Bad Name", "x")]),
        lambda: render_response(200, 1, [("Content-Length", "3")], b"abc"),
        lambda: render_response(299, 1),
        lambda: render_response(200, -1),
        lambda: render_response(200, 1, reason="OK\r\n"),
        lambda: render_request("OPTIONS", "rtsp://a b", 1),
        lambda: render_request("BAD METHOD", "*", 1),
        lambda: interleaved(256, b""),
        lambda: interleaved(0, bytes(65536)),
    ],
)
def test_render_rejects_bad_input(call: object) -> None:
    with pytest.raises(ValueError):
        call()  # type: ignore[operator]


def test_headers_are_case_insensitive_ordered_and_multivalued() -> None:
    headers = Headers([("Session", "a"), ("X-Y", "1"), ("x-y", "2")])
    assert headers.get("SESSION") == "a"
    assert headers.get("missing") is None
    assert headers.get("missing", "d") == "d"
    assert "x-Y" in headers
    assert "nope" not in headers
    assert len(headers) == 3
    assert headers.items() == [("Session", "a"), ("X-Y", "1"), ("x-y", "2")]
    assert headers == Headers([("session", "a"), ("x-y", "1"), ("X-Y", "2")])
    assert headers != Headers([("X-Y", "1"), ("Session", "a"), ("x-y", "2")])


@pytest.mark.parametrize(
    "data",
    [
        b"PLAY rtsp://x/ RTSP/1.0\nCSeq: 5\nSession: s1\n\n",
        b"PLAY rtsp://x/ RTSP/1.0\rCSeq: 5\rSession: s1\r\r",
        b"PLAY rtsp://x/ RTSP/1.0\r\nCSeq: 5\nSession: s1\r\n\n",
        b"PLAY rtsp://x/ RTSP/1.0\rCSeq: 5\r\nSession: s1\r\r\n",
    ],
    ids=["lf", "cr", "mixed-lf", "mixed-cr"],
)
def test_bare_lf_and_cr_line_ends(data: bytes) -> None:
    request = one(data)
    assert isinstance(request, Request)
    assert request.method == "PLAY"
    assert request.cseq == 5
    assert request.headers.items() == [("CSeq", "5"), ("Session", "s1")]


def test_cr_only_terminator_with_body_waits_for_next_byte() -> None:
    conn = ServerConnection()
    head = b"ANNOUNCE x RTSP/1.0\rCSeq: 1\rContent-Length: 2\r\r"
    assert conn.receive_data(head) == []
    (request,) = conn.receive_data(b"\nhi")  # the LF completes the CRLF terminator
    assert isinstance(request, Request)
    assert request.body == b"hi"


def test_truncated_request_waits_for_the_rest() -> None:
    conn = ServerConnection()
    data = render_request("DESCRIBE", "rtsp://x/", 2, [("Accept", "application/sdp")], b"12345")
    for cut in (5, len(data) - 10, len(data) - 1):
        conn = ServerConnection()
        assert conn.receive_data(data[:cut]) == []
        (request,) = conn.receive_data(data[cut:])
        assert isinstance(request, Request)
        assert request.body == b"12345"


def test_trickled_body_parses_the_head_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    parse_head = ServerConnection._parse_head

    def counting(self: ServerConnection, raw: bytes) -> object:
        calls.append(raw)
        return parse_head(self, raw)

    monkeypatch.setattr(ServerConnection, "_parse_head", counting)
    body = bytes(range(256)) * 4
    data = render_request("SET_PARAMETER", "rtsp://x/", 1, [("X", "y" * 4000)], body)
    events = feed(ServerConnection(), *[data[i : i + 1] for i in range(len(data))])
    assert len(calls) == 2  # at "\r\n\r" (bare CR: body start unknown) and at "\r\n\r\n"
    assert [e.body for e in events if isinstance(e, Request)] == [body]


def test_leading_empty_lines_are_skipped() -> None:
    request = one(b"\r\n\r\n\n" + render_request("OPTIONS", "*", 1))
    assert isinstance(request, Request)


def test_folded_header_continues_previous_value() -> None:
    request = one(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\nX-Long: a\r\n  b\r\n\r\n")
    assert isinstance(request, Request)
    assert request.headers.get("x-long") == "a b"


def test_unknown_method_is_a_request_not_an_error() -> None:
    request = one(render_request("FROBNICATE", "rtsp://x/", 9))
    assert isinstance(request, Request)
    assert (request.method, request.cseq) == ("FROBNICATE", 9)


@pytest.mark.parametrize(
    "cseq_lines",
    [[], ["CSeq: abc"], ["CSeq: -1"], ["CSeq: 1.5"], ["CSeq:"], ["CSeq: 1", "CSeq: 2"]],
    ids=repr,
)
def test_bad_cseq_is_a_recoverable_400(cseq_lines: list[str]) -> None:
    head = "\r\n".join(["OPTIONS * RTSP/1.0", *cseq_lines, "Content-Length: 3"])
    conn = ServerConnection()
    events = feed(conn, head.encode() + b"\r\n\r\nabc" + render_request("OPTIONS", "*", 2))
    assert events[0] == ProtocolError(400, "Bad Request (missing or invalid CSeq)", None, False)
    assert isinstance(events[1], Request)  # the body was skipped and framing kept
    assert events[1].cseq == 2


def test_same_cseq_twice_is_accepted() -> None:
    request = one(b"OPTIONS * RTSP/1.0\r\nCSeq: 4\r\ncseq: 4\r\n\r\n")
    assert isinstance(request, Request)
    assert request.cseq == 4


def test_wrong_version_is_505_and_recoverable() -> None:
    conn = ServerConnection()
    bad = b"OPTIONS * RTSP/2.0\r\nCSeq: 3\r\nContent-Length: 2\r\n\r\nxy"
    events = feed(conn, bad + render_request("OPTIONS", "*", 4))
    assert events[0] == ProtocolError(505, "RTSP Version Not Supported", 3, False)
    assert isinstance(events[1], Request)
    assert events[1].cseq == 4
    error = one(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert isinstance(error, ProtocolError)
    assert (error.status, error.fatal) == (505, False)


@pytest.mark.parametrize(
    "line",
    [
        b"OPTIONS",
        b"OPTIONS *",
        b"OPTIONS * RTSP/1.0 extra",
        b"OPTIONS  * RTSP/1.0",
        b"OPTIONS * RTSP",
        b"OPT(IONS * RTSP/1.0",
        b"\x00\x01\x02\xff",
        b"OPTIONS \x00 RTSP/1.0",
        b"RTSP/1.0 200 OK",
    ],
    ids=repr,
)
def test_bad_request_line_is_fatal(line: bytes) -> None:
    conn = ServerConnection()
    events = feed(conn, line + b"\r\nCSeq: 1\r\n\r\n")
    assert len(events) == 1
    assert isinstance(events[0], ProtocolError)
    assert (events[0].status, events[0].fatal) == (400, True)
    assert conn.receive_data(render_request("OPTIONS", "*", 2)) == []


@pytest.mark.parametrize(
    "header",
    [
        b"NoColon",
        b"Bad Name: x",
        b": empty name",
        b"X-Nul: a\x00b",
        b"X-Ctl: \x1b[31m",
        b"X-Utf: \xff\xfe",
    ],
    ids=repr,
)
def test_bad_header_line_is_fatal(header: bytes) -> None:
    event = one(b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n" + header + b"\r\n\r\n")
    assert isinstance(event, ProtocolError)
    assert (event.status, event.fatal) == (400, True)


def test_header_section_too_large_is_fatal_before_the_end_arrives() -> None:
    conn = ServerConnection(max_header_bytes=200)
    start = b"OPTIONS * RTSP/1.0\r\nCSeq: 1\r\n"
    assert conn.receive_data(start + b"X: " + b"a" * 150) == []
    (event,) = conn.receive_data(b"a" * 100)  # no terminator yet, but the limit is passed
    assert event == ProtocolError(400, "Header Section Too Large", None, True)
    assert conn.receive_data(b"\r\n\r\n" + render_request("OPTIONS", "*", 2)) == []


def test_header_section_at_the_limit_is_accepted() -> None:
    data = render_request("OPTIONS", "*", 1, [("X", "a" * 100)])
    head_len = data.index(b"\r\n\r\n")
    for cut in range(len(data)):  # the terminator may arrive in pieces
        events = feed(ServerConnection(max_header_bytes=head_len), data[:cut], data[cut:])
        assert [type(e) for e in events] == [Request], cut
    assert isinstance(one(data, max_header_bytes=head_len - 1), ProtocolError)


def test_endless_garbage_without_newline_is_fatal() -> None:
    conn = ServerConnection(max_header_bytes=1024)
    events = feed(conn, *[b"\x17garbage" * 20] * 10)
    assert events == [ProtocolError(400, "Header Section Too Large", None, True)]


def test_too_many_headers_is_fatal() -> None:
    fields = [(f"X-{i}", "v") for i in range(5)]
    assert isinstance(one(render_request("OPTIONS", "*", 1, fields[:3]), max_headers=4), Request)
    event = one(render_request("OPTIONS", "*", 1, fields), max_headers=4)
    assert event == ProtocolError(400, "Too Many Header Fields", None, True)


@pytest.mark.parametrize(
    ("value", "status"),
    [
        (b"-1", 400),
        (b"abc", 400),
        (b"1e3", 400),
        (b"", 400),
        (b"3\r\nContent-Length: 4", 400),
        (b"99999999999999999999", 400),
        (b"65537", 413),
    ],
    ids=repr,
)
def test_bad_content_length_is_fatal(value: bytes, status: int) -> None:
    conn = ServerConnection()
    events = feed(conn, b"ANNOUNCE x RTSP/1.0\r\nCSeq: 8\r\nContent-Length: " + value + b"\r\n\r\n")
    assert len(events) == 1
    assert isinstance(events[0], ProtocolError)
    assert (events[0].status, events[0].cseq, events[0].fatal) == (status, 8, True)


def test_interleaved_frames_between_requests() -> None:
    rtcp = bytes(range(40))
    data = (
        interleaved(1, rtcp)
        + render_request("GET_PARAMETER", "rtsp://x/", 5, [("Session", "abc")])
        + interleaved(3, b"")
        + interleaved(0, b"$\r\n\r\nOPTIONS * RTSP/1.0\r\n\r\n")
        + render_request("TEARDOWN", "rtsp://x/", 6)
    )
    events = ServerConnection().receive_data(data)
    assert [type(e).__name__ for e in events] == [
        "InterleavedFrame",
        "Request",
        "InterleavedFrame",
        "InterleavedFrame",
        "Request",
    ]
    assert events[0] == InterleavedFrame(1, rtcp)
    assert events[2] == InterleavedFrame(3, b"")
    assert events[3] == InterleavedFrame(0, b"$\r\n\r\nOPTIONS * RTSP/1.0\r\n\r\n")


def test_client_reads_responses_and_rtp() -> None:
    rtp = bytes(1500)
    data = interleaved(0, rtp) + render_response(200, 4, [("Session", "x")]) + interleaved(0, rtp)
    events = ClientConnection().receive_data(data)
    assert events[0] == InterleavedFrame(0, rtp)
    assert isinstance(events[1], Response)
    assert events[1].headers.get("session") == "x"
    assert events[2] == InterleavedFrame(0, rtp)


def test_client_rejects_garbage_status_line() -> None:
    conn = ClientConnection()
    (event,) = conn.receive_data(b"HTTP/1.1 200 OK\r\n\r\n")
    assert isinstance(event, ProtocolError)
    assert event.fatal
    assert conn.receive_data(render_response(200, 1)) == []


# --- property tests ------------------------------------------------------------------------

_methods = st.sampled_from(["OPTIONS", "DESCRIBE", "SETUP", "PLAY", "TEARDOWN", "X-CUSTOM"])
_uris = st.sampled_from(["*", "rtsp://127.0.0.1:8554/cam1", "rtsp://h/s/trackID=0"])
_values = st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=20).map(str.strip)
_names = st.sampled_from(["Session", "Transport", "X-Any", "Range", "User-Agent"])


@st.composite
def _requests(draw: st.DrawFn) -> tuple[bytes, list[Event]]:
    method, uri = draw(_methods), draw(_uris)
    cseq = draw(st.integers(0, 2**32 - 1))
    fields = draw(st.lists(st.tuples(_names, _values), max_size=4))
    body = draw(st.binary(max_size=40))
    eol = draw(st.sampled_from([b"\r\n", b"\n", b"\r"]))
    if eol == b"\r":
        # CR-only framing cannot tell a body's leading LF from the terminator's.
        assume(not body.startswith(b"\n"))
    data = render_request(method, uri, cseq, fields, body)
    head, _, _ = data.partition(b"\r\n\r\n")
    headers = [("CSeq", str(cseq)), *fields]
    if body:
        headers.append(("Content-Length", str(len(body))))
    request = Request(method, uri, "RTSP/1.0", Headers(headers), body)
    return head.replace(b"\r\n", eol) + eol * 2 + body, [request]


_frames = st.builds(
    lambda ch, payload: (interleaved(ch, payload), [InterleavedFrame(ch, payload)]),
    st.integers(0, 255),
    st.binary(max_size=300),
)
_padding: st.SearchStrategy[tuple[bytes, list[Event]]] = st.sampled_from(
    [b"\r\n", b"\n", b"\r\n\r\n"]
).map(lambda b: (b, []))
_bad_cseq = st.just(
    (
        b"OPTIONS * RTSP/1.0\r\nContent-Length: 1\r\n\r\nx",
        [ProtocolError(400, "Bad Request (missing or invalid CSeq)", None, False)],
    )
)
_streams = st.lists(st.one_of(_requests(), _frames, _padding, _bad_cseq), max_size=6)


def _split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    return [data[a:b] for a, b in zip([0, *points], [*points, len(data)], strict=True)]


@settings(max_examples=300)
@given(_streams, st.lists(st.integers(0, 10_000), max_size=12))
def test_any_split_of_a_valid_stream_gives_the_same_events(
    parts: list[tuple[bytes, list[Event]]], cuts: list[int]
) -> None:
    data = b"".join(p for p, _ in parts)
    expected = [e for _, events in parts for e in events]
    assert ServerConnection().receive_data(data) == expected
    assert feed(ServerConnection(), *_split(data, cuts)) == expected


def test_every_single_byte_boundary() -> None:
    data = (
        render_request("SETUP", "rtsp://x/t", 1, [("Transport", "RTP/AVP/TCP")], b"ab")
        + interleaved(1, b"\x80\xc9\x00\x01abcd")
        + b"OPTIONS * RTSP/1.0\rCSeq: 2\r\r"
        + b"PLAY * RTSP/1.0\nCSeq: 3\nContent-Length: 1\n\n\r"
    )
    expected = ServerConnection().receive_data(data)
    assert len(expected) == 4
    for cut in range(len(data) + 1):
        assert feed(ServerConnection(), data[:cut], data[cut:]) == expected, cut
    assert feed(ServerConnection(), *[data[i : i + 1] for i in range(len(data))]) == expected


_garbage = st.one_of(
    st.binary(max_size=200),
    st.lists(
        st.sampled_from(
            [
                b"\r",
                b"\n",
                b"\x00",
                b"$",
                b"$\x00\x00\x02",
                b"OPTIONS * RTSP/1.0",
                b"RTSP/1.0 200 OK",
                b"CSeq: 1",
                b"Content-Length: 3",
                b"Content-Length: -",
                b": ",
                b" ",
                b"\xff",
            ]
        ),
        max_size=40,
    ).map(b"".join),
)


@settings(max_examples=500)
@given(_garbage, st.lists(st.integers(0, 1000), max_size=8), st.booleans())
def test_garbage_never_raises_and_splits_agree(data: bytes, cuts: list[int], client: bool) -> None:
    def make() -> ServerConnection | ClientConnection:
        limits = {"max_header_bytes": 64, "max_headers": 3, "max_body": 16}
        return ClientConnection(**limits) if client else ServerConnection(**limits)

    whole = make().receive_data(data)
    assert feed(make(), *_split(data, cuts)) == whole
    allowed = (Response if client else Request, InterleavedFrame, ProtocolError)
    assert all(isinstance(e, allowed) for e in whole)
    fatal = [i for i, e in enumerate(whole) if isinstance(e, ProtocolError) and e.fatal]
    assert fatal in ([], [len(whole) - 1])  # nothing after a fatal error
