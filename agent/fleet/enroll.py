"""Trading a one-time enrollment token for the agent's identity (fleet/enrollment.py's HTTP
contract). Errors are one line and never contain the token or the broker password."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Final

import httpx
from pydantic import SecretStr, TypeAdapter, ValidationError

from fleet.enrollment import ENROLL_PATH, AgentCredentials, EnrollmentToken, EnrollRequest
from fleet.messages import format_validation_error, printable_ascii, url_validator

TIMEOUT_S: Final = 10.0
_DETAIL_LIMIT: Final = 300

_CONTROLLER_URL: Final = TypeAdapter(
    Annotated[str, printable_ascii(2048), url_validator("http", "https", credentials=False)]
)
_TOKEN: Final = TypeAdapter(EnrollmentToken)


class EnrollError(Exception):
    """Enrollment did not happen; the text says why, in one line."""


class EnrollRefused(EnrollError):
    """The controller refused the token (used, expired, unknown); the text is its reason."""


def enroll(
    controller_url: str,
    token: str,
    *,
    hostname: str,
    software_version: str,
    subnets: Sequence[str] = (),
    max_cameras: int = 16,
    timeout_s: float = TIMEOUT_S,
) -> AgentCredentials:
    try:
        _TOKEN.validate_python(token)
    except ValidationError:
        raise EnrollError("token: must be 16 to 128 characters of A-Z a-z 0-9 _ -") from None
    try:
        base = _CONTROLLER_URL.validate_python(controller_url)
        request = EnrollRequest(
            token=SecretStr(token),
            hostname=hostname,
            software_version=software_version,
            subnets=list(subnets),
            max_cameras=max_cameras,
        )
    except ValidationError as exc:
        raise EnrollError("; ".join(format_validation_error(exc))) from None
    body = request.model_dump(mode="json")
    body["token"] = token  # dumped masked, sent as it is
    url = base.rstrip("/") + ENROLL_PATH
    try:
        response = httpx.post(url, json=body, timeout=timeout_s)
    except httpx.HTTPError as exc:
        why = str(exc) or type(exc).__name__
        raise EnrollError(f"cannot reach the controller at {base}: {why}") from None
    if response.status_code == 403:
        raise EnrollRefused(_detail(response, token) or "no reason given")
    if response.status_code not in (200, 201):
        detail = _detail(response, token)
        said = f"the controller answered HTTP {response.status_code}"
        raise EnrollError(f"{said}: {detail}" if detail else said)
    try:
        return AgentCredentials.model_validate_json(response.content)
    except ValidationError as exc:
        problems = "; ".join(format_validation_error(exc)[:3])
        raise EnrollError(f"the controller's answer is not an enrollment: {problems}") from None


def _detail(response: httpx.Response, token: str) -> str:
    """FastAPI's {"detail": ...} as one short line (any echo of the token blanked)."""
    try:
        detail = response.json().get("detail")
    except (ValueError, AttributeError):
        detail = None
    if detail is None:
        return ""
    text = " ".join(str(detail).split()).replace(token, "***")
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 3] + "..."
