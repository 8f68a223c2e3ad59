"""One planning pass: the cameras whose target or owner changes now, and why.

Pure: the caller passes the registry's view and the time, stores the changes and publishes the
desired states they imply (`runs`); calling `plan` again on the result changes nothing until
an agent's health or report does (or time passes the grace period).
"""

from __future__ import annotations

from collections.abc import Sequence

from controller.assignment.fleet_view import FleetView
from controller.assignment.model import AgentView, AssignmentError, CameraPlacement, Change
from controller.assignment.owners import decide_owner
from controller.assignment.targets import decide_targets

DEFAULT_GRACE_S = 60.0


def plan(
    cameras: Sequence[CameraPlacement],
    agents: Sequence[AgentView],
    now_us: int,
    grace_s: float = DEFAULT_GRACE_S,
) -> list[Change]:
    """Changes in camera-name order; cameras that stay as they are are not listed."""
    fleet = FleetView(agents, now_us, grace_s)
    names = [c.name for c in cameras]
    if len(set(names)) != len(names):
        duplicate = next(n for n in names if names.count(n) > 1)
        raise AssignmentError(f"camera {duplicate!r} is listed twice")
    targets = decide_targets(cameras, fleet)
    changes = []
    for cam in sorted(cameras, key=lambda c: c.name):
        target = targets[cam.name]
        owner = decide_owner(cam, target.target, fleet)
        if (target.target, owner.owner) == (cam.target, cam.owner):
            continue
        target_moved = target.target != cam.target
        reason = "; ".join(part for part in (target.why if target_moved else "", owner.why) if part)
        changes.append(Change(cam.name, target.target, owner.owner, reason))
    return changes


def runs(camera: CameraPlacement) -> str | None:
    """The agent that should hold the camera's connection now: its owner, while the owner is
    also its target. An owner that is no longer the target is told to let go."""
    return camera.owner if camera.owner == camera.target else None
