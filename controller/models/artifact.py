"""What the controller checks of an uploaded model artifact, with the stdlib only: a tar holding
a manifest.json that names the camera and the model version. The agent verifies the rest (every
file against the manifest) before it uses the model."""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Final

from pydantic import BaseModel, ConfigDict, ValidationError

from fleet.messages import CameraName, ModelVersion, format_validation_error

MANIFEST_FILE: Final = "manifest.json"
MAX_BYTES: Final = 256 * 1024 * 1024  # the agent's limit too (agent.detection.model.artifact)
MAX_MANIFEST_BYTES: Final = 1024 * 1024


class InvalidArtifact(ValueError):
    """Not a model artifact the controller can distribute; the text says why."""


class ArtifactTooLarge(InvalidArtifact):
    def __init__(self) -> None:
        super().__init__(f"model artifact is larger than {MAX_BYTES} bytes")


class ArtifactInfo(BaseModel):
    """The manifest fields the controller needs; the others are the agent's business."""

    model_config = ConfigDict(extra="ignore", frozen=True, hide_input_in_errors=True)

    camera: CameraName
    model_version: ModelVersion


def read_artifact_info(path: Path) -> ArtifactInfo:
    """The camera and version an artifact file's manifest names; InvalidArtifact otherwise."""
    try:
        with tarfile.open(path, mode="r:") as tar:
            try:
                member = tar.getmember(MANIFEST_FILE)
            except KeyError:
                raise InvalidArtifact(f"not a model artifact: no {MANIFEST_FILE}") from None
            if not member.isreg() or member.size > MAX_MANIFEST_BYTES:
                raise InvalidArtifact(f"{MANIFEST_FILE} is not a file of at most 1 MiB")
            content = tar.extractfile(member)
            raw = content.read() if content is not None else b""
    except (tarfile.TarError, EOFError) as exc:
        raise InvalidArtifact(f"not a model artifact (a tar file): {exc}") from None
    try:
        return ArtifactInfo.model_validate_json(raw)
    except ValidationError as exc:
        problems = "; ".join(format_validation_error(exc))
        raise InvalidArtifact(f"{MANIFEST_FILE} does not describe a model: {problems}") from None
