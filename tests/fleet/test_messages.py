"""Message schemas: round trips, validation rules, and garbage that must only ever be rejected."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fleet.messages import (
    HEALTH_KINDS,
    IDENTITY,
    MAX_SAFE_INT,
    MESSAGE_TYPES,
    PROTOCOL_VERSION,
    AgentStatus,
    BaseMessage,
    Box,
    CameraReport,
    CameraSpec,
    CameraStats,
    Capacity,
    CaptureReference,
    ClipChunk,
    ClipManifest,
    Command,
    CommandAck,
    DesiredState,
    Discover,
    DiscoveryReport,
    Event,
    ExtractClip,
    FoundCamera,
    Heartbeat,
    MessageError,
    ModelArtifactDescriptor,
    ModelSummary,
    ReportedState,
    RoiAdjustment,
    RoiSpec,
    StreamStats,
    encode_message,
    parse_message,
)
from fleet.utc import now_us

PROTOCOL_DOC = Path(__file__).parents[2] / "docs" / "protocol.md"

# --- strategies ----------------------------------------------------------------------------------

stamps = st.integers(0, MAX_SAFE_INT)
counts = st.integers(0, MAX_SAFE_INT)
finite = st.floats(allow_nan=False, allow_infinity=False)
non_negative = st.floats(min_value=0, allow_nan=False, allow_infinity=False)
units = st.floats(0, 1)
slugs = st.from_regex(r"[a-z0-9_-]{1,64}", fullmatch=True)
agent_ids = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
model_versions = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", fullmatch=True)
tokens = st.from_regex(r"[a-z0-9][a-z0-9_.:-]{0,63}", fullmatch=True)
texts = st.text(max_size=300)
sha256s = st.binary(min_size=32, max_size=32).map(bytes.hex)
hosts = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,30}", fullmatch=True)
paths = st.from_regex(r"(/[A-Za-z0-9_.~-]{0,12}){0,3}", fullmatch=True)
conn_states = st.sampled_from(["connecting", "streaming", "backoff"])


def urls(*schemes: str) -> st.SearchStrategy[str]:
    userinfo = st.one_of(
        st.just(""), st.from_regex(r"[a-z]{1,8}:[A-Za-z0-9]{1,12}@", fullmatch=True)
    )
    port = st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}"))
    return st.builds(
        lambda s, u, h, p, path: f"{s}://{u}{h}{p}{path}",
        st.sampled_from(schemes),
        userinfo,
        hosts,
        port,
        paths,
    )


@st.composite
def boxes(draw: st.DrawFn) -> Box:
    frame_w, frame_h = draw(st.integers(1, 65535)), draw(st.integers(1, 65535))
    x, y = draw(st.integers(0, frame_w - 1)), draw(st.integers(0, frame_h - 1))
    w, h = draw(st.integers(1, frame_w - x)), draw(st.integers(1, frame_h - y))
    return Box(x=x, y=y, w=w, h=h, frame_w=frame_w, frame_h=frame_h)


def ordered_stamps(n: int) -> st.SearchStrategy[list[int]]:
    return st.lists(stamps, min_size=n, max_size=n).map(sorted)


adjustments = st.builds(
    RoiAdjustment,
    dx=finite,
    dy=finite,
    angle_deg=st.floats(-180, 180),
    scale=st.floats(min_value=1e-6, max_value=1e6),
)


def unique_by(attr: str, elements: st.SearchStrategy[Any], max_size: int) -> Any:
    return st.lists(elements, max_size=max_size, unique_by=lambda e: getattr(e, attr))


agent_statuses = st.builds(
    AgentStatus,
    agent_id=agent_ids,
    state=st.sampled_from(["online", "offline"]),
    session=counts,
    software_version=st.from_regex(r"[!-~]{1,64}", fullmatch=True),
    capabilities=st.lists(tokens, max_size=5),
    subnets=st.lists(st.ip_addresses(v=4).map(lambda a: f"{a}/24"), max_size=3),
    ts=stamps,
)

stream_stats = st.builds(
    StreamStats,
    stream=st.sampled_from(["main", "sub"]),
    state=conn_states,
    reason=st.none() | texts,
    fps_in=non_negative,
    frames_stamped=counts,
    drift_ms=st.none() | finite,
)
camera_stats = st.builds(
    CameraStats,
    camera=slugs,
    streams=unique_by("stream", stream_stats, 2),
    frames_analysed=counts,
    frames_skipped=counts,
    inference_ms_p50=st.none() | non_negative,
    inference_ms_p99=st.none() | non_negative,
)
heartbeats = st.builds(
    Heartbeat,
    ts=stamps,
    interval_s=st.floats(min_value=0.001, max_value=3600),
    cameras=unique_by("camera", camera_stats, 3),
    disk_used_bytes=counts,
    disk_free_bytes=counts,
    clock_synced=st.booleans(),
    clock_offset_ms=st.none() | finite,
    capacity=st.builds(Capacity, max_cameras=counts, load=units),
)


@st.composite
def events(draw: st.DrawFn) -> Event:
    start, peak, end = draw(ordered_stamps(3))
    return Event(
        id=draw(st.uuids()),
        camera=draw(slugs),
        roi_id=draw(st.none() | slugs),
        kind=draw(st.sampled_from(["anomaly", "camera_moved", "view_lost", *sorted(HEALTH_KINDS)])),
        start_us=start,
        end_us=end,
        peak_us=peak,
        peak_score=draw(finite),
        box=draw(st.none() | boxes()),
        model_version=draw(st.none() | model_versions),
        adjustment=draw(adjustments),
        clip_id=draw(st.none() | st.uuids()),
        detail=draw(st.none() | texts),
    )


roi_specs = st.builds(
    RoiSpec,
    id=slugs,
    polygon=st.lists(st.tuples(units, units), min_size=3, max_size=8),
    sensitivity=units,
)
camera_specs = st.builds(
    CameraSpec,
    name=slugs,
    main_url=urls("rtsp", "rtsps"),
    sub_url=st.none() | urls("rtsp"),
    profile=slugs,
    rois=unique_by("id", roi_specs, 3),
    inspection=st.booleans(),
    detect_fps=st.floats(min_value=0.01, max_value=120),
)
desired_states = st.builds(
    DesiredState,
    version=counts,
    cameras=unique_by("name", camera_specs, 3),
    model_version=st.none() | model_versions,
)
reported_states = st.builds(
    ReportedState,
    ts=stamps,
    desired_version=st.none() | counts,
    cameras=unique_by(
        "name",
        st.builds(
            CameraReport,
            name=slugs,
            state=conn_states,
            reason=st.none() | texts,
            inspection=st.booleans(),
            adjustment=st.none() | adjustments,
        ),
        3,
    ),
    model_version=st.none() | model_versions,
    error=st.none() | texts,
)


@st.composite
def extract_clips(draw: st.DrawFn) -> ExtractClip:
    start, end = draw(ordered_stamps(2))
    return ExtractClip(
        camera=draw(slugs), from_us=start, to_us=end, event_id=draw(st.none() | st.uuids())
    )


commands = st.builds(
    Command,
    id=st.uuids(),
    ts=stamps,
    action=extract_clips()
    | st.builds(CaptureReference, camera=slugs)
    | st.builds(Discover, timeout_s=st.floats(min_value=0.01, max_value=30)),
)
command_acks = st.one_of(
    st.builds(CommandAck, command_id=st.uuids(), ts=stamps, ok=st.just(True), clip_id=st.uuids()),
    st.builds(CommandAck, command_id=st.uuids(), ts=stamps, ok=st.just(False), error=texts),
)


@st.composite
def clip_manifests(draw: st.DrawFn) -> ClipManifest:
    start, end = draw(ordered_stamps(2))
    size, chunk_size = draw(counts), draw(st.integers(1, 4 * 1024 * 1024))
    return ClipManifest(
        clip_id=draw(st.uuids()),
        event_id=draw(st.none() | st.uuids()),
        camera=draw(slugs),
        from_us=start,
        to_us=end,
        sha256=draw(sha256s),
        size=size,
        chunk_size=chunk_size,
        chunk_count=-(-size // chunk_size),
        content_type=draw(st.sampled_from(["video/mp4", "video/mp2t"])),
    )


clip_chunks = st.builds(ClipChunk.of, st.uuids(), counts, st.binary(max_size=2000))
model_artifacts = st.builds(
    ModelArtifactDescriptor,
    model_version=model_versions,
    sha256=sha256s,
    size=counts,
    url=urls("http", "https"),
    signature=st.binary(min_size=64, max_size=64),
    summary=st.builds(
        ModelSummary,
        input_shape=st.lists(st.integers(1, 65536), max_size=4),
        camera=st.none() | slugs,
        rois=st.lists(slugs, max_size=3),
    ),
)

found_cameras = st.builds(
    FoundCamera,
    endpoint=st.uuids().map(lambda u: f"urn:uuid:{u}"),
    address=st.ip_addresses(v=4).map(str),
    xaddrs=st.lists(urls("http", "https"), max_size=2),
    scopes=st.lists(st.from_regex(r"[!-~]{1,40}", fullmatch=True), max_size=3),
    manufacturer=st.none() | texts,
    model=st.none() | texts,
    suggested_profile=st.none() | slugs,
    main_url=st.none() | urls("rtsp"),
    sub_url=st.none() | urls("rtsp"),
)
discovery_reports = st.builds(
    DiscoveryReport,
    ts=stamps,
    subnets=st.lists(st.ip_addresses(v=4).map(lambda a: f"{a}/32"), max_size=3),
    cameras=st.lists(found_cameras, max_size=3),
)

STRATEGIES: dict[type[BaseMessage], st.SearchStrategy[Any]] = {
    AgentStatus: agent_statuses,
    Heartbeat: heartbeats,
    Event: events(),
    DesiredState: desired_states,
    ReportedState: reported_states,
    Command: commands,
    CommandAck: command_acks,
    ClipManifest: clip_manifests(),
    ClipChunk: clip_chunks,
    ModelArtifactDescriptor: model_artifacts,
    DiscoveryReport: discovery_reports,
}
any_message = st.one_of(*STRATEGIES.values())

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def parse_or_none(payload: bytes | str) -> BaseMessage | None:
    """The parsed message or None for a MessageError; any other exception fails the test."""
    try:
        msg = parse_message(payload)
    except MessageError as exc:
        assert str(exc)
        return None
    # Whatever is accepted must be sendable again unchanged.
    assert parse_message(encode_message(msg)) == msg
    return msg


# One readable message of each type; docs/protocol.md shows these.
_CLIP, _EVENT, _COMMAND = (UUID(f"{n}" * 8 + "-0000-4000-8000-" + "0" * 12) for n in (1, 2, 3))
_T0 = 1_718_000_000_000_000
EXAMPLES: list[BaseMessage] = [
    AgentStatus(
        agent_id="edge-01",
        state="online",
        session=42,
        software_version="0.1.0",
        capabilities=["h264", "tflite"],
        ts=_T0,
    ),
    Heartbeat(
        ts=_T0,
        interval_s=10,
        cameras=[
            CameraStats(
                camera="gate",
                streams=[
                    StreamStats(stream="main", state="streaming", fps_in=15, frames_stamped=9000),
                    StreamStats(
                        stream="sub",
                        state="backoff",
                        reason="connection refused",
                        fps_in=0,
                        frames_stamped=1200,
                    ),
                ],
                frames_analysed=3000,
                frames_skipped=12,
                inference_ms_p50=3.1,
                inference_ms_p99=7.9,
            )
        ],
        disk_used_bytes=52_000_000_000,
        disk_free_bytes=200_000_000_000,
        clock_synced=True,
        clock_offset_ms=0.4,
        capacity=Capacity(max_cameras=16, load=0.35),
    ),
    Event(
        id=_EVENT,
        camera="gate",
        roi_id="driveway",
        kind="anomaly",
        start_us=_T0,
        end_us=_T0 + 4_000_000,
        peak_us=_T0 + 1_500_000,
        peak_score=0.93,
        box=Box(x=412, y=188, w=96, h=140, frame_w=1920, frame_h=1080),
        model_version="padim-2024-06-10",
        adjustment=RoiAdjustment(dx=3.5, dy=-1.25, angle_deg=0.2, scale=1.0),
        clip_id=_CLIP,
    ),
    DesiredState(
        version=7,
        cameras=[
            CameraSpec(
                name="gate",
                main_url="rtsp://viewer:secret@10.0.0.21:554/Streaming/Channels/101",
                sub_url="rtsp://viewer:secret@10.0.0.21:554/Streaming/Channels/102",
                profile="hikvision",
                rois=[
                    RoiSpec(
                        id="driveway",
                        polygon=[(0.1, 0.5), (0.6, 0.5), (0.6, 0.95), (0.1, 0.95)],
                        sensitivity=0.7,
                    )
                ],
                detect_fps=5,
            )
        ],
        model_version="padim-2024-06-10",
    ),
    ReportedState(
        ts=_T0,
        desired_version=7,
        cameras=[
            CameraReport(name="gate", state="streaming", inspection=True, adjustment=IDENTITY)
        ],
        model_version="padim-2024-06-10",
    ),
    Command(
        id=_COMMAND,
        ts=_T0,
        action=ExtractClip(
            camera="gate", from_us=_T0 - 5_000_000, to_us=_T0 + 5_000_000, event_id=_EVENT
        ),
    ),
    CommandAck(command_id=_COMMAND, ts=_T0 + 800_000, ok=True, clip_id=_CLIP),
    ClipManifest(
        clip_id=_CLIP,
        event_id=_EVENT,
        camera="gate",
        from_us=_T0 - 5_000_000,
        to_us=_T0 + 5_000_000,
        sha256="9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
        size=5_242_880,
        chunk_size=262_144,
        chunk_count=20,
        content_type="video/mp4",
    ),
    ClipChunk.of(_CLIP, 0, b"\x00\x00\x00\x18ftypmp42"),
    ModelArtifactDescriptor(
        model_version="padim-2024-06-10",
        sha256="2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae",
        size=3_145_728,
        url="https://controller.example:8080/api/models/padim-2024-06-10/artifact",
        signature=bytes(range(64)),
        summary=ModelSummary(input_shape=[1, 224, 224, 3], camera="gate", rois=["driveway"]),
    ),
    DiscoveryReport(
        ts=_T0,
        subnets=["10.0.0.0/24"],
        cameras=[
            FoundCamera(
                endpoint="urn:uuid:6f1c2a8e-0d4b-4c1e-9a55-2b7f0e3d9c10",
                address="10.0.0.21",
                xaddrs=["http://10.0.0.21/onvif/device_service"],
                scopes=["onvif://www.onvif.org/name/HIKVISION"],
                manufacturer="HIKVISION",
                model="DS-2CD2143G2-I",
                suggested_profile="hikvision",
                main_url="rtsp://10.0.0.21:554/Streaming/Channels/101",
                sub_url="rtsp://10.0.0.21:554/Streaming/Channels/102",
            )
        ],
    ),
]


def sample(cls: type[BaseMessage]) -> dict[str, Any]:
    """The example message of `cls` as decoded JSON."""
    (example,) = (msg for msg in EXAMPLES if isinstance(msg, cls))
    obj: dict[str, Any] = json.loads(encode_message(example))
    return obj


# --- round trips ---------------------------------------------------------------------------------


def test_every_message_type_has_a_strategy() -> None:
    assert set(STRATEGIES) == set(MESSAGE_TYPES.values())


@pytest.mark.parametrize("cls", list(STRATEGIES), ids=lambda c: c.__name__)
def test_round_trip(cls: type[BaseMessage]) -> None:
    @settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
    @given(STRATEGIES[cls])
    def check(msg: BaseMessage) -> None:
        payload = encode_message(msg)
        assert parse_message(payload) == msg
        assert parse_message(payload, cls) == msg
        assert parse_message(payload.decode("utf-8")) == msg
        envelope = json.loads(payload)
        assert envelope["v"] == PROTOCOL_VERSION
        assert MESSAGE_TYPES[envelope["type"]] is cls

    check()


def test_encoding_is_compact_utf8() -> None:
    msg = CommandAck(command_id=uuid4(), ts=1, ok=False, error="caméra perdue")
    payload = encode_message(msg)
    assert "caméra".encode() in payload
    assert b": " not in payload and b", " not in payload


# --- garbage only ever yields MessageError -------------------------------------------------------


@given(st.binary(max_size=500))
def test_arbitrary_bytes(payload: bytes) -> None:
    parse_or_none(payload)


@given(json_values)
def test_arbitrary_json(value: object) -> None:
    assert parse_or_none(json.dumps(value)) is None


@given(st.sampled_from(list(MESSAGE_TYPES)), st.dictionaries(st.text(), json_values, max_size=6))
def test_right_envelope_with_junk_fields(tag: str, fields: dict[str, Any]) -> None:
    assert parse_or_none(json.dumps({**fields, "v": 1, "type": tag})) is None


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every location inside a decoded JSON document."""
    if isinstance(value, dict):
        children = list(value.items())
    elif isinstance(value, list):
        children = list(enumerate(value))
    else:
        return []
    found = []
    for key, child in children:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for key in path[:-1]:
        doc = doc[key]
    return doc


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(any_message, st.data())
def test_mutated_field(msg: BaseMessage, data: st.DataObject) -> None:
    doc = json.loads(encode_message(msg))
    path = data.draw(st.sampled_from(_paths(doc)))
    _parent(doc, path)[path[-1]] = data.draw(json_values)
    parse_or_none(json.dumps(doc))


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(any_message, st.data())
def test_removed_field(msg: BaseMessage, data: st.DataObject) -> None:
    doc = json.loads(encode_message(msg))
    path = data.draw(st.sampled_from([p for p in _paths(doc) if isinstance(p[-1], str)]))
    del _parent(doc, path)[path[-1]]
    parsed = parse_or_none(json.dumps(doc))
    if path in (("v",), ("type",)):
        assert parsed is None


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(any_message, st.data(), st.text(min_size=1), json_values)
def test_added_field_is_rejected(
    msg: BaseMessage, data: st.DataObject, key: str, value: object
) -> None:
    doc = json.loads(encode_message(msg))
    objects = [()] + [p for p in _paths(doc) if isinstance(_parent(doc, (*p, None)), dict)]
    where = data.draw(st.sampled_from(objects))
    target = _parent(doc, (*where, None))
    if key in target:
        return
    target[key] = value
    with pytest.raises(MessageError, match="Extra inputs are not permitted"):
        parse_message(json.dumps(doc))


NASTY = [
    b"",
    b"\x00",
    b"\xff\xfe{\x00}\x00",
    "\ufeff{}".encode(),
    b"[" * 100_000,
    b'{"a":' * 10_000,
    b"1" * 10_000,
    b"1e999",
    b"-0",
    b"NaN",
    b'"\\ud800"',
    json.dumps({"type": "event", "v": 1, "x": [[[[[[[[]]]]]]]]}).encode(),
    json.dumps({"type": "x" * 100_000, "v": 1}).encode(),
    json.dumps({"type": ["event"], "v": 1}).encode(),
    json.dumps({"type": "event", "v": 10**400}).encode(),
    b'{"type":"heartbeat","v":1,"ts":' + b"9" * 5000 + b"}",
    b'{"type":"heartbeat","v":1,"ts":1e400}',
    b'{"type":"event","v":1,"peak_score":NaN}',
    b'{"type":"event","v":1,"camera":"\\ud800"}',
    json.dumps({"type": "clip_chunk", "v": 1, "data": "!!!!"}).encode(),
    '{"type": "agent_status", "v": 1, "agent_id": "\ud800"}',
    "{}".encode("utf-16"),
]


@pytest.mark.parametrize("payload", NASTY, ids=range(len(NASTY)))
def test_nasty_payloads_are_rejected(payload: bytes | str) -> None:
    with pytest.raises(MessageError):
        parse_message(payload)


def test_non_bytes_payload_is_rejected() -> None:
    with pytest.raises(MessageError, match="bytes or str"):
        parse_message(12)  # type: ignore[call-overload]


# --- error messages say what is wrong ------------------------------------------------------------


def _with(cls: type[BaseMessage], **changes: Any) -> bytes:
    doc = sample(cls)
    doc.update(changes)
    return json.dumps(doc).encode()


@pytest.mark.parametrize(
    ("payload", "expected", "says"),
    [
        (b"{not json", None, "bad JSON"),
        (b"[1, 2]", None, "expected a JSON object, got list"),
        (b'{"v": 1}', None, "missing field 'type'"),
        (b'{"v": 1, "type": "gossip"}', None, "unknown message type 'gossip'"),
        (_with(Event, v=2), None, "event: unsupported protocol version 2"),
        (b'{"type": "event"}', None, "event: missing field 'v'"),
        (_with(Event, camera="Front Door"), None, "invalid event message: camera: String"),
        (_with(Event, camera="Front Door"), Event, "invalid event message: camera: String"),
        (_with(Event), Heartbeat, "expected a heartbeat message, got event"),
        (_with(Heartbeat, ts="5"), None, "ts: Input should be a valid integer"),
        (_with(Heartbeat, ts=5.0), None, "ts: Input should be a valid integer"),
        (_with(Heartbeat, clock_synced=1), None, "clock_synced: Input should be a valid boolean"),
        (_with(Heartbeat, ts=MAX_SAFE_INT + 1), None, "ts: Input should be less than or equal"),
        (_with(Heartbeat, ts=-1), None, "ts: Input should be greater than or equal to 0"),
        (
            _with(Heartbeat, capacity={"max_cameras": 1, "load": 2}),
            None,
            "capacity.load: Input should be less than or equal to 1",
        ),
        (_with(Event, start_us=10, peak_us=5, end_us=20), None, "start_us <= peak_us <= end_us"),
        (_with(ClipChunk, sha256="0" * 64), None, "sha256 does not match data"),
    ],
)
def test_error_says_what_is_wrong(
    payload: bytes, expected: type[BaseMessage] | None, says: str
) -> None:
    with pytest.raises(MessageError, match=re.escape(says)):
        parse_message(payload, expected)


@pytest.mark.parametrize("cls", list(STRATEGIES), ids=lambda c: c.__name__)
@pytest.mark.parametrize(
    ("envelope", "says"),
    [
        ({"v": None}, "missing field 'v'"),
        ({"type": None}, "missing field 'type'"),
        ({"v": True}, "unsupported protocol version True"),
        ({"v": 1.0}, "unsupported protocol version 1.0"),
        ({"v": "1"}, "unsupported protocol version '1'"),
    ],
)
def test_envelope_must_be_stated_exactly(
    cls: type[BaseMessage], envelope: dict[str, Any], says: str
) -> None:
    doc = sample(cls) | envelope
    payload = json.dumps({k: v for k, v in doc.items() if v is not None})
    for expected in (None, cls):
        with pytest.raises(MessageError, match=re.escape(says)):
            parse_message(payload, expected)


def test_error_lists_a_few_problems_and_counts_the_rest() -> None:
    doc = {"v": 1, "type": "heartbeat"}
    with pytest.raises(MessageError, match=r"; and \d+ more$"):
        parse_message(json.dumps(doc))


def test_error_never_echoes_camera_credentials() -> None:
    doc = sample(DesiredState)
    doc["cameras"] = [{"name": "c", "main_url": "http://admin:hunter2@cam", "detect_fps": 5}]
    with pytest.raises(MessageError, match=r"cameras\[0\].main_url: Value error") as caught:
        parse_message(json.dumps(doc))
    assert "hunter2" not in str(caught.value)


# --- rules inside messages -----------------------------------------------------------------------


def _camera(name: str, url: str = "rtsp://cam/1", **kw: Any) -> CameraSpec:
    return CameraSpec(name=name, main_url=url, detect_fps=5, **kw)


def test_camera_urls_stay_out_of_repr() -> None:
    assert "hunter2" not in repr(_camera("c", "rtsp://admin:hunter2@cam/1"))


@pytest.mark.parametrize(
    "url",
    [
        "http://cam/1",
        "rtsp://",
        "rtsp://:554/x",
        "rtsp://cam:99999/",
        "rtsp://cam/a b",
        "rtsp://[::1",
    ],
)
def test_bad_camera_urls_are_rejected(url: str) -> None:
    with pytest.raises(ValueError, match="main_url"):
        _camera("c", url)


def test_desired_state_rejects_duplicates() -> None:
    with pytest.raises(ValueError, match="duplicate camera 'a'"):
        DesiredState(version=1, cameras=[_camera("a"), _camera("a", "rtsp://other/1")])
    roi = RoiSpec(id="door", polygon=[(0, 0), (1, 0), (1, 1)])
    with pytest.raises(ValueError, match="duplicate ROI id 'door'"):
        _camera("a", rois=[roi, roi])


def test_box_must_lie_inside_the_frame() -> None:
    Box(x=630, y=350, w=10, h=10, frame_w=640, frame_h=360)
    with pytest.raises(ValueError, match="beyond the frame"):
        Box(x=631, y=0, w=10, h=10, frame_w=640, frame_h=360)


@pytest.mark.parametrize(("ok", "error"), [(True, "boom"), (False, None)])
def test_ack_error_exactly_when_failed(ok: bool, error: str | None) -> None:
    with pytest.raises(ValueError, match="error must be given exactly when ok is false"):
        CommandAck(command_id=uuid4(), ts=1, ok=ok, error=error)


def test_manifest_chunk_count_must_match() -> None:
    args: dict[str, Any] = dict(
        clip_id=uuid4(), camera="c", from_us=1, to_us=2, sha256="0" * 64, content_type="video/mp4"
    )
    assert ClipManifest(**args, size=10, chunk_size=4, chunk_count=3).chunk_count == 3
    assert ClipManifest(**args, size=0, chunk_size=4, chunk_count=0).chunk_count == 0
    with pytest.raises(ValueError, match="chunk_count"):
        ClipManifest(**args, size=8, chunk_size=4, chunk_count=3)


def test_signature_must_be_64_bytes() -> None:
    doc = sample(ModelArtifactDescriptor)
    doc["signature"] = "AAAA"
    with pytest.raises(MessageError, match="signature"):
        parse_message(json.dumps(doc))


def test_free_text_with_lone_surrogates_can_still_be_sent() -> None:
    # As str(OSError) gives for an undecodable file name.
    ack = CommandAck(command_id=uuid4(), ts=1, ok=False, error="no such file: \udcff.mp4")
    assert parse_message(encode_message(ack), CommandAck).error == "no such file: ?.mp4"


def test_command_actions_are_typed() -> None:
    cmd = Command(id=uuid4(), ts=1, action=ExtractClip(camera="c", from_us=1, to_us=2))
    parsed = parse_message(encode_message(cmd), Command)
    assert isinstance(parsed.action, ExtractClip)
    doc = json.loads(encode_message(cmd))
    doc["action"]["name"] = "reboot"
    with pytest.raises(MessageError, match="action"):
        parse_message(json.dumps(doc))


# --- presence ------------------------------------------------------------------------------------


def _status(state: str, session: int) -> AgentStatus:
    return AgentStatus(
        agent_id="a1", state=state, session=session, software_version="0.1.0", ts=now_us()
    )


@pytest.mark.parametrize(
    ("new", "current", "wins"),
    [
        (("online", 1), None, True),
        (("offline", 1), ("online", 1), True),  # the will of the live session
        (("offline", 1), ("online", 2), False),  # a late will of an older session
        (("online", 1), ("offline", 1), False),  # a duplicate of an ended session
        (("online", 1), ("online", 1), False),
        (("online", 2), ("offline", 1), True),
        (("online", 1), ("online", 2), False),
    ],
)
def test_presence_session_rule(
    new: tuple[str, int], current: tuple[str, int] | None, wins: bool
) -> None:
    assert _status(*new).supersedes(_status(*current) if current else None) is wins


def test_identity_adjustment() -> None:
    assert RoiAdjustment(dx=0, dy=0, angle_deg=0, scale=1) == IDENTITY


# --- the protocol document -----------------------------------------------------------------------


def test_protocol_doc_examples_are_valid_and_cover_every_type() -> None:
    blocks = re.findall(r"```json\n(.*?)\n```", PROTOCOL_DOC.read_text(), re.DOTALL)
    parsed = [parse_message(block) for block in blocks]
    assert {type(msg) for msg in parsed} == set(MESSAGE_TYPES.values())
