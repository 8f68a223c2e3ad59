"""Every message that crosses MQTT, as versioned pydantic models, and their one wire encoding.

Each message is a JSON object with `v` (protocol version) and `type` (which message). Models
forbid unknown fields, so a typo or a newer peer's field is an error rather than silently lost.
On the wire validation is strict (no "5" for 5, no 1.0 for an int); in Python, constructing a
model is lax as usual. All integers stay within JavaScript's safe range so the web client reads
them exactly; times are UTC microseconds since the epoch (`StampUs`).
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import math
import reprlib
from collections.abc import Iterable
from typing import Annotated, Final, Literal, Self, TypeVar, get_args, overload
from urllib.parse import urlsplit
from uuid import UUID

import pydantic_core
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    StringConstraints,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    model_validator,
)

from fleet.profiles import StreamKind

PROTOCOL_VERSION: Final = 1
MAX_SAFE_INT: Final = 2**53 - 1
MAX_CHUNK_BYTES: Final = 4 * 1024 * 1024


class MessageError(ValueError):
    """A payload is not a valid message; the text says what is wrong."""


# --- shared field types ------------------------------------------------------------------------


def printable_ascii(max_length: int) -> StringConstraints:
    """1 to `max_length` visible ASCII characters: no spaces, controls or look-alikes."""
    return StringConstraints(pattern=rf"^[!-~]{{1,{max_length}}}$")


def url_validator(*schemes: str, credentials: bool = True) -> AfterValidator:
    """Checks a URL's scheme, host and port, and that it has no user:password unless allowed."""

    # Messages name the part at fault but never echo the URL: it may hold a password.
    def check(url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in schemes:
            raise ValueError(f"URL scheme must be one of {', '.join(schemes)}")
        if not parts.hostname:
            raise ValueError("URL has no host")
        _ = parts.port  # raises ValueError for a malformed port
        if not credentials and (parts.username or parts.password):
            raise ValueError("URL must not contain credentials")
        return url

    return AfterValidator(check)


def _replace_lone_surrogates(value: object) -> object:
    # Free text often comes from str(exception), which can carry undecodable file names as lone
    # surrogates; those cannot be encoded as UTF-8, so replace them rather than fail to send.
    return value.encode("utf-8", "replace").decode("utf-8") if isinstance(value, str) else value


def _b64decode(value: object) -> object:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except ValueError as exc:
            raise ValueError(f"invalid base64: {exc}") from None
    return value


StampUs = Annotated[int, Field(ge=0, le=MAX_SAFE_INT)]
Count = Annotated[int, Field(ge=0, le=MAX_SAFE_INT)]
NonNegative = Annotated[float, Field(ge=0)]
Unit = Annotated[float, Field(ge=0, le=1)]
Pixels = Annotated[int, Field(ge=0, le=65535)]
Slug = Annotated[str, StringConstraints(pattern=r"^[a-z0-9_-]{1,64}$")]
CameraName = Slug
RoiId = Slug
AGENT_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
AgentId = Annotated[str, StringConstraints(pattern=AGENT_ID_PATTERN)]
ModelVersion = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
Token = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_.:-]{0,63}$")]
Sha256Hex = Annotated[str, StringConstraints(pattern=r"^[0-9a-f]{64}$")]
Text = Annotated[str, StringConstraints(max_length=2000), BeforeValidator(_replace_lone_surrogates)]
RtspUrl = Annotated[str, printable_ascii(2048), url_validator("rtsp", "rtsps")]
HttpUrl = Annotated[str, printable_ascii(2048), url_validator("http", "https")]
B64Bytes = Annotated[
    bytes,
    BeforeValidator(_b64decode),
    PlainSerializer(lambda b: base64.b64encode(b).decode("ascii"), return_type=str),
]

ConnectionState = Literal["connecting", "streaming", "backoff"]


def _ip_network(value: str) -> str:
    return str(ipaddress.ip_network(value, strict=False))


Subnet = Annotated[str, printable_ascii(64), AfterValidator(_ip_network)]


def _unique(values: Iterable[str], what: str) -> None:
    seen: set[str] = set()
    for value in values:
        if value in seen:
            raise ValueError(f"duplicate {what} {value!r}")
        seen.add(value)


class _Model(BaseModel):
    # hide_input_in_errors: inputs can hold camera passwords and would show in error texts.
    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, hide_input_in_errors=True
    )


_FROM_WIRE: Final = {"from_wire": True}


class BaseMessage(_Model):
    """Fields every message has; subclasses add `type`."""

    # Not Literal[1]: a literal would also accept `true` and `1.0`.
    v: Annotated[int, Field(strict=True, ge=PROTOCOL_VERSION, le=PROTOCOL_VERSION)] = 1

    @model_validator(mode="after")
    def _envelope_on_the_wire(self, info: ValidationInfo) -> Self:
        # `v` and `type` default for code that builds messages, but a payload must state them.
        # (A "before" validator would see the fields directly but turn JSON-mode validation
        # into Python-mode validation for everything inside.)
        if info.context is _FROM_WIRE:
            missing = [key for key in ("v", "type") if key not in self.model_fields_set]
            if missing:
                raise ValueError(f"missing field {missing[0]!r}")
        return self


# --- small shared parts ------------------------------------------------------------------------


class Box(_Model):
    """A rectangle in pixels of a frame of the given size."""

    x: Pixels
    y: Pixels
    w: Annotated[int, Field(ge=1, le=65535)]
    h: Annotated[int, Field(ge=1, le=65535)]
    frame_w: Annotated[int, Field(ge=1, le=65535)]
    frame_h: Annotated[int, Field(ge=1, le=65535)]

    @model_validator(mode="after")
    def _inside_frame(self) -> Self:
        if self.x + self.w > self.frame_w or self.y + self.h > self.frame_h:
            raise ValueError("box extends beyond the frame")
        return self


class RoiAdjustment(_Model):
    """Similarity about the frame centre moving the drawn ROIs onto the current view: dx, dy in
    pixels of the main stream, angle in degrees (clockwise on screen), scale."""

    dx: float
    dy: float
    angle_deg: Annotated[float, Field(ge=-180, le=180)]
    scale: Annotated[float, Field(gt=0)]


IDENTITY: Final = RoiAdjustment(dx=0.0, dy=0.0, angle_deg=0.0, scale=1.0)


# --- presence and health -----------------------------------------------------------------------


class AgentStatus(BaseMessage):
    """Retained presence; the last will is the same message with state "offline".

    `session` increases on every connection of the agent (it persists the counter), and the
    online message and the will of one connection carry the same value.
    """

    type: Literal["agent_status"] = "agent_status"
    agent_id: AgentId
    state: Literal["online", "offline"]
    session: Count
    software_version: Annotated[str, printable_ascii(64)]
    capabilities: Annotated[list[Token], Field(max_length=64)] = []
    # Networks the agent reaches cameras on: automatic assignment and discovery use them.
    subnets: Annotated[list[Subnet], Field(max_length=64)] = []
    # Where the agent serves recordings, clips and snapshots; the controller proxies to it.
    http_url: HttpUrl | None = None
    ts: StampUs

    def supersedes(self, current: AgentStatus | None) -> bool:
        """Whether this status replaces `current`: a newer session, or the end of the same one.

        So a will that arrives after the agent reconnected (older session) changes nothing.
        """
        if current is None:
            return True
        if self.session != current.session:
            return self.session > current.session
        return self.state == "offline" and current.state == "online"


class StreamStats(_Model):
    stream: StreamKind
    state: ConnectionState
    reason: Text | None = None
    fps_in: NonNegative
    frames_stamped: Count
    drift_ms: float | None = None  # camera clock (PTS) against the agent's clock


class CameraStats(_Model):
    """Counters are cumulative since the agent started, so a lost heartbeat loses nothing."""

    camera: CameraName
    streams: Annotated[list[StreamStats], Field(max_length=2)]
    frames_analysed: Count
    frames_skipped: Count
    inference_ms_p50: NonNegative | None = None
    inference_ms_p99: NonNegative | None = None
    model_version: ModelVersion | None = None  # the model scoring it now (None: none)

    @model_validator(mode="after")
    def _one_entry_per_stream(self) -> Self:
        _unique((s.stream for s in self.streams), "stream")
        return self


class Capacity(_Model):
    max_cameras: Count
    load: Unit  # share of the agent's processing budget in use


class Heartbeat(BaseMessage):
    """Periodic stats; the controller marks the agent stale after a few missed intervals."""

    type: Literal["heartbeat"] = "heartbeat"
    ts: StampUs
    interval_s: Annotated[float, Field(gt=0, le=3600)]
    cameras: Annotated[list[CameraStats], Field(max_length=1024)]
    disk_used_bytes: Count
    disk_free_bytes: Count
    clock_synced: bool
    clock_offset_ms: float | None = None
    capacity: Capacity

    @model_validator(mode="after")
    def _one_entry_per_camera(self) -> Self:
        _unique((c.camera for c in self.cameras), "camera")
        return self


# --- events ------------------------------------------------------------------------------------


# What the detector saw (anomaly, camera_moved, view_lost) and what happened to the camera
# itself: a dead camera must alarm like an anomaly does.
DetectionKind = Literal["anomaly", "camera_moved", "view_lost"]
HealthKind = Literal["camera_offline", "camera_online", "camera_degraded", "recording_gap"]
EventKind = Literal[DetectionKind, HealthKind]
HEALTH_KINDS: Final[frozenset[str]] = frozenset(get_args(HealthKind))
MAX_EVENT_SCORES: Final = 1200  # 4 min at 5 fps: a score plot, not an archive


class Event(BaseMessage):
    """Something that happened on a camera. Sent at least once; stored idempotently by `id`."""

    type: Literal["event"] = "event"
    id: UUID
    camera: CameraName
    roi_id: RoiId | None = None  # None for camera-wide events (camera_moved, health events)
    kind: EventKind
    start_us: StampUs
    end_us: StampUs
    peak_us: StampUs
    peak_score: float = 0.0  # 0 for health events
    detail: Text | None = None  # e.g. why the camera went offline
    box: Box | None = None
    model_version: ModelVersion | None = None
    adjustment: RoiAdjustment
    clip_id: UUID | None = None
    # Still going on: a later message with the same id carries its end (and clears this).
    open: bool = False
    threshold: float | None = None  # the ROI's score threshold when it was scored
    # The ROI's score over the event with some lead-in, as (frame stamp, score), in time order.
    scores: Annotated[list[tuple[StampUs, float]], Field(max_length=MAX_EVENT_SCORES)] = []

    @model_validator(mode="after")
    def _ordered_stamps(self) -> Self:
        if not self.start_us <= self.peak_us <= self.end_us:
            raise ValueError("stamps must satisfy start_us <= peak_us <= end_us")
        if any(a[0] >= b[0] for a, b in zip(self.scores, self.scores[1:], strict=False)):
            raise ValueError("scores must be in strictly increasing stamp order")
        return self


# --- desired and reported state ----------------------------------------------------------------


MODEL_SIGNATURE_CONTEXT: Final = b"camfleet model artifact sha256:"
Ed25519Signature = Annotated[B64Bytes, Field(min_length=64, max_length=64)]


def model_signed_bytes(sha256: str) -> bytes:
    """What the controller's Ed25519 key signs for a model artifact: its sha256 (hex) after a
    fixed context, so a signature made for anything else can never pass as a model's."""
    return MODEL_SIGNATURE_CONTEXT + sha256.encode("ascii")


class ModelRef(_Model):
    """A model artifact by identity: fetch `url`, check `size` and `sha256`, and use it only if
    `signature` (of `model_signed_bytes(sha256)`, by the key the agent got at enrollment)
    verifies."""

    model_version: ModelVersion
    sha256: Sha256Hex
    size: Count
    url: HttpUrl
    signature: Ed25519Signature = Field(repr=False)


class RoiSpec(_Model):
    id: RoiId
    polygon: Annotated[list[tuple[Unit, Unit]], Field(min_length=3, max_length=256)]
    sensitivity: Unit = 0.5


class CameraSpec(_Model):
    name: CameraName
    main_url: RtspUrl = Field(repr=False)  # URLs may carry camera credentials
    sub_url: RtspUrl | None = Field(default=None, repr=False)
    profile: Slug = "generic-onvif"
    rois: Annotated[list[RoiSpec], Field(max_length=64)] = []
    inspection: bool = True
    detect_fps: Annotated[float, Field(gt=0, le=120)]
    # Left out of the JSON when None, so a desired state without models stays readable by an
    # agent older than model distribution (models forbid unknown fields).
    model: ModelRef | None = Field(default=None, exclude_if=lambda ref: ref is None)

    @model_validator(mode="after")
    def _unique_rois(self) -> Self:
        _unique((r.id for r in self.rois), "ROI id")
        return self


class DesiredState(BaseMessage):
    """What the controller wants an agent to run; retained, so a reconnecting agent catches up."""

    type: Literal["desired_state"] = "desired_state"
    version: Count
    cameras: Annotated[list[CameraSpec], Field(max_length=1024)]
    model_version: ModelVersion | None = None
    # How long after its last contact with the broker an agent may still run this state from
    # its cache (the controller's failover grace): past it, the cameras may have moved.
    lease_s: Annotated[float, Field(gt=0, le=86400)] | None = None

    @model_validator(mode="after")
    def _unique_cameras(self) -> Self:
        _unique((c.name for c in self.cameras), "camera")
        return self


class CameraReport(_Model):
    name: CameraName
    state: ConnectionState
    reason: Text | None = None
    inspection: bool
    adjustment: RoiAdjustment | None = None  # None until a reference view exists


class ReportedState(BaseMessage):
    """What the agent actually runs, after applying desired state `desired_version`."""

    type: Literal["reported_state"] = "reported_state"
    ts: StampUs
    desired_version: Count | None  # None: no desired state received yet
    cameras: Annotated[list[CameraReport], Field(max_length=1024)]
    model_version: ModelVersion | None = None
    error: Text | None = None  # why the desired state could not be applied in full

    @model_validator(mode="after")
    def _unique_cameras(self) -> Self:
        _unique((c.name for c in self.cameras), "camera")
        return self


# --- discovery ---------------------------------------------------------------------------------


class FoundCamera(_Model):
    """A device that answered an ONVIF WS-Discovery probe, with what the agent made of it."""

    endpoint: Annotated[
        str, printable_ascii(256)
    ]  # WS-Addressing endpoint reference (urn:uuid:...)
    address: Annotated[str, printable_ascii(64)]  # IP address it answered from
    xaddrs: Annotated[list[HttpUrl], Field(max_length=8)] = []
    scopes: Annotated[list[Annotated[str, printable_ascii(512)]], Field(max_length=64)] = []
    manufacturer: Text | None = None
    model: Text | None = None
    suggested_profile: Slug | None = None  # a firmware profile matching its scopes
    main_url: RtspUrl | None = Field(default=None, repr=False)
    sub_url: RtspUrl | None = Field(default=None, repr=False)


class DiscoveryReport(BaseMessage):
    """The cameras an agent found on its subnets; retained, replaced by each new probe."""

    type: Literal["discovery_report"] = "discovery_report"
    ts: StampUs
    subnets: Annotated[list[Subnet], Field(max_length=64)] = []
    cameras: Annotated[list[FoundCamera], Field(max_length=1024)]


# --- commands ----------------------------------------------------------------------------------


class ExtractClip(_Model):
    name: Literal["extract_clip"] = "extract_clip"
    camera: CameraName
    from_us: StampUs
    to_us: StampUs
    event_id: UUID | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.from_us > self.to_us:
            raise ValueError("from_us must not be after to_us")
        return self


class CaptureReference(_Model):
    name: Literal["capture_reference"] = "capture_reference"
    camera: CameraName


class Discover(_Model):
    """Probe for cameras now and publish a DiscoveryReport."""

    name: Literal["discover"] = "discover"
    timeout_s: Annotated[float, Field(gt=0, le=30)] = 3.0


Action = Annotated[ExtractClip | CaptureReference | Discover, Field(discriminator="name")]


class Command(BaseMessage):
    """A one-shot action; the agent answers with a CommandAck carrying the same id."""

    type: Literal["command"] = "command"
    id: UUID
    ts: StampUs
    action: Action


class CommandAck(BaseMessage):
    type: Literal["command_ack"] = "command_ack"
    command_id: UUID
    ts: StampUs
    ok: bool
    error: Text | None = None
    clip_id: UUID | None = None  # the clip an extract_clip produced

    @model_validator(mode="after")
    def _error_iff_failed(self) -> Self:
        if self.ok == (self.error is not None):
            raise ValueError("error must be given exactly when ok is false")
        return self


# --- bulk bytes --------------------------------------------------------------------------------


class ClipManifest(BaseMessage):
    """Announces a clip sent as `chunk_count` ClipChunk messages; `sha256` is of the whole clip."""

    type: Literal["clip_manifest"] = "clip_manifest"
    clip_id: UUID
    event_id: UUID | None = None
    camera: CameraName
    from_us: StampUs
    to_us: StampUs
    sha256: Sha256Hex
    size: Count
    chunk_size: Annotated[int, Field(ge=1, le=MAX_CHUNK_BYTES)]
    chunk_count: Count
    content_type: Annotated[str, StringConstraints(pattern=r"^[a-z]+/[a-z0-9.+-]{1,64}$")]

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        if self.from_us > self.to_us:
            raise ValueError("from_us must not be after to_us")
        if self.chunk_count != math.ceil(self.size / self.chunk_size):
            raise ValueError("chunk_count must be ceil(size / chunk_size)")
        return self


class ClipChunk(BaseMessage):
    type: Literal["clip_chunk"] = "clip_chunk"
    clip_id: UUID
    index: Count
    sha256: Sha256Hex
    data: Annotated[B64Bytes, Field(max_length=MAX_CHUNK_BYTES, repr=False)]

    @classmethod
    def of(cls, clip_id: UUID, index: int, data: bytes) -> ClipChunk:
        return cls(clip_id=clip_id, index=index, sha256=hashlib.sha256(data).hexdigest(), data=data)

    @model_validator(mode="after")
    def _hash_matches(self) -> Self:
        if hashlib.sha256(self.data).hexdigest() != self.sha256:
            raise ValueError("sha256 does not match data")
        return self


class ModelSummary(_Model):
    input_shape: Annotated[list[Annotated[int, Field(ge=1, le=65536)]], Field(max_length=8)]
    camera: CameraName | None = None  # None: one model for every camera
    rois: Annotated[list[RoiId], Field(max_length=64)] = []


class ModelArtifactDescriptor(ModelRef, BaseMessage):
    """A `ModelRef` with a summary of the model, as a message of its own (the `models` topic;
    desired state names each camera's model with a plain `ModelRef`)."""

    type: Literal["model_artifact"] = "model_artifact"
    summary: ModelSummary


# --- the union and its codec -------------------------------------------------------------------

Message = Annotated[
    AgentStatus
    | Heartbeat
    | Event
    | DesiredState
    | ReportedState
    | Command
    | CommandAck
    | ClipManifest
    | ClipChunk
    | ModelArtifactDescriptor
    | DiscoveryReport,
    Field(discriminator="type"),
]


def message_type(cls: type[BaseMessage]) -> str:
    """The `type` tag of a message class."""
    tag = cls.model_fields["type"].default
    assert isinstance(tag, str), f"{cls.__name__} has no type tag"
    return tag


MESSAGE_TYPES: Final[dict[str, type[BaseMessage]]] = {
    message_type(cls): cls for cls in get_args(get_args(Message)[0])
}
_MESSAGE: Final[TypeAdapter[Message]] = TypeAdapter(Message)
_MAX_LISTED_ERRORS = 3

M = TypeVar("M", bound=BaseMessage)


def encode_message(msg: BaseMessage) -> bytes:
    """Compact UTF-8 JSON."""
    return msg.model_dump_json().encode("utf-8")


@overload
def parse_message(payload: bytes | str, expected: None = None) -> Message: ...
@overload
def parse_message(payload: bytes | str, expected: type[M]) -> M: ...
def parse_message(payload: bytes | str, expected: type[BaseMessage] | None = None) -> BaseMessage:
    """Decode and validate a payload, of any type or of type `expected`.

    Raises MessageError, and nothing else, for anything that is not a valid message.
    """
    data = _as_bytes(payload)
    try:
        if expected is None:
            return _MESSAGE.validate_json(data, strict=True, context=_FROM_WIRE)
        return expected.model_validate_json(data, strict=True, context=_FROM_WIRE)
    except ValidationError as exc:
        raise MessageError(_explain(data, exc, expected)) from None


def _as_bytes(payload: object) -> bytes:
    if isinstance(payload, bytes | bytearray | memoryview):
        return bytes(payload)
    if isinstance(payload, str):
        try:
            return payload.encode("utf-8")
        except UnicodeEncodeError:
            raise MessageError("payload is not valid Unicode text") from None
    raise MessageError(f"payload must be bytes or str, not {type(payload).__name__}")


def _explain(data: bytes, exc: ValidationError, expected: type[BaseMessage] | None) -> str:
    # Check the envelope first: "unknown type" or "unsupported version" says more than the
    # field-by-field errors such payloads produce.
    try:
        obj = pydantic_core.from_json(data)
    except ValueError as json_exc:
        return f"bad JSON: {json_exc}"
    if not isinstance(obj, dict):
        return f"expected a JSON object, got {type(obj).__name__}"
    tag = obj.get("type")
    if tag is None:
        return "missing field 'type'"
    if not isinstance(tag, str) or tag not in MESSAGE_TYPES:
        return f"unknown message type {reprlib.repr(tag)} (known: {', '.join(MESSAGE_TYPES)})"
    if expected is not None and tag != message_type(expected):
        return f"expected a {message_type(expected)} message, got {tag}"
    if "v" not in obj:
        return f"{tag}: missing field 'v' (protocol version)"
    if type(obj["v"]) is not int or obj["v"] != PROTOCOL_VERSION:
        return f"{tag}: unsupported protocol version {reprlib.repr(obj['v'])} (supported: 1)"
    skip = 1 if expected is None else 0  # union errors are located under the type tag
    problems = format_validation_error(exc, skip=skip)
    more = len(problems) - _MAX_LISTED_ERRORS
    listed = "; ".join(problems[:_MAX_LISTED_ERRORS]) + (f"; and {more} more" if more > 0 else "")
    return f"invalid {tag} message: {listed}"


def _truncate(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def format_validation_error(exc: ValidationError, skip: int = 0) -> list[str]:
    """One line per error, `path.to[2].field: what is wrong`, never echoing the input value."""
    lines = []
    for error in exc.errors(include_url=False, include_input=False):
        loc = error["loc"][skip:]
        path = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")
        lines.append(f"{path or '(top level)'}: {_truncate(error['msg'], 300)}")
    return lines
