"""The API's contract: request and response bodies (OpenAPI is generated from these).

Camera URLs in responses are always redacted; request bodies never echo their input in errors.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints

from controller.registry import AgentState
from controller.registry.records import DetectFps, Placement, Rois
from fleet.messages import (
    AgentId,
    AgentStatus,
    Heartbeat,
    ReportedState,
    RoiSpec,
    Sha256Hex,
)

MAX_TOKEN_TTL_S = 30 * 86400


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid", hide_input_in_errors=True)


class _Out(BaseModel):
    model_config = ConfigDict(frozen=True)


class ServiceHealth(_Out):
    ok: bool
    version: str


class LoginRequest(_In):
    username: Annotated[str, StringConstraints(min_length=1, max_length=64)]
    password: Annotated[SecretStr, Field(max_length=1024)]


class LoginResponse(_Out):
    token: str = Field(repr=False)
    expires_us: int


class TokenRequest(_In):
    name: AgentId
    ttl_s: Annotated[float, Field(gt=0, le=MAX_TOKEN_TTL_S)] = 3600.0


class TokenResponse(_Out):
    token: str = Field(repr=False)  # shown once: only its hash is kept
    name: str
    expires_us: int


class AgentView(_Out):
    agent_id: str
    name: str
    hostname: str
    software_version: str
    enrolled_us: int
    revoked: bool
    state: AgentState  # as of this answer
    subnets: list[str]
    max_cameras: int
    cameras: list[str]  # the cameras it owns now
    status: AgentStatus | None
    status_us: int | None
    heartbeat: Heartbeat | None
    heartbeat_us: int | None
    reported: ReportedState | None
    desired_version: int


class CameraPatch(_In):
    inspection: bool | None = None
    rois: Rois | None = None
    placement: Placement | None = None
    detect_fps: DetectFps | None = None
    model: Sha256Hex | None = None  # a stored model trained for this camera; null: none


class CameraView(_Out):
    name: str
    main_url: str  # password redacted
    sub_url: str | None
    profile: str
    detect_fps: float
    inspection: bool
    rois: list[RoiSpec]
    placement: str
    target: str | None
    owner: str | None
    site: str | None
    model: str | None = None  # sha256 of the model it uses


class ModelView(_Out):
    sha256: str
    model_version: str
    camera: str  # the camera it was trained for
    size: int
    created_us: int  # when it was uploaded
    signature: str  # Ed25519 (base64) of fleet.messages.model_signed_bytes(sha256)
    cameras: list[str]  # the cameras using it now


class AgentHealth(_Out):
    agent_id: str
    name: str
    hostname: str
    state: AgentState
    session: int | None
    last_heartbeat_us: int | None
    last_heartbeat: str | None  # UTC ISO 8601
    heartbeat_interval_s: float | None
    cameras: int  # owned now
    desired_version: int
    applied_version: int | None  # the desired version its last reported state applied
    error: str | None  # why it could not apply the desired state in full


class CameraHealth(_Out):
    name: str
    owner: str | None
    target: str | None
    # The owner's reported connection state; "unknown" without an owner that is online now.
    state: str
    reason: str | None
    inspection: bool
    site: str | None


class FleetHealth(_Out):
    now_us: int
    agent_states: dict[str, int]
    agents: list[AgentHealth]
    cameras: list[CameraHealth]


class DiscoveredCamera(_Out):
    agent_id: str  # the agent that found it
    seen_us: int
    endpoint: str
    address: str
    xaddrs: list[str]
    scopes: list[str]
    manufacturer: str | None
    model: str | None
    suggested_profile: str | None
    main_url: str | None  # password redacted
    sub_url: str | None
    camera: str | None  # the registered camera reading its main stream, if any
