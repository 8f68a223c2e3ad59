"""Which agent runs which camera: targets (where it should run) and owners (who may connect)."""

from controller.assignment.model import AUTO, AgentView, AssignmentError, CameraPlacement, Change
from controller.assignment.plan import DEFAULT_GRACE_S, plan, runs

__all__ = [
    "AUTO",
    "DEFAULT_GRACE_S",
    "AgentView",
    "AssignmentError",
    "CameraPlacement",
    "Change",
    "plan",
    "runs",
]
