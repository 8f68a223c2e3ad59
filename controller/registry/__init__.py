"""The controller's registry: enrollment, agents, broker identities, cameras, desired state."""

from controller.registry.errors import (
    CameraExists,
    EnrollmentRefused,
    InvalidCamera,
    RegistryError,
    UnknownAgent,
    UnknownCamera,
)
from controller.registry.health import AGENT_STATES, AgentState, effective_state
from controller.registry.records import (
    AUTO,
    AgentRecord,
    CameraRecord,
    CameraSettings,
    Enrolled,
    EnrollmentCounts,
)
from controller.registry.registry import Registry

__all__ = [
    "AGENT_STATES",
    "AUTO",
    "AgentRecord",
    "AgentState",
    "CameraExists",
    "CameraRecord",
    "CameraSettings",
    "Enrolled",
    "EnrollmentCounts",
    "EnrollmentRefused",
    "InvalidCamera",
    "Registry",
    "RegistryError",
    "UnknownAgent",
    "UnknownCamera",
    "effective_state",
]
