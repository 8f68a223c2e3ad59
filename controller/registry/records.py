"""What the registry hands out: agents, cameras and the result of an enrollment."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Final, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    ValidationError,
    model_validator,
)

from fleet.messages import (
    AGENT_ID_PATTERN,
    AgentId,
    AgentStatus,
    CameraName,
    CameraSpec,
    Heartbeat,
    ReportedState,
    RoiSpec,
    RtspUrl,
    Sha256Hex,
    Slug,
    format_validation_error,
)

AUTO: Final = "auto"  # placement: the controller chooses the agent
# "auto" or an agent id ("auto" is reserved: no agent may be named so).
Placement = Annotated[str, StringConstraints(pattern=AGENT_ID_PATTERN)]
SiteName = Annotated[str, StringConstraints(min_length=1, max_length=128)]
DetectFps = Annotated[float, Field(gt=0, le=120)]
Rois = Annotated[list[RoiSpec], Field(max_length=64)]


@dataclass(frozen=True)
class Enrolled:
    agent_id: str
    name: str
    broker_password: str = field(repr=False)  # plaintext, handed to the agent once


@dataclass(frozen=True)
class AgentRecord:
    agent_id: str
    name: str
    hostname: str
    enrolled_us: int
    revoked: bool
    subnets: list[str]
    max_cameras: int
    status: AgentStatus | None  # the last status that superseded the one before
    status_us: int | None  # when the controller received it
    heartbeat: Heartbeat | None
    heartbeat_us: int | None  # controller clock: staleness never trusts the agent's clock
    reported: ReportedState | None
    desired_version: int  # of the last desired state built for the agent; 0 before the first
    software_version: str = ""


@dataclass(frozen=True)
class EnrollmentCounts:
    enrolled: int  # tokens used
    pending: int  # unused and still valid
    expired: int  # unused and past their expiry


class CameraSettings(BaseModel):
    """What an admin sets when adding a camera."""

    model_config = ConfigDict(
        extra="forbid", frozen=True, allow_inf_nan=False, hide_input_in_errors=True
    )

    name: CameraName
    main_url: RtspUrl = Field(repr=False)  # may carry the camera's credentials
    sub_url: RtspUrl | None = Field(default=None, repr=False)
    profile: Slug = "generic-onvif"
    detect_fps: DetectFps = 5.0
    inspection: bool = True
    rois: Rois = []
    placement: Placement = AUTO
    site: SiteName | None = None
    model: Sha256Hex | None = None  # a model in the store, trained for this camera

    def spec(self) -> CameraSpec:
        """What the owning agent is told to run (the desired state adds the model's ref)."""
        return CameraSpec(
            name=self.name,
            main_url=self.main_url,
            sub_url=self.sub_url,
            profile=self.profile,
            rois=self.rois,
            inspection=self.inspection,
            detect_fps=self.detect_fps,
        )

    @model_validator(mode="after")
    def _fits_a_camera_spec(self) -> Self:
        # Whatever is stored must be sendable as desired state (e.g. ROI ids unique).
        try:
            self.spec()
        except ValidationError as exc:
            raise ValueError("; ".join(format_validation_error(exc))) from None
        return self


class CameraRecord(CameraSettings):
    """A managed camera. `target` is where the assignment wants it; `owner` is the one agent
    allowed to connect to it now (they differ while a camera is handed over)."""

    target: AgentId | None = None
    owner: AgentId | None = None
