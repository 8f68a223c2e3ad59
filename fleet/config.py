"""Agent and controller configuration, loaded from TOML files.

Unknown keys are errors (typos must not silently fall back to defaults), relative paths are
relative to the file, and secrets never show in a repr or an error message.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Annotated, Self, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from fleet.messages import (
    AgentId,
    CameraName,
    HttpUrl,
    RoiSpec,
    RtspUrl,
    Slug,
    format_validation_error,
    printable_ascii,
    url_validator,
)

C = TypeVar("C", bound=BaseModel)

Port = Annotated[int, Field(ge=1, le=65535)]
Host = Annotated[str, printable_ascii(253)]
Fps = Annotated[float, Field(gt=0, le=120)]
MqttUrl = Annotated[str, printable_ascii(2048), url_validator("mqtt", "mqtts", credentials=False)]


class ConfigError(ValueError):
    """A configuration file that cannot be used; names the file and each bad key."""

    def __init__(self, path: Path, problems: list[str]) -> None:
        self.path = path
        self.problems = problems
        super().__init__(f"{path}: " + "\n  ".join(problems))


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class HttpConfig(_Section):
    host: Host = "127.0.0.1"
    port: Port


# Each side's own default port, kept when a file sets only the host.
class AgentHttpConfig(HttpConfig):
    port: Port = 8090


class ControllerHttpConfig(HttpConfig):
    port: Port = 8080


class _ServiceConfig(_Section):
    data_dir: Path

    @field_validator("data_dir")
    @classmethod
    def _relative_to_file(cls, value: Path, info: ValidationInfo) -> Path:
        base = (info.context or {}).get("base_dir")
        value = value.expanduser()
        return base / value if isinstance(base, Path) else value


# --- agent -------------------------------------------------------------------------------------


class CameraConfig(_Section):
    name: CameraName
    url: RtspUrl = Field(repr=False)  # URLs may carry camera credentials
    sub_url: RtspUrl | None = Field(default=None, repr=False)
    profile: Slug = "generic-onvif"
    detect_fps: Fps | None = None  # None: the agent's default
    inspect: bool = True  # analyse this camera; it is recorded either way
    rois: Annotated[list[RoiSpec], Field(max_length=64)] = []
    model: Path | None = None  # an artifact from `camfleet model train`; None: audit only


class Defaults(_Section):
    detect_fps: Fps = 5.0
    segment_seconds: Annotated[float, Field(gt=0, le=600)] = 10.0
    inference_threads: Annotated[int, Field(ge=1, le=64)] | None = None  # None: one per core
    clip_pre_s: Annotated[float, Field(ge=0, le=60)] = 5.0  # an event clip's pre and post roll
    clip_post_s: Annotated[float, Field(ge=0, le=60)] = 5.0


class DriftBounds(_Section):
    """How far a camera may drift before `camera_moved` is raised; within them its ROIs simply
    follow. Pixels of the stream drift is tracked on (the sub stream when there is one)."""

    max_shift_px: Annotated[float, Field(gt=0, le=10000)] = 6.0
    max_angle_deg: Annotated[float, Field(gt=0, le=45)] = 0.75
    max_scale_change: Annotated[float, Field(gt=0, le=1)] = 0.03


class Retention(_Section):
    max_age_hours: Annotated[float, Field(gt=0)] = 72.0
    max_disk_gb: Annotated[float, Field(gt=0)] = 10.0


class AgentConfig(_ServiceConfig):
    agent_id: AgentId | None = None  # None: the agent derives one from its host name
    http: AgentHttpConfig = AgentHttpConfig()
    controller_url: HttpUrl | None = None
    defaults: Defaults = Defaults()
    retention: Retention = Retention()
    drift: DriftBounds = DriftBounds()
    cameras: list[CameraConfig] = []

    @field_validator("cameras")
    @classmethod
    def _one_entry_per_camera(cls, cameras: list[CameraConfig]) -> list[CameraConfig]:
        names: set[str] = set()
        camera_of_url: dict[str, str] = {}
        for camera in cameras:
            if camera.name in names:
                raise ValueError(f"camera name {camera.name!r} is used twice")
            names.add(camera.name)
            # Two entries for one stream would open two connections to the camera.
            for url in filter(None, (camera.url, camera.sub_url)):
                if url in camera_of_url:
                    other = camera_of_url[url]
                    raise ValueError(f"cameras {other!r} and {camera.name!r} share a stream url")
                camera_of_url[url] = camera.name
        return cameras

    def detect_fps_for(self, camera: CameraConfig) -> float:
        return self.defaults.detect_fps if camera.detect_fps is None else camera.detect_fps


# --- controller --------------------------------------------------------------------------------


class MqttConfig(_Section):
    """The embedded broker on `embedded_port`, or the external broker at `url`."""

    embedded_port: Port = 1883
    url: MqttUrl | None = None  # credentials go in username/password, never in the URL
    username: str | None = None
    password: SecretStr | None = None
    # With an external Mosquitto: where the controller keeps its password and ACL files current
    # (rewritten on every enrollment and revocation) and the pid file of the broker to SIGHUP so
    # it re-reads them. Unset: run `camfleet broker config` and reload by hand.
    mosquitto_dir: Path | None = None
    mosquitto_pid_file: Path | None = None

    @property
    def embedded(self) -> bool:
        return self.url is None

    @model_validator(mode="after")
    def _one_broker(self) -> Self:
        if self.url is not None and "embedded_port" in self.model_fields_set:
            raise ValueError("set either embedded_port (embedded broker) or url, not both")
        external_only = ("username", "password", "mosquitto_dir", "mosquitto_pid_file")
        if self.url is None and any(getattr(self, key) is not None for key in external_only):
            raise ValueError(
                "username, password and mosquitto_* apply only to an external broker (url)"
            )
        return self


class AdminConfig(_Section):
    user: Slug = "admin"
    password: SecretStr | None = None


class FleetConfig(_Section):
    # How long an agent may be offline (or stale) before its cameras move to another agent.
    failover_grace_s: Annotated[float, Field(gt=0, le=86400)] = 60.0


class ControllerConfig(_ServiceConfig):
    http: ControllerHttpConfig = ControllerHttpConfig()
    mqtt: MqttConfig = MqttConfig()
    admin: AdminConfig = AdminConfig()
    fleet: FleetConfig = FleetConfig()


# --- loading -----------------------------------------------------------------------------------


def load_config(path: str | os.PathLike[str], model: type[C]) -> C:
    """Read a TOML file into `model`; ConfigError for anything wrong with it."""
    path = Path(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError(path, [f"cannot read: {exc.strerror}"]) from None
    except UnicodeDecodeError:
        raise ConfigError(path, ["not UTF-8 text"]) from None
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:
        raise ConfigError(path, [f"invalid TOML: {exc}"]) from None
    try:
        return model.model_validate(data, context={"base_dir": path.parent})
    except ValidationError as exc:
        raise ConfigError(path, format_validation_error(exc)) from None


def load_agent_config(path: str | os.PathLike[str]) -> AgentConfig:
    return load_config(path, AgentConfig)


def load_controller_config(path: str | os.PathLike[str]) -> ControllerConfig:
    return load_config(path, ControllerConfig)
