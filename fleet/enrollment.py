"""The enrollment contract: what an agent sends to trade a one-time token for its identity.

HTTP, not MQTT (the agent has no broker credentials yet): `POST /api/v1/enroll` with an
`EnrollRequest`, answered with an `EnrollResponse`. The agent keeps the answer as its
`AgentCredentials` file (0600) in its data directory; `camfleet agent run --data DIR` needs
nothing else.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, SecretStr, StringConstraints, ValidationError

from fleet.messages import AgentId, HttpUrl, Subnet, format_validation_error, printable_ascii

ENROLL_PATH: Final = "/api/v1/enroll"
CREDENTIALS_FILE: Final = "enrollment.json"

EnrollmentToken = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9_-]{16,128}$")]
Hostname = Annotated[str, printable_ascii(253)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, hide_input_in_errors=True)


class EnrollRequest(_Model):
    token: SecretStr
    hostname: Hostname
    software_version: Annotated[str, printable_ascii(64)]
    subnets: Annotated[list[Subnet], Field(max_length=64)] = []
    max_cameras: Annotated[int, Field(ge=0, le=4096)] = 16


class BrokerAccess(_Model):
    host: Hostname
    port: Annotated[int, Field(ge=1, le=65535)]
    tls: bool = False
    username: AgentId  # the agent id: the broker ACL is keyed by it
    password: SecretStr


class EnrollResponse(_Model):
    agent_id: AgentId
    name: AgentId  # the name the token was created for
    broker: BrokerAccess
    controller_url: HttpUrl
    # Raw 32-byte Ed25519 public key, base64: model artifacts are signed with its private half.
    signing_public_key: Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9+/]{43}=$")]


class AgentCredentials(EnrollResponse):
    """What `camfleet agent enroll` stores; secrets are written, never logged or repr'd."""


class CredentialsError(ValueError):
    """The credentials file is missing or unusable; the text says what to do."""


def write_credentials(data_dir: Path, creds: AgentCredentials) -> Path:
    """Write atomically with mode 0600 from the start (never briefly world-readable)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / CREDENTIALS_FILE
    tmp = path.with_suffix(".tmp")
    payload = creds.model_dump(mode="json")
    payload["broker"]["password"] = creds.broker.password.get_secret_value()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f, indent=2)
    os.replace(tmp, path)
    return path


def read_credentials(data_dir: Path) -> AgentCredentials:
    path = data_dir / CREDENTIALS_FILE
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise CredentialsError(
            f"{path} not found: enroll first (camfleet agent enroll --controller URL --token T "
            f"--data {data_dir})"
        ) from None
    except OSError as exc:
        raise CredentialsError(f"cannot read {path}: {exc.strerror}") from None
    try:
        return AgentCredentials.model_validate_json(text)
    except ValidationError as exc:
        raise CredentialsError(f"{path}: " + "; ".join(format_validation_error(exc))) from None
