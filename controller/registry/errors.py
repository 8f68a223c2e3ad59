"""What the registry refuses, by kind, so the API can map each to its HTTP status.

Texts name the thing at fault (agent id, camera name) but never a secret or a camera URL.
"""

from __future__ import annotations


class RegistryError(Exception):
    """The registry refused a change; the text says why (e.g. a name already in use)."""


class EnrollmentRefused(RegistryError):
    """An enrollment token did not enroll; `reason` is meant for the agent's operator."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnknownAgent(RegistryError, LookupError):
    def __init__(self, agent_id: str) -> None:
        super().__init__(f"no agent {agent_id!r}")


class UnknownCamera(RegistryError, LookupError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no camera {name!r}")


class CameraExists(RegistryError):
    """A camera with that name, or one reading the same main stream, is already registered."""


class InvalidCamera(RegistryError, ValueError):
    """A camera record or change that does not validate; the text lists the fields at fault."""
