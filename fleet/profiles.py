"""Camera firmware profiles: how a camera family speaks RTSP and behaves under load.

One TOML file per family lives in the `firmware_profiles` package. The agent reads a profile to
talk to a camera; the simulator reads the same profile to behave like one.
"""

from __future__ import annotations

import re
import string
import tomllib
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Literal, Self
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

PROFILES_PACKAGE = "firmware_profiles"
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]*$")
# Strict: a TOML typo like fps = "25" is an error, not a silent coercion.
_MODEL_CONFIG = ConfigDict(extra="forbid", frozen=True, strict=True)


# A camera sends a main stream and, usually, a lower-resolution sub stream.
StreamKind = Literal["main", "sub"]


class ProfileError(Exception):
    """A profile is unknown, unreadable or invalid, or a URL cannot be built from it."""


def _check_template(template: str) -> str:
    """Only `{channel}` (with an optional format spec) may appear, and channel=1 must format."""
    try:
        fields = [f for _, f, _, _ in string.Formatter().parse(template) if f is not None]
    except ValueError as exc:  # unbalanced braces
        raise ValueError(f"bad template {template!r}: {exc}") from None
    bad = [f for f in fields if f != "channel"]
    if bad:
        raise ValueError(f"only the {{channel}} placeholder is allowed, found {{{bad[0]}}}")
    try:
        path = template.format(channel=1)
    except (ValueError, KeyError, IndexError) as exc:
        raise ValueError(f"template {template!r} does not format with channel=1: {exc}") from None
    if not path.startswith("/"):
        raise ValueError(f"path must start with '/', got {path!r}")
    if any(c.isspace() for c in path):
        raise ValueError(f"path must not contain whitespace: {path!r}")
    return template


class StreamProfile(BaseModel):
    model_config = _MODEL_CONFIG

    path: str  # URL path (+query) template; {channel} with optional format spec, e.g. {channel:02d}
    width: int = Field(gt=0)
    height: int = Field(gt=0)
    fps: float = Field(gt=0)
    gop: int = Field(ge=1)
    codec: Literal["h264", "h265"]
    bitrate_kbps: int = Field(gt=0)

    @field_validator("path")
    @classmethod
    def _valid_path(cls, value: str) -> str:
        return _check_template(value)


class KeepAlive(BaseModel):
    model_config = _MODEL_CONFIG

    method: Literal["OPTIONS", "GET_PARAMETER"]
    session_timeout_s: int = Field(gt=0)


class MultiClient(BaseModel):
    """How the camera degrades when more than one client is connected."""

    model_config = _MODEL_CONFIG

    fps_divisor: int = Field(default=1, ge=1)
    bitrate_factor: float = Field(default=1.0, gt=0.0, le=1.0)
    frames_differ: bool = False
    notes: str = ""

    @property
    def degrades(self) -> bool:
        return self.fps_divisor > 1 or self.bitrate_factor < 1.0 or self.frames_differ


class FirmwareProfile(BaseModel):
    model_config = _MODEL_CONFIG

    name: str
    family: str
    description: str
    default_port: int = Field(default=554, ge=1, le=65535)
    transport: Literal["tcp", "udp"]
    main: StreamProfile
    sub: StreamProfile | None = None
    keepalive: KeepAlive
    max_sessions: int = Field(ge=1)
    multi_client: MultiClient
    rtcp_sender_reports: bool
    quirks: list[str] = []

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME_RE.match(value):
            raise ValueError(f"{value!r} is not a lowercase name of letters, digits and '-'")
        return value

    @model_validator(mode="after")
    def _sub_smaller_than_main(self) -> Self:
        sub, main = self.sub, self.main
        if sub is not None and not (
            sub.width <= main.width
            and sub.height <= main.height
            and sub.width * sub.height < main.width * main.height
        ):
            raise ValueError(
                f"sub: {sub.width}x{sub.height} must be smaller than main "
                f"{main.width}x{main.height}"
            )
        return self

    def stream_path(self, kind: StreamKind, channel: int) -> str:
        """The URL path (+query) of one stream of one channel (channels count from 1)."""
        if channel < 1:
            raise ProfileError(f"{self.name}: channel must be >= 1, got {channel}")
        streams = {"main": self.main, "sub": self.sub}
        if kind not in streams:
            raise ProfileError(f"{self.name}: stream kind must be 'main' or 'sub', got {kind!r}")
        stream = streams[kind]
        if stream is None:
            raise ProfileError(f"{self.name}: this family has no {kind} stream")
        return stream.path.format(channel=channel)

    def rtsp_url(
        self,
        host: str,
        channel: int = 1,
        kind: StreamKind = "main",
        port: int | None = None,
        user: str | None = None,
        password: str | None = None,
    ) -> str:
        """Full rtsp:// URL; credentials are percent-encoded so any character is safe."""
        if not host or any(c.isspace() or c in "/@?#" for c in host):
            raise ProfileError(f"bad host {host!r}")
        if password is not None and user is None:
            raise ProfileError("a password needs a user")
        port = self.default_port if port is None else port
        if not 1 <= port <= 65535:
            raise ProfileError(f"bad port {port}")
        if ":" in host and not host.startswith("["):  # bare IPv6 literal
            host = f"[{host}]"
        creds = ""
        if user is not None:
            creds = quote(user, safe="")
            if password is not None:
                creds += ":" + quote(password, safe="")
            creds += "@"
        return f"rtsp://{creds}{host}:{port}{self.stream_path(kind, channel)}"


def _describe(error: ValidationError) -> str:
    """One line per problem, each naming the offending key, e.g. `main.path: ...`."""
    lines = []
    for err in error.errors():
        key = ".".join(str(part) for part in err["loc"])
        # Whole-profile checks carry no location; their message starts with the key itself.
        msg = err["msg"].removeprefix("Value error, ")
        lines.append(f"{key}: {msg}" if key else msg)
    return "; ".join(lines)


def _parse(data: bytes, source: str, stem: str) -> FirmwareProfile:
    try:
        raw = tomllib.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ProfileError(f"{source}: not valid TOML: {exc}") from None
    try:
        profile = FirmwareProfile.model_validate(raw)
    except ValidationError as exc:
        raise ProfileError(f"{source}: invalid profile: {_describe(exc)}") from None
    if profile.name != stem:
        raise ProfileError(f"{source}: name: {profile.name!r} must equal the file stem {stem!r}")
    return profile


def load_profile_file(path: Path) -> FirmwareProfile:
    """Load and validate one profile file; errors name the file and the bad key."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ProfileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    return _parse(data, str(path), path.stem)


def _shipped() -> dict[str, Traversable]:
    files = resources.files(PROFILES_PACKAGE)
    return {
        entry.name.removesuffix(".toml"): entry
        for entry in files.iterdir()
        if entry.name.endswith(".toml") and entry.is_file()
    }


def list_profiles() -> list[FirmwareProfile]:
    """Every profile shipped in the `firmware_profiles` package, sorted by name."""
    return [
        _parse(entry.read_bytes(), f"{PROFILES_PACKAGE}/{entry.name}", stem)
        for stem, entry in sorted(_shipped().items())
    ]


def load_profile(name: str) -> FirmwareProfile:
    """A shipped profile by name; an unknown name lists the known ones."""
    shipped = _shipped()
    entry = shipped.get(name)
    if entry is None:
        known = ", ".join(sorted(shipped)) or "(none)"
        raise ProfileError(f"unknown firmware profile {name!r}; known profiles: {known}")
    return _parse(entry.read_bytes(), f"{PROFILES_PACKAGE}/{entry.name}", name)
